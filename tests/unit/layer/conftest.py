"""Fixtures for the services' tests: the services wired as in the Lambda (ocelot_sms.runtime), over
the in-memory store and idempotency records, with fixed credentials instead of Secrets Manager.
Ocelot itself is `responses` (FakeOcelot); nothing leaves the process."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from ocelot_sms import runtime
from ocelot_sms.credentials import OcelotCredentials, WebhookCredentials
from ocelot_sms.sender import SenderService
from ocelot_sms.settings import get_settings
from tests.unit.fakes import MemoryIdempotency, MemoryStore
from tests.unit.support.aws import OCELOT_CREDENTIALS, WEBHOOK_CREDENTIALS
from tests.unit.support.ocelot import FakeOcelot, guard_network, ocelot_mock


@dataclass
class MemoryQueue:
    """The send queue: the bodies put on it, or `refuse` raised instead."""

    bodies: list[str] = field(default_factory=list)
    refuse: Exception | None = None

    def put(self, body: str) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.bodies.append(body)


@dataclass
class MemorySchedules:
    """EventBridge Scheduler's one-time schedules by name: (when, the message it puts on the queue)."""

    made: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    refuse: Exception | None = None

    def create(self, name: str, at: datetime, body: str) -> bool:
        if self.refuse is not None:
            raise self.refuse
        if name in self.made:
            return False
        self.made[name] = (at, body)
        return True

    def delete(self, name: str) -> bool:
        return self.made.pop(name, None) is not None


@dataclass
class Wired:
    store: MemoryStore = field(default_factory=MemoryStore)
    idempotency: MemoryIdempotency = field(default_factory=MemoryIdempotency)
    queue: MemoryQueue = field(default_factory=MemoryQueue)
    schedules: MemorySchedules = field(default_factory=MemorySchedules)
    # What the Ocelot secret holds now: a test may change it, as an operator rotating the key would.
    ocelot_secret: dict[str, str] = field(default_factory=lambda: dict(OCELOT_CREDENTIALS))
    # How many times the secret was read (a test may make reading it fail by setting `secret_error`).
    secret_reads: int = 0
    secret_error: BaseException | None = None


@pytest.fixture
def wired(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Wired]:
    wiring = Wired()
    runtime.reset()

    def sender_service() -> SenderService:
        return SenderService(
            get_settings(),
            wiring.store,
            runtime.ocelot_client(),
            wiring.idempotency,
            wiring.queue,
            wiring.schedules,
        )

    def ocelot_credentials(
        cls: type[OcelotCredentials],
        secret_id: str,
        max_age: int,
        force_fetch: bool = False,
        provider: Any = None,
    ) -> OcelotCredentials:
        wiring.secret_reads += 1
        if wiring.secret_error is not None:
            raise wiring.secret_error
        return cls(wiring.ocelot_secret["chatbotId"], wiring.ocelot_secret["apiKey"])

    def webhook_credentials(cls: type[WebhookCredentials], *_: Any) -> WebhookCredentials:
        return cls(
            WEBHOOK_CREDENTIALS["username"], WEBHOOK_CREDENTIALS["password"], WEBHOOK_CREDENTIALS["token"]
        )

    monkeypatch.setattr(runtime, "store", functools.cache(lambda: wiring.store))
    monkeypatch.setattr(runtime, "sender_service", functools.cache(sender_service))
    monkeypatch.setattr(OcelotCredentials, "load", classmethod(ocelot_credentials))
    monkeypatch.setattr(WebhookCredentials, "load", classmethod(webhook_credentials))
    yield wiring
    runtime.reset()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection the test opens; one to anything but loopback fails it."""
    return guard_network(monkeypatch)


@pytest.fixture
def ocelot(wired: Wired, connections: list[tuple[str, int]]) -> Iterator[FakeOcelot]:
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)
