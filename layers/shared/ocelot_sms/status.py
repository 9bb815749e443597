"""Read models for operators: a batch with counts and its messages' current status, one message's
history. Used by the status API (functions/operations) and the CLI."""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from typing import Any

from ocelot_sms.contract import CallbackEvent, DeliveryStatus
from ocelot_sms.store import DynamoStore

MAX_PAGE = 500
DEFAULT_PAGE = 100
# Messages of the batch with no chunk record: their chunk was never tried (an earlier one failed).
NOT_SENT = "not_sent"


class BadRequest(ValueError):
    """A query parameter the API refuses (400)."""


class BadCursor(BadRequest):
    pass


class BadLimit(BadRequest):
    pass


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise BadCursor("cursor is not one this API returned") from error
    # type(), not isinstance(): JSON true would pass as the integer 1.
    if type(offset) is not int or offset < 0:
        raise BadCursor("cursor is not one this API returned")
    return offset


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise BadLimit(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return limit


class StatusService:
    def __init__(self, store: DynamoStore) -> None:
        self._store = store

    def batch(
        self, request_id: str, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> dict[str, Any] | None:
        """The batch, counts by current status over ALL its messages, and one page of messages.

        Counting reads every message's state (one query per chunk plus BatchGetItem per 100), so the
        cost grows with the batch: about 200 read requests for 10,000 messages. Pages are offsets
        into the batch's messages in request order, which never changes once sent.
        """
        # Checked before anything is read: a bad request costs no reads.
        offset = decode_cursor(cursor)
        limit = check_limit(limit)
        items = self._store.get_batch(request_id)
        header = next((i for i in items if i["SK"] == "#BATCH"), None)
        if header is None:
            return None
        chunks = sorted((i for i in items if i["SK"].startswith("CHUNK#")), key=lambda c: c["index"])
        messages: list[dict[str, Any]] = []
        for chunk in chunks:
            if chunk["status"] == "accepted":
                messages.extend(self._store.batch_messages(request_id, chunk["index"]))
            else:
                messages.extend(_unconfirmed(chunk))
        covered = {m["index"] for m in messages}
        messages.extend(_never_tried(i) for i in range(header.get("messageCount") or 0) if i not in covered)
        states = self._store.get_states([m["messageId"] for m in messages if m.get("messageId")])
        rows = [
            _row(m, states.get(m.get("messageId") or "")) for m in sorted(messages, key=lambda m: m["index"])
        ]
        counts = Counter(row["status"] for row in rows)
        page = rows[offset : offset + limit]
        next_offset = offset + len(page)
        return {
            "requestId": request_id,
            "createdAt": header.get("createdAt"),
            "origin": header.get("origin"),
            "messageCount": header.get("messageCount"),
            "counts": dict(sorted(counts.items())),
            "chunks": [_chunk_view(c) for c in chunks],
            "unknownChunks": [_chunk_view(c) for c in chunks if c["status"] == "unknown"],
            "messages": page,
            "nextCursor": encode_cursor(next_offset) if next_offset < len(rows) else None,
        }

    def message(self, message_id: str) -> dict[str, Any] | None:
        found = self._store.get_message(message_id)
        meta, state, events = found["meta"], found["state"], found["events"]
        if meta is None and state is None and not events:
            return None
        return {
            "messageId": message_id,
            "requestId": (meta or {}).get("requestId"),
            "ref": (meta or {}).get("ref"),
            "index": (meta or {}).get("index"),
            "to": (meta or {}).get("to") or _recipient(events),
            "batchId": (meta or {}).get("batchId") or (state or {}).get("batchId"),
            "status": (state or {}).get("status") or DeliveryStatus.ACCEPTED.value,
            "statusAt": (state or {}).get("eventTime"),
            "errorCode": (state or {}).get("errorCode"),
            "errorMessage": (state or {}).get("errorMessage"),
            "history": [
                {
                    "eventId": e["eventId"],
                    "status": e.get("status"),
                    "eventTime": e.get("eventTime"),
                    "receivedAt": e.get("receivedAt"),
                    "event": json.loads(e["payload"]) if e.get("payload") else None,
                }
                for e in events
            ],
        }


def _unconfirmed(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages of a chunk without Ocelot ids: their index is all we know."""
    return [
        {
            "index": chunk["firstIndex"] + offset,
            "messageId": None,
            "ref": None,
            "to": None,
            "chunkIndex": chunk["index"],
            "status": chunk["status"],
        }
        for offset in range(chunk["size"])
    ]


def _never_tried(index: int) -> dict[str, Any]:
    return {"index": index, "messageId": None, "ref": None, "to": None, "status": NOT_SENT}


def _recipient(events: list[dict[str, Any]]) -> str | None:
    """The recipient as the latest callback names it (Ocelot's field names are contract.py's)."""
    for event in reversed(events):
        try:
            to = CallbackEvent.model_validate(json.loads(event.get("payload") or "{}")).to
        except ValueError:  # not JSON, or not an event (pydantic's ValidationError is one)
            continue
        if to:
            return to
    return None


def _row(meta: dict[str, Any], state: dict[str, Any] | None) -> dict[str, Any]:
    if meta.get("messageId") is None:
        status = DeliveryStatus.UNKNOWN.value if meta["status"] == "unknown" else meta["status"]
    else:
        status = (state or {}).get("status") or DeliveryStatus.ACCEPTED.value
    return {
        "index": meta["index"],
        "ref": meta.get("ref"),
        "to": meta.get("to"),
        "messageId": meta.get("messageId"),
        "status": status,
        "statusAt": (state or {}).get("eventTime"),
    }


def _chunk_view(chunk: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": chunk["index"],
        "status": chunk["status"],
        "batchId": chunk.get("batchId"),
        "size": chunk["size"],
        "firstIndex": chunk["firstIndex"],
        "reason": chunk.get("reason"),
    }
