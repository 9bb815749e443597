"""Moving the dead-letter queue's messages back to the send queue, from the client: the same on a
deployed stack and on the local stack (moto has no StartMessageMoveTask)."""

from __future__ import annotations

from typing import Any

SQS_BATCH = 10


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
