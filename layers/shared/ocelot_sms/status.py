"""Read models for operators: a send (all its parts) or one batch with counts and its messages'
current status, recent sends, one message's history. Used by the status API (functions/status) and
through it by the CLI."""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ocelot_sms.clock import iso, utc_now
from ocelot_sms.contract import CallbackEvent
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import BadRequest, NotFound
from ocelot_sms.publisher import inbound_detail
from ocelot_sms.store import (
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    EventRecord,
    MessageRecord,
    MessageState,
    Recipient,
    ScheduleStatus,
    SendPart,
    Store,
    StoredBatch,
    StoredSend,
)

MAX_PAGE = 500
DEFAULT_PAGE = 100
# Sends listed per page: each is counted over all its messages.
MAX_SENDS_PAGE = 100
DEFAULT_SENDS_PAGE = 20
# Replies listed when no `since` is given: those of the last day.
DEFAULT_INBOUND_SINCE = timedelta(days=1)
# Messages of the batch with no chunk record: their chunk was never tried (an earlier one failed).
NOT_SENT = "not_sent"
NEVER_TRIED = "not sent: an earlier chunk of its batch could not be sent"
SUPPRESSED_REASON = "not sent: the number is suppressed (its recipient opted out)"
_BAD_CURSOR = "cursor is not one this API returned"


def _encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _decode(cursor: str, key: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded))[key]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise BadRequest(_BAD_CURSOR) from error


def encode_cursor(offset: int) -> str:
    return _encode({"offset": offset})


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    offset = _decode(cursor, "offset")
    # type(), not isinstance(): JSON true would pass as the integer 1.
    if type(offset) is not int or offset < 0:
        raise BadRequest(_BAD_CURSOR)
    return offset


def decode_position(cursor: str | None, key: str = "before") -> str | None:
    """Where a page starts, from the cursor of the page before (None: the first page)."""
    if not cursor:
        return None
    position = _decode(cursor, key)
    if not isinstance(position, str) or not position:
        raise BadRequest(_BAD_CURSOR)
    return position


def parse_since(since: str | None, now: datetime | None = None) -> datetime:
    """An ISO 8601 instant (UTC when it has no offset) or date; a day ago when absent."""
    if not since:
        return (now or utc_now()) - DEFAULT_INBOUND_SINCE
    try:
        parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
        instant = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        instant.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError) as error:
        raise BadRequest("since must be an ISO 8601 date or instant, e.g. 2026-11-26T16:00:00Z") from error
    return instant


def parse_limit(
    limit: str | int | None, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE, minimum: int = 1
) -> int:
    """A page size from a query parameter: a whole number from `minimum` to `maximum` (`default` if
    absent)."""
    if limit is None:
        return default
    problem = f"limit must be a whole number from {minimum} to {maximum}"
    try:
        value = int(limit)
    except ValueError as error:
        raise BadRequest(problem) from error
    if not minimum <= value <= maximum:
        raise BadRequest(problem)
    return value


@dataclass(frozen=True, slots=True)
class _SendRows:
    """Every message of a send in order (parts in number order), and what the view says of each part."""

    rows: list[dict[str, Any]]
    parts: list[dict[str, Any]]
    unknown_chunks: list[dict[str, Any]]
    missing_parts: list[int]


class StatusService:
    def __init__(self, store: Store) -> None:
        self._store = store

    def batch(
        self, request_id: str, limit: str | int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """The batch, counts by current status over ALL its messages, and one page of messages.

        Counting reads every message's state (one query per chunk plus BatchGetItem per 100), so the
        cost grows with the batch: about 200 read requests for 10,000 messages. Pages are offsets
        into the batch's messages in request order, which never changes once sent.
        """
        # Checked before anything is read: a bad request costs no reads.
        offset = decode_cursor(cursor)
        page_size = parse_limit(limit)
        stored = self._store.get_batch(request_id)
        if stored is None:
            raise NotFound(f"no batch {request_id!r}")
        part = self._store.send_part_of(request_id)
        ordered = self._rows(stored, part)
        return {
            "requestId": request_id,
            "createdAt": stored.batch.created_at,
            "origin": stored.batch.origin,
            "messageCount": stored.batch.message_count,
            "schedule": _schedule_view(stored.batch),
            "send": {"sendId": part.send_id, "part": part.part, "parts": part.parts} if part else None,
            "counts": _counts(ordered),
            "chunks": [_chunk_view(c) for c in stored.chunks],
            "unknownChunks": [_chunk_view(c) for c in stored.chunks if c.status is ChunkStatus.UNKNOWN],
            **_page(ordered, offset, page_size),
        }

    def send(self, send_id: str, limit: str | int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """A send: counts over the messages of all its parts, each part with its own counts, and one
        page of messages (parts in number order; `limit` 0: counts and parts alone). Reading costs what
        reading each part's batch costs."""
        offset = decode_cursor(cursor)
        page_size = parse_limit(limit, minimum=0)
        stored = self._store.get_send(send_id)
        if stored is None:
            raise NotFound(f"no send {send_id!r}")
        found = self._send_rows(stored)
        return {
            **_send_summary(stored, found),
            "parts": found.parts,
            "missingParts": found.missing_parts,
            "unknownChunks": found.unknown_chunks,
            **_page(found.rows, offset, page_size),
        }

    def sends(self, limit: str | int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Recent sends, newest first, each with its counts (read as for `send`: a page costs what
        reading each of its sends costs)."""
        before = decode_position(cursor)
        page_size = parse_limit(limit, DEFAULT_SENDS_PAGE, MAX_SENDS_PAGE)
        page = self._store.recent_sends(page_size, before)
        summaries = []
        for record in page.sends:
            stored = self._store.get_send(record.send_id)
            if stored is not None:
                summaries.append(_send_summary(stored, self._send_rows(stored)))
        return {"sends": summaries, "nextCursor": _encode({"before": page.next}) if page.next else None}

    def _send_rows(self, stored: StoredSend) -> _SendRows:
        found = _SendRows([], [], [], [])
        recorded = {p.part for p in stored.parts}
        found.missing_parts.extend(n for n in range(1, stored.send.parts + 1) if n not in recorded)
        for part in stored.parts:
            batch = self._store.get_batch(part.request_id)
            rows = self._rows(batch, part) if batch else _untried(part)
            for row in rows:
                row.update(part=part.part, requestId=part.request_id, position=len(found.rows) + 1)
                found.rows.append(row)
            chunks = batch.chunks if batch else ()
            found.unknown_chunks.extend(
                {**_chunk_view(c), "part": part.part, "requestId": part.request_id}
                for c in chunks
                if c.status is ChunkStatus.UNKNOWN
            )
            found.parts.append(
                {
                    "part": part.part,
                    "requestId": part.request_id,
                    "createdAt": part.created_at,
                    "origin": part.origin,
                    "messageCount": part.message_count,
                    "schedule": _schedule_view(batch.batch) if batch else None,
                    "counts": _counts(rows),
                }
            )
        return found

    def _rows(self, stored: StoredBatch, part: SendPart | None) -> list[dict[str, Any]]:
        """One row per message of the batch in request order: accepted ones with their current state,
        the others with their chunk's status and reason (recipients from the send part, if any); those
        of a batch to be sent later `scheduled` (or `cancelled`), those left out `suppressed`."""
        recipients = part.recipients if part else ()
        waiting = _waiting(stored.batch)
        if waiting is not None:
            return [
                _row(i, _recipient_at(recipients, i), None, waiting)
                for i in range(stored.batch.message_count)
            ]
        rows: dict[int, dict[str, Any]] = {}
        accepted: list[MessageRecord] = []
        for chunk in stored.chunks:
            if chunk.status is ChunkStatus.ACCEPTED:
                accepted.extend(self._store.batch_messages(stored.batch.request_id, chunk.index))
            else:
                rows.update((row["index"], row) for row in _unconfirmed(chunk, recipients))
        states = self._store.get_states([m.message_id for m in accepted])
        rows.update((m.index, _accepted_row(m, states.get(m.message_id))) for m in accepted)
        for index in stored.batch.suppressed:
            rows[index] = _row(index, _recipient_at(recipients, index), None, DeliveryStatus.SUPPRESSED.value)
            rows[index]["errorMessage"] = SUPPRESSED_REASON
        for index in range(stored.batch.message_count):
            if index not in rows:
                rows[index] = _row(index, _recipient_at(recipients, index), None, NOT_SENT)
                rows[index]["errorMessage"] = NEVER_TRIED
        return [rows[i] for i in sorted(rows)]

    def inbound(
        self, since: str | None = None, limit: str | int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """Texts recipients sent us, oldest first from `since` (a day ago by default), each with the
        message of ours it most likely answers: the last one sent to that number before it."""
        after = decode_position(cursor, "after")
        page_size = parse_limit(limit)
        start = parse_since(since)
        page = self._store.inbound(start, page_size, after)
        return {
            "since": iso(start),
            "messages": [inbound_detail(e) for e in page.events],
            "nextCursor": _encode({"after": page.next}) if page.next else None,
        }

    def message(self, message_id: str) -> dict[str, Any]:
        found = self._store.get_message(message_id)
        if not found.found:
            raise NotFound(f"no message {message_id!r}")
        meta, state = found.meta, found.state
        return {
            "messageId": message_id,
            "requestId": meta.request_id if meta else None,
            "ref": meta.ref if meta else None,
            "index": meta.index if meta else None,
            "to": (meta.to if meta else None) or _recipient(found.events),
            "batchId": (meta.batch_id if meta else None) or (state.batch_id if state else None),
            "status": state.status if state else DeliveryStatus.ACCEPTED.value,
            "statusAt": state.event_time if state else None,
            "errorCode": state.error_code if state else None,
            "errorMessage": state.error_message if state else None,
            "history": [
                {
                    "eventId": e.event_id,
                    "status": e.status,
                    # False: an event of the message whose status we do not know; it moved nothing.
                    "understood": e.understood,
                    "eventTime": e.event_time,
                    # The sender's own time, when it could not be true (later than we received it).
                    "reportedTime": e.reported_time,
                    "receivedAt": e.received_at,
                    "event": json.loads(e.payload) if e.payload else None,
                }
                for e in found.events
            ],
        }


def _row(index: int, recipient: Recipient | None, message_id: str | None, status: str) -> dict[str, Any]:
    return {
        "index": index,
        "ref": recipient.ref if recipient else None,
        "to": recipient.to if recipient else None,
        "messageId": message_id,
        "batchId": None,
        "status": status,
        "statusAt": None,
        "errorCode": None,
        "errorMessage": None,
    }


def _recipient_at(recipients: tuple[Recipient, ...], index: int) -> Recipient | None:
    return recipients[index] if index < len(recipients) else None


def _unconfirmed(chunk: ChunkRecord, recipients: tuple[Recipient, ...]) -> list[dict[str, Any]]:
    """Messages of a chunk without Ocelot ids: who they were for, and why they have none."""
    status = DeliveryStatus.UNKNOWN.value if chunk.status is ChunkStatus.UNKNOWN else chunk.status.value
    rows = []
    for index in chunk.positions:
        row = _row(index, _recipient_at(recipients, index), None, status)
        row.update(batchId=chunk.batch_id, errorMessage=chunk.reason)
        rows.append(row)
    return rows


def _waiting(batch: BatchRecord) -> str | None:
    """The status of every message of a batch whose sending has not begun: scheduled or cancelled."""
    schedule = batch.schedule
    if schedule is None or schedule.status is ScheduleStatus.STARTED:
        return None
    if schedule.status is ScheduleStatus.CANCELLED:
        return DeliveryStatus.CANCELLED.value
    return DeliveryStatus.SCHEDULED.value


def _schedule_view(batch: BatchRecord) -> dict[str, Any] | None:
    schedule = batch.schedule
    if schedule is None:
        return None
    return {
        "status": schedule.status.value,
        "scheduledFor": schedule.scheduled_for,
        "reason": schedule.reason,
    }


def _untried(part: SendPart) -> list[dict[str, Any]]:
    """A part recorded without its batch (the batch record expired first): its recipients, no outcome."""
    return [_row(i, r, None, DeliveryStatus.UNKNOWN.value) for i, r in enumerate(part.recipients)]


def _accepted_row(meta: MessageRecord, state: MessageState | None) -> dict[str, Any]:
    row = _row(
        meta.index,
        Recipient(meta.to, meta.ref),
        meta.message_id,
        state.status if state else DeliveryStatus.ACCEPTED.value,
    )
    row["batchId"] = meta.batch_id
    if state:
        row.update(statusAt=state.event_time, errorCode=state.error_code, errorMessage=state.error_message)
    return row


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(row["status"] for row in rows).items()))


def _page(rows: list[dict[str, Any]], offset: int, size: int) -> dict[str, Any]:
    page = rows[offset : offset + size]
    next_offset = offset + len(page)
    more = next_offset < len(rows) and size > 0
    return {"messages": page, "nextCursor": encode_cursor(next_offset) if more else None}


def _send_summary(stored: StoredSend, found: _SendRows) -> dict[str, Any]:
    return {
        "sendId": stored.send.send_id,
        "createdAt": stored.send.created_at,
        "origin": stored.send.origin,
        "partCount": stored.send.parts,
        "partsRecorded": len(stored.parts),
        "messageCount": len(found.rows),
        "counts": _counts(found.rows),
    }


def _recipient(events: tuple[EventRecord, ...]) -> str | None:
    """The recipient as the latest callback names it (Ocelot's field names are contract.py's)."""
    for event in reversed(events):
        try:
            to = CallbackEvent.model_validate(json.loads(event.payload or "{}")).to
        except ValueError:  # not JSON, or not an event (pydantic's ValidationError is one)
            continue
        if to:
            return to
    return None


def _chunk_view(chunk: ChunkRecord) -> dict[str, Any]:
    return {
        "index": chunk.index,
        "status": chunk.status.value,
        "batchId": chunk.batch_id,
        "size": chunk.size,
        "firstIndex": chunk.first_index,
        "reason": chunk.reason,
    }
