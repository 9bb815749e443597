"""ocelot-sms: send a CSV, look at a batch or a message, replay callbacks, redrive, reconcile."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import click
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ocelot_sms.models import OutgoingMessage, problems_from
from ocelot_sms.observability import mask_phone
from ocelot_sms_cli.target import Target, TargetError, local_target, stack_target

console = Console()
SQS_BATCH = 10


@dataclass
class Rows:
    messages: list[OutgoingMessage]
    problems: list[tuple[int, str, str]]  # (line, field, message)


def read_csv(path: Path) -> Rows:
    """Rows of to,text,ref (header required); every bad row is reported, none silently dropped."""
    messages: list[OutgoingMessage] = []
    problems: list[tuple[int, str, str]] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"to", "text"} - set(reader.fieldnames or ())
        if missing:
            raise click.UsageError(
                f"{path}: the header must name the columns to,text[,ref]; missing {sorted(missing)}"
            )
        refs: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            try:
                message = OutgoingMessage(
                    to=(row.get("to") or "").strip(),
                    text=row.get("text") or "",
                    ref=(row.get("ref") or "").strip() or None,
                )
            except ValidationError as error:
                problems.extend((line, p.field, p.message) for p in problems_from(error))
                continue
            if message.ref is not None and message.ref in refs:
                problems.append((line, "ref", f"repeats line {refs[message.ref]}"))
                continue
            if message.ref is not None:
                refs[message.ref] = line
            messages.append(message)
    return Rows(messages, problems)


def parts(
    request_id: str, messages: list[OutgoingMessage], size: int
) -> Iterator[tuple[str, list[OutgoingMessage]]]:
    count = (len(messages) + size - 1) // size
    for number, start in enumerate(range(0, len(messages), size)):
        yield (request_id if count == 1 else f"{request_id}-p{number:04d}"), messages[start : start + size]


def signed(method: str, url: str, target: Target, body: dict[str, Any] | None = None) -> requests.Response:
    """A request to the HTTP API signed with SigV4 (the routes use IAM auth)."""
    data = json.dumps(body) if body is not None else None
    request = AWSRequest(method=method, url=url, data=data, headers={"Content-Type": "application/json"})
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise click.ClickException("no AWS credentials found to sign the request")
    SigV4Auth(credentials, "execute-api", target.region or "us-east-1").add_auth(request)
    return requests.request(method, url, data=data, headers=dict(request.headers), timeout=(5, 60))


@click.group()
@click.option(
    "--stack", "stack_name", envvar="OCELOT_SMS_STACK", help="Deployed stack name (outputs are read)."
)
@click.option("--local", "use_local", is_flag=True, help="Use the local stack (.local/stack.json).")
@click.option("--region", envvar="AWS_REGION", default=None)
@click.pass_context
def cli(ctx: click.Context, stack_name: str | None, use_local: bool, region: str | None) -> None:
    """Send texts through Ocelot and follow what happened to them."""
    try:
        target = local_target() if use_local or not stack_name else stack_target(stack_name, region)
    except TargetError as error:
        raise click.ClickException(str(error)) from error
    target.apply_to_environment()
    ctx.obj = target


@cli.command()
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--request-id", required=True, help="Your idempotency key; a rerun sends nothing twice.")
@click.option("--via", type=click.Choice(["api", "sqs"]), default="api", show_default=True)
@click.option("--from", "sender", default=None, help="Sender number (default: the stack's).")
@click.option("--operator-id", default=None)
@click.option("--per-request", default=1000, show_default=True, help="Messages per request.")
@click.option("--dry-run", is_flag=True, help="Validate through the API; send nothing.")
@click.option("--skip-invalid", is_flag=True, help="Send the valid rows even if some are invalid.")
@click.pass_obj
def send(
    target: Target,
    csv_file: Path,
    request_id: str,
    via: str,
    sender: str | None,
    operator_id: str | None,
    per_request: int,
    dry_run: bool,
    skip_invalid: bool,
) -> None:
    """Send the texts in CSV_FILE (columns to,text,ref)."""
    rows = read_csv(csv_file)
    console.print(f"{csv_file}: {len(rows.messages)} valid rows, {len(rows.problems)} problems")
    for line, field, message in rows.problems[:50]:
        console.print(f"  line {line}: {field}: {message}", style="red")
    if rows.problems and not skip_invalid:
        raise click.ClickException("fix the rows above, or pass --skip-invalid")
    if not rows.messages:
        raise click.ClickException("nothing to send")
    extra = {k: v for k, v in (("from", sender), ("operatorId", operator_id)) if v}
    sqs = target.client("sqs") if via == "sqs" else None
    pending: list[dict[str, str]] = []
    failures = 0
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("sending", total=len(rows.messages))
        for part_id, messages in parts(request_id, rows.messages, per_request):
            body = {
                "requestId": part_id,
                **extra,
                "dryRun": dry_run,
                "messages": [m.model_dump(exclude_none=True) for m in messages],
            }
            if sqs is None:
                response = signed("POST", f"{target.api_url.rstrip('/')}/batches", target, body)
                if response.status_code >= 300:
                    failures += 1
                    progress.console.print(f"{part_id}: HTTP {response.status_code} {response.text[:300]}")
            else:
                pending.append({"Id": str(len(pending)), "MessageBody": json.dumps(body)})
                if len(pending) == SQS_BATCH:
                    failures += _flush(sqs, target.queue_url, pending)
            progress.advance(task, len(messages))
        if sqs is not None and pending:
            failures += _flush(sqs, target.queue_url, pending)
    if failures:
        raise click.ClickException(f"{failures} request(s) failed; rerun with the same --request-id")
    console.print(f"done: {len(rows.messages)} messages via {via}")


def _flush(sqs: Any, queue_url: str, entries: list[dict[str, str]]) -> int:
    result = sqs.send_message_batch(QueueUrl=queue_url, Entries=list(entries))
    entries.clear()
    for failed in result.get("Failed", []):
        console.print(f"queue refused a request: {failed.get('Message')}", style="red")
    return len(result.get("Failed", []))


@cli.command()
@click.argument("request_id", required=False)
@click.option("--message", "message_id", default=None, help="Show one message's history instead.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(target: Target, request_id: str | None, message_id: str | None, as_json: bool) -> None:
    """A batch's counts and messages, or (--message) one message's history."""
    if not (request_id or message_id):
        raise click.UsageError("give a REQUEST_ID or --message MESSAGE_ID")
    path = f"/messages/{message_id}" if message_id else f"/batches/{request_id}"
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        url = f"{target.api_url.rstrip('/')}{path}" + (f"?cursor={cursor}" if cursor else "")
        response = signed("GET", url, target)
        if response.status_code != 200:
            raise click.ClickException(f"HTTP {response.status_code}: {response.text[:300]}")
        pages.append(response.json())
        cursor = pages[-1].get("nextCursor")
        if not cursor:
            break
    result = pages[0] | (
        {"messages": [m for p in pages for m in p.get("messages", [])]} if request_id else {}
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if message_id:
        console.print(
            f"{message_id}: {result['status']} (request {result.get('requestId')}, ref {result.get('ref')})"
        )
        for event in result["history"]:
            console.print(f"  {event['eventTime']}  {event['status']}  {event['eventId']}")
        return
    console.print(f"{request_id}: {result['counts']}")
    for chunk in result["unknownChunks"]:
        console.print(f"  chunk {chunk['index']} UNKNOWN: {chunk['reason']}", style="yellow")
    table = Table("ref", "to", "message id", "status", "at")
    for m in result["messages"]:
        table.add_row(
            str(m.get("ref") or m["index"]),
            mask_phone(m.get("to")),
            m.get("messageId") or "-",
            m["status"],
            m.get("statusAt") or "",
        )
    console.print(table)


@cli.command()
@click.option("--since", required=True, help="ISO date or instant (UTC if no offset).")
@click.option("--until", default=None, help="ISO date or instant; default now.")
@click.pass_obj
def replay(target: Target, since: str, until: str | None) -> None:
    """Re-process stored raw callbacks through the current contract (idempotent)."""
    from ocelot_sms.operations import replay_deliveries
    from ocelot_sms.runtime import callback_service, store

    end = _instant(until) if until else datetime.now(UTC)
    report = replay_deliveries(store(), callback_service(), _instant(since), end)
    click.echo(json.dumps(report, indent=2))


@cli.command()
@click.option("--max-messages", default=1000, show_default=True)
@click.pass_obj
def redrive(target: Target, max_messages: int) -> None:
    """Move messages from the dead-letter queue back to the send queue."""
    from ocelot_sms.operations import redrive_queue

    moved = redrive_queue(target.client("sqs"), target.dlq_url, target.queue_url, max_messages)
    console.print(f"moved {moved} message(s) from the dead-letter queue to the send queue")


@cli.group()
def reconcile() -> None:
    """Chunks whose send outcome is unknown: list them, attach Ocelot's ids, or resend explicitly."""


@reconcile.command("list")
@click.pass_obj
def reconcile_list(target: Target) -> None:
    from ocelot_sms.operations import unknown_chunks
    from ocelot_sms.runtime import store

    chunks = unknown_chunks(store())
    for chunk in chunks:
        console.print(
            f"{chunk['requestId']} chunk {chunk['index']} ({chunk['size']} messages): {chunk.get('reason')}"
        )
    console.print(f"{len(chunks)} chunk(s) with an unknown outcome")


@reconcile.command("attach")
@click.argument("request_id")
@click.argument("chunk_index", type=int)
@click.option("--batch-id", required=True, help="Ocelot's batch id, from the Admin Portal.")
@click.option(
    "--message-ids", required=True, help="Ocelot's message ids, comma-separated, in the chunk's order."
)
@click.pass_obj
def reconcile_attach(
    target: Target, request_id: str, chunk_index: int, batch_id: str, message_ids: str
) -> None:
    from ocelot_sms.operations import attach_ids
    from ocelot_sms.runtime import store

    count = attach_ids(
        store(), request_id, chunk_index, batch_id, [m.strip() for m in message_ids.split(",")]
    )
    console.print(f"chunk {chunk_index} of {request_id}: accepted, {count} message ids recorded")


@reconcile.command("resend")
@click.argument("request_id")
@click.argument("chunk_index", type=int)
@click.option("--yes", is_flag=True, help="Confirm: the recipients may get the text twice.")
@click.pass_obj
def reconcile_resend(target: Target, request_id: str, chunk_index: int, yes: bool) -> None:
    from ocelot_sms.operations import resend_chunk
    from ocelot_sms.runtime import ocelot_client, store

    if not yes:
        raise click.ClickException("resending may text every recipient of the chunk twice: pass --yes")
    outcome = resend_chunk(store(), ocelot_client(), request_id, chunk_index)
    console.print(f"chunk {chunk_index} of {request_id}: {outcome['status']} {outcome.get('reason') or ''}")


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
