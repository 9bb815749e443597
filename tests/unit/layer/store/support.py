"""Records for the store tests, made the way the services make them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ocelot_sms.applier import event_record
from ocelot_sms.contract import CallbackEvent
from ocelot_sms.store import EventRecord, RawDelivery, RawRef

T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
RAW = RawRef("d-1", "2026-11-26T16:00:00.000000Z")


def status(
    event_id: str, message_id: str, value: str, at: datetime | str | None, raw: RawRef = RAW, **extra: Any
) -> EventRecord:
    """A status event of Ocelot's callback, as the webhook hands it to the store."""
    item: dict[str, Any] = {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "messageId": message_id,
        "batchId": "b-1",
        "status": value,
        **extra,
    }
    if at is not None:
        item["dateTime"] = at if isinstance(at, str) else at.isoformat()
    return event(item, raw)


def event(item: dict[str, Any], raw: RawRef = RAW) -> EventRecord:
    return event_record(CallbackEvent.from_item(item), raw, T0 + timedelta(days=1), timedelta(minutes=5))


def raw(delivery_id: str = "d-1", body: bytes = b'{"eventId": "e"}', at: datetime = T0) -> RawDelivery:
    return RawDelivery(delivery_id, at, body, {"content-type": "application/json"}, "192.0.2.1")
