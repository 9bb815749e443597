"""`ocelot-sms inbound`: the texts students sent back (GET /inbound), each with the message of ours it
most likely answers (the last one sent to that number before it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import click
from rich.table import Column, Table

from ocelot_sms.clock import iso
from ocelot_sms_cli import views
from ocelot_sms_cli.api import Api
from ocelot_sms_cli.context import OUTPUT_OPTION, SHOW_NUMBERS_OPTION, pass_target
from ocelot_sms_cli.exits import EXIT_CODES
from ocelot_sms_cli.target import Target
from ocelot_sms_cli.times import Instant

CSV_COLUMNS = ("received_at", "event_time", "from", "to", "text", "reply_to_message_id", "request_id", "ref")


@click.command(epilog=EXIT_CODES)
@click.option(
    "--since", type=Instant(), default=None, help="ISO date or instant (UTC if no offset); default a day ago."
)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1), help="Texts to list.")
@OUTPUT_OPTION
@SHOW_NUMBERS_OPTION
@pass_target
def inbound(target: Target, since: datetime | None, limit: int, output: str, show_numbers: bool) -> None:
    """Texts students sent back, oldest first, each with the send it answers."""
    query: dict[str, str | int] = {"limit": min(limit, 500)}
    if since is not None:
        query["since"] = iso(since)
    listed: list[dict[str, Any]] = []
    for page in Api(target).pages("/inbound", query):
        listed.extend(page["messages"])
        if len(listed) >= limit:
            break
    listed = [_masked(m, show_numbers) for m in listed[:limit]]
    if output == "json":
        views.write_json({"messages": listed})
    elif output == "csv":
        views.write_csv(_csv(listed))
    else:
        _print(listed)


def _masked(message: Mapping[str, Any], show_numbers: bool) -> dict[str, Any]:
    if show_numbers:
        return dict(message)
    return {
        **message,
        "from": views.recipient(message.get("from"), False),
        "to": views.recipient(message.get("to"), False),
    }


def _answers(message: Mapping[str, Any]) -> str:
    reply = message.get("inReplyTo")
    if not reply:
        return "-"
    return f"{reply['requestId']} · ref {reply.get('ref') or '-'}"


def _csv(messages: Iterable[Mapping[str, Any]]) -> Iterable[list[str]]:
    yield list(CSV_COLUMNS)
    for m in messages:
        reply = m.get("inReplyTo") or {}
        yield [
            m.get("receivedAt") or "",
            m.get("eventTime") or "",
            m.get("from") or "",
            m.get("to") or "",
            m.get("text") or "",
            reply.get("messageId") or "",
            reply.get("requestId") or "",
            reply.get("ref") or "",
        ]


def _print(messages: list[dict[str, Any]]) -> None:
    out = views.console()
    table = Table(
        Column("received", no_wrap=True),
        Column("from", no_wrap=True),
        Column("text", overflow="fold", min_width=12),
        Column("answers (request · ref)", overflow="fold", min_width=12),
    )
    for m in messages:
        table.add_row(m.get("receivedAt") or "-", m.get("from") or "-", m.get("text") or "", _answers(m))
    blocks = (
        [
            f"{m.get('receivedAt') or '-'} · from {m.get('from') or '-'}",
            f"text: {m.get('text') or ''}",
            f"answers {_answers(m)}",
        ]
        for m in messages
    )
    views.print_fitting(out, table, blocks)
    out.print(f"{views.count(len(messages), 'text')} received")
