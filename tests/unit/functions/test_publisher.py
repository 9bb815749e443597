"""The publisher Lambda: from the table's stream (moto's, filtered as its event source is), each change
of a message's current status and each inbound text put on an EventBridge bus, whose rule delivers it
to an SQS queue (moto delivers put_events to SQS targets): what a school's rule would receive."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from functions.publisher import app as publisher_app
from ocelot_sms import runtime
from tests.unit.functions.conftest import Applier, Webhook, status, webhook_request
from tests.unit.support.aws import FakeContext
from tests.unit.support.flows import send
from tests.unit.support.ocelot import FakeOcelot
from tests.unit.support.stream import TableStream

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")

BUS = "ocelot-sms-events"


@pytest.fixture
def bus(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    """The stack's bus, with a rule forwarding every event of ours to a queue; returns a reader of what
    the queue got so far."""
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name=BUS)
    url = sqs.create_queue(QueueName="school-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="to-queue", EventBusName=BUS, EventPattern=json.dumps({"source": ["ocelot-sms"]}))
    events.put_targets(Rule="to-queue", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])

    def received() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    return received


@pytest.fixture
def publish(env: dict[str, str], lambda_context: FakeContext) -> Callable[[], dict[str, Any]]:
    stream = TableStream(env["TABLE_NAME"], "PublisherFunction")

    def invoke() -> dict[str, Any]:
        return dict(publisher_app.lambda_handler(stream.event(), lambda_context))

    return invoke


def test_status_changes_and_replies_reach_the_bus_as_documented_events(
    ocelot: FakeOcelot,
    webhook: Webhook,
    applier: Applier,
    publish: Callable[[], dict[str, Any]],
    bus: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a message sent (Ocelot accepted it), and Ocelot's callbacks: sent; then delivered with the
    # recipient's reply
    sent = send("events-1", 1)
    message_id, to = sent.messages[0].message_id, sent.messages[0].to
    assert message_id is not None
    first = [status("e-1", message_id, "sent", "2026-11-26T16:00:01Z", to=to)]
    assert webhook(webhook_request(first, request_id="wh-1"))[0] == 200
    assert applier() == {"batchItemFailures": []}
    body = [
        status("e-2", message_id, "delivered", "2026-11-26T16:00:02Z", to=to),
        {
            "name": "IncomingSms.received",
            "eventId": "e-3",
            "from": to,
            "to": "+15550000000",
            "text": "See you there",
            "dateTime": "2099-11-26T16:05:00Z",
        },
    ]
    assert webhook(webhook_request(body, request_id="wh-2"))[0] == 200
    assert applier() == {"batchItemFailures": []}

    # When the publisher gets the stream's records
    answer = publish()

    # Then nothing failed, and the bus's rule delivered each status the message had, and the reply
    assert answer == {"batchItemFailures": []}
    events = bus()
    assert sorted((e["detail-type"], e["detail"].get("status")) for e in events) == [
        ("Message Received", None),
        ("Message Status Changed", "accepted"),
        ("Message Status Changed", "delivered"),
        ("Message Status Changed", "sent"),
    ]
    accepted = next(e["detail"] for e in events if e["detail"].get("status") == "accepted")
    assert (accepted["messageId"], accepted["requestId"], accepted["ref"]) == (
        message_id,
        "events-1",
        "ref-0",
    )
    assert accepted["statusAt"] is not None
    changed = next(e for e in events if e["detail"].get("status") == "delivered")
    assert changed["source"] == "ocelot-sms"
    assert {k: changed["detail"][k] for k in ("messageId", "requestId", "ref", "recipient", "status")} == {
        "messageId": message_id,
        "requestId": "events-1",
        "ref": "ref-0",
        "recipient": to,
        "status": "delivered",
    }
    assert changed["detail"]["error"] is None
    received = next(e for e in events if e["detail-type"] == "Message Received")
    assert (received["detail"]["from"], received["detail"]["text"]) == (to, "See you there")
    assert received["detail"]["inReplyTo"]["requestId"] == "events-1"

    # And the publisher's own reads and the other records (raw deliveries, history) publish nothing more
    assert publish() == {"batchItemFailures": []}
    assert bus() == []


def test_an_event_the_bus_refuses_is_reported_for_the_stream_to_retry(
    ocelot: FakeOcelot,
    webhook: Webhook,
    applier: Applier,
    publish: Callable[[], dict[str, Any]],
    bus: Callable[[], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a status change, and EventBridge refusing every entry
    sent = send("events-2", 1)
    message_id = sent.messages[0].message_id
    assert message_id is not None
    assert webhook(webhook_request([status("e-9", message_id, "sent", "2026-11-26T16:00:01Z")]))[0] == 200
    assert applier() == {"batchItemFailures": []}
    client = runtime.events_client()
    monkeypatch.setattr(
        client,
        "put_events",
        lambda Entries: {"Entries": [{"ErrorCode": "ThrottlingException"} for _ in Entries]},
    )

    # When published; Then its records (the message accepted, its status sent) are batch item
    # failures, and nothing reached the queue
    answer = publish()
    assert len(answer["batchItemFailures"]) == 2
    assert bus() == []
