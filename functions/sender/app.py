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

from ocelot_sms.errors import (
    BadRequest,
    Conflict,
    InProgress,
    InvalidRequest,
    Rejected,
    StorageUnavailable,
    Unavailable,
)
from ocelot_sms.http import json_api, json_response
from ocelot_sms.observability import logger, metrics
from ocelot_sms.runtime import sender_service

ERRORS = {
    BadRequest: 400,
    InvalidRequest: 422,
    Conflict: 409,
    InProgress: 409,
    Rejected: 502,
    Unavailable: 503,
    StorageUnavailable: 503,
}

app = json_api(ERRORS)
processor = BatchProcessor(event_type=EventType.SQS)


@app.post("/batches")
def create_batch() -> Response[str]:
    try:
        payload = json.loads(app.current_event.decoded_body or "")
    except (ValueError, RecursionError) as error:  # not JSON, or nested too deep to parse
        raise BadRequest("the body must be a JSON object") from error
    service = sender_service()
    result = service.submit(service.parse(payload), origin="api")
    status = 200 if result.dry_run else 201 if result.status == "accepted" else 202
    return json_response(status, result.to_json())


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
