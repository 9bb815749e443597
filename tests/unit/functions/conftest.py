"""Fixtures for the handlers' tests: the webhook as API Gateway calls it, and the applier as the
table's stream (moto's DynamoDB Streams, filtered as the event source is) hands it what was stored."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from functions.applier import app as applier_app
from functions.webhook import app as webhook_app
from ocelot_sms.store import DynamoStore
from tests.events import load_event, with_body
from tests.unit.support.aws import WEBHOOK_CREDENTIALS, FakeContext
from tests.unit.support.ocelot import FakeOcelot, guard_network, ocelot_mock
from tests.unit.support.stream import TableStream

GOOD_BASIC = (
    "Basic "
    + base64.b64encode(
        f"{WEBHOOK_CREDENTIALS['username']}:{WEBHOOK_CREDENTIALS['password']}".encode()
    ).decode()
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def webhook_request(
    body: Any,
    *,
    authorization: str | None = GOOD_BASIC,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    request_id: str = "wh-test-1",
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for POST /webhooks/ocelot, from events/webhook_status_event.json."""
    event = with_body(load_event("webhook_status_event"), body)
    event["headers"].pop("authorization")
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    event["headers"].update(headers or {})
    if token is not None:
        event["queryStringParameters"] = {"token": token}
        event["rawQueryString"] = f"token={token}"
    event["requestContext"]["requestId"] = request_id
    return event


def status(
    event_id: str, message_id: str, value: str, at: datetime | str | None, **extra: Any
) -> dict[str, Any]:
    """A delivery-status callback item as Ocelot sends it (contract.py's names)."""
    item: dict[str, Any] = {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "batchId": "ocelot-batch-1",
        "messageId": message_id,
        "to": "+15551230010",
        "from": "+15550000000",
        "status": value,
        **extra,
    }
    if at is not None:
        item["dateTime"] = at if isinstance(at, str) else at.isoformat()
    return item


class Webhook:
    """Calls the webhook's handler as API Gateway would, each call with a fresh request id."""

    def __init__(self, context: FakeContext) -> None:
        self._context = context
        self._ids = itertools.count(1)

    def __call__(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if event["requestContext"]["requestId"] == "wh-test-1":
            event["requestContext"]["requestId"] = f"wh-test-{next(self._ids)}"
        response = webhook_app.lambda_handler(event, self._context)
        return response["statusCode"], json.loads(response["body"]), response.get("headers") or {}


class Applier:
    """Hands the applier's handler what the stream holds since last time, as Lambda's poller does;
    `last` is its answer (the batch item failures)."""

    def __init__(self, context: FakeContext, table_name: str) -> None:
        self._context = context
        self._stream = TableStream(table_name)
        self.last: dict[str, Any] = {}
        self.records = 0
        self._pending: list[dict[str, Any]] = []

    def __call__(self) -> dict[str, Any]:
        return self._invoke(self._stream.next_records())

    def retry(self) -> dict[str, Any]:
        """What Lambda does with a reported failure: the batch again from the first failed record."""
        failed = [f["itemIdentifier"] for f in self.last.get("batchItemFailures", [])]
        assert failed, "nothing failed: there is nothing to retry"
        sequence = [r["dynamodb"]["SequenceNumber"] for r in self._pending]
        return self._invoke(self._pending[sequence.index(failed[0]) :])

    def _invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        self._pending = records
        self.records = len(records)
        self.last = dict(applier_app.lambda_handler({"Records": records}, self._context)) if records else {}
        return self.last


@pytest.fixture
def webhook(aws: dict[str, Any], lambda_context: FakeContext) -> Webhook:
    return Webhook(lambda_context)


@pytest.fixture
def applier(aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext) -> Applier:
    return Applier(lambda_context, env["TABLE_NAME"])


@pytest.fixture
def store(aws: dict[str, Any], env: dict[str, str]) -> DynamoStore:
    return DynamoStore(aws["dynamodb"], env["TABLE_NAME"])


@pytest.fixture
def ocelot(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOcelot]:
    """Ocelot on `responses`; any other connection must stay on loopback."""
    guard_network(monkeypatch)
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)
