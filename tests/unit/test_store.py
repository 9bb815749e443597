"""DynamoStore against moto, with the table built from template.yaml: writes, conditions, read paths."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from ocelot_sms.contract import CallbackEvent, DeliveryStatus, parse_callback
from ocelot_sms.store import (
    RAW_COMPRESS_ABOVE,
    RAW_MAX_STORED,
    RAW_SHARDS,
    REJECTION_PROBLEMS_KEPT,
    TEXT_FIELD_MAX,
    ChunkRecord,
    ChunkStatus,
    DynamoStore,
    EventWrite,
    MessageRecord,
    RawDelivery,
    RequestConflict,
    StorageError,
    TooLargeToStore,
    epoch_after,
    iso,
    order_key,
)
from tests.unit.conftest import DynamoFaults

T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
RAW_KEY = {"PK": "RAW#2026-11-26#0", "SK": "2026-11-26T16:00:00.000000Z#d-1"}

Items = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def store(aws: dict[str, Any], env: dict[str, str]) -> DynamoStore:
    return DynamoStore(aws["dynamodb"], env["TABLE_NAME"], data_retention_days=400)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The store's backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("ocelot_sms.store.time.sleep", slept.append)
    return slept


def status(
    event_id: str, message_id: str, value: str, at: datetime | str | None, **extra: Any
) -> CallbackEvent:
    item: dict[str, Any] = {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "messageId": message_id,
        "batchId": "b-1",
        "status": value,
        **extra,
    }
    if at is not None:
        item["dateTime"] = at if isinstance(at, str) else at.isoformat()
    [event] = parse_callback(item)
    return event


def raw(delivery_id: str = "d-1", body: bytes = b'{"eventId": "e"}', at: datetime = T0) -> RawDelivery:
    return RawDelivery(delivery_id, at, body, {"content-type": "application/json"}, "192.0.2.1")


def items_with_pk(table_items: Items, prefix: str) -> list[dict[str, Any]]:
    return [i for i in table_items() if i["PK"].startswith(prefix)]


# ---- order_key ----------------------------------------------------------------------------------


def test_order_key_terminal_beats_any_non_terminal() -> None:
    # A delivered event with no time at all beats a sent event from the far future
    assert order_key(DeliveryStatus.DELIVERED, None, "a") > order_key(
        DeliveryStatus.SENT, T0 + timedelta(days=3650), "z"
    )


def test_order_key_later_instant_wins_between_equals() -> None:
    assert order_key(DeliveryStatus.FAILED, T0 + timedelta(microseconds=1), "a") > order_key(
        DeliveryStatus.OPTED_OUT, T0, "z"
    )
    assert order_key(DeliveryStatus.SENT, T0 + timedelta(seconds=1), "a") > order_key(
        DeliveryStatus.SENT, T0, "z"
    )


def test_order_key_compares_instants_not_clock_readings() -> None:
    # 11:00:09 at UTC-5 is after 16:00:05Z
    later = datetime(2026, 11, 26, 11, 0, 9, tzinfo=timezone(timedelta(hours=-5)))
    assert order_key(DeliveryStatus.DELIVERED, later, "a") > order_key(
        DeliveryStatus.FAILED, datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC), "z"
    )


def test_order_key_rank_then_event_id_break_ties() -> None:
    assert order_key(DeliveryStatus.SENT, T0, "a") > order_key(DeliveryStatus.QUEUED, T0, "z")
    assert order_key(DeliveryStatus.SENT, T0, "b") > order_key(DeliveryStatus.SENT, T0, "a")
    assert order_key(DeliveryStatus.SENT, T0, "a") == order_key(DeliveryStatus.SENT, T0, "a")


def test_order_key_puts_a_missing_or_pre_epoch_time_first() -> None:
    before_epoch = datetime(1960, 1, 1, tzinfo=UTC)
    assert order_key(DeliveryStatus.SENT, None, "z") < order_key(DeliveryStatus.SENT, T0, "a")
    assert order_key(DeliveryStatus.SENT, before_epoch, "a") == order_key(DeliveryStatus.SENT, None, "a")


def test_order_keys_sort_like_instants_across_years() -> None:
    instants = [T0 - timedelta(days=20000), T0, T0 + timedelta(microseconds=1), T0 + timedelta(days=30000)]
    keys = [order_key(DeliveryStatus.SENT, i, "e") for i in instants]
    assert all(a < b for a, b in pairwise(keys))


# ---- small helpers ------------------------------------------------------------------------------


def test_iso_is_utc_with_microseconds() -> None:
    offset = datetime(2026, 11, 26, 11, 0, 9, tzinfo=timezone(timedelta(hours=-5)))
    assert iso(offset) == "2026-11-26T16:00:09.000000Z"


def test_epoch_after_counts_days_from_now_or_a_given_time() -> None:
    assert epoch_after(30, T0) == int(T0.timestamp()) + 30 * 86400
    assert abs(epoch_after(1) - (time.time() + 86400)) < 5


def test_raw_key_is_per_utc_day_and_stable_per_delivery() -> None:
    # Given a delivery received at 23:30 at UTC-5 (04:30 next day in UTC)
    received = datetime(2026, 11, 26, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    key = raw("d-42", at=received).key
    # Then its partition is the UTC day, one of the shards; its sort key starts with the UTC instant
    day, shard = key["PK"].removeprefix("RAW#").split("#")
    assert day == "2026-11-27"
    assert 0 <= int(shard) < RAW_SHARDS
    assert key["SK"] == "2026-11-27T04:30:00.000000Z#d-42"
    assert raw("d-42", at=received).key == key
    # And deliveries spread over more than one shard
    assert len({raw(f"d-{i}").key["PK"] for i in range(64)}) > 1


# ---- raw deliveries -----------------------------------------------------------------------------


def test_put_raw_keeps_a_small_body_as_text_with_ttl(store: DynamoStore, table_items: Items) -> None:
    # Given a small delivery; When stored with 30 days' retention
    store.put_raw(raw(body=b'{"eventId": "e-1"}'), retention_days=30)
    # Then one raw item, text body, headers as JSON, TTL 30 days after its receipt
    [item] = table_items()
    assert item["type"] == "raw"
    assert (item["body"], item["bodyEncoding"], item["bodyBytes"]) == ('{"eventId": "e-1"}', "text", 18)
    assert json.loads(item["headers"]) == {"content-type": "application/json"}
    assert item["sourceIp"] == "192.0.2.1"
    assert item["expiresAt"] == int(T0.timestamp()) + 30 * 86400


def test_put_raw_compresses_big_bodies_and_raw_deliveries_reads_them_back(
    store: DynamoStore, table_items: Items
) -> None:
    # Given a body just over the compression threshold, and a small one, on the same day
    big = json.dumps([{"eventId": f"e-{i}", "pad": "é" * 40} for i in range(400)]).encode()
    assert len(big) > RAW_COMPRESS_ABOVE
    store.put_raw(raw("d-big", big), 30)
    store.put_raw(raw("d-small", b"[]", T0 + timedelta(seconds=1)), 30)
    # Then the big one is stored gzipped, smaller than the body
    stored = next(i for i in table_items() if i["deliveryId"] == "d-big")
    assert stored["bodyEncoding"] == "gzip"
    assert gzip.decompress(stored["body"]) == big
    assert len(stored["body"]) < len(big)
    # And raw_deliveries(day) hands both back as text
    bodies = {r["deliveryId"]: r["body"] for r in store.raw_deliveries("2026-11-26")}
    assert bodies == {"d-big": big.decode(), "d-small": "[]"}
    assert list(store.raw_deliveries("2026-11-25")) == []


def test_put_raw_keeps_a_body_that_is_not_utf8_byte_for_byte(store: DynamoStore, table_items: Items) -> None:
    # Given a small body in Latin-1 (not UTF-8)
    body = '{"eventId": "e-1", "message": "Caf\u00e9"}'.encode("latin-1")
    # When stored; Then the exact bytes are kept (compressed), not replacement characters
    store.put_raw(raw(body=body), 30)
    [item] = table_items()
    assert item["bodyEncoding"] == "gzip"
    assert gzip.decompress(item["body"]) == body


def test_put_raw_refuses_a_body_too_large_even_compressed(store: DynamoStore, table_items: Items) -> None:
    # Given a body that does not compress below the item limit
    body = random.Random(7).randbytes(RAW_MAX_STORED + 10_000)
    # When stored; Then TooLargeToStore (permanent: the webhook answers 413), and nothing written
    with pytest.raises(TooLargeToStore, match="too large"):
        store.put_raw(raw(body=body), 30)
    assert table_items() == []


# ---- events -------------------------------------------------------------------------------------


def test_put_event_applies_a_new_status_and_records_it(store: DynamoStore, table_items: Items) -> None:
    # Given a delivered event for m-1; When stored
    outcome = store.put_event(status("e-1", "m-1", "Delivered", T0, errorCode="0"), RAW_KEY)
    # Then applied: the event under the message, and the state
    assert outcome is EventWrite.APPLIED
    message = store.get_message("m-1")
    [event] = message["events"]
    assert (event["SK"], event["status"], event["eventTime"]) == ("EVT#e-1", "delivered", iso(T0))
    assert event["raw"] == RAW_KEY
    assert json.loads(event["payload"])["status"] == "Delivered"  # as received
    assert event["expiresAt"] > epoch_after(399)
    state = message["state"]
    assert (state["status"], state["eventId"], state["errorCode"], state["batchId"]) == (
        "delivered",
        "e-1",
        "0",
        "b-1",
    )
    assert state["orderKey"] == order_key(DeliveryStatus.DELIVERED, T0, "e-1")
    assert len(table_items()) == 2


def test_put_event_twice_writes_nothing_new(store: DynamoStore, table_items: Items) -> None:
    # Given a stored event
    event = status("e-1", "m-1", "sent", T0)
    assert store.put_event(event, RAW_KEY) is EventWrite.APPLIED
    before = table_items()
    # When the same eventId comes again (even from another raw delivery)
    outcome = store.put_event(event, {"PK": "RAW#other", "SK": "x"})
    # Then a duplicate, and the table is exactly as it was
    assert outcome is EventWrite.DUPLICATE
    assert table_items() == before


def test_put_event_keeps_an_older_status_in_history_only(store: DynamoStore) -> None:
    # Given delivered at T0+5; When sent at T0+9 (later, but not terminal) arrives
    assert store.put_event(status("e-2", "m-1", "delivered", T0 + timedelta(seconds=5)), RAW_KEY) is (
        EventWrite.APPLIED
    )
    assert store.put_event(status("e-1", "m-1", "sent", T0 + timedelta(seconds=9)), RAW_KEY) is (
        EventWrite.STORED
    )
    # Then the state stays delivered and both are in the history
    message = store.get_message("m-1")
    assert message["state"]["status"] == "delivered"
    assert [e["status"] for e in message["events"]] == ["delivered", "sent"]


def test_other_events_are_stored_under_their_own_key(store: DynamoStore, table_items: Items) -> None:
    # Given an inbound SMS, a status event with an unknown status, and one without a message id
    inbound = CallbackEvent.from_item(
        {"eventId": "in-1", "name": "IncomingSms.received", "message": "STOP", "triggerType": "Inbound"}
    )
    odd = status("e-odd", "m-1", "pending_review", T0)
    orphan = CallbackEvent.from_item(
        {"eventId": "e-orphan", "name": "OutgoingSms.statusChanged", "status": "sent"}
    )
    # When stored; Then each is kept (never applied) under EVT#{eventId}
    assert [store.put_event(e, RAW_KEY) for e in (inbound, odd, orphan)] == [EventWrite.STORED] * 3
    items = {i["PK"]: i for i in table_items()}
    assert set(items) == {"EVT#in-1", "EVT#e-odd", "EVT#e-orphan"}
    assert json.loads(items["EVT#in-1"]["payload"])["message"] == "STOP"
    assert items["EVT#e-odd"]["status"] == "pending_review"
    assert "orderKey" not in items["EVT#in-1"]
    # And a repeat of the inbound event is a duplicate
    assert store.put_event(inbound, RAW_KEY) is EventWrite.DUPLICATE


@pytest.mark.parametrize("name", ["IncomingSms.received", None, "OutgoingSms.created"])
def test_only_status_change_events_move_a_message_status(
    store: DynamoStore, table_items: Items, name: str | None
) -> None:
    # Given an event that is not a status change but carries a messageId and a status
    item: dict[str, Any] = {
        "eventId": "e-1",
        "messageId": "m-1",
        "status": "delivered",
        "dateTime": "2026-11-26T16:00:00Z",
    }
    if name is not None:
        item["name"] = name
    # When stored; Then kept under EVT#, and the message has no state
    assert store.put_event(CallbackEvent.from_item(item), RAW_KEY) is EventWrite.STORED
    assert [i["PK"] for i in table_items()] == ["EVT#e-1"]
    assert store.get_message("m-1") == {"meta": None, "state": None, "events": []}


def test_a_duplicate_repairs_a_state_update_lost_earlier(
    aws: dict[str, Any], store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    # Given the event was stored but its state update failed
    fault = dynamo_faults.fail(aws["dynamodb"], "UpdateItem")
    event = status("e-1", "m-1", "delivered", T0)
    with pytest.raises(ClientError):
        store.put_event(event, RAW_KEY)
    assert fault.injected == 1
    assert store.get_message("m-1")["state"] is None
    # When the same event is stored again (Ocelot's retry)
    outcome = store.put_event(event, RAW_KEY)
    # Then it counts as a duplicate, and the state is repaired
    assert outcome is EventWrite.DUPLICATE
    assert store.get_message("m-1")["state"]["status"] == "delivered"


def test_a_duplicate_does_not_touch_a_state_already_further(
    aws: dict[str, Any], store: DynamoStore, table_items: Items
) -> None:
    # Given sent then delivered, both applied
    sent = status("e-1", "m-1", "sent", T0)
    store.put_event(sent, RAW_KEY)
    store.put_event(status("e-2", "m-1", "delivered", T0 + timedelta(seconds=1)), RAW_KEY)
    before = table_items()
    calls: list[str] = []
    aws["dynamodb"].meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    # When sent comes again; Then one refused put and one read, and nothing changes
    assert store.put_event(sent, RAW_KEY) is EventWrite.DUPLICATE
    assert calls == ["PutItem", "GetItem"]
    assert table_items() == before


def test_a_duplicate_repairs_a_state_item_without_order_key(
    aws: dict[str, Any], env: dict[str, str], store: DynamoStore
) -> None:
    # Given the event is stored and a state item exists without orderKey (written by something else)
    event = status("e-1", "m-1", "sent", T0)
    store.put_event(event, RAW_KEY)
    aws["dynamodb"].put_item(
        TableName=env["TABLE_NAME"], Item={"PK": {"S": "MSG#m-1"}, "SK": {"S": "#STATE"}, "x": {"S": "y"}}
    )
    # When the event comes again; Then the state is set from it
    assert store.put_event(event, RAW_KEY) is EventWrite.DUPLICATE
    assert store.get_message("m-1")["state"]["status"] == "sent"


@pytest.mark.parametrize("operation", ["PutItem", "UpdateItem"])
def test_put_event_raises_storage_errors_other_than_conditions(
    aws: dict[str, Any], store: DynamoStore, dynamo_faults: DynamoFaults, operation: str
) -> None:
    # Given DynamoDB refuses the write for another reason than the condition
    dynamo_faults.fail(aws["dynamodb"], operation, code="InternalServerError")
    # When an event is stored; Then the error reaches the caller (who answers 5xx)
    with pytest.raises(ClientError, match="InternalServerError"):
        store.put_event(status("e-1", "m-1", "sent", T0), RAW_KEY)


def test_a_missing_time_stores_no_event_time(store: DynamoStore) -> None:
    # Given a status without dateTime, and one with garbage
    store.put_event(status("e-1", "m-1", "sent", None), RAW_KEY)
    store.put_event(status("e-2", "m-2", "sent", "not a time"), RAW_KEY)
    # Then stored and applied, with no eventTime, and the lowest instant in the order key
    for message_id, event_id in (("m-1", "e-1"), ("m-2", "e-2")):
        message = store.get_message(message_id)
        assert "eventTime" not in message["events"][0]
        assert message["state"]["orderKey"] == order_key(DeliveryStatus.SENT, None, event_id)


# ---- reads --------------------------------------------------------------------------------------


def test_get_message_lists_history_in_event_time_order(store: DynamoStore) -> None:
    # Given events stored out of order, one without time and one at another offset
    store.put_messages([MessageRecord("m-1", "req-1", 0, "ref-0", "+15551230010", 0, "b-1")])
    store.put_event(status("e-c", "m-1", "delivered", "2026-11-26T11:00:09-05:00"), RAW_KEY)
    store.put_event(status("e-a", "m-1", "queued", "2026-11-26T16:00:01Z"), RAW_KEY)
    store.put_event(status("e-z", "m-1", "sent", None), RAW_KEY)
    store.put_event(status("e-b", "m-1", "sent", "2026-11-26T16:00:03Z"), RAW_KEY)
    # When read
    message = store.get_message("m-1")
    # Then meta, state, and history: untimed first, then by instant (not by arrival or event id)
    assert message["meta"]["ref"] == "ref-0"
    assert message["state"]["eventId"] == "e-c"
    assert [e["eventId"] for e in message["events"]] == ["e-z", "e-a", "e-b", "e-c"]


def test_get_message_of_an_unknown_id_is_empty(store: DynamoStore) -> None:
    assert store.get_message("nope") == {"meta": None, "state": None, "events": []}


def test_put_messages_and_batch_messages(store: DynamoStore) -> None:
    # Given 60 messages over two chunks (more than one BatchWriteItem of 25)
    records = [
        MessageRecord(f"m-{i}", "req-1", i, f"ref-{i}", f"+1555123{i:04d}", i // 30, f"b-{i // 30}")
        for i in range(60)
    ]
    store.put_messages(records)
    # When one chunk is listed through GSI1
    listed = store.batch_messages("req-1", 1)
    # Then exactly its messages, in index order, with their correlation fields
    assert [m["index"] for m in listed] == list(range(30, 60))
    first = listed[0]
    assert (first["messageId"], first["batchId"], first["chunkIndex"], first["initialStatus"]) == (
        "m-30",
        "b-1",
        1,
        "accepted",
    )
    assert store.batch_messages("req-1", 2) == []


def leave_unprocessed(client: Any, times: int) -> None:
    """The next `times` BatchWriteItem calls answer that none of their items were processed."""
    left = {"times": times}
    sent: list[Any] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        sent[:] = params["RequestItems"]["messages"]

    def unprocessed(parsed: dict[str, Any], **_: Any) -> None:
        if left["times"]:
            left["times"] -= 1
            parsed["UnprocessedItems"] = {"messages": list(sent)}

    client.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", remember)
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", unprocessed)


def test_put_messages_resends_unprocessed_items(
    aws: dict[str, Any], store: DynamoStore, no_sleep: list[float]
) -> None:
    # Given DynamoDB leaves the batch unprocessed twice
    leave_unprocessed(aws["dynamodb"], times=2)
    # When messages are written; Then the leftovers are re-sent after a growing backoff
    store.put_messages([MessageRecord("m-0", "req-1", 0, None, "+15551230010", 0, "b-1")])
    assert no_sleep == [0.05, 0.1]
    assert store.batch_messages("req-1", 0)[0]["messageId"] == "m-0"


def test_put_messages_gives_up_with_storage_error(
    aws: dict[str, Any], store: DynamoStore, no_sleep: list[float]
) -> None:
    # Given DynamoDB never processes the items
    leave_unprocessed(aws["dynamodb"], times=1000)
    # Then StorageError after 8 attempts
    with pytest.raises(StorageError, match="unprocessed"):
        store.put_messages([MessageRecord("m-0", "req-1", 0, None, "+15551230010", 0, "b-1")])
    assert len(no_sleep) == 8


def test_get_states_reads_many_messages_with_batch_get(
    aws: dict[str, Any], store: DynamoStore, no_sleep: list[float]
) -> None:
    # Given 150 messages with a state (more than one BatchGetItem of 100), and unknown ids
    states = [
        {
            "PK": {"S": f"MSG#m-{i}"},
            "SK": {"S": "#STATE"},
            "messageId": {"S": f"m-{i}"},
            "status": {"S": "delivered" if i % 2 else "sent"},
        }
        for i in range(150)
    ]
    for start in range(0, 150, 25):
        aws["dynamodb"].batch_write_item(
            RequestItems={"messages": [{"PutRequest": {"Item": s}} for s in states[start : start + 25]]}
        )
    calls: list[int] = []
    aws["dynamodb"].meta.events.register(
        "provide-client-params.dynamodb.BatchGetItem",
        lambda params, **_: calls.append(len(params["RequestItems"]["messages"]["Keys"])),
    )
    # When read together
    found = store.get_states([f"m-{i}" for i in range(150)] + ["unknown-1"])
    # Then one state per known message, in two BatchGetItem calls
    assert calls == [100, 51]
    assert len(found) == 150
    assert found["m-1"]["status"] == "delivered"
    assert found["m-2"]["status"] == "sent"
    assert no_sleep == []


def test_get_states_asks_again_for_unprocessed_keys(
    aws: dict[str, Any], store: DynamoStore, no_sleep: list[float]
) -> None:
    # Given two states, and DynamoDB leaves the first answer's keys unprocessed
    store.put_event(status("e-1", "m-1", "sent", T0), RAW_KEY)
    store.put_event(status("e-2", "m-2", "failed", T0), RAW_KEY)
    left = {"times": 1}

    def unprocess(parsed: dict[str, Any], **_: Any) -> None:
        if left["times"]:
            left["times"] -= 1
            found = parsed["Responses"]["messages"]
            parsed["Responses"]["messages"] = []
            keys = [{"PK": i["PK"], "SK": i["SK"]} for i in found]
            parsed["UnprocessedKeys"] = {"messages": {"Keys": keys, "ConsistentRead": True}}

    aws["dynamodb"].meta.events.register("after-call.dynamodb.BatchGetItem", unprocess)
    # When read; Then both states, after one short pause
    states = store.get_states(["m-1", "m-2"])
    assert {k: v["status"] for k, v in states.items()} == {"m-1": "sent", "m-2": "failed"}
    assert no_sleep == [0.05]


def test_get_states_never_returns_a_partial_answer(
    aws: dict[str, Any], store: DynamoStore, no_sleep: list[float]
) -> None:
    # Given DynamoDB keeps leaving the keys unprocessed
    store.put_event(status("e-1", "m-1", "delivered", T0), RAW_KEY)

    def unprocess(parsed: dict[str, Any], **_: Any) -> None:
        found = parsed["Responses"]["messages"]
        parsed["Responses"]["messages"] = []
        keys = [{"PK": i["PK"], "SK": i["SK"]} for i in found]
        parsed["UnprocessedKeys"] = {"messages": {"Keys": keys, "ConsistentRead": True}}

    aws["dynamodb"].meta.events.register("after-call.dynamodb.BatchGetItem", unprocess)
    # Then StorageError after 8 attempts, never a result that says "no state" for m-1
    with pytest.raises(StorageError, match="1 keys left unprocessed"):
        store.get_states(["m-1"])
    assert len(no_sleep) == 8


def test_get_states_takes_the_same_id_twice(store: DynamoStore) -> None:
    # Given a list naming a message twice (BatchGetItem refuses duplicate keys); Then one state
    store.put_event(status("e-1", "m-1", "sent", T0), RAW_KEY)
    assert list(store.get_states(["m-1", "m-1"])) == ["m-1"]


def test_get_states_of_nothing_asks_nothing(store: DynamoStore) -> None:
    assert store.get_states([]) == {}


def test_batch_header_and_chunks(store: DynamoStore) -> None:
    # Given a batch header and two chunks
    store.put_batch("req-1", "hash-1", 150, 2, "api")
    store.finish_chunk(ChunkRecord("req-1", 0, ChunkStatus.ACCEPTED, 100, 0, "b-1", None, ("m-0", "m-1")))
    store.finish_chunk(ChunkRecord("req-1", 1, ChunkStatus.UNKNOWN, 50, 100, None, "read timeout"))
    # When read; Then the header first, then the chunks in order
    items = store.get_batch("req-1")
    assert [i["SK"] for i in items] == ["#BATCH", "CHUNK#00000", "CHUNK#00001"]
    header, accepted, unknown = items
    assert (header["messageCount"], header["chunkCount"], header["origin"]) == (150, 2, "api")
    # And an accepted chunk is findable by Ocelot's batch id, an unknown one in the unknown list
    assert (accepted["GSI1PK"], accepted["GSI1SK"]) == ("OBATCH#b-1", "REQ#req-1#0")
    assert accepted["messageIds"] == ["m-0", "m-1"]
    assert unknown["GSI1PK"] == "CHUNKS#unknown"
    assert unknown["reason"] == "read timeout"
    assert store.get_batch("nope") == []


def test_put_batch_first_write_wins(store: DynamoStore) -> None:
    # Given a batch record; When the same request is recorded again (a retry, from the queue)
    store.put_batch("req-1", "hash-1", 10, 1, "api")
    first = store.get_batch("req-1")[0]
    store.put_batch("req-1", "hash-1", 10, 1, "queue")
    # Then the first record stays as it was
    assert store.get_batch("req-1")[0] == first


def test_put_batch_refuses_the_same_request_id_with_another_payload(store: DynamoStore) -> None:
    # Given a batch record; When the requestId comes back with another payload hash
    store.put_batch("req-1", "hash-1", 10, 1, "api")
    first = store.get_batch("req-1")[0]
    # Then a conflict, and the record is unchanged
    with pytest.raises(RequestConflict, match="different payload"):
        store.put_batch("req-1", "hash-2", 99, 9, "queue")
    assert store.get_batch("req-1")[0] == first


def test_put_batch_raises_other_errors(
    aws: dict[str, Any], store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    dynamo_faults.fail(aws["dynamodb"], "PutItem", code="InternalServerError")
    with pytest.raises(ClientError):
        store.put_batch("req-1", "hash-1", 10, 1, "api")


def test_claim_chunk_once_unless_certainly_not_sent(store: DynamoStore) -> None:
    # Given a new chunk; When claimed; Then claimed (None) and readable
    sending = ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0)
    assert store.claim_chunk(sending) is None
    assert store.get_chunk("req-1", 0) == sending
    # When claimed again; Then refused with the existing record
    assert store.claim_chunk(sending) == sending
    # Given it was certainly not sent; Then it can be claimed again
    store.finish_chunk(ChunkRecord("req-1", 0, ChunkStatus.NOT_SENT, 100, 0, reason="503"))
    assert store.claim_chunk(sending) is None
    assert store.get_chunk("req-1", 1) is None


class AppliedThenRetried:
    """A DynamoDB client whose PutItem is applied, answered 500 and retried, as botocore does."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        self._client.put_item(**kwargs)
        return self._client.put_item(**kwargs)


def test_claim_chunk_applied_then_retried_is_still_our_claim(
    aws: dict[str, Any], env: dict[str, str]
) -> None:
    # Given a claim whose first put was applied and whose retry then fails its condition on it
    store = DynamoStore(cast(Any, AppliedThenRetried(aws["dynamodb"])), env["TABLE_NAME"])
    sending = ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0)
    # When claimed; Then the claim is ours (None), not mistaken for an interrupted earlier attempt
    assert store.claim_chunk(sending) is None
    # And another attempt's claim is still refused with the existing record
    assert store.claim_chunk(sending) == sending


def test_claim_chunk_raises_other_errors(
    aws: dict[str, Any], store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    dynamo_faults.fail(aws["dynamodb"], "PutItem", code="InternalServerError")
    with pytest.raises(ClientError):
        store.claim_chunk(ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0))


def incompressible_text(chars: int, seed: int = 7) -> str:
    """Random CJK text: about 3 bytes per character in UTF-8, and gzip gains little on it."""
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(chars))


def test_put_rejection(store: DynamoStore, table_items: Items) -> None:
    # Given a queue message we refuse, larger than an item may hold uncompressed; When recorded
    body = "é" * (RAW_MAX_STORED + 5)
    store.put_rejection("sqs-1", body, [{"field": "messages", "message": "bad"}], 30)
    # Then kept whole (compressed), with its problems and TTL, listed by day
    [item] = table_items()
    assert (item["PK"], item["SK"], item["type"]) == ("REJECTED#sqs-1", "#REJECTED", "rejected")
    assert item["bodyEncoding"] == "gzip"
    assert gzip.decompress(item["body"]).decode() == body
    assert (item["bodyBytes"], item["bodyTruncated"]) == (len(body.encode()), False)
    assert item["problems"] == [{"field": "messages", "message": "bad"}]
    assert item["problemCount"] == 1
    assert abs(item["expiresAt"] - (time.time() + 30 * 86400)) < 5
    assert item["GSI1PK"] == f"REJECTED#{datetime.now(UTC):%Y-%m-%d}"
    assert item["GSI1SK"].endswith("#sqs-1")


def test_put_rejection_too_large_even_compressed_keeps_the_start(
    store: DynamoStore, table_items: Items
) -> None:
    # Given a 1 MiB-sized message of text gzip cannot shrink enough, with thousands of problems
    body = incompressible_text(330_000)
    problems = [{"field": f"messages.{i}.{'k' * 5000}", "message": "m" * 5000} for i in range(5000)]
    # When recorded
    store.put_rejection("sqs-2", body, problems, 30)
    # Then the start of the body is kept and marked truncated; the first problems, clipped, and the count
    [item] = table_items()
    kept = gzip.decompress(item["body"]).decode() if item["bodyEncoding"] == "gzip" else item["body"]
    assert item["bodyTruncated"] is True
    assert item["bodyBytes"] == len(body.encode())
    assert 40_000 < len(kept) < len(body)
    assert body.startswith(kept)
    assert item["problemCount"] == 5000
    assert len(item["problems"]) == REJECTION_PROBLEMS_KEPT
    assert all(len(p["field"]) == TEXT_FIELD_MAX for p in item["problems"])


def test_unknown_chunk_keeps_a_large_ocelot_request_compressed(store: DynamoStore) -> None:
    # Given a full chunk of the longest texts, non-ASCII (more than an item holds as JSON text)
    payload = {
        "phoneNumber": "+15550000000",
        "operatorId": "op",
        "messages": [{"to": f"+1555123{i:04d}", "message": "ñé" * 1000} for i in range(100)],
    }
    chunk = ChunkRecord("req-1", 0, ChunkStatus.UNKNOWN, 100, 0, reason="read timeout", payload=payload)
    # When its outcome is recorded unknown
    store.finish_chunk(chunk)
    # Then the request an operator may resend is kept whole, in the record and in the listing
    assert store.get_chunk("req-1", 0) == chunk
    [listed] = store.unknown_chunks()
    assert listed["payload"] == payload
    assert "payloadEncoding" not in listed


def test_unknown_chunk_too_large_to_keep_says_so(store: DynamoStore) -> None:
    # Given an Ocelot request that is too large to store even compressed
    payload = {
        "phoneNumber": "+15550000000",
        "messages": [{"to": "+15551230000", "message": incompressible_text(300_000)}],
    }
    # When its outcome is recorded unknown
    store.finish_chunk(
        ChunkRecord("req-1", 0, ChunkStatus.UNKNOWN, 1, 0, reason="read timeout", payload=payload)
    )
    # Then the record is still written and listed, without the request, saying why
    stored = store.get_chunk("req-1", 0)
    assert stored is not None
    assert stored.status is ChunkStatus.UNKNOWN
    assert stored.payload is None
    assert stored.reason == "read timeout; the Ocelot request is too large to keep for a resend"
    assert [c["requestId"] for c in store.unknown_chunks()] == ["req-1"]
