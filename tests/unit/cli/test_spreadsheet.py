"""Spreadsheets in: encodings and separators as spreadsheets save them, column mapping, numbers as
people write them, templates; every bad row with a reason in plain English."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from ocelot_sms_cli.exits import Exit, Failure
from ocelot_sms_cli.spreadsheet import Columns, column_key, normalise_number, read_messages, read_sheet

EXPORT = (
    "Student ID;First Name;Mobile Phone;Course\n"
    "s-1;Ana;(555) 123-0010;BIO 101\n"
    "s-2;Bo;5551230011;CHEM 110\n"
    ";;;\n"  # a row Excel left blank
    "s-3;Cy;+1 555 123 0013;MATH 201\n"
)


def saved(tmp_path: Path, data: bytes, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (EXPORT.encode(), "UTF-8"),
        (codecs.BOM_UTF8 + EXPORT.encode(), "UTF-8 with BOM"),
        (EXPORT.replace("Ana", "Anaïs").encode("cp1252"), "Windows-1252"),
        (codecs.BOM_UTF16_LE + EXPORT.replace(";", "\t").encode("utf-16-le"), "UTF-16"),
    ],
)
def test_a_student_records_export_reads_in_any_encoding_excel_saves(
    tmp_path: Path, data: bytes, encoding: str
) -> None:
    # Given the export as UTF-8, with a BOM, as Excel's Windows CSV, or as Excel's Unicode text (tabs)
    sheet = read_sheet(saved(tmp_path, data))
    # When its columns are mapped and its texts made from a template
    columns = Columns(
        to="mobile phone", ref="Student ID", template="Hi {first_name}, {Course} starts Monday."
    )
    rows = read_messages(sheet, columns, "US")
    # Then every row is a message, numbers in E.164, the blank row skipped
    assert sheet.encoding == encoding
    assert rows.problems == []
    assert [(m.to, m.ref) for m in rows.messages] == [
        ("+15551230010", "s-1"),
        ("+15551230011", "s-2"),
        ("+15551230013", "s-3"),
    ]
    assert rows.messages[1].text == "Hi Bo, CHEM 110 starts Monday."
    assert rows.lines == [2, 3, 5]


def test_comma_separated_with_quoted_texts_across_lines(tmp_path: Path) -> None:
    path = saved(tmp_path, b'ref,text,to\nr-1,"Hi, there\nsecond line",+15550000001\n,Hola,+15550000002\n')
    rows = read_messages(read_sheet(path), Columns(), None)
    assert [(m.to, m.text, m.ref) for m in rows.messages] == [
        ("+15550000001", "Hi, there\nsecond line", "r-1"),
        ("+15550000002", "Hola", None),
    ]
    assert rows.lines == [2, 4]


@pytest.mark.parametrize(
    ("written", "region", "expected"),
    [
        ("(555) 123-0010", "US", "+15551230010"),
        ("5551230011", "US", "+15551230011"),
        ("+1 555 123 0013", None, "+15551230013"),
        ("555.123.0014", "US", "+15551230014"),
        ("020 7946 0958", "GB", "+442079460958"),
    ],
)
def test_numbers_as_people_write_them_become_e164(written: str, region: str | None, expected: str) -> None:
    assert normalise_number(written, region) == (expected, None)


@pytest.mark.parametrize(
    ("written", "region", "reason"),
    [
        ("555-12", "US", "555-12 is too short for a US number"),
        ("12345678901234567", "US", "is too long for a US number"),
        ("5551230011", None, "5551230011 has no country code we know: write it with + and its country code"),
        ("call me", "US", "call me is not a phone number"),
        ("1.55512E+10", "US", "lost its digits (Excel showed it as a number): format the column as text"),
        ("  ", "US", "has no phone number"),
        ("1230011", "US", "has no area code"),
    ],
)
def test_a_number_that_cannot_be_texted_says_why_in_plain_english(
    written: str, region: str | None, reason: str
) -> None:
    number, problem = normalise_number(written, region)
    assert number is None
    assert problem is not None
    assert reason in problem


def test_every_bad_row_is_reported_by_its_line(tmp_path: Path) -> None:
    path = saved(
        tmp_path,
        (
            "to,text,ref\n"
            "+15550000001,ok,a\n"  # line 2
            "555-12,hi,b\n"  # line 3
            "+15550000003,,c\n"  # line 4
            "+15550000004,hi,a\n"  # line 5: repeats line 2
            f"+15550000005,{'x' * 2001},d\n"  # line 6
            f"+15550000006,hi,{'r' * 129}\n"  # line 7
        ).encode(),
    )
    rows = read_messages(read_sheet(path), Columns(), "US")
    assert [m.ref for m in rows.messages] == ["a"]
    assert rows.problems == [
        (3, "555-12 is too short for a US number"),
        (4, "the text is empty"),
        (5, "ref 'a' repeats line 2"),
        (6, "the text is 2,001 characters; at most 2,000"),
        (7, "the ref is 129 characters; at most 128"),
    ]


def test_a_template_is_checked_against_the_header_before_anything(tmp_path: Path) -> None:
    sheet = read_sheet(saved(tmp_path, EXPORT.encode()))
    with pytest.raises(
        Failure, match=r"names \{nickname\}, \{term\}.*its columns are 'Student ID'"
    ) as caught:
        read_messages(sheet, Columns(to="Mobile Phone", template="Hi {nickname}, {term} {Course}"), "US")
    assert caught.value.code is Exit.INVALID
    for bad, said in (
        ("Hi {", "write {{ and }}"),
        ("{Course:>10}", "is not a column name"),
        ("{}", "not a column"),
    ):
        with pytest.raises(Failure, match=said):
            read_messages(sheet, Columns(to="Mobile Phone", template=bad), "US")


def test_a_rendered_text_too_long_or_with_an_empty_field_is_a_bad_row(tmp_path: Path) -> None:
    path = saved(tmp_path, b"to,name,note\n+15550000001,,x\n+15550000002,Bo,x\n")
    rows = read_messages(read_sheet(path), Columns(template="Hi {name}, " + "y" * 1993 + "{note}"), None)
    assert rows.problems == [
        (2, "name is empty, and the template uses it"),
        (3, "the text is 2,001 characters after filling the template; at most 2,000"),
    ]
    fine = read_messages(read_sheet(path), Columns(template="Hi {{{name}}}"), None)
    assert [m.text for m in fine.messages] == ["Hi {Bo}"]


def test_a_missing_column_names_the_option_and_lists_the_columns(tmp_path: Path) -> None:
    sheet = read_sheet(saved(tmp_path, EXPORT.encode()))
    with pytest.raises(
        Failure, match=r"no column 'to' for the recipients' numbers: name it with --to-column"
    ):
        read_messages(sheet, Columns(), "US")
    with pytest.raises(Failure, match=r"no column 'phone' .* --ref-column"):
        read_messages(sheet, Columns(to="Mobile Phone", template="x", ref="phone"), "US")


@pytest.mark.parametrize("data", [b"", b"\n\n", codecs.BOM_UTF8])
def test_an_empty_file_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(Failure, match="is empty: its first line must name the columns"):
        read_sheet(saved(tmp_path, data))


def test_bytes_that_are_no_text_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Failure, match="save it as 'CSV UTF-8'"):
        read_sheet(saved(tmp_path, b"to,text\n+15550000001,\x81\x8d\n"))


def test_column_names_match_whatever_their_case_and_punctuation() -> None:
    assert column_key(" First Name ") == column_key("first_name") == column_key("FIRST-NAME") == "first_name"
