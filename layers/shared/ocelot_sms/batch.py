"""A batch before anything is sent: parsed against the configuration, split into chunks, each chunk's
Ocelot request, and a dry run's preview.

Apart from sender.py so that a dry run or an invalid request imports no store, idempotency or HTTP
client (docs/performance.md: cold start by path).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ocelot_sms.clock import iso, utc_now
from ocelot_sms.contract import SendMessage, SendRequest
from ocelot_sms.errors import InvalidRequest
from ocelot_sms.models import (
    MAX_SEND_AT_DAYS,
    BatchRequest,
    BatchResult,
    ChunkOutcome,
    OutgoingMessage,
    Problem,
    problems_from,
)
from ocelot_sms.scheduling import when_to_send
from ocelot_sms.settings import Settings

# Messages of the first Ocelot request a dry run shows: with the counts, what a caller checks, and
# at most ~40 KB whatever the request's size (a 1,000 x 2,000-character batch would answer megabytes).
PREVIEW_SAMPLE_MESSAGES = 5


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    first_index: int
    messages: tuple[OutgoingMessage, ...]

    def kept(self, suppressed: frozenset[int]) -> list[tuple[int, OutgoingMessage]]:
        """(position in the request, message) of each message not left out as suppressed."""
        positions = range(self.first_index, self.first_index + len(self.messages))
        return [(p, m) for p, m in zip(positions, self.messages, strict=True) if p not in suppressed]


def parse(payload: Any, settings: Settings, now: datetime | None = None) -> BatchRequest:
    """The request, or InvalidRequest with one problem per bad field."""
    try:
        request = BatchRequest.model_validate(
            payload, context={"max_messages": settings.max_messages_per_request}
        )
    except ValidationError as error:
        raise InvalidRequest(problems_from(error)) from error
    missing = [
        Problem(field=name, message=f"required: no default {name} is configured")
        for name, given, default in (
            ("from", request.sender, settings.default_sender),
            ("operatorId", request.operator_id, settings.default_operator_id),
        )
        if not (given or default)
    ]
    latest = (now or utc_now()) + timedelta(days=MAX_SEND_AT_DAYS)
    if request.send_at is not None and request.send_at > latest:
        message = f"at most {MAX_SEND_AT_DAYS} days ahead (until {iso(latest)})"
        missing.append(Problem(field="sendAt", message=message))
    if missing:
        raise InvalidRequest(missing)
    return request


def queue_body(request: BatchRequest) -> str:
    """The request as a send queue message: the same request (the same request hash) once parsed, in ASCII
    JSON, which SQS keeps as it is (it replaces characters outside XML's set)."""
    return json.dumps(request.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"dry_run"}))


def split(messages: Sequence[OutgoingMessage], size: int) -> Iterator[Chunk]:
    for index, start in enumerate(range(0, len(messages), size)):
        yield Chunk(index=index, first_index=start, messages=tuple(messages[start : start + size]))


def wire_request(
    request: BatchRequest, messages: Sequence[OutgoingMessage], settings: Settings
) -> SendRequest:
    """What Ocelot gets for these messages of the request."""
    return SendRequest(
        sender=request.sender or settings.default_sender,
        operator_id=request.operator_id or settings.default_operator_id,
        messages=[SendMessage(to=m.to, text=m.text, external_id=m.ref) for m in messages],
    )


def preview(request: BatchRequest, settings: Settings) -> BatchResult:
    """A dry run: what would be sent, as counts per Ocelot request and a sample of the first one."""
    chunks = list(split(request.messages, settings.ocelot_max_messages))
    sample = wire_request(request, chunks[0].messages[:PREVIEW_SAMPLE_MESSAGES], settings)
    timing = when_to_send(request, utc_now(), settings.quiet())
    return BatchResult(
        request_id=request.request_id,
        status="dry_run",
        dry_run=True,
        batch_ids=[],
        chunks=[ChunkOutcome(index=c.index, status="not_sent", size=len(c.messages)) for c in chunks],
        messages=[],
        preview={
            "ocelotRequests": len(chunks),
            "messages": len(request.messages),
            "sampleMessages": len(sample.messages),
            "sample": sample.to_wire(),
        },
        scheduled_for=iso(timing.at) if timing.at else None,
        schedule_reason=timing.reason,
    )
