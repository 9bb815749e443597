"""DynamoDB storage: one table for batches, messages, status events and raw callbacks.

Key design and access patterns are documented in docs/data-model.md. In short:

| item          | PK                | SK                | GSI1PK / GSI1SK                          |
|---------------|-------------------|-------------------|------------------------------------------|
| batch request | REQ#{requestId}   | #BATCH            |                                          |
| chunk         | REQ#{requestId}   | CHUNK#{index}     | OBATCH#{ocelotBatchId} / REQ#{req}#{i}   |
|               |                   |                   | unknown: CHUNKS#unknown / {time}#{req}.. |
| message meta  | MSG#{messageId}   | #META             | REQ#{requestId}#C{chunk} / {index}       |
| message state | MSG#{messageId}   | #STATE            |                                          |
| status event  | MSG#{messageId}   | EVT#{eventId}     |                                          |
| other event   | EVT#{eventId}     | EVT#{eventId}     |                                          |
| raw delivery  | RAW#{day}#{shard} | {receivedAt}#{id} |                                          |
| rejected      | REJECTED#{id}     | #REJECTED         | REJECTED#{day} / {receivedAt}#{id}       |

Messages are keyed by Ocelot's message id and listed per chunk through GSI1, so a 10,000-message
batch spreads over 10,000 partition keys for the writes and 100 GSI keys for the listing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ocelot_sms.contract import CallbackEvent, DeliveryStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

BATCH_WRITE_LIMIT = 25
RAW_SHARDS = 8
# Bodies above this many bytes are stored gzip-compressed; an item holds at most 400 KB, so a body
# still larger than RAW_MAX_STORED compressed cannot be kept whole.
RAW_COMPRESS_ABOVE = 32_000
RAW_MAX_STORED = 350_000
# A rejected queue message keeps its body up to this size, and this many problems (clipped to
# TEXT_FIELD_MAX each) with the count of all: together well under 400 KB.
REJECTED_BODY_MAX = 150_000
REJECTION_PROBLEMS_KEPT = 100
# A stored event keeps the item as received up to this size; beyond, the raw delivery holds it.
EVENT_PAYLOAD_MAX = 64_000
# Lambda's longest timeout: a chunk claimed longer ago than this is no longer being sent.
SENDER_RUNS_AT_MOST = timedelta(minutes=15)
INTERRUPTED_REASON = (
    "interrupted after it was claimed, and may have been sent: send the same request again (same "
    "requestId and body) to record it unknown with its Ocelot request, then attach or resend"
)
# Free-text fields copied into event and state items are cut to this many characters.
TEXT_FIELD_MAX = 1024

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ChunkStatus(StrEnum):
    SENDING = "sending"  # claimed; the HTTP call may be in flight
    ACCEPTED = "accepted"  # Ocelot returned ids
    UNKNOWN = "unknown"  # sent, outcome unknown: never re-sent automatically
    NOT_SENT = "not_sent"  # certainly not taken by Ocelot (429/503/connect/4xx): safe to send again


class StorageError(RuntimeError):
    """DynamoDB did not durably store what was asked."""


class TooLargeToStore(ValueError):
    """Bigger than an item can hold even compressed: retrying cannot help."""


class RequestConflict(ValueError):
    """The requestId was stored before with a different payload."""


def order_key(status: DeliveryStatus, instant: datetime | None, event_id: str) -> str:
    """Sortable key of a status event: terminal beats non-terminal, then the later instant, then
    the further status, then the event id (so equal keys mean the same event).

    Compared as a string in a DynamoDB condition, so the current status only ever moves forward.
    """
    micros = max(0, int(instant.timestamp() * 1_000_000)) if instant else 0
    return f"{int(status.is_terminal)}#{micros:020d}#{status.rank:02d}#{event_id}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def epoch_after(days: int, now: datetime | None = None) -> int:
    return int(((now or utc_now()) + timedelta(days=days)).timestamp())


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
class ChunkRecord:
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


@dataclass(frozen=True, slots=True)
class RawDelivery:
    delivery_id: str
    received_at: datetime
    body: bytes
    headers: Mapping[str, str]
    source_ip: str | None = None

    @property
    def key(self) -> dict[str, str]:
        shard = int(hashlib.sha256(self.delivery_id.encode()).hexdigest(), 16) % RAW_SHARDS
        return {
            "PK": f"RAW#{self.received_at.astimezone(UTC):%Y-%m-%d}#{shard}",
            "SK": f"{iso(self.received_at)}#{self.delivery_id}",
        }


class EventWrite(StrEnum):
    APPLIED = "applied"  # new event; the message's current status moved to it
    STORED = "stored"  # new event, kept in history; current status already further along
    DUPLICATE = "duplicate"  # eventId seen before: nothing new written


class Store(Protocol):
    def get_chunk(self, request_id: str, index: int) -> ChunkRecord | None: ...
    def claim_chunk(self, chunk: ChunkRecord) -> ChunkRecord | None: ...
    def finish_chunk(self, chunk: ChunkRecord) -> None: ...
    def put_batch(
        self, request_id: str, request_hash: str, message_count: int, chunk_count: int, origin: str
    ) -> None: ...
    def put_messages(self, records: Sequence[MessageRecord]) -> None: ...
    def put_rejection(
        self, source_id: str, body: str, problems: list[dict[str, Any]], retention_days: int
    ) -> None: ...
    def put_raw(self, raw: RawDelivery, retention_days: int) -> None: ...
    def put_event(self, event: CallbackEvent, raw_key: Mapping[str, str]) -> EventWrite: ...


class DynamoStore:
    def __init__(self, client: DynamoDBClient, table_name: str, data_retention_days: int = 400) -> None:
        self._client = client
        self._table = table_name
        self._retention_days = data_retention_days

    # ---- sender side --------------------------------------------------------------------------

    def get_chunk(self, request_id: str, index: int) -> ChunkRecord | None:
        item = self._client.get_item(
            TableName=self._table, Key=_key(f"REQ#{request_id}", _chunk_sk(index)), ConsistentRead=True
        ).get("Item")
        return _chunk_from_item(item) if item else None

    def claim_chunk(self, chunk: ChunkRecord) -> ChunkRecord | None:
        """Mark the chunk as being sent, unless an earlier attempt may already have sent it.

        Returns None when claimed; otherwise the existing record (SENDING, ACCEPTED or UNKNOWN), which
        the caller must not send again. This guards against re-sending after a crash mid-send, which
        idempotency records alone do not (their in-progress lock expires with the Lambda's time).
        """
        # DynamoDB may apply a write and still answer 500; botocore's retry then fails the condition
        # on our own claim. The token tells that apart from an earlier attempt's claim.
        token = uuid.uuid4().hex
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**self._chunk_item(chunk), "claimToken": {"S": token}},
                ConditionExpression="attribute_not_exists(PK) OR #s = :not_sent",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":not_sent": {"S": ChunkStatus.NOT_SENT.value}},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            item = self._client.get_item(
                TableName=self._table,
                Key=_key(f"REQ#{chunk.request_id}", _chunk_sk(chunk.index)),
                ConsistentRead=True,
            ).get("Item")
            if item is None or item.get("claimToken", {}).get("S") == token:
                return None
            return _chunk_from_item(item)
        return None

    def finish_chunk(self, chunk: ChunkRecord) -> None:
        self._client.put_item(TableName=self._table, Item=self._chunk_item(chunk))

    def put_batch(
        self, request_id: str, request_hash: str, message_count: int, chunk_count: int, origin: str
    ) -> None:
        item = {
            "PK": f"REQ#{request_id}",
            "SK": "#BATCH",
            "type": "batch",
            "requestId": request_id,
            "requestHash": request_hash,
            "messageCount": message_count,
            "chunkCount": chunk_count,
            "origin": origin,
            "createdAt": iso(utc_now()),
            "expiresAt": epoch_after(self._retention_days),
        }
        # First write wins: a replay of the same request keeps the original creation time. The hash
        # is checked here too, because idempotency records of chunks that were not sent are removed.
        if self._put_if_absent(item):
            return
        stored = self._client.get_item(
            TableName=self._table, Key=_key(f"REQ#{request_id}", "#BATCH"), ConsistentRead=True
        ).get("Item", {})
        if stored.get("requestHash", {}).get("S", request_hash) != request_hash:
            raise RequestConflict(f"requestId {request_id!r} was already used with a different payload")

    def put_messages(self, records: Sequence[MessageRecord]) -> None:
        expires = epoch_after(self._retention_days)
        created = iso(utc_now())
        self._batch_write(
            _to_item(
                {
                    "PK": f"MSG#{r.message_id}",
                    "SK": "#META",
                    "type": "message",
                    "messageId": r.message_id,
                    "requestId": r.request_id,
                    "index": r.index,
                    "ref": r.ref,
                    "to": r.to,
                    "chunkIndex": r.chunk_index,
                    "batchId": r.batch_id,
                    "createdAt": created,
                    "initialStatus": DeliveryStatus.ACCEPTED.value,
                    "expiresAt": expires,
                    "GSI1PK": _batch_messages_pk(r.request_id, r.chunk_index),
                    "GSI1SK": f"{r.index:06d}",
                }
            )
            for r in records
        )

    def put_rejection(
        self, source_id: str, body: str, problems: list[dict[str, Any]], retention_days: int
    ) -> None:
        now = utc_now()
        data = body.encode("utf-8", "surrogatepass")
        packed = _packed(data, REJECTED_BODY_MAX)
        truncated = packed is None
        # Too large even compressed (SQS takes up to 1 MiB): the start, as text.
        stored, encoding = packed or (data[:REJECTED_BODY_MAX].decode("utf-8", "ignore"), "text")
        item = {
            "PK": f"REJECTED#{source_id}",
            "SK": "#REJECTED",
            "type": "rejected",
            "sourceId": source_id,
            "body": stored,
            "bodyEncoding": encoding,
            "bodyBytes": len(data),
            "bodyTruncated": truncated,
            "problems": [
                {k: _clip(str(v)) for k, v in p.items()} for p in problems[:REJECTION_PROBLEMS_KEPT]
            ],
            "problemCount": len(problems),
            "receivedAt": iso(now),
            "expiresAt": epoch_after(retention_days, now),
            "GSI1PK": f"REJECTED#{now:%Y-%m-%d}",
            "GSI1SK": f"{iso(now)}#{source_id}",
        }
        self._client.put_item(TableName=self._table, Item=_to_item(item))

    def _chunk_item(self, chunk: ChunkRecord) -> dict[str, Any]:
        now = iso(utc_now())
        item: dict[str, Any] = {
            "PK": f"REQ#{chunk.request_id}",
            "SK": _chunk_sk(chunk.index),
            "type": "chunk",
            "requestId": chunk.request_id,
            "index": chunk.index,
            "status": chunk.status.value,
            "size": chunk.size,
            "firstIndex": chunk.first_index,
            "batchId": chunk.batch_id,
            "reason": chunk.reason,
            "updatedAt": now,
            "expiresAt": epoch_after(self._retention_days),
        }
        if chunk.message_ids:
            item["messageIds"] = list(chunk.message_ids)
        if chunk.status is ChunkStatus.ACCEPTED and chunk.batch_id:
            item["GSI1PK"], item["GSI1SK"] = (
                f"OBATCH#{chunk.batch_id}",
                f"REQ#{chunk.request_id}#{chunk.index}",
            )
            # Found again by the stale-message sweep (GSI2, sparse) until it has been swept.
            item["GSI2PK"], item["GSI2SK"] = _sweep_bucket(utc_now()), f"{chunk.request_id}#{chunk.index:05d}"
        elif chunk.status is ChunkStatus.SENDING:
            # Listed for reconciliation once too old to be in flight; gone when the chunk is finished.
            item["GSI1PK"], item["GSI1SK"] = "CHUNKS#sending", f"{now}#{chunk.request_id}#{chunk.index}"
        elif chunk.status is ChunkStatus.UNKNOWN:
            item["GSI1PK"], item["GSI1SK"] = "CHUNKS#unknown", f"{now}#{chunk.request_id}#{chunk.index}"
            if chunk.payload:
                packed = _packed(json.dumps(chunk.payload, ensure_ascii=False).encode())
                if packed is not None:
                    item["payload"], item["payloadEncoding"] = packed
                else:
                    item["reason"] = f"{chunk.reason}; the Ocelot request is too large to keep for a resend"
        return _to_item(item)

    # ---- webhook side -------------------------------------------------------------------------

    def put_raw(self, raw: RawDelivery, retention_days: int) -> None:
        packed = _packed(raw.body)
        if packed is None:
            raise TooLargeToStore(f"raw delivery of {len(raw.body)} bytes is too large to store")
        body, encoding = packed
        item = {
            **raw.key,
            "type": "raw",
            "deliveryId": raw.delivery_id,
            "receivedAt": iso(raw.received_at),
            "body": body,
            "bodyEncoding": encoding,
            "bodyBytes": len(raw.body),
            "headers": json.dumps(dict(raw.headers), sort_keys=True),
            "sourceIp": raw.source_ip,
            "expiresAt": epoch_after(retention_days, raw.received_at),
        }
        self._client.put_item(TableName=self._table, Item=_to_item(item))

    def put_event(self, event: CallbackEvent, raw_key: Mapping[str, str]) -> EventWrite:
        """Store one event idempotently by eventId and move the message's current status forward.

        Cost: a new event is 2 writes (event + conditional state update); a duplicate is 1 write
        (refused by its condition) plus 1 read to repair a state update lost to an earlier failure.
        """
        status = event.delivery_status if event.is_status_change else None
        instant = event.instant
        pk = f"MSG#{event.message_id}" if status and event.message_id else f"EVT#{event.event_id}"
        key = order_key(status, instant, event.event_id) if status else None
        item = {
            "PK": pk,
            "SK": f"EVT#{event.event_id}",
            "type": "event",
            "eventId": event.event_id,
            "name": _clip(event.name),
            "messageId": event.message_id,
            "batchId": _clip(event.batch_id),
            "status": status.value if status else _clip(event.status),
            "eventTime": iso(instant) if instant else None,
            "orderKey": key,
            "receivedAt": iso(utc_now()),
            "raw": dict(raw_key),
            "expiresAt": epoch_after(self._retention_days),
        }
        # ASCII escapes keep lone surrogates (half an emoji) storable; a huge item stays in the raw
        # delivery only, or the event would exceed DynamoDB's 400 KB item limit.
        payload = json.dumps(event.raw, sort_keys=True)
        if len(payload) <= EVENT_PAYLOAD_MAX:
            item["payload"] = payload
        else:
            item["payloadInRaw"] = True
        if not self._put_if_absent(item):
            if status and key and event.message_id and not self._state_reached(event.message_id, key):
                self._advance_state(event, status, key)
            return EventWrite.DUPLICATE
        if status and key and event.message_id:
            return EventWrite.APPLIED if self._advance_state(event, status, key) else EventWrite.STORED
        return EventWrite.STORED

    def _advance_state(self, event: CallbackEvent, status: DeliveryStatus, key: str) -> bool:
        instant = event.instant
        values = {
            ":s": status.value,
            ":k": key,
            ":e": event.event_id,
            ":t": iso(instant) if instant else None,
            ":ec": _clip(event.error_code),
            ":em": _clip(event.error_message),
            ":b": _clip(event.batch_id),
            ":u": iso(utc_now()),
            ":x": epoch_after(self._retention_days),
            ":m": event.message_id,
        }
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(f"MSG#{event.message_id}", "#STATE"),
                UpdateExpression=(
                    "SET #type = :ty, messageId = :m, #status = :s, orderKey = :k, eventId = :e, "
                    "eventTime = :t, errorCode = :ec, errorMessage = :em, batchId = :b, updatedAt = :u, "
                    "expiresAt = :x"
                ),
                ConditionExpression="attribute_not_exists(orderKey) OR orderKey < :k",
                ExpressionAttributeNames={"#type": "type", "#status": "status"},
                ExpressionAttributeValues={
                    k: _serializer.serialize(v) for k, v in {**values, ":ty": "state"}.items()
                },
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _state_reached(self, message_id: str, key: str) -> bool:
        item = self._client.get_item(
            TableName=self._table,
            Key=_key(f"MSG#{message_id}", "#STATE"),
            ProjectionExpression="orderKey",
            ConsistentRead=True,
        ).get("Item")
        if not item or "orderKey" not in item:
            return False
        return item["orderKey"]["S"] >= key

    # ---- reads ----------------------------------------------------------------------------------

    def get_message(self, message_id: str) -> dict[str, Any]:
        """Meta, current state and history (in event-time order) of one message."""
        items = [
            _from_item(i)
            for i in self._query(
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": {"S": f"MSG#{message_id}"}},
            )
        ]
        meta = next((i for i in items if i["SK"] == "#META"), None)
        state = next((i for i in items if i["SK"] == "#STATE"), None)
        events = sorted(
            (i for i in items if i["SK"].startswith("EVT#")),
            key=lambda i: (i.get("eventTime") or "", i.get("orderKey") or ""),
        )
        return {"meta": meta, "state": state, "events": events}

    def batch_messages(self, request_id: str, chunk_index: int) -> list[dict[str, Any]]:
        return [
            _from_item(i)
            for i in self._query(
                IndexName="GSI1",
                KeyConditionExpression="GSI1PK = :pk",
                ExpressionAttributeValues={":pk": {"S": _batch_messages_pk(request_id, chunk_index)}},
            )
        ]

    def get_states(self, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(message_ids))  # BatchGetItem refuses a request with the same key twice
        for start in range(0, len(unique), 100):
            keys = [_key(f"MSG#{m}", "#STATE") for m in unique[start : start + 100]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(8):
                response = self._client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self._table, []):
                    state = _from_item(item)
                    states[state["messageId"]] = state
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05)
            else:
                # A missing state would read as "no callback yet": never return a partial answer.
                left = len(request[self._table]["Keys"])
                raise StorageError(f"{left} keys left unprocessed by BatchGetItem")
        return states

    def get_batch(self, request_id: str) -> list[dict[str, Any]]:
        """The batch header and its chunks."""
        return [
            _from_item(i)
            for i in self._query(
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": {"S": f"REQ#{request_id}"}},
            )
        ]

    def raw_deliveries(self, day: str) -> Iterator[dict[str, Any]]:
        for shard in range(RAW_SHARDS):
            for item in self._query(
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": {"S": f"RAW#{day}#{shard}"}},
            ):
                raw = _from_item(item)
                raw["body"] = _unpacked(raw["body"], raw.get("bodyEncoding"))
                yield raw

    # ---- operations -------------------------------------------------------------------------------

    def unknown_chunks(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Chunks whose send outcome is unknown, oldest first (rare by design: one GSI key holds them),
        and chunks claimed longer ago than any Sender runs, whose sending was interrupted and never
        retried (rarer still: an API client that gave up after a crash)."""
        interrupted_before = iso((now or utc_now()) - SENDER_RUNS_AT_MOST)
        unknown = self._query(
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "CHUNKS#unknown"}},
        )
        interrupted = self._query(
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk AND GSI1SK < :before",
            ExpressionAttributeValues={":pk": {"S": "CHUNKS#sending"}, ":before": {"S": interrupted_before}},
        )
        chunks = []
        for item in sorted((*unknown, *interrupted), key=lambda i: i["GSI1SK"]["S"]):
            chunk = _from_item(item)
            chunk["payload"] = _payload(chunk)
            chunk.pop("payloadEncoding", None)
            if chunk["status"] == ChunkStatus.SENDING:
                chunk["reason"] = INTERRUPTED_REASON
            chunks.append(chunk)
        return chunks

    def chunks_to_sweep(self, since: datetime, until: datetime) -> Iterator[ChunkRecord]:
        """Accepted chunks not swept yet, accepted between `since` and `until`, by whole hour buckets:
        a bucket is read once ALL of its hour is before `until`, so no chunk comes out too young (one
        accepted at 10:45 is not due at 10:15 three days later, when 10:00 is)."""
        hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour + timedelta(hours=1) <= until:
            for key in self._query(
                IndexName="GSI2",
                KeyConditionExpression="GSI2PK = :pk",
                ExpressionAttributeValues={":pk": {"S": _sweep_bucket(hour)}},
            ):
                request_id, index = key["GSI2SK"]["S"].rsplit("#", 1)
                chunk = self.get_chunk(request_id, int(index))
                if chunk is not None:
                    yield chunk
            hour += timedelta(hours=1)

    def mark_unknown(self, message_id: str, now: datetime) -> bool:
        """Give up on a message: `unknown` now, unless it already has a terminal status. A later
        terminal callback still wins; an older non-terminal one does not undo it."""
        key = order_key(DeliveryStatus.UNKNOWN, now, "stale-sweep")
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(f"MSG#{message_id}", "#STATE"),
                UpdateExpression=(
                    "SET #type = :ty, messageId = :m, #status = :s, orderKey = :k, eventId = :e, "
                    "eventTime = :t, updatedAt = :t, expiresAt = :x"
                ),
                ConditionExpression="attribute_not_exists(orderKey) OR orderKey < :k",
                ExpressionAttributeNames={"#type": "type", "#status": "status"},
                ExpressionAttributeValues=_to_item(
                    {
                        ":ty": "state",
                        ":m": message_id,
                        ":s": DeliveryStatus.UNKNOWN.value,
                        ":k": key,
                        ":e": "stale-sweep",
                        ":t": iso(now),
                        ":x": epoch_after(self._retention_days, now),
                    }
                ),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def swept(self, chunk: ChunkRecord) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=_key(f"REQ#{chunk.request_id}", _chunk_sk(chunk.index)),
            UpdateExpression="REMOVE GSI2PK, GSI2SK",
        )

    def _put_if_absent(self, item: Mapping[str, Any]) -> bool:
        """PutItem unless an item with that key exists. False when it did (nothing written)."""
        try:
            self._client.put_item(
                TableName=self._table, Item=_to_item(item), ConditionExpression="attribute_not_exists(PK)"
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(TableName=self._table, **kwargs):
            yield from page.get("Items", [])

    def _batch_write(self, items: Iterable[dict[str, Any]]) -> int:
        """BatchWriteItem in groups of 25, re-sending unprocessed items with backoff. Returns requests."""
        pending: list[Any] = [{"PutRequest": {"Item": item}} for item in items]
        requests = 0
        for start in range(0, len(pending), BATCH_WRITE_LIMIT):
            group: list[Any] = pending[start : start + BATCH_WRITE_LIMIT]
            for attempt in range(8):
                requests += 1
                response = self._client.batch_write_item(RequestItems={self._table: group})
                group = response.get("UnprocessedItems", {}).get(self._table, [])
                if not group:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            if group:
                raise StorageError(f"{len(group)} items left unprocessed by BatchWriteItem")
        return requests


def _clip(value: str | None) -> str | None:
    return value[:TEXT_FIELD_MAX] if value is not None else None


def _sweep_bucket(instant: datetime) -> str:
    return f"SWEEP#{instant.astimezone(UTC):%Y-%m-%dT%H}"


def _chunk_sk(index: int) -> str:
    return f"CHUNK#{index:05d}"


def _batch_messages_pk(request_id: str, chunk_index: int) -> str:
    return f"REQ#{request_id}#C{chunk_index:05d}"


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def _to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    # DynamoDB numbers come back as Decimal; ours are all integers.
    if type(value).__name__ == "Decimal":
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _chunk_from_item(item: Mapping[str, Any]) -> ChunkRecord:
    plain = _from_item(item)
    return ChunkRecord(
        request_id=plain["requestId"],
        index=plain["index"],
        status=ChunkStatus(plain["status"]),
        size=plain["size"],
        first_index=plain["firstIndex"],
        batch_id=plain.get("batchId"),
        reason=plain.get("reason"),
        message_ids=tuple(plain.get("messageIds", ())),
        payload=_payload(plain),
    )


def _payload(plain: Mapping[str, Any]) -> dict[str, Any] | None:
    """A chunk's kept Ocelot request, decoded; None when none was kept."""
    if not plain.get("payload"):
        return None
    payload: dict[str, Any] = json.loads(_unpacked(plain["payload"], plain.get("payloadEncoding")))
    return payload


def _packed(data: bytes, limit: int = RAW_MAX_STORED) -> tuple[str | Binary, str] | None:
    """Bytes as an attribute value and its encoding: UTF-8 text when small, otherwise gzip; None when
    more than `limit` bytes even compressed. Bytes that are not UTF-8 are compressed too, so they are kept
    byte for byte, never with replacement characters."""
    if len(data) <= RAW_COMPRESS_ABOVE:
        try:
            return data.decode("utf-8"), "text"
        except UnicodeDecodeError:
            pass
    packed = gzip.compress(data)
    return (Binary(packed), "gzip") if len(packed) <= limit else None


def _unpacked(value: Any, encoding: str | None) -> str:
    if encoding == "gzip":
        return gzip.decompress(bytes(value)).decode("utf-8", "replace")
    return str(value)


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
