"""Receiving Ocelot's callbacks: authenticate, keep the raw delivery, store each event once.

Order matters: the raw delivery is stored before anything is parsed, so a callback whose shape
differs from our assumed contract is never lost, and can be replayed once contract.py is fixed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ocelot_sms.clock import iso
from ocelot_sms.contract import CallbackError, CallbackEvent, parse_callback
from ocelot_sms.credentials import WebhookCredentials
from ocelot_sms.delivery import order_key
from ocelot_sms.errors import Malformed, PayloadTooLarge, StorageUnavailable, Unauthorized
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.settings import Settings
from ocelot_sms.store import (
    EventRecord,
    EventWrite,
    RawDelivery,
    RawRef,
    StateChange,
    StorageError,
    Store,
    TooLargeToStore,
)

# Never stored or logged: they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-amz-security-token"}
)
TOKEN_PARAMETER = "token"  # noqa: S105 - the name of the query parameter, not a secret
STORAGE_ERRORS = (ClientError, BotoCoreError, StorageError)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one delivery added: its events, the new ones, and those seen before."""

    received: int
    new: int
    duplicates: int


def safe_headers(headers: dict[str, str] | Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


def event_record(event: CallbackEvent, raw: RawRef) -> EventRecord:
    """A callback event as the store keeps it: a state change when it is a status event of a message."""
    status = event.delivery_status if event.is_status_change else None
    instant = event.instant
    change = None
    if status is not None and event.message_id:
        change = StateChange(
            message_id=event.message_id,
            status=status,
            order_key=order_key(status, instant, event.event_id),
            event_id=event.event_id,
            event_time=iso(instant) if instant else None,
            error_code=event.error_code,
            error_message=event.error_message,
            batch_id=event.batch_id,
        )
    return EventRecord(
        event_id=event.event_id,
        raw=raw,
        name=event.name,
        message_id=event.message_id,
        batch_id=event.batch_id,
        status=status.value if status else event.status,
        event_time=iso(instant) if instant else None,
        change=change,
        # ASCII escapes keep lone surrogates (half an emoji) storable.
        payload=json.dumps(event.raw, sort_keys=True),
    )


class WebhookService:
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

    def authenticate(self, basic: tuple[str, str] | None, token: str | None) -> None:
        if not self._credentials().accepts(basic, token):
            metrics.add_metric(name="WebhookAuthFailures", unit=MetricUnit.Count, value=1)
            raise Unauthorized("unauthorized")

    def receive(self, delivery: RawDelivery) -> Receipt:
        """Keep the delivery raw, then store its events. Raises PayloadTooLarge, StorageUnavailable
        (a retry completes the work: every write is idempotent) or Malformed (kept raw all the same)."""
        if len(delivery.body) > self._settings.webhook_max_body_bytes:
            metrics.add_metric(name="WebhookBodiesTooLarge", unit=MetricUnit.Count, value=1)
            raise PayloadTooLarge(f"at most {self._settings.webhook_max_body_bytes} bytes")
        raw = replace(delivery, headers=safe_headers(delivery.headers))
        try:
            self._store.put_raw(raw, self._settings.raw_retention_days)
        except TooLargeToStore as error:
            # Permanent: a retry would fail the same way, so not a 5xx (Ocelot's JSON compresses well
            # under the limit; only something else gets here).
            metrics.add_metric(name="WebhookBodiesTooLarge", unit=MetricUnit.Count, value=1)
            raise PayloadTooLarge(str(error)) from error
        except STORAGE_ERRORS as error:
            raise _storage_failed("raw delivery", error) from error

        try:
            events = parse_callback(json.loads(delivery.body))
        except (ValueError, RecursionError) as error:
            problems = error.problems if isinstance(error, CallbackError) else ["body: not valid JSON"]
            metrics.add_metric(name="WebhookMalformed", unit=MetricUnit.Count, value=1)
            logger.warning(
                "malformed callback kept as raw",
                extra={"deliveryId": delivery.delivery_id, "problems": problems[:10]},
            )
            raise Malformed(problems, details={"deliveryId": delivery.delivery_id}) from error
        try:
            outcomes = self.apply(events, raw.ref)
        except STORAGE_ERRORS as error:
            raise _storage_failed("events", error) from error

        counts = Counter(outcome.value for outcome in outcomes)
        _count_statuses(events, outcomes)
        logger.info(
            "callback stored", extra={"deliveryId": delivery.delivery_id, "events": len(events), **counts}
        )
        return Receipt(
            received=len(events),
            new=counts[EventWrite.APPLIED] + counts[EventWrite.STORED],
            duplicates=counts[EventWrite.DUPLICATE],
        )

    def apply(self, events: Sequence[CallbackEvent], raw: RawRef) -> list[EventWrite]:
        """Each event idempotently; many at once, as DynamoDB latency, not CPU, is the cost.

        An eventId repeated within one delivery is written once: its repeats are duplicates that cost
        no request, and cannot race the first copy's state update into a second one."""
        first: dict[str, int] = {}
        unique: list[EventRecord] = []
        for event in events:
            if event.event_id not in first:
                first[event.event_id] = len(unique)
                unique.append(event_record(event, raw))
        if len(unique) == 1:
            stored = [self._store.put_event(unique[0])]
        else:
            stored = list(self._executor.map(self._store.put_event, unique))
        seen: set[str] = set()
        outcomes: list[EventWrite] = []
        for event in events:
            repeat = event.event_id in seen
            seen.add(event.event_id)
            outcomes.append(EventWrite.DUPLICATE if repeat else stored[first[event.event_id]])
        return outcomes


def _storage_failed(what: str, error: Exception) -> StorageUnavailable:
    metrics.add_metric(name="WebhookStorageFailures", unit=MetricUnit.Count, value=1)
    logger.error("could not store callback", extra={"what": what, "error": type(error).__name__})
    return StorageUnavailable("try again")


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


# ---- replay ------------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    deliveries: int = 0
    events: int = 0
    new: int = 0
    duplicates: int = 0
    unparseable: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "events": self.events,
            "new": self.new,
            "duplicates": self.duplicates,
            "unparseable": self.unparseable,
        }


def replay_deliveries(
    store: Store, service: WebhookService, since: datetime, until: datetime
) -> ReplayReport:
    """Every raw delivery received in [since, until] through the current parser. Idempotent: an
    event already stored is a duplicate; one the old parser missed or misread is added now."""
    report = ReplayReport()
    day = since.astimezone(UTC).date()
    while day <= until.astimezone(UTC).date():
        for raw in store.raw_deliveries(day.isoformat()):
            if not since <= raw.received_at <= until:
                continue
            report.deliveries += 1
            try:
                events = parse_callback(json.loads(raw.body))
            except (ValueError, RecursionError):
                report.unparseable.append(raw.delivery_id)
                continue
            outcomes = service.apply(events, raw.ref)
            report.events += len(events)
            report.duplicates += sum(1 for o in outcomes if o is EventWrite.DUPLICATE)
            report.new += sum(1 for o in outcomes if o is not EventWrite.DUPLICATE)
        day += timedelta(days=1)
    logger.info(
        "replay finished",
        extra={**report.to_json(), "unparseable": len(report.unparseable)},
    )
    return report
