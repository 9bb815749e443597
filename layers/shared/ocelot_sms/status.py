"""Read models for operators: a batch with counts and its messages' current status, one message's
history. Used by the status API (functions/status) and the CLI."""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from typing import Any

from ocelot_sms.contract import CallbackEvent
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import BadRequest, NotFound
from ocelot_sms.store import ChunkRecord, ChunkStatus, EventRecord, MessageRecord, MessageState, Store

MAX_PAGE = 500
DEFAULT_PAGE = 100
# Messages of the batch with no chunk record: their chunk was never tried (an earlier one failed).
NOT_SENT = "not_sent"
_BAD_CURSOR = "cursor is not one this API returned"


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise BadRequest(_BAD_CURSOR) from error
    # type(), not isinstance(): JSON true would pass as the integer 1.
    if type(offset) is not int or offset < 0:
        raise BadRequest(_BAD_CURSOR)
    return offset


def parse_limit(limit: str | int | None) -> int:
    """A page size from a query parameter: a whole number from 1 to MAX_PAGE (DEFAULT_PAGE if absent)."""
    if limit is None:
        return DEFAULT_PAGE
    try:
        value = int(limit)
    except ValueError as error:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}") from error
    if not 1 <= value <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return value


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
        rows: dict[int, dict[str, Any]] = {}
        accepted: list[MessageRecord] = []
        for chunk in stored.chunks:
            if chunk.status is ChunkStatus.ACCEPTED:
                accepted.extend(self._store.batch_messages(request_id, chunk.index))
            else:
                rows.update((row["index"], row) for row in _unconfirmed(chunk))
        states = self._store.get_states([m.message_id for m in accepted])
        rows.update((m.index, _accepted_row(m, states.get(m.message_id))) for m in accepted)
        for index in range(stored.batch.message_count):
            rows.setdefault(index, _row(index, None, None, None, NOT_SENT))
        ordered = [rows[i] for i in sorted(rows)]
        counts = Counter(row["status"] for row in ordered)
        page = ordered[offset : offset + page_size]
        next_offset = offset + len(page)
        return {
            "requestId": request_id,
            "createdAt": stored.batch.created_at,
            "origin": stored.batch.origin,
            "messageCount": stored.batch.message_count,
            "counts": dict(sorted(counts.items())),
            "chunks": [_chunk_view(c) for c in stored.chunks],
            "unknownChunks": [_chunk_view(c) for c in stored.chunks if c.status is ChunkStatus.UNKNOWN],
            "messages": page,
            "nextCursor": encode_cursor(next_offset) if next_offset < len(ordered) else None,
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


def _row(index: int, ref: str | None, to: str | None, message_id: str | None, status: str) -> dict[str, Any]:
    return {"index": index, "ref": ref, "to": to, "messageId": message_id, "status": status, "statusAt": None}


def _unconfirmed(chunk: ChunkRecord) -> list[dict[str, Any]]:
    """Messages of a chunk without Ocelot ids: their index is all we know."""
    status = DeliveryStatus.UNKNOWN.value if chunk.status is ChunkStatus.UNKNOWN else chunk.status.value
    return [_row(chunk.first_index + offset, None, None, None, status) for offset in range(chunk.size)]


def _accepted_row(meta: MessageRecord, state: MessageState | None) -> dict[str, Any]:
    row = _row(
        meta.index,
        meta.ref,
        meta.to,
        meta.message_id,
        state.status if state else DeliveryStatus.ACCEPTED.value,
    )
    row["statusAt"] = state.event_time if state else None
    return row


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
