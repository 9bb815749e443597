"""Beyond sending, on one local stack: a send scheduled a few seconds ahead is fired by the stack's
scheduler and sent; a scheduled send cancelled is never sent; a STOP reply suppresses its number for the
next request; status changes and replies reach the stack's event bus; replies are listed by /inbound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.support import batch, recipients
from tools.local.client import StackClient, wait_for


@pytest.fixture(autouse=True)
def callbacks_delivered(client: StackClient) -> Iterator[None]:
    """Each test ends once the sandbox has delivered every callback its sends caused: none is left to
    share a delivery with the next test's."""
    yield
    wait_for(lambda: client.sandbox_record()["pending"] == 0, 60, "the callbacks to be delivered")


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _sent_to(client: StackClient, to: list[str]) -> list[int]:
    return [r["status"] for r in client.sandbox_record()["requests"] if r.get("recipients") == to]


def test_a_scheduled_send_is_sent_at_its_time(client: StackClient) -> None:
    # Given a request for three seconds from now
    to = recipients("0010")
    body = batch("at", to, sendAt=_iso(datetime.now(UTC) + timedelta(seconds=3)))

    # When it is submitted
    answered = client.post_batch(body)

    # Then it is stored and scheduled at once, and not sent yet
    assert answered.status_code == 202, answered.text
    assert answered.json()["status"] == "scheduled"
    assert _sent_to(client, to) == []
    status = client.api_get(f"/batches/{body['requestId']}").json()
    assert status["schedule"]["status"] == "scheduled"
    # And the same request submitted again is the same one scheduled send
    assert client.post_batch(body).json()["status"] == "scheduled"

    # When its time comes, the stack's scheduler fires it and the Sender sends it once
    wait_for(lambda: client.settled(body["requestId"], 1), 30, "the scheduled send")
    assert _sent_to(client, to) == [201]


def test_a_cancelled_send_is_never_sent(client: StackClient) -> None:
    # Given a request scheduled two seconds ahead
    to = recipients("0010")
    body = batch("cancel", to, sendAt=_iso(datetime.now(UTC) + timedelta(seconds=2)))
    assert client.post_batch(body).status_code == 202

    # When it is cancelled before its time
    cancelled = client.cancel_batch(body["requestId"])

    # Then the cancel is answered, and nothing is sent after its time
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    wait_for(
        lambda: client.api_get(f"/batches/{body['requestId']}").json()["schedule"]["status"] == "cancelled",
        10,
        "the cancel to show",
    )
    assert client.post_batch(batch("after", recipients("0010"))).status_code == 201
    assert _sent_to(client, to) == []
    # And a request sent at once cannot be cancelled
    now = batch("now", recipients("0010"))
    assert client.post_batch(now).status_code == 201
    assert client.cancel_batch(now["requestId"]).status_code == 409


def _published(client: StackClient, wanted: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The first event of each detail-type in `wanted` whose detail `wanted[type]` matches, as the bus's
    check rule delivered them (every event is read once, so all are looked at together)."""
    found: dict[str, dict[str, Any]] = {}

    def all_found() -> dict[str, dict[str, Any]] | None:
        for event in client.published_events():
            kind = event["detail-type"]
            if kind in wanted and kind not in found and wanted[kind](event["detail"]):
                found[kind] = event
        return found if len(found) == len(wanted) else None

    return wait_for(all_found, 30, f"the events {sorted(wanted)}")


def test_a_stop_reply_suppresses_the_number_and_is_published(client: StackClient) -> None:
    # Given a recipient who texts STOP back after our message
    to = recipients("0010")
    client.sandbox_config(replies={to[0][-4:]: "STOP"})
    first = batch("stop", to)
    sent = client.post_batch(first)
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["messages"][0]["messageId"]

    # When the reply arrives, it is listed by /inbound, linked to the message it answers
    reply = wait_for(lambda: next((r for r in client.inbound() if r["from"] == to[0]), None), 30, "the reply")
    assert reply["text"] == "STOP"
    assert reply["inReplyTo"]["requestId"] == first["requestId"]
    assert reply["inReplyTo"]["ref"] == first["messages"][0]["ref"]

    # And the next request to that number (twice) leaves it out, reported as suppressed, not sent
    client.sandbox_config(replies={})
    twice = batch("next", [to[0], to[0], *recipients("0010")])
    answered = client.post_batch(twice)
    assert answered.status_code == 201, answered.text
    statuses = [m["status"] for m in answered.json()["messages"]]
    assert statuses == ["suppressed", "suppressed", "accepted"]
    assert all(to[0] not in (r.get("recipients") or []) for r in client.sandbox_record()["requests"][-1:])

    # And the status changes and the reply reached the event bus, as documented events
    events = _published(
        client,
        {
            "Message Status Changed": lambda d: d["messageId"] == message_id,
            "Message Received": lambda d: d["from"] == to[0],
        },
    )
    changed, received = events["Message Status Changed"], events["Message Received"]
    assert changed["source"] == "ocelot-sms"
    assert (changed["detail"]["requestId"], changed["detail"]["ref"]) == (first["requestId"], "stop-0")
    assert received["detail"]["inReplyTo"]["requestId"] == first["requestId"]
