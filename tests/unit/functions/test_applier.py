"""The applier Lambda behind the webhook: what the webhook kept reaches it through the table's stream
(moto's DynamoDB Streams, filtered as the event source is), and every message ends in its right
status whatever the order, repeats and failures."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ocelot_sms import runtime
from ocelot_sms.store import DynamoStore, MessageHistory, MessageState
from tests.events import load_event
from tests.unit.functions.conftest import Applier, Webhook, status, webhook_request
from tests.unit.support.aws import DynamoFaults, EmfReader

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")

Items = Callable[[], list[dict[str, Any]]]
T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
TIMELINE = {"queued": T0, "sent": T0 + timedelta(seconds=1), "delivered": T0 + timedelta(seconds=2)}


@pytest.fixture
def deliver(webhook: Webhook, applier: Applier) -> Callable[..., dict[str, Any]]:
    """Ocelot posts `body` to the webhook; the stream then hands what it kept to the applier, whose
    answer is returned (every record applied, unless the test expects a failure)."""

    def post_and_apply(body: Any, *, may_fail: bool = False, **kwargs: Any) -> dict[str, Any]:
        event = (
            body if isinstance(body, dict) and "requestContext" in body else webhook_request(body, **kwargs)
        )
        assert webhook(event)[0] == 200
        answer = applier()
        if not may_fail:
            assert answer == {"batchItemFailures": []}
        return answer

    return post_and_apply


def state_of(store: DynamoStore, message_id: str) -> str | None:
    found = store.get_message(message_id).state
    return found.status if found else None


def state(history: MessageHistory) -> MessageState:
    assert history.state is not None
    return history.state


# ---- 1. only new, whole raw deliveries reach the applier ---------------------------------------


def test_only_stored_deliveries_invoke_it_never_its_own_writes(
    deliver: Callable[..., dict[str, Any]], applier: Applier
) -> None:
    # Given a delivery applied (its events and states written, a stream record each)
    assert deliver([status("evt-1", "m-1", "sent", T0), status("evt-2", "m-2", "sent", T0)]) == {
        "batchItemFailures": []
    }
    assert applier.records == 1
    # Then nothing else in the stream is for the applier
    assert applier() == {}
    assert applier.records == 0


def test_a_delivery_too_large_to_keep_never_reaches_it(
    monkeypatch: pytest.MonkeyPatch, webhook: Webhook, applier: Applier
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "100")
    runtime.reset()
    assert webhook(webhook_request([status("evt-1", "m-1", "sent", T0, note="x" * 200)]))[0] == 413
    applier()
    assert applier.records == 0


# ---- 2. arrays, kinds, unknown fields, tolerant values ------------------------------------------


def test_the_sample_array_of_mixed_kinds(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, table_items: Items, emf: EmfReader
) -> None:
    # Given the sample array: queued/delivered/sent for ocelot-msg-2, a repeat, and an inbound SMS
    deliver(load_event("webhook_event_array"))
    # Then the message is delivered, with three events in event-time order
    message = store.get_message("ocelot-msg-2")
    assert state(message).status == "delivered"
    assert [e.event_id for e in message.events] == ["evt-0101", "evt-0102", "evt-0103"]
    # And the inbound SMS is stored as its own event, with its fields
    inbound = next(i for i in table_items() if i["PK"] == "EVT#evt-0199")
    assert (inbound["name"], "orderKey" in inbound) == ("IncomingSms.received", False)
    payload = json.loads(inbound["payload"])
    assert (payload["message"], payload["triggerType"], payload["from"]) == (
        "STOP",
        "Inbound",
        "+15551230010",
    )
    assert emf.read()["WebhookDuplicateEvents"] == 1


def test_unknown_fields_are_kept_in_the_stored_payload(
    deliver: Callable[..., dict[str, Any]], table_items: Items
) -> None:
    item = status(
        "evt-x",
        "m-1",
        "Delivered",
        T0,
        carrier={"name": "T-Mobile", "mcc": 310},
        segments=2,
        price=None,
        errorCode={"code": 30005},
    )
    deliver(item)
    event = next(i for i in table_items() if i["SK"] == "EVT#evt-x")
    assert json.loads(event["payload"]) == item


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        ("Delivered", "delivered"),
        ("DELIVERED", "delivered"),
        ("OPTED_OUT", "opted_out"),
        ("optedout", "opted_out"),
        ("Opted-Out", "opted_out"),
        ("UnDelivered", "undelivered"),
        ("Failed", "failed"),
    ],
)
def test_status_values_are_read_tolerantly(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, wire: str, stored: str
) -> None:
    deliver(status("evt-1", "m-1", wire, T0))
    assert state_of(store, "m-1") == stored


@pytest.mark.parametrize(
    "name", ["outgoingSms.StatusChanged", "OUTGOINGSMS.STATUSCHANGED", "outgoing_sms-status changed"]
)
def test_an_event_name_in_another_spelling_still_moves_the_status(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, name: str
) -> None:
    deliver(status("evt-1", "m-1", "sent", T0, name=name))
    assert state_of(store, "m-1") == "sent"


def test_an_unknown_status_is_in_the_messages_history_and_moves_nothing(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    deliver(status("evt-0", "m-1", "sent", T0))
    deliver(status("evt-1", "m-1", "carrier_hold", T0 + timedelta(seconds=5)))
    message = store.get_message("m-1")
    assert state(message).status == "sent"
    assert [(e.event_id, e.status, e.understood) for e in message.events] == [
        ("evt-0", "sent", True),
        ("evt-1", "carrier_hold", False),
    ]


def test_a_malformed_item_is_recorded_on_its_delivery_and_the_others_are_applied(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, table_items: Items, emf: EmfReader
) -> None:
    body = [
        status("evt-ok", "m-1", "sent", T0),
        {"name": "OutgoingSms.statusChanged", "status": "delivered"},
        7,
    ]
    assert deliver(body) == {"batchItemFailures": []}
    assert state_of(store, "m-1") == "sent"
    [raw] = [i for i in table_items() if i["PK"].startswith("RAW#")]
    assert (raw["problemCount"], raw["problems"]) == (
        2,
        ["[1].eventId: Field required", "[2]: expected an object"],
    )
    assert emf.read()["WebhookMalformedItems"] == 2


# ---- 3. duplicates ------------------------------------------------------------------------------


def test_the_same_delivery_twice_writes_nothing_new(
    deliver: Callable[..., dict[str, Any]], table_items: Items, emf: EmfReader
) -> None:
    body = [
        status("evt-1", "m-1", "sent", T0),
        status("evt-2", "m-1", "delivered", T0 + timedelta(seconds=2)),
        {"eventId": "in-1", "name": "IncomingSms.received", "message": "hi"},
    ]
    deliver(body)
    before = [i for i in table_items() if not i["PK"].startswith("RAW#")]
    emf.read()
    # When Ocelot sends it again (a new HTTP request); Then only the new raw delivery was added
    deliver(body)
    assert [i for i in table_items() if not i["PK"].startswith("RAW#")] == before
    assert len([i for i in table_items() if i["PK"].startswith("RAW#")]) == 2
    assert emf.read()["WebhookDuplicateEvents"] == 3


# ---- 4. order -----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(TIMELINE)), ids="-".join)
def test_every_arrival_order_ends_delivered(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, order: tuple[str, ...]
) -> None:
    for value in order:
        deliver(status(f"evt-{value}", "m-1", value, TIMELINE[value]))
    message = store.get_message("m-1")
    assert (state(message).status, state(message).event_id) == ("delivered", "evt-delivered")
    assert [e.status for e in message.events] == ["queued", "sent", "delivered"]


@pytest.mark.parametrize("order", list(itertools.permutations(TIMELINE)), ids="-".join)
def test_every_order_within_one_array_ends_delivered(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, order: tuple[str, ...]
) -> None:
    deliver([status(f"evt-{v}", "m-1", v, TIMELINE[v]) for v in order])
    assert state_of(store, "m-1") == "delivered"


def test_delivered_then_a_later_sent_stays_delivered(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    deliver(status("evt-d", "m-1", "delivered", T0))
    deliver(status("evt-s", "m-1", "sent", T0 + timedelta(minutes=5)))
    assert state_of(store, "m-1") == "delivered"


@pytest.mark.parametrize("first", ["failed", "delivered"])
def test_between_terminal_statuses_the_later_instant_wins(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, first: str
) -> None:
    times = {"failed": T0 + timedelta(seconds=1), "delivered": T0 + timedelta(seconds=5)}
    for value in (first, "delivered" if first == "failed" else "failed"):
        deliver(status(f"evt-{value}", "m-1", value, times[value]))
    assert state_of(store, "m-1") == "delivered"


def test_time_zone_offsets_are_compared_as_instants(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    # Given delivered at 11:00:09-05:00 (16:00:09Z) and failed at 16:00:05Z; as text, failed sorts later
    deliver(status("evt-d", "m-1", "delivered", "2026-11-26T11:00:09-05:00"))
    deliver(status("evt-f", "m-1", "failed", "2026-11-26T16:00:05Z"))
    message = store.get_message("m-1")
    assert (state(message).status, state(message).event_time) == ("delivered", "2026-11-26T16:00:09.000000Z")
    assert [e.event_id for e in message.events] == ["evt-f", "evt-d"]


def test_a_naive_time_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch, deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        deliver(status("evt-f", "m-1", "failed", "2026-11-26T16:00:09"))
        deliver(status("evt-d", "m-1", "delivered", "2026-11-26T11:00:05-05:00"))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    found = state(store.get_message("m-1"))
    assert (found.status, found.event_time) == ("failed", "2026-11-26T16:00:09.000000Z")


@pytest.mark.parametrize(
    "when", [None, "", "yesterday", 1795708805, "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"]
)
def test_a_missing_or_invalid_time_does_not_crash(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, when: Any
) -> None:
    deliver(status("evt-s", "m-1", "sent", T0))
    item = status("evt-d", "m-1", "delivered", None)
    if when is not None:
        item["dateTime"] = when
    assert deliver(item) == {"batchItemFailures": []}
    found = state(store.get_message("m-1"))
    assert (found.status, found.event_time) == ("delivered", None)


def test_a_time_far_in_the_future_is_ordered_at_receipt(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    # Given a failure the sender dates in 2099, then a delivery at a plausible time (now)
    deliver(status("evt-f", "m-1", "failed", "2099-01-01T00:00:00Z"))
    deliver(status("evt-d", "m-1", "delivered", datetime.now(UTC) + timedelta(seconds=1)))
    # Then the 2099 failure counts as if it happened when received: the later delivery wins
    message = store.get_message("m-1")
    assert state(message).status == "delivered"
    failed = next(e for e in message.events if e.event_id == "evt-f")
    assert failed.reported_time == "2099-01-01T00:00:00Z"


def test_an_untimed_non_terminal_event_does_not_undo_a_timed_one(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    deliver(status("evt-s", "m-1", "sent", T0))
    deliver(status("evt-q", "m-1", "queued", None))
    assert state_of(store, "m-1") == "sent"


# ---- 5. storage failures: the stream retries ----------------------------------------------------


def test_a_failed_state_update_is_a_batch_item_failure_and_the_retry_repairs_it(
    deliver: Callable[..., dict[str, Any]],
    applier: Applier,
    store: DynamoStore,
    dynamo_faults: DynamoFaults,
    table_items: Items,
) -> None:
    # Given the state update of the next event fails once (after its event item was stored)
    fault = dynamo_faults.fail(runtime.dynamodb_client(), "UpdateItem")
    answer = deliver(status("evt-1", "m-1", "delivered", T0), may_fail=True)
    # Then the record is reported failed (the stream keeps it), the event kept, no state yet
    [failure] = answer["batchItemFailures"]
    assert fault.injected == 1
    assert any(i["SK"] == "EVT#evt-1" for i in table_items())
    assert state_of(store, "m-1") is None
    # When the stream retries it; Then the state is right
    assert applier.retry() == {"batchItemFailures": []}
    assert state_of(store, "m-1") == "delivered"
    assert failure["itemIdentifier"]


def test_only_the_failed_record_and_those_after_it_are_retried(
    webhook: Webhook, applier: Applier, store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    # Given three deliveries in the stream, and the second's events cannot be stored
    for index in range(3):
        webhook(webhook_request(status(f"evt-{index}", f"m-{index}", "sent", T0)))
    dynamo_faults.fail(
        runtime.dynamodb_client(),
        "PutItem",
        code="InternalServerError",
        times=1,
        when=lambda params: params["Item"]["PK"]["S"] == "MSG#m-1",
    )
    answer = applier()
    assert applier.records == 3
    assert len(answer["batchItemFailures"]) == 1
    assert [state_of(store, f"m-{i}") for i in range(3)] == ["sent", None, "sent"]
    # When retried once DynamoDB is back (from the failed record on: the last one again, harmlessly)
    assert applier.retry() == {"batchItemFailures": []}
    assert applier.records == 2
    assert [state_of(store, f"m-{i}") for i in range(3)] == ["sent", "sent", "sent"]


# ---- 6. concurrency -----------------------------------------------------------------------------


def test_a_300_event_array_is_written_concurrently(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore, table_items: Items
) -> None:
    body = [
        status(f"evt-{m}-{v}", f"m-{m}", v, TIMELINE[v] + timedelta(minutes=m))
        for m in range(100)
        for v in TIMELINE
    ]
    random.Random(42).shuffle(body)
    threads: set[str] = set()
    lock = threading.Lock()

    def record(**_: Any) -> None:
        with lock:
            threads.add(threading.current_thread().name)

    runtime.dynamodb_client().meta.events.register("provide-client-params.dynamodb.PutItem", record)
    deliver(body)
    assert len({t for t in threads if t.startswith("events")}) > 1, threads
    assert len([i for i in table_items() if i["SK"].startswith("EVT#")]) == 300
    states = store.get_states([f"m-{m}" for m in range(100)])
    assert ({s.status for s in states.values()}, len(states)) == ({"delivered"}, 100)


def test_a_big_delivery_stored_gzipped_is_applied(
    deliver: Callable[..., dict[str, Any]], store: DynamoStore
) -> None:
    body = [status(f"evt-{i}", f"m-{i}", "delivered", T0, note="é" * 1000) for i in range(20)]
    deliver(json.dumps(body))
    assert {s.status for s in store.get_states([f"m-{i}" for i in range(20)]).values()} == {"delivered"}
