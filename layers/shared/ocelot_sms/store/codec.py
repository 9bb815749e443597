"""Records to DynamoDB items and back: the one place where attribute names and types are spelled.

Bodies that may be large (a raw delivery, a rejected queue message, an unknown chunk's Ocelot
request) are UTF-8 text up to 32 KB and gzip-compressed binary above, so that an item (400 KB at
most) holds them whole as long as it can.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from ocelot_sms.clock import from_iso, iso
from ocelot_sms.store import keys
from ocelot_sms.store.base import RequestTooLarge
from ocelot_sms.store.records import (
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    EventRecord,
    Inbound,
    MessageRecord,
    MessageState,
    RawDelivery,
    RawRef,
    Recipient,
    Rejection,
    Schedule,
    ScheduleStatus,
    SendPart,
    SendRecord,
    SentRef,
    StateChange,
    Suppression,
    SuppressionSource,
)

Item = dict[str, Any]

# Bodies above this many bytes are stored gzip-compressed, at zlib's default level: on callback JSON
# 2-3x less CPU than gzip's own default (9) for 2-5% more bytes (docs/performance.md).
COMPRESS_ABOVE = 32_000
COMPRESS_LEVEL = 6
# A body still larger than this compressed cannot be kept whole in one item.
MAX_STORED_BODY = 350_000
# A rejected queue message keeps its body up to this size; it and a malformed delivery keep this many
# problems (clipped to TEXT_FIELD_MAX each) with the count of all: together well under 400 KB.
REJECTED_BODY_MAX = 150_000
PROBLEMS_KEPT = 100
# A stored event keeps the item as received up to this size; beyond, the raw delivery holds it.
EVENT_PAYLOAD_MAX = 64_000
# Free-text fields copied into event and state items are cut to this many characters.
TEXT_FIELD_MAX = 1024
# An inbound text is kept up to this many characters (a long SMS is 10 segments of 153).
INBOUND_TEXT_MAX = 4000

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> Item:
    """DynamoDB's typed form of plain values; None values are left out."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def key_item(key: keys.Key) -> Item:
    return to_item(key)


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    # DynamoDB numbers come back as Decimal; ours are all integers. Binary stays Binary.
    if type(value).__name__ == "Decimal":
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def clip(value: str | None) -> str | None:
    return value[:TEXT_FIELD_MAX] if value is not None else None


def pack(data: bytes, limit: int = MAX_STORED_BODY) -> tuple[str | Binary, str] | None:
    """Bytes as an attribute value and its encoding: UTF-8 text when small, otherwise gzip; None when
    more than `limit` bytes even compressed. Bytes that are not UTF-8 are compressed too, so they are
    kept byte for byte, never with replacement characters."""
    if len(data) <= COMPRESS_ABOVE:
        try:
            return data.decode("utf-8"), "text"
        except UnicodeDecodeError:
            pass
    packed = gzip.compress(data, compresslevel=COMPRESS_LEVEL)
    return (Binary(packed), "gzip") if len(packed) <= limit else None


def unpack(value: Any, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(bytes(value))
    return str(value).encode("utf-8", "surrogatepass")


# ---- batch ------------------------------------------------------------------------------------------


def batch_item(record: BatchRecord, created_at: str, expires_at: int) -> Item:
    """The batch, with the request itself when it is to be sent later (RequestTooLarge when an item
    cannot hold it even compressed)."""
    schedule = record.schedule
    request: tuple[str | Binary, str] | None = None
    if schedule is not None and schedule.request is not None:
        request = pack(schedule.request.encode())
        if request is None:
            raise RequestTooLarge(
                f"the request is too large to keep until it is sent ({len(schedule.request):,} bytes)"
            )
    return to_item(
        {
            **keys.batch(record.request_id),
            "type": "batch",
            "requestId": record.request_id,
            "requestHash": record.request_hash,
            "messageCount": record.message_count,
            "chunkCount": record.chunk_count,
            "origin": record.origin,
            "suppressed": list(record.suppressed) or None,
            "scheduleStatus": schedule.status.value if schedule else None,
            "scheduledFor": schedule.scheduled_for if schedule else None,
            "scheduleReason": schedule.reason if schedule else None,
            "request": request[0] if request else None,
            "requestEncoding": request[1] if request else None,
            "createdAt": created_at,
            "expiresAt": expires_at,
        }
    )


def batch_from(item: Mapping[str, Any]) -> BatchRecord:
    plain = from_item(item)
    schedule = None
    if plain.get("scheduleStatus"):
        request = plain.get("request")
        schedule = Schedule(
            status=ScheduleStatus(plain["scheduleStatus"]),
            scheduled_for=plain.get("scheduledFor", ""),
            reason=plain.get("scheduleReason", ""),
            request=unpack(request, plain.get("requestEncoding")).decode() if request is not None else None,
        )
    return BatchRecord(
        request_id=plain["requestId"],
        request_hash=plain.get("requestHash", ""),
        message_count=plain.get("messageCount") or 0,
        chunk_count=plain.get("chunkCount") or 0,
        origin=plain.get("origin", ""),
        suppressed=tuple(plain.get("suppressed") or ()),
        schedule=schedule,
        created_at=plain.get("createdAt"),
    )


def schedule_update(
    request_id: str, status: ScheduleStatus, at: str, suppressed: tuple[int, ...] = ()
) -> dict[str, Any]:
    """The one conditional UpdateItem that ends a schedule (started or cancelled): only a batch still
    scheduled changes, so a cancel racing the start is decided by whichever write comes first."""
    expression = "SET scheduleStatus = :to, scheduleChangedAt = :at"
    values: dict[str, Any] = {":from": ScheduleStatus.SCHEDULED.value, ":to": status.value, ":at": at}
    if suppressed:
        expression += ", suppressed = :suppressed"
        values[":suppressed"] = list(suppressed)
    return {
        "Key": key_item(keys.batch(request_id)),
        "UpdateExpression": expression,
        "ConditionExpression": "scheduleStatus = :from",
        "ExpressionAttributeValues": to_item(values),
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def is_batch(item: Mapping[str, Any]) -> bool:
    return bool(item["SK"]["S"] == keys.BATCH_SK)


def is_chunk(item: Mapping[str, Any]) -> bool:
    return bool(item["SK"]["S"].startswith(keys.CHUNK_SK_PREFIX))


# ---- send -------------------------------------------------------------------------------------------


def send_item(record: SendRecord, created_at: str, expires_at: int) -> Item:
    gsi_pk, gsi_sk = keys.listed_send(created_at, record.send_id)
    return to_item(
        {
            **keys.send(record.send_id),
            "type": "send",
            "sendId": record.send_id,
            "parts": record.parts,
            "origin": record.origin,
            "createdAt": created_at,
            "expiresAt": expires_at,
            "GSI1PK": gsi_pk,
            "GSI1SK": gsi_sk,
        }
    )


def send_from(item: Mapping[str, Any]) -> SendRecord:
    plain = from_item(item)
    return SendRecord(plain["sendId"], plain["parts"], plain.get("origin", ""), plain.get("createdAt"))


def send_position(item: Mapping[str, Any]) -> str:
    position: str = item["GSI1SK"]["S"]
    return position


def send_part_item(part: SendPart, created_at: str, expires_at: int) -> Item:
    gsi_pk, gsi_sk = keys.part_of(part.request_id)
    recipients = json.dumps([[r.to, r.ref] for r in part.recipients], ensure_ascii=False).encode()
    # Too many recipients to keep even compressed (a huge MaxMessagesPerRequest): the part without them.
    packed = pack(recipients)
    return to_item(
        {
            **keys.send_part(part.send_id, part.part),
            "type": "send_part",
            "sendId": part.send_id,
            "part": part.part,
            "parts": part.parts,
            "requestId": part.request_id,
            "messageCount": part.message_count,
            "origin": part.origin,
            "recipients": packed[0] if packed else None,
            "recipientsEncoding": packed[1] if packed else None,
            "createdAt": created_at,
            "expiresAt": expires_at,
            "GSI1PK": gsi_pk,
            "GSI1SK": gsi_sk,
        }
    )


def send_part_from(item: Mapping[str, Any]) -> SendPart:
    plain = from_item(item)
    recipients: tuple[Recipient, ...] = ()
    if plain.get("recipients") is not None:
        listed = json.loads(unpack(plain["recipients"], plain.get("recipientsEncoding")))
        recipients = tuple(Recipient(to, ref) for to, ref in listed)
    return SendPart(
        send_id=plain["sendId"],
        part=plain["part"],
        parts=plain["parts"],
        request_id=plain["requestId"],
        message_count=plain.get("messageCount") or 0,
        origin=plain.get("origin", ""),
        recipients=recipients,
        created_at=plain.get("createdAt"),
    )


def is_send_part(item: Mapping[str, Any]) -> bool:
    return bool(item["SK"]["S"].startswith(keys.PART_SK_PREFIX))


# ---- chunk ------------------------------------------------------------------------------------------


def chunk_item(chunk: ChunkRecord, now: datetime, expires_at: int, claim_token: str | None = None) -> Item:
    at = iso(now)
    item: dict[str, Any] = {
        **keys.chunk(chunk.request_id, chunk.index),
        "type": "chunk",
        "requestId": chunk.request_id,
        "index": chunk.index,
        "status": chunk.status.value,
        "size": chunk.size,
        "firstIndex": chunk.first_index,
        "batchId": chunk.batch_id,
        "reason": chunk.reason,
        "updatedAt": at,
        "expiresAt": expires_at,
        "claimToken": claim_token,
    }
    if chunk.message_ids:
        item["messageIds"] = list(chunk.message_ids)
    if chunk.skipped:
        item["skipped"] = list(chunk.skipped)
    if chunk.status is ChunkStatus.ACCEPTED and chunk.batch_id:
        item["GSI1PK"], item["GSI1SK"] = keys.ocelot_batch(chunk.batch_id, chunk.request_id, chunk.index)
        # Found again by the stale-message sweep (GSI2, sparse) until it has been swept.
        item["GSI2PK"] = keys.sweep_bucket(now)
        item["GSI2SK"] = keys.sweep_member(chunk.request_id, chunk.index)
    elif chunk.status is ChunkStatus.SENDING:
        # Listed for reconciliation once too old to be in flight; gone when the chunk is finished.
        item["GSI1PK"], item["GSI1SK"] = keys.listed_chunk(
            keys.CHUNKS_SENDING, at, chunk.request_id, chunk.index
        )
    elif chunk.status is ChunkStatus.UNKNOWN:
        item["GSI1PK"], item["GSI1SK"] = keys.listed_chunk(
            keys.CHUNKS_UNKNOWN, at, chunk.request_id, chunk.index
        )
        if chunk.payload:
            packed = pack(json.dumps(chunk.payload, ensure_ascii=False).encode())
            if packed is not None:
                item["payload"], item["payloadEncoding"] = packed
            else:
                item["reason"] = f"{chunk.reason}; the Ocelot request is too large to keep for a resend"
    return to_item(item)


def chunk_from(item: Mapping[str, Any]) -> ChunkRecord:
    plain = from_item(item)
    payload = None
    if plain.get("payload"):
        payload = json.loads(unpack(plain["payload"], plain.get("payloadEncoding")))
    return ChunkRecord(
        request_id=plain["requestId"],
        index=plain["index"],
        status=ChunkStatus(plain["status"]),
        size=plain["size"],
        first_index=plain["firstIndex"],
        batch_id=plain.get("batchId"),
        reason=plain.get("reason"),
        message_ids=tuple(plain.get("messageIds", ())),
        payload=payload,
        skipped=tuple(plain.get("skipped") or ()),
        updated_at=plain.get("updatedAt"),
    )


def claim_token(item: Mapping[str, Any]) -> str | None:
    token: str | None = item.get("claimToken", {}).get("S")
    return token


# ---- messages ---------------------------------------------------------------------------------------


def message_item(record: MessageRecord, created_at: str, expires_at: int) -> Item:
    return to_item(
        {
            **keys.message_meta(record.message_id),
            "type": "message",
            "messageId": record.message_id,
            "requestId": record.request_id,
            "index": record.index,
            "ref": record.ref,
            "to": record.to,
            "chunkIndex": record.chunk_index,
            "batchId": record.batch_id,
            "createdAt": created_at,
            "expiresAt": expires_at,
            "GSI1PK": keys.chunk_messages(record.request_id, record.chunk_index),
            "GSI1SK": keys.message_position(record.index),
            # Found by its recipient: what a reply from that number answers.
            "GSI2PK": keys.recipient(record.to),
            "GSI2SK": keys.sent_position(created_at, record.message_id),
        }
    )


def sent_ref(item: Mapping[str, Any]) -> SentRef:
    plain = from_item(item)
    return SentRef(plain["messageId"], plain["requestId"], plain.get("ref"), plain.get("createdAt"))


def message_from(item: Mapping[str, Any]) -> MessageRecord:
    return _message_record(from_item(item))


def _message_record(plain: Mapping[str, Any]) -> MessageRecord:
    return MessageRecord(
        message_id=plain["messageId"],
        request_id=plain["requestId"],
        index=plain["index"],
        ref=plain.get("ref"),
        to=plain.get("to", ""),
        chunk_index=plain.get("chunkIndex", 0),
        batch_id=plain.get("batchId", ""),
    )


def state_update(change: StateChange, updated_at: str, expires_at: int) -> dict[str, Any]:
    """The one UpdateItem that moves a message's current status: applied only when the change's order
    key is higher than the stored one (DeliveryStatus's ordering rule)."""
    values = {
        ":ty": "state",
        ":m": change.message_id,
        ":s": change.status.value,
        ":k": change.order_key,
        ":e": change.event_id,
        ":t": change.event_time,
        ":ec": clip(change.error_code),
        ":em": clip(change.error_message),
        ":b": clip(change.batch_id),
        ":to": clip(change.to),
        ":u": updated_at,
        ":x": expires_at,
    }
    return {
        "Key": key_item(keys.message_state(change.message_id)),
        "UpdateExpression": (
            "SET #type = :ty, messageId = :m, #status = :s, orderKey = :k, eventId = :e, eventTime = :t, "
            "errorCode = :ec, errorMessage = :em, batchId = :b, #to = :to, updatedAt = :u, expiresAt = :x"
        ),
        "ConditionExpression": "attribute_not_exists(orderKey) OR orderKey < :k",
        "ExpressionAttributeNames": {"#type": "type", "#status": "status", "#to": "to"},
        "ExpressionAttributeValues": {k: _serializer.serialize(v) for k, v in values.items()},
    }


def state_from(item: Mapping[str, Any]) -> MessageState:
    return state_from_values(from_item(item))


def accepted_from_values(values: Mapping[str, Any]) -> tuple[MessageRecord, str | None]:
    """A message meta from its stream image's values (as Powertools hands them over), and when it was
    written: when Ocelot's acceptance was recorded."""
    plain = {k: _plain(v) for k, v in values.items()}
    return _message_record(plain), plain.get("createdAt")


def state_from_values(values: Mapping[str, Any]) -> MessageState:
    """A state from its item's values already read from DynamoDB's typed form (a stream record's
    NewImage, as Powertools hands it over)."""
    plain = {k: _plain(v) for k, v in values.items()}
    return MessageState(
        message_id=plain["messageId"],
        status=plain["status"],
        order_key=plain.get("orderKey"),
        event_id=plain.get("eventId"),
        event_time=plain.get("eventTime"),
        error_code=plain.get("errorCode"),
        error_message=plain.get("errorMessage"),
        batch_id=plain.get("batchId"),
        to=plain.get("to"),
        updated_at=plain.get("updatedAt"),
    )


def order_key_of(item: Mapping[str, Any] | None) -> str | None:
    if not item or "orderKey" not in item:
        return None
    key: str = item["orderKey"]["S"]
    return key


# ---- events -----------------------------------------------------------------------------------------


def event_item(event: EventRecord, received_at: str, expires_at: int) -> Item:
    change = event.change
    key = (
        keys.status_event(event.message_id, event.event_id)
        if event.message_id
        else keys.other_event(event.event_id)
    )
    item: dict[str, Any] = {
        **key,
        "type": "event",
        "eventId": event.event_id,
        "name": clip(event.name),
        "messageId": event.message_id,
        "batchId": clip(event.batch_id),
        "status": change.status.value if change else clip(event.status),
        "eventTime": event.event_time,
        "reportedTime": clip(event.reported_time),
        "orderKey": change.order_key if change else None,
        "understood": None if event.understood else False,
        "receivedAt": received_at,
        "raw": keys.raw_delivery(event.raw.delivery_id, from_iso(event.raw.received_at)),
        "expiresAt": expires_at,
    }
    # A huge item stays in the raw delivery only, or the event would exceed the 400 KB item limit.
    if event.payload is not None and len(event.payload) <= EVENT_PAYLOAD_MAX:
        item["payload"] = event.payload
    elif event.payload is not None:
        item["payloadInRaw"] = True
    if event.inbound is not None:
        item.update(_inbound_attributes(event.inbound))
        # Listed by the day we stored it (GET /inbound); `kind` is what the publisher's filter reads.
        item["GSI1PK"], item["GSI1SK"] = keys.inbound(received_at, event.event_id)
    return to_item(item)


def _storable(text: str | None, limit: int = TEXT_FIELD_MAX) -> str | None:
    """Text DynamoDB takes (UTF-8): a lone surrogate (half an emoji, escaped in the JSON) becomes U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text[:limit]) if text is not None else None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _inbound_attributes(inbound: Inbound) -> dict[str, Any]:
    reply = inbound.reply_to
    return {
        "kind": "inbound",
        "from": _storable(inbound.sender),
        "to": _storable(inbound.recipient),
        "text": _storable(inbound.text, INBOUND_TEXT_MAX),
        "replyTo": {
            k: v
            for k, v in {
                "messageId": reply.message_id,
                "requestId": reply.request_id,
                "ref": reply.ref,
                "sentAt": reply.sent_at,
            }.items()
            if v is not None
        }
        if reply
        else None,
    }


def event_from(item: Mapping[str, Any]) -> EventRecord:
    return event_from_values(from_item(item))


def event_from_values(values: Mapping[str, Any]) -> EventRecord:
    """An event from its item's values already read from DynamoDB's typed form (a stream record's
    NewImage, as Powertools hands it over)."""
    plain = {k: _plain(v) for k, v in values.items()}
    raw_sk = plain.get("raw", {}).get("SK", "#")
    received, _, delivery_id = raw_sk.partition("#")
    return EventRecord(
        event_id=plain["eventId"],
        raw=RawRef(delivery_id, received),
        name=plain.get("name"),
        message_id=plain.get("messageId"),
        batch_id=plain.get("batchId"),
        status=plain.get("status"),
        event_time=plain.get("eventTime"),
        payload=plain.get("payload"),
        understood=plain.get("understood", True),
        reported_time=plain.get("reportedTime"),
        inbound=_inbound_from(plain),
        received_at=plain.get("receivedAt"),
    )


def _inbound_from(plain: Mapping[str, Any]) -> Inbound | None:
    if plain.get("kind") != "inbound":
        return None
    reply = plain.get("replyTo")
    return Inbound(
        sender=plain.get("from"),
        recipient=plain.get("to"),
        text=plain.get("text"),
        reply_to=SentRef(reply["messageId"], reply["requestId"], reply.get("ref"), reply.get("sentAt"))
        if reply
        else None,
    )


def inbound_position(item: Mapping[str, Any]) -> str:
    position: str = item["GSI1SK"]["S"]
    return position


# ---- suppressions -----------------------------------------------------------------------------------


def suppression_item(suppression: Suppression, created_at: str) -> Item:
    """No expiry: an opt-out stands until the recipient or an operator lifts it."""
    gsi_pk, gsi_sk = keys.listed_suppression(suppression.number)
    return to_item(
        {
            **keys.suppression(suppression.number),
            "type": "suppression",
            "number": suppression.number,
            "source": suppression.source.value,
            "at": suppression.at,
            "eventId": suppression.event_id,
            "messageId": suppression.message_id,
            "reason": clip(suppression.reason),
            "createdAt": created_at,
            "GSI1PK": gsi_pk,
            "GSI1SK": gsi_sk,
        }
    )


def suppression_from(item: Mapping[str, Any]) -> Suppression:
    plain = from_item(item)
    return Suppression(
        number=plain["number"],
        source=SuppressionSource(plain["source"]),
        at=plain.get("at", ""),
        event_id=plain.get("eventId"),
        message_id=plain.get("messageId"),
        reason=plain.get("reason"),
        created_at=plain.get("createdAt"),
    )


def event_order(item: Mapping[str, Any]) -> tuple[str, str]:
    """History order: by event time (events without one first), then by order key."""
    return item.get("eventTime", {}).get("S", ""), item.get("orderKey", {}).get("S", "")


# ---- raw deliveries and rejections -----------------------------------------------------------------


# A delivery too large to keep whole keeps this much of its start.
RAW_HEAD_BYTES = 100_000


def raw_item(raw: RawDelivery, expires_at: int) -> Item:
    """The delivery whole when an item can hold it (compressed if need be), else its start, marked
    truncated with its real size: a delivery is always recorded, never lost unseen."""
    packed = pack(raw.body) if raw.truncated_from is None else None
    if packed is None:
        raw = replace(raw, body=raw.body[:RAW_HEAD_BYTES], truncated_from=raw.truncated_from or len(raw.body))
        # Compressed whatever it holds: 100 KB of anything stays far below an item's 400 KB.
        packed = Binary(gzip.compress(raw.body, compresslevel=COMPRESS_LEVEL)), "gzip"
    body, encoding = packed
    whole = raw.truncated_from is None
    return to_item(
        {
            **keys.raw_delivery(raw.delivery_id, raw.received_at),
            # Only a whole delivery is "raw": the applier's stream filter matches this type alone.
            "type": "raw" if whole else "raw_truncated",
            "deliveryId": raw.delivery_id,
            "receivedAt": iso(raw.received_at),
            "body": body,
            "bodyEncoding": encoding,
            "bodyBytes": len(raw.body) if whole else raw.truncated_from,
            "truncatedFrom": raw.truncated_from,
            "headers": json.dumps(dict(raw.headers), sort_keys=True),
            "sourceIp": raw.source_ip,
            "expiresAt": expires_at,
        }
    )


def is_whole_raw(item: Mapping[str, Any]) -> bool:
    return bool(item["type"]["S"] == "raw")


def raw_from(item: Mapping[str, Any]) -> RawDelivery:
    return raw_from_values(from_item(item))


def change_from_values(
    values: Mapping[str, Any],
) -> MessageState | tuple[MessageRecord, str | None] | EventRecord | None:
    """What a stream record's new image (its values, as Powertools hands them over) says changed: a
    message's state, a message meta with when it was written (Ocelot's acceptance), an inbound event;
    None for any other item."""
    if values.get("type") == "state":
        return state_from_values(values)
    if values.get("type") == "message":
        return accepted_from_values(values)
    if values.get("kind") == "inbound":
        return event_from_values(values)
    return None


def raw_from_values(values: Mapping[str, Any]) -> RawDelivery:
    """A raw delivery from its item's values already read from DynamoDB's typed form, as a stream
    record's NewImage arrives through Powertools: there a binary is still the base64 text of
    Lambda's JSON event."""
    plain = {k: _plain(v) for k, v in values.items()}
    if plain.get("bodyEncoding") == "gzip" and isinstance(plain.get("body"), str):
        plain["body"] = base64.b64decode(plain["body"])
    return RawDelivery(
        delivery_id=plain["deliveryId"],
        received_at=from_iso(plain["receivedAt"]),
        body=unpack(plain["body"], plain.get("bodyEncoding")),
        headers=json.loads(plain.get("headers") or "{}"),
        source_ip=plain.get("sourceIp"),
        truncated_from=plain.get("truncatedFrom"),
        problems=tuple(plain.get("problems", ())),
    )


def problems_update(raw: RawRef, problems: list[str]) -> dict[str, Any]:
    """What applying a delivery found wrong, kept on the raw delivery (the first ones, clipped)."""
    return {
        "Key": key_item(keys.raw_delivery(raw.delivery_id, from_iso(raw.received_at))),
        "UpdateExpression": "SET problems = :p, problemCount = :n",
        "ExpressionAttributeValues": to_item(
            {":p": [clip(p) for p in problems[:PROBLEMS_KEPT]], ":n": len(problems)}
        ),
    }


def rejection_item(rejection: Rejection, now: datetime, expires_at: int) -> Item:
    data = rejection.body.encode("utf-8", "surrogatepass")
    packed = pack(data, REJECTED_BODY_MAX)
    # Too large even compressed (SQS takes up to 1 MiB): the start, as text.
    stored, encoding = packed or (data[:REJECTED_BODY_MAX].decode("utf-8", "ignore"), "text")
    gsi_pk, gsi_sk = keys.rejected_day(now, rejection.source_id)
    return to_item(
        {
            **keys.rejected(rejection.source_id),
            "type": "rejected",
            "sourceId": rejection.source_id,
            "body": stored,
            "bodyEncoding": encoding,
            "bodyBytes": len(data),
            "bodyTruncated": packed is None,
            "problems": [{k: clip(str(v)) for k, v in p.items()} for p in rejection.problems[:PROBLEMS_KEPT]],
            "problemCount": len(rejection.problems),
            "receivedAt": iso(now),
            "expiresAt": expires_at,
            "GSI1PK": gsi_pk,
            "GSI1SK": gsi_sk,
        }
    )
