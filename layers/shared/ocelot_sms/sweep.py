"""The stale-message sweep: messages accepted long ago that never reached a terminal status are
marked `unknown`, so that no report shows them as still on their way forever."""

from __future__ import annotations

from datetime import datetime, timedelta

from ocelot_sms.clock import iso, utc_now
from ocelot_sms.delivery import TERMINAL_STATUSES, DeliveryStatus, order_key
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.store import StateChange, Store

SWEEP_EVENT_ID = "stale-sweep"
# Statuses the sweep leaves alone.
_SETTLED = frozenset(s.value for s in TERMINAL_STATUSES | {DeliveryStatus.UNKNOWN})


def mark_stale_messages(
    store: Store, older_than_hours: int, lookback_days: int = 14, now: datetime | None = None
) -> int:
    """Messages accepted more than N hours ago with no terminal status are marked `unknown`.

    A later terminal callback still wins (unknown is not terminal); a chunk is swept once.
    """
    now = now or utc_now()
    marked = 0
    for chunk in store.chunks_to_sweep(
        now - timedelta(days=lookback_days), now - timedelta(hours=older_than_hours)
    ):
        states = store.get_states(list(chunk.message_ids))
        for message_id in chunk.message_ids:
            state = states.get(message_id)
            if state is None or state.status not in _SETTLED:
                change = StateChange(
                    message_id=message_id,
                    status=DeliveryStatus.UNKNOWN,
                    order_key=order_key(DeliveryStatus.UNKNOWN, now, SWEEP_EVENT_ID),
                    event_id=SWEEP_EVENT_ID,
                    event_time=iso(now),
                    batch_id=chunk.batch_id,
                )
                marked += int(store.advance_state(change))
        store.swept(chunk)
    # Published every run, zero included: a dashboard or alarm sees the sweep ran.
    metrics.add_metric(name="MessagesMarkedUnknown", unit=MetricUnit.Count, value=marked)
    logger.info("stale messages marked", extra={"marked": marked, "olderThanHours": older_than_hours})
    return marked
