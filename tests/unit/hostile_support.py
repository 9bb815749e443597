"""Helpers for the hostile-input and no-secrets-in-logs tests.

- API Gateway HTTP API (v2) events and SQS events built from the files in events/.
- `WriteCounter`: counts the DynamoDB writes a client makes (a botocore hook), so a test can show that
  a request stored nothing at all.
- `LoopbackOcelot`: Ocelot's send endpoint on a real socket on 127.0.0.1 (urllib3 and requests run for
  real, their log lines included), answering from a script: a reply, or a delay longer than the
  client's read timeout.
- `guard_sockets`: any connection to anything but loopback fails the test.
- `leaked_exception_text`: what must never be in a response body.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def accepted(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Ocelot's success body for a send payload: fresh ids, in request order."""
    return {
        "batchId": f"b-{uuid.uuid4()}",
        "messages": [
            {"id": f"m-{uuid.uuid4()}", "to": m["to"], "externalId": m.get("externalId")}
            for m in payload["messages"]
        ],
    }


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # None: `accepted(payload)`; a str is sent as it is
    delay: float = 0.0  # seconds before answering (longer than the read timeout: no answer in time)


@dataclass
class Received:
    payload: dict[str, Any]
    authorization: str | None


@dataclass
class LoopbackOcelot:
    """A real HTTP server on 127.0.0.1 answering from `script` in order, then accepting."""

    script: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                owner.received.append(Received(payload, self.headers.get("Authorization")))
                reply = owner.script.pop(0) if owner.script else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                body = accepted(payload) if reply.body is None else reply.body
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (read timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackOcelot:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
