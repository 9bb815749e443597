"""Every key value of MessagesTable, spelled here and nowhere else (docs/data-model.md).

| item          | PK                | SK                | GSI1PK / GSI1SK                              |
|---------------|-------------------|-------------------|----------------------------------------------|
| batch request | REQ#{requestId}   | #BATCH            |                                              |
| chunk         | REQ#{requestId}   | CHUNK#{index}     | accepted: OBATCH#{ocelotBatchId} / REQ#..#i  |
|               |                   |                   | unknown, sending: CHUNKS#{status} / {time}#..|
| message meta  | MSG#{messageId}   | #META             | REQ#{requestId}#C{chunk} / {index}           |
| message state | MSG#{messageId}   | #STATE            |                                              |
| status event  | MSG#{messageId}   | EVT#{eventId}     |                                              |
| other event   | EVT#{eventId}     | EVT#{eventId}     |                                              |
| raw delivery  | RAW#{day}#{shard} | {receivedAt}#{id} |                                              |
| rejected      | REJECTED#{id}     | #REJECTED         | REJECTED#{day} / {receivedAt}#{id}           |
| send          | SEND#{sendId}     | #SEND             | SENDS#{yyyy-mm} / {createdAt}#{sendId}       |
| send part     | SEND#{sendId}     | PART#{part}       | PARTOF#{requestId} / SEND#{sendId}           |
| inbound event | EVT#{eventId}     | EVT#{eventId}     | INBOUND#{day} / {receivedAt}#{eventId}       |
| suppression   | SUPPRESSED#{to}   | #SUPPRESSED       | SUPPRESSIONS / {number}                      |

GSI2 (sparse, keys only) lists accepted chunks not yet swept: SWEEP#{hour} / {requestId}#{index}; and
each message meta by its recipient, TO#{number} / {createdAt}#{messageId} (what a reply answers).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from ocelot_sms.clock import iso

Key = dict[str, str]

GSI1 = "GSI1"
GSI2 = "GSI2"
# Raw deliveries of one day spread over this many partitions.
RAW_SHARDS = 8

BATCH_SK = "#BATCH"
CHUNK_SK_PREFIX = "CHUNK#"
META_SK = "#META"
STATE_SK = "#STATE"
EVENT_SK_PREFIX = "EVT#"
CHUNKS_SENDING = "CHUNKS#sending"
CHUNKS_UNKNOWN = "CHUNKS#unknown"
SEND_SK = "#SEND"
PART_SK_PREFIX = "PART#"
SUPPRESSION_SK = "#SUPPRESSED"
SUPPRESSIONS = "SUPPRESSIONS"


def _key(pk: str, sk: str) -> Key:
    return {"PK": pk, "SK": sk}


def request_partition(request_id: str) -> str:
    return f"REQ#{request_id}"


def batch(request_id: str) -> Key:
    return _key(request_partition(request_id), BATCH_SK)


def chunk(request_id: str, index: int) -> Key:
    return _key(request_partition(request_id), f"{CHUNK_SK_PREFIX}{index:05d}")


def message_partition(message_id: str) -> str:
    return f"MSG#{message_id}"


def message_meta(message_id: str) -> Key:
    return _key(message_partition(message_id), META_SK)


def message_state(message_id: str) -> Key:
    return _key(message_partition(message_id), STATE_SK)


def status_event(message_id: str, event_id: str) -> Key:
    """Kept with the message, so one query reads its whole history."""
    return _key(message_partition(message_id), f"{EVENT_SK_PREFIX}{event_id}")


def other_event(event_id: str) -> Key:
    """An event of no known message (inbound texts, kinds we do not apply): its own partition."""
    return _key(f"EVT#{event_id}", f"{EVENT_SK_PREFIX}{event_id}")


def raw_partition(day: str, shard: int) -> str:
    return f"RAW#{day}#{shard}"


def raw_delivery(delivery_id: str, received_at: datetime) -> Key:
    shard = int(hashlib.sha256(delivery_id.encode()).hexdigest(), 16) % RAW_SHARDS
    return _key(
        raw_partition(f"{received_at.astimezone(UTC):%Y-%m-%d}", shard), f"{iso(received_at)}#{delivery_id}"
    )


def rejected(source_id: str) -> Key:
    return _key(f"REJECTED#{source_id}", "#REJECTED")


def suppression(number: str) -> Key:
    return _key(f"SUPPRESSED#{number}", SUPPRESSION_SK)


def send_partition(send_id: str) -> str:
    return f"SEND#{send_id}"


def send(send_id: str) -> Key:
    return _key(send_partition(send_id), SEND_SK)


def send_part(send_id: str, part: int) -> Key:
    return _key(send_partition(send_id), f"{PART_SK_PREFIX}{part:05d}")


# ---- GSI1 ------------------------------------------------------------------------------------------


def chunk_messages(request_id: str, chunk_index: int) -> str:
    """GSI1PK of a chunk's message metas; their GSI1SK is `message_position`."""
    return f"REQ#{request_id}#C{chunk_index:05d}"


def message_position(index: int) -> str:
    return f"{index:06d}"


def ocelot_batch(batch_id: str, request_id: str, index: int) -> tuple[str, str]:
    """GSI1 of an accepted chunk: found by Ocelot's batch id."""
    return f"OBATCH#{batch_id}", f"REQ#{request_id}#{index}"


def listed_chunk(listing: str, at: str, request_id: str, index: int) -> tuple[str, str]:
    """GSI1 of a chunk in a reconciliation listing (CHUNKS_SENDING or CHUNKS_UNKNOWN), oldest first."""
    return listing, f"{at}#{request_id}#{index}"


def rejected_day(received_at: datetime, source_id: str) -> tuple[str, str]:
    return f"REJECTED#{received_at.astimezone(UTC):%Y-%m-%d}", f"{iso(received_at)}#{source_id}"


def listed_send(created_at: str, send_id: str) -> tuple[str, str]:
    """GSI1 of a send: listed by the month it was created in, newest last ("yyyy-mm" of an ISO instant)."""
    return sends_month(created_at[:7]), send_position(created_at, send_id)


def sends_month(month: str) -> str:
    return f"SENDS#{month}"


def send_position(created_at: str, send_id: str) -> str:
    return f"{created_at}#{send_id}"


def part_of(request_id: str) -> tuple[str, str]:
    """GSI1 of a send part: found by its batch's requestId."""
    return f"PARTOF#{request_id}", f"PART#{request_id}"


def inbound_day(day: str) -> str:
    """GSI1PK of the inbound events stored on a UTC day (yyyy-mm-dd)."""
    return f"INBOUND#{day}"


def inbound(received_at: str, event_id: str) -> tuple[str, str]:
    """GSI1 of an inbound event: listed by the day and the time we stored it ("{iso}" UTC)."""
    return inbound_day(received_at[:10]), f"{received_at}#{event_id}"


def listed_suppression(number: str) -> tuple[str, str]:
    """GSI1 of a suppression: all of them under one key (opt-outs are few), in number order."""
    return SUPPRESSIONS, number


# ---- GSI2 ------------------------------------------------------------------------------------------


def sweep_bucket(instant: datetime) -> str:
    return f"SWEEP#{instant.astimezone(UTC):%Y-%m-%dT%H}"


def sweep_member(request_id: str, index: int) -> str:
    return f"{request_id}#{index:05d}"


def parse_sweep_member(value: str) -> tuple[str, int]:
    request_id, index = value.rsplit("#", 1)
    return request_id, int(index)


def recipient(number: str) -> str:
    """GSI2PK of the message metas sent to a number; their GSI2SK is `sent_position`."""
    return f"TO#{number}"


def sent_position(created_at: str, message_id: str) -> str:
    return f"{created_at}#{message_id}"
