"""WebhookService: the webhook's logic without HTTP, against a recording store and the in-memory one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ocelot_sms.contract import CallbackEvent
from ocelot_sms.credentials import WebhookCredentials
from ocelot_sms.errors import DomainError, Malformed, PayloadTooLarge, StorageUnavailable, Unauthorized
from ocelot_sms.settings import Settings
from ocelot_sms.store import EventRecord, EventWrite, RawDelivery, RawRef, StorageError, Store
from ocelot_sms.webhook import SECRET_HEADERS, Receipt, WebhookService, safe_headers
from tests.unit.fakes import MemoryStore
from tests.unit.support.aws import EmfReader

T = TypeVar("T")
R = TypeVar("R")

NOW = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
CREDENTIALS = WebhookCredentials("ocelot", "pw", "tok")

pytestmark = pytest.mark.usefixtures("emf")


class RecordingStore:
    """The webhook's half of the Store: put_raw/put_event recorded in call order; outcomes and
    failures scripted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.raw_error: Exception | None = None
        self.event_error: Exception | None = None
        self.outcomes: dict[str, EventWrite] = {}
        self._lock = threading.Lock()

    def put_raw(self, raw: RawDelivery, retention_days: int) -> None:
        self.calls.append(("raw", (raw, retention_days)))
        if self.raw_error:
            raise self.raw_error

    def put_event(self, event: EventRecord) -> EventWrite:
        with self._lock:
            self.calls.append(("event", (event.event_id, event.raw)))
        if self.event_error:
            raise self.event_error
        return self.outcomes.get(event.event_id, EventWrite.APPLIED)


class SpyExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="spy")
        self.mapped = 0

    def map(self, fn: Callable[[T], R], *iterables: Iterable[T], **kwargs: Any) -> Iterator[R]:
        self.mapped += 1
        return super().map(fn, *iterables, **kwargs)


def settings(**overrides: Any) -> Settings:
    return Settings(table_name="messages", **overrides)


def service(
    store: RecordingStore | MemoryStore, executor: ThreadPoolExecutor | None = None, **overrides: Any
) -> WebhookService:
    return WebhookService(settings(**overrides), cast(Store, store), lambda: CREDENTIALS, executor)


def delivery(
    body: bytes | str | Any, headers: Mapping[str, str] | None = None, delivery_id: str = "req-1"
) -> RawDelivery:
    data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    return RawDelivery(delivery_id, NOW, data, headers or {"content-type": "application/json"}, "192.0.2.1")


def refused(receive: Callable[[], Receipt]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        receive()
    return caught.value


def sent(event_id: str, message_id: str = "m-1", **extra: Any) -> dict[str, Any]:
    return {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "messageId": message_id,
        "status": "sent",
        "dateTime": "2026-11-26T16:00:00Z",
        **extra,
    }


# ---- headers ------------------------------------------------------------------------------------


def test_safe_headers_drop_every_credential_header_whatever_its_case() -> None:
    # Given headers carrying credentials in several casings
    headers = {
        "Authorization": "Basic xyz",
        "PROXY-AUTHORIZATION": "Basic xyz",
        "Cookie": "session=1",
        "X-Api-Key": "k",
        "x-amz-security-token": "t",
        "Content-Type": "application/json",
        "X-Ocelot-Signature": "sig",
    }
    # When made safe; Then only the others remain, lower-cased
    assert safe_headers(headers) == {"content-type": "application/json", "x-ocelot-signature": "sig"}
    assert {"authorization", "cookie"} <= SECRET_HEADERS


# ---- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("basic", "token", "accepted"),
    [
        (("ocelot", "pw"), None, True),
        (None, "tok", True),
        (("ocelot", "wrong"), "tok", True),
        (("ocelot", "wrong"), None, False),
        (("other", "pw"), None, False),
        (None, "tok2", False),
        (None, None, False),
    ],
)
def test_authenticate_counts_only_failures(
    emf: EmfReader, basic: tuple[str, str] | None, token: str | None, accepted: bool
) -> None:
    # Given the service; When a request presents these credentials
    store = RecordingStore()
    try:
        service(store).authenticate(basic, token)
        result = True
    except Unauthorized:
        result = False
    # Then accepted or not, with the failure metric only when refused, and nothing stored
    assert result is accepted
    assert emf.read()["WebhookAuthFailures"] == (0 if accepted else 1)
    assert store.calls == []


def test_credentials_are_read_for_every_request() -> None:
    # Given credentials that change (an operator rotated the secret)
    current = [WebhookCredentials("ocelot", "old", None)]
    svc = WebhookService(settings(), cast(Store, RecordingStore()), lambda: current[0])
    svc.authenticate(("ocelot", "old"), None)
    # When rotated; Then the new password works and the old one does not, with no restart
    current[0] = WebhookCredentials("ocelot", "new", None)
    svc.authenticate(("ocelot", "new"), None)
    with pytest.raises(Unauthorized):
        svc.authenticate(("ocelot", "old"), None)


def test_token_only_credentials_refuse_basic() -> None:
    creds = WebhookCredentials(None, None, "tok")
    assert not creds.accepts(("", ""), None)
    assert creds.accepts(None, "tok")


# ---- receive ------------------------------------------------------------------------------------


def test_raw_is_stored_before_any_event(emf: EmfReader) -> None:
    # Given a valid two-event delivery
    store = RecordingStore()
    receipt = service(store, raw_retention_days=12).receive(
        delivery([sent("e-1"), sent("e-2")], {"Authorization": "Basic x", "Content-Type": "application/json"})
    )
    # Then the raw delivery is written first, with safe headers and the configured retention
    assert receipt == Receipt(received=2, new=2, duplicates=0)
    kind, (raw, days) = store.calls[0]
    assert (kind, days) == ("raw", 12)
    assert raw.headers == {"content-type": "application/json"}
    assert (raw.delivery_id, raw.received_at, raw.source_ip) == ("req-1", NOW, "192.0.2.1")
    # And every event refers to that raw delivery
    events = store.calls[1:]
    assert sorted(e[1][0] for e in events) == ["e-1", "e-2"]
    assert all(e[1][1] == raw.ref == RawRef("req-1", "2026-11-26T16:00:00.000000Z") for e in events)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "body: not valid JSON"),
        (b'{"eventId": "e-1", "status":', "body: not valid JSON"),
        (b"\xff\xfe\x00garbage", "body: not valid JSON"),
        (b"[" * 200_000, "body: not valid JSON"),  # deeper than the parser goes
        (b"[]", "body: expected an event object or a non-empty array of events"),
        (b'[{"eventId": "e-1"}, {"status": "sent"}]', "[1].eventId: Field required"),
    ],
)
def test_malformed_deliveries_are_refused_and_kept_raw(emf: EmfReader, body: bytes, problem: str) -> None:
    # Given a body that is not JSON or not events; When received
    store = RecordingStore()
    error = refused(lambda: service(store).receive(delivery(body)))
    # Then refused as malformed, naming the problem and the delivery, the raw kept, no event, a metric
    assert isinstance(error, Malformed)
    assert error.problems[0] == problem
    assert error.details == {"deliveryId": "req-1"}
    assert [c[0] for c in store.calls] == ["raw"]
    assert store.calls[0][1][0].body == body
    assert emf.read()["WebhookMalformed"] == 1


def test_every_problem_is_named() -> None:
    error = refused(lambda: service(RecordingStore()).receive(delivery([{"status": "x"}] * 80)))
    assert isinstance(error, Malformed)
    assert len(error.problems) == 80


def test_too_large_a_body_is_refused_and_stores_nothing(emf: EmfReader) -> None:
    # Given a limit of 100 bytes; When a 101-byte body arrives
    store = RecordingStore()
    error = refused(lambda: service(store, webhook_max_body_bytes=100).receive(delivery(b"x" * 101)))
    # Then too large, nothing stored, a metric; and exactly the limit is read (and found malformed)
    assert isinstance(error, PayloadTooLarge)
    assert error.message == "at most 100 bytes"
    assert store.calls == []
    assert emf.read()["WebhookBodiesTooLarge"] == 1
    error = refused(lambda: service(store, webhook_max_body_bytes=100).receive(delivery(b"x" * 100)))
    assert isinstance(error, Malformed)


STORAGE_ERRORS: list[Exception] = [
    ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "PutItem"),
    EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    StorageError("too large"),
]


@pytest.mark.parametrize("error", STORAGE_ERRORS, ids=type)
def test_raw_storage_failure_is_unavailable_and_nothing_else_is_written(
    emf: EmfReader, error: Exception
) -> None:
    # Given the raw delivery cannot be stored
    store = RecordingStore()
    store.raw_error = error
    # When received; Then storage unavailable (Ocelot retries), no event written, a metric
    assert isinstance(refused(lambda: service(store).receive(delivery(sent("e-1")))), StorageUnavailable)
    assert [c[0] for c in store.calls] == ["raw"]
    assert emf.read()["WebhookStorageFailures"] == 1


@pytest.mark.parametrize("error", STORAGE_ERRORS, ids=type)
@pytest.mark.parametrize("count", [1, 3])
def test_event_storage_failure_is_unavailable(error: Exception, count: int) -> None:
    # Given events cannot be stored; When one or several arrive; Then storage unavailable
    store = RecordingStore()
    store.event_error = error
    events = [sent(f"e-{i}") for i in range(count)]
    assert isinstance(refused(lambda: service(store).receive(delivery(events))), StorageUnavailable)


def test_counts_and_metrics_of_a_stored_delivery(emf: EmfReader) -> None:
    # Given four events: one applied, one stored behind a further status, one duplicate, one inbound
    store = RecordingStore()
    store.outcomes = {"e-2": EventWrite.STORED, "e-3": EventWrite.DUPLICATE, "in-1": EventWrite.STORED}
    body = [
        sent("e-1"),
        sent("e-2", status="Delivered"),
        sent("e-3"),
        {"eventId": "in-1", "name": "IncomingSms.received", "message": "hi"},
    ]
    # When received
    receipt = service(store).receive(delivery(body))
    # Then what was new and what was a duplicate
    assert receipt == Receipt(received=4, new=3, duplicates=1)
    counted = emf.read()
    # And per-status metrics for the new events only, inbound as "other"
    assert counted["WebhookEvents_sent"] == 1
    assert counted["WebhookEvents_delivered"] == 1
    assert counted["WebhookEvents_other"] == 1
    assert counted["WebhookDuplicateEvents"] == 1


def test_no_duplicate_metric_without_duplicates(emf: EmfReader) -> None:
    service(RecordingStore()).receive(delivery(sent("e-1")))
    assert "WebhookDuplicateEvents" not in emf.read()


# ---- concurrency --------------------------------------------------------------------------------


def test_one_event_is_written_inline() -> None:
    executor = SpyExecutor()
    assert service(RecordingStore(), executor).receive(delivery(sent("e-1"))).new == 1
    assert executor.mapped == 0


def test_many_events_are_written_through_the_executor_in_their_order() -> None:
    # Given 50 events; When received
    executor = SpyExecutor()
    store = RecordingStore()
    svc = service(store, executor)
    outcomes = svc.apply([CallbackEvent(event_id=f"e-{i}") for i in range(50)], RawRef("d-1", "x"))
    # Then written through the pool, outcomes in the events' order
    assert executor.mapped == 1
    assert len(outcomes) == 50
    assert sorted(c[1][0] for c in store.calls) == sorted(f"e-{i}" for i in range(50))


def test_the_default_pool_uses_the_configured_concurrency() -> None:
    svc = service(RecordingStore(), webhook_write_concurrency=7)
    pool = svc._executor
    assert pool._max_workers == 7
    assert pool._thread_name_prefix == "events"


# ---- against a store -----------------------------------------------------------------------------


def test_a_delivery_received_twice_is_one_set_of_events() -> None:
    # Given the in-memory store
    store = MemoryStore()
    svc = service(store)
    body = [sent("e-1"), sent("e-2", "m-2", status="delivered")]
    # When the same delivery is received twice (Ocelot's retry: another request id)
    first = svc.receive(delivery(body))
    events_before = dict(store.events)
    second = svc.receive(delivery(body, delivery_id="req-2"))
    # Then the second is all duplicates, and nothing but its raw delivery is new
    assert first == Receipt(received=2, new=2, duplicates=0)
    assert second == Receipt(received=2, new=0, duplicates=2)
    assert store.events == events_before
    assert [r.delivery_id for r in store.raws] == ["req-1", "req-2"]
