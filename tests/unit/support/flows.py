"""Helpers for the operations tests (status API, sweep, replay, reconcile, redrive, CLI).

Data is made the way production makes it: batches through the real Sender (Ocelot on `responses`,
see support/ocelot.py), callbacks through the real webhook and applier services, and requests to
the status API as API Gateway HTTP API (payload 2.0) events built from events/api_get_*.json.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.webhook import app as webhook_app
from ocelot_sms import runtime
from ocelot_sms.applier import Applied
from ocelot_sms.contract import EventName
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import DomainError
from ocelot_sms.http import status_for
from ocelot_sms.models import BatchResult
from ocelot_sms.sender import SenderService
from ocelot_sms.store import RawDelivery
from ocelot_sms.webhook import Receipt
from tests.events import load_event
from tests.unit.support.aws import FakeContext
from tests.unit.support.ocelot import batch

T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)


# ---- sending -------------------------------------------------------------------------------------


def sender() -> SenderService:
    service = runtime.sender_service()
    service.register_context(FakeContext())  # type: ignore[arg-type]
    return service


def send(request_id: str, count: int, **overrides: Any) -> BatchResult:
    """A batch of `count` messages (to +1555000000i, ref ref-i) through the Sender, as POST /batches."""
    service = sender()
    return service.submit(service.parse(batch(request_id, count, **overrides)), origin="api")


def message_ids(result: BatchResult) -> list[str]:
    """The Ocelot ids of the accepted messages, in request order (None for the others)."""
    return [m.message_id or "" for m in result.messages if m.message_id]


# ---- callbacks -----------------------------------------------------------------------------------


def callback(
    event_id: str,
    message_id: str,
    status: DeliveryStatus | str,
    at: str,
    *,
    status_field: str = "status",
    **extra: Any,
) -> dict[str, Any]:
    """A status callback item as Ocelot sends it; `status_field` names the field the status is in."""
    return {
        "name": EventName.STATUS_CHANGED.value,
        "eventId": event_id,
        "batchId": "ocelot-batch-x",
        "messageId": message_id,
        "to": "+15550000001",
        "from": "+15550000000",
        status_field: status.value if isinstance(status, DeliveryStatus) else status,
        "dateTime": at,
        **extra,
    }


@dataclass(frozen=True)
class Answer:
    """What the webhook answers a delivery (its status code, and the receipt or the domain error), and
    what applying it then did (none when the webhook did not keep it whole)."""

    status_code: int
    receipt: Receipt | None = None
    error: DomainError | None = None
    applied: Applied | None = None


def deliver(
    body: Any, delivery_id: str, received_at: datetime | None = None, *, raw_body: bytes | None = None
) -> Answer:
    """One HTTP delivery through the webhook's service (authenticated already), then through the
    applier, as the table's stream would hand it over; the status code is the webhook table's."""
    data = raw_body if raw_body is not None else json.dumps(body).encode()
    delivery = RawDelivery(
        delivery_id=delivery_id,
        received_at=received_at or datetime.now(UTC),
        body=data,
        headers={"content-type": "application/json"},
        source_ip="192.0.2.10",
    )
    try:
        receipt = runtime.webhook_service().receive(delivery)
    except DomainError as error:
        return Answer(status_for(error, webhook_app.ERRORS) or 500, error=error)
    stored = runtime.store().get_raw(delivery.ref)
    assert stored is not None
    return Answer(200, receipt=receipt, applied=runtime.applier_service().apply(stored))


# ---- the status API ------------------------------------------------------------------------------


def api_get(
    route: str, parameters: Mapping[str, str], query: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A GET of the status API (/sends, /sends/{sendId}, /batches/{requestId}, /messages/{messageId})
    as API Gateway hands it to the function."""
    name = "api_get_message" if route.startswith("/messages") else "api_get_batch"
    event = load_event(name)
    path = route
    for key, value in parameters.items():
        path = path.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {route}"
    event["pathParameters"] = dict(parameters)
    if query:
        event["queryStringParameters"] = dict(query)
        event["rawQueryString"] = urllib.parse.urlencode(query)
    else:
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = ""
    return event


def delete_batch(path: str) -> dict[str, Any]:
    """DELETE /batches/{requestId} (`path`, percent-encoded) as API Gateway hands it to the Sender."""
    event = load_event("api_post_batch")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = "DELETE"
    event["routeKey"] = event["requestContext"]["routeKey"] = "DELETE /batches/{requestId}"
    event["body"] = None
    return event


def with_method(event: dict[str, Any], method: str, path: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["requestContext"]["http"]["method"] = method
    if path is not None:
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    return event


def walk_pages(
    get_page: Any, first_query: Mapping[str, str] | None = None, max_pages: int = 100
) -> list[dict[str, Any]]:
    """Every page of a paginated answer, following nextCursor (with the same other parameters)."""
    pages: list[dict[str, Any]] = []
    query = dict(first_query or {})
    for _ in range(max_pages):
        page: dict[str, Any] = get_page(query)
        pages.append(page)
        if not page.get("nextCursor"):
            return pages
        query = {**query, "cursor": page["nextCursor"]}
    raise AssertionError(f"more than {max_pages} pages: the cursor does not advance")


def indexes(pages: Sequence[Mapping[str, Any]]) -> list[int]:
    return [m["index"] for p in pages for m in p["messages"]]
