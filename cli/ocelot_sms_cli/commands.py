"""The operator's journey: `send` a spreadsheet (and `--wait` for it), `status` of a send or a message,
recent `sends`, and `reconcile` for chunks whose outcome is unknown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ocelot_sms.observability import mask_phone
from ocelot_sms_cli import views
from ocelot_sms_cli.api import Api, NotFoundError, quoted
from ocelot_sms_cli.context import OUTPUT_OPTION, SHOW_NUMBERS_OPTION, current_target, pass_target
from ocelot_sms_cli.exits import EXIT_CODES, Exit, Failure
from ocelot_sms_cli.follow import Followed, follow
from ocelot_sms_cli.sending import (
    Earlier,
    Part,
    PartOutcome,
    SendPlan,
    earlier,
    enqueue,
    plan,
    post_part,
    when,
)
from ocelot_sms_cli.spreadsheet import Columns, Rows, read_messages, read_sheet
from ocelot_sms_cli.target import Target
from ocelot_sms_cli.times import SendTime

# Problems listed before "... and N more".
PROBLEMS_SHOWN = 50
STOPPING = frozenset({Exit.INVALID, Exit.CONFLICT, Exit.REJECTED, Exit.UNAVAILABLE})


@click.command(epilog=EXIT_CODES)
@click.argument("csv_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--send-id",
    required=True,
    help="Your name for this send (letters, digits, . _ : -). Run the same command again and nothing "
    "is sent twice; for other messages, choose a new one.",
)
@click.option("--to-column", default="to", show_default=True, help="Column of the recipients' numbers.")
@click.option("--text-column", default=None, help="Column of the texts [default: text].")
@click.option(
    "--template",
    default=None,
    help='The text, filled from each row\'s columns: "Hi {first_name}, ..." (instead of --text-column).',
)
@click.option("--ref-column", default=None, help="Column of your own id per row [default: ref, if any].")
@click.option(
    "--default-region",
    default="US",
    show_default=True,
    envvar="OCELOT_SMS_DEFAULT_REGION",
    help="Country of numbers written without +country code (ISO code: US, CA, GB...).",
)
@click.option(
    "--via", type=click.Choice(["api", "sqs"]), default="api", show_default=True, help="How to submit."
)
@click.option("--wait", is_flag=True, help="Follow the send until every message is final (or --timeout).")
@click.option(
    "--timeout",
    default=900,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seconds --wait follows the send at most.",
)
@click.option(
    "--dry-run", is_flag=True, help="Validate every part through the API and preview it; send nothing."
)
@click.option("--skip-invalid", is_flag=True, help="Send the valid rows even if some are invalid.")
@click.option(
    "--at",
    "send_at",
    type=SendTime(),
    default=None,
    help="Send it later: 2026-11-26T09:00:00-06:00 (ISO with its offset); at most 35 days ahead. "
    "`ocelot-sms cancel SEND_ID` cancels it until then.",
)
@click.option("--urgent", is_flag=True, help="Send it even inside the stack's quiet hours (emergencies).")
@click.option(
    "--include-suppressed",
    is_flag=True,
    help="Send to suppressed numbers too (their students opted out): for what they must get.",
)
@click.option("--from", "sender", default=None, help="Sender number (default: the stack's DefaultSender).")
@click.option("--operator-id", default=None, help="Ocelot operator (default: the stack's DefaultOperatorId).")
@click.option(
    "--per-request",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Messages per part (one request to the API); the stack's MaxMessagesPerRequest at most.",
)
@SHOW_NUMBERS_OPTION
def send(
    csv_file: Path,
    send_id: str,
    to_column: str,
    text_column: str | None,
    template: str | None,
    ref_column: str | None,
    default_region: str,
    via: str,
    wait: bool,
    timeout: int,
    dry_run: bool,
    skip_invalid: bool,
    sender: str | None,
    operator_id: str | None,
    per_request: int,
    show_numbers: bool,
    send_at: str | None,
    urgent: bool,
    include_suppressed: bool,
) -> None:
    """Send the texts in FILE (CSV, comma or semicolon, UTF-8 or Excel's): one message per row."""
    if template and text_column:
        raise Failure("give --template or --text-column, not both", Exit.INVALID)
    out = views.console()
    rows = _read(csv_file, Columns(to_column, text_column, ref_column, template), default_region, out)
    if rows.problems and not skip_invalid:
        raise Failure(
            f"{len(rows.problems)} row(s) cannot be sent (above): fix them, or pass --skip-invalid to send "
            f"the other {len(rows.messages):,}; nothing was sent",
            Exit.INVALID,
        )
    if not rows.messages:
        raise Failure("nothing to send: no valid row", Exit.INVALID)
    given = (
        ("from", sender),
        ("operatorId", operator_id),
        ("sendAt", send_at),
        ("urgent", urgent),
        ("includeSuppressed", include_suppressed),
    )
    extra: dict[str, Any] = {k: v for k, v in given if v}
    send_plan = plan(send_id, rows.messages, per_request, extra)
    api = Api(current_target())
    if dry_run:
        _preview(api, send_plan, show_numbers, out)
        return
    before = earlier(api, send_id)
    outcomes = _submit(api, send_plan, via, before, out)
    stopped = next((o for o in outcomes if o.code in STOPPING), None)
    if stopped is not None:
        raise _stopped(send_plan, stopped)
    followed = follow(api, send_id, timeout, out) if wait else None
    _conclude(send_plan, via, before, outcomes, followed, out)


def _read(path: Path, columns: Columns, region: str, out: Console) -> Rows:
    sheet = read_sheet(path)
    rows = read_messages(sheet, columns, region.upper() or None)
    separator = {",": "comma", ";": "semicolon", "\t": "tab"}[sheet.delimiter]
    out.print(
        f"{path}: {len(sheet.rows):,} rows ({sheet.encoding}, {separator}-separated): "
        f"{len(rows.messages):,} to send, {len(rows.problems):,} with problems"
    )
    for line, problem in rows.problems[:PROBLEMS_SHOWN]:
        out.print(f"  line {line}: {problem}")
    if len(rows.problems) > PROBLEMS_SHOWN:
        out.print(f"  ... and {len(rows.problems) - PROBLEMS_SHOWN:,} more")
    return rows


def _part_name(send_plan: SendPlan, part: Part) -> str:
    return f"part {part.number}/{len(send_plan.parts)} {part.request_id}"


def _preview(api: Api, send_plan: SendPlan, show_numbers: bool, out: Console) -> None:
    for part in send_plan.parts:
        outcome = post_part(api, send_plan, part, dry_run=True)
        if outcome.code is not Exit.DONE:
            raise _stopped(send_plan, outcome)
        recipients = len({m.to for m in part.messages})
        out.print(
            f"{_part_name(send_plan, part)}: {views.count(len(part.messages), 'message')} to "
            f"{views.count(recipients, 'recipient')} in {views.count(outcome.chunks, 'chunk')} to Ocelot"
        )
        sample = dict((outcome.answer.get("preview") or {}).get("sample") or {})
        if sample:
            messages = sample.get("messages") or []
            first = [dict(m) for m in messages[:1]]
            if not show_numbers:
                for message in first:
                    message["to"] = mask_phone(message.get("to"))
            # The sample holds a few messages; the first chunk's size says how many the request has.
            chunks = outcome.answer.get("chunks") or [{}]
            more = int(chunks[0].get("size") or len(messages)) - len(first)
            sample["messages"] = first + ([f"... {more} more"] if more > 0 else [])
            out.print(f"  first Ocelot request: {json.dumps(sample, ensure_ascii=False)}", soft_wrap=True)
    out.print(
        f"dry run: {send_plan.message_count:,} messages in {len(send_plan.parts)} part(s) validated by the "
        "API; nothing was sent. Run the same command without --dry-run to send them."
    )


def _submit(api: Api, send_plan: SendPlan, via: str, before: Earlier, out: Console) -> list[PartOutcome]:
    """Every part, by the API (stopping at the first that cannot go on) or onto the send queue."""
    outcomes: list[PartOutcome] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
        disable=not out.is_terminal,
    ) as progress:
        task = progress.add_task("sending", total=send_plan.message_count)

        def done(part: Part, line: str, stopped: bool = False) -> None:
            if part.number in before.complete and not stopped:
                line = f"already sent: {line}; nothing sent again"
            progress.console.print(f"{_part_name(send_plan, part)}: {line}")
            progress.advance(task, len(part.messages))

        if via == "sqs":
            enqueue(
                current_target().client("sqs"),
                current_target().queue_url,
                send_plan,
                lambda part: done(part, f"queued ({views.count(len(part.messages), 'message')})"),
            )
            return outcomes
        for part in send_plan.parts:
            outcome = post_part(api, send_plan, part, dry_run=False)
            outcomes.append(outcome)
            done(part, outcome.line, stopped=outcome.code in STOPPING)
            if outcome.code in STOPPING:
                break
    return outcomes


def _stopped(send_plan: SendPlan, outcome: PartOutcome) -> Failure:
    part = outcome.part
    name = _part_name(send_plan, part)
    later = len(send_plan.parts) - part.number
    not_sent = f"; the {later} part(s) after it were not sent" if later else ""
    again = "run the same command again: what was accepted is not sent twice"
    match outcome.code:
        case Exit.CONFLICT if outcome.answer.get("error") == "cancelled":
            message = f"{name}: {outcome.line}; to send these messages, choose a new --send-id"
        case Exit.CONFLICT:
            message = (
                f"send id {send_plan.send_id!r} was used before for other messages ({outcome.line}): "
                f"see what it holds with `ocelot-sms status {send_plan.send_id}`; to send this file, "
                "choose a new --send-id"
            )
        case Exit.REJECTED:
            fix = "Fix the cause (sender number, operator, text), then"
            message = f"{name}: {outcome.line}{not_sent}. {fix} {again}"
        case Exit.UNAVAILABLE:
            message = f"{name}: {outcome.line}{not_sent}. Later, {again}"
        case _:
            message = f"{name}: {outcome.line}{not_sent}"
    return Failure(message, outcome.code)


def _conclude(
    send_plan: SendPlan,
    via: str,
    before: Earlier,
    outcomes: Sequence[PartOutcome],
    followed: Followed | None,
    out: Console,
) -> None:
    send_id = send_plan.send_id
    look = f"`ocelot-sms status {send_id}`"
    if followed is not None:
        _after_wait(send_id, followed, out)
        return
    if via == "sqs":
        raise Failure(
            f"queued: {send_plan.message_count:,} messages in {len(send_plan.parts)} part(s) of send "
            f"{send_id} are on the send queue; nothing is confirmed yet: follow them with {look}, or "
            "send with --wait",
            Exit.UNKNOWN,
        )
    scheduled = [o for o in outcomes if o.scheduled_for]
    if scheduled and len(scheduled) == len(outcomes):
        out.print(
            f"scheduled: {views.count(send_plan.message_count, 'message')} of send {send_id} will be sent at "
            f"{when(scheduled[0].answer)}; {look} shows them, `ocelot-sms cancel {send_id}` cancels them "
            "until then"
        )
        return
    unknown = sum(o.unknown for o in outcomes)
    suppressed = sum(o.suppressed for o in outcomes)
    again = len(before.complete) == len(send_plan.parts)
    if unknown:
        accepted = send_plan.message_count - unknown - suppressed
        prefix = "nothing was sent again; " if again else f"{accepted:,} accepted by Ocelot; "
        raise Failure(
            f"{prefix}{unknown:,} message(s) of send {send_id} have an unknown outcome: Ocelot may or may "
            f"not have them, and they are never re-sent automatically; see {look} and "
            "`ocelot-sms reconcile list`",
            Exit.UNKNOWN,
        )
    if again:
        out.print(
            f"nothing was sent again: send {send_id} was already sent ({send_plan.message_count:,} messages, "
            f"created {before.created_at}); see {look}"
        )
        return
    taken = views.count(send_plan.message_count - suppressed, "message")
    left_out = (
        f" ({suppressed:,} left out: their numbers are suppressed; `ocelot-sms suppression list`)"
        if suppressed
        else ""
    )
    parts = views.count(len(send_plan.parts), "part")
    out.print(
        f"done: {taken} of send {send_id} accepted by Ocelot in {parts}{left_out}; "
        f"follow them with {look} (or send with --wait)"
    )


def _after_wait(send_id: str, followed: Followed, out: Console) -> None:
    look = f"`ocelot-sms status {send_id} --output csv`"
    view = followed.view
    if view is not None:
        out.print(views.counts_table(view["counts"]))
    if not followed.finished:
        pending = sum(n for s, n in (view or {}).get("counts", {}).items() if s not in views.FINAL)
        raise Failure(
            f"still waiting after {followed.waited:.0f}s: {pending:,} message(s) of send {send_id} are not "
            f"final yet; look again later with `ocelot-sms status {send_id}`",
            Exit.UNKNOWN,
        )
    assert view is not None
    counts = view["counts"]
    no_outcome = sum(counts.get(s, 0) for s in views.NO_OUTCOME)
    if no_outcome:
        raise Failure(
            f"finished: {no_outcome:,} message(s) of send {send_id} have no known outcome "
            f"({views.summary(counts)}); {look} lists them, `ocelot-sms reconcile list` the chunks to "
            "resolve",
            Exit.UNKNOWN,
        )
    not_delivered = sum(counts.get(s, 0) for s in views.NOT_DELIVERED)
    reasons = f"; {look} gives each one's reason" if not_delivered else ""
    out.print(
        f"done: all {view['messageCount']:,} messages of send {send_id} are final: "
        f"{views.summary(counts)}{reasons}"
    )


# ---- status and sends ------------------------------------------------------------------------------


@click.command()
@click.argument("send_id", required=False, metavar="[SEND_ID]")
@click.option("--message", "message_id", default=None, help="Show one message's history instead.")
@OUTPUT_OPTION
@SHOW_NUMBERS_OPTION
@pass_target
def status(
    target: Target, send_id: str | None, message_id: str | None, output: str, show_numbers: bool
) -> None:
    """A send's counts, parts and every message (a part's request id shows that part), or with
    --message one message's history."""
    if not (send_id or message_id):
        raise click.UsageError("give a SEND_ID or --message MESSAGE_ID")
    api = Api(target)
    if message_id:
        _show_message(api, message_id, output, show_numbers)
        return
    assert send_id is not None
    view = _send_view(api, send_id)
    if output == "json":
        views.write_json(views.masked_view(view, show_numbers))
    elif output == "csv":
        views.write_csv(views.message_rows_csv(view, show_numbers))
    else:
        views.print_send(view, show_numbers, views.console())


def _send_view(api: Api, send_id: str) -> dict[str, Any]:
    """Every page of the send; for a batch that is not a send of its own, that batch as a send of one
    part, with a note on which send it belongs to."""
    try:
        pages = list(api.pages(f"/sends/{quoted(send_id)}", {"limit": 500}))
    except NotFoundError:
        pages = []
    if pages:
        return {**pages[0], "messages": [m for p in pages for m in p["messages"]]}
    try:
        batches = list(api.pages(f"/batches/{quoted(send_id)}", {"limit": 500}))
    except NotFoundError:
        raise Failure(
            f"no send or batch {send_id!r}: check the id; `ocelot-sms sends` lists recent sends", Exit.INVALID
        ) from None
    batch = batches[0]
    part = batch.get("send")
    if part:
        views.console(stderr=True).print(
            f"{send_id} is part {part['part']} of {part['parts']} of send {part['sendId']}: showing this "
            f"part alone (`ocelot-sms status {part['sendId']}` shows the whole send)"
        )
    return {
        "sendId": send_id,
        "createdAt": batch.get("createdAt"),
        "partCount": 1,
        "partsRecorded": 1,
        "messageCount": batch["messageCount"],
        "counts": batch["counts"],
        "parts": [],
        "missingParts": [],
        "unknownChunks": batch["unknownChunks"],
        "schedule": batch.get("schedule"),
        "messages": [m for p in batches for m in p["messages"]],
    }


def _show_message(api: Api, message_id: str, output: str, show_numbers: bool) -> None:
    try:
        view = api.get(f"/messages/{quoted(message_id)}")
    except NotFoundError:
        raise Failure(
            f"no message {message_id!r}: check the id (the Ocelot message id)", Exit.INVALID
        ) from None
    if output == "json":
        shown = view if show_numbers else {**view, "to": mask_phone(view.get("to")) or None}
        views.write_json(shown)
    elif output == "csv":
        views.write_csv(views.history_csv(view))
    else:
        views.print_message(view, show_numbers, views.console())


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Sends to list.")
@OUTPUT_OPTION
@pass_target
def sends(target: Target, limit: int, output: str) -> None:
    """Recent sends, newest first, with their counts."""
    listed: list[dict[str, Any]] = []
    for page in Api(target).pages("/sends", {"limit": min(limit, 100)}):
        listed.extend(page["sends"])
        if len(listed) >= limit:
            break
    listed = listed[:limit]
    if output == "json":
        views.write_json({"sends": listed})
    elif output == "csv":
        views.write_csv(views.sends_csv(listed))
    else:
        views.print_sends(listed, views.console())


# ---- reconcile -------------------------------------------------------------------------------------


@click.group()
def reconcile() -> None:
    """Chunks whose send outcome is unknown: list them, attach Ocelot's ids, or resend explicitly."""


@reconcile.command("list")
@pass_target
def reconcile_list(target: Target) -> None:
    """Chunks whose outcome is unknown, and chunks whose sending was interrupted."""
    from ocelot_sms.runtime import store

    out = views.console()
    chunks = store().unknown_chunks()
    for chunk in chunks:
        out.print(f"{chunk.request_id} chunk {chunk.index} ({chunk.size} messages): {chunk.reason}")
    out.print(f"{len(chunks)} chunk(s) with an unknown outcome")


@reconcile.command("attach")
@click.argument("request_id")
@click.argument("chunk_index", type=int)
@click.option("--batch-id", default=None, help="Ocelot's batch id (from the Admin Portal, or a candidate).")
@click.option(
    "--message-ids", default=None, help="Ocelot's message ids, comma-separated, in the chunk's order."
)
@click.option("--yes", is_flag=True, help="Attach the best complete candidate without asking.")
@pass_target
def reconcile_attach(
    target: Target,
    request_id: str,
    chunk_index: int,
    batch_id: str | None,
    message_ids: str | None,
    yes: bool,
) -> None:
    """Record Ocelot's ids for a chunk whose outcome is unknown. Without --batch-id and --message-ids,
    the stored callbacks for the chunk's recipients whose ids no message has are offered as candidates."""
    from ocelot_sms.reconcile import attach_ids, unknown_chunk
    from ocelot_sms.runtime import store

    out = views.console()
    if batch_id is None or message_ids is None:
        if batch_id is not None or message_ids is not None:
            raise Failure(
                "give both --batch-id and --message-ids, or neither (to see candidates)", Exit.INVALID
            )
        batch_id, ids = _choose_candidate(store(), unknown_chunk(store(), request_id, chunk_index), yes, out)
    else:
        ids = [m.strip() for m in message_ids.split(",")]
    count = attach_ids(store(), request_id, chunk_index, batch_id.strip(), ids)
    out.print(f"chunk {chunk_index} of {request_id}: accepted, {count} message ids recorded")


def _choose_candidate(store: Any, chunk: Any, yes: bool, out: Console) -> tuple[str, list[str]]:
    from ocelot_sms_cli.reconcile import candidates

    found = candidates(store, chunk, datetime.now(UTC))
    for candidate in found:
        out.print(
            f"candidate: Ocelot batch {candidate.batch_id}: {candidate.matched} of "
            f"{len(candidate.recipients)} recipients have callbacks with ids no message has"
        )
        for to, message_id in zip(candidate.recipients, candidate.message_ids, strict=True):
            out.print(f"  {mask_phone(to)}  {message_id or '(none)'}")
    complete = [c for c in found if c.complete]
    if not complete:
        raise Failure(
            f"no complete candidate among the callbacks stored since the chunk was sent "
            f"({len(found)} partial): find the batch in Ocelot's Admin Portal and pass --batch-id and "
            "--message-ids",
            Exit.UNKNOWN,
        )
    best = complete[0]
    question = f"attach Ocelot batch {best.batch_id}'s ids to chunk {chunk.index} of {chunk.request_id}?"
    if not (yes or click.confirm(question, default=False)):
        raise Failure("nothing attached: the chunk's outcome is still unknown", Exit.UNKNOWN)
    return best.batch_id, [m for m in best.message_ids if m]


@reconcile.command("resend")
@click.argument("request_id")
@click.argument("chunk_index", type=int)
@click.option("--yes", is_flag=True, help="Confirm: the recipients may get the text twice.")
@pass_target
def reconcile_resend(target: Target, request_id: str, chunk_index: int, yes: bool) -> None:
    """Send a chunk whose outcome is unknown again (its recipients may get the text twice)."""
    from ocelot_sms.reconcile import resend_chunk
    from ocelot_sms.runtime import ocelot_client, store

    if not yes:
        raise Failure("resending may text every recipient of the chunk twice: pass --yes", Exit.INVALID)
    outcome = resend_chunk(store(), ocelot_client(), request_id, chunk_index)
    views.console().print(
        f"chunk {chunk_index} of {request_id}: {outcome['status']} {outcome.get('reason') or ''}".rstrip()
    )
    if outcome["status"] != "accepted":
        raise Failure(f"chunk {chunk_index} of {request_id} is still unknown", Exit.UNKNOWN)
