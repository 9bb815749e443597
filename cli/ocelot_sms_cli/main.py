"""ocelot-sms: send a CSV, look at a batch or a message, replay callbacks, redrive, reconcile."""

from __future__ import annotations

import csv
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Concatenate
from urllib.parse import quote

import boto3
import click
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Column, Table

from ocelot_sms.errors import DomainError
from ocelot_sms.models import REQUEST_ID_PATTERN, OutgoingMessage, problems_from
from ocelot_sms.observability import logger, mask_phone
from ocelot_sms_cli.target import Target, TargetError, local_target, stack_target

# No markup: refs, ids and Ocelot's reasons are printed as they are ("[/]" is a valid ref).
console = Console(markup=False)
SQS_BATCH = 10
# SendMessageBatch carries at most 1 MiB in all; each message at most the queue's MaximumMessageSize
# (256 KiB on queues created before SQS raised the limit, when the attribute cannot be read).
SQS_BATCH_BYTES = 1_048_576
SQS_MESSAGE_BYTES_FALLBACK = 262_144


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
        while True:
            line = reader.line_num + 1  # where the row starts: a quoted text may span lines
            row = next(reader, None)
            if row is None:
                break
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


def signed(method: str, url: str, target: Target, data: str | None = None) -> requests.Response:
    """A request to the HTTP API signed with SigV4 (the routes use IAM auth); `data` is the JSON body."""
    request = AWSRequest(method=method, url=url, data=data, headers={"Content-Type": "application/json"})
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise click.ClickException("no AWS credentials found to sign the request")
    SigV4Auth(credentials, "execute-api", target.region or "us-east-1").add_auth(request)
    return requests.request(method, url, data=data, headers=dict(request.headers), timeout=(5, 60))


@dataclass(frozen=True)
class _Where:
    """The group's options; the target is looked up when the command runs (so `--help` of any
    command works without a stack)."""

    stack_name: str | None
    use_local: bool
    region: str | None


class _StderrNow:
    """The layer's log lines go to whatever stderr is now: stdout is the command's output."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _resolve(where: _Where) -> Target:
    try:
        if where.use_local or not where.stack_name:
            target = local_target()
        else:
            target = stack_target(where.stack_name, where.region)
    except TargetError as error:
        raise click.ClickException(str(error)) from error
    target.apply_to_environment()
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        stream: Any = _StderrNow()
        handler.setStream(stream)
    return target


def pass_target[**P, R](command: Callable[Concatenate[Target, P], R]) -> Callable[P, R]:
    @functools.wraps(command)
    def with_target(*args: P.args, **kwargs: P.kwargs) -> R:
        where = click.get_current_context().find_object(_Where)
        assert where is not None  # set by the group
        return command(_resolve(where), *args, **kwargs)

    return with_target


@click.group()
@click.option(
    "--stack", "stack_name", envvar="OCELOT_SMS_STACK", help="Deployed stack name (outputs are read)."
)
@click.option("--local", "use_local", is_flag=True, help="Use the local stack (.local/stack.json).")
@click.option("--region", envvar="AWS_REGION", default=None)
@click.pass_context
def cli(ctx: click.Context, stack_name: str | None, use_local: bool, region: str | None) -> None:
    """Send texts through Ocelot and follow what happened to them."""
    ctx.obj = _Where(stack_name, use_local, region)


@cli.command()
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--request-id", required=True, help="Your idempotency key; a rerun sends nothing twice.")
@click.option("--via", type=click.Choice(["api", "sqs"]), default="api", show_default=True)
@click.option("--from", "sender", default=None, help="Sender number (default: the stack's).")
@click.option("--operator-id", default=None)
@click.option("--per-request", default=1000, show_default=True, help="Messages per request.")
@click.option("--dry-run", is_flag=True, help="Validate through the API; send nothing.")
@click.option("--skip-invalid", is_flag=True, help="Send the valid rows even if some are invalid.")
@pass_target
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
    bodies = _request_bodies(request_id, rows.messages, per_request, extra, dry_run)
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("sending", total=len(rows.messages))
        if via == "sqs":
            failures = _enqueue(target, bodies, lambda count: progress.advance(task, count))
        else:
            failures = _post(target, bodies, progress, lambda count: progress.advance(task, count))
    if failures:
        raise click.ClickException(f"{failures} request(s) failed; rerun with the same --request-id")
    console.print(f"done: {len(rows.messages)} messages via {via}")


Body = tuple[str, int, str]  # part id, messages, JSON body


def _request_bodies(
    request_id: str, messages: list[OutgoingMessage], per_request: int, extra: dict[str, str], dry_run: bool
) -> list[Body]:
    split = list(parts(request_id, messages, per_request))
    # Checked before anything is sent: a part id the API refuses would fail every part.
    if not all(re.fullmatch(REQUEST_ID_PATTERN, part_id) for part_id, _ in split):
        raise click.BadParameter(
            f"{split[-1][0]!r} is not a valid requestId ({REQUEST_ID_PATTERN}); with several parts the "
            "id gets a -pNNNN suffix, so keep it to 122 characters",
            param_hint="'--request-id'",
        )
    return [
        (
            part_id,
            len(part),
            json.dumps(
                {
                    "requestId": part_id,
                    **extra,
                    "dryRun": dry_run,
                    "messages": [m.model_dump(exclude_none=True) for m in part],
                }
            ),
        )
        for part_id, part in split
    ]


def _post(target: Target, bodies: list[Body], progress: Progress, advance: Callable[[int], None]) -> int:
    failures = 0
    for part_id, count, body in bodies:
        response = signed("POST", f"{target.api_url.rstrip('/')}/batches", target, body)
        if response.status_code >= 300:
            failures += 1
            progress.console.print(f"{part_id}: HTTP {response.status_code} {response.text[:300]}")
        advance(count)
    return failures


def _enqueue(target: Target, bodies: list[Body], advance: Callable[[int], None]) -> int:
    sqs = target.client("sqs")
    limit = _max_message_bytes(sqs, target.queue_url)
    too_large = [part_id for part_id, _, body in bodies if len(body.encode()) > limit]
    if too_large:
        raise click.ClickException(
            f"{too_large[0]} is larger than a queue message may be ({limit} bytes): lower --per-request"
        )
    pending: list[dict[str, str]] = []
    failures = 0
    for _, count, body in bodies:
        if pending and _batch_bytes(pending) + len(body.encode()) > SQS_BATCH_BYTES:
            failures += _flush(sqs, target.queue_url, pending)
        pending.append({"Id": str(len(pending)), "MessageBody": body})
        if len(pending) == SQS_BATCH:
            failures += _flush(sqs, target.queue_url, pending)
        advance(count)
    if pending:
        failures += _flush(sqs, target.queue_url, pending)
    return failures


def _max_message_bytes(sqs: Any, queue_url: str) -> int:
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])
        return int(attributes["Attributes"]["MaximumMessageSize"])
    except Exception:  # no permission to read it, or an old API: the smallest limit SQS ever had
        return SQS_MESSAGE_BYTES_FALLBACK


def _batch_bytes(entries: list[dict[str, str]]) -> int:
    return sum(len(e["MessageBody"].encode()) for e in entries)


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
@pass_target
def status(target: Target, request_id: str | None, message_id: str | None, as_json: bool) -> None:
    """A batch's counts and messages, or (--message) one message's history."""
    if not (request_id or message_id):
        raise click.UsageError("give a REQUEST_ID or --message MESSAGE_ID")
    path = (
        f"/messages/{quote(message_id, safe='')}"
        if message_id
        else f"/batches/{quote(request_id or '', safe='')}"
    )
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
    # Ids are folded, never cut short: an operator copies them into `status --message`.
    table = Table("ref", "to", Column("message id", overflow="fold"), "status", "at")
    for m in result["messages"]:
        table.add_row(
            str(m.get("ref") or m["index"]),
            mask_phone(m.get("to")),
            m.get("messageId") or "-",
            m["status"],
            m.get("statusAt") or "",
        )
    console.print(table)


class Instant(click.ParamType):
    """An ISO 8601 instant (UTC when it has no offset), or a date: its start, or with `end_of_day` its
    last microsecond (so `--until 2026-11-26` includes that day)."""

    name = "instant"

    def __init__(self, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                moment = time.max if self.end_of_day else time.min
                return datetime.combine(day, moment, tzinfo=UTC)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO date or instant (2026-11-26, 2026-11-26T16:00:00Z)", param, ctx
            )
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@cli.command()
@click.option("--since", required=True, type=Instant(), help="ISO date or instant (UTC if no offset).")
@click.option(
    "--until",
    default=None,
    type=Instant(end_of_day=True),
    help="ISO date (inclusive) or instant; default now.",
)
@pass_target
def replay(target: Target, since: datetime, until: datetime | None) -> None:
    """Apply stored raw callbacks again, through the current contract (idempotent)."""
    from ocelot_sms.applier import replay_deliveries
    from ocelot_sms.runtime import applier_service, store

    report = replay_deliveries(store(), applier_service(), since, until or datetime.now(UTC))
    click.echo(json.dumps(report.to_json(), indent=2))


@cli.command()
@click.option("--max-messages", default=1000, show_default=True, type=click.IntRange(min=1))
@pass_target
def redrive(target: Target, max_messages: int) -> None:
    """Move messages from the dead-letter queue back to the send queue."""
    from ocelot_sms_cli.redrive import redrive_queue

    moved = redrive_queue(target.client("sqs"), target.dlq_url, target.queue_url, max_messages)
    console.print(f"moved {moved} message(s) from the dead-letter queue to the send queue")


@cli.group()
def reconcile() -> None:
    """Chunks whose send outcome is unknown: list them, attach Ocelot's ids, or resend explicitly."""


@reconcile.command("list")
@pass_target
def reconcile_list(target: Target) -> None:
    from ocelot_sms.runtime import store

    chunks = store().unknown_chunks()
    for chunk in chunks:
        console.print(f"{chunk.request_id} chunk {chunk.index} ({chunk.size} messages): {chunk.reason}")
    console.print(f"{len(chunks)} chunk(s) with an unknown outcome")


@reconcile.command("attach")
@click.argument("request_id")
@click.argument("chunk_index", type=int)
@click.option("--batch-id", required=True, help="Ocelot's batch id, from the Admin Portal.")
@click.option(
    "--message-ids", required=True, help="Ocelot's message ids, comma-separated, in the chunk's order."
)
@pass_target
def reconcile_attach(
    target: Target, request_id: str, chunk_index: int, batch_id: str, message_ids: str
) -> None:
    from ocelot_sms.reconcile import attach_ids
    from ocelot_sms.runtime import store

    with _operator_errors():
        count = attach_ids(
            store(), request_id, chunk_index, batch_id.strip(), [m.strip() for m in message_ids.split(",")]
        )
    console.print(f"chunk {chunk_index} of {request_id}: accepted, {count} message ids recorded")


@reconcile.command("resend")
@click.argument("request_id")
@click.argument("chunk_index", type=int)
@click.option("--yes", is_flag=True, help="Confirm: the recipients may get the text twice.")
@pass_target
def reconcile_resend(target: Target, request_id: str, chunk_index: int, yes: bool) -> None:
    from ocelot_sms.reconcile import resend_chunk
    from ocelot_sms.runtime import ocelot_client, store

    if not yes:
        raise click.ClickException("resending may text every recipient of the chunk twice: pass --yes")
    with _operator_errors():
        outcome = resend_chunk(store(), ocelot_client(), request_id, chunk_index)
    console.print(f"chunk {chunk_index} of {request_id}: {outcome['status']} {outcome.get('reason') or ''}")
    if outcome["status"] != "accepted":
        raise click.ClickException(f"chunk {chunk_index} of {request_id} is still unknown")


@contextmanager
def _operator_errors() -> Iterator[None]:
    """What an operator got wrong (a wrong id count, a chunk that is not unknown) as a message."""
    try:
        yield
    except DomainError as error:
        raise click.ClickException(str(error)) from error


@cli.group("webhook-credentials")
def webhook_credentials() -> None:
    """The credentials Ocelot presents to the webhook."""


@webhook_credentials.command("rotate")
@click.option(
    "--overlap",
    default=24,
    show_default=True,
    type=click.IntRange(min=1),
    help="Hours the current credentials keep working: the time to change Ocelot's configuration.",
)
@pass_target
def webhook_credentials_rotate(target: Target, overlap: int) -> None:
    """New webhook credentials; the current ones keep working for --overlap hours."""
    from ocelot_sms_cli.webhook_credentials import rotate

    if not target.webhook_secret_id:
        raise click.ClickException("this stack names no webhook secret (output WebhookSecretId)")
    value = rotate(
        target.client("secretsmanager"), target.webhook_secret_id, timedelta(hours=overlap), datetime.now(UTC)
    )
    lines = [f"username: {value['username']}", f"password: {value['password']}"]
    if "token" in value:
        lines.append(f"token:    {value['token']}  (the webhook URL's ?token=)")
    until = value.get("previous", {}).get("acceptedUntil")
    if until:
        lines += [
            f"Set these in Ocelot's Admin Portal (Integrations > Ocelot API) before {until}:",
            "until then the previous credentials are accepted too.",
        ]
    for line in lines:
        # Never wrapped: an operator copies these.
        console.print(line, soft_wrap=True)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
