"""The Ocelot sandbox on its own: the assumed contract, the script, chaos and bounded callback retries.

Each test serves a sandbox of its own on a free loopback port, with a small recording webhook.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from ocelot_sms.contract import SEND_PATH, SendResponse, read_callback
from ocelot_sms.delivery import DeliveryStatus
from tools.local.sandbox import LIFECYCLES, Sandbox, SandboxConfig
from tools.local.serving import ServerThread

CHATBOT, KEY = "chatbot-test", "key-test"
HOOK_USER, HOOK_PASSWORD = "ocelot", "hook-password"


@dataclass
class Webhook:
    """Records every callback; answers `status` (or the next of `script`)."""

    status: int = 200
    script: list[int] = field(default_factory=list)
    received: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.received.append((time.monotonic(), dict(request.headers), request.get_data()))
            status = self.script.pop(0) if self.script else self.status
        return Response("{}", status=status, mimetype="application/json")(environ, start_response)


@dataclass
class Served:
    sandbox: Sandbox
    url: str
    webhook: Webhook

    def send(self, recipients: list[str], auth: tuple[str, str] = (CHATBOT, KEY)) -> requests.Response:
        body = {
            "phoneNumber": "+15550000000",
            "operatorId": "operator-1",
            "messages": [
                {"to": to, "message": "hello", "externalId": f"ref-{i}"} for i, to in enumerate(recipients)
            ],
        }
        return requests.post(f"{self.url}{SEND_PATH}", json=body, auth=auth, timeout=10)


@pytest.fixture
def served() -> Iterator[Served]:
    webhook = Webhook()
    hook_server = ServerThread(webhook, "test-webhook").start()
    sandbox = Sandbox(
        SandboxConfig(
            seed=5,
            chatbot_id=CHATBOT,
            api_key=KEY,
            webhook_url=f"{hook_server.url}/hook",
            webhook_username=HOOK_USER,
            webhook_password=HOOK_PASSWORD,
            step_delay_min=0.01,
            step_delay_max=0.05,
            callback_backoff_seconds=0.05,
        )
    ).start()
    server = ServerThread(sandbox, "test-sandbox").start()
    try:
        yield Served(sandbox, server.url, webhook)
    finally:
        server.stop()
        sandbox.stop()
        hook_server.stop()


def test_bad_credentials_get_ocelots_401_body(served: Served) -> None:
    response = served.send(["+15551110010"], auth=(CHATBOT, "wrong"))
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "message": "Invalid id or api key", "error": "Unauthorized"}
    no_auth = requests.post(f"{served.url}{SEND_PATH}", json={}, timeout=5)
    assert no_auth.status_code == 401
    assert served.sandbox.record()["accepted"] == []


def test_validation_errors_are_nestjs_style(served: Served) -> None:
    response = requests.post(
        f"{served.url}{SEND_PATH}",
        json={"phoneNumber": "555", "messages": []},
        auth=(CHATBOT, KEY),
        timeout=5,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert isinstance(body["message"], list)
    assert all(isinstance(m, str) for m in body["message"])
    assert any(m.startswith("phoneNumber") for m in body["message"])
    assert any(m.startswith("operatorId") for m in body["message"])


def test_accepts_with_uuid_ids_and_follows_the_script(served: Served) -> None:
    recipients = ["+15551110001", "+15551110002", "+15551110003", "+15551110010"]
    response = served.send(recipients)
    assert response.status_code == 201
    accepted = SendResponse.model_validate(response.json())
    uuid.UUID(accepted.batch_id)
    assert [m.to for m in accepted.messages] == recipients
    assert [m.external_id for m in accepted.messages] == [f"ref-{i}" for i in range(4)]
    assert served.sandbox.wait_idle(10)

    events = [e for _, _, body in served.webhook.received for e in read_callback(body).events]
    by_message: dict[str, list[str]] = {}
    for event in sorted(events, key=lambda e: e.instant or datetime.min):
        assert event.batch_id == accepted.batch_id
        by_message.setdefault(event.message_id or "", []).append(event.status or "")
    expected = {
        "+15551110001": DeliveryStatus.UNDELIVERED,
        "+15551110002": DeliveryStatus.FAILED,
        "+15551110003": DeliveryStatus.OPTED_OUT,
        "+15551110010": DeliveryStatus.DELIVERED,
    }
    for message in accepted.messages:
        uuid.UUID(message.message_id)
        lifecycle = [step.status.value for step in LIFECYCLES[expected[message.to]]]
        assert by_message[message.message_id] == lifecycle
    assert served.sandbox.record()["outcomes"] == {
        m.message_id: expected[m.to].value for m in accepted.messages
    }
    # Ocelot presents Basic credentials to the webhook.
    expected_auth = "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    assert {headers.get("Authorization") for _, headers, _ in served.webhook.received} == {expected_auth}


def test_same_seed_same_ids_and_script(served: Served) -> None:
    first = Sandbox(SandboxConfig(seed=99, chatbot_id=CHATBOT, api_key=KEY))
    second = Sandbox(SandboxConfig(seed=99, chatbot_id=CHATBOT, api_key=KEY))
    servers = [ServerThread(s, "seeded").start() for s in (first, second)]
    try:
        answers = [
            Served(sandbox, server.url, served.webhook).send(["+15551110010", "+15551110001"]).json()
            for sandbox, server in zip((first, second), servers, strict=True)
        ]
        assert answers[0] == answers[1]
        plans = [
            {m: (v["scripted"], v["event_ids"], v["out_of_order"]) for m, v in s.record()["messages"].items()}
            for s in (first, second)
        ]
        assert plans[0] == plans[1]
    finally:
        for server in servers:
            server.stop()
        first.stop()
        second.stop()


def test_429_carries_retry_after_and_503_is_unavailable(served: Served) -> None:
    served.sandbox.configure(rate_429=1.0, retry_after_seconds=3)
    throttled = served.send(["+15551110010"])
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    served.sandbox.configure(rate_429=0.0, rate_503=1.0)
    unavailable = served.send(["+15551110010"])
    assert unavailable.status_code == 503
    assert unavailable.json()["statusCode"] == 503
    assert served.sandbox.record()["accepted"] == []


def test_forced_failures_by_recipient_count_down(served: Served) -> None:
    served.sandbox.configure(fail_recipients={"+15551110010": {"status": 503, "times": 2}})
    statuses = [served.send(["+15551110010"]).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]


def test_accepted_then_timeout_accepts_but_answers_late(served: Served) -> None:
    served.sandbox.configure(accept_timeout_rate=1.0, accept_timeout_seconds=3.0)
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{served.url}{SEND_PATH}",
            json={
                "phoneNumber": "+15550000000",
                "operatorId": "op",
                "messages": [{"to": "+15551110010", "message": "x"}],
            },
            auth=(CHATBOT, KEY),
            timeout=(1, 0.5),
        )
    record = served.sandbox.record()
    assert len(record["accepted"]) == 1
    assert record["accepted"][0]["response_delay_seconds"] == 3.0
    # The callbacks go out all the same.
    assert served.sandbox.wait_idle(10)
    assert len(served.webhook.received) >= 3


def test_failed_callbacks_are_retried_with_the_same_event_and_bounded(served: Served) -> None:
    served.webhook.status = 500
    served.sandbox.configure(callback_max_attempts=3, group_rate=0.0, callback_backoff_seconds=0.15)
    assert served.send(["+15551110003"]).status_code == 201  # opted out: one event
    assert served.sandbox.wait_idle(10)

    attempts = served.sandbox.record()["callback_attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "gave_up"]
    assert all(a["status_code"] == 500 for a in attempts)
    bodies = [body for _, _, body in served.webhook.received]
    assert len(bodies) == 3
    assert len(set(bodies)) == 1
    times = [at for at, _, _ in served.webhook.received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[1] > gaps[0]  # backoff grows


def test_a_webhook_recovering_gets_every_event_once_delivered(served: Served) -> None:
    served.webhook.script = [503, 502]
    served.sandbox.configure(group_rate=0.0)
    assert served.send(["+15551110010"]).status_code == 201
    assert served.sandbox.wait_idle(10)
    record = served.sandbox.record()
    delivered = {
        e for a in record["callback_attempts"] if a["outcome"] == "delivered" for e in a["event_ids"]
    }
    assert delivered == set(record["events"])
    assert not [a for a in record["callback_attempts"] if a["outcome"] == "gave_up"]


def test_webhook_must_be_on_loopback(served: Served) -> None:
    response = requests.post(
        f"{served.url}/_sandbox/config", json={"webhook_url": "http://192.0.2.10/hook"}, timeout=5
    )
    assert response.status_code == 400
    assert "loopback" in str(response.json()["message"])
    assert served.sandbox.config.webhook_url is not None
    assert served.sandbox.config.webhook_url.startswith("http://127.0.0.1:")
