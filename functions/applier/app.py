"""Applier Lambda: each raw delivery the webhook stores, from the table's stream, applied to the
messages' statuses (ocelot_sms.applier). Only new raw deliveries reach it (the event source's filter).

A record whose events could not be stored (DynamoDB failing) is reported as a batch item failure:
the stream retries it and what follows, halving the batch, up to MaximumRetryAttempts; then its
position goes to the applier's dead-letter queue and `ocelot-sms replay` applies it from the table.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.runtime import applier_service
from ocelot_sms.store import raw_delivery_from_image

# A batch whose every record failed is answered like any other, so the stream retries it from the
# first record failed; bisecting on a function error stays for what crashes the function itself.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def record_handler(record: DynamoDBRecord) -> None:
    image = record.dynamodb.new_image if record.dynamodb else None
    if not image:
        raise ValueError("a stream record without its new image: the stream must be NEW_IMAGE")
    applier_service().apply(raw_delivery_from_image(image))


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    answer = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    failed = len(answer["batchItemFailures"])
    applied = len(event["Records"]) - failed
    metrics.add_metric(name="DeliveriesApplied", unit=MetricUnit.Count, value=applied)
    if failed:
        metrics.add_metric(name="DeliveriesNotApplied", unit=MetricUnit.Count, value=failed)
    logger.info("batch applied", extra={"applied": applied, "failed": failed})
    return answer
