"""Callbacks through the webhook and the applier: the webhook stores each delivery and answers; the
stack's stream poller hands it to the applier as Lambda's event source mapping does (filter, partial
batch failures, retries, on-failure queue); the applier applies each item on its own.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ocelot_sms.contract import parse_instant
from ocelot_sms.settings import Settings
from tests.integration.support import ocelot_sms, post_callback, raw_delivery
from tools.local.client import StackClient, wait_for
from tools.local.stack import StackInfo

APPLIER_DLQ = "ApplierDeadLetterQueue"


def status_item(message_id: str, status: str, at: datetime | str, **extra: Any) -> dict[str, Any]:
    """A status callback item as Ocelot sends it, with an eventId of its own."""
    return {
        "name": "OutgoingSms.statusChanged",
        "eventId": f"evt-{uuid.uuid4().hex[:12]}",
        "batchId": "integration-batch",
        "messageId": message_id,
        "to": "+15551230010",
        "from": "+15550000000",
        "status": status,
        "dateTime": at if isinstance(at, str) else at.isoformat(),
        **extra,
    }


def new_message_id() -> str:
    return f"msg-{uuid.uuid4().hex[:12]}"


def status_of(client: StackClient, message_id: str) -> str | None:
    state = client.store.get_message(message_id).state
    return state.status if state else None


def applier_failures(client: StackClient, after: int) -> list[str]:
    """Sequence numbers the applier reported failed, in its invocations after the `after` first."""
    applier = [i for i in client.invocations()["invocations"] if i["function"] == "ApplierFunction"]
    return [s for i in applier[after:] for s in i.get("batch_item_failures") or []]


def applier_invocations(client: StackClient) -> int:
    return sum(1 for i in client.invocations()["invocations"] if i["function"] == "ApplierFunction")


def stream_source(stack: StackInfo) -> dict[str, Any]:
    """The applier's mapping on the table's stream (the publisher's is the other)."""
    [source] = [s for s in stack.streams["sources"] if s["function"] == "ApplierFunction"]
    return dict(source)


def test_a_malformed_item_is_recorded_on_its_delivery_and_its_neighbours_are_applied(
    client: StackClient, stack: StackInfo
) -> None:
    """Given an array of four items: an event, a bare string, an item with no eventId, an event,
    When it is posted to the webhook,
    Then it is acknowledged; once applied, both events moved their messages and the delivery records
    the two malformed items (by position) as its problems."""
    first, last = new_message_id(), new_message_id()
    now = datetime.now(UTC)
    items: list[Any] = [
        status_item(first, "delivered", now),
        "not an event",
        {"status": "sent", "messageId": last},
        status_item(last, "sent", now),
    ]

    response = post_callback(stack, json.dumps(items))

    assert response.status_code == 200, response.text
    client.settle_streams()
    assert (status_of(client, first), status_of(client, last)) == ("delivered", "sent")
    raw = raw_delivery(client, stack, response.json()["deliveryId"])
    assert (raw["type"], raw["problemCount"]) == ("raw", 2)
    assert [problem[:3] for problem in raw["problems"]] == ["[1]", "[2]"]


def test_a_callback_dated_far_in_the_future_is_ordered_as_received(
    client: StackClient, stack: StackInfo
) -> None:
    """Given a `failed` event dated in 2099 (a clock gone wrong at Ocelot), then a `delivered` event
    dated a minute after now (within CLOCK_SKEW_SECONDS),
    When both are posted,
    Then `delivered` wins: the 2099 event is ordered at the moment it was received, and keeps its own
    dateTime as reported."""
    skew = int(stack.function_env["CLOCK_SKEW_SECONDS"])
    message = new_message_id()
    future = status_item(message, "failed", "2099-01-01T00:00:00Z")
    soon = status_item(message, "delivered", datetime.now(UTC) + timedelta(seconds=skew / 5))

    assert post_callback(stack, json.dumps(future)).status_code == 200
    assert post_callback(stack, json.dumps(soon)).status_code == 200

    client.settle_streams()
    history = client.store.get_message(message)
    assert history.state is not None
    assert (history.state.status, history.state.event_id) == ("delivered", soon["eventId"])
    [stored] = [e for e in history.events if e.event_id == future["eventId"]]
    assert stored.reported_time is not None
    assert parse_instant(stored.reported_time) == parse_instant(future["dateTime"])
    assert parse_instant(stored.event_time or "") < parse_instant(soon["dateTime"])


def test_a_gzip_encoded_callback_is_applied(client: StackClient, stack: StackInfo) -> None:
    """Given an array of two events, gzip-compressed, with `Content-Encoding: gzip`,
    When it is posted,
    Then it is acknowledged and both events are applied."""
    first, second = new_message_id(), new_message_id()
    now = datetime.now(UTC)
    body = gzip.compress(
        json.dumps([status_item(first, "delivered", now), status_item(second, "undelivered", now)]).encode()
    )

    response = post_callback(stack, body, {"Content-Encoding": "gzip"})

    assert response.status_code == 200, response.text
    client.settle_streams()
    assert (status_of(client, first), status_of(client, second)) == ("delivered", "undelivered")
    raw = raw_delivery(client, stack, response.json()["deliveryId"])
    assert (raw["type"], raw.get("problemCount")) == ("raw", None)


def test_a_body_over_the_limit_is_413_and_its_start_is_kept(client: StackClient, stack: StackInfo) -> None:
    """Given an event padded one byte over WEBHOOK_MAX_BODY_BYTES,
    When it is posted,
    Then the webhook answers 413 with the delivery's id, keeps its start as `raw_truncated` with its
    real size, and the applier never sees it."""
    limit = int(stack.function_env.get("WEBHOOK_MAX_BODY_BYTES") or Settings("-").webhook_max_body_bytes)
    message = new_message_id()
    item = status_item(message, "delivered", datetime.now(UTC), pad="")
    padding = limit + 1 - len(json.dumps(item))
    body = json.dumps({**item, "pad": "x" * padding})
    assert len(body) == limit + 1

    response = post_callback(stack, body)

    assert response.status_code == 413, response.text
    delivery_id = response.json()["details"]["deliveryId"]
    raw = raw_delivery(client, stack, delivery_id)
    assert (raw["type"], raw["truncatedFrom"]) == ("raw_truncated", limit + 1)
    client.settle_streams()
    assert client.store.get_message(message).events == ()


@contextlib.contextmanager
def refused_writes(client: StackClient, stack: StackInfo) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    """A callback posted while DynamoDB refuses every write of its event (500): the message id, the
    item and the sequence numbers the applier reported failed; DynamoDB recovers on the way out."""
    message = new_message_id()
    item = status_item(message, "delivered", datetime.now(UTC))
    before = applier_invocations(client)
    client.storage_faults(
        reset=True, rate=1.0, errors=["InternalServerError"], sk_prefixes=[f"EVT#{item['eventId']}"]
    )
    try:
        assert post_callback(stack, json.dumps(item)).status_code == 200
        failed = wait_for(
            lambda: applier_failures(client, before) or None, 30, "the applier to report a failure"
        )
        yield message, item, failed
    finally:
        client.storage_faults(reset=True)


def test_a_delivery_the_applier_fails_on_is_retried_from_the_stream(
    client: StackClient, stack: StackInfo
) -> None:
    """Given DynamoDB refusing every write of one event (500), so the applier reports its record failed,
    When the callback is posted, and DynamoDB recovers after that first failure,
    Then the stream poller hands the record over again and the event is applied."""
    before = applier_invocations(client)
    with refused_writes(client, stack) as (message, item, failed):
        pass

    client.settle_streams()
    assert len(failed) >= 1
    assert status_of(client, message) == "delivered"
    history = client.store.get_message(message)
    assert [e.event_id for e in history.events] == [item["eventId"]]
    # The record came back: some later invocation of the applier took it without failing.
    assert applier_invocations(client) > before + len(failed)


def test_a_delivery_failing_every_retry_goes_to_the_on_failure_queue_and_replay_applies_it(
    client: StackClient, stack: StackInfo, operator: Path
) -> None:
    """Given DynamoDB refusing every write of one event for as long as it takes,
    When the callback is posted,
    Then after MaximumRetryAttempts retries its stream position goes to the applier's on-failure queue
    (Lambda's invocation record) and the stream moves on; once DynamoDB is back, the operator's
    `ocelot-sms replay` applies the delivery from the table."""
    source = stream_source(stack)
    since = datetime.now(UTC) - timedelta(seconds=5)
    with refused_writes(client, stack) as (message, _item, failed):

        def sent_on() -> dict[str, Any] | None:
            for queued in client.queue_messages(APPLIER_DLQ):
                document: dict[str, Any] = json.loads(queued["Body"])
                if document["DDBStreamBatchInfo"]["startSequenceNumber"] == failed[0]:
                    return document
            return None

        document = wait_for(sent_on, 90, "the record's metadata in the on-failure queue", interval=0.5)
    client.sqs.purge_queue(QueueUrl=stack.queues[APPLIER_DLQ])

    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == source["maximum_retry_attempts"] + 1
    assert document["requestContext"]["functionArn"].endswith(":function:ApplierFunction")
    assert document["DDBStreamBatchInfo"]["streamArn"] == source["stream_arn"]
    client.settle_streams()
    assert client.store.get_message(message).events == ()

    replayed = ocelot_sms("replay", "--since", since.isoformat())

    assert replayed.exit_code == 0, replayed.stderr
    assert json.loads(replayed.output)["new"] >= 1
    assert status_of(client, message) == "delivered"


@pytest.fixture(autouse=True)
def no_storage_faults(client: StackClient) -> None:
    client.storage_faults(reset=True)
