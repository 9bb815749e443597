"""Helpers for the Sender's unit tests.

- `FakeOcelot`: Ocelot's send endpoint on `responses` (unregistered URLs stay blocked), with
  scripted replies and a record of every payload and Authorization header it received.
- `LoopbackOcelot`: a real HTTP server on 127.0.0.1, for what `responses` cannot show: urllib3
  really sleeping for a Retry-After between attempts.
- `DynamoCalls`: counts the DynamoDB API calls a client makes (a botocore event hook).
- `guard_network`: every TCP connection urllib3 opens is recorded and must go to loopback.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses
import urllib3.util.connection
from boto3.dynamodb.types import TypeDeserializer

from ocelot_sms.contract import SEND_PATH
from tests.unit.support.aws import OCELOT_CREDENTIALS, OCELOT_URL

OCELOT_SEND_URL = OCELOT_URL + SEND_PATH
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# status, headers, JSON body (a str is sent as it is; None: Ocelot's success body for the request)
Reply = tuple[int, Mapping[str, str], Any]
ACCEPT: Reply = (200, {}, None)


@dataclass(frozen=True)
class Hang:
    """LoopbackOcelot: read the request, then answer nothing for `seconds` (a read timeout)."""

    seconds: float


DROP = "drop"  # LoopbackOcelot: read the request, then close the connection without an answer


# ---- request bodies --------------------------------------------------------------------------------


def phone(index: int) -> str:
    return f"+1555{index:07d}"


def outgoing(index: int, **overrides: Any) -> dict[str, Any]:
    return {"to": phone(index), "text": f"Hello student {index}", "ref": f"ref-{index}", **overrides}


def batch(request_id: str, count: int = 3, **overrides: Any) -> dict[str, Any]:
    """A valid body of POST /batches (and of a queue message) with `count` distinct messages."""
    return {
        "requestId": request_id,
        "from": "+15550000000",
        "operatorId": "operator-1",
        "messages": [outgoing(i) for i in range(count)],
        **overrides,
    }


def basic_auth(chatbot_id: str, api_key: str) -> str:
    return "Basic " + base64.b64encode(f"{chatbot_id}:{api_key}".encode()).decode()


DEFAULT_AUTH = basic_auth(OCELOT_CREDENTIALS["chatbotId"], OCELOT_CREDENTIALS["apiKey"])


def accepted(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Ocelot's success body for a send payload: fresh ids, in request order (the contract)."""
    return {
        "batchId": f"b-{uuid.uuid4()}",
        "messages": [
            {"id": f"m-{uuid.uuid4()}", "to": m["to"], "externalId": m.get("externalId")}
            for m in payload["messages"]
        ],
    }


# ---- Ocelot on responses ---------------------------------------------------------------------------


@dataclass
class Sent:
    payload: dict[str, Any]
    authorization: str | None
    status: int | None = None  # None: the call raised
    body: Any = None


Step = Reply | BaseException | Callable[[Sent], Reply]


def accept(call: Sent) -> Reply:
    return 200, {}, accepted(call.payload)


@dataclass
class FakeOcelot:
    """Answers from `script` in order (a Reply, an exception to raise, or a callable of the call);
    once the script is used up, every call is answered by `default` (accepted, see `accepted`).
    Chunks go out concurrently, so a request's own replies can be scripted by the `ref` of its first
    message (`then_for`): those come first."""

    mock: responses.RequestsMock
    script: list[Step] = field(default_factory=list)
    default: Callable[[Sent], Reply] = accept
    sent: list[Sent] = field(default_factory=list)
    url: str = OCELOT_SEND_URL
    by_first_ref: dict[str, list[Step]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.mock.add_callback(responses.POST, self.url, callback=self._answer)

    def then(self, *replies: Step) -> FakeOcelot:
        self.script.extend(replies)
        return self

    def then_for(self, ref: str, *replies: Step) -> FakeOcelot:
        self.by_first_ref.setdefault(ref, []).extend(replies)
        return self

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [s.payload for s in self.sent]

    def _answer(self, request: requests.PreparedRequest) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        payload = json.loads(body)
        call = Sent(payload, request.headers.get("Authorization"))
        with self._lock:
            self.sent.append(call)
            own = self.by_first_ref.get(str(payload["messages"][0].get("externalId")))
            step = own.pop(0) if own else self.script.pop(0) if self.script else self.default
        if isinstance(step, BaseException):
            return step
        status, headers, reply = step if isinstance(step, tuple) else step(call)
        call.status, call.body = status, reply
        return status, dict(headers), reply if isinstance(reply, str) else json.dumps(reply)


class InFlight:
    """A FakeOcelot reply: accepted after `seconds` (once `barrier` lets it), counting the requests
    held at once."""

    def __init__(self, seconds: float, barrier: threading.Barrier | None = None) -> None:
        self.seconds, self.barrier = seconds, barrier
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, call: Sent) -> Reply:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            time.sleep(self.seconds)
            return 200, {}, accepted(call.payload)
        finally:
            with self._lock:
                self.now -= 1


@contextmanager
def ocelot_mock() -> Iterator[responses.RequestsMock]:
    """`responses` active: any URL neither registered nor on loopback raises ConnectionError."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1:")
        yield mock


def busy(status: int = 503, retry_after: str = "1") -> Reply:
    """Ocelot certainly not taking the request: 429 or 503 with a Retry-After."""
    return status, {"Retry-After": retry_after}, {"statusCode": status, "message": "busy", "error": "busy"}


def nestjs(status: int, message: str | list[str], error: str) -> Reply:
    return (
        status,
        {"Content-Type": "application/json"},
        {"statusCode": status, "message": message, "error": error},
    )


# ---- Ocelot on a real loopback socket --------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.monotonic()
    payload: dict[str, Any]
    authorization: str | None = None


class _Server(ThreadingHTTPServer):
    block_on_close = False  # do not wait for a handler still "hanging" when the test is done


class LoopbackOcelot:
    """A real HTTP server on 127.0.0.1 answering POSTs from `script` in order, then accepting."""

    def __init__(self, *script: Reply | Hang | str) -> None:
        self.script: list[Reply | Hang | str] = list(script)
        self.received: list[Received] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                owner.received.append(Received(time.monotonic(), payload, self.headers.get("Authorization")))
                step = owner.script.pop(0) if owner.script else ACCEPT
                if isinstance(step, Hang):
                    time.sleep(step.seconds)
                    return
                if step == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                assert isinstance(step, tuple)
                status, headers, body = step
                body = accepted(payload) if body is None else body
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackOcelot:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def guard_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every TCP connection urllib3 opens; one to anything but loopback fails the test."""
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        if address[0] not in LOOPBACK_HOSTS:
            pytest.fail(f"a test tried to connect to {address[0]}:{address[1]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return attempts


# ---- DynamoDB ---------------------------------------------------------------------------------------


class DynamoCalls:
    """Every API call a DynamoDB client makes, as (operation, table) pairs."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        client.meta.events.register("provide-client-params.dynamodb", self._record)

    def _record(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
        self.calls.extend((model.name, table) for table in tables)

    def count(self, operation: str, table: str) -> int:
        return sum(1 for call in self.calls if call == (operation, table))

    def on(self, table: str) -> list[str]:
        return [operation for operation, name in self.calls if name == table]


_deserializer = TypeDeserializer()


def plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def get_item(dynamodb: Any, table: str, pk: str, sk: str) -> dict[str, Any] | None:
    item = dynamodb.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}).get("Item")
    return plain(item) if item else None


def stored_body(item: Mapping[str, Any]) -> str:
    """The body of a stored rejection, decompressed when the store compressed it."""
    body = item["body"]
    return gzip.decompress(bytes(body)).decode() if item["bodyEncoding"] == "gzip" else str(body)


def scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        items.extend(plain(i) for i in page["Items"])
    return items


def short_api_budget(monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot) -> None:
    """Chunks of one message sent two at once, Ocelot taking 1.5 s each, attempts of at most 2.4 s
    within an API budget of 3.5 s: the first two start (up to 1.1 s of set-up however loaded the
    machine), the next two never can (1.5 s in, less than an attempt is left)."""
    for name, value in {
        "API_BUDGET_SECONDS": "3.5",
        "CONNECT_TIMEOUT_SECONDS": "0.4",
        "READ_TIMEOUT_SECONDS": "2.0",
        "OCELOT_MAX_MESSAGES": "1",
        "SEND_CONCURRENCY": "2",
    }.items():
        monkeypatch.setenv(name, value)
    ocelot.default = InFlight(1.5)
