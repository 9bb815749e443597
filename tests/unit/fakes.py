"""In-memory stand-ins for the services' ports, for tests of the services themselves.

`MemoryStore` implements `ocelot_sms.store.Store` with dicts; tests/unit/layer/store/test_store_contract.py
runs the same behaviour tests against it and against DynamoStore on moto, so the two cannot drift.
`MemoryIdempotency` is a Powertools persistence layer in a dict.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from ocelot_sms.clock import iso, utc_now
from ocelot_sms.store import (
    INTERRUPTED_REASON,
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    EventRecord,
    EventWrite,
    InboundPage,
    MessageHistory,
    MessageRecord,
    MessageState,
    RawDelivery,
    RawRef,
    Rejection,
    RequestConflict,
    RequestTooLarge,
    ScheduleStatus,
    SendConflict,
    SendPage,
    SendPart,
    SendRecord,
    SentRef,
    StateChange,
    StoredBatch,
    StoredSend,
    Suppression,
    SuppressionPage,
    SuppressionSource,
    codec,
    keys,
)
from ocelot_sms.store.base import SENDER_RUNS_AT_MOST


@dataclass
class _Chunk:
    record: ChunkRecord
    at: datetime
    # The hour an accepted chunk is listed under for the stale-message sweep, until swept.
    sweep_hour: datetime | None = None


@dataclass
class MemoryStore:
    """The store's behaviour without DynamoDB. Not a model of DynamoDB's failures: DynamoStore's own
    tests cover those."""

    batches: dict[str, BatchRecord] = field(default_factory=dict)
    chunks: dict[tuple[str, int], _Chunk] = field(default_factory=dict)
    messages: dict[str, MessageRecord] = field(default_factory=dict)
    states: dict[str, MessageState] = field(default_factory=dict)
    # Keyed as DynamoStore keys them: with its message when it names one, on its own otherwise.
    events: dict[tuple[str | None, str], EventRecord] = field(default_factory=dict)
    raws: dict[tuple[str, str], RawDelivery] = field(default_factory=dict)
    rejections: dict[str, Rejection] = field(default_factory=dict)
    sends: dict[str, SendRecord] = field(default_factory=dict)
    send_parts: dict[tuple[str, int], SendPart] = field(default_factory=dict)
    # When each message's correlation was stored (what a reply from its number answers).
    sent_at: dict[str, str] = field(default_factory=dict)
    suppressed: dict[str, Suppression] = field(default_factory=dict)
    # The days sends are kept (DynamoStore's data retention): older ones are no longer listed.
    retention_days: int = 400
    # What "now" is for the store's writes: a test may set it to pretend a write happened earlier.
    clock: Callable[[], datetime] = utc_now
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # ---- the Sender ------------------------------------------------------------------------------------

    def put_batch(self, batch: BatchRecord) -> BatchRecord:
        request = batch.schedule.request if batch.schedule else None
        if request is not None and codec.pack(request.encode()) is None:
            raise RequestTooLarge(
                f"the request is too large to keep until it is sent ({len(request):,} bytes)"
            )
        with self._lock:
            stored = self.batches.setdefault(batch.request_id, replace(batch, created_at=iso(self.clock())))
        if stored.request_hash != batch.request_hash:
            raise RequestConflict(f"requestId {batch.request_id!r} was already used with a different payload")
        return stored

    def end_schedule(
        self, request_id: str, status: ScheduleStatus, suppressed: tuple[int, ...] = ()
    ) -> BatchRecord | None:
        with self._lock:
            stored = self.batches.get(request_id)
            if (
                stored is None
                or stored.schedule is None
                or stored.schedule.status is not ScheduleStatus.SCHEDULED
            ):
                return stored
            changes: dict[str, Any] = {"schedule": replace(stored.schedule, status=status)}
            if suppressed:
                changes["suppressed"] = suppressed
            self.batches[request_id] = replace(stored, **changes)
            return self.batches[request_id]

    def get_chunk(self, request_id: str, index: int) -> ChunkRecord | None:
        found = self.chunks.get((request_id, index))
        return found.record if found else None

    def claim_chunk(self, chunk: ChunkRecord) -> ChunkRecord | None:
        with self._lock:
            stored = self.get_chunk(chunk.request_id, chunk.index)
            if stored is not None and stored.status is not ChunkStatus.NOT_SENT:
                return stored
            self.finish_chunk(chunk)
        return None

    def finish_chunk(self, chunk: ChunkRecord) -> None:
        now = self.clock()
        accepted = chunk.status is ChunkStatus.ACCEPTED and chunk.batch_id
        hour = now.replace(minute=0, second=0, microsecond=0) if accepted else None
        with self._lock:
            self.chunks[(chunk.request_id, chunk.index)] = _Chunk(
                replace(chunk, updated_at=iso(now)), now, hour
            )

    def put_messages(self, records: Sequence[MessageRecord]) -> None:
        now = iso(self.clock())
        with self._lock:
            self.messages.update((r.message_id, r) for r in records)
            self.sent_at.update((r.message_id, now) for r in records)

    def put_rejection(self, rejection: Rejection, retention_days: int) -> None:
        self.rejections[rejection.source_id] = rejection

    def put_send_part(self, part: SendPart) -> None:
        created = iso(self.clock())
        with self._lock:
            header = self.sends.setdefault(
                part.send_id, SendRecord(part.send_id, part.parts, part.origin, created)
            )
            if header.parts != part.parts:
                raise SendConflict(f"send {part.send_id!r} was recorded with {header.parts} parts")
            stored = self.send_parts.setdefault((part.send_id, part.part), replace(part, created_at=created))
        if stored.request_id != part.request_id:
            raise SendConflict(f"part {part.part} of send {part.send_id!r} is request {stored.request_id!r}")

    # ---- the webhook -----------------------------------------------------------------------------------

    def put_raw(self, raw: RawDelivery, retention_days: int) -> bool:
        whole = raw.truncated_from is None and codec.pack(raw.body) is not None
        if not whole:
            raw = replace(
                raw, body=raw.body[: codec.RAW_HEAD_BYTES], truncated_from=raw.truncated_from or len(raw.body)
            )
        with self._lock:
            self.raws.setdefault((raw.ref.delivery_id, raw.ref.received_at), raw)
        return whole

    def record_problems(self, raw: RawRef, problems: list[str]) -> None:
        with self._lock:
            key = (raw.delivery_id, raw.received_at)
            self.raws[key] = replace(self.raws[key], problems=tuple(problems))

    def get_raw(self, raw: RawRef) -> RawDelivery | None:
        return self.raws.get((raw.delivery_id, raw.received_at))

    def put_event(self, event: EventRecord) -> EventWrite:
        change = event.change
        key = (event.message_id, event.event_id)
        with self._lock:
            stored = self.events.get(key)
            if stored is None or (change and stored.change is None):
                # New, or stored before without being understood and understood now (a replay).
                self.events[key] = replace(event, received_at=iso(self.clock()))
            elif change:
                self.advance_state(change)
                return EventWrite.DUPLICATE
            else:
                return EventWrite.DUPLICATE
        if change:
            return EventWrite.APPLIED if self.advance_state(change) else EventWrite.STORED
        return EventWrite.STORED

    def advance_state(self, change: StateChange) -> bool:
        with self._lock:
            stored = self.states.get(change.message_id)
            if stored is not None and stored.order_key is not None and stored.order_key >= change.order_key:
                return False
            self.states[change.message_id] = MessageState(
                message_id=change.message_id,
                status=change.status.value,
                order_key=change.order_key,
                event_id=change.event_id,
                event_time=change.event_time,
                error_code=codec.clip(change.error_code),
                error_message=codec.clip(change.error_message),
                batch_id=codec.clip(change.batch_id),
                to=codec.clip(change.to),
                updated_at=iso(self.clock()),
            )
        return True

    def last_sent_to(self, number: str, before: str) -> SentRef | None:
        sent = [
            (self.sent_at[m.message_id], m.message_id, m)
            for m in self.messages.values()
            if m.to == number and self.sent_at[m.message_id] <= before
        ]
        if not sent:
            return None
        at, _, meta = max(sent, key=lambda s: (s[0], s[1]))
        return SentRef(meta.message_id, meta.request_id, meta.ref, at)

    def suppress(self, suppression: Suppression) -> bool:
        with self._lock:
            stored = self.suppressed.get(suppression.number)
            callback = suppression.source is not SuppressionSource.OPERATOR
            standing = stored is not None and (
                stored.source is SuppressionSource.OPERATOR or stored.at >= suppression.at
            )
            if callback and standing:
                return False
            self.suppressed[suppression.number] = replace(suppression, created_at=iso(self.clock()))
        return True

    def lift_suppression(self, number: str, before: str | None = None) -> bool:
        with self._lock:
            stored = self.suppressed.get(number)
            if stored is None:
                return False
            if before is not None and (stored.source is SuppressionSource.OPERATOR or stored.at >= before):
                return False
            del self.suppressed[number]
        return True

    def raw_deliveries(self, day: str) -> Iterator[RawDelivery]:
        on_day = [r for r in self.raws.values() if f"{r.received_at.astimezone(UTC):%Y-%m-%d}" == day]
        yield from sorted(on_day, key=lambda r: r.received_at)

    # ---- reads -----------------------------------------------------------------------------------------

    def get_batch(self, request_id: str) -> StoredBatch | None:
        batch = self.batches.get(request_id)
        if batch is None:
            return None
        chunks = sorted(
            (c.record for (r, _), c in self.chunks.items() if r == request_id), key=lambda c: c.index
        )
        return StoredBatch(batch, tuple(chunks))

    def batch_messages(self, request_id: str, chunk_index: int) -> list[MessageRecord]:
        found = [
            m for m in self.messages.values() if (m.request_id, m.chunk_index) == (request_id, chunk_index)
        ]
        return sorted(found, key=lambda m: m.index)

    def get_states(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        return {m: self.states[m] for m in message_ids if m in self.states}

    def get_message(self, message_id: str) -> MessageHistory:
        events = [e for (owner, _), e in self.events.items() if owner == message_id]
        events.sort(key=lambda e: (e.event_time or "", e.change.order_key if e.change else ""))
        return MessageHistory(
            message_id,
            self.messages.get(message_id),
            self.states.get(message_id),
            tuple(replace(e, change=None) for e in events),
        )

    def get_metas(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        return {m: self.messages[m] for m in message_ids if m in self.messages}

    def suppressions(self, numbers: Sequence[str]) -> dict[str, Suppression]:
        return {n: self.suppressed[n] for n in numbers if n in self.suppressed}

    def list_suppressions(self, limit: int, after: str | None = None) -> SuppressionPage:
        listed = [self.suppressed[n] for n in sorted(self.suppressed) if after is None or n > after]
        page = tuple(listed[:limit])
        return SuppressionPage(page, page[-1].number if len(listed) > limit else None)

    def inbound(self, since: datetime, limit: int, after: str | None = None) -> InboundPage:
        oldest = self.clock() - timedelta(days=self.retention_days)
        start = after or iso(max(since, oldest))
        listed = sorted(
            (keys.inbound(e.received_at or "", e.event_id)[1], e)
            for e in self.events.values()
            if e.inbound is not None
        )
        after_start = [(p, e) for p, e in listed if (p > start if after else p >= start)]
        page = after_start[:limit]
        return InboundPage(tuple(e for _, e in page), page[-1][0] if len(after_start) > limit else None)

    def get_send(self, send_id: str) -> StoredSend | None:
        header = self.sends.get(send_id)
        if header is None:
            return None
        parts = sorted((p for (s, _), p in self.send_parts.items() if s == send_id), key=lambda p: p.part)
        return StoredSend(header, tuple(parts))

    def send_part_of(self, request_id: str) -> SendPart | None:
        return next((p for p in self.send_parts.values() if p.request_id == request_id), None)

    def recent_sends(self, limit: int, before: str | None = None) -> SendPage:
        oldest = iso(self.clock() - timedelta(days=self.retention_days))[:7]
        listed = sorted(
            (
                (keys.send_position(s.created_at or "", s.send_id), s)
                for s in self.sends.values()
                if (s.created_at or "")[:7] >= oldest
            ),
            key=lambda pair: pair[0],
            reverse=True,
        )
        after = [(position, s) for position, s in listed if before is None or position < before]
        page = after[:limit]
        return SendPage(tuple(s for _, s in page), page[-1][0] if len(after) > limit else None)

    # ---- operations ------------------------------------------------------------------------------------

    def unknown_chunks(self, now: datetime | None = None) -> list[ChunkRecord]:
        interrupted_before = (now or self.clock()) - SENDER_RUNS_AT_MOST
        listed = [
            c
            for c in self.chunks.values()
            if c.record.status is ChunkStatus.UNKNOWN
            or (c.record.status is ChunkStatus.SENDING and c.at < interrupted_before)
        ]
        listed.sort(key=lambda c: c.at)
        return [
            replace(c.record, reason=INTERRUPTED_REASON)
            if c.record.status is ChunkStatus.SENDING
            else c.record
            for c in listed
        ]

    def chunks_to_sweep(self, since: datetime, until: datetime) -> Iterator[ChunkRecord]:
        first_hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        due = [
            c
            for c in self.chunks.values()
            if c.sweep_hour is not None
            and first_hour <= c.sweep_hour
            and c.sweep_hour + timedelta(hours=1) <= until
        ]
        for chunk in sorted(due, key=lambda c: c.at):
            yield chunk.record

    def swept(self, chunk: ChunkRecord) -> None:
        self.chunks[(chunk.request_id, chunk.index)].sweep_hour = None


class MemoryIdempotency(BasePersistenceLayer):
    """Powertools idempotency records in a dict, with the same conditions as its DynamoDB layer."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.records: dict[str, DataRecord] = {}
        self._lock = threading.Lock()

    def _get_record(self, idempotency_key: str) -> DataRecord:
        try:
            return self.records[idempotency_key]
        except KeyError as error:
            raise IdempotencyItemNotFoundError from error

    def _put_record(self, data_record: DataRecord) -> None:
        with self._lock:
            existing = self.records.get(data_record.idempotency_key)
            if existing is not None and not existing.is_expired and not _lock_expired(existing):
                # As the DynamoDB layer does with the item its refused put returns: another payload under
                # the same key is a validation error, not a replay.
                self._validate_payload(data_payload=data_record, stored_data_record=existing)
                raise IdempotencyItemAlreadyExistsError(old_data_record=existing)
            self.records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self.records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self.records.pop(data_record.idempotency_key, None)


def _lock_expired(record: DataRecord) -> bool:
    """An in-progress record whose Lambda ran out of time no longer holds the lock."""
    expiry: Any = record.in_progress_expiry_timestamp
    return record.status == "INPROGRESS" and expiry is not None and expiry < utc_now().timestamp() * 1000
