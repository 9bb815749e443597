"""Inputs of the workloads: a realistic callback array, a large batch request, their API Gateway events,
and the stream event that hands stored deliveries to the applier.

Standard library only, plus the layer's `status_event` and raw-delivery item (passed in), so the
callback items and the stored items are built by the same code as the sandbox's and the webhook's.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"

# Share of messages per final outcome (and the statuses leading to it), after typical school texting.
LIFECYCLES: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.80, ("queued", "sent", "delivered")),
    (0.05, ("queued", "sent", "undelivered")),
    (0.03, ("queued", "failed")),
    (0.02, ("opted_out",)),
    (0.10, ("queued", "sent")),  # still in flight when the callback goes out
)
DUPLICATE_SHARE = 0.04  # Ocelot re-sends an event whose delivery it thinks failed
OUT_OF_ORDER_SHARE = 0.10  # messages whose events arrive newest first
ERRORS = {"undelivered": ("30003", "Unreachable destination handset"), "failed": ("30008", "Unknown error")}

StatusEvent = Callable[..., dict[str, Any]]


def _id(tag: str, kind: str, number: int) -> str:
    """A UUID as Ocelot's ids are (random-looking: they compress as poorly as the real ones), unique to
    `tag` and repeatable."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ocelot-sms-bench/{tag}/{kind}/{number}"))


def callback_items(size: int, tag: str, status_event: StatusEvent, seed: int = 6) -> list[dict[str, Any]]:
    """`size` status events: ~1/3 as many messages as events, 4% duplicates, 10% out of order.

    `tag` makes every id unique to one delivery, so all events but the duplicates are new.
    """
    rng = random.Random(f"{seed}/{size}")
    duplicates = round(size * DUPLICATE_SHARE) if size >= 10 else 0
    unique_target = size - duplicates
    start = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    planned: list[tuple[float, dict[str, Any]]] = []
    message = 0
    while len(planned) < unique_target:
        message += 1
        statuses = _pick(rng)[: unique_target - len(planned)]
        message_id = _id(tag, "message", message)
        to = f"+1555{rng.randrange(10**7):07d}"
        sent_at = rng.uniform(0, 60)
        steps = [(sent_at + 2.0 * i + rng.uniform(0, 1), status) for i, status in enumerate(statuses)]
        arrival = [t for t, _ in steps]
        if rng.random() < OUT_OF_ORDER_SHARE:
            arrival.reverse()
        for (at, status), arrives in zip(steps, arrival, strict=True):
            error_code, error_message = ERRORS.get(status, (None, None))
            item = status_event(
                event_id=_id(tag, "event", len(planned) + 1),
                batch_id=_id(tag, "batch", 1 + (message - 1) // 100),
                message_id=message_id,
                to=to,
                sender="+15550000000",
                status=_status(status),
                at=start + timedelta(seconds=at),
                error_code=error_code,
                error_message=error_message,
            )
            planned.append((arrives, item))
    planned.sort(key=lambda pair: pair[0])
    items = [item for _, item in planned]
    for _ in range(duplicates):
        original = rng.randrange(len(items))
        items.insert(rng.randrange(original + 1, len(items) + 1), copy.deepcopy(items[original]))
    return items


def _pick(rng: random.Random) -> tuple[str, ...]:
    draw = rng.random()
    for share, statuses in LIFECYCLES:
        if draw < share:
            return statuses
        draw -= share
    return LIFECYCLES[0][1]


def _status(value: str) -> Any:
    from ocelot_sms.delivery import DeliveryStatus  # the layer's, in the measured process

    return DeliveryStatus(value)


def webhook_event(
    items: list[dict[str, Any]], request_id: str, username: str, password: str
) -> dict[str, Any]:
    """API Gateway HTTP API (v2) event of one callback delivery, from events/webhook_event_array.json."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / "webhook_event_array.json").read_text())
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    event["headers"]["authorization"] = f"Basic {token}"
    event["requestContext"]["requestId"] = request_id
    event["body"] = json.dumps(items)
    event["isBase64Encoded"] = False
    return event


def batch_body(size: int, request_id: str, seed: int = 6) -> dict[str, Any]:
    """POST /batches body: `size` texts of typical length (40-160 characters), each with a ref."""
    rng = random.Random(f"{seed}/batch")
    texts = [
        "Reminder: registration for spring classes closes Friday at 5pm. Reply STOP to opt out.",
        "Your advisor meeting is confirmed for Tuesday 10:00 in room B-204.",
        "Campus is closed today due to weather. Online classes continue as scheduled.",
        "Your financial aid documents are missing a signature. Please visit the portal.",
    ]
    messages = [
        {"to": f"+1555{rng.randrange(10**7):07d}", "text": texts[i % len(texts)], "ref": f"stu-{i:06d}"}
        for i in range(size)
    ]
    return {"requestId": request_id, "from": "+15550000000", "operatorId": "operator-1", "messages": messages}


def batch_event(body: dict[str, Any], request_id: str) -> dict[str, Any]:
    """API Gateway HTTP API (v2) event of POST /batches, from events/api_post_batch.json."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / "api_post_batch.json").read_text())
    event["requestContext"]["requestId"] = request_id
    event["body"] = json.dumps(body)
    event["isBase64Encoded"] = False
    return event


def stream_event(images: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB stream event as Lambda hands it to the applier: one INSERT per stored item (its
    NewImage in DynamoDB's JSON, binaries in base64)."""
    records = []
    for number, image in enumerate(images):
        shaped = {name: _wire(value) for name, value in image.items()}
        records.append(
            {
                "eventID": uuid.uuid5(uuid.NAMESPACE_URL, f"{stream_arn}/{number}").hex,
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1795708806,
                    "Keys": {"PK": shaped["PK"], "SK": shaped["SK"]},
                    "NewImage": shaped,
                    "SequenceNumber": str(1100000000017454423009 + number),
                    "SizeBytes": len(json.dumps(shaped)),
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": stream_arn,
            }
        )
    return {"Records": records}


def _wire(value: dict[str, Any]) -> dict[str, Any]:
    """An attribute value as DynamoDB's JSON carries it: a binary as base64 text."""
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(bytes(inner)).decode()}
    return {kind: inner}


def sqs_event(body: dict[str, Any], message_id: str) -> dict[str, Any]:
    """An SQS event of one send queue message carrying `body`."""
    record: dict[str, Any] = {
        "messageId": message_id,
        "receiptHandle": f"r-{message_id}",
        "body": json.dumps(body),
    }
    record |= {"attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs"}
    record |= {"awsRegion": "us-east-1", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:send"}
    return {"Records": [record]}
