"""Quiet hours on a stack: a send inside them is scheduled for their end, an urgent one goes now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.support import batch, recipients
from tools.local.client import StackClient
from tools.local.stack import StackInfo


def test_a_send_inside_quiet_hours_waits_for_their_end_unless_urgent(
    client: StackClient, stack: StackInfo
) -> None:
    # Given quiet hours from an hour ago to an hour from now
    window = stack.function_env["QUIET_HOURS"]
    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=1)

    # When a request is sent now
    body = batch("quiet", recipients("0010"))
    answered = client.post_batch(body)

    # Then it is scheduled for the end of the window, reported as quiet hours, and not sent
    assert answered.status_code == 202, answered.text
    answer = answered.json()
    assert (answer["status"], answer["scheduleReason"]) == ("scheduled", "quiet_hours")
    scheduled_for = datetime.fromisoformat(answer["scheduledFor"].replace("Z", "+00:00"))
    assert abs(scheduled_for - end) <= timedelta(minutes=1), (window, answer["scheduledFor"])
    assert all(
        r.get("recipients") != [m["to"] for m in body["messages"]]
        for r in client.sandbox_record()["requests"]
    )
    assert client.cancel_batch(body["requestId"]).status_code == 200

    # When an urgent request is sent now; Then it goes at once
    urgent = batch("urgent", recipients("0010"), urgent=True)
    sent = client.post_batch(urgent)
    assert sent.status_code == 201, sent.text
    assert [m["status"] for m in sent.json()["messages"]] == ["accepted"]
