"""Ocelot's callbacks with chaos on: duplicates, out of order, arrays, lost answers, webhook 5xx.

Whatever happens on the way, every message must end in the sandbox's scripted status, and the events
in DynamoDB must be exactly the distinct events the sandbox sent: none lost, none stored twice. The
webhook stores each delivery; the stack's stream poller hands it to the applier, which applies it.
"""

from __future__ import annotations

import base64

import pytest
import requests

from ocelot_sms.contract import parse_instant
from tests.integration.support import batch, recipients
from tools.local.client import StackClient, wait_for
from tools.local.stack import StackInfo

CHAOS = {
    "duplicate_rate": 0.5,
    "out_of_order_rate": 0.5,
    "group_rate": 0.7,
    "lost_response_rate": 0.3,
    "step_delay_min": 0.05,
    "step_delay_max": 0.25,
    "callback_backoff_seconds": 0.1,
    "callback_max_attempts": 6,
}


@pytest.mark.parametrize("mode", ["before", "after"])
def test_chaos_ends_in_the_scripted_outcomes_with_no_event_lost_or_doubled(
    client: StackClient, mode: str
) -> None:
    client.sandbox_config(**CHAOS)
    # A third of the webhook requests fail once with a 503: before the function runs, or after it
    # stored the delivery (the answer is lost). Ocelot retries with the same events either way.
    client.webhook_faults(fail_rate=0.35, status=503, mode=mode, first_attempt_only=True)
    suffixes = (
        "0001",
        "0002",
        "0003",
        "0010",
        "0011",
        "0012",
        "0013",
        "0014",
        "0015",
        "0016",
        "0017",
        "0018",
    )
    body = batch(f"chaos-{mode}", recipients(*suffixes))
    assert client.post_batch(body).status_code == 201
    sent = wait_for(lambda: client.settled(body["requestId"], len(suffixes)), 15, "the batch")
    ids = {m.message_id for m in sent}
    record = client.wait_callbacks_done(sorted(ids), 60)

    reports = client.report(sent, record)
    assert [r.final for r in reports] == [r.expected for r in reports]
    assert all(r.ok for r in reports), [r for r in reports if not r.ok]

    # Zero lost, zero doubled: the distinct eventIds the sandbox sent == the event items stored.
    attempts = [a for a in record["callback_attempts"] if set(a["message_ids"]) <= ids]
    sent_events = {e for a in attempts for e in a["event_ids"]}
    stored = [e for r in reports for e in r.stored_event_ids]
    assert len(stored) == len(set(stored))
    assert set(stored) == sent_events
    assert sent_events == {e for m in ids for e in record["messages"][m]["event_ids"]}

    # The chaos did happen, and the webhook coped with it.
    assert not [a for a in attempts if a["outcome"] == "gave_up"]
    failed_first = [a for a in attempts if a["status_code"] == 503]
    assert failed_first, "no webhook 5xx was injected"
    retried = {a["delivery_id"] for a in attempts if a["attempt"] > 1}
    assert {a["delivery_id"] for a in failed_first} <= retried
    assert any(a["response_lost"] for a in attempts) or CHAOS["lost_response_rate"] == 0
    assert any(a["array"] for a in attempts)
    assert any(record["messages"][m]["out_of_order"] for m in ids)
    assert sum(r.duplicates_ignored for r in reports) > 0
    # Retries keep the original dateTime: the stored event time is the sandbox's.
    for report in reports:
        for event in client.store.get_message(report.message_id).events:
            original = record["events"][event.event_id]["date_time"]
            assert parse_instant(event.event_time or "") == parse_instant(original)


def test_webhook_refuses_wrong_credentials_and_accepts_the_token(
    client: StackClient, stack: StackInfo
) -> None:
    """Given a callback for a message of its own,
    When it comes with a wrong password, then with the URL's token, then twice in one array,
    Then the first is refused and nothing stored; the token is acknowledged with the delivery's id and
    applied; the array's two copies add nothing."""
    assert stack.webhook_url is not None
    event = {
        "name": "OutgoingSms.statusChanged",
        "eventId": f"evt-{stack.pid}-auth",
        "messageId": f"msg-{stack.pid}-auth",
        "status": "delivered",
        "dateTime": "2026-11-26T16:00:05Z",
    }
    wrong = "Basic " + base64.b64encode(b"ocelot:wrong").decode()
    refused = requests.post(stack.webhook_url, json=event, headers={"Authorization": wrong}, timeout=10)
    assert refused.status_code == 401
    client.settle_streams()
    assert client.store.get_message(event["messageId"]).events == ()

    token = stack.webhook_credentials["token"]
    accepted = requests.post(stack.webhook_url, params={"token": token}, json=event, timeout=10)
    assert accepted.status_code == 200
    assert accepted.json() == {"received": True, "deliveryId": accepted.json()["deliveryId"]}
    again = requests.post(stack.webhook_url, params={"token": token}, json=[event, event], timeout=10)
    assert again.status_code == 200
    assert again.json()["deliveryId"] != accepted.json()["deliveryId"]

    client.settle_streams()
    history = client.store.get_message(event["messageId"])
    assert [e.event_id for e in history.events] == [event["eventId"]]
    assert history.state is not None
    assert history.state.status == "delivered"
