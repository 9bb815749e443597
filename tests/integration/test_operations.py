"""Operations against a running local stack, over its real endpoints.

The status API is read over HTTP through the local API front (the template's GET routes, served by
the real StatusFunction); the `ocelot-sms` CLI runs with `--local`, finding the stack through
.local/stack.json as an operator's shell would.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ocelot_sms_cli.main import cli
from tests.integration.support import batch, ocelot_sms, recipients, request_id
from tools.local.client import StackClient, wait_for
from tools.local.stack import StackInfo

# Final status by the recipient's last four digits (tools/local/sandbox.py); anything else: delivered.
SUFFIXES = ("0001", "0002", "0003", "0010", "0011", "0012", "0013")
EXPECTED_COUNTS = {"undelivered": 1, "failed": 1, "opted_out": 1, "delivered": 4}


def get(client: StackClient, stack: StackInfo, path: str, **query: str) -> tuple[int, dict[str, Any]]:
    response = client.http.get(f"{stack.api_url}{path}", params=query, timeout=client.http_timeout)
    return response.status_code, response.json()


@pytest.fixture(scope="module")
def delivered_batch(client: StackClient) -> dict[str, Any]:
    """Seven messages sent through the API (two Ocelot batches), every callback delivered."""
    body = batch("ops", recipients(*SUFFIXES))
    response = client.post_batch(body)
    assert response.status_code == 201, response.text
    sent = wait_for(lambda: client.settled(body["requestId"], len(SUFFIXES)), 15, "the batch")
    record = client.wait_callbacks_done([m.message_id for m in sent], 60)
    return {"request_id": body["requestId"], "sent": sent, "record": record}


# ---- the status API over HTTP ---------------------------------------------------------------------


def test_get_batch_counts_the_sandboxs_scripted_outcomes(
    client: StackClient, stack: StackInfo, delivered_batch: dict[str, Any]
) -> None:
    # Given a batch whose callbacks have all arrived; When it is read through the local API front
    code, body = get(client, stack, f"/batches/{delivered_batch['request_id']}")

    # Then the counts are the sandbox's scripted outcomes, message by message
    assert code == 200, body
    record, sent = delivered_batch["record"], delivered_batch["sent"]
    scripted = {m.message_id: record["outcomes"][m.message_id] for m in sent}
    assert body["counts"] == dict(Counter(scripted.values())) == EXPECTED_COUNTS
    assert {m["messageId"]: m["status"] for m in body["messages"]} == scripted
    assert [c["status"] for c in body["chunks"]] == ["accepted", "accepted"]  # OcelotMaxMessages=5
    assert body["unknownChunks"] == []
    assert body["nextCursor"] is None


def test_get_batch_pages_cover_every_message_once(
    client: StackClient, stack: StackInfo, delivered_batch: dict[str, Any]
) -> None:
    path, query = f"/batches/{delivered_batch['request_id']}", {"limit": "3"}
    pages: list[dict[str, Any]] = []
    while True:
        code, page = get(client, stack, path, **query)
        assert code == 200, page
        pages.append(page)
        if not page["nextCursor"]:
            break
        query["cursor"] = page["nextCursor"]
    assert [len(p["messages"]) for p in pages] == [3, 3, 1]
    assert [m["index"] for p in pages for m in p["messages"]] == list(range(len(SUFFIXES)))


def test_get_message_has_the_history_the_sandbox_sent(
    client: StackClient, stack: StackInfo, delivered_batch: dict[str, Any]
) -> None:
    # Given the message scripted to end undelivered (queued, sent, undelivered)
    message = next(m for m in delivered_batch["sent"] if m.to.endswith("0001"))
    planned = delivered_batch["record"]["messages"][message.message_id]

    code, body = get(client, stack, f"/messages/{message.message_id}")

    assert code == 200, body
    assert (body["status"], body["errorCode"], body["ref"]) == ("undelivered", "30003", message.ref)
    assert [e["status"] for e in body["history"]] == ["queued", "sent", "undelivered"]
    assert sorted(e["eventId"] for e in body["history"]) == sorted(planned["event_ids"])
    times = [e["eventTime"] for e in body["history"]]
    assert times == sorted(times)
    assert all(e["event"]["eventId"] == e["eventId"] for e in body["history"])


def test_the_status_api_refuses_bad_requests_and_unknown_ids(
    client: StackClient, stack: StackInfo, delivered_batch: dict[str, Any]
) -> None:
    path = f"/batches/{delivered_batch['request_id']}"
    assert get(client, stack, path, limit="0")[0] == 400
    assert get(client, stack, path, cursor="not-a-cursor")[0] == 400
    assert get(client, stack, "/batches/never-sent-anything")[0] == 404
    assert get(client, stack, "/messages/no-such-message")[0] == 404


def test_the_sweep_runs_in_the_stack_and_marks_nothing_recent(client: StackClient, stack: StackInfo) -> None:
    response = client.http.post(f"{stack.control_url}/_local/invoke/SweepFunction", timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["payload"] == {"marked": 0}


# ---- the CLI, --local ---------------------------------------------------------------------------


_blocks = itertools.count(200)


def us_numbers(*suffixes: str) -> list[str]:
    """Numbers the CLI can text (+1 555 BBB ssss: ten digits, as in the US), a block per call."""
    block = next(_blocks)
    return [f"+1555{block:03d}{suffix}" for suffix in suffixes]


def test_cli_sends_through_the_queue_and_shows_the_outcomes(client: StackClient, operator: Path) -> None:
    # Given a CSV of 7 rows
    to = us_numbers(*SUFFIXES)
    rows = "\n".join(f"{number},cli test {n},cli-{n}" for n, number in enumerate(to))
    (operator / "students.csv").write_text(f"to,text,ref\n{rows}\n")
    rid = request_id("cli-sqs")

    # When an operator sends it through the queue, then asks for the status
    sent_result = ocelot_sms("send", "students.csv", "--send-id", rid, "--via", "sqs")
    assert sent_result.exit_code == 3, sent_result.output + sent_result.stderr  # queued, not yet known
    sent = wait_for(lambda: client.settled(rid, len(to)), 30, "the queued batch")
    client.wait_callbacks_done([m.message_id for m in sent], 60)
    shown = ocelot_sms("status", rid, "--output", "json")

    # Then the status shows the sandbox's outcomes
    assert shown.exit_code == 0, shown.stderr
    status = json.loads(shown.output)
    assert status["counts"] == EXPECTED_COUNTS
    assert [m["ref"] for m in status["messages"]] == [f"cli-{n}" for n in range(len(to))]
    table = ocelot_sms("status", rid)
    assert f"send {rid} · created" in table.output
    assert sent[0].message_id in table.output
    history = ocelot_sms("status", "--message", sent[0].message_id)
    assert "undelivered" in history.output


def test_cli_sends_through_the_api(client: StackClient, operator: Path) -> None:
    (operator / "one.csv").write_text(f"to,text\n{us_numbers('0010')[0]},through the API\n")
    rid = request_id("cli-api")
    result = ocelot_sms("send", "one.csv", "--send-id", rid)
    assert result.exit_code == 0, result.output + result.stderr
    assert client.settled(rid, 1) is not None  # the API answers once the chunk is recorded


def test_cli_reconciles_an_unknown_chunk_by_resending_it(client: StackClient, operator: Path) -> None:
    # Given a chunk whose answer timed out (the sandbox took it, then said nothing in time)
    client.sandbox_config(accept_timeout_rate=1.0, accept_timeout_seconds=4.0)
    body = batch("cli-reconcile", recipients("0010", "0002"))
    assert client.post_batch(body).status_code == 202
    client.sandbox_config(accept_timeout_rate=0.0)
    rid = body["requestId"]

    # When the operator lists unknown chunks, then resends this one (confirmed)
    listed = ocelot_sms("reconcile", "list")
    assert f"{rid} chunk 0 (2 messages)" in listed.output
    refused = CliRunner(mix_stderr=False).invoke(cli, ["--local", "reconcile", "resend", rid, "0"])
    assert refused.exit_code == 2
    resent = ocelot_sms("reconcile", "resend", rid, "0", "--yes")

    # Then it went to the sandbox (the stack's Ocelot, with the stack's credentials) and is accepted
    assert resent.exit_code == 0, resent.output + resent.stderr
    assert f"chunk 0 of {rid}: accepted" in resent.output
    sent = wait_for(lambda: client.settled(rid, 2), 10, "the resent chunk recorded")
    client.wait_callbacks_done([m.message_id for m in sent], 60)
    assert f"{rid} chunk 0" not in ocelot_sms("reconcile", "list").output
    shown = json.loads(ocelot_sms("status", rid, "--output", "json").output)
    assert shown["counts"] == {"delivered": 1, "failed": 1}


def test_cli_redrives_the_dead_letter_queue_and_replays_callbacks(
    client: StackClient, stack: StackInfo, operator: Path
) -> None:
    # Given a valid request sitting in the dead-letter queue
    body = batch("cli-redrive", recipients("0010", "0011"))
    client.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=json.dumps(body))
    since = datetime.now(UTC) - timedelta(seconds=5)

    # When the operator redrives it; Then the Sender gets it from the queue and sends it
    moved = ocelot_sms("redrive")
    assert moved.exit_code == 0, moved.output + moved.stderr
    assert "moved 1 message(s)" in moved.output
    sent = wait_for(lambda: client.settled(body["requestId"], 2), 30, "the redriven batch")
    client.wait_callbacks_done([m.message_id for m in sent], 60)
    assert client.dead_letters() == []
    states = client.states([m.message_id for m in sent])

    # And replaying the callbacks received since then changes nothing (each event already stored)
    replayed = ocelot_sms("replay", "--since", since.isoformat())
    assert replayed.exit_code == 0, replayed.stderr
    report = json.loads(replayed.output)
    ours = sum(len(client.stored_event_ids(m.message_id)) for m in sent)
    assert report["duplicates"] >= ours > 0
    assert client.states([m.message_id for m in sent]) == states
