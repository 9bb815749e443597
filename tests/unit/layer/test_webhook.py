"""WebhookService, the webhook's logic without HTTP: authenticate (credential rotation included), keep
the delivery raw with one write, answer. Nothing is parsed here: see test_applier.py."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ocelot_sms.credentials import WebhookCredentials
from ocelot_sms.errors import DomainError, PayloadTooLarge, StorageUnavailable, Unauthorized
from ocelot_sms.settings import Settings
from ocelot_sms.store import RawDelivery, StorageError, Store
from ocelot_sms.store.codec import RAW_HEAD_BYTES
from ocelot_sms.webhook import SECRET_HEADERS, Receipt, WebhookService, safe_headers
from tests.unit.fakes import MemoryStore
from tests.unit.support.aws import EmfReader

NOW = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
CREDENTIALS = WebhookCredentials("ocelot", "pw", "tok")

pytestmark = pytest.mark.usefixtures("emf")


class FailingStore(MemoryStore):
    """The in-memory store whose raw writes fail the way DynamoDB's client does."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def put_raw(self, raw: RawDelivery, retention_days: int) -> bool:
        raise self.error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(
    store: Store | None = None,
    credentials: Callable[[bool], WebhookCredentials] | None = None,
    clock: Callable[[], float] | None = None,
    **overrides: Any,
) -> WebhookService:
    return WebhookService(
        Settings(table_name="messages", **overrides),
        store or MemoryStore(),
        credentials or (lambda force: CREDENTIALS),
        *([clock] if clock else []),
    )


def delivery(
    body: bytes | Any, headers: Mapping[str, str] | None = None, delivery_id: str = "req-1"
) -> RawDelivery:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawDelivery(delivery_id, NOW, data, headers or {"content-type": "application/json"}, "192.0.2.1")


def refused(call: Callable[[], object]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


# ---- headers ------------------------------------------------------------------------------------


def test_safe_headers_drop_every_credential_header_whatever_its_case() -> None:
    headers = {
        "Authorization": "Basic xyz",
        "PROXY-AUTHORIZATION": "Basic xyz",
        "Cookie": "session=1",
        "X-Api-Key": "k",
        "x-amz-security-token": "t",
        "Content-Type": "application/json",
        "X-Ocelot-Signature": "sig",
    }
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
def test_only_refusals_are_counted(
    emf: EmfReader, basic: tuple[str, str] | None, token: str | None, accepted: bool
) -> None:
    store = MemoryStore()
    try:
        service(store).authenticate(basic, token)
        result = True
    except Unauthorized:
        result = False
    assert result is accepted
    assert emf.read()["WebhookAuthFailures"] == (0 if accepted else 1)
    assert store.raws == {}


def test_a_refusal_reads_the_secret_again_at_most_once_a_minute() -> None:
    # Given a container that cached the old password, and an operator who rotated it
    secret = {"current": WebhookCredentials("ocelot", "old", None)}
    reads: list[bool] = []

    def credentials(force: bool) -> WebhookCredentials:
        reads.append(force)
        return secret["current"] if force else WebhookCredentials("ocelot", "old", None)

    clock = Clock()
    svc = service(credentials=credentials, clock=clock)
    secret["current"] = WebhookCredentials("ocelot", "new", None)
    # When Ocelot presents the new one; Then the secret is read again once, and the request accepted
    svc.authenticate(("ocelot", "new"), None)
    assert reads == [False, True]
    # When a wrong password follows within the minute; Then refused without another read
    clock.now += 59
    with pytest.raises(Unauthorized):
        svc.authenticate(("ocelot", "guess"), None)
    assert reads == [False, True, False]
    # And after the minute, one more read
    clock.now += 1
    with pytest.raises(Unauthorized):
        svc.authenticate(("ocelot", "guess"), None)
    assert reads == [False, True, False, False, True]


def test_during_a_rotation_the_previous_credentials_work_until_their_end() -> None:
    until = NOW + timedelta(hours=24)
    rotated = WebhookCredentials.from_value(
        {
            "username": "ocelot",
            "password": "new",
            "previous": {
                "username": "ocelot",
                "password": "old",
                "token": "t-old",
                "acceptedUntil": until.isoformat(),
            },
        }
    )
    assert rotated.accepts(("ocelot", "new"), None, now=NOW)
    assert rotated.accepts(("ocelot", "old"), None, now=NOW)
    assert rotated.accepts(None, "t-old", now=until - timedelta(seconds=1))
    assert not rotated.accepts(("ocelot", "old"), None, now=until)
    assert not rotated.accepts(("ocelot", "other"), None, now=NOW)


@pytest.mark.parametrize(
    "previous",
    [
        {"username": "ocelot", "password": "old"},  # no end: never accepted
        {"username": "ocelot", "password": "old", "acceptedUntil": "someday"},
        {"username": "ocelot", "acceptedUntil": "2099-01-01T00:00:00Z"},  # nothing to accept
        "old",
    ],
)
def test_a_previous_entry_without_a_usable_end_or_credential_is_ignored(previous: Any) -> None:
    rotated = WebhookCredentials.from_value({"username": "ocelot", "password": "new", "previous": previous})
    assert rotated.previous is None
    assert not rotated.accepts(("ocelot", "old"), None, now=NOW)


def test_token_only_credentials_refuse_basic() -> None:
    creds = WebhookCredentials(None, None, "tok")
    assert not creds.accepts(("", ""), None)
    assert creds.accepts(None, "tok")


# ---- receive ------------------------------------------------------------------------------------


def test_a_delivery_is_kept_raw_with_safe_headers_and_nothing_is_parsed(emf: EmfReader) -> None:
    # Given a body that is not even JSON; When received
    store = MemoryStore()
    receipt = service(store, raw_retention_days=12).receive(
        delivery(b"not json at all", {"Authorization": "Basic x", "Content-Type": "text/plain"})
    )
    # Then kept as it came, without the credential header; the applier reads it later
    assert receipt == Receipt("req-1", 15)
    [raw] = store.raws.values()
    assert (raw.body, raw.headers, raw.source_ip, raw.received_at) == (
        b"not json at all",
        {"content-type": "text/plain"},
        "192.0.2.1",
        NOW,
    )
    assert store.events == {}
    assert "WebhookMalformedItems" not in emf.read()


def test_a_gzip_body_is_kept_decoded() -> None:
    store = MemoryStore()
    body = json.dumps([{"eventId": "e-1"}]).encode()
    service(store).receive(delivery(gzip.compress(body), {"Content-Encoding": "gzip"}))
    assert [r.body for r in store.raws.values()] == [body]


def test_a_body_that_says_gzip_but_is_not_is_kept_as_it_came() -> None:
    store = MemoryStore()
    service(store).receive(delivery(b"plain text", {"content-encoding": "GZIP"}))
    assert [r.body for r in store.raws.values()] == [b"plain text"]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_body_over_the_limit_is_refused_and_its_start_is_recorded(emf: EmfReader, compressed: bool) -> None:
    # Given a limit of 100 bytes; When 101 bytes arrive (or a gzip body that inflates past it)
    store = MemoryStore()
    body = b"x" * 101
    sent = gzip.compress(body) if compressed else body
    headers = {"content-encoding": "gzip"} if compressed else {}
    error = refused(lambda: service(store, webhook_max_body_bytes=100).receive(delivery(sent, headers)))
    # Then too large, counted, and its start and size recorded, never to be applied
    assert isinstance(error, PayloadTooLarge)
    assert error.details == {"deliveryId": "req-1"}
    assert emf.read()["WebhookBodiesTooLarge"] == 1
    [kept] = store.raws.values()
    assert kept.truncated_from == 101
    assert kept.body == body[:RAW_HEAD_BYTES]
    # And exactly the limit is kept whole
    assert (
        service(store, webhook_max_body_bytes=100).receive(delivery(b"x" * 100, delivery_id="r2")).bytes
        == 100
    )


def test_a_body_an_item_cannot_hold_even_compressed_is_refused_with_its_start_kept() -> None:
    # Given a limit high enough, but a body gzip cannot shrink below an item's size
    store = MemoryStore()
    body = random.Random(3).randbytes(500_000)
    error = refused(lambda: service(store, webhook_max_body_bytes=2_000_000).receive(delivery(body)))
    assert isinstance(error, PayloadTooLarge)
    [kept] = store.raws.values()
    assert (kept.truncated_from, len(kept.body)) == (500_000, RAW_HEAD_BYTES)


STORAGE_ERRORS: list[Exception] = [
    ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "PutItem"),
    EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    StorageError("lost"),
]


@pytest.mark.parametrize("error", STORAGE_ERRORS, ids=type)
def test_a_storage_failure_is_unavailable_and_counted(emf: EmfReader, error: Exception) -> None:
    failed = refused(lambda: service(cast(Store, FailingStore(error))).receive(delivery([{"eventId": "e"}])))
    assert isinstance(failed, StorageUnavailable)
    assert failed.retry_after == 1.0
    assert emf.read()["WebhookStorageFailures"] == 1


def test_the_same_delivery_stored_twice_is_kept_once() -> None:
    # Given a write applied and retried (a botocore retry: same id, same receipt time)
    store = MemoryStore()
    svc = service(store)
    svc.receive(delivery([{"eventId": "e-1"}]))
    svc.receive(delivery([{"eventId": "e-1"}]))
    assert len(store.raws) == 1
