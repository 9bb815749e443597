"""Helpers for the hostile-input and no-secrets-in-logs tests.

- API Gateway HTTP API (v2) events and SQS events built from the files in events/.
- `WriteCounter`: counts the DynamoDB writes a client makes (a botocore hook), so a test can show that
  a request stored nothing at all.
- `guard_sockets`: any connection to anything but loopback fails the test.
- `leaked_exception_text`: what must never be in a response body.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tests.events import load_event

WEBHOOK_EVENT = "webhook_status_event"
API_EVENT = "api_post_batch"
SQS_EVENT = "sqs_batch"

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "ExecuteStatement"}
)

# Text that only a leaked exception or traceback puts in a response body (hypothesis's generated text
# is far too unlikely to contain any of these by chance).
_EXCEPTION_MARKERS = (
    "Traceback (most recent call last)",
    'File "/',
    "site-packages",
    '.py", line',
    "RecursionError",
    "JSONDecodeError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "binascii",
    "Expecting value",
    "Expecting property name",
    "ValidationError",
    "pydantic_core",
    "errors.pydantic.dev",
    "ClientError",
    "botocore",
    "maximum recursion depth",
)


def leaked_exception_text(body: str) -> list[str]:
    """The exception/traceback markers found in a response body (none is the only right answer)."""
    return [marker for marker in _EXCEPTION_MARKERS if marker in body]


def basic(username: str, password: str, scheme: str = "Basic ") -> str:
    return scheme + base64.b64encode(f"{username}:{password}".encode()).decode()


# ---- events ---------------------------------------------------------------------------------------


def http_event(
    name: str,
    *,
    body: str | bytes | None,
    base64_encoded: bool = False,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    path: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (v2) event from events/<name>.json with its body, headers (replaced
    whole: None drops the key), query string and path replaced. Bytes are sent base64-encoded."""
    event = load_event(name)
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    elif body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    elif base64_encoded:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body.encode()).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    if headers is None:
        event.pop("headers", None)
    else:
        event["headers"] = dict(headers)
    event.pop("queryStringParameters", None)
    event["rawQueryString"] = ""
    if query:
        event["queryStringParameters"] = dict(query)
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    if path is not None:
        event["rawPath"] = path
        event["requestContext"]["http"]["path"] = path
    event["requestContext"]["requestId"] = request_id or f"req-{uuid.uuid4()}"
    return event


def webhook_headers(authorization: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "host": "127.0.0.1:3000", "user-agent": "Ocelot/1.0"}
    if authorization is not None:
        headers["authorization"] = authorization
    headers.update(extra)
    return headers


def sqs_event(bodies: Sequence[str]) -> dict[str, Any]:
    """An SQS event (events/sqs_batch.json's record shape) with one record per body."""
    template = load_event(SQS_EVENT)["Records"][0]
    records = []
    for body in bodies:
        record = copy.deepcopy(template)
        message_id = f"sqs-{uuid.uuid4()}"
        record.update(messageId=message_id, receiptHandle=f"rh-{message_id}", body=body)
        records.append(record)
    return {"Records": records}


def json_body(response: Mapping[str, Any]) -> Any:
    return json.loads(response["body"])


# ---- DynamoDB writes ------------------------------------------------------------------------------


class WriteCounter:
    """Counts the write calls a DynamoDB client makes, whatever the table."""

    def __init__(self, client: Any) -> None:
        self.writes = 0
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        if model.name in WRITE_OPERATIONS:
            with self._lock:
                self.writes += 1


# ---- Lambda-like setup ---------------------------------------------------------------------------


def prepare_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in Lambda: the metrics namespace and service are set (the shared Metrics object is created
    when the layer is first imported, before the `env` fixture runs), and only loopback is reachable."""
    from ocelot_sms.observability import metrics

    monkeypatch.setattr(metrics, "namespace", "OcelotSms")
    monkeypatch.setattr(metrics, "service", "ocelot-sms")
    metrics.clear_metrics()
    guard_sockets(monkeypatch)


# ---- network --------------------------------------------------------------------------------------


def guard_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every socket connection; one to anything but loopback fails the test."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        attempts.append(address)
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK_HOSTS:
            pytest.fail(f"a test tried to connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempts


# ---- Ocelot on a loopback socket ------------------------------------------------------------------
