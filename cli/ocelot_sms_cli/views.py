"""What the commands print: tables for a person (counts as a table, ids and timestamps whole), CSV
with one row per message for a spreadsheet, JSON as the API answers.

On a terminal, tables fit its width by folding long cells, never cutting them; piped, nothing is
wrapped at all.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Column, Table

from ocelot_sms.observability import mask_phone

OUTPUTS = ("table", "csv", "json")
# Piped output is never wrapped: a line as long as it needs.
PIPE_WIDTH = 100_000
# Statuses in the order a message goes through them, then ours.
STATUS_ORDER = (
    "scheduled",
    "accepted",
    "queued",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "opted_out",
    "unknown",
    "sending",
    "not_sent",
    "suppressed",
    "cancelled",
)
IN_FLIGHT = frozenset({"accepted", "queued", "sent", "sending"})
NOT_DELIVERED = frozenset({"undelivered", "failed", "opted_out"})
NO_OUTCOME = frozenset({"unknown", "not_sent"})
# Never sent, on purpose: the number is suppressed, or the send was cancelled before its time.
LEFT_OUT = frozenset({"suppressed", "cancelled"})
FINAL = frozenset({"delivered"}) | NOT_DELIVERED | NO_OUTCOME | LEFT_OUT
MESSAGE_CSV = (
    "send_id",
    "part",
    "request_id",
    "row",
    "ref",
    "recipient",
    "status",
    "error_code",
    "error_message",
    "last_event_at",
    "ocelot_message_id",
    "ocelot_batch_id",
)


def console(stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr): no markup (refs and Ocelot's reasons are printed
    as they are: "[/]" is a valid ref), the terminal's width, or no limit when piped."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, markup=False, highlight=False, width=wide, soft_wrap=wide is not None)


def number(value: int) -> str:
    return f"{value:,}"


def count(value: int, noun: str) -> str:
    """ "1 message", "2,500 messages"."""
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def ordered_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    known = [(s, counts[s]) for s in STATUS_ORDER if counts.get(s)]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATUS_ORDER and n)


def counts_table(counts: Mapping[str, int]) -> Table:
    table = Table("status", Column("messages", justify="right"), title=None)
    total = 0
    for status, count in ordered_counts(counts):
        table.add_row(status, number(count))
        total += count
    table.add_section()
    table.add_row("total", number(total))
    return table


def summary(counts: Mapping[str, int]) -> str:
    """Counts in one line, in the order a message goes: "delivered 17 · failed 1 · unknown 2"."""
    return (
        " · ".join(f"{s.replace('_', ' ')} {number(n)}" for s, n in ordered_counts(counts)) or "no messages"
    )


def recipient(value: str | None, show_numbers: bool) -> str:
    if not value:
        return "-"
    return value if show_numbers else mask_phone(value)


def error_text(row: Mapping[str, Any]) -> str:
    code, message = row.get("errorCode"), row.get("errorMessage")
    return ": ".join(str(p) for p in (code, message) if p) or ""


# ---- a send (or one batch shown as a send of one part) ---------------------------------------------


def print_send(view: Mapping[str, Any], show_numbers: bool, out: Console) -> None:
    send_id = view["sendId"]
    recorded = f"{view['partsRecorded']} of {view['partCount']} recorded"
    out.print(
        f"send {send_id} · created {view.get('createdAt') or '-'} · {view['partCount']} part(s), {recorded} "
        f"· {number(view['messageCount'])} messages"
    )
    out.print(counts_table(view["counts"]))
    for line in schedule_lines(view):
        out.print(line)
    if view["partCount"] > 1 or view.get("missingParts"):
        parts = Table(
            "part", Column("request id", overflow="fold"), Column("messages", justify="right"), "counts"
        )
        for part in view["parts"]:
            parts.add_row(
                str(part["part"]), part["requestId"], number(part["messageCount"]), summary(part["counts"])
            )
        for missing in view.get("missingParts", []):
            parts.add_row(str(missing), "-", "-", "not recorded yet")
        out.print(parts)
    for chunk in view.get("unknownChunks", []):
        out.print(
            f"part {chunk.get('part', 1)} ({chunk.get('requestId', send_id)}) chunk {chunk['index']}: "
            f"{chunk['size']} messages with an unknown outcome: {chunk.get('reason') or '-'}"
        )
    several = view["partCount"] > 1
    table = messages_table(view["messages"], show_numbers, several_parts=several)
    print_fitting(out, table, (message_lines(row, show_numbers, several) for row in view["messages"]))


def schedule_lines(view: Mapping[str, Any]) -> list[str]:
    """What is scheduled for later, or was cancelled: one line per part (one for a send of one part)."""
    lines = []
    parts = view.get("parts") or [{"part": 1, "requestId": view["sendId"], "schedule": view.get("schedule")}]
    for part in parts:
        schedule = part.get("schedule")
        if not schedule or schedule["status"] == "started":
            continue
        at = str(schedule["scheduledFor"]).replace(".000000Z", "Z")
        why = " (the end of the quiet hours)" if schedule.get("reason") == "quiet_hours" else ""
        what = (
            f"to be sent at {at}{why}" if schedule["status"] == "scheduled" else f"cancelled (was for {at})"
        )
        name = f"part {part['part']} ({part['requestId']})" if view["partCount"] > 1 else "send"
        lines.append(f"{name}: {what}")
    return lines


def print_fitting(out: Console, table: Table, blocks: Iterable[Sequence[str]]) -> None:
    """The table if the terminal is wide enough for its narrowest form (ids and times whole, other text
    folded no narrower than its column's minimum); otherwise one block of lines per row."""
    if out.measure(table, options=out.options.update_width(PIPE_WIDTH)).minimum <= out.width:
        out.print(table)
        return
    for block in blocks:
        first, *rest = block
        out.print(first)
        for line in rest:
            out.print(f"    {line}")


def message_lines(row: Mapping[str, Any], show_numbers: bool, several_parts: bool) -> list[str]:
    where = f"row {row.get('position') or row['index'] + 1}" + (
        f", part {row.get('part', 1)}" if several_parts else ""
    )
    lines = [
        f"{where} · ref {row.get('ref') or '-'} · {recipient(row.get('to'), show_numbers)} · {row['status']}",
        f"last event {row.get('statusAt') or '-'}",
    ]
    if error_text(row):
        lines.append(f"error {error_text(row)}")
    if row.get("messageId"):
        lines.append(f"Ocelot message id {row['messageId']}")
    return lines


def messages_table(rows: Sequence[Mapping[str, Any]], show_numbers: bool, several_parts: bool) -> Table:
    # Ids and times are folded or kept whole, never cut: an operator copies them.
    columns = [
        Column("row", justify="right"),
        *([Column("part", justify="right")] if several_parts else []),
        Column("ref", overflow="fold", min_width=6),
        Column("recipient", no_wrap=True),
        Column("status", no_wrap=True),
        Column("error", overflow="fold", min_width=16),
        Column("last event", no_wrap=True),
        Column("Ocelot message id", no_wrap=True),
    ]
    table = Table(*columns)
    for row in rows:
        table.add_row(
            str(row.get("position") or row["index"] + 1),
            *([str(row.get("part", 1))] if several_parts else []),
            row.get("ref") or "-",
            recipient(row.get("to"), show_numbers),
            row["status"],
            error_text(row),
            row.get("statusAt") or "-",
            row.get("messageId") or "-",
        )
    return table


def message_rows_csv(view: Mapping[str, Any], show_numbers: bool) -> Iterable[list[str]]:
    yield list(MESSAGE_CSV)
    for row in view["messages"]:
        yield [
            view["sendId"],
            str(row.get("part", 1)),
            row.get("requestId") or view["sendId"],
            str(row.get("position") or row["index"] + 1),
            row.get("ref") or "",
            (row.get("to") or "") if show_numbers else (mask_phone(row.get("to")) if row.get("to") else ""),
            row["status"],
            row.get("errorCode") or "",
            row.get("errorMessage") or "",
            row.get("statusAt") or "",
            row.get("messageId") or "",
            row.get("batchId") or "",
        ]


def write_csv(rows: Iterable[Sequence[str]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    for row in rows:
        writer.writerow(row)


def write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def masked_view(view: Mapping[str, Any], show_numbers: bool) -> dict[str, Any]:
    """The view with each recipient masked, unless asked to show numbers."""
    if show_numbers:
        return dict(view)
    return {
        **view,
        "messages": [{**m, "to": mask_phone(m["to"]) if m.get("to") else None} for m in view["messages"]],
    }


# ---- recent sends ---------------------------------------------------------------------------------


def print_sends(sends: Sequence[Mapping[str, Any]], out: Console) -> None:
    # As --wait counts them: accepted (on its way), delivered, failed (not delivered), unknown; and when
    # some send has them, scheduled (for later) and left out (suppressed, cancelled).
    extra = [
        (name, statuses)
        for name, statuses in (("scheduled", frozenset({"scheduled"})), ("left out", LEFT_OUT))
        if any(s["counts"].get(status) for s in sends for status in statuses)
    ]
    table = Table(
        Column("send id", no_wrap=True),
        Column("created", no_wrap=True),
        Column("parts", justify="right"),
        Column("messages", justify="right"),
        *_optional(extra, "scheduled"),
        Column("accepted", justify="right"),
        Column("delivered", justify="right"),
        Column("failed", justify="right"),
        Column("unknown", justify="right"),
        *_optional(extra, "left out"),
    )
    for send in sends:
        counts = send["counts"]
        parts = str(send["partCount"])
        if send["partsRecorded"] != send["partCount"]:
            parts = f"{send['partsRecorded']}/{send['partCount']}"

        def total(statuses: frozenset[str], counts: Mapping[str, int] = counts) -> str:
            return number(sum(counts.get(s, 0) for s in statuses))

        cells = {name: total(statuses) for name, statuses in extra}
        table.add_row(
            send["sendId"],
            send.get("createdAt") or "-",
            parts,
            number(send["messageCount"]),
            *([cells["scheduled"]] if "scheduled" in cells else []),
            total(IN_FLIGHT),
            total(frozenset({"delivered"})),
            total(NOT_DELIVERED),
            total(NO_OUTCOME),
            *([cells["left out"]] if "left out" in cells else []),
        )
    blocks = (
        [
            f"{s['sendId']} · {count(s['partCount'], 'part')} · {count(s['messageCount'], 'message')}",
            f"created {s.get('createdAt') or '-'}",
            summary(s["counts"]),
        ]
        for s in sends
    )
    print_fitting(out, table, blocks)
    out.print(f"{len(sends)} send(s), newest first")


def _optional(extra: Sequence[tuple[str, frozenset[str]]], name: str) -> list[Column]:
    return [Column(name, justify="right")] if any(n == name for n, _ in extra) else []


def sends_csv(sends: Sequence[Mapping[str, Any]]) -> Iterable[list[str]]:
    yield ["send_id", "created_at", "origin", "parts", "parts_recorded", "messages", *STATUS_ORDER]
    for send in sends:
        yield [
            send["sendId"],
            send.get("createdAt") or "",
            send.get("origin") or "",
            str(send["partCount"]),
            str(send["partsRecorded"]),
            str(send["messageCount"]),
            *(str(send["counts"].get(s, 0)) for s in STATUS_ORDER),
        ]


# ---- one message ----------------------------------------------------------------------------------


def print_message(view: Mapping[str, Any], show_numbers: bool, out: Console) -> None:
    error = error_text(view)
    out.print(
        f"message {view['messageId']}: {view['status']}{' (' + error + ')' if error else ''} · request "
        f"{view.get('requestId') or '-'} · ref {view.get('ref') or '-'} · "
        f"recipient {recipient(view.get('to'), show_numbers)}"
    )
    table = Table(
        Column("event time", no_wrap=True),
        Column("status", no_wrap=True),
        Column("event id", no_wrap=True),
        Column("received", no_wrap=True),
    )
    blocks = []
    for event in view["history"]:
        status = event["status"] or "-"
        shown = status if event.get("understood", True) else f"{status} (not understood)"
        table.add_row(event.get("eventTime") or "-", shown, event["eventId"], event.get("receivedAt") or "-")
        blocks.append(
            [
                f"{event.get('eventTime') or '-'} · {shown}",
                f"event {event['eventId']}",
                f"received {event.get('receivedAt') or '-'}",
            ]
        )
    print_fitting(out, table, blocks)


def history_csv(view: Mapping[str, Any]) -> Iterable[list[str]]:
    yield ["message_id", "event_time", "status", "understood", "event_id", "received_at"]
    for event in view["history"]:
        yield [
            view["messageId"],
            event.get("eventTime") or "",
            event.get("status") or "",
            str(event.get("understood", True)).lower(),
            event["eventId"],
            event.get("receivedAt") or "",
        ]
