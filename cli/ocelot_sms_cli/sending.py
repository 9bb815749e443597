"""A send: the file's messages in parts of at most --per-request, each part one request to the API (or
one queue message) that names the send, its number and the number of parts; then what happened to
each, and the one exit code that says it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from ocelot_sms.models import REQUEST_ID_PATTERN, OutgoingMessage
from ocelot_sms_cli.api import Api, NotFoundError, error_message, quoted
from ocelot_sms_cli.exits import Exit, Failure
from ocelot_sms_cli.views import count

SQS_BATCH = 10
# SendMessageBatch carries at most 1 MiB in all; each message at most the queue's MaximumMessageSize
# (256 KiB on queues created before SQS raised the limit, when the attribute cannot be read).
SQS_BATCH_BYTES = 1_048_576
SQS_MESSAGE_BYTES_FALLBACK = 262_144
# Statuses of a message that say nothing was sent for it yet (a rerun sends it, or answers when).
UNSENT = frozenset({"not_sent", "sending", "scheduled"})


@dataclass(frozen=True)
class Part:
    number: int
    request_id: str
    messages: tuple[OutgoingMessage, ...]


@dataclass(frozen=True)
class SendPlan:
    send_id: str
    parts: tuple[Part, ...]
    extra: dict[str, Any]  # from, operatorId, sendAt, urgent, includeSuppressed when given

    @property
    def message_count(self) -> int:
        return sum(len(p.messages) for p in self.parts)

    def body(self, part: Part, dry_run: bool = False) -> str:
        return json.dumps(
            {
                "requestId": part.request_id,
                "sendId": self.send_id,
                "part": part.number,
                "parts": len(self.parts),
                **self.extra,
                "dryRun": dry_run,
                "messages": [m.model_dump(exclude_none=True) for m in part.messages],
            }
        )


def plan(
    send_id: str, messages: Sequence[OutgoingMessage], per_request: int, extra: dict[str, Any]
) -> SendPlan:
    """The parts: one request of the send's own id, or several named {sendId}-p0001, -p0002..."""
    count = (len(messages) + per_request - 1) // per_request
    parts = tuple(
        Part(
            number,
            send_id if count == 1 else f"{send_id}-p{number:04d}",
            tuple(messages[start : start + per_request]),
        )
        for number, start in enumerate(range(0, len(messages), per_request), start=1)
    )
    # Checked before anything is sent: a part id the API refuses would fail every part.
    if not all(re.fullmatch(REQUEST_ID_PATTERN, p.request_id) for p in parts):
        raise Failure(
            f"--send-id {send_id!r} is not a valid id (letters, digits, . _ : -, at most 128 characters"
            f"{'; with several parts each part adds -pNNNN, so at most 122' if count > 1 else ''})",
            Exit.INVALID,
        )
    return SendPlan(send_id, parts, extra)


@dataclass
class PartOutcome:
    part: Part
    code: Exit
    line: str  # what happened to the part, for the screen
    accepted: int = 0
    unknown: int = 0
    chunks: int = 0
    answer: dict[str, Any] = field(default_factory=dict)
    suppressed: int = 0
    scheduled_for: str | None = None


@dataclass
class Earlier:
    """What the stack held of this send before this run: parts complete then (nothing left to send)."""

    created_at: str | None = None
    complete: frozenset[int] = frozenset()
    part_count: int = 0


def earlier(api: Api, send_id: str) -> Earlier:
    try:
        view = api.get(f"/sends/{quoted(send_id)}", {"limit": 0})
    except NotFoundError:
        return Earlier()
    complete = frozenset(p["part"] for p in view.get("parts", []) if not UNSENT & set(p.get("counts", {})))
    return Earlier(view.get("createdAt"), complete, view.get("partCount", 0))


def post_part(api: Api, plan_: SendPlan, part: Part, dry_run: bool) -> PartOutcome:
    try:
        response = api.request("POST", "/batches", plan_.body(part, dry_run))
    except requests.RequestException as error:
        return PartOutcome(
            part,
            Exit.UNAVAILABLE,
            f"could not reach the API ({type(error).__name__}): check the network, then run the same "
            "command again: what was accepted is not sent twice",
        )
    return interpret(part, response)


def interpret(part: Part, response: requests.Response) -> PartOutcome:
    """The part's outcome from the API's answer (the README's table of statuses)."""
    status = response.status_code
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if status in (200, 201, 202) and isinstance(body, dict):
        return _sent(part, status, body)
    reason = error_message(response)
    if status in (400, 422):
        return PartOutcome(part, Exit.INVALID, f"the API refused it as invalid: {reason}", answer=body)
    if status == 409 and body.get("error") == "cancelled":
        return PartOutcome(
            part, Exit.CONFLICT, "it was cancelled before it was sent (never sent)", answer=body
        )
    if status == 409 and body.get("error") == "in_progress":
        return PartOutcome(
            part,
            Exit.UNAVAILABLE,
            "another run is sending it right now: wait a minute, then run the same command again",
            answer=body,
        )
    if status == 409:
        return PartOutcome(part, Exit.CONFLICT, reason, answer=body)
    if status == 502:
        ocelot = (body.get("details") or {}).get("ocelot") or {}
        said = ocelot.get("message") or reason
        return PartOutcome(part, Exit.REJECTED, f"Ocelot rejected it: {said}", answer=body)
    if status == 504:
        return PartOutcome(
            part,
            Exit.UNKNOWN,
            "the API stopped waiting (504) while it was being sent: its outcome is not known yet; run the "
            "same command again in a minute to see it (nothing is sent twice)",
            unknown=len(part.messages),
        )
    retry = response.headers.get("Retry-After")
    return PartOutcome(
        part,
        Exit.UNAVAILABLE,
        f"unavailable (HTTP {status}: {reason}); nothing unsent was sent"
        + (f"; retry after {retry} s" if retry else ""),
        answer=body,
    )


def _sent(part: Part, status: int, body: dict[str, Any]) -> PartOutcome:
    chunks = body.get("chunks", [])
    if body.get("dryRun"):
        return PartOutcome(part, Exit.DONE, "validated", chunks=len(chunks), answer=body)
    if body.get("status") == "scheduled":
        line = f"{count(len(part.messages), 'message')} scheduled for {when(body)}"
        return PartOutcome(part, Exit.DONE, line, answer=body, scheduled_for=body.get("scheduledFor"))
    messages = body.get("messages", [])
    accepted = sum(1 for m in messages if m.get("messageId"))
    suppressed = sum(1 for m in messages if m.get("status") == "suppressed")
    unknown = len(messages) - accepted - suppressed
    left_out = f", {suppressed:,} left out (suppressed: opted out)" if suppressed else ""
    if status == 201 and not unknown:
        line = f"{count(accepted, 'message')} accepted by Ocelot{left_out}"
        return PartOutcome(part, Exit.DONE, line, accepted, 0, len(chunks), body, suppressed)
    reasons = sorted({c.get("reason") or "" for c in chunks if c.get("status") == "unknown"} - {""})
    line = (
        f"{accepted:,} accepted, {unknown:,} with an unknown outcome ("
        + ("; ".join(reasons) or "Ocelot's answer could not be read")
        + f"){left_out}"
    )
    return PartOutcome(part, Exit.UNKNOWN, line, accepted, unknown, len(chunks), body, suppressed)


def when(view: dict[str, Any]) -> str:
    """ "2026-11-26T15:00:00Z (the end of the quiet hours)" from an answer's scheduledFor and reason."""
    at = str(view.get("scheduledFor") or "-").replace(".000000Z", "Z")
    reason = view.get("scheduleReason") or view.get("reason")
    return f"{at} (the end of the quiet hours)" if reason == "quiet_hours" else at


# ---- the send queue ----------------------------------------------------------------------------------


def enqueue(sqs: Any, queue_url: str, plan_: SendPlan, queued: Callable[[Part], None]) -> None:
    """Every part on the send queue, in batches within SQS's limits; a refused one is a Failure."""
    limit = _max_message_bytes(sqs, queue_url)
    bodies = [(p, plan_.body(p)) for p in plan_.parts]
    too_large = [p.request_id for p, body in bodies if len(body.encode()) > limit]
    if too_large:
        raise Failure(
            f"part {too_large[0]} is larger than a queue message may be ({limit:,} bytes): lower "
            "--per-request",
            Exit.INVALID,
        )
    pending: list[tuple[Part, str]] = []
    for part, body in bodies:
        if pending and sum(len(b.encode()) for _, b in pending) + len(body.encode()) > SQS_BATCH_BYTES:
            _flush(sqs, queue_url, pending, queued)
        pending.append((part, body))
        if len(pending) == SQS_BATCH:
            _flush(sqs, queue_url, pending, queued)
    if pending:
        _flush(sqs, queue_url, pending, queued)


def _max_message_bytes(sqs: Any, queue_url: str) -> int:
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])
        return int(attributes["Attributes"]["MaximumMessageSize"])
    except Exception:  # no permission to read it, or an old API: the smallest limit SQS ever had
        return SQS_MESSAGE_BYTES_FALLBACK


def _flush(sqs: Any, queue_url: str, pending: list[tuple[Part, str]], queued: Callable[[Part], None]) -> None:
    entries = [{"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(pending)]
    result = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    failed = {int(f["Id"]): f.get("Message") or f.get("Code") for f in result.get("Failed", [])}
    for i, (part, _) in enumerate(pending):
        if i not in failed:
            queued(part)
    pending.clear()
    if failed:
        raise Failure(
            f"the send queue refused {len(failed)} part(s) ({next(iter(failed.values()))}): run the same "
            "command again; parts already queued are not sent twice",
            Exit.UNAVAILABLE,
        )
