"""What goes wrong during a chaos run, and what is sent: both derived from the run's seed."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Messages per Ocelot request in the chaos stack: many chunks, so send-side faults hit many of them.
CHUNK_SIZE = 10
# The Sender's read timeout in the chaos stack (locally 2 s): an accepted-then-timed-out send costs
# this much of the Sender's time, and the sandbox answers such a send later than this.
READ_TIMEOUT_SECONDS = 1.0

# botocore's retry waits in the stack, compressed (a throttled write waits rand(0, 1) * 2^n s): the
# webhook and the applier run one invocation at a time locally, so real waits would make the run last
# many minutes.
AWS_BACKOFF_SCALE = 0.01
# Bulk arrays of this many events (a backlog re-sent at once: ~1.5 MB of JSON), and the webhook's
# body limit in the chaos stack to take them: the deployed default (1 MB) answers them 413.
BULK_SIZE = 5000
WEBHOOK_MAX_BODY_BYTES = 2_000_000

# The Ocelot sandbox (tools/local/sandbox.py): send faults, then callback chaos. Delays are short so
# that a CI-sized run stays within a minute or two.
SANDBOX_CHAOS: Mapping[str, Any] = {
    # Send endpoint: 503 and 429 (with Retry-After) per request; slow but in time; accepted and
    # answered only after the Sender gave up (the outcome it must record as unknown, never re-send).
    "rate_503": 0.06,
    "rate_429": 0.04,
    "retry_after_seconds": 1,
    "slow_rate": 0.05,
    "slow_seconds": 0.3,
    "accept_timeout_rate": 0.03,
    "accept_timeout_seconds": READ_TIMEOUT_SECONDS + 0.6,
    # Callbacks: >= 20% of events delivered twice, >= 30% of messages newest-first, arrays, answers
    # treated as lost (so re-delivered), retries with backoff until the webhook takes them.
    "step_delay_min": 0.02,
    "step_delay_max": 0.15,
    "duplicate_rate": 0.25,
    "out_of_order_rate": 0.4,
    "group_rate": 0.7,
    "max_group": 8,
    "group_window_seconds": 0.05,
    "lost_response_rate": 0.06,
    # What the applier must take in its stride: an item that is not an event in 10% of arrays (recorded
    # as a problem, its neighbours applied), 2% of events dated ten years ahead (ordered as received),
    # every event also in a backlog re-sent in arrays of BULK_SIZE (gzip-encoded), 5% of events
    # delivered in such an array only.
    "malformed_rate": 0.1,
    "future_rate": 0.02,
    "bulk_size": BULK_SIZE,
    "bulk_only_rate": 0.05,
    "bulk_wait_seconds": 10.0,
    "gzip_min_bytes": 100_000,
    "callback_max_attempts": 12,
    "callback_backoff_seconds": 0.1,
    "callback_timeout_seconds": 5.0,
}

# The local API front in front of the webhook: a share of deliveries stored, then answered 503.
WEBHOOK_FAULTS: Mapping[str, Any] = {
    "fail_rate": 0.03,
    "status": 503,
    "mode": "after",
    "first_attempt_only": True,
}

# DynamoDB under the callbacks (tools/local/aws.py StorageFaults): a share of the PutItem/UpdateItem of
# raw deliveries (the webhook's), events and states (the applier's) throttled or failing (some 500s
# after the write was applied), plus outages during the run.
STORAGE_FAULTS: Mapping[str, Any] = {
    "rate": 0.02,
    "errors": ["ProvisionedThroughputExceededException", "InternalServerError"],
    "applied_rate": 0.3,
    "operations": ["PutItem", "UpdateItem"],
    "scope": "callbacks",
}
OUTAGE_SECONDS = 1.0
OUTAGE_EVERY_SECONDS = 20.0
FIRST_OUTAGE_AFTER_SECONDS = 4.0

# Requests whose first recipient Ocelot refuses as many times as the Sender tries in one invocation
# (MAX_SEND_ATTEMPTS locally): the API answers 503 and the client sends the same request again; a
# queue message is reported failed and comes back. One in FORCED_EVERY requests, alternating 503/429.
FORCED_EVERY = 25
SENDER_ATTEMPTS = 3  # tools/local/stack.py LOCAL_TUNING MAX_SEND_ATTEMPTS

# The sandbox's script by the recipient's last four digits (anything else: delivered).
SCRIPTED_SUFFIXES = (("0001", 0.08), ("0002", 0.08), ("0003", 0.06))
REQUEST_SIZES = (1, 50)  # messages per request of ours, uniform
API_SHARE = 0.5  # the rest goes through the send queue


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    to: str
    text: str
    ref: str
    request_id: str
    index: int  # within its request

    @property
    def chunk_index(self) -> int:
        return self.index // CHUNK_SIZE


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    request_id: str
    route: str  # "api" | "sqs"
    messages: tuple[PlannedMessage, ...]

    @property
    def chunks(self) -> int:
        return -(-len(self.messages) // CHUNK_SIZE)

    def body(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "messages": [{"to": m.to, "text": m.text, "ref": m.ref} for m in self.messages],
        }


@dataclass(frozen=True, slots=True)
class Plan:
    seed: int
    run_id: str
    requests: tuple[PlannedRequest, ...]
    by_recipient: Mapping[str, PlannedMessage] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return sum(len(r.messages) for r in self.requests)

    def route(self, name: str) -> list[PlannedRequest]:
        return [r for r in self.requests if r.route == name]

    def forced_failures(self) -> dict[str, dict[str, Any]]:
        """The sandbox's fail_recipients: recipient -> {status, times}."""
        rules: dict[str, dict[str, Any]] = {}
        for number, request in enumerate(self.requests):
            if number % FORCED_EVERY == FORCED_EVERY // 2:
                status = 429 if (number // FORCED_EVERY) % 2 else 503
                rules[request.messages[0].to] = {"status": status, "times": SENDER_ATTEMPTS}
        return rules


def _suffix(rng: random.Random) -> str:
    draw = rng.random()
    for suffix, share in SCRIPTED_SUFFIXES:
        if draw < share:
            return suffix
        draw -= share
    return f"{rng.randrange(10, 10_000):04d}"


def plan(messages: int, seed: int, run_id: str) -> Plan:
    """`messages` messages in requests of 1..50, half by API and half by SQS; unique recipients whose
    last four digits pick the sandbox's outcome."""
    if not 1 <= messages <= 999_999:
        raise ValueError("messages must be between 1 and 999999")
    rng = random.Random(f"chaos/{seed}")
    requests: list[PlannedRequest] = []
    made = 0
    while made < messages:
        size = min(rng.randint(*REQUEST_SIZES), messages - made)
        request_id = f"chaos-{run_id}-{len(requests):05d}"
        batch = tuple(
            PlannedMessage(
                # Unique per message (the first digits), scripted by the last four.
                to=f"+1556{made + i:06d}{_suffix(rng)}",
                text=f"Chaos run {run_id}: message {made + i}.",
                ref=f"m{made + i}",
                request_id=request_id,
                index=i,
            )
            for i in range(size)
        )
        route = "api" if rng.random() < API_SHARE else "sqs"
        requests.append(PlannedRequest(request_id, route, batch))
        made += size
    by_recipient = {m.to: m for r in requests for m in r.messages}
    return Plan(seed=seed, run_id=run_id, requests=tuple(requests), by_recipient=by_recipient)


def stack_args(seed: int) -> list[str]:
    """The local stack for a chaos run: small chunks, a short read timeout, fast SQS retries, bulk
    arrays taken."""
    return [
        "--seed",
        str(seed),
        "--visibility-timeout",
        "1",
        "--param",
        f"OcelotMaxMessages={CHUNK_SIZE}",
        "--env",
        f"READ_TIMEOUT_SECONDS={READ_TIMEOUT_SECONDS:g}",
        "--env",
        f"WEBHOOK_MAX_BODY_BYTES={WEBHOOK_MAX_BODY_BYTES}",
        "--aws-backoff-scale",
        f"{AWS_BACKOFF_SCALE:g}",
    ]


def profile_json() -> dict[str, Any]:
    return {
        "chunk_size": CHUNK_SIZE,
        "sender_read_timeout_seconds": READ_TIMEOUT_SECONDS,
        "webhook_max_body_bytes": WEBHOOK_MAX_BODY_BYTES,
        "aws_backoff_scale": AWS_BACKOFF_SCALE,
        "sandbox": dict(SANDBOX_CHAOS),
        "webhook_faults": dict(WEBHOOK_FAULTS),
        "storage_faults": dict(STORAGE_FAULTS),
        "storage_outages": {
            "seconds": OUTAGE_SECONDS,
            "every_seconds": OUTAGE_EVERY_SECONDS,
            "first_after_seconds": FIRST_OUTAGE_AFTER_SECONDS,
        },
        "request_sizes": list(REQUEST_SIZES),
        "api_share": API_SHARE,
        "scripted_suffixes": dict(SCRIPTED_SUFFIXES),
    }
