"""`ocelot-sms reconcile`, `replay` and `redrive` against moto, Ocelot on `responses`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from click.testing import Result
from pydantic import Field

from ocelot_sms import contract, runtime
from ocelot_sms_cli.exits import Exit
from ocelot_sms_cli.target import Target
from tests.unit.support.cli import ended, queued
from tests.unit.support.cli import run as run_cli
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot, accept, phone

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


def run(*args: str, input: str | None = None) -> Result:
    return run_cli("--local", *args, input=input)


def ended_invalid(result: Result, *fragments: str) -> None:
    ended(result, Exit.INVALID, *fragments)


# ---- reconcile -----------------------------------------------------------------------------------


@pytest.fixture
def unknown_chunk(target: Target, ocelot: FakeOcelot) -> dict[str, Any]:
    ocelot.then_for("ref-2", requests.ReadTimeout("read timed out"))  # the second chunk
    send("rec-cli", 4)
    return {"sent": len(ocelot.sent)}


def test_reconcile_list_shows_each_unknown_chunk(unknown_chunk: dict[str, Any]) -> None:
    result = run("reconcile", "list")
    assert result.exit_code == 0, result.output
    assert "rec-cli chunk 1 (2 messages): no response from Ocelot in time" in result.output
    assert "1 chunk(s) with an unknown outcome" in result.output


def test_reconcile_attach_records_the_ids(unknown_chunk: dict[str, Any]) -> None:
    result = run("reconcile", "attach", "rec-cli", "1", "--batch-id", "ob-7", "--message-ids", "om-2, om-3")
    assert result.exit_code == 0, result.output
    assert "chunk 1 of rec-cli: accepted, 2 message ids recorded" in result.output
    assert [m.message_id for m in runtime.store().batch_messages("rec-cli", 1)] == ["om-2", "om-3"]
    assert "0 chunk(s)" in run("reconcile", "list").output


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["rec-cli", "1", "--batch-id", "b", "--message-ids", "only-one"], "chunk has 2 messages, got 1 ids"),
        (["rec-cli", "1", "--batch-id", "b", "--message-ids", "a,,"], "chunk has 2 messages, got 3 ids"),
        (["rec-cli", "1", "--batch-id", "b", "--message-ids", "a,"], "a message id is empty"),
        (["rec-cli", "0", "--batch-id", "b", "--message-ids", "a,b"], "is accepted, not unknown"),
        (["rec-cli", "9", "--batch-id", "b", "--message-ids", "a"], "no chunk 9"),
    ],
)
def test_reconcile_attach_refuses_wrong_input_with_a_message(
    unknown_chunk: dict[str, Any], args: list[str], problem: str
) -> None:
    ended_invalid(run("reconcile", "attach", *args), problem)


def _sent_chunk_ids(ocelot: FakeOcelot, index: int) -> tuple[str, list[str]]:
    """What Ocelot answered for the request it received `index`-th: its batch id and message ids."""
    payload = ocelot.payloads[index]
    return payload["batchId"], [m["id"] for m in payload["messages"]]


@pytest.fixture
def taken_but_unanswered(target: Target, ocelot: FakeOcelot) -> dict[str, Any]:
    """Chunk 1 of "rec-cand" was taken by Ocelot (ids below) but its answer never came; Ocelot's
    callbacks for it were stored all the same, plus one for a recipient of another batch."""
    taken: dict[str, Any] = {}

    def taken_then_timeout(call: Any) -> Any:
        answer = accept(call)[2]
        taken.update(batch=answer["batchId"], ids=[m["id"] for m in answer["messages"]])
        raise requests.ReadTimeout("read timed out")

    ocelot.then_for("ref-2", taken_then_timeout)  # the second chunk
    send("rec-cand", 4)
    deliver(
        [
            {
                **callback("c-2", taken["ids"][0], "sent", "2026-11-26T16:00:05Z"),
                "batchId": taken["batch"],
                "to": phone(2),
            },
            {
                **callback("c-3", taken["ids"][1], "sent", "2026-11-26T16:00:06Z"),
                "batchId": taken["batch"],
                "to": phone(3),
            },
            {
                **callback("c-x", "m-other", "sent", "2026-11-26T16:00:07Z"),
                "batchId": "b-other",
                "to": phone(3),
            },
        ],
        "d-cand",
    )
    return taken


def test_attach_offers_the_stored_callbacks_as_candidates_and_attaches_on_yes(
    taken_but_unanswered: dict[str, Any],
) -> None:
    # When attach is asked for candidates and the operator answers no; Then nothing changes, exit 3
    declined = run("reconcile", "attach", "rec-cand", "1", input="n\n")
    batch = taken_but_unanswered["batch"]
    ended(declined, Exit.UNKNOWN, f"candidate: Ocelot batch {batch}: 2 of 2 recipients", "nothing attached")
    assert "candidate: Ocelot batch b-other: 1 of 2 recipients" in declined.output
    assert runtime.store().batch_messages("rec-cand", 1) == []
    # When the operator accepts; Then the best complete candidate's ids are attached, in the chunk's order
    accepted = run("reconcile", "attach", "rec-cand", "1", input="y\n")
    ended(accepted, Exit.DONE, "chunk 1 of rec-cand: accepted, 2 message ids recorded")
    attached = runtime.store().batch_messages("rec-cand", 1)
    assert [(m.message_id, m.to) for m in attached] == list(
        zip(taken_but_unanswered["ids"], [phone(2), phone(3)], strict=True)
    )
    # And those ids are no longer offered for anything
    assert "0 chunk(s)" in run("reconcile", "list").output


def test_attach_without_a_complete_candidate_says_where_to_find_the_ids(
    target: Target, ocelot: FakeOcelot
) -> None:
    ocelot.then_for("ref-2", requests.ReadTimeout("read timed out"))  # the second chunk
    send("rec-none", 4)
    ended(
        run("reconcile", "attach", "rec-none", "1", "--yes"),
        Exit.UNKNOWN,
        "no complete candidate",
        "--batch-id",
    )
    ended(
        run("reconcile", "attach", "rec-none", "1", "--batch-id", "b"),
        Exit.INVALID,
        "both --batch-id and --message-ids",
    )


def test_reconcile_resend_needs_yes(unknown_chunk: dict[str, Any], ocelot: FakeOcelot) -> None:
    ended_invalid(run("reconcile", "resend", "rec-cli", "1"), "pass --yes")
    assert len(ocelot.sent) == unknown_chunk["sent"]


def test_reconcile_resend_sends_once_and_reports_the_outcome(
    unknown_chunk: dict[str, Any], ocelot: FakeOcelot
) -> None:
    result = run("reconcile", "resend", "rec-cli", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "chunk 1 of rec-cli: accepted" in result.output
    assert len(ocelot.sent) == unknown_chunk["sent"] + 1
    again = run("reconcile", "resend", "rec-cli", "1", "--yes")
    ended_invalid(again, "is accepted, not unknown")
    assert len(ocelot.sent) == unknown_chunk["sent"] + 1


def test_a_resend_with_no_answer_again_fails_saying_so(
    unknown_chunk: dict[str, Any], ocelot: FakeOcelot
) -> None:
    ocelot.then(requests.ReadTimeout("read timed out"))
    result = run("reconcile", "resend", "rec-cli", "1", "--yes")
    ended(result, Exit.UNKNOWN, "is still unknown")
    assert "chunk 1 of rec-cli: unknown no response from Ocelot in time" in result.output
    assert "1 chunk(s)" in run("reconcile", "list").output


# ---- redrive and replay ----------------------------------------------------------------------------


def test_redrive_moves_the_dead_letters_back(target: Target) -> None:
    sqs = boto3.client("sqs")
    for i in range(3):
        sqs.send_message(QueueUrl=target.dlq_url, MessageBody=json.dumps({"requestId": f"dl-{i}"}))
    result = run("redrive", "--max-messages", "2")
    assert result.exit_code == 0, result.output
    assert "moved 2 message(s)" in result.output
    assert run("redrive").exit_code == 0
    assert [b["requestId"] for b in queued(sqs, target.queue_url)] == ["dl-0", "dl-1", "dl-2"]


def _misnamed(message_id: str, event_id: str, status: str, received_at: datetime) -> None:
    event = callback(event_id, message_id, status, "2026-11-26T09:00:00Z", status_field="deliveryStatus")
    assert deliver(event, f"d-{event_id}", received_at).status_code == 200


@pytest.fixture
def corrected_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    class Corrected(contract.CallbackEvent):
        status: str | None = Field(default=None, alias="deliveryStatus")

    monkeypatch.setattr(contract, "CallbackEvent", Corrected)


def test_replay_reprocesses_the_range_and_prints_the_report(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _misnamed("m-r1", "e-1", "delivered", datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    _misnamed("m-r2", "e-2", "sent", datetime(2026, 11, 27, 10, 0, tzinfo=UTC))

    class Corrected(contract.CallbackEvent):
        status: str | None = Field(default=None, alias="deliveryStatus")

    monkeypatch.setattr(contract, "CallbackEvent", Corrected)
    result = run("replay", "--since", "2026-11-26T09:00:00", "--until", "2026-11-26T11:00:00+00:00")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)  # stdout is the report alone: log lines go to stderr
    assert (report["deliveries"], report["new"], report["malformed"]) == (1, 1, [])
    assert "replay finished" in result.stderr
    assert runtime.store().get_states(["m-r1", "m-r2"]).keys() == {"m-r1"}


def test_replay_until_a_date_includes_that_whole_day(target: Target, corrected_contract: None) -> None:
    _misnamed("m-d1", "e-1", "delivered", datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    _misnamed("m-d2", "e-2", "delivered", datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC))
    _misnamed("m-d3", "e-3", "delivered", datetime(2026, 11, 27, 0, 0, tzinfo=UTC))
    result = run("replay", "--since", "2026-11-26", "--until", "2026-11-26")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deliveries"] == 2


def test_replay_until_defaults_to_now(target: Target, corrected_contract: None) -> None:
    _misnamed("m-n1", "e-1", "sent", datetime.now(UTC) - timedelta(minutes=1))
    result = run("replay", "--since", (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert json.loads(result.output)["deliveries"] == 1


def test_replay_of_many_deliveries_prints_the_report_alone(
    target: Target, corrected_contract: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 120 stored deliveries (Powertools prints metrics by the hundred), and no metrics namespace
    # configured, as on an operator's machine
    for n in range(120):
        _misnamed(f"m-many-{n}", f"e-many-{n}", "sent", datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    # When they are replayed
    result = run("replay", "--since", "2026-11-26", "--until", "2026-11-26")
    # Then the command ends well, its output the report alone: no metric in the terminal
    ended(result, Exit.DONE)
    assert json.loads(result.output)["deliveries"] == 120
    assert "_aws" not in result.output + result.stderr


def test_replay_refuses_a_bad_instant(target: Target) -> None:
    result = run("replay", "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since" in result.stderr
