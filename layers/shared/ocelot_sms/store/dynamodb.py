"""The store on one DynamoDB table (docs/data-model.md): keys from keys.py, items from codec.py."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ocelot_sms.clock import epoch_after, from_iso, iso, utc_now
from ocelot_sms.store import codec, keys
from ocelot_sms.store.base import (
    INTERRUPTED_REASON,
    SENDER_RUNS_AT_MOST,
    RequestConflict,
    SendConflict,
    StorageError,
)
from ocelot_sms.store.records import (
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
    ScheduleStatus,
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
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
# Attempts at the keys BatchWriteItem / BatchGetItem leave unprocessed before giving up.
UNPROCESSED_ATTEMPTS = 8


class DynamoStore:
    def __init__(self, client: DynamoDBClient, table_name: str, data_retention_days: int = 400) -> None:
        self._client = client
        self._table = table_name
        self._retention_days = data_retention_days

    # ---- the Sender ------------------------------------------------------------------------------------

    def put_batch(self, batch: BatchRecord) -> BatchRecord:
        # First write wins: a replay of the same request keeps the original creation time. The hash is
        # checked here too, because idempotency records of chunks that were not sent are removed.
        created = iso(utc_now())
        stored = self._put_if_absent(codec.batch_item(batch, created, epoch_after(self._retention_days)))
        if not stored:  # ours: new, or our own write applied and retried
            return replace(batch, created_at=created)
        found = codec.batch_from(stored)
        if found.request_hash not in ("", batch.request_hash):
            raise RequestConflict(f"requestId {batch.request_id!r} was already used with a different payload")
        return found

    def end_schedule(
        self, request_id: str, status: ScheduleStatus, suppressed: tuple[int, ...] = ()
    ) -> BatchRecord | None:
        update = codec.schedule_update(request_id, status, iso(utc_now()), suppressed)
        try:
            item = self._client.update_item(TableName=self._table, **update)["Attributes"]
        except ClientError as error:
            # Not scheduled any more (or never): the batch as it stands says who won.
            item = _refused_item(error) or {}
        return codec.batch_from(item) if item else None

    def get_chunk(self, request_id: str, index: int) -> ChunkRecord | None:
        item = self._get(keys.chunk(request_id, index))
        return codec.chunk_from(item) if item else None

    def claim_chunk(self, chunk: ChunkRecord) -> ChunkRecord | None:
        # DynamoDB may apply a write and still answer 500; botocore's retry then fails the condition on
        # our own claim. The token tells that apart from an earlier attempt's claim.
        token = uuid.uuid4().hex
        item = codec.chunk_item(chunk, utc_now(), epoch_after(self._retention_days), claim_token=token)
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK) OR #s = :not_sent",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":not_sent": {"S": ChunkStatus.NOT_SENT.value}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            stored = _refused_item(error)
            if stored is None or codec.claim_token(stored) == token:
                return None
            return codec.chunk_from(stored)
        return None

    def finish_chunk(self, chunk: ChunkRecord) -> None:
        self._client.put_item(
            TableName=self._table, Item=codec.chunk_item(chunk, utc_now(), epoch_after(self._retention_days))
        )

    def put_messages(self, records: Sequence[MessageRecord]) -> None:
        created, expires = iso(utc_now()), epoch_after(self._retention_days)
        self._batch_write(codec.message_item(r, created, expires) for r in records)

    def put_rejection(self, rejection: Rejection, retention_days: int) -> None:
        now = utc_now()
        self._client.put_item(
            TableName=self._table, Item=codec.rejection_item(rejection, now, epoch_after(retention_days, now))
        )

    def put_send_part(self, part: SendPart) -> None:
        created, expires = iso(utc_now()), epoch_after(self._retention_days)
        header = self._put_if_absent(
            codec.send_item(SendRecord(part.send_id, part.parts, part.origin), created, expires)
        )
        if header and codec.send_from(header).parts != part.parts:
            raise SendConflict(
                f"send {part.send_id!r} was recorded with {codec.send_from(header).parts} parts, "
                f"not {part.parts}"
            )
        stored = self._put_if_absent(codec.send_part_item(part, created, expires))
        if stored and (taken := codec.send_part_from(stored).request_id) != part.request_id:
            raise SendConflict(f"part {part.part} of send {part.send_id!r} is request {taken!r}")

    # ---- the webhook ----------------------------------------------------------------------------------

    def put_raw(self, raw: RawDelivery, retention_days: int) -> bool:
        item = codec.raw_item(raw, epoch_after(retention_days, raw.received_at))
        # One conditional write: a retry of our own applied write finds it there, and that is fine.
        self._put_if_absent(item)
        return codec.is_whole_raw(item)

    def record_problems(self, raw: RawRef, problems: list[str]) -> None:
        self._client.update_item(TableName=self._table, **codec.problems_update(raw, problems))

    def put_event(self, event: EventRecord) -> EventWrite:
        """Cost: a new event is 2 writes (event + conditional state update); a duplicate is 1 write
        (refused by its condition) plus 1 read to repair a state update lost to an earlier failure."""
        item = codec.event_item(event, iso(utc_now()), epoch_after(self._retention_days))
        change = event.change
        stored = self._put_if_absent(item)
        if stored is None:
            if change:
                return EventWrite.APPLIED if self.advance_state(change) else EventWrite.STORED
            return EventWrite.STORED
        if change and stored and "orderKey" not in stored:
            # Stored before without being understood (a replay through a corrected contract): the
            # history gets the understood event, and the state moves as it would have then.
            self._client.put_item(TableName=self._table, Item=item)
            return EventWrite.APPLIED if self.advance_state(change) else EventWrite.STORED
        if change and not self._state_reached(change):
            self.advance_state(change)
        return EventWrite.DUPLICATE

    def advance_state(self, change: StateChange) -> bool:
        update = codec.state_update(change, iso(utc_now()), epoch_after(self._retention_days))
        try:
            self._client.update_item(TableName=self._table, **update)
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _state_reached(self, change: StateChange) -> bool:
        item = self._get(keys.message_state(change.message_id), projection="orderKey")
        stored = codec.order_key_of(item)
        return stored is not None and stored >= change.order_key

    def last_sent_to(self, number: str, before: str) -> SentRef | None:
        found = self._client.query(
            TableName=self._table,
            IndexName=keys.GSI2,
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :before",
            # "~" sorts after "#": every message created up to `before` itself.
            ExpressionAttributeValues={":pk": {"S": keys.recipient(number)}, ":before": {"S": f"{before}~"}},
            ScanIndexForward=False,
            Limit=1,
        ).get("Items", [])
        if not found:
            return None
        meta = self._get({"PK": found[0]["PK"]["S"], "SK": keys.META_SK})
        return codec.sent_ref(meta) if meta else None

    def suppress(self, suppression: Suppression) -> bool:
        item = codec.suppression_item(suppression, iso(utc_now()))
        if suppression.source is SuppressionSource.OPERATOR:
            self._client.put_item(TableName=self._table, Item=item)
            return True
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK) OR (#source <> :operator AND #at < :at)",
                ExpressionAttributeNames={"#source": "source", "#at": "at"},
                ExpressionAttributeValues={
                    ":operator": {"S": SuppressionSource.OPERATOR.value},
                    ":at": {"S": suppression.at},
                },
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def lift_suppression(self, number: str, before: str | None = None) -> bool:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": codec.key_item(keys.suppression(number)),
            "ConditionExpression": "attribute_exists(PK)",
        }
        if before is not None:
            request["ConditionExpression"] += " AND #source <> :operator AND #at < :before"
            request["ExpressionAttributeNames"] = {"#source": "source", "#at": "at"}
            request["ExpressionAttributeValues"] = {
                ":operator": {"S": SuppressionSource.OPERATOR.value},
                ":before": {"S": before},
            }
        try:
            self._client.delete_item(**request)
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def raw_deliveries(self, day: str) -> Iterator[RawDelivery]:
        for shard in range(keys.RAW_SHARDS):
            for item in self._query_partition(keys.raw_partition(day, shard)):
                yield codec.raw_from(item)

    def get_raw(self, raw: RawRef) -> RawDelivery | None:
        item = self._get(keys.raw_delivery(raw.delivery_id, from_iso(raw.received_at)))
        return codec.raw_from(item) if item else None

    # ---- reads -----------------------------------------------------------------------------------------

    def get_batch(self, request_id: str) -> StoredBatch | None:
        items = list(self._query_partition(keys.request_partition(request_id)))
        header = next((i for i in items if codec.is_batch(i)), None)
        if header is None:
            return None
        chunks = sorted((codec.chunk_from(i) for i in items if codec.is_chunk(i)), key=lambda c: c.index)
        return StoredBatch(codec.batch_from(header), tuple(chunks))

    def batch_messages(self, request_id: str, chunk_index: int) -> list[MessageRecord]:
        items = self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.chunk_messages(request_id, chunk_index)}},
        )
        return [codec.message_from(i) for i in items]

    def get_states(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        found = self._batch_get([keys.message_state(m) for m in message_ids])
        return {state.message_id: state for state in map(codec.state_from, found)}

    def get_metas(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        found = self._batch_get([keys.message_meta(m) for m in message_ids])
        return {meta.message_id: meta for meta in map(codec.message_from, found)}

    def suppressions(self, numbers: Sequence[str]) -> dict[str, Suppression]:
        found = self._batch_get([keys.suppression(n) for n in numbers])
        return {s.number: s for s in map(codec.suppression_from, found)}

    def list_suppressions(self, limit: int, after: str | None = None) -> SuppressionPage:
        condition, values = "GSI1PK = :pk", {":pk": {"S": keys.SUPPRESSIONS}}
        if after:
            condition += " AND GSI1SK > :after"
            values[":after"] = {"S": after}
        listed = list(
            itertools.islice(
                self._query(
                    IndexName=keys.GSI1, KeyConditionExpression=condition, ExpressionAttributeValues=values
                ),
                limit + 1,
            )
        )
        page = tuple(codec.suppression_from(i) for i in listed[:limit])
        return SuppressionPage(page, page[-1].number if len(listed) > limit else None)

    def inbound(self, since: datetime, limit: int, after: str | None = None) -> InboundPage:
        # One GSI1 key per day, walked from the day of `after` (or `since`) to today, oldest first.
        now = utc_now()
        since = max(since, now - timedelta(days=self._retention_days))
        start = after or iso(since)
        day = from_iso(start[:10] + "T00:00:00Z")
        # A page goes on after the last item of the one before; the first starts at `since` itself.
        condition = f"GSI1PK = :pk AND GSI1SK {'>' if after else '>='} :start"
        found: list[dict[str, Any]] = []
        while day <= now and len(found) <= limit:
            for item in self._query(
                IndexName=keys.GSI1,
                KeyConditionExpression=condition,
                ExpressionAttributeValues={
                    ":pk": {"S": keys.inbound_day(f"{day:%Y-%m-%d}")},
                    ":start": {"S": start},
                },
            ):
                found.append(item)
                if len(found) > limit:
                    break
            day += timedelta(days=1)
        page = found[:limit]
        more = len(found) > limit
        return InboundPage(
            tuple(codec.event_from(i) for i in page), codec.inbound_position(page[-1]) if more else None
        )

    def _batch_get(self, wanted: Sequence[keys.Key]) -> list[dict[str, Any]]:
        """The items of these keys that exist, read consistently; StorageError rather than a partial
        answer (a missing item would read as "none")."""
        unique = list({(k["PK"], k["SK"]): k for k in wanted}.values())  # no key twice in one request
        items: list[dict[str, Any]] = []
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys_ = [codec.key_item(k) for k in unique[start : start + BATCH_GET_LIMIT]]
            request: dict[str, Any] = {self._table: {"Keys": keys_, "ConsistentRead": True}}
            for _ in range(UNPROCESSED_ATTEMPTS):
                response = self._client.batch_get_item(RequestItems=request)
                items.extend(response["Responses"].get(self._table, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05)
            else:
                left = len(request[self._table]["Keys"])
                raise StorageError(f"{left} keys left unprocessed by BatchGetItem")
        return items

    def get_message(self, message_id: str) -> MessageHistory:
        meta = state = None
        events = []
        for item in self._query_partition(keys.message_partition(message_id)):
            sk = item["SK"]["S"]
            if sk == keys.META_SK:
                meta = codec.message_from(item)
            elif sk == keys.STATE_SK:
                state = codec.state_from(item)
            elif sk.startswith(keys.EVENT_SK_PREFIX):
                events.append(item)
        events.sort(key=codec.event_order)
        return MessageHistory(message_id, meta, state, tuple(codec.event_from(e) for e in events))

    def get_send(self, send_id: str) -> StoredSend | None:
        items = list(self._query_partition(keys.send_partition(send_id)))
        header = next((i for i in items if i["SK"]["S"] == keys.SEND_SK), None)
        if header is None:
            return None
        parts = sorted(
            (codec.send_part_from(i) for i in items if codec.is_send_part(i)), key=lambda p: p.part
        )
        return StoredSend(codec.send_from(header), tuple(parts))

    def send_part_of(self, request_id: str) -> SendPart | None:
        pk, sk = keys.part_of(request_id)
        items = self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="GSI1PK = :pk AND GSI1SK = :sk",
            ExpressionAttributeValues={":pk": {"S": pk}, ":sk": {"S": sk}},
        )
        return next((codec.send_part_from(i) for i in items), None)

    def recent_sends(self, limit: int, before: str | None = None) -> SendPage:
        # One GSI1 key per month: walked from the month of `before` (or now) back to the oldest month
        # any send can still be in, each newest first, until the page is full.
        oldest = iso(utc_now() - timedelta(days=self._retention_days))[:7]
        month = (before or iso(utc_now()))[:7]
        found: list[dict[str, Any]] = []
        while month >= oldest and len(found) <= limit:
            condition, values = "GSI1PK = :pk", {":pk": {"S": keys.sends_month(month)}}
            if before and before.startswith(month):
                condition += " AND GSI1SK < :before"
                values[":before"] = {"S": before}
            for item in self._query(
                IndexName=keys.GSI1,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
            ):
                found.append(item)
                if len(found) > limit:
                    break
            month = _previous_month(month)
        page = found[:limit]
        more = len(found) > limit
        return SendPage(
            tuple(codec.send_from(i) for i in page), codec.send_position(page[-1]) if more else None
        )

    # ---- operations ------------------------------------------------------------------------------------

    def unknown_chunks(self, now: datetime | None = None) -> list[ChunkRecord]:
        # Rare by design, so one GSI key holds each listing.
        interrupted_before = iso((now or utc_now()) - SENDER_RUNS_AT_MOST)
        unknown = self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.CHUNKS_UNKNOWN}},
        )
        interrupted = self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="GSI1PK = :pk AND GSI1SK < :before",
            ExpressionAttributeValues={
                ":pk": {"S": keys.CHUNKS_SENDING},
                ":before": {"S": interrupted_before},
            },
        )
        chunks = []
        for item in sorted((*unknown, *interrupted), key=lambda i: i["GSI1SK"]["S"]):
            chunk = codec.chunk_from(item)
            if chunk.status is ChunkStatus.SENDING:
                chunk = replace(chunk, reason=INTERRUPTED_REASON)
            chunks.append(chunk)
        return chunks

    def chunks_to_sweep(self, since: datetime, until: datetime) -> Iterator[ChunkRecord]:
        # By whole hour buckets: a bucket is read once ALL of its hour is before `until`, so no chunk
        # comes out too young (one accepted at 10:45 is not due at 10:15 three days later, when 10:00 is).
        hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour + timedelta(hours=1) <= until:
            for member in self._query(
                IndexName=keys.GSI2,
                KeyConditionExpression="GSI2PK = :pk",
                ExpressionAttributeValues={":pk": {"S": keys.sweep_bucket(hour)}},
            ):
                chunk = self.get_chunk(*keys.parse_sweep_member(member["GSI2SK"]["S"]))
                if chunk is not None:
                    yield chunk
            hour += timedelta(hours=1)

    def swept(self, chunk: ChunkRecord) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=codec.key_item(keys.chunk(chunk.request_id, chunk.index)),
            UpdateExpression="REMOVE GSI2PK, GSI2SK",
        )

    # ---- plumbing ----------------------------------------------------------------------------------------

    def _get(self, key: keys.Key, projection: str | None = None) -> dict[str, Any] | None:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": codec.key_item(key),
            "ConsistentRead": True,
        }
        if projection:
            request["ProjectionExpression"] = projection
        item: dict[str, Any] | None = self._client.get_item(**request).get("Item")
        return item

    def _put_if_absent(self, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """PutItem unless an item with that key exists: None when written, else the stored item."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=dict(item),
                ConditionExpression="attribute_not_exists(PK)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            stored = _refused_item(error)
            # Refused, yet nothing there: our own write, applied once and retried by botocore.
            return stored if stored is not None else {}
        return None

    def _query_partition(self, pk: str) -> Iterator[dict[str, Any]]:
        return self._query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": pk}})

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
            for attempt in range(UNPROCESSED_ATTEMPTS):
                requests += 1
                response = self._client.batch_write_item(RequestItems={self._table: group})
                group = response.get("UnprocessedItems", {}).get(self._table, [])
                if not group:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            if group:
                raise StorageError(f"{len(group)} items left unprocessed by BatchWriteItem")
        return requests


def _previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _refused_item(error: ClientError) -> dict[str, Any] | None:
    """The item that made a conditional write fail (ALL_OLD); re-raises any other error."""
    if not _is_condition_failure(error):
        raise error
    response: dict[str, Any] = dict(error.response)
    item: dict[str, Any] | None = response.get("Item")
    return item
