"""Receiving Ocelot's callbacks: authenticate, keep the raw delivery, store each event once.

Order matters: the raw delivery is stored before anything is parsed, so a callback whose shape
differs from our assumed contract is never lost, and can be replayed once contract.py is fixed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ocelot_sms.contract import CallbackError, CallbackEvent, parse_callback
from ocelot_sms.credentials import WebhookCredentials
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.settings import Settings
from ocelot_sms.store import EventWrite, RawDelivery, StorageError, Store, TooLargeToStore

# Never stored or logged: they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-amz-security-token"}
)
TOKEN_PARAMETER = "token"  # noqa: S105 - the name of the query parameter, not a secret


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str  # API Gateway's request id: unique per HTTP request
    received_at: datetime
    body: bytes
    headers: Mapping[str, str]
    source_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    body: dict[str, Any]


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


class CallbackService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        credentials: Callable[[], WebhookCredentials],
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._credentials = credentials
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.webhook_write_concurrency, thread_name_prefix="events"
        )

    def authenticate(self, basic: tuple[str, str] | None, token: str | None) -> bool:
        if self._credentials().accepts(basic, token):
            return True
        metrics.add_metric(name="WebhookAuthFailures", unit=MetricUnit.Count, value=1)
        return False

    def receive(self, delivery: Delivery) -> Reply:
        if len(delivery.body) > self._settings.webhook_max_body_bytes:
            metrics.add_metric(name="WebhookBodiesTooLarge", unit=MetricUnit.Count, value=1)
            return Reply(
                413,
                {
                    "error": "payload_too_large",
                    "message": f"at most {self._settings.webhook_max_body_bytes} bytes",
                },
            )
        raw = RawDelivery(
            delivery.delivery_id,
            delivery.received_at,
            delivery.body,
            safe_headers(delivery.headers),
            delivery.source_ip,
        )
        try:
            self._store.put_raw(raw, self._settings.raw_retention_days)
        except TooLargeToStore as error:
            # Permanent: a retry would fail the same way, so not a 5xx (Ocelot's JSON compresses well
            # under the limit; only something else gets here).
            metrics.add_metric(name="WebhookBodiesTooLarge", unit=MetricUnit.Count, value=1)
            return Reply(413, {"error": "payload_too_large", "message": str(error)})
        except (ClientError, BotoCoreError, StorageError) as error:
            return _storage_failed("raw delivery", error)

        try:
            events = parse_callback(json.loads(delivery.body))
        except (ValueError, RecursionError) as error:
            problems = error.problems if isinstance(error, CallbackError) else ["body: not valid JSON"]
            metrics.add_metric(name="WebhookMalformed", unit=MetricUnit.Count, value=1)
            logger.warning(
                "malformed callback kept as raw",
                extra={"deliveryId": delivery.delivery_id, "problems": problems[:10]},
            )
            return Reply(
                400, {"error": "malformed", "problems": problems[:50], "deliveryId": delivery.delivery_id}
            )
        try:
            outcomes = self.store_events(events, raw.key)
        except (ClientError, BotoCoreError, StorageError) as error:
            return _storage_failed("events", error)

        counts = Counter(outcome.value for outcome in outcomes)
        _count_statuses(events, outcomes)
        logger.info(
            "callback stored", extra={"deliveryId": delivery.delivery_id, "events": len(events), **counts}
        )
        return Reply(
            200,
            {
                "received": len(events),
                "new": counts["applied"] + counts["stored"],
                "duplicates": counts["duplicate"],
            },
        )

    def store_events(self, events: Sequence[CallbackEvent], raw_key: Mapping[str, str]) -> list[EventWrite]:
        """Each event idempotently; many at once, as DynamoDB latency, not CPU, is the cost.

        An eventId repeated within one delivery is written once: its repeats are duplicates that cost
        no request, and cannot race the first copy's state update into a second one."""
        first: dict[str, int] = {}
        unique: list[CallbackEvent] = []
        for event in events:
            if event.event_id not in first:
                first[event.event_id] = len(unique)
                unique.append(event)
        if len(unique) == 1:
            stored = [self._store.put_event(unique[0], raw_key)]
        else:
            stored = list(self._executor.map(lambda event: self._store.put_event(event, raw_key), unique))
        seen: set[str] = set()
        outcomes: list[EventWrite] = []
        for event in events:
            repeat = event.event_id in seen
            seen.add(event.event_id)
            outcomes.append(EventWrite.DUPLICATE if repeat else stored[first[event.event_id]])
        return outcomes


def _storage_failed(what: str, error: Exception) -> Reply:
    # 5xx makes Ocelot retry; every write here is idempotent, so a retry completes the work.
    metrics.add_metric(name="WebhookStorageFailures", unit=MetricUnit.Count, value=1)
    logger.error("could not store callback", extra={"what": what, "error": type(error).__name__})
    return Reply(503, {"error": "storage_unavailable", "message": "try again"})


def _count_statuses(events: Sequence[CallbackEvent], outcomes: Sequence[EventWrite]) -> None:
    statuses: Counter[str] = Counter()
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome is EventWrite.DUPLICATE:
            continue
        status = event.delivery_status if event.is_status_change else None
        statuses[status.value if status else "other"] += 1
    duplicates = sum(1 for o in outcomes if o is EventWrite.DUPLICATE)
    if duplicates:
        metrics.add_metric(name="WebhookDuplicateEvents", unit=MetricUnit.Count, value=duplicates)
    for name, count in statuses.items():
        metrics.add_metric(name=f"WebhookEvents_{name}", unit=MetricUnit.Count, value=count)
