"""From the webhook's 200 to the status visible: a local stack (tools/local) of its own, one-event
callbacks posted to its webhook one after another, each message's state read from the table until it
holds the callback's status. What the figure is made of: the stream poller's wait for its next poll
(Lambda polls a shard four times a second; the local poller does too), reading the stream, and the
applier's two writes.

Each callback waits a random part of a poll interval first: callbacks arrive independently of the
poller's rhythm, as Ocelot's do (one right after the previous status showed would always meet the
poller at the start of its wait)."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from tools.local.client import StackClient, WaitTimeout
from tools.local.event_sources import STREAM_POLL_SECONDS
from tools.local.stack import StackProcess

POLL_SECONDS = 0.005
GIVE_UP_SECONDS = 30.0


def _callback(message_id: str) -> dict[str, Any]:
    return {
        "name": "OutgoingSms.statusChanged",
        "eventId": str(uuid.uuid4()),
        "batchId": "bench-latency",
        "messageId": message_id,
        "to": "+15551230010",
        "from": "+15550000000",
        "status": "delivered",
        "dateTime": datetime.now(UTC).isoformat(),
    }


def _one(client: StackClient, http: requests.Session, pause: float) -> tuple[float, float]:
    """(seconds to the webhook's answer, seconds from it to the state in the table)."""
    time.sleep(pause)
    info = client.info
    assert info.webhook_url is not None
    message_id = str(uuid.uuid4())
    credentials = (info.webhook_credentials["username"], info.webhook_credentials["password"])
    started = time.perf_counter()
    answer = http.post(info.webhook_url, json=_callback(message_id), auth=credentials, timeout=30)
    acknowledged = time.perf_counter()
    if answer.status_code != 200:
        raise RuntimeError(f"the webhook answered {answer.status_code}: {answer.text[:200]}")
    while message_id not in client.states([message_id]):
        if time.perf_counter() - acknowledged > GIVE_UP_SECONDS:
            raise WaitTimeout(f"message {message_id} not applied within {GIVE_UP_SECONDS:.0f}s")
        time.sleep(POLL_SECONDS)
    return acknowledged - started, time.perf_counter() - acknowledged


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ocelot-bench-latency-") as state_dir:
        stack = StackProcess(Path(state_dir) / "stack")
        info = stack.start(timeout=90)
        try:
            with StackClient(info) as client, requests.Session() as http:
                _one(client, http, 0.0)  # warm: first invocation of each function
                phases = random.Random(7)
                timed = [_one(client, http, phases.uniform(0, STREAM_POLL_SECONDS)) for _ in range(samples)]
        finally:
            stack.stop()
    visible_ms = [v * 1e3 for _, v in timed]
    return {
        "samples": samples,
        "webhook_answer_ms_p50": statistics.median(a * 1e3 for a, _ in timed),
        "visible_ms_p50": _percentile(visible_ms, 0.5),
        "visible_ms_p90": _percentile(visible_ms, 0.9),
        "visible_ms_p99": _percentile(visible_ms, 0.99),
        "visible_ms_max": max(visible_ms),
        "stream_poll_seconds": STREAM_POLL_SECONDS,
    }
