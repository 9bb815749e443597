"""Ocelot sandbox: a local stand-in for Ocelot's SMS API and its webhook callbacks.

It speaks the contract this project ASSUMES, through the same module the sender uses
(`ocelot_sms.contract`), so the two cannot drift. What it does:

- POST {SEND_PATH}: Basic auth (Ocelot's 401 body), NestJS-style 400 validation errors, a batch id and
  one id per message (uuid), answered 201.
- Then, asynchronously, status callbacks to the configured webhook (loopback only) with Basic
  credentials, following a script by recipient: a number ending 0001 is undelivered, 0002 failed,
  0003 opted out, anything else queued -> sent -> delivered. Due events may go out together as a
  JSON array.
- Chaos, all off by default: 429 with Retry-After, 503, slow answers, accepted-then-timeout,
  per-recipient forced failures, duplicate and out-of-order callbacks, lost webhook responses,
  retries of failed callbacks (same eventId, original dateTime, bounded attempts, backoff), items that
  are not events mixed into arrays, dateTimes far in the future, bulk arrays of thousands of events
  (a backlog re-sent at once), gzip-encoded bodies.
- Replies, when configured (`replies`: last four digits -> text): after a message to such a number
  has its last status, the recipient's text comes back as an inbound event (IncomingSms.received),
  e.g. {"0004": "STOP"}.
- It records everything it received and sent (GET /_sandbox/record) for assertions.

Deterministic with a seed: ids, scripted outcomes and every per-message decision (duplicates, order,
timing) derive from (seed, counter) or (seed, message id); per-request faults follow the order in
which requests arrive. Only how due events are grouped into one delivery depends on timing.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import urllib3
from pydantic import ValidationError
from werkzeug.wrappers import Request, Response

from ocelot_sms.contract import (
    SEND_PATH,
    AcceptedMessage,
    SendRequest,
    SendResponse,
    error_body,
    inbound_event,
    status_event,
    validation_problems,
)
from ocelot_sms.delivery import DeliveryStatus
from tools.local.netguard import is_loopback_host

log = logging.getLogger("local.sandbox")

ADMIN_PREFIX = "/_sandbox"
# How far ahead a future-dated event is (future_rate): a clock gone wrong, not a plausible delay.
FUTURE_SHIFT = timedelta(days=3653)
RECORD_PARTS = (
    "requests",
    "accepted",
    "messages",
    "events",
    "replies",
    "callback_attempts",
    "outcomes",
    "pending",
)

# ---------------------------------------------------------------------------------------------
# The script: final outcome by the recipient's last four digits, and the events leading to it
# ---------------------------------------------------------------------------------------------

SCRIPTED_BY_SUFFIX: dict[str, DeliveryStatus] = {
    "0001": DeliveryStatus.UNDELIVERED,
    "0002": DeliveryStatus.FAILED,
    "0003": DeliveryStatus.OPTED_OUT,
}


@dataclass(frozen=True, slots=True)
class Step:
    status: DeliveryStatus
    error_code: str | None = None
    error_message: str | None = None


_QUEUED, _SENT = Step(DeliveryStatus.QUEUED), Step(DeliveryStatus.SENT)
LIFECYCLES: dict[DeliveryStatus, tuple[Step, ...]] = {
    DeliveryStatus.DELIVERED: (_QUEUED, _SENT, Step(DeliveryStatus.DELIVERED)),
    DeliveryStatus.UNDELIVERED: (
        _QUEUED,
        _SENT,
        Step(DeliveryStatus.UNDELIVERED, "30003", "Unreachable destination handset"),
    ),
    DeliveryStatus.FAILED: (_QUEUED, Step(DeliveryStatus.FAILED, "30008", "Unknown error")),
    # Ocelot checks opt-outs before sending: nothing is queued.
    DeliveryStatus.OPTED_OUT: (Step(DeliveryStatus.OPTED_OUT, "21610", "Recipient has opted out"),),
}


def scripted_outcome(to: str) -> DeliveryStatus:
    return SCRIPTED_BY_SUFFIX.get(to[-4:], DeliveryStatus.DELIVERED)


# ---------------------------------------------------------------------------------------------
# Configuration (constructor, or POST /_sandbox/config with any subset of the fields)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailRule:
    """Answer `status` to any send request that includes the recipient, `times` times (-1: always)."""

    status: int
    times: int = -1
    message: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    seed: int = 0
    # What Ocelot expects in Basic auth: base64(chatbotId:apiKey).
    chatbot_id: str = "local-chatbot"
    api_key: str = "local-api-key"  # a local stand-in, not a secret
    # Where callbacks go, and the Basic credentials presented there.
    webhook_url: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None
    # Send endpoint chaos: probabilities per request.
    rate_503: float = 0.0
    rate_429: float = 0.0
    retry_after_seconds: int = 1
    slow_rate: float = 0.0
    slow_seconds: float = 0.5
    # Accepted (ids recorded, callbacks scheduled) but the answer comes after the client gave up.
    accept_timeout_rate: float = 0.0
    accept_timeout_seconds: float = 6.0
    # Recipient (E.164) -> forced failure.
    fail_recipients: Mapping[str, FailRule] = field(default_factory=dict)
    # Callbacks: delay before each lifecycle step, and chaos per message / per delivery.
    step_delay_min: float = 0.1
    step_delay_max: float = 0.4
    duplicate_rate: float = 0.0  # per event: delivered a second time, later
    out_of_order_rate: float = 0.0  # per message: its events are delivered newest first
    group_rate: float = 0.5  # due events sent together as one JSON array
    max_group: int = 5
    group_window_seconds: float = 0.05
    lost_response_rate: float = 0.0  # first attempt of a delivery: treated as failed whatever the answer
    malformed_rate: float = 0.0  # per array: one item that is not an event (no eventId, or no object)
    future_rate: float = 0.0  # per event: its dateTime FUTURE_YEARS ahead (a clock gone wrong)
    # Bulk arrays: every event is also kept in a backlog, sent as one array of bulk_size events once
    # that many are there (the rest once nothing else was due or in flight for bulk_wait_seconds); a
    # bulk_only_rate share of events is sent in a bulk array only. 0: no backlog.
    bulk_size: int = 0
    bulk_only_rate: float = 0.0
    bulk_wait_seconds: float = 2.0
    gzip_min_bytes: int = 0  # a body at least this large is sent with Content-Encoding: gzip (0: never)
    callback_max_attempts: int = 5
    callback_backoff_seconds: float = 0.2  # doubled for each further attempt
    callback_timeout_seconds: float = 5.0
    # Last four digits -> what the recipient texts back once the message has its last status.
    replies: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ConfigError(ValueError):
    pass


def _fail_rules(value: Any) -> dict[str, FailRule]:
    if not isinstance(value, Mapping):
        raise ConfigError("fail_recipients: expected an object {recipient: {status, times?, message?}}")
    rules: dict[str, FailRule] = {}
    for recipient, rule in value.items():
        try:
            rules[str(recipient)] = rule if isinstance(rule, FailRule) else FailRule(**rule)
        except TypeError as error:
            raise ConfigError(f"fail_recipients.{recipient}: {error}") from error
    return rules


def _loopback_url(value: Any) -> str | None:
    if value is None:
        return None
    host = urlsplit(str(value)).hostname or ""
    if not str(value).startswith("http://") or not is_loopback_host(host):
        raise ConfigError(f"webhook_url must be http:// on loopback (127.0.0.1), got {value!r}")
    return str(value)


def _replies(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError("replies: expected an object {last four digits: text}")
    return {str(k): v for k, v in value.items()}


# The settings that are not a plain value: each checked and converted by its own function.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "replies": _replies,
    "fail_recipients": _fail_rules,
    "webhook_url": _loopback_url,
}


def _coerce(name: str, current: Any, value: Any) -> Any:
    """`value` as the type of the setting it changes, or a ConfigError saying what was expected."""
    convert = _CONVERTERS.get(name)
    if convert is not None:
        return convert(value)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(current, bool) or (current is None and isinstance(value, str | None)):
        return value
    if isinstance(current, float) and number:
        return float(value)
    if isinstance(current, int) and number and isinstance(value, int):
        return value
    if isinstance(current, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{name}: expected {type(current).__name__}, got {value!r}")


def updated_config(config: SandboxConfig, changes: Mapping[str, Any]) -> SandboxConfig:
    known = {f.name for f in fields(SandboxConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    values = {name: _coerce(name, getattr(config, name), value) for name, value in changes.items()}
    new = replace(config, **values)
    rates = ("rate_503", "rate_429", "slow_rate", "accept_timeout_rate", "duplicate_rate")
    for name in (*rates, "malformed_rate", "future_rate", "bulk_only_rate"):
        if not 0.0 <= getattr(new, name) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1")
    if new.callback_max_attempts < 1 or new.max_group < 1 or new.step_delay_min > new.step_delay_max:
        raise ConfigError(
            "callback_max_attempts and max_group must be >= 1, step_delay_min <= step_delay_max"
        )
    return new


# ---------------------------------------------------------------------------------------------
# Callback deliveries
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Delivery:
    delivery_id: str
    body: bytes  # kept as sent: a retry repeats the very same payload
    event_ids: list[str]
    message_ids: list[str | None]  # None for an event of no message (a reply)
    is_array: bool
    attempt: int = 1
    malformed: int = 0  # items that are not events
    bulk: bool = False
    gzip: bool = False  # body gzip-compressed, sent with Content-Encoding: gzip


@dataclass(order=True, slots=True)
class _Due:
    at: float  # time.monotonic()
    seq: int
    event: dict[str, Any] | None = field(compare=False, default=None)
    delivery: _Delivery | None = field(compare=False, default=None)


def _is_out_of_order(planned: list[tuple[dict[str, Any], list[float]]]) -> bool:
    first_sends = [offsets[0] for _, offsets in planned]
    return first_sends != sorted(first_sends)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Sandbox:
    """The WSGI app plus the callback dispatcher. `start()` the dispatcher, serve the app anywhere."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._initial = config or SandboxConfig()
        self._config = self._initial
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # Never reset: ids stay unique for the sandbox's lifetime. One counter per kind, so that delivery
        # ids (which depend on timing) never shift the batch, message and event ids (which must not).
        self._ids: dict[str, itertools.count[int]] = {}
        self._request_counter = itertools.count(1)
        self._seq = itertools.count()
        self._rng = random.Random(f"{self._config.seed}/requests")
        self._dispatch_rng = random.Random(f"{self._config.seed}/dispatch")
        self._due: list[_Due] = []
        self._inflight = 0
        # Bulk arrays: events waiting to go out together, those already taken; since when nothing
        # else has been due or in flight.
        self._backlog: list[dict[str, Any]] = []
        self._backlogged: set[str] = set()
        self._quiet_since = 0.0
        self._stopping = False
        self._dispatcher: threading.Thread | None = None
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-callback")
        self._http = urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)
        self._reset_record()

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="sandbox-dispatch", daemon=True)
        self._dispatcher.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, **changes: Any) -> SandboxConfig:
        with self._lock:
            new = updated_config(self._config, changes)
            if new.seed != self._config.seed:
                self._rng = random.Random(f"{new.seed}/requests")
                self._dispatch_rng = random.Random(f"{new.seed}/dispatch")
            self._config = new
            if "webhook_url" in changes:
                self._cond.notify_all()
            return new

    def reset(self, *, config: bool = True, record: bool = True) -> None:
        """Back to the constructor's configuration (keeping the webhook URL) and/or an empty record.

        Ids are never reused: the id counter is not reset, so messages stay distinct in the tables.
        """
        with self._lock:
            if config:
                self._config = replace(self._initial, webhook_url=self._config.webhook_url)
                self._initial = self._config
                self._rng = random.Random(f"{self._config.seed}/requests")
                self._dispatch_rng = random.Random(f"{self._config.seed}/dispatch")
            if record:
                self._reset_record()

    def pending(self) -> int:
        """Callback events and deliveries not yet sent or still in flight (retries and the bulk
        backlog included)."""
        with self._lock:
            return len(self._due) + self._inflight + len(self._backlog)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due or self._inflight or self._backlog:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    # ---- the record -------------------------------------------------------------------------

    def _reset_record(self) -> None:
        self._requests: list[dict[str, Any]] = []
        self._accepted: list[dict[str, Any]] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._events: dict[str, dict[str, Any]] = {}
        self._replies: list[dict[str, Any]] = []
        self._attempts: list[dict[str, Any]] = []

    def record(self, parts: Collection[str] = RECORD_PARTS) -> dict[str, Any]:
        """The record, or only some `parts` of it (the bench reads `requests` after each invocation)."""
        with self._lock:
            whole = {
                "requests": self._requests,
                "accepted": self._accepted,
                "messages": self._messages,
                "events": self._events,
                "replies": self._replies,
                "callback_attempts": self._attempts,
                "outcomes": {m: v["scripted"] for m, v in self._messages.items()}
                if "outcomes" in parts
                else {},
                "pending": len(self._due) + self._inflight + len(self._backlog),
            }
            # A deep copy through JSON: callers get plain data they may keep while the sandbox goes on.
            copied: dict[str, Any] = json.loads(json.dumps({k: v for k, v in whole.items() if k in parts}))
        return copied

    # ---- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._route(request)
        except Exception:
            log.exception("sandbox error")
            response = _json(500, error_body(500, "Internal server error", "Internal Server Error"))
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == SEND_PATH.rstrip("/"):
            if request.method == "POST":
                return self._send(request)
        elif path.startswith(ADMIN_PREFIX):
            return self._admin(request, path.removeprefix(ADMIN_PREFIX))
        return _json(404, error_body(404, f"Cannot {request.method} {path}", "Not Found"))

    def _admin(self, request: Request, path: str) -> Response:
        match request.method, path:
            case "GET", "/health":
                return _json(200, {"ok": True, "pending": self.pending()})
            case "GET", "/config":
                return _json(200, self._config.to_json())
            case "POST", "/config":
                try:
                    changes = json.loads(request.get_data() or b"{}")
                    if not isinstance(changes, dict):
                        raise ConfigError("expected a JSON object")
                    return _json(200, self.configure(**changes).to_json())
                except (ValueError, ConfigError) as error:
                    return _json(400, error_body(400, str(error), "Bad Request"))
            case "GET", "/record":
                parts = request.args.get("parts")
                return _json(200, self.record(parts.split(",") if parts else RECORD_PARTS))
            case "POST", "/reset":
                options = json.loads(request.get_data() or b"{}")
                self.reset(config=bool(options.get("config", True)), record=bool(options.get("record", True)))
                return _json(200, {"ok": True, "config": self._config.to_json()})
        return _json(404, error_body(404, f"Cannot {request.method} {ADMIN_PREFIX}{path}", "Not Found"))

    # ---- the send endpoint ------------------------------------------------------------------

    def _send(self, request: Request) -> Response:
        with self._lock:
            config = self._config
            number = next(self._request_counter)
            # Always four draws in the same order, so one request's faults never shift another's.
            draw_503, draw_429, draw_slow, draw_timeout = (self._rng.random() for _ in range(4))
        entry: dict[str, Any] = {"n": number, "at": _now_iso(), "fault": None, "recipients": []}
        send = self._refused(request, config, entry, draw_503, draw_429)
        if not isinstance(send, SendRequest):
            return self._answer(entry, *send)
        entry["recipients"] = [m.to for m in send.messages]
        rule = self._take_fail_rule(send)
        if rule is not None:
            entry["fault"] = f"fail_recipients:{rule.status}"
            retry_after = {"Retry-After": str(config.retry_after_seconds)} if rule.status == 429 else None
            reason = _reason(rule.status)
            return self._answer(
                entry, rule.status, error_body(rule.status, rule.message or reason, reason), retry_after
            )

        accepted = self._accept(send, config)
        entry["batch_id"] = accepted.batch_id
        delay = 0.0
        if draw_timeout < config.accept_timeout_rate:
            entry["fault"], delay = "accept_timeout", config.accept_timeout_seconds
        elif draw_slow < config.slow_rate:
            entry["fault"], delay = "slow", config.slow_seconds
        response = self._answer(entry, 201, accepted.to_wire())
        if delay:
            with self._lock:
                self._accepted[-1]["response_delay_seconds"] = delay
            # The batch is taken and its callbacks are on their way; only the answer is late.
            time.sleep(delay)
        return response

    def _refused(
        self, request: Request, config: SandboxConfig, entry: dict[str, Any], draw_503: float, draw_429: float
    ) -> SendRequest | tuple[int, dict[str, Any], dict[str, str] | None]:
        """The request as Ocelot validates it, or the refusal it gets, in Ocelot's order: unavailable,
        unauthenticated, throttled, not JSON, invalid."""
        if draw_503 < config.rate_503:
            entry["fault"] = "503"
            return 503, error_body(503, "Service Unavailable", "Service Unavailable"), None
        entry["auth"] = self._authenticate(request.headers.get("Authorization"), config)
        if entry["auth"] != "ok":
            return 401, error_body(401, "Invalid id or api key", "Unauthorized"), None
        if draw_429 < config.rate_429:
            entry["fault"] = "429"
            throttled = error_body(429, "ThrottlerException: Too Many Requests", "Too Many Requests")
            return 429, throttled, {"Retry-After": str(config.retry_after_seconds)}
        try:
            return SendRequest.model_validate(json.loads(request.get_data()))
        except ValidationError as error:
            entry["problems"] = validation_problems(error)
            return 400, error_body(400, validation_problems(error), "Bad Request"), None
        except ValueError:  # not JSON
            return 400, error_body(400, "Unexpected token in JSON body", "Bad Request"), None

    def _answer(
        self, entry: dict[str, Any], status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        entry["status"] = status
        with self._lock:
            self._requests.append(entry)
        return _json(status, body, headers)

    @staticmethod
    def _authenticate(header: str | None, config: SandboxConfig) -> str:
        if not header or header[:6].lower() != "basic ":
            return "missing"
        try:
            user, sep, key = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "invalid"
        same_user = hmac.compare_digest(user.encode(), config.chatbot_id.encode())
        same_key = hmac.compare_digest(key.encode(), config.api_key.encode())
        return "ok" if sep and same_user and same_key else "invalid"

    def _take_fail_rule(self, send: SendRequest) -> FailRule | None:
        with self._lock:
            rules = dict(self._config.fail_recipients)
            for message in send.messages:
                rule = rules.get(message.to)
                if rule is None or rule.times == 0:
                    continue
                if rule.times > 0:
                    rules[message.to] = replace(rule, times=rule.times - 1)
                    self._config = replace(self._config, fail_recipients=rules)
                return rule
        return None

    def _new_id(self, kind: str) -> str:
        with self._lock:
            number = next(self._ids.setdefault(kind, itertools.count(1)))
            seed = self._config.seed
        digest = hashlib.sha256(f"ocelot-sandbox/{seed}/{kind}/{number}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def _accept(self, send: SendRequest, config: SandboxConfig) -> SendResponse:
        batch_id = self._new_id("batch")
        accepted_at = datetime.now(UTC)
        start = time.monotonic()
        messages: list[AcceptedMessage] = []
        chunk_messages: list[dict[str, Any]] = []
        due: list[_Due] = []
        for message in send.messages:
            message_id = self._new_id("message")
            outcome = scripted_outcome(message.to)
            messages.append(
                AcceptedMessage(message_id=message_id, to=message.to, external_id=message.external_id)
            )
            events, future = self._plan_callbacks(
                config, accepted_at, batch_id, message_id, message.to, send.sender, outcome
            )
            chunk_messages.append(
                {
                    "id": message_id,
                    "to": message.to,
                    "externalId": message.external_id,
                    "scripted": outcome.value,
                }
            )
            with self._lock:
                self._messages[message_id] = {
                    "batch_id": batch_id,
                    "to": message.to,
                    "external_id": message.external_id,
                    "scripted": outcome.value,
                    "event_ids": [e["eventId"] for e, _ in events],
                    # What the chaos did to this message's callbacks (deterministic per seed and id).
                    "out_of_order": _is_out_of_order(events),
                    "duplicated_event_ids": [e["eventId"] for e, offsets in events if len(offsets) > 1],
                }
            for event, offsets in events:
                with self._lock:
                    self._events.setdefault(
                        event["eventId"],
                        {
                            "event_id": event["eventId"],
                            "message_id": message_id,
                            "batch_id": batch_id,
                            "status": event["status"],
                            "date_time": event["dateTime"],
                            "planned_occurrences": len(offsets),
                            "future": event["eventId"] in future,
                            "bulk_only": self._bulk_only(config, event["eventId"]),
                        },
                    )
                due.extend(_Due(start + offset, 0, event=event) for offset in offsets)
            due.extend(self._reply(config, message_id, message.to, send.sender, accepted_at, start, events))
        with self._cond:
            self._accepted.append(
                {
                    "batch_id": batch_id,
                    "received_at": accepted_at.isoformat(),
                    "phone_number": send.sender,
                    "operator_id": send.operator_id,
                    "messages": chunk_messages,
                }
            )
            for item in due:
                item.seq = next(self._seq)
                heapq.heappush(self._due, item)
            self._cond.notify_all()
        return SendResponse(batch_id=batch_id, messages=messages)

    def _plan_callbacks(
        self,
        config: SandboxConfig,
        accepted_at: datetime,
        batch_id: str,
        message_id: str,
        to: str,
        sender: str,
        outcome: DeliveryStatus,
    ) -> tuple[list[tuple[dict[str, Any], list[float]]], set[str]]:
        """Each lifecycle event with the offsets (seconds after acceptance) at which it is delivered,
        and the eventIds of those dated far in the future."""
        rng = random.Random(f"{config.seed}/{message_id}")
        elapsed = 0.0
        planned: list[tuple[dict[str, Any], list[float]]] = []
        for step in LIFECYCLES[outcome]:
            elapsed += rng.uniform(config.step_delay_min, config.step_delay_max)
            at = accepted_at + timedelta(seconds=elapsed)
            event = status_event(
                event_id=self._new_id("event"),
                batch_id=batch_id,
                message_id=message_id,
                to=to,
                sender=sender,
                status=step.status,
                # The moment the status changed: kept as it is on every re-delivery.
                at=at,
                error_code=step.error_code,
                error_message=step.error_message,
            )
            planned.append((event, [elapsed]))
        if len(planned) > 1 and rng.random() < config.out_of_order_rate:
            # Newest first: all are delivered after the last status change, in reverse order.
            last = planned[-1][1][0]
            planned = [(e, [last + 0.05 * (len(planned) - 1 - i)]) for i, (e, _) in enumerate(planned)]
        for _event, offsets in planned:
            if rng.random() < config.duplicate_rate:
                offsets.append(offsets[0] + rng.uniform(0.05, 0.5))
        future: set[str] = set()
        for event, _ in planned:
            # Drawn last and only when asked for, so the other decisions stay those of the seed.
            if config.future_rate and rng.random() < config.future_rate:
                event["dateTime"] = (datetime.fromisoformat(event["dateTime"]) + FUTURE_SHIFT).isoformat()
                future.add(event["eventId"])
        return planned, future

    def _reply(
        self,
        config: SandboxConfig,
        message_id: str,
        to: str,
        sender: str,
        accepted_at: datetime,
        start: float,
        events: list[tuple[dict[str, Any], list[float]]],
    ) -> list[_Due]:
        """The recipient's reply, if the script has one for the number: its text, from the number to the
        sender, a moment after the message's last status went out."""
        text = config.replies.get(to[-4:])
        if text is None:
            return []
        after = max(offset for _, offsets in events for offset in offsets) + config.step_delay_max
        event = inbound_event(
            event_id=self._new_id("event"),
            sender=to,
            to=sender,
            text=text,
            at=accepted_at + timedelta(seconds=after),
        )
        with self._lock:
            self._replies.append(
                {"event_id": event["eventId"], "from": to, "text": text, "message_id": message_id}
            )
        return [_Due(start + after, 0, event=event)]

    @staticmethod
    def _bulk_only(config: SandboxConfig, event_id: str) -> bool:
        """Whether this event goes out in a bulk array only (deterministic per seed and event)."""
        return bool(config.bulk_size) and random.Random(f"{config.seed}/{event_id}/bulk").random() < (
            config.bulk_only_rate
        )

    # ---- dispatching callbacks --------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                deliveries = self._next_deliveries()
                if deliveries is None:
                    return
                self._inflight += len(deliveries)
            for delivery in deliveries:
                try:
                    self._workers.submit(self._deliver, delivery)
                except RuntimeError:  # shutting down
                    return

    def _next_deliveries(self) -> list[_Delivery] | None:
        """What is due now, as deliveries; waits (on the condition, held) until something is. None:
        stopping."""
        while not self._stopping:
            now = time.monotonic()
            if self._config.webhook_url:
                if self._due and self._due[0].at <= now:
                    break
                if self._backlog and self._quiet_for(now) >= self._config.bulk_wait_seconds:
                    return [self._bulk_delivery()]
            self._cond.wait(max(0.005, self._wait_seconds(now)))
        if self._stopping:
            return None
        horizon = time.monotonic() + self._config.group_window_seconds
        events: list[dict[str, Any]] = []
        retries: list[_Delivery] = []
        while self._due and self._due[0].at <= horizon:
            item = heapq.heappop(self._due)
            if item.delivery is not None:
                retries.append(item.delivery)
            elif item.event is not None:
                events.append(item.event)
        self._quiet_since = time.monotonic()
        deliveries = retries + self._group(self._backlog_events(events))
        if 0 < self._config.bulk_size <= len(self._backlog):
            deliveries.append(self._bulk_delivery())
        return deliveries

    def _wait_seconds(self, now: float) -> float:
        if not self._config.webhook_url:
            return 0.5
        waits = [self._due[0].at - now] if self._due else [0.5]
        if self._backlog and self._quiet_for(now) >= 0:
            waits.append(self._config.bulk_wait_seconds - self._quiet_for(now))
        return min(waits)

    def _quiet_for(self, now: float) -> float:
        """Seconds since anything was last sent or answered; -1 while something is due or in flight."""
        return -1.0 if self._due or self._inflight else now - self._quiet_since

    def _backlog_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each event's first occurrence also into the bulk backlog; those sent in bulk only left out."""
        config = self._config
        if not config.bulk_size:
            return events
        sent = []
        for event in events:
            event_id = event["eventId"]
            if event_id not in self._backlogged:
                self._backlogged.add(event_id)
                self._backlog.append(event)
            if not self._bulk_only(config, event_id):
                sent.append(event)
        return sent

    def _bulk_delivery(self) -> _Delivery:
        size = self._config.bulk_size or len(self._backlog)
        taken, self._backlog = self._backlog[:size], self._backlog[size:]
        return self._delivery(taken, bulk=True)

    def _group(self, events: list[dict[str, Any]]) -> list[_Delivery]:
        config = self._config
        groups: list[list[dict[str, Any]]] = []
        if len(events) > 1 and self._dispatch_rng.random() < config.group_rate:
            groups = [events[i : i + config.max_group] for i in range(0, len(events), config.max_group)]
        else:
            groups = [[event] for event in events]
        return [self._delivery(group) for group in groups]

    def _delivery(self, events: list[dict[str, Any]], bulk: bool = False) -> _Delivery:
        """One delivery of these events: an array when more than one (then, by malformed_rate, with an
        item that is not an event among them), gzip-compressed from gzip_min_bytes."""
        config = self._config
        items: list[Any] = list(events)
        malformed = 0
        if len(items) > 1 and self._dispatch_rng.random() < config.malformed_rate:
            position = self._dispatch_rng.randrange(len(items) + 1)
            # No eventId, or not an object: both malformed as the contract reads them.
            junk: Any = {"status": "delivered", "note": "no eventId"} if position % 2 else "not an event"
            items.insert(position, junk)
            malformed = 1
        body = json.dumps(items if len(items) > 1 else items[0]).encode()
        compressed = 0 < config.gzip_min_bytes <= len(body)
        return _Delivery(
            delivery_id=self._new_id("delivery"),
            body=gzip.compress(body) if compressed else body,
            event_ids=[e["eventId"] for e in events],
            message_ids=[e.get("messageId") for e in events],  # None for a reply (no message of ours)
            is_array=len(items) > 1,
            malformed=malformed,
            bulk=bulk,
            gzip=compressed,
        )

    def _deliver(self, delivery: _Delivery) -> None:
        try:
            self._attempt(delivery)
        except Exception:
            log.exception("callback delivery crashed")
        finally:
            with self._cond:
                self._inflight -= 1
                self._quiet_since = time.monotonic()
                self._cond.notify_all()

    def _attempt(self, delivery: _Delivery) -> None:
        config = self._config
        status: int | None = None
        error: str | None = None
        reply: str | None = None
        started = time.monotonic()
        url = config.webhook_url
        if not url or not is_loopback_host(urlsplit(url).hostname or ""):
            error = "no loopback webhook_url configured"
        else:
            headers = {"Content-Type": "application/json", "User-Agent": "ocelot-sandbox/1"}
            if delivery.gzip:
                headers["Content-Encoding"] = "gzip"
            if config.webhook_username is not None and config.webhook_password is not None:
                headers.update(
                    urllib3.make_headers(basic_auth=f"{config.webhook_username}:{config.webhook_password}")
                )
            try:
                response = self._http.request(
                    "POST",
                    url,
                    body=delivery.body,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=1.0, read=config.callback_timeout_seconds),
                    redirect=False,
                )
                status, reply = response.status, response.data[:300].decode("utf-8", "replace")
            except urllib3.exceptions.HTTPError as failure:
                error = type(failure).__name__
        with self._lock:
            lost = (
                status is not None
                and delivery.attempt == 1
                and self._dispatch_rng.random() < config.lost_response_rate
            )
        ok = status is not None and 200 <= status < 300 and not lost
        final = ok or delivery.attempt >= config.callback_max_attempts
        with self._cond:
            self._attempts.append(
                {
                    "delivery_id": delivery.delivery_id,
                    "attempt": delivery.attempt,
                    "event_ids": delivery.event_ids,
                    "message_ids": delivery.message_ids,
                    "array": delivery.is_array,
                    "bulk": delivery.bulk,
                    "malformed_items": delivery.malformed,
                    "gzip": delivery.gzip,
                    "bytes": len(delivery.body),
                    "status_code": status,
                    "error": error,
                    "response_lost": lost,
                    "reply": reply,
                    "at": _now_iso(),
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "outcome": "delivered" if ok else "gave_up" if final else "retrying",
                }
            )
            if not final:
                backoff = config.callback_backoff_seconds * 2 ** (delivery.attempt - 1)
                retry = replace(delivery, attempt=delivery.attempt + 1)
                heapq.heappush(self._due, _Due(time.monotonic() + backoff, next(self._seq), delivery=retry))
                self._cond.notify_all()


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
