"""DynamoStore's own behaviour on moto (the table built from template.yaml): item layout, keys and
indexes, compression, DynamoDB's failures and what each write costs. What every store does is in
test_store_contract.py."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from ocelot_sms.clock import epoch_after
from ocelot_sms.store import (
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    DynamoStore,
    EventWrite,
    MessageRecord,
    Rejection,
    StorageError,
    keys,
)
from ocelot_sms.store.codec import (
    COMPRESS_ABOVE,
    EVENT_PAYLOAD_MAX,
    MAX_STORED_BODY,
    PROBLEMS_KEPT,
    RAW_HEAD_BYTES,
    TEXT_FIELD_MAX,
)
from tests.unit.layer.store.support import T0, event, raw, status
from tests.unit.support.aws import DynamoFaults

Items = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The store's backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("ocelot_sms.store.dynamodb.time.sleep", slept.append)
    return slept


def calls_of(client: Any) -> list[str]:
    """The DynamoDB operations the client calls from now on."""
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


# ---- keys ------------------------------------------------------------------------------------------


def test_a_raw_delivery_is_keyed_by_its_utc_day_and_spread_over_shards() -> None:
    # Given a delivery received at 23:30 at UTC-5 (04:30 next day in UTC)
    received = datetime(2026, 11, 26, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    key = keys.raw_delivery("d-42", received)
    # Then its partition is the UTC day and one of the shards; its sort key starts with the UTC instant
    day, shard = key["PK"].removeprefix("RAW#").split("#")
    assert day == "2026-11-27"
    assert 0 <= int(shard) < keys.RAW_SHARDS
    assert key["SK"] == "2026-11-27T04:30:00.000000Z#d-42"
    assert keys.raw_delivery("d-42", received) == key
    assert len({keys.raw_delivery(f"d-{i}", T0)["PK"] for i in range(64)}) > 1


# ---- the Sender's writes ---------------------------------------------------------------------------


def test_batch_and_chunk_items_carry_their_indexes(dynamo_store: DynamoStore, table_items: Items) -> None:
    # Given a batch, an accepted chunk, an unknown chunk and a claim
    dynamo_store.put_batch(BatchRecord("req-1", "hash-1", 150, 3, "api"))
    dynamo_store.finish_chunk(
        ChunkRecord("req-1", 0, ChunkStatus.ACCEPTED, 2, 0, "b-1", None, ("m-0", "m-1"))
    )
    dynamo_store.finish_chunk(ChunkRecord("req-1", 1, ChunkStatus.UNKNOWN, 50, 2, None, "read timeout"))
    dynamo_store.claim_chunk(ChunkRecord("req-1", 2, ChunkStatus.SENDING, 50, 52))
    items = {i["SK"]: i for i in table_items()}
    # Then every item of the request is in its partition, with TTL
    assert set(items) == {"#BATCH", "CHUNK#00000", "CHUNK#00001", "CHUNK#00002"}
    assert {i["PK"] for i in items.values()} == {"REQ#req-1"}
    assert all(i["expiresAt"] > epoch_after(399) for i in items.values())
    # And an accepted chunk is found by Ocelot's batch id and listed for the sweep
    accepted = items["CHUNK#00000"]
    assert (accepted["GSI1PK"], accepted["GSI1SK"]) == ("OBATCH#b-1", "REQ#req-1#0")
    assert accepted["GSI2PK"].startswith("SWEEP#")
    assert accepted["messageIds"] == ["m-0", "m-1"]
    # And unknown and in-flight chunks are in their reconciliation listings; a claim carries its token
    assert items["CHUNK#00001"]["GSI1PK"] == "CHUNKS#unknown"
    assert items["CHUNK#00002"]["GSI1PK"] == "CHUNKS#sending"
    assert len(items["CHUNK#00002"]["claimToken"]) == 32


def test_message_items_are_listed_by_chunk_through_gsi1(
    dynamo_store: DynamoStore, table_items: Items
) -> None:
    dynamo_store.put_messages([MessageRecord("m-7", "req-1", 7, None, "+15551230010", 1, "b-1")])
    [item] = table_items()
    assert (item["PK"], item["SK"], item["GSI1PK"], item["GSI1SK"]) == (
        "MSG#m-7",
        "#META",
        "REQ#req-1#C00001",
        "000007",
    )
    assert isinstance(item["expiresAt"], int)


def test_a_claim_refused_reads_nothing_more(aws: dict[str, Any], dynamo_store: DynamoStore) -> None:
    # Given a claim; When another attempt claims the same chunk
    sending = ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0)
    dynamo_store.claim_chunk(sending)
    calls = calls_of(aws["dynamodb"])
    # Then the refused put returns the standing record: no second read
    assert dynamo_store.claim_chunk(sending) == sending
    assert calls == ["PutItem"]


class AppliedThenRetried:
    """A DynamoDB client whose PutItem is applied, answered 500 and retried, as botocore does."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        self._client.put_item(**kwargs)
        return self._client.put_item(**kwargs)


def test_a_claim_applied_then_retried_is_still_our_claim(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given a claim whose first put was applied and whose retry then fails its condition on it
    store = DynamoStore(cast(Any, AppliedThenRetried(aws["dynamodb"])), env["TABLE_NAME"])
    sending = ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0)
    # When claimed; Then the claim is ours (None), not mistaken for an interrupted earlier attempt
    assert store.claim_chunk(sending) is None
    # And another attempt's claim is still refused with the existing record
    assert store.claim_chunk(sending) == sending


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.put_batch(BatchRecord("req-1", "hash-1", 10, 1, "api")),
        lambda s: s.claim_chunk(ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0)),
        lambda s: s.put_event(status("e-1", "m-1", "sent", T0)),
    ],
    ids=["put_batch", "claim_chunk", "put_event"],
)
def test_errors_other_than_a_condition_reach_the_caller(
    aws: dict[str, Any], dynamo_store: DynamoStore, dynamo_faults: DynamoFaults, write: Any
) -> None:
    dynamo_faults.fail(aws["dynamodb"], "PutItem", code="InternalServerError")
    with pytest.raises(ClientError, match="InternalServerError"):
        write(dynamo_store)


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


def test_unprocessed_messages_are_sent_again_with_backoff(
    aws: dict[str, Any], dynamo_store: DynamoStore, no_sleep: list[float]
) -> None:
    leave_unprocessed(aws["dynamodb"], times=2)
    dynamo_store.put_messages([MessageRecord("m-0", "req-1", 0, None, "+15551230010", 0, "b-1")])
    assert no_sleep == [0.05, 0.1]
    assert [m.message_id for m in dynamo_store.batch_messages("req-1", 0)] == ["m-0"]


def test_messages_never_processed_are_a_storage_error(
    aws: dict[str, Any], dynamo_store: DynamoStore, no_sleep: list[float]
) -> None:
    leave_unprocessed(aws["dynamodb"], times=1000)
    with pytest.raises(StorageError, match="unprocessed"):
        dynamo_store.put_messages([MessageRecord("m-0", "req-1", 0, None, "+15551230010", 0, "b-1")])
    assert len(no_sleep) == 8


def incompressible_text(chars: int, seed: int = 7) -> str:
    """Random CJK text: about 3 bytes per character in UTF-8, and gzip gains little on it."""
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(chars))


def test_an_unknown_chunk_keeps_a_large_ocelot_request_compressed(dynamo_store: DynamoStore) -> None:
    # Given a full chunk of the longest texts, non-ASCII (more than an item holds as JSON text)
    payload = {
        "phoneNumber": "+15550000000",
        "operatorId": "op",
        "messages": [{"to": f"+1555123{i:04d}", "message": "ñé" * 1000} for i in range(100)],
    }
    chunk = ChunkRecord("req-1", 0, ChunkStatus.UNKNOWN, 100, 0, reason="read timeout", payload=payload)
    dynamo_store.finish_chunk(chunk)
    # Then the request an operator may resend is kept whole, in the record and in the listing
    assert dynamo_store.get_chunk("req-1", 0) == chunk
    assert [c.payload for c in dynamo_store.unknown_chunks()] == [payload]


def test_an_unknown_chunk_too_large_to_keep_says_so(dynamo_store: DynamoStore) -> None:
    payload = {
        "phoneNumber": "+15550000000",
        "messages": [{"to": "+15551230000", "message": incompressible_text(300_000)}],
    }
    dynamo_store.finish_chunk(
        ChunkRecord("req-1", 0, ChunkStatus.UNKNOWN, 1, 0, reason="read timeout", payload=payload)
    )
    # Then the record is still written and listed, without the request, saying why
    stored = dynamo_store.get_chunk("req-1", 0)
    assert stored is not None
    assert (stored.status, stored.payload) == (ChunkStatus.UNKNOWN, None)
    assert stored.reason == "read timeout; the Ocelot request is too large to keep for a resend"
    assert [c.request_id for c in dynamo_store.unknown_chunks()] == ["req-1"]


def test_a_rejection_keeps_the_whole_body_compressed(dynamo_store: DynamoStore, table_items: Items) -> None:
    # Given a queue message we refuse, larger than an item may hold uncompressed; When recorded
    body = "é" * (MAX_STORED_BODY + 5)
    dynamo_store.put_rejection(Rejection("sqs-1", body, ({"field": "messages", "message": "bad"},)), 30)
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


def test_a_rejection_too_large_even_compressed_keeps_the_start(
    dynamo_store: DynamoStore, table_items: Items
) -> None:
    # Given a 1 MiB-sized message of text gzip cannot shrink enough, with thousands of problems
    body = incompressible_text(330_000)
    problems = tuple({"field": f"messages.{i}.{'k' * 5000}", "message": "m" * 5000} for i in range(5000))
    dynamo_store.put_rejection(Rejection("sqs-2", body, problems), 30)
    # Then the start of the body is kept and marked truncated; the first problems, clipped, and the count
    [item] = table_items()
    kept = gzip.decompress(item["body"]).decode() if item["bodyEncoding"] == "gzip" else item["body"]
    assert item["bodyTruncated"] is True
    assert item["bodyBytes"] == len(body.encode())
    assert 40_000 < len(kept) < len(body)
    assert body.startswith(kept)
    assert item["problemCount"] == 5000
    assert len(item["problems"]) == PROBLEMS_KEPT
    assert all(len(p["field"]) == TEXT_FIELD_MAX for p in item["problems"])


# ---- the webhook's writes --------------------------------------------------------------------------


def test_a_small_raw_body_is_text_and_a_big_one_gzip(dynamo_store: DynamoStore, table_items: Items) -> None:
    big = json.dumps([{"eventId": f"e-{i}", "pad": "é" * 40} for i in range(400)]).encode()
    assert len(big) > COMPRESS_ABOVE
    dynamo_store.put_raw(raw("d-small", b'{"eventId": "e-1"}'), retention_days=30)
    dynamo_store.put_raw(raw("d-big", big), retention_days=30)
    items = {i["deliveryId"]: i for i in table_items()}
    small = items["d-small"]
    assert (small["body"], small["bodyEncoding"], small["bodyBytes"]) == ('{"eventId": "e-1"}', "text", 18)
    assert json.loads(small["headers"]) == {"content-type": "application/json"}
    assert small["sourceIp"] == "192.0.2.1"
    # TTL counted from the receipt, not from now
    assert small["expiresAt"] == int(T0.timestamp()) + 30 * 86400
    assert items["d-big"]["bodyEncoding"] == "gzip"
    assert gzip.decompress(items["d-big"]["body"]) == big


def test_a_body_that_is_not_utf8_is_kept_byte_for_byte(dynamo_store: DynamoStore, table_items: Items) -> None:
    body = '{"eventId": "e-1", "message": "Caf\u00e9"}'.encode("latin-1")
    dynamo_store.put_raw(raw(body=body), 30)
    [item] = table_items()
    assert item["bodyEncoding"] == "gzip"
    assert gzip.decompress(item["body"]) == body


def test_events_are_kept_with_their_message_or_under_their_own_key(
    dynamo_store: DynamoStore, table_items: Items
) -> None:
    # Given a status event, an inbound text and a status event with no message id
    dynamo_store.put_event(status("e-1", "m-1", "sent", T0))
    dynamo_store.put_event(event({"eventId": "in-1", "name": "IncomingSms.received", "message": "STOP"}))
    dynamo_store.put_event(event({"eventId": "e-2", "name": "OutgoingSms.statusChanged", "status": "Sent"}))
    by_key = {(i["PK"], i["SK"]): i for i in table_items()}
    # Then the status event is in the message's partition next to its state, the others apart
    assert set(by_key) == {
        ("MSG#m-1", "EVT#e-1"),
        ("MSG#m-1", "#STATE"),
        ("EVT#in-1", "EVT#in-1"),
        ("EVT#e-2", "EVT#e-2"),
    }
    assert by_key[("MSG#m-1", "EVT#e-1")]["raw"] == keys.raw_delivery("d-1", T0)
    assert json.loads(by_key[("EVT#in-1", "EVT#in-1")]["payload"])["message"] == "STOP"
    assert "orderKey" not in by_key[("EVT#in-1", "EVT#in-1")]
    # A status we recognise is kept in our spelling even without a message
    assert by_key[("EVT#e-2", "EVT#e-2")]["status"] == "sent"


def test_an_event_too_large_for_an_item_is_left_in_its_raw_delivery(
    dynamo_store: DynamoStore, table_items: Items
) -> None:
    dynamo_store.put_event(status("e-1", "m-1", "failed", T0, errorMessage="x" * EVENT_PAYLOAD_MAX))
    item = next(i for i in table_items() if i["SK"] == "EVT#e-1")
    assert "payload" not in item
    assert item["payloadInRaw"] is True
    state = dynamo_store.get_states(["m-1"])["m-1"]
    assert state.error_message == "x" * TEXT_FIELD_MAX


def test_a_new_event_costs_two_writes_and_a_duplicate_one_write_and_one_read(
    aws: dict[str, Any], dynamo_store: DynamoStore
) -> None:
    sent = status("e-1", "m-1", "sent", T0)
    calls = calls_of(aws["dynamodb"])
    assert dynamo_store.put_event(sent) is EventWrite.APPLIED
    assert calls == ["PutItem", "UpdateItem"]
    calls.clear()
    assert dynamo_store.put_event(sent) is EventWrite.DUPLICATE
    assert calls == ["PutItem", "GetItem"]


def test_a_duplicate_repairs_a_state_update_lost_earlier(
    aws: dict[str, Any], dynamo_store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    # Given the event was stored but its state update failed
    fault = dynamo_faults.fail(aws["dynamodb"], "UpdateItem")
    delivered = status("e-1", "m-1", "delivered", T0)
    with pytest.raises(ClientError):
        dynamo_store.put_event(delivered)
    assert fault.injected == 1
    assert dynamo_store.get_states(["m-1"]) == {}
    # When the same event is stored again (Ocelot's retry); Then a duplicate, and the state repaired
    assert dynamo_store.put_event(delivered) is EventWrite.DUPLICATE
    assert dynamo_store.get_states(["m-1"])["m-1"].status == "delivered"


def test_a_duplicate_sets_a_state_item_that_has_no_order_key(
    aws: dict[str, Any], env: dict[str, str], dynamo_store: DynamoStore
) -> None:
    # Given the event is stored and a state item exists without orderKey (written by something else)
    sent = status("e-1", "m-1", "sent", T0)
    dynamo_store.put_event(sent)
    aws["dynamodb"].put_item(
        TableName=env["TABLE_NAME"], Item={"PK": {"S": "MSG#m-1"}, "SK": {"S": "#STATE"}, "x": {"S": "y"}}
    )
    assert dynamo_store.put_event(sent) is EventWrite.DUPLICATE
    assert dynamo_store.get_states(["m-1"])["m-1"].status == "sent"


# ---- reads -----------------------------------------------------------------------------------------


def test_states_are_read_in_batch_gets_of_100(aws: dict[str, Any], dynamo_store: DynamoStore) -> None:
    for i in range(150):
        dynamo_store.put_event(status(f"e-{i}", f"m-{i}", "sent", T0))
    sizes: list[int] = []
    aws["dynamodb"].meta.events.register(
        "provide-client-params.dynamodb.BatchGetItem",
        lambda params, **_: sizes.append(len(params["RequestItems"]["messages"]["Keys"])),
    )
    assert len(dynamo_store.get_states([f"m-{i}" for i in range(150)] + ["unknown-1", "m-1"])) == 150
    assert sizes == [100, 51]


def unprocess_batch_gets(client: Any, times: int) -> None:
    left = {"times": times}

    def unprocess(parsed: dict[str, Any], **_: Any) -> None:
        if left["times"]:
            left["times"] -= 1
            found = parsed["Responses"]["messages"]
            parsed["Responses"]["messages"] = []
            unread = [{"PK": i["PK"], "SK": i["SK"]} for i in found]
            parsed["UnprocessedKeys"] = {"messages": {"Keys": unread, "ConsistentRead": True}}

    client.meta.events.register("after-call.dynamodb.BatchGetItem", unprocess)


def test_states_left_unprocessed_are_asked_for_again(
    aws: dict[str, Any], dynamo_store: DynamoStore, no_sleep: list[float]
) -> None:
    dynamo_store.put_event(status("e-1", "m-1", "sent", T0))
    dynamo_store.put_event(status("e-2", "m-2", "failed", T0))
    unprocess_batch_gets(aws["dynamodb"], times=1)
    states = dynamo_store.get_states(["m-1", "m-2"])
    assert {k: v.status for k, v in states.items()} == {"m-1": "sent", "m-2": "failed"}
    assert no_sleep == [0.05]


def test_states_never_come_back_partial(
    aws: dict[str, Any], dynamo_store: DynamoStore, no_sleep: list[float]
) -> None:
    # Given DynamoDB keeps leaving the keys unprocessed; Then StorageError, never "no state" for m-1
    dynamo_store.put_event(status("e-1", "m-1", "delivered", T0))
    unprocess_batch_gets(aws["dynamodb"], times=1000)
    with pytest.raises(StorageError, match="1 keys left unprocessed"):
        dynamo_store.get_states(["m-1"])
    assert len(no_sleep) == 8


def test_messages_are_written_25_to_a_request(aws: dict[str, Any], dynamo_store: DynamoStore) -> None:
    # Given 250 messages; When written; Then 10 BatchWriteItem requests, not 250 puts
    calls = calls_of(aws["dynamodb"])
    dynamo_store.put_messages(
        [MessageRecord(f"m-{i}", "req-1", i, None, "+15551230010", i // 100, "b") for i in range(250)]
    )
    assert calls == ["BatchWriteItem"] * 10


def test_a_delivery_too_large_is_kept_as_its_start_under_a_type_the_applier_never_reads(
    dynamo_store: DynamoStore, table_items: Items
) -> None:
    body = random.Random(5).randbytes(MAX_STORED_BODY + 1)
    assert dynamo_store.put_raw(raw("d-big", body), 30) is False
    [item] = table_items()
    assert (item["type"], item["truncatedFrom"], item["bodyBytes"], item["bodyEncoding"]) == (
        "raw_truncated",
        len(body),
        len(body),
        "gzip",
    )
    assert gzip.decompress(item["body"]) == body[:RAW_HEAD_BYTES]


def test_problems_are_kept_on_the_raw_delivery(dynamo_store: DynamoStore, table_items: Items) -> None:
    delivery = raw("d-1", b"[1]")
    dynamo_store.put_raw(delivery, 30)
    dynamo_store.record_problems(delivery.ref, [f"[{i}]: {'x' * 2000}" for i in range(150)])
    [item] = table_items()
    assert (item["type"], item["problemCount"], len(item["problems"])) == ("raw", 150, PROBLEMS_KEPT)
    assert all(len(p) == TEXT_FIELD_MAX for p in item["problems"])


def test_an_event_not_understood_is_kept_with_its_message_and_says_so(
    dynamo_store: DynamoStore, table_items: Items
) -> None:
    dynamo_store.put_event(
        event({"eventId": "e-1", "name": "OutgoingSms.statusChanged", "messageId": "m-1", "status": "held"})
    )
    [item] = table_items()
    assert (item["PK"], item["SK"], item["understood"], item["status"]) == (
        "MSG#m-1",
        "EVT#e-1",
        False,
        "held",
    )
    assert "orderKey" not in item
