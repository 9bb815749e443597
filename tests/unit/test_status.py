"""StatusService, the read model behind the status API: cursors, rows of every kind of chunk, a
message's history, and what a read costs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ocelot_sms import runtime
from ocelot_sms.status import (
    MAX_PAGE,
    BadCursor,
    BadLimit,
    StatusService,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from ocelot_sms.store import EVENT_PAYLOAD_MAX, ChunkRecord, ChunkStatus, DynamoStore
from tests.unit.operations_support import callback, deliver, send
from tests.unit.sender_support import DynamoCalls, FakeOcelot, guard_network, ocelot_mock

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def ocelot(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOcelot]:
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "100")
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)


@pytest.fixture
def store(aws: dict[str, Any]) -> DynamoStore:
    return runtime.store()


@pytest.fixture
def service(store: DynamoStore) -> StatusService:
    return StatusService(store)


# ---- cursors and limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, 99, 10_000, 2**40])
def test_a_cursor_decodes_to_the_offset_it_was_made_from(offset: int) -> None:
    cursor = encode_cursor(offset)
    assert "=" not in cursor
    assert "/" not in cursor
    assert "+" not in cursor
    assert decode_cursor(cursor) == offset


@pytest.mark.parametrize("cursor", [None, ""])
def test_no_cursor_is_the_first_page(cursor: str | None) -> None:
    assert decode_cursor(cursor) == 0


@pytest.mark.parametrize("cursor", ["%%%", "eyJvZmZzZXQiOiB0cnVlfQ", "bnVsbA"])
def test_a_bad_cursor_is_refused(cursor: str) -> None:
    # (the last two: {"offset": true} and null)
    with pytest.raises(BadCursor, match="not one this API returned"):
        decode_cursor(cursor)


@pytest.mark.parametrize(("limit", "ok"), [(0, False), (1, True), (MAX_PAGE, True), (MAX_PAGE + 1, False)])
def test_limits_from_1_to_the_maximum(limit: int, ok: bool) -> None:
    if ok:
        assert check_limit(limit) == limit
    else:
        with pytest.raises(BadLimit, match=f"from 1 to {MAX_PAGE}"):
            check_limit(limit)


def test_a_bad_cursor_or_limit_costs_no_read(service: StatusService, aws: dict[str, Any]) -> None:
    calls = DynamoCalls(runtime.dynamodb_client())
    with pytest.raises(BadCursor):
        service.batch("any", cursor="%%%")
    with pytest.raises(BadLimit):
        service.batch("any", limit=0)
    assert calls.calls == []


# ---- rows of a batch ------------------------------------------------------------------------------


def test_a_chunk_being_sent_counts_its_messages_as_sending(
    service: StatusService, store: DynamoStore, ocelot: FakeOcelot
) -> None:
    # Given a batch whose only chunk is claimed (the HTTP call in flight, or interrupted)
    store.put_batch("claimed", "h", 2, 1, "sqs")
    assert store.claim_chunk(ChunkRecord("claimed", 0, ChunkStatus.SENDING, size=2, first_index=0)) is None
    # When read; Then its messages are listed by index, as sending, with nothing else known
    batch = service.batch("claimed")
    assert batch is not None
    assert batch["counts"] == {"sending": 2}
    assert [(m["index"], m["messageId"], m["status"]) for m in batch["messages"]] == [
        (0, None, "sending"),
        (1, None, "sending"),
    ]
    assert batch["unknownChunks"] == []


def test_a_batch_header_alone_lists_its_messages_as_not_sent(
    service: StatusService, store: DynamoStore
) -> None:
    # Given a batch recorded, then the Lambda stopped before its first chunk was claimed
    store.put_batch("header-only", "h", 3, 1, "api")
    batch = service.batch("header-only")
    assert batch is not None
    assert batch["counts"] == {"not_sent": 3}
    assert batch["chunks"] == []


def test_reading_a_batch_costs_one_query_per_chunk_and_a_batch_get_per_100(
    service: StatusService, ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 250 messages in 3 chunks of 100 (the deployed chunk size)
    send("costly", 250)
    calls = DynamoCalls(runtime.dynamodb_client())
    # When read
    batch = service.batch("costly", limit=10)
    # Then: the batch query, one per chunk, ceil(250/100) BatchGetItems; nothing written
    assert batch is not None
    assert batch["counts"] == {"accepted": 250}
    assert calls.on("messages") == ["Query"] * 4 + ["BatchGetItem"] * 3


# ---- one message ------------------------------------------------------------------------------


def test_history_keeps_events_without_a_time_first_and_events_too_large_in_the_raw_delivery(
    service: StatusService, ocelot: FakeOcelot
) -> None:
    # Given a message with a timed event, one without dateTime, and one too large to keep inline
    [message] = send("odd-events", 1).messages
    message_id = message.message_id or ""
    deliver(callback("t-2", message_id, "sent", "2026-11-26T16:00:02Z"), "d-1")
    untimed = callback("t-0", message_id, "queued", "")
    del untimed["dateTime"]
    deliver(untimed, "d-2")
    huge = callback("t-3", message_id, "delivered", "2026-11-26T16:00:03Z", note="x" * EVENT_PAYLOAD_MAX)
    deliver(huge, "d-3")

    # When read
    found = service.message(message_id)

    # Then the untimed event first; the huge one listed without its body (the raw delivery has it)
    assert found is not None
    assert [(e["eventId"], e["eventTime"]) for e in found["history"]] == [
        ("t-0", None),
        ("t-2", "2026-11-26T16:00:02.000000Z"),
        ("t-3", "2026-11-26T16:00:03.000000Z"),
    ]
    assert found["history"][0]["event"] == untimed
    assert found["history"][2]["event"] is None
    assert found["status"] == "delivered"


def test_a_message_known_only_from_callbacks_takes_its_recipient_from_the_latest_readable_event(
    service: StatusService, store: DynamoStore, aws: dict[str, Any], env: dict[str, str]
) -> None:
    # Given callbacks only: the later one names another number, and one stored event is unreadable
    deliver(callback("r-1", "orphan", "queued", "2026-11-26T16:00:01Z"), "d-1")
    deliver(callback("r-2", "orphan", "sent", "2026-11-26T16:00:02Z", to="+15559999999"), "d-2")
    aws["dynamodb"].put_item(
        TableName=env["TABLE_NAME"],
        Item={
            "PK": {"S": "MSG#orphan"},
            "SK": {"S": "EVT#r-3"},
            "eventId": {"S": "r-3"},
            "eventTime": {"S": "2026-11-26T16:00:03.000000Z"},
            "payload": {"S": json.dumps(["not", "an", "event"])},
        },
    )
    found = service.message("orphan")
    assert found is not None
    assert found["to"] == "+15559999999"
    assert found["requestId"] is None


def test_a_message_whose_events_name_no_recipient_has_none(
    service: StatusService, aws: dict[str, Any]
) -> None:
    event = callback("n-1", "anonymous", "sent", "2026-11-26T16:00:02Z")
    del event["to"]
    deliver(event, "d-1")
    found = service.message("anonymous")
    assert found is not None
    assert (found["to"], found["status"]) == (None, "sent")
