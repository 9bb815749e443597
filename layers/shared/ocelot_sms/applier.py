"""Applying a stored raw delivery: each of its events stored once, each message's status moved
forward. The one way a raw delivery becomes state: the applier function runs it for every delivery
the webhook stores (from the table's stream), and `ocelot-sms replay` runs it again over stored ones.

Each item of a delivery stands on its own: a malformed one is recorded on the delivery as a problem
(counted, alarmed), and the valid items next to it are applied all the same.

Applying also keeps what follows from the events: an inbound text is linked to the last message we
sent its writer (a reply), and opt-outs suppress their numbers (suppression.py). Status changes and
inbound texts are published to EventBridge by the publisher, from the table's stream.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ocelot_sms.clock import iso
from ocelot_sms.contract import CallbackError, CallbackEvent, read_callback
from ocelot_sms.delivery import order_key
from ocelot_sms.observability import MetricUnit, logger, mask_phone, metrics
from ocelot_sms.settings import Settings
from ocelot_sms.store import (
    EventRecord,
    EventWrite,
    Inbound,
    RawDelivery,
    RawRef,
    StateChange,
    Store,
    Suppression,
)
from ocelot_sms.suppression import change_of, is_number


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one delivery did."""

    delivery_id: str
    events: int = 0
    new: int = 0
    duplicates: int = 0
    problems: tuple[str, ...] = ()


def event_record(event: CallbackEvent, raw: RawRef, received_at: datetime, skew: timedelta) -> EventRecord:
    """A callback event as the store keeps it: a state change when it is a status event we understand.

    An event dated later than it could be (after we received it, beyond `skew`) is ordered as if it
    happened when we received it; its own dateTime is kept and shown."""
    status = event.delivery_status if event.is_status_change else None
    instant = event.instant
    reported = None
    if instant is not None and instant > received_at + skew:
        reported, instant = event.date_time, received_at
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
            to=event.to,
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
        understood=status is not None or not event.is_status_change,
        reported_time=reported,
        inbound=Inbound(event.sender, event.to, event.text) if event.is_inbound else None,
    )


class ApplierService:
    def __init__(self, settings: Settings, store: Store, executor: ThreadPoolExecutor | None = None) -> None:
        self._settings = settings
        self._store = store
        self._skew = timedelta(seconds=settings.clock_skew_seconds)
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.webhook_write_concurrency, thread_name_prefix="events"
        )

    def apply(self, raw: RawDelivery) -> Applied:
        """Store every event of the delivery once and move states forward; record what could not be
        read on the delivery. Idempotent: applying the same delivery again stores nothing new.
        Storage errors are raised (the stream retries the record)."""
        try:
            items = read_callback(raw.body)
        except CallbackError as error:
            return self._malformed(raw, error.problems, events=0)
        outcomes = self._store_events(items.events, raw)
        applied = Applied(
            delivery_id=raw.delivery_id,
            events=len(items.events),
            new=sum(1 for o in outcomes if o is not EventWrite.DUPLICATE),
            duplicates=sum(1 for o in outcomes if o is EventWrite.DUPLICATE),
            problems=tuple(items.problems),
        )
        _count(items.events, outcomes)
        if items.problems:
            self._malformed(raw, items.problems, events=len(items.events))
        # DEBUG: a line per delivery is most of the applier's log cost; the handler logs each batch.
        logger.debug(
            "delivery applied",
            extra={
                "deliveryId": raw.delivery_id,
                "events": applied.events,
                "new": applied.new,
                "duplicates": applied.duplicates,
                "problems": len(applied.problems),
            },
        )
        return applied

    def _store_events(self, events: Sequence[CallbackEvent], raw: RawDelivery) -> list[EventWrite]:
        """Each event idempotently; many at once, as DynamoDB latency, not CPU, is the cost.

        An eventId repeated within one delivery is written once: its repeats are duplicates that cost
        no request, and cannot race the first copy's state update into a second one."""
        first: dict[str, int] = {}
        unique: list[EventRecord] = []
        for event in events:
            if event.event_id not in first:
                first[event.event_id] = len(unique)
                unique.append(self._linked(event_record(event, raw.ref, raw.received_at, self._skew)))
        if len(unique) <= 1:
            stored = [self._store.put_event(record) for record in unique]
        else:
            stored = list(self._executor.map(self._store.put_event, unique))
        # Every event, repeats too: a retry after a failure here completes it (each write is idempotent).
        for record in unique:
            self._suppression(record)
        seen: set[str] = set()
        outcomes: list[EventWrite] = []
        for event in events:
            repeat = event.event_id in seen
            seen.add(event.event_id)
            outcomes.append(EventWrite.DUPLICATE if repeat else stored[first[event.event_id]])
        return outcomes

    def _linked(self, record: EventRecord) -> EventRecord:
        """An inbound text with the last message we sent its writer before it came (what it answers)."""
        inbound = record.inbound
        if inbound is None or not is_number(inbound.sender):
            return record
        before = record.event_time or record.raw.received_at
        return replace(
            record, inbound=replace(inbound, reply_to=self._store.last_sent_to(inbound.sender, before))
        )

    def _suppression(self, record: EventRecord) -> None:
        change = change_of(record)
        if change is None:
            return
        if isinstance(change, Suppression):
            if self._store.suppress(change):
                metrics.add_metric(name="NumbersSuppressed", unit=MetricUnit.Count, value=1)
                logger.info(
                    "number suppressed",
                    extra={"number": mask_phone(change.number), "source": change.source.value},
                )
        elif self._store.lift_suppression(change.number, change.at):
            metrics.add_metric(name="SuppressionsLifted", unit=MetricUnit.Count, value=1)
            logger.info("suppression lifted by an opt-in reply", extra={"number": mask_phone(change.number)})

    def _malformed(self, raw: RawDelivery, problems: list[str], events: int) -> Applied:
        self._store.record_problems(raw.ref, problems)
        metrics.add_metric(name="WebhookMalformedItems", unit=MetricUnit.Count, value=len(problems))
        logger.warning(
            "delivery holds items that are not events",
            extra={"deliveryId": raw.delivery_id, "events": events, "problems": problems[:10]},
        )
        return Applied(delivery_id=raw.delivery_id, events=events, problems=tuple(problems))


def _count(events: Sequence[CallbackEvent], outcomes: Sequence[EventWrite]) -> None:
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
    # Deliveries with items that are not events (still not, through the current contract).
    malformed: list[str] = field(default_factory=list)
    # Deliveries too large to have been kept whole: recorded, never applied.
    truncated: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "events": self.events,
            "new": self.new,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
            "truncated": self.truncated,
        }


def replay_deliveries(
    store: Store, applier: ApplierService, since: datetime, until: datetime
) -> ReplayReport:
    """Every raw delivery received in [since, until] applied again, by the applier's own code.
    Idempotent: an event already stored is a duplicate; one the old contract missed or misread is
    added now."""
    report = ReplayReport()
    day = since.astimezone(UTC).date()
    while day <= until.astimezone(UTC).date():
        for raw in store.raw_deliveries(day.isoformat()):
            if not since <= raw.received_at <= until:
                continue
            report.deliveries += 1
            if raw.truncated_from is not None:
                report.truncated.append(raw.delivery_id)
                continue
            applied = applier.apply(raw)
            report.events += applied.events
            report.new += applied.new
            report.duplicates += applied.duplicates
            if applied.problems:
                report.malformed.append(raw.delivery_id)
        day += timedelta(days=1)
    logger.info(
        "replay finished",
        extra={**report.to_json(), "malformed": len(report.malformed), "truncated": len(report.truncated)},
    )
    return report
