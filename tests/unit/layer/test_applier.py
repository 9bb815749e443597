"""ApplierService: a stored raw delivery applied item by item, over the in-memory store.

What the stream and the batch processor do around it is in tests/unit/functions/test_applier.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from ocelot_sms.applier import Applied, ApplierService, replay_deliveries
from ocelot_sms.errors import NotFound
from ocelot_sms.settings import Settings
from ocelot_sms.status import StatusService
from ocelot_sms.store import RawDelivery
from tests.unit.fakes import MemoryStore
from tests.unit.support.aws import EmfReader

T = TypeVar("T")
R = TypeVar("R")

RECEIVED = datetime(2026, 11, 26, 16, 0, 30, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("emf")


class SpyExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="spy")
        self.mapped = 0

    def map(self, fn: Callable[[T], R], *iterables: Iterable[T], **kwargs: Any) -> Iterator[R]:
        self.mapped += 1
        return super().map(fn, *iterables, **kwargs)


def status(
    event_id: str, message_id: str = "m-1", value: str = "sent", at: str = "2026-11-26T16:00:00Z"
) -> dict[str, Any]:
    return {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "messageId": message_id,
        "status": value,
        "dateTime": at,
    }


def raw(body: bytes | str | Any, delivery_id: str = "d-1") -> RawDelivery:
    data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    return RawDelivery(delivery_id, RECEIVED, data, {"content-type": "application/json"})


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def applier(
    store: MemoryStore, executor: ThreadPoolExecutor | None = None, **overrides: Any
) -> ApplierService:
    return ApplierService(Settings(table_name="messages", **overrides), store, executor)


def kept(store: MemoryStore, delivery: RawDelivery) -> RawDelivery:
    """The delivery as the store keeps it (with the problems applying it recorded)."""
    store.put_raw(delivery, 30)
    found = store.get_raw(delivery.ref)
    assert found is not None
    return found


def apply(store: MemoryStore, delivery: RawDelivery, **overrides: Any) -> Applied:
    return applier(store, **overrides).apply(kept(store, delivery))


def test_every_event_is_stored_and_each_status_moves_forward(store: MemoryStore, emf: EmfReader) -> None:
    body = [
        status("e-1", "m-1", "queued", "2026-11-26T16:00:01Z"),
        status("e-2", "m-1", "Delivered", "2026-11-26T16:00:05Z"),
        status("e-3", "m-2", "failed"),
        {"eventId": "in-1", "name": "IncomingSms.received", "message": "STOP", "from": "+15551230001"},
    ]
    applied = apply(store, raw(body))
    assert applied == Applied("d-1", events=4, new=4, duplicates=0)
    states = store.get_states(["m-1", "m-2"])
    assert (states["m-1"].status, states["m-2"].status) == ("delivered", "failed")
    counted = emf.read()
    assert (
        counted["WebhookEvents_queued"],
        counted["WebhookEvents_delivered"],
        counted["WebhookEvents_other"],
    ) == (1, 1, 1)


def test_applying_a_delivery_again_stores_nothing_new(store: MemoryStore, emf: EmfReader) -> None:
    delivery = raw([status("e-1"), status("e-2", "m-2")])
    apply(store, delivery)
    before = (dict(store.events), dict(store.states))
    emf.read()
    assert apply(store, delivery) == Applied("d-1", events=2, new=0, duplicates=2)
    assert (store.events, store.states) == before
    assert emf.read()["WebhookDuplicateEvents"] == 2


def test_an_event_repeated_in_one_delivery_is_written_once(store: MemoryStore) -> None:
    assert apply(store, raw([status("e-1"), status("e-1"), status("e-2")])) == Applied(
        "d-1", events=3, new=2, duplicates=1
    )


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"status": "sent"}, "[1].eventId: Field required"),
        ("a string", "[1]: expected an object"),
        ({"eventId": "", "status": "sent"}, "[1].eventId: String should have at least 1 character"),
    ],
)
def test_a_malformed_item_is_recorded_and_its_neighbours_are_applied(
    store: MemoryStore, emf: EmfReader, item: Any, problem: str
) -> None:
    # Given a delivery with a malformed item between two good ones
    delivery = raw([status("e-1"), item, status("e-2", "m-2", "delivered")])
    applied = apply(store, delivery)
    # Then the good ones are applied, the bad one is a problem on the delivery, counted
    assert (applied.events, applied.new, applied.problems) == (2, 2, (problem,))
    assert store.get_states(["m-2"])["m-2"].status == "delivered"
    assert store.raws[("d-1", delivery.ref.received_at)].problems == (problem,)
    assert emf.read()["WebhookMalformedItems"] == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_and_make_only_their_item_a_problem(
    store: MemoryStore, literal: str
) -> None:
    bad = f'{{"eventId": "e-1", "messageId": "m-1", "status": "sent", "errorCode": {literal}}}'
    body = f"[{bad}, {json.dumps(status('e-2', 'm-2'))}]"
    applied = apply(store, raw(body))
    assert applied.problems == ("[0]: NaN and Infinity are not JSON numbers",)
    assert list(store.get_states(["m-1", "m-2"])) == ["m-2"]
    # And nothing of it can be echoed back: the item was never stored
    with pytest.raises(NotFound):
        StatusService(store).message("m-1")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"\xff\xfe\x00garbage", "body: not valid JSON"),
        (b"[" * 200_000, "body: not valid JSON"),  # deeper than the parser goes
        (b"[]", "body: expected an event object or a non-empty array of events"),
        (b'"just text"', "body: expected an event object or a non-empty array of events"),
    ],
)
def test_a_body_that_is_no_events_at_all_is_one_problem(
    store: MemoryStore, body: bytes, problem: str
) -> None:
    applied = apply(store, raw(body))
    assert (applied.events, applied.problems) == (0, (problem,))
    assert store.events == {}


def test_an_unknown_status_of_a_message_is_kept_in_its_history_without_moving_it(store: MemoryStore) -> None:
    # Given a message that was sent; When an event with a status we do not know comes for it
    apply(store, raw([status("e-1", "m-1", "sent", "2026-11-26T16:00:01Z")]))
    apply(store, raw([status("e-2", "m-1", "pending_review", "2026-11-26T16:00:09Z")], "d-2"))
    # Then the status stays sent, and the event is in the history, marked as not understood
    message = StatusService(store).message("m-1")
    assert message["status"] == "sent"
    assert [(e["eventId"], e["status"], e["understood"]) for e in message["history"]] == [
        ("e-1", "sent", True),
        ("e-2", "pending_review", False),
    ]


def test_a_time_later_than_receipt_is_ordered_at_receipt_and_kept(store: MemoryStore) -> None:
    # Given delivered at receipt, then a "sent" the sender dates a year ahead (received a second later)
    apply(store, raw([status("e-1", "m-1", "failed", "2026-11-26T16:00:29Z")]))
    future = status("e-2", "m-1", "delivered", "2027-11-26T16:00:00Z")
    apply(store, raw([future], "d-2"))
    # Then the future one is ordered as if it happened when received: after the failed, so it wins
    message = StatusService(store).message("m-1")
    assert message["status"] == "delivered"
    assert message["statusAt"] == "2026-11-26T16:00:30.000000Z"
    # And its own time is shown, untouched
    second = message["history"][1]
    assert (second["eventTime"], second["reportedTime"]) == (
        "2026-11-26T16:00:30.000000Z",
        "2027-11-26T16:00:00Z",
    )
    assert second["event"]["dateTime"] == "2027-11-26T16:00:00Z"


def test_a_time_within_the_allowed_skew_is_used_as_it_is(store: MemoryStore) -> None:
    apply(store, raw([status("e-1", "m-1", "sent", "2026-11-26T16:04:00Z")]), clock_skew_seconds=300)
    message = StatusService(store).message("m-1")
    assert (message["statusAt"], message["history"][0]["reportedTime"]) == (
        "2026-11-26T16:04:00.000000Z",
        None,
    )


def test_one_event_is_written_inline_and_many_through_the_pool(store: MemoryStore) -> None:
    executor = SpyExecutor()
    service = applier(store, executor)
    service.apply(kept(store, raw([status("e-1")])))
    assert executor.mapped == 0
    service.apply(kept(store, raw([status(f"e-{i}", f"m-{i}") for i in range(50)], "d-2")))
    assert executor.mapped == 1
    assert len(store.states) == 50


def test_the_default_pool_uses_the_configured_concurrency(store: MemoryStore) -> None:
    pool = applier(store, webhook_write_concurrency=7)._executor
    assert (pool._max_workers, pool._thread_name_prefix) == (7, "events")


def test_a_storage_failure_is_raised_for_the_stream_to_retry(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("ProvisionedThroughputExceededException")

    delivery = kept(store, raw([status("e-1")]))
    monkeypatch.setattr(store, "put_event", broken)
    with pytest.raises(RuntimeError, match="Throughput"):
        applier(store).apply(delivery)


def test_a_replay_skips_what_was_too_large_to_keep_and_says_so(store: MemoryStore) -> None:
    store.put_raw(RawDelivery("big", RECEIVED, b"x" * 10, truncated_from=5_000_000), 30)
    report = replay_deliveries(
        store, applier(store), RECEIVED - timedelta(seconds=1), RECEIVED + timedelta(seconds=1)
    )
    assert (report.deliveries, report.truncated, report.events) == (1, ["big"], 0)
