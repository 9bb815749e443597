"""Status events out: every change of a message's current status, and every inbound text, published to
an EventBridge bus as a documented event (README, "Status events"), for a school's own systems.

Read from the table's stream (functions/publisher): each message meta the Sender inserts (its first
status, `accepted` by Ocelot), the state items the applier (and the sweep) change, the inbound events
it stores. Nothing is added to the webhook's or the applier's writes; a
change whose event EventBridge refuses is retried from the stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.store import EventRecord, MessageRecord, MessageState, Store

SOURCE = "ocelot-sms"
STATUS_CHANGED = "Message Status Changed"
RECEIVED = "Message Received"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message Ocelot accepted (its meta inserted by the Sender at `at`): its first status."""

    meta: MessageRecord
    at: str | None


Change = Accepted | MessageState | EventRecord


class EventBus(Protocol):
    def put(self, entries: Sequence[dict[str, Any]]) -> list[int]:
        """Publish the entries (Source, DetailType, Detail); the positions of those not taken."""
        ...


class PublisherService:
    def __init__(self, store: Store, bus: EventBus) -> None:
        self._store = store
        self._bus = bus

    def publish(self, changes: Sequence[Change]) -> list[int]:
        """One event per change; the positions of the changes whose event was not published."""
        if not changes:
            return []
        states = [c.message_id for c in changes if isinstance(c, MessageState)]
        metas = self._store.get_metas(states) if states else {}
        entries = [_entry(c, metas) for c in changes]
        failed = self._bus.put(entries)
        metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=len(entries) - len(failed))
        if failed:
            metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=len(failed))
            logger.warning("events not published: retried from the stream", extra={"count": len(failed)})
        return failed


def _entry(change: Change, metas: dict[str, MessageRecord]) -> dict[str, Any]:
    if isinstance(change, Accepted):
        detail, kind = status_detail(_accepted_state(change), change.meta), STATUS_CHANGED
    elif isinstance(change, MessageState):
        detail, kind = status_detail(change, metas.get(change.message_id)), STATUS_CHANGED
    else:
        detail, kind = inbound_detail(change), RECEIVED
    return {"Source": SOURCE, "DetailType": kind, "Detail": json.dumps(detail, ensure_ascii=False)}


def _accepted_state(change: Accepted) -> MessageState:
    meta = change.meta
    return MessageState(
        meta.message_id,
        DeliveryStatus.ACCEPTED.value,
        order_key=None,
        event_id=None,
        event_time=change.at,
        batch_id=meta.batch_id,
        to=meta.to,
        updated_at=change.at,
    )


def status_detail(state: MessageState, meta: MessageRecord | None) -> dict[str, Any]:
    """A `Message Status Changed` event's detail: the message, whom it was for, its new status."""
    error = None
    if state.error_code or state.error_message:
        error = {"code": state.error_code, "message": state.error_message}
    return {
        "messageId": state.message_id,
        "requestId": meta.request_id if meta else None,
        "ref": meta.ref if meta else None,
        "recipient": (meta.to if meta else None) or state.to,
        "status": state.status,
        "error": error,
        "statusAt": state.event_time,
        "recordedAt": state.updated_at,
        "eventId": state.event_id,
        "ocelotBatchId": state.batch_id or (meta.batch_id if meta else None),
    }


def inbound_detail(event: EventRecord) -> dict[str, Any]:
    """A `Message Received` event's detail (and a GET /inbound item): who wrote what, when, and the
    message of ours it most likely answers."""
    inbound = event.inbound
    reply = inbound.reply_to if inbound else None
    return {
        "eventId": event.event_id,
        "from": inbound.sender if inbound else None,
        "to": inbound.recipient if inbound else None,
        "text": inbound.text if inbound else None,
        "eventTime": event.event_time,
        "receivedAt": event.received_at,
        "inReplyTo": {
            "messageId": reply.message_id,
            "requestId": reply.request_id,
            "ref": reply.ref,
            "sentAt": reply.sent_at,
        }
        if reply
        else None,
    }
