"""Sender Lambda: POST /batches and DELETE /batches/{requestId} (API Gateway HTTP API, IAM auth), and
the send queue (SQS: requests, and the messages of the schedules of requests sent later).

Each path imports what it needs when it first needs it (docs/performance.md, cold start by path): an
invalid request or a dry run loads no store, idempotency or HTTP client; the queue's records never
load the API's parts. Two routes, answered without a resolver.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from aws_lambda_powertools.logging import correlation_paths

from ocelot_sms.errors import (
    BadRequest,
    Cancelled,
    Conflict,
    DomainError,
    InProgress,
    InvalidRequest,
    NotConfigured,
    NotFound,
    Rejected,
    SendingStarted,
    StorageUnavailable,
    Unavailable,
)
from ocelot_sms.http import INTERNAL_ERROR, error_answer, proxy_response, route, stage_name
from ocelot_sms.observability import logger, metrics
from ocelot_sms.settings import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from ocelot_sms.models import BatchResult

ERRORS = {
    BadRequest: 400,
    NotFound: 404,
    InvalidRequest: 422,
    Conflict: 409,
    InProgress: 409,
    Cancelled: 409,
    SendingStarted: 409,
    Rejected: 502,
    # The Ocelot secret holds its placeholder: the answer says which secret and what to put in it.
    NotConfigured: 503,
    Unavailable: 503,
    StorageUnavailable: 503,
}
ROUTE = ("POST", "/batches")
# DELETE /batches/{requestId}: cancel a request scheduled for later.
CANCEL = ("DELETE", "/batches/")
# What a request that is done answers 201 to: every message accepted, or left out as suppressed.
COMPLETE = frozenset({"accepted", "suppressed"})


def create_batch(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    from ocelot_sms import batch

    settings = get_settings()
    request = batch.parse(_json_body(event), settings)
    if request.dry_run:
        return proxy_response(200, batch.preview(request, settings).to_json())
    from ocelot_sms import runtime  # boto3 and its clients: only to send

    service = runtime.sender_service()
    service.register_context(context)
    return _answer(service.submit(request, origin="api"), event)


def _json_body(event: Mapping[str, Any]) -> Any:
    body = event.get("body") or ""
    try:
        text = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body
        return json.loads(text)
    except (ValueError, RecursionError, binascii.Error) as error:  # not JSON, or nested too deep to parse
        raise BadRequest("the body must be a JSON object") from error


def cancel_batch(request_id: str) -> dict[str, Any]:
    from ocelot_sms import runtime  # boto3 and its clients

    return proxy_response(200, runtime.sender_service().cancel(request_id))


def _answer(result: BatchResult, event: Mapping[str, Any]) -> dict[str, Any]:
    """201 when Ocelot accepted every chunk (but those left out as suppressed); 202 when some chunk's
    outcome is unknown, it is still to be sent from the queue, or it is scheduled for later, with where
    to follow it."""
    status_url = _status_url(event, result.request_id)
    body = result.to_json() | {"statusUrl": status_url}
    if result.status in COMPLETE:
        return proxy_response(201, body)
    return proxy_response(202, body, {"Location": status_url})


def _status_url(event: Mapping[str, Any], request_id: str) -> str:
    """GET /batches/{requestId} on the same API and stage the request came in by."""
    headers = event.get("headers") or {}
    host = headers.get("host") or event.get("requestContext", {}).get("domainName", "")
    scheme = headers.get("x-forwarded-proto") or "https"
    stage = stage_name(event)
    return f"{scheme}://{host}{'/' + stage if stage else ''}{ROUTE[1]}/{quote(request_id, safe='')}"


def _api(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        method, path = route(event)
        if (method, path) == ROUTE:
            return create_batch(event, context)
        request_id = path.removeprefix(CANCEL[1])
        if method == CANCEL[0] and path.startswith(CANCEL[1]) and request_id and "/" not in request_id:
            return cancel_batch(unquote(request_id))
        raise NotFound("no such route")
    except DomainError as error:
        return proxy_response(*error_answer(error, ERRORS))
    except Exception:  # a bug or an outage nobody mapped: logged, and the caller learns nothing of it
        logger.exception("unexpected error")
        return proxy_response(500, INTERNAL_ERROR)


def _queue(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    # Imported before anything loads pydantic: Powertools' batch module builds its pydantic parser
    # models at import when pydantic is loaded (~50 ms of CPU).
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from ocelot_sms import runtime

    service = runtime.sender_service()
    service.register_context(context)

    def record_handler(record: SQSRecord) -> None:
        service.submit_queued(record.body, record.message_id)

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "Records" in event:
        return _queue(event, context)
    return _api(event, context)
