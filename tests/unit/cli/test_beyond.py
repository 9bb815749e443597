"""`ocelot-sms send --at`, `cancel`, `suppression list|add|remove` and `inbound`, through CliRunner
against the real Lambda handlers over moto."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ocelot_sms.store import Suppression, SuppressionSource
from ocelot_sms_cli.exits import Exit
from ocelot_sms_cli.target import Target
from tests.unit.support.cli import ended, rows_csv, run
from tests.unit.support.flows import deliver, send
from tests.unit.support.ocelot import FakeOcelot, phone

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


@pytest.fixture
def scheduler(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's schedule group, as the Sender's environment names it."""
    monkeypatch.setenv("SCHEDULE_GROUP_NAME", "sends")
    monkeypatch.setenv("SCHEDULE_ROLE_ARN", "arn:aws:iam::123456789012:role/schedules")
    monkeypatch.setenv("SEND_QUEUE_ARN", "arn:aws:sqs:us-east-1:123456789012:send")
    import boto3

    boto3.client("scheduler").create_schedule_group(Name="sends")


@pytest.mark.usefixtures("scheduler")
def test_send_at_schedules_then_cancel_cancels(
    target: Target, stack_api: list[str], ocelot: FakeOcelot, tmp_path: Path
) -> None:
    # Given a file of three rows, to be sent in an hour
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()
    csv_file = rows_csv(tmp_path, 3)

    # When sent with --at
    result = run("--local", "send", str(csv_file), "--send-id", "later", "--at", at)

    # Then it is scheduled, nothing went to Ocelot, exit 0
    ended(result, Exit.DONE, "scheduled")
    assert ocelot.sent == []
    ended(run("--local", "status", "later"), Exit.DONE, "scheduled")

    # When cancelled; Then every part is cancelled, exit 0; status shows it
    ended(run("--local", "cancel", "later"), Exit.DONE, "send later: 1 part cancelled")
    ended(run("--local", "status", "later"), Exit.DONE, "cancelled")


@pytest.mark.parametrize(
    ("at", "says"),
    [("2026-11-26T09:00:00", "has no offset"), ("thursday", "is not a time")],
)
def test_send_at_needs_a_time_with_its_offset(target: Target, tmp_path: Path, at: str, says: str) -> None:
    # Given / When a time without an offset, or not a time; Then invalid input, nothing sent
    ended(
        run("--local", "send", str(rows_csv(tmp_path, 1)), "--send-id", "x", "--at", at), Exit.INVALID, says
    )


def test_cancel_of_a_send_made_at_once_is_a_conflict(
    target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    # Given a send made at once; When cancelled; Then exit 5 saying it could not be
    send("at-once", 1)
    ended(run("--local", "cancel", "at-once"), Exit.CONFLICT, "could not be cancelled")
    # And an unknown id is invalid input
    ended(run("--local", "cancel", "nothing-of-that-name"), Exit.INVALID, "no send or batch")


def test_suppression_add_list_remove(target: Target, stack_api: list[str], ocelot: FakeOcelot) -> None:
    # Given two numbers added, one as typed locally
    ended(run("--local", "suppression", "add", "(555) 000-0001", "--reason", "asked at the desk"), Exit.DONE)
    ended(run("--local", "suppression", "add", phone(2)), Exit.DONE, "****0002 suppressed")

    # When listed in each output
    table = run("--local", "suppression", "list")
    as_json = run("--local", "suppression", "list", "--output", "json", "--show-numbers")
    as_csv = run("--local", "suppression", "list", "--output", "csv")

    # Then both are listed, masked unless asked, with why
    ended(table, Exit.DONE, "****0001", "an operator", "asked at the desk", "2 numbers suppressed")
    assert phone(1) not in table.output
    listed = json.loads(as_json.output)["suppressions"]
    assert [(s["number"], s["source"]) for s in listed] == [(phone(1), "operator"), (phone(2), "operator")]
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [r["reason"] for r in rows] == ["asked at the desk", "added by an operator"]

    # And a send leaves them out, reporting them suppressed
    result = send("after-suppression", 3)
    assert [m.status.value for m in result.messages] == ["accepted", "suppressed", "suppressed"]

    # When removed; Then no longer listed; removing again, or a number that is none, is invalid
    ended(run("--local", "suppression", "remove", phone(1)), Exit.DONE, "no longer suppressed")
    ended(run("--local", "suppression", "remove", phone(1)), Exit.INVALID, "is not suppressed")
    ended(run("--local", "suppression", "add", "12"), Exit.INVALID, "is not a phone number")
    assert "****0001" not in run("--local", "suppression", "list").output


def test_inbound_lists_replies_with_the_send_they_answer(
    target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    # Given a message sent, and its recipient's reply
    sent = send("asked", 1)
    reply = {
        "name": "IncomingSms.received",
        "eventId": "in-1",
        "from": sent.messages[0].to,
        "to": "+15550000000",
        "text": "Which room?",
        "dateTime": datetime.now(UTC).isoformat(),
    }
    deliver([reply], "d-in")

    # When listed as a table, JSON and CSV
    table = run("--local", "inbound")
    as_json = run("--local", "inbound", "--output", "json", "--since", "2020-01-01")
    as_csv = run("--local", "inbound", "--output", "csv", "--show-numbers")

    # Then the reply is there, masked, with the request and ref it answers
    ended(table, Exit.DONE, "Which room?", "****0000", "asked · ref ref-0", "1 text received")
    [listed] = json.loads(as_json.output)["messages"]
    assert (listed["text"], listed["inReplyTo"]["requestId"]) == ("Which room?", "asked")
    [row] = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert (row["from"], row["request_id"], row["ref"]) == (phone(0), "asked", "ref-0")
    # And a since that is no time is invalid input
    ended(run("--local", "inbound", "--since", "yesterday"), Exit.INVALID, "is not an ISO date")


def test_a_suppression_from_a_callback_is_listed_with_its_source(
    target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    # Given a number suppressed by a STOP reply
    from ocelot_sms.runtime import store

    store().suppress(
        Suppression(phone(7), SuppressionSource.REPLY, "2026-11-26T16:00:00Z", reason="replied STOP")
    )

    # When listed; Then it says why
    ended(run("--local", "suppression", "list"), Exit.DONE, "replied with an opt-out word", "replied STOP")
