"""Redrive: the dead-letter queue's messages back to the send queue, unchanged, never lost."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ocelot_sms_cli.redrive import redrive_queue
from tests.unit.support.ocelot import phone
from tools.template_resources import create_queue_pair


@pytest.fixture
def queues(aws: dict[str, Any]) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs")
    queue_url, dlq_url = create_queue_pair(sqs, "SendQueue", "SendDeadLetterQueue", "test")
    return sqs, queue_url, dlq_url


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=300
        ).get("Messages", [])
        if not got:
            return messages
        messages.extend(got)


def fill(sqs: Any, url: str, count: int) -> list[str]:
    bodies = [
        json.dumps({"requestId": f"dead-{i}", "messages": [{"to": phone(i), "text": "é"}]})
        for i in range(count)
    ]
    for i, body in enumerate(bodies):
        attributes = {"origin": {"DataType": "String", "StringValue": f"school-{i}"}} if i % 2 else {}
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    return bodies


def test_redrive_moves_every_message_back_unchanged(queues: tuple[Any, str, str]) -> None:
    sqs, queue_url, dlq_url = queues
    bodies = fill(sqs, dlq_url, 23)
    assert redrive_queue(sqs, dlq_url, queue_url) == 23
    moved = drain(sqs, queue_url)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    origins = {json.loads(m["Body"])["requestId"]: m.get("MessageAttributes", {}) for m in moved}
    assert origins["dead-1"] == {"origin": {"DataType": "String", "StringValue": "school-1"}}
    assert origins["dead-2"] == {}
    assert drain(sqs, dlq_url) == []


@pytest.mark.parametrize("limit", [1, 5, 10, 11])
def test_redrive_moves_at_most_max_messages(queues: tuple[Any, str, str], limit: int) -> None:
    sqs, queue_url, dlq_url = queues
    fill(sqs, dlq_url, 15)
    assert redrive_queue(sqs, dlq_url, queue_url, max_messages=limit) == limit
    assert len(drain(sqs, queue_url)) == limit
    assert len(drain(sqs, dlq_url)) == 15 - limit


def test_redrive_of_an_empty_queue_moves_nothing(queues: tuple[Any, str, str]) -> None:
    sqs, queue_url, dlq_url = queues
    assert redrive_queue(sqs, dlq_url, queue_url) == 0


class RefusingQueue:
    """SQS whose SendMessageBatch refuses the entries whose body contains `refuse`."""

    def __init__(self, sqs: Any, refuse: str) -> None:
        self._sqs = sqs
        self._refuse = refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [e for e in Entries if self._refuse not in e["MessageBody"]]
        result: dict[str, Any] = self._sqs.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        result["Failed"] = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
            for e in Entries
            if self._refuse in e["MessageBody"]
        ]
        return result


def test_a_message_the_queue_refuses_stays_in_the_dlq(queues: tuple[Any, str, str]) -> None:
    sqs, queue_url, dlq_url = queues
    fill(sqs, dlq_url, 3)
    with pytest.raises(RuntimeError, match="refused 1 message"):
        redrive_queue(RefusingQueue(sqs, '"dead-1"'), dlq_url, queue_url)
    assert sorted(json.loads(m["Body"])["requestId"] for m in drain(sqs, queue_url)) == ["dead-0", "dead-2"]
    # The refused one is still in the DLQ (invisible until the redrive's visibility timeout passes)
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "1",
    )
