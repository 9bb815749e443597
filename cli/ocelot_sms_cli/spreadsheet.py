"""A spreadsheet's rows as messages: the columns an operator names, numbers as people write them
(normalised to E.164 with `phonenumbers`), texts from a column or a template filled from any column.

Every bad row is reported by its line with a reason in plain English; none is dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from pydantic import ValidationError

from ocelot_sms.contract import MAX_MESSAGE_CHARS
from ocelot_sms.models import OutgoingMessage
from ocelot_sms_cli.exits import Exit, Failure

MAX_REF_CHARS = 128
DELIMITERS = (",", ";", "\t")
# What Excel shows a long number as when the column is not text: the digits are gone.
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?e\+?\d+$", re.IGNORECASE)
_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "has no country code we know: write it with + and its "
    "country code, or give --default-region",
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}
_LENGTH_PROBLEMS = {
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "has no area code",
    ValidationResult.INVALID_COUNTRY_CODE: "has a country code that does not exist",
    ValidationResult.TOO_SHORT: "is too short for a {region} number",
    ValidationResult.TOO_LONG: "is too long for a {region} number",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits for a {region} number",
}


@dataclass(frozen=True)
class Sheet:
    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]  # (line where the row starts, values by column)
    encoding: str
    delimiter: str


@dataclass(frozen=True)
class Columns:
    """Which columns hold what; `template` replaces the text column when given."""

    to: str = "to"
    text: str | None = None
    ref: str | None = None
    template: str | None = None


@dataclass
class Rows:
    messages: list[OutgoingMessage] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line of each message
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)


def read_sheet(path: Path) -> Sheet:
    """The file's header and rows: UTF-8 with or without BOM, UTF-16 (Excel's Unicode text) or
    Windows-1252 (Excel's CSV), separated by commas, semicolons or tabs (as the header line is)."""
    text, encoding = _decode(path.read_bytes(), path)
    first_line = text.split("\n", 1)[0]
    delimiter = max(DELIMITERS, key=first_line.count) if any(d in first_line for d in DELIMITERS) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise Failure(f"{path} is empty: its first line must name the columns", Exit.INVALID)
    columns = tuple(cell.strip() for cell in header)
    rows = []
    start = reader.line_num + 1
    for record in reader:
        if any(cell.strip() for cell in record):  # rows left blank (Excel keeps some) are not messages
            rows.append((start, {columns[i]: cell for i, cell in enumerate(record) if i < len(columns)}))
        start = reader.line_num + 1
    return Sheet(path, columns, tuple(rows), encoding, delimiter)


def _decode(data: bytes, path: Path) -> tuple[str, str]:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data.decode("utf-8-sig"), "UTF-8 with BOM"
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError as error:
        raise Failure(
            f"{path}: byte {error.start + 1} is neither UTF-8 nor Windows-1252 text: save it as "
            "'CSV UTF-8' from your spreadsheet",
            Exit.INVALID,
        ) from error


def column_key(name: str) -> str:
    """A column name as it is matched: case, spaces and punctuation aside ("First Name" = first_name)."""
    return "_".join(re.findall(r"[0-9a-z]+", name.casefold()))


def find_column(sheet: Sheet, name: str, option: str, what: str) -> str:
    exact = [c for c in sheet.columns if c == name]
    loose = [c for c in sheet.columns if column_key(c) == column_key(name)]
    if exact or len(loose) == 1:
        return (exact or loose)[0]
    listed = ", ".join(repr(c) for c in sheet.columns if c)
    raise Failure(
        f"{sheet.path} has no column {name!r} for {what}: name it with {option}; its columns are {listed}",
        Exit.INVALID,
    )


@dataclass(frozen=True)
class Template:
    """A text with {column} placeholders, each checked against the header before anything is sent."""

    parts: tuple[tuple[str, str | None], ...]  # (literal text, column to fill after it, or None)

    @classmethod
    def parse(cls, template: str, sheet: Sheet) -> Template:
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as error:
            raise Failure(
                f"--template: {error}; write {{{{ and }}}} for a brace in the text", Exit.INVALID
            ) from error
        parts: list[tuple[str, str | None]] = []
        unknown: list[str] = []
        for literal, name, spec, conversion in parsed:
            if name is None:
                parts.append((literal, None))
                continue
            if not name.strip() or spec or conversion:
                written = name + ("!" + conversion if conversion else "") + (":" + spec if spec else "")
                raise Failure(
                    f"--template: {{{written}}} is not a column name; a placeholder is a column's name in "
                    "braces, like {first_name}",
                    Exit.INVALID,
                )
            matches = [c for c in sheet.columns if column_key(c) == column_key(name)]
            if name in sheet.columns:
                matches = [name]
            if len(matches) != 1:
                unknown.append(name)
                continue
            parts.append((literal, matches[0]))
        if unknown:
            listed = ", ".join(repr(c) for c in sheet.columns if c)
            raise Failure(
                f"--template names {', '.join('{' + u + '}' for u in unknown)}, which {sheet.path} does not "
                f"have; its columns are {listed}",
                Exit.INVALID,
            )
        return cls(tuple(parts))

    def fill(self, values: dict[str, str]) -> tuple[str, list[str]]:
        """The text for one row, and the columns it found empty."""
        empty = [c for _, c in self.parts if c is not None and not values.get(c, "").strip()]
        text = "".join(literal + (values.get(c, "").strip() if c else "") for literal, c in self.parts)
        return text, empty


def normalise_number(raw: str, region: str | None) -> tuple[str | None, str | None]:
    """(E.164 number, None), or (None, why it is not a number we can text)."""
    text = raw.strip()
    if not text:
        return None, "has no phone number"
    if _SCIENTIFIC.match(text):
        return None, f"{text} lost its digits (Excel showed it as a number): format the column as text"
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        return None, f"{text} {_PARSE_PROBLEMS.get(error.error_type, 'is not a phone number')}"
    length = phonenumbers.is_possible_number_with_reason(number)
    if length in _LENGTH_PROBLEMS:
        where = phonenumbers.region_code_for_number(number) or region or "such a"
        return None, f"{text} {_LENGTH_PROBLEMS[length].format(region=where)}"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), None


def read_messages(sheet: Sheet, columns: Columns, region: str | None) -> Rows:
    """Every row as a message, or as a problem on its line."""
    to = find_column(sheet, columns.to, "--to-column", "the recipients' numbers")
    template = Template.parse(columns.template, sheet) if columns.template else None
    text = None if template else find_column(sheet, columns.text or "text", "--text-column", "the texts")
    ref = _ref_column(sheet, columns.ref)
    rows = Rows()
    first_line: dict[str, int] = {}
    for line, values in sheet.rows:
        number, problem = normalise_number(values.get(to, ""), region)
        body, body_problem = _text(values, text, template)
        reference = (values.get(ref, "") if ref else "").strip() or None
        problem = problem or body_problem or _ref_problem(reference, first_line)
        if problem is None and number is not None:
            try:
                message = OutgoingMessage(to=number, text=body, ref=reference)
            except ValidationError as error:
                problem = "; ".join(e["msg"] for e in error.errors(include_url=False))
        if problem is not None:
            rows.problems.append((line, problem))
            continue
        if reference is not None:
            first_line[reference] = line
        rows.messages.append(message)
        rows.lines.append(line)
    return rows


def _ref_column(sheet: Sheet, name: str | None) -> str | None:
    if name is not None:
        return find_column(sheet, name, "--ref-column", "the refs")
    return next((c for c in sheet.columns if column_key(c) == "ref"), None)


def _text(values: dict[str, str], column: str | None, template: Template | None) -> tuple[str, str | None]:
    if template is not None:
        text, empty = template.fill(values)
        if empty:
            return text, f"{', '.join(empty)} is empty, and the template uses it"
        filled = " after filling the template"
    else:
        text, filled = values.get(column or "", ""), ""
    if not text.strip():
        return text, "the text is empty"
    if len(text) > MAX_MESSAGE_CHARS:
        return text, f"the text is {len(text):,} characters{filled}; at most {MAX_MESSAGE_CHARS:,}"
    return text, None


def _ref_problem(reference: str | None, first_line: dict[str, int]) -> str | None:
    if reference is None:
        return None
    if len(reference) > MAX_REF_CHARS:
        return f"the ref is {len(reference)} characters; at most {MAX_REF_CHARS}"
    if reference in first_line:
        return f"ref {reference!r} repeats line {first_line[reference]}"
    return None
