"""Publisher Lambda: from the table's stream, each message accepted by Ocelot, each change of a message's
current status and each inbound text, published to the stack's EventBridge bus (ocelot_sms.publisher).
Only those reach it (the event source's filter).

The records of a batch are published together, ten events to a PutEvents request, rather than record
by record as Powertools' batch processor would: a record whose event EventBridge refused is reported
as a batch item failure, and the stream retries it (then the on-failure queue keeps its position).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.observability import logger, metrics
from ocelot_sms.publisher import Accepted, Change
from ocelot_sms.runtime import publisher_service
from ocelot_sms.store import change_from_image


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    changes: list[Change] = []
    sequences: list[str | None] = []
    for record in DynamoDBStreamEvent(event).records:
        change = change_from_image((record.dynamodb.new_image if record.dynamodb else None) or {})
        if change is None:  # none passes the filter; one that comes anyway has nothing to publish
            continue
        changes.append(Accepted(*change) if isinstance(change, tuple) else change)
        sequences.append(record.dynamodb.sequence_number if record.dynamodb else None)
    failed = publisher_service().publish(changes)
    return {"batchItemFailures": [{"itemIdentifier": sequences[i]} for i in failed]}
