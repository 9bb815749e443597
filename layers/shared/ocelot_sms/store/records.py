"""What the store keeps, as typed, frozen records. The rest of the code sees these, never an item."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ocelot_sms.clock import iso
from ocelot_sms.delivery import DeliveryStatus


class ChunkStatus(StrEnum):
    SENDING = "sending"  # claimed; the HTTP call may be in flight
    ACCEPTED = "accepted"  # Ocelot returned ids
    UNKNOWN = "unknown"  # sent, outcome unknown: never re-sent automatically
    NOT_SENT = "not_sent"  # certainly not taken by Ocelot (429/503/connect/4xx): safe to send again


class ScheduleStatus(StrEnum):
    SCHEDULED = "scheduled"  # to be sent at its time
    STARTED = "started"  # its time came (or it was sent early): being sent, or sent
    CANCELLED = "cancelled"  # cancelled before its time: never sent


class SuppressionSource(StrEnum):
    OPTED_OUT = "opted_out"  # a status callback said the recipient opted out
    REPLY = "reply"  # the recipient replied an opt-out keyword (STOP)
    OPERATOR = "operator"  # an operator suppressed the number


class EventWrite(StrEnum):
    APPLIED = "applied"  # new event; the message's current status moved to it
    STORED = "stored"  # new event, kept in history; current status already further along (or none)
    DUPLICATE = "duplicate"  # eventId seen before: nothing new written


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a request is to be sent, and why (`sendAt`, `quiet_hours`); `request` is the request as
    the send queue takes it, kept so that it can be sent at its time."""

    status: ScheduleStatus
    scheduled_for: str
    reason: str
    request: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One request to our API (or queue message): what makes a retry "the same request".

    `suppressed` are the positions of the messages left out because their number was suppressed when
    sending began: decided once, so that every retry splits the request into the same chunks."""

    request_id: str
    request_hash: str
    message_count: int
    chunk_count: int
    origin: str
    suppressed: tuple[int, ...] = ()
    schedule: Schedule | None = None
    # Set by the store; not part of what makes two records equal.
    created_at: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One Ocelot request: up to OcelotMaxMessages messages of a batch."""

    request_id: str
    index: int
    status: ChunkStatus
    size: int
    first_index: int
    batch_id: str | None = None
    reason: str | None = None
    message_ids: tuple[str, ...] = ()
    # The Ocelot request, kept only while the outcome is unknown: what an operator may resend.
    payload: dict[str, Any] | None = None
    # Positions (in the request) of the chunk's messages left out because their numbers were
    # suppressed: `size` counts them, Ocelot's request does not hold them.
    skipped: tuple[int, ...] = ()
    updated_at: str | None = field(default=None, compare=False)

    @property
    def positions(self) -> list[int]:
        """The request positions of the messages Ocelot's request held, in its order."""
        left_out = set(self.skipped)
        return [p for p in range(self.first_index, self.first_index + self.size) if p not in left_out]


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch and its chunks, in chunk order."""

    batch: BatchRecord
    chunks: tuple[ChunkRecord, ...]


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a message of a send part is for, as the request named it."""

    to: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One send: what an operator submits as a whole (a file), in `parts` batches numbered from 1."""

    send_id: str
    parts: int
    origin: str
    created_at: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SendPart:
    """One batch as part `part` of its send, with its recipients in request order (so that a status
    names the recipient of a message Ocelot never took)."""

    send_id: str
    part: int
    parts: int
    request_id: str
    message_count: int
    origin: str
    recipients: tuple[Recipient, ...] = ()
    created_at: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class StoredSend:
    """A send and the parts recorded so far, in part order."""

    send: SendRecord
    parts: tuple[SendPart, ...]


@dataclass(frozen=True, slots=True)
class SendPage:
    """Sends newest first; `next` is where the following page starts (None: no more)."""

    sends: tuple[SendRecord, ...]
    next: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """Correlation of one accepted message: our requestId/ref/index <-> Ocelot batchId/messageId."""

    message_id: str
    request_id: str
    index: int
    ref: str | None
    to: str
    chunk_index: int
    batch_id: str


@dataclass(frozen=True, slots=True)
class StateChange:
    """What a status event would make a message's current status, if its order key is the highest."""

    message_id: str
    status: DeliveryStatus
    order_key: str
    event_id: str
    event_time: str | None
    error_code: str | None = None
    error_message: str | None = None
    batch_id: str | None = None
    # The recipient as the callback names it (kept with the state for the status events out).
    to: str | None = None


@dataclass(frozen=True, slots=True)
class MessageState:
    """A message's current status: the state change with the highest order key so far."""

    message_id: str
    status: str
    order_key: str | None
    event_id: str | None
    event_time: str | None
    error_code: str | None = None
    error_message: str | None = None
    batch_id: str | None = None
    to: str | None = None
    updated_at: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SentRef:
    """A message we sent, as a reply links to it: the last one sent to the number before the reply."""

    message_id: str
    request_id: str
    ref: str | None
    sent_at: str | None


@dataclass(frozen=True, slots=True)
class Inbound:
    """A text a recipient sent us (an inbound event): from whom, to which of our numbers, what, and
    the message of ours it most likely answers."""

    sender: str | None
    recipient: str | None
    text: str | None
    reply_to: SentRef | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One callback event, stored once by its eventId: with its message when it names one (so the
    message's history has every event), on its own otherwise.

    `change` is set for a status event we understand; one we do not (a status we do not know) is kept
    in the history all the same, `understood` false, and changes nothing. `event_time` is the instant
    the event is ordered by; `reported_time` the sender's own dateTime when that could not be used (a
    time later than we received the event). `payload` is the item as received (None when too large:
    then see the raw delivery)."""

    event_id: str
    raw: RawRef
    name: str | None = None
    message_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    event_time: str | None = None
    change: StateChange | None = None
    payload: str | None = None
    understood: bool = True
    reported_time: str | None = None
    inbound: Inbound | None = None
    received_at: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class InboundPage:
    """Inbound events in the order we stored them; `next` is where the following page starts."""

    events: tuple[EventRecord, ...]
    next: str | None = None


@dataclass(frozen=True, slots=True)
class Suppression:
    """A number nothing is sent to unless a request says includeSuppressed: its recipient opted out
    (a callback or a STOP reply, dated `at`) or an operator said so."""

    number: str
    source: SuppressionSource
    at: str
    event_id: str | None = None
    message_id: str | None = None
    reason: str | None = None
    created_at: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SuppressionPage:
    """Suppressed numbers in number order; `next` is where the following page starts."""

    suppressions: tuple[Suppression, ...]
    next: str | None = None


@dataclass(frozen=True, slots=True)
class MessageHistory:
    """Meta, current state and every status event (in event-time order) of one message."""

    message_id: str
    meta: MessageRecord | None
    state: MessageState | None
    events: tuple[EventRecord, ...]

    @property
    def found(self) -> bool:
        return self.meta is not None or self.state is not None or bool(self.events)


@dataclass(frozen=True, slots=True)
class RawRef:
    """Where a raw delivery is: which events came from which delivery."""

    delivery_id: str
    received_at: str


@dataclass(frozen=True, slots=True)
class RawDelivery:
    """One HTTP delivery to the webhook, as received (secret headers already removed).

    `truncated_from` is the body's real size when `body` holds only its start: a delivery too large
    to keep whole, recorded so that nothing arrives unseen, and never applied."""

    delivery_id: str
    received_at: datetime
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None
    truncated_from: int | None = None
    # What applying it found wrong (malformed items), once applied.
    problems: tuple[str, ...] = ()

    @property
    def ref(self) -> RawRef:
        return RawRef(self.delivery_id, iso(self.received_at))


@dataclass(frozen=True, slots=True)
class Rejection:
    """A queue message we refused for good, kept with its problems so that nothing sent is lost."""

    source_id: str
    body: str
    problems: tuple[Mapping[str, str], ...]
