"""What an operator does after day one: replay raw callbacks, redrive the dead-letter queue,
reconcile chunks whose outcome is unknown, and give up on messages that never finished."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ocelot_sms.contract import TERMINAL_STATUSES, CallbackError, DeliveryStatus, SendRequest, parse_callback
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.store import INTERRUPTED_REASON, ChunkRecord, ChunkStatus, DynamoStore, MessageRecord

if TYPE_CHECKING:
    from ocelot_sms.callbacks import CallbackService
    from ocelot_sms.ocelot_client import OcelotClient

SQS_BATCH = 10
# Statuses the stale-message sweep leaves alone.
_SETTLED = frozenset(s.value for s in TERMINAL_STATUSES | {DeliveryStatus.UNKNOWN})


# ---- replay ----------------------------------------------------------------------------------


def replay_deliveries(
    store: DynamoStore, service: CallbackService, since: datetime, until: datetime
) -> dict[str, Any]:
    """Every raw delivery received in [since, until] through the current parser. Idempotent: an
    event already stored is a duplicate; one the old parser missed or misread is added now."""
    report: dict[str, Any] = {"deliveries": 0, "events": 0, "new": 0, "duplicates": 0, "unparseable": []}
    day = since.astimezone(UTC).date()
    while day <= until.astimezone(UTC).date():
        for raw in store.raw_deliveries(day.isoformat()):
            received = datetime.fromisoformat(raw["receivedAt"].replace("Z", "+00:00"))
            if not since <= received <= until:
                continue
            report["deliveries"] += 1
            try:
                events = parse_callback(json.loads(raw["body"]))
            except (ValueError, RecursionError, CallbackError):
                report["unparseable"].append(raw["deliveryId"])
                continue
            outcomes = service.store_events(events, {"PK": raw["PK"], "SK": raw["SK"]})
            report["events"] += len(events)
            report["duplicates"] += sum(1 for o in outcomes if o.value == "duplicate")
            report["new"] += sum(1 for o in outcomes if o.value != "duplicate")
        day += timedelta(days=1)
    logger.info("replay finished", extra={k: v if k != "unparseable" else len(v) for k, v in report.items()})
    return report


# ---- dead-letter queue ------------------------------------------------------------------------


def redrive_queue(sqs: Any, dlq_url: str, queue_url: str, max_messages: int = 1000) -> int:
    """Move messages from the DLQ back to the queue: sent first, deleted from the DLQ after, so a
    failure in between duplicates a message (harmless: requests are idempotent) and never loses one."""
    moved = 0
    while moved < max_messages:
        received = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(SQS_BATCH, max_messages - moved),
            # Long polling asks every SQS server: a short poll may answer "empty" while messages wait.
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            break
        entries = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                **({"MessageAttributes": m["MessageAttributes"]} if m.get("MessageAttributes") else {}),
            }
            for i, m in enumerate(received)
        ]
        result = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        sent = {int(s["Id"]) for s in result.get("Successful", [])}
        if sent:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": received[i]["ReceiptHandle"]} for i in sorted(sent)],
            )
        moved += len(sent)
        if len(sent) < len(received):
            raise RuntimeError(
                f"the queue refused {len(received) - len(sent)} message(s); they stay in the DLQ"
            )
    return moved


# ---- reconciliation -----------------------------------------------------------------------------


def attach_ids(
    store: DynamoStore, request_id: str, chunk_index: int, batch_id: str, message_ids: list[str]
) -> int:
    """Resolve an unknown chunk with the ids found in Ocelot's Admin Portal (in the chunk's order)."""
    chunk = _unknown_chunk(store, request_id, chunk_index)
    wire = SendRequest.model_validate(chunk.payload)
    if len(message_ids) != len(wire.messages):
        raise ValueError(f"chunk has {len(wire.messages)} messages, got {len(message_ids)} ids")
    # Each id becomes a message's key: an empty or repeated one would merge or lose messages.
    if not batch_id.strip():
        raise ValueError("the Ocelot batch id is empty")
    if any(not m.strip() for m in message_ids):
        raise ValueError("a message id is empty")
    repeated = sorted({m for m in message_ids if message_ids.count(m) > 1})
    if repeated:
        raise ValueError(f"message ids repeat: {', '.join(repeated)}")
    store.put_messages(
        [
            MessageRecord(
                message_id=message_id,
                request_id=request_id,
                index=chunk.first_index + offset,
                ref=message.external_id,
                to=message.to,
                chunk_index=chunk_index,
                batch_id=batch_id,
            )
            for offset, (message_id, message) in enumerate(zip(message_ids, wire.messages, strict=True))
        ]
    )
    store.finish_chunk(
        ChunkRecord(
            request_id=request_id,
            index=chunk_index,
            status=ChunkStatus.ACCEPTED,
            size=chunk.size,
            first_index=chunk.first_index,
            batch_id=batch_id,
            message_ids=tuple(message_ids),
            reason="resolved by an operator",
        )
    )
    return len(message_ids)


def resend_chunk(
    store: DynamoStore, client: OcelotClient, request_id: str, chunk_index: int, timeout_seconds: float = 60.0
) -> dict[str, Any]:
    """Send an unknown chunk again, on an operator's explicit decision (recipients may get it twice).

    Returns the outcome: `accepted` (ids recorded), `unknown` again (payload still kept), or
    `not_sent` (Ocelot certainly did not take this resend; the chunk stays unknown, as the first send
    may still have been taken).
    """
    from ocelot_sms.ocelot_client import OcelotOutcomeUnknown, OcelotRejected, OcelotUnavailable

    chunk = _unknown_chunk(store, request_id, chunk_index)
    wire = SendRequest.model_validate(chunk.payload)
    try:
        response = client.send(wire, time.monotonic() + timeout_seconds)
    except OcelotOutcomeUnknown as error:
        store.finish_chunk(replace(chunk, status=ChunkStatus.UNKNOWN, reason=f"resend: {error}"))
        return {"status": "unknown", "reason": str(error)}
    except (OcelotRejected, OcelotUnavailable) as error:
        return {"status": ChunkStatus.NOT_SENT.value, "reason": str(error)}
    ids = [m.message_id for m in response.messages]
    if len(ids) != len(wire.messages):
        # Taken, but the ids cannot be matched by position (as in the Sender): still unknown, now with
        # Ocelot's batch id, for an operator to attach the ids from the Admin Portal.
        reason = f"resend: accepted, but {len(ids)} ids for {len(wire.messages)} messages"
        store.finish_chunk(
            replace(chunk, status=ChunkStatus.UNKNOWN, batch_id=response.batch_id, reason=reason)
        )
        return {"status": "unknown", "batchId": response.batch_id, "reason": reason}
    attach_ids(store, request_id, chunk_index, response.batch_id, ids)
    return {"status": "accepted", "batchId": response.batch_id, "messageIds": ids}


def _unknown_chunk(store: DynamoStore, request_id: str, chunk_index: int) -> ChunkRecord:
    chunk = store.get_chunk(request_id, chunk_index)
    if chunk is None:
        raise LookupError(f"no chunk {chunk_index} for request {request_id!r}")
    if chunk.status is ChunkStatus.SENDING:
        raise ValueError(
            f"chunk {chunk_index} of {request_id!r} is {chunk.status.value}: {INTERRUPTED_REASON}"
        )
    if chunk.status is not ChunkStatus.UNKNOWN:
        raise ValueError(f"chunk {chunk_index} of {request_id!r} is {chunk.status.value}, not unknown")
    if not chunk.payload:
        raise ValueError(
            "this chunk's payload was not kept (interrupted send): resubmit with a new requestId"
        )
    return chunk


# ---- messages that never finished --------------------------------------------------------------


def mark_stale_messages(
    store: DynamoStore, older_than_hours: int, lookback_days: int = 14, now: datetime | None = None
) -> int:
    """Messages accepted more than N hours ago with no terminal status are marked `unknown`.

    A later terminal callback still wins (unknown is not terminal); a chunk is swept once.
    """
    now = now or datetime.now(UTC)
    marked = 0
    for chunk in store.chunks_to_sweep(
        now - timedelta(days=lookback_days), now - timedelta(hours=older_than_hours)
    ):
        states = store.get_states(list(chunk.message_ids))
        for message_id in chunk.message_ids:
            state = states.get(message_id)
            if state is None or state.get("status") not in _SETTLED:
                marked += int(store.mark_unknown(message_id, now))
        store.swept(chunk)
    # Published every run, zero included: a dashboard or alarm sees the sweep ran.
    metrics.add_metric(name="MessagesMarkedUnknown", unit=MetricUnit.Count, value=marked)
    logger.info("stale messages marked", extra={"marked": marked, "olderThanHours": older_than_hours})
    return marked
