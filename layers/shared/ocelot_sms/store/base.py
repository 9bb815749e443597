"""The store's interface: every read and write the services make, in records.

`DynamoStore` (dynamodb.py) is the backend; the services' unit tests use an in-memory one that
passes the same contract tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from ocelot_sms.store.records import (
    BatchRecord,
    ChunkRecord,
    EventRecord,
    EventWrite,
    InboundPage,
    MessageHistory,
    MessageRecord,
    MessageState,
    RawDelivery,
    RawRef,
    Rejection,
    ScheduleStatus,
    SendPage,
    SendPart,
    SentRef,
    StateChange,
    StoredBatch,
    StoredSend,
    Suppression,
    SuppressionPage,
)

# Lambda's longest timeout: a chunk claimed longer ago than this is no longer being sent.
SENDER_RUNS_AT_MOST = timedelta(minutes=15)
INTERRUPTED_REASON = (
    "interrupted after it was claimed, and may have been sent: send the same request again (same "
    "requestId and body) to record it unknown with its Ocelot request, then attach or resend"
)


class StorageError(RuntimeError):
    """The store did not durably do what was asked."""


class RequestConflict(ValueError):
    """The requestId was stored before with a different payload."""


class SendConflict(RequestConflict):
    """The send was recorded with another number of parts, or its part with another requestId."""


class RequestTooLarge(ValueError):
    """A request to be sent later is too large to keep in an item, even compressed."""


class Store(Protocol):
    # ---- the Sender ----------------------------------------------------------------------------------

    def put_batch(self, batch: BatchRecord) -> BatchRecord:
        """First write wins: returns the batch as stored (this one when it is new, with its creation
        time). Raises RequestConflict when the stored batch has another request hash, RequestTooLarge
        when a request to be sent later cannot be kept."""
        ...

    def end_schedule(
        self, request_id: str, status: ScheduleStatus, suppressed: tuple[int, ...] = ()
    ) -> BatchRecord | None:
        """Move a scheduled batch to STARTED (with the positions it leaves out) or CANCELLED, in one
        conditional write, only while it is SCHEDULED. Returns the batch as it stands after (whoever
        won); None when there is no such batch."""
        ...

    def get_chunk(self, request_id: str, index: int) -> ChunkRecord | None: ...

    def claim_chunk(self, chunk: ChunkRecord) -> ChunkRecord | None:
        """Mark the chunk as being sent, unless an earlier attempt may already have sent it.

        None when claimed; otherwise the record that stands (SENDING, ACCEPTED or UNKNOWN), which the
        caller must not send again.
        """
        ...

    def finish_chunk(self, chunk: ChunkRecord) -> None: ...

    def put_messages(self, records: Sequence[MessageRecord]) -> None: ...

    def put_rejection(self, rejection: Rejection, retention_days: int) -> None: ...

    def put_send_part(self, part: SendPart) -> None:
        """Record a batch as one part of its send, and the send itself with its first part. First write
        wins; raises SendConflict when the send has another number of parts or the part another
        requestId."""
        ...

    # ---- the webhook ---------------------------------------------------------------------------------

    def put_raw(self, raw: RawDelivery, retention_days: int) -> bool:
        """Keep the delivery (one conditional write): whole when an item can hold it, compressed if
        need be; else its start, marked truncated. True when kept whole."""
        ...

    def record_problems(self, raw: RawRef, problems: list[str]) -> None:
        """What applying the delivery found wrong, kept on it."""
        ...

    def put_event(self, event: EventRecord) -> EventWrite:
        """Store the event once by its eventId (with its message when it names one) and, for a state
        change, move the message's current status forward. A duplicate repairs a state update lost to
        an earlier failure; an event stored before without being understood is stored again."""
        ...

    def last_sent_to(self, number: str, before: str) -> SentRef | None:
        """The last message accepted for `number` before the instant `before` (ISO, UTC)."""
        ...

    def suppress(self, suppression: Suppression) -> bool:
        """Keep the number suppressed. An operator's always stands; a callback's only over an older
        callback's (by `at`), never over an operator's. True when this one stands now."""
        ...

    def lift_suppression(self, number: str, before: str | None = None) -> bool:
        """Lift a number's suppression: an operator's decision (`before` None) lifts any; a callback
        (an opt-in reply at `before`) only an older callback's. True when one was lifted."""
        ...

    def raw_deliveries(self, day: str) -> Iterator[RawDelivery]:
        """Every raw delivery received on that UTC day (yyyy-mm-dd), truncated ones included."""
        ...

    def get_raw(self, raw: RawRef) -> RawDelivery | None: ...

    # ---- reads -----------------------------------------------------------------------------------------

    def get_batch(self, request_id: str) -> StoredBatch | None: ...

    def batch_messages(self, request_id: str, chunk_index: int) -> list[MessageRecord]:
        """The accepted messages of one chunk, in request order."""
        ...

    def get_states(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        """Current states by message id; a message with no callback yet has none. Never partial."""
        ...

    def get_message(self, message_id: str) -> MessageHistory: ...

    def get_metas(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        """The correlations of these messages by id (those with none are left out). Never partial."""
        ...

    def suppressions(self, numbers: Sequence[str]) -> dict[str, Suppression]:
        """The suppressed ones of these numbers. Never partial."""
        ...

    def list_suppressions(self, limit: int, after: str | None = None) -> SuppressionPage:
        """Suppressed numbers in number order, `limit` at most, from after `after` (the previous
        page's `next`)."""
        ...

    def inbound(self, since: datetime, limit: int, after: str | None = None) -> InboundPage:
        """Inbound events stored since `since` (and within the data retention), oldest first, `limit`
        at most; `after` is the previous page's `next`."""
        ...

    def get_send(self, send_id: str) -> StoredSend | None:
        """The send and the parts recorded so far, in part order."""
        ...

    def send_part_of(self, request_id: str) -> SendPart | None:
        """The send part a batch is (None for a batch recorded without one)."""
        ...

    def recent_sends(self, limit: int, before: str | None = None) -> SendPage:
        """Sends newest first, `limit` at most, created within the data retention; `before` is the
        `next` of the previous page."""
        ...

    # ---- operations ------------------------------------------------------------------------------------

    def unknown_chunks(self, now: datetime | None = None) -> list[ChunkRecord]:
        """Chunks whose outcome is unknown, and chunks claimed longer ago than any Sender runs (their
        sending was interrupted and never retried, reason INTERRUPTED_REASON), oldest first."""
        ...

    def chunks_to_sweep(self, since: datetime, until: datetime) -> Iterator[ChunkRecord]:
        """Accepted chunks not swept yet, accepted in whole hours between `since` and `until`."""
        ...

    def advance_state(self, change: StateChange) -> bool:
        """Apply the change if its order key is the highest so far; False when the state is further."""
        ...

    def swept(self, chunk: ChunkRecord) -> None: ...
