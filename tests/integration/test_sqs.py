"""The send queue: the poller hands messages to the real Sender with Lambda's partial-failure rules."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.support import batch, recipients
from tools.local.client import StackClient, wait_for
from tools.local.stack import StackInfo


def _sends(record: dict[str, Any], to: list[str]) -> list[int]:
    return [r["status"] for r in record["requests"] if r.get("recipients") == to]


def test_partial_failure_retries_only_the_failed_message(client: StackClient, stack: StackInfo) -> None:
    healthy, failing = recipients("0010", "0001"), recipients("0011", "0003")
    attempts = int(stack.function_env["MAX_SEND_ATTEMPTS"])
    # Ocelot answers 503 to every attempt of the first invocation, then recovers.
    client.sandbox_config(fail_recipients={failing[0]: {"status": 503, "times": attempts}})
    good, bad = batch("sqs-ok", healthy), batch("sqs-503", failing)
    queue_ids = client.enqueue_many([good, bad])

    sent = wait_for(lambda: client.settled(good["requestId"], 2), 20, "the healthy batch")
    sent += wait_for(lambda: client.settled(bad["requestId"], 2), 20, "the failing batch, on redelivery")
    assert wait_for(lambda: client.queue_depth(stack.queue_url) == (0, 0), 10, "the queue to drain")

    record = client.sandbox_record()
    assert _sends(record, healthy) == [201]  # never sent twice
    assert _sends(record, failing) == [503] * attempts + [201]

    # The first invocation got both messages and reported only the failing one.
    invocations = [i for i in client.invocations()["invocations"] if i["trigger"].startswith("sqs:")]
    reported = [i for i in invocations if queue_ids[1] in (i.get("batch_item_failures") or [])]
    assert reported, invocations
    assert queue_ids[0] not in reported[0]["batch_item_failures"]

    record = client.wait_callbacks_done([m.message_id for m in sent], 30)
    assert all(r.ok for r in client.report(sent, record))
    assert client.dead_letters() == []


def test_poison_message_reaches_the_dead_letter_queue(client: StackClient, stack: StackInfo) -> None:
    to = recipients("0010")
    # Ocelot refuses this batch every time: each receive fails, until the redrive policy moves it.
    client.sandbox_config(
        fail_recipients={to[0]: {"status": 400, "times": -1, "message": "to: not a mobile"}}
    )
    body = batch("sqs-poison", to)
    client.enqueue(body)
    max_receives = int(stack.sqs["max_receive_count"])

    dead = wait_for(lambda: client.dead_letters() or None, 45, "the poison message in the DLQ", interval=0.5)
    assert [json.loads(m["Body"])["requestId"] for m in dead] == [body["requestId"]]
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= max_receives
    assert _sends(client.sandbox_record(), to) == [400] * max_receives
    assert client.queue_depth(stack.queue_url) == (0, 0)
    assert [c.status.value for c in client.chunks(body["requestId"])] == ["not_sent"]
    # Empty the DLQ for the tests that follow.
    client.sqs.purge_queue(QueueUrl=stack.dlq_url)


def test_malformed_message_is_recorded_and_not_retried(client: StackClient, stack: StackInfo) -> None:
    queue_id = client.enqueue("{not json")

    def rejection() -> dict[str, Any] | None:
        item = client.dynamodb.get_item(
            TableName=stack.tables["messages"],
            Key={"PK": {"S": f"REJECTED#{queue_id}"}, "SK": {"S": "#REJECTED"}},
        ).get("Item")
        return dict(item) if item else None

    item = wait_for(rejection, 15, "the rejection record")
    assert item["body"]["S"] == "{not json"
    assert wait_for(lambda: client.queue_depth(stack.queue_url) == (0, 0), 10, "the queue to drain")
    assert client.dead_letters() == []
