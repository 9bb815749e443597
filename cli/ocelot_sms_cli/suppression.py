"""`ocelot-sms suppression list|add|remove`: the numbers nothing is sent to (their students opted out),
read and written in the stack's table as the applier keeps them (ocelot_sms.suppression)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
from rich.table import Column, Table

from ocelot_sms.clock import iso, utc_now
from ocelot_sms.store import Suppression, SuppressionSource
from ocelot_sms_cli import views
from ocelot_sms_cli.context import OUTPUT_OPTION, SHOW_NUMBERS_OPTION, pass_target
from ocelot_sms_cli.exits import EXIT_CODES, Exit, Failure
from ocelot_sms_cli.spreadsheet import normalise_number
from ocelot_sms_cli.target import Target

REGION_OPTION = click.option(
    "--default-region",
    default="US",
    show_default=True,
    envvar="OCELOT_SMS_DEFAULT_REGION",
    help="Country of a number written without +country code (ISO code: US, CA, GB...).",
)
SOURCES = {
    SuppressionSource.OPTED_OUT: "opted out (status callback)",
    SuppressionSource.REPLY: "replied with an opt-out word",
    SuppressionSource.OPERATOR: "an operator",
}


def _number(raw: str, region: str) -> str:
    number, problem = normalise_number(raw, region.upper() or None)
    if number is None:
        raise Failure(f"{raw!r} is not a phone number: {problem}", Exit.INVALID)
    return number


@click.group(epilog=EXIT_CODES)
def suppression() -> None:
    """Numbers nothing is sent to unless a send says --include-suppressed: their students opted out
    (a status callback, or a STOP reply), or an operator added them."""


@suppression.command("list")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1), help="Numbers to list.")
@OUTPUT_OPTION
@SHOW_NUMBERS_OPTION
@pass_target
def suppression_list(target: Target, limit: int, output: str, show_numbers: bool) -> None:
    """The suppressed numbers, in number order, with why and since when."""
    from ocelot_sms.runtime import store

    listed: list[Suppression] = []
    after = None
    while len(listed) < limit:
        page = store().list_suppressions(min(limit - len(listed), 500), after)
        listed.extend(page.suppressions)
        if page.next is None:
            break
        after = page.next
    rows = [_row(s, show_numbers) for s in listed]
    if output == "json":
        views.write_json({"suppressions": rows})
    elif output == "csv":
        views.write_csv(_csv(rows))
    else:
        _print(rows)


def _row(item: Suppression, show_numbers: bool) -> dict[str, Any]:
    return {
        "number": views.recipient(item.number, show_numbers),
        "source": item.source.value,
        "since": item.at,
        "reason": item.reason,
        "eventId": item.event_id,
        "messageId": item.message_id,
    }


def _csv(rows: list[dict[str, Any]]) -> Iterable[list[str]]:
    yield ["number", "source", "since", "reason", "event_id", "message_id"]
    for row in rows:
        yield [str(row[k] or "") for k in ("number", "source", "since", "reason", "eventId", "messageId")]


def _print(rows: list[dict[str, Any]]) -> None:
    out = views.console()
    table = Table(
        Column("number", no_wrap=True),
        Column("why", overflow="fold", min_width=12),
        Column("since", no_wrap=True),
        Column("reason", overflow="fold", min_width=12),
    )
    for row in rows:
        table.add_row(
            row["number"], SOURCES[SuppressionSource(row["source"])], row["since"], row["reason"] or "-"
        )
    blocks = (
        [f"{r['number']} · {SOURCES[SuppressionSource(r['source'])]}", f"since {r['since']}"] for r in rows
    )
    views.print_fitting(out, table, blocks)
    out.print(f"{views.count(len(rows), 'number')} suppressed")


@suppression.command("add")
@click.argument("number")
@click.option("--reason", default=None, help="Why (kept with it, shown by `suppression list`).")
@REGION_OPTION
@pass_target
def suppression_add(target: Target, number: str, reason: str | None, default_region: str) -> None:
    """Suppress NUMBER: nothing is sent to it until it is removed (callbacks never lift this)."""
    from ocelot_sms.runtime import store

    e164 = _number(number, default_region)
    given = Suppression(
        e164, SuppressionSource.OPERATOR, iso(utc_now()), reason=reason or "added by an operator"
    )
    store().suppress(given)
    views.console().print(f"{views.recipient(e164, False)} suppressed: sends leave it out from now on")


@suppression.command("remove")
@click.argument("number")
@REGION_OPTION
@pass_target
def suppression_remove(target: Target, number: str, default_region: str) -> None:
    """Lift NUMBER's suppression, whatever set it (be sure its student wants texts again)."""
    from ocelot_sms.runtime import store

    e164 = _number(number, default_region)
    if not store().lift_suppression(e164):
        raise Failure(f"{views.recipient(e164, False)} is not suppressed: nothing to remove", Exit.INVALID)
    views.console().print(f"{views.recipient(e164, False)} is no longer suppressed: sends include it again")
