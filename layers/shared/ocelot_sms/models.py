"""Our public API: what a school's integration sends us and what it gets back.

Deliberately separate from Ocelot's wire models (contract.py): our names stay stable when Ocelot's
change, and the conversion happens in one place (sender.py).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ocelot_sms.clock import iso
from ocelot_sms.contract import E164_PATTERN, MAX_MESSAGE_CHARS
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.store.records import Recipient, SendPart

PhoneNumber = Annotated[str, Field(pattern=E164_PATTERN, description="E.164, e.g. +15551234567")]
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# Parts one send may have: with 1,000 messages a request, ten million messages.
MAX_PARTS = 10_000
# How far ahead a send may be scheduled (EventBridge Scheduler's and Twilio's SendAt limit alike).
MAX_SEND_AT_DAYS = 35
_SEND_FIELDS = frozenset({"send_id", "part", "parts"})
# Fields that change what a request is only when given: left out of its canonical form at their
# defaults, so a request without them hashes as it always did.
_OPTIONAL_FIELDS = {"send_at": None, "urgent": False, "include_suppressed": False}

# What a text may not hold: C0 and C1 control characters (but tab, newline and carriage return), and
# the bidirectional embeddings, overrides and isolates that make a text read other than it is. (A lone
# surrogate is no string at all to pydantic: refused already.)
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(value: str) -> str:
    found = _REFUSED.search(value)
    if found is None:
        return value
    character = found.group()
    if "\u202a" <= character <= "\u2069":
        kind = f"a bidirectional control ({unicodedata.name(character)})"
    else:
        kind = "a control character (only tabs and newlines are allowed)"
    raise PydanticCustomError(
        "refused_character",
        "contains {kind}, U+{code} at position {position}",
        {"kind": kind, "code": f"{ord(character):04X}", "position": found.start()},
    )


# Text that reaches Ocelot and comes back in our answers as it was written.
Printable = Annotated[str, AfterValidator(_printable)]


class _Public(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class OutgoingMessage(_Public):
    to: PhoneNumber
    text: Printable = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    ref: Printable | None = Field(default=None, min_length=1, max_length=128)


class BatchRequest(_Public):
    """The body of POST /batches, and of an SQS message on the send queue.

    `max_messages` comes from the validation context (configuration), not from the body.
    Only the public names are accepted: `request_id`, `dry_run`... in a body are unknown fields.
    """

    model_config = ConfigDict(populate_by_name=False, validate_by_name=False, validate_by_alias=True)

    request_id: str = Field(alias="requestId", pattern=REQUEST_ID_PATTERN)
    sender: PhoneNumber | None = Field(default=None, alias="from")
    operator_id: Printable | None = Field(default=None, alias="operatorId", min_length=1, max_length=128)
    dry_run: bool = Field(default=False, alias="dryRun")
    messages: list[OutgoingMessage] = Field(min_length=1)
    # The send this batch is a part of (numbered from 1); without them, a send of its own (sendId =
    # requestId, part 1 of 1). The three go together.
    send_id: str | None = Field(default=None, alias="sendId", pattern=REQUEST_ID_PATTERN)
    part: int | None = Field(default=None, ge=1, le=MAX_PARTS)
    parts: int | None = Field(default=None, ge=1, le=MAX_PARTS)
    # When to send it (ISO 8601 with an offset, at most MAX_SEND_AT_DAYS ahead; in the past: now).
    send_at: AwareDatetime | None = Field(default=None, alias="sendAt")
    # Sent now even inside quiet hours (emergency notices).
    urgent: bool = False
    # Sent to suppressed numbers too (their students opted out).
    include_suppressed: bool = Field(default=False, alias="includeSuppressed")

    @field_validator("send_at", mode="before")
    @classmethod
    def _an_iso_instant(cls, value: Any) -> Any:
        # Only text: a bare number would be read as epoch seconds, never what a caller meant.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 instant with an offset, e.g. 2026-11-26T09:00:00-06:00")
        return value

    @model_validator(mode="after")
    def _send_fields_together(self) -> BatchRequest:
        given = [v is not None for v in (self.send_id, self.part, self.parts)]
        if any(given) and not all(given):
            raise ValueError("sendId, part and parts go together: give all three or none")
        if self.part is not None and self.parts is not None and self.part > self.parts:
            raise ValueError(f"part {self.part} is beyond parts {self.parts}")
        return self

    @property
    def send(self) -> tuple[str, int, int]:
        """(sendId, part, parts): the send this batch is a part of."""
        return (self.send_id or self.request_id, self.part or 1, self.parts or 1)

    def canonical(self) -> dict[str, Any]:
        """What makes two submissions the same request: everything but dryRun (a preview changes
        nothing), and the send fields only when they say more than the default (a send of its own)."""
        own = self.send == (self.request_id, 1, 1)
        defaults = {name for name, default in _OPTIONAL_FIELDS.items() if getattr(self, name) == default}
        canonical = self.model_dump(
            mode="json", by_alias=True, exclude={"dry_run"} | defaults | (_SEND_FIELDS if own else set())
        )
        if self.send_at is not None:  # the same instant however its offset is written
            canonical["sendAt"] = iso(self.send_at)
        return canonical

    def send_part(self, origin: str) -> SendPart:
        send_id, part, parts = self.send
        return SendPart(
            send_id,
            part,
            parts,
            self.request_id,
            len(self.messages),
            origin,
            tuple(Recipient(m.to, m.ref) for m in self.messages),
        )

    @field_validator("messages")
    @classmethod
    def _within_limit_and_unique(
        cls, messages: list[OutgoingMessage], info: ValidationInfo
    ) -> list[OutgoingMessage]:
        limit = (info.context or {}).get("max_messages")
        if limit is not None and len(messages) > limit:
            raise ValueError(f"at most {limit} messages per request, got {len(messages)}")
        first_index: dict[str, int] = {}
        for index, message in enumerate(messages):
            if message.ref is None:
                continue
            if message.ref in first_index:
                raise ValueError(
                    f"messages.{index}.ref {message.ref!r} repeats messages.{first_index[message.ref]}.ref"
                )
            first_index[message.ref] = index
        return messages


class Problem(_Public):
    field: str
    message: str


def problems_from(error: ValidationError) -> list[Problem]:
    """One problem per bad field, named by its path in OUR request (aliases, dotted, 0-based)."""
    return [
        Problem(field=".".join(str(part) for part in item["loc"]) or "body", message=item["msg"])
        for item in error.errors(include_url=False)
    ]


class MessageResult(_Public):
    index: int
    ref: str | None
    to: str
    message_id: str | None = Field(alias="messageId")
    status: DeliveryStatus


class ChunkOutcome(_Public):
    index: int
    status: str  # ChunkStatus value
    batch_id: str | None = Field(default=None, alias="batchId")
    size: int
    reason: str | None = None


class BatchResult(_Public):
    request_id: str = Field(alias="requestId")
    status: str
    dry_run: bool = Field(default=False, alias="dryRun")
    batch_ids: list[str] = Field(alias="batchIds")
    chunks: list[ChunkOutcome]
    messages: list[MessageResult]
    # A dry run's counts and a sample of what would be sent (sender.preview): bounded, whatever the size.
    preview: dict[str, Any] | None = None
    # A request to be sent later: when, and why (`sendAt`, or `quiet_hours` when it would have
    # started inside them).
    scheduled_for: str | None = Field(default=None, alias="scheduledFor")
    schedule_reason: str | None = Field(default=None, alias="scheduleReason")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
