"""Sender Lambda: POST /batches (API Gateway HTTP API, IAM auth) and the send queue (SQS)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.http import json_api, json_response
from ocelot_sms.models import ErrorResponse, RequestInvalid
from ocelot_sms.observability import logger, metrics
from ocelot_sms.runtime import sender_service
from ocelot_sms.sender import FailureKind, SubmitFailed

app = json_api()
processor = BatchProcessor(event_type=EventType.SQS)

_STATUS_BY_FAILURE = {
    FailureKind.CONFLICT: 409,
    FailureKind.IN_PROGRESS: 409,
    FailureKind.REJECTED: 502,
    FailureKind.UNAVAILABLE: 503,
}


@app.post("/batches")
def create_batch() -> Response[str]:
    try:
        payload = json.loads(app.current_event.decoded_body or "")
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        return json_response(
            400, ErrorResponse(error="bad_request", message="the body must be a JSON object").to_json()
        )
    service = sender_service()
    result = service.submit(service.parse(payload), origin="api")
    status = 200 if result.dry_run else 201 if result.status == "accepted" else 202
    return json_response(status, result.to_json())


@app.exception_handler(RequestInvalid)
def invalid_request(error: RequestInvalid) -> Response[str]:
    return json_response(
        422,
        ErrorResponse(
            error="invalid_request", message="the request has invalid fields", problems=error.problems
        ).to_json(),
    )


@app.exception_handler(SubmitFailed)
def submit_failed(error: SubmitFailed) -> Response[str]:
    details: dict[str, Any] = {}
    if error.result is not None:
        details["result"] = error.result.to_json()
    if error.ocelot_error is not None:
        details["ocelot"] = error.ocelot_error.to_wire()
    headers = (
        {"Retry-After": str(int(error.retry_after or 1))}
        if error.kind in (FailureKind.UNAVAILABLE, FailureKind.IN_PROGRESS)
        else None
    )
    body = ErrorResponse(error=error.kind.value, message=str(error), details=details or None).to_json()
    return json_response(_STATUS_BY_FAILURE[error.kind], body, headers)


def record_handler(record: SQSRecord) -> None:
    sender_service().submit_queued(record.body, record.message_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    sender_service().register_context(context)
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    return app.resolve(event, context)
