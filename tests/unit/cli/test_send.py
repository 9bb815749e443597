"""`ocelot-sms send`: parts of one send, every outcome and its exit code, the queue, the preview and
--wait, against the real Sender and status Lambdas (on moto, Ocelot on `responses`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import responses

from ocelot_sms import runtime
from ocelot_sms_cli import follow
from ocelot_sms_cli.exits import Exit
from ocelot_sms_cli.target import Target
from tests.unit.support.cli import API, ended, queued, rows_csv, run, write_csv
from tests.unit.support.flows import callback, deliver
from tests.unit.support.ocelot import FakeOcelot, busy, nestjs, phone

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


def send(csv_file: Path, send_id: str, *options: str) -> Any:
    return run("--local", "send", str(csv_file), "--send-id", send_id, *options)


# ---- by the API: one exit code per outcome ----------------------------------------------------------


def test_a_send_in_parts_is_one_send_and_every_part_id_is_shown(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    # Given 5 rows, 2 per part
    result = send(rows_csv(tmp_path, 5), "term-1", "--per-request", "2")
    # Then exit 0, each part named by its id, the last line saying what happened and what next
    ended(result, Exit.DONE, "part 1/3 term-1-p0001: 2 messages accepted by Ocelot")
    assert "part 3/3 term-1-p0003: 1 message accepted by Ocelot" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("done: 5 messages of send term-1 accepted by Ocelot in 3 parts")
    assert "`ocelot-sms status term-1`" in last
    # And the stack knows the send as a whole
    stored = runtime.store().get_send("term-1")
    assert stored is not None
    assert [(p.part, p.request_id, p.message_count) for p in stored.parts] == [
        (1, "term-1-p0001", 2),
        (2, "term-1-p0002", 2),
        (3, "term-1-p0003", 1),
    ]
    # And every request was signed with SigV4 for execute-api
    assert stack_api[0] == "GET /sends/term-1?limit=0"
    assert stack_api[1:] == ["POST /batches"] * 3


def test_one_part_keeps_the_send_id_as_its_request_id(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    ended(send(rows_csv(tmp_path, 2), "single"), Exit.DONE, "part 1/1 single: 2 messages accepted")
    assert runtime.store().get_batch("single") is not None


def test_the_same_file_again_sends_nothing_again_and_says_so(
    tmp_path: Path, target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    csv_file = rows_csv(tmp_path, 3)
    ended(send(csv_file, "again", "--per-request", "2"), Exit.DONE)
    sent = len(ocelot.sent)
    result = send(csv_file, "again", "--per-request", "2")
    ended(
        result,
        Exit.DONE,
        "already sent: 2 messages accepted by Ocelot; nothing sent again",
        "nothing was sent again: send again was",
    )
    assert len(ocelot.sent) == sent


def test_an_unknown_outcome_exits_3_and_points_to_reconcile(
    tmp_path: Path, target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    # Given Ocelot never answers the second chunk (chunks of 2)
    ocelot.then_for("ref-2", requests.ReadTimeout("read timed out"))  # the second chunk
    result = send(rows_csv(tmp_path, 4), "unsure")
    ended(result, Exit.UNKNOWN, "2 accepted, 2 with an unknown outcome (no response from Ocelot in time)")
    assert "2 message(s) of send unsure have an unknown outcome" in result.stderr
    assert "`ocelot-sms reconcile list`" in result.stderr
    # And a rerun sends nothing again and still says the outcome is unknown
    again = send(rows_csv(tmp_path, 4), "unsure")
    ended(again, Exit.UNKNOWN, "nothing was sent again; 2 message(s)")


def test_a_rejection_exits_4_and_stops_before_the_next_parts(
    tmp_path: Path, target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    ocelot.then(nestjs(400, "Phone number +15550000000 is not active", "Bad Request"))
    result = send(rows_csv(tmp_path, 4), "refused", "--per-request", "2")
    ended(
        result,
        Exit.REJECTED,
        "part 1/2 refused-p0001: Ocelot rejected it: Phone number +15550000000 is not active",
        "the 1 part(s) after it were not sent",
        "Fix the cause",
    )
    assert len(ocelot.sent) == 1


def test_a_send_id_used_for_other_messages_exits_5_and_says_how_to_see_it(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    ended(send(rows_csv(tmp_path, 2), "reused"), Exit.DONE)
    result = send(rows_csv(tmp_path, 2, text="Other {i}"), "reused")
    ended(
        result,
        Exit.CONFLICT,
        "send id 'reused' was used before for other messages",
        "see what it holds with `ocelot-sms status reused`",
        "choose a new --send-id",
    )
    assert "rerun with the same" not in result.stderr


def test_another_number_of_parts_for_the_same_send_is_a_conflict(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    ended(send(rows_csv(tmp_path, 4), "split", "--per-request", "2"), Exit.DONE)
    ended(send(rows_csv(tmp_path, 4), "split", "--per-request", "4"), Exit.CONFLICT, "recorded with 2 parts")


def test_ocelot_unavailable_exits_6_to_retry_later(
    tmp_path: Path, target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    ocelot.then(busy(), busy(), busy())
    result = send(rows_csv(tmp_path, 2), "later")
    ended(
        result,
        Exit.UNAVAILABLE,
        "unavailable (HTTP 503",
        "retry after 1 s",
        "Later, run the same command again",
    )
    # And the same command later sends what was not sent
    ended(send(rows_csv(tmp_path, 2), "later"), Exit.DONE, "done: 2 messages")


@pytest.mark.parametrize(
    ("status", "body", "code", "said"),
    [
        (409, {"error": "in_progress", "message": "busy"}, Exit.UNAVAILABLE, "another run is sending it"),
        (
            422,
            {"error": "invalid_request", "message": "bad", "problems": [{"field": "from", "message": "x"}]},
            Exit.INVALID,
            "from: x",
        ),
        (504, {"message": "Gateway Timeout"}, Exit.UNKNOWN, "the API stopped waiting (504)"),
        (500, {"message": "Internal Server Error"}, Exit.UNAVAILABLE, "unavailable (HTTP 500"),
        (403, {"message": "Forbidden"}, Exit.SETUP, "access denied to POST /batches (HTTP 403)"),
    ],
)
def test_each_other_answer_of_the_api_has_its_exit_code(
    tmp_path: Path,
    target: Target,
    http: responses.RequestsMock,
    status: int,
    body: Any,
    code: Exit,
    said: str,
) -> None:
    http.add(responses.GET, f"{API}/sends/odd", status=404, json={"error": "not_found"})
    http.add(responses.POST, f"{API}/batches", status=status, json=body)
    ended(send(rows_csv(tmp_path, 1), "odd"), code, said)


def test_no_connection_to_the_api_exits_6(
    tmp_path: Path, target: Target, http: responses.RequestsMock
) -> None:
    http.add(responses.GET, f"{API}/sends/net", body=requests.ConnectionError("connection refused"))
    ended(
        send(rows_csv(tmp_path, 1), "net"), Exit.UNAVAILABLE, "could not reach", "run the same command again"
    )


# ---- invalid input: exit 2, nothing sent ------------------------------------------------------------


def test_bad_rows_stop_the_send_unless_skipped(tmp_path: Path, target: Target, stack_api: list[str]) -> None:
    csv_file = write_csv(tmp_path / "mixed.csv", "to,text\n+15550000001,ok\n12,bad number\n")
    refused = send(csv_file, "mixed")
    ended(refused, Exit.INVALID, "line 3: 12 is too short", "1 row(s) cannot be sent", "--skip-invalid")
    assert stack_api == []
    ended(send(csv_file, "mixed", "--skip-invalid"), Exit.DONE, "done: 1 message")


@pytest.mark.parametrize(
    ("content", "options", "said"),
    [
        ("to,text\n12,bad\n", ["--skip-invalid"], "nothing to send"),
        ("phone,message\n+15550000001,hi\n", [], "has no column 'to'"),
        ("to,text\n+15550000001,hi\n", ["--template", "Hi {name}"], "--template names {name}"),
        ("to,text\n+15550000001,hi\n", ["--template", "x", "--text-column", "text"], "not both"),
        ("to,text\n+15550000001,hi\n", ["--send-id-suffix"], "No such option"),
    ],
)
def test_invalid_input_exits_2_before_any_request(
    tmp_path: Path, target: Target, stack_api: list[str], content: str, options: list[str], said: str
) -> None:
    ended(send(write_csv(tmp_path / "in.csv", content), "x", *options), Exit.INVALID, said)
    assert stack_api == []


def test_a_send_id_too_long_for_its_parts_is_refused(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    long_id = "r" * 125  # fits alone (128), not with "-p0001"
    ended(send(rows_csv(tmp_path, 3), long_id, "--per-request", "2"), Exit.INVALID, "at most 122")
    assert stack_api == []
    ended(send(rows_csv(tmp_path, 3), "r" * 128), Exit.DONE)


# ---- dry run -----------------------------------------------------------------------------------------


def test_a_dry_run_previews_each_part_and_sends_nothing(
    tmp_path: Path, target: Target, stack_api: list[str], ocelot: FakeOcelot
) -> None:
    result = send(rows_csv(tmp_path, 3), "preview", "--per-request", "2", "--dry-run")
    ended(result, Exit.DONE, "part 1/2 preview-p0001: 2 messages to 2 recipients in 1 chunk to Ocelot")
    assert "part 2/2 preview-p0002: 1 message to 1 recipient in 1 chunk" in result.output
    assert '"to": "********0000", "message": "Hello 0", "externalId": "ref-0"}, "... 1 more"' in result.output
    assert phone(1) not in result.output
    assert result.output.strip().splitlines()[-1].startswith("dry run: 3 messages in 2 part(s) validated")
    assert ocelot.sent == []
    assert runtime.store().get_send("preview") is None


def test_a_dry_run_refused_by_the_api_exits_2(
    tmp_path: Path, target: Target, http: responses.RequestsMock
) -> None:
    http.add(responses.POST, f"{API}/batches", status=422, json={"message": "the request has invalid fields"})
    ended(send(rows_csv(tmp_path, 1), "p", "--dry-run"), Exit.INVALID, "refused it as invalid")


# ---- the send queue ----------------------------------------------------------------------------------


def test_via_sqs_queues_one_message_per_part_and_exits_3_until_followed(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    result = send(
        rows_csv(tmp_path, 5), "queued", "--via", "sqs", "--per-request", "2", "--from", "+15551112222"
    )
    ended(result, Exit.UNKNOWN, "part 1/3 queued-p0001: queued (2 messages)", "nothing is confirmed yet")
    bodies = queued(boto3.client("sqs"), target.queue_url)
    assert [(b["requestId"], b["sendId"], b["part"], b["parts"]) for b in bodies] == [
        ("queued-p0001", "queued", 1, 3),
        ("queued-p0002", "queued", 2, 3),
        ("queued-p0003", "queued", 3, 3),
    ]
    assert bodies[0]["from"] == "+15551112222"
    assert [m["ref"] for b in bodies for m in b["messages"]] == [f"ref-{i}" for i in range(5)]


def test_via_sqs_keeps_each_batch_within_the_sqs_limits(
    tmp_path: Path, target: Target, stack_api: list[str]
) -> None:
    # Given 3 parts of ~420 KB each (long texts): together over SendMessageBatch's 1 MiB; and 25 small ones
    big = send(
        rows_csv(tmp_path, 600, text="{i}" + "x" * 1990), "big", "--via", "sqs", "--per-request", "200"
    )
    ended(big, Exit.UNKNOWN)
    assert len(queued(boto3.client("sqs"), target.queue_url)) == 3
    many = send(rows_csv(tmp_path, 25), "many", "--via", "sqs", "--per-request", "1")
    ended(many, Exit.UNKNOWN)
    assert len(queued(boto3.client("sqs"), target.queue_url)) == 25
    huge = send(
        rows_csv(tmp_path, 600, text="{i}" + "x" * 1990), "huge", "--via", "sqs", "--per-request", "600"
    )
    ended(huge, Exit.INVALID, "lower --per-request")


def test_queue_refusals_exit_6(
    tmp_path: Path, target: Target, stack_api: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refusing:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"Successful": [], "Failed": [{"Id": e["Id"], "Message": "throttled"} for e in Entries]}

    monkeypatch.setattr(Target, "client", lambda self, service: Refusing())
    ended(send(rows_csv(tmp_path, 1), "r", "--via", "sqs"), Exit.UNAVAILABLE, "refused 1 part(s) (throttled)")


# ---- --wait --------------------------------------------------------------------------------------------


@pytest.fixture
def callbacks_while_waiting(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """Callbacks delivered (through the webhook and applier services) at each poll's pause, in turn."""
    script: list[list[dict[str, Any]]] = []

    def pause(seconds: float) -> None:
        if script:
            deliver(script.pop(0), f"d-{len(script)}")

    monkeypatch.setattr("ocelot_sms_cli.follow.sleep", pause)
    return script


def _ids(send_id: str) -> list[str]:
    stored = runtime.store().get_send(send_id)
    assert stored is not None
    return [
        m.message_id
        for p in stored.parts
        for c in (0, 1)
        for m in runtime.store().batch_messages(p.request_id, c)
    ]


def test_wait_follows_until_every_message_is_final(
    tmp_path: Path,
    target: Target,
    stack_api: list[str],
    callbacks_while_waiting: list[list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given callbacks arriving while the CLI waits: one delivered, then one failed
    def script() -> None:
        ids = _ids("waited")
        callbacks_while_waiting.extend(
            [
                [callback("w-1", ids[0], "delivered", "2026-11-26T16:00:05Z")],
                [callback("w-2", ids[1], "failed", "2026-11-26T16:00:06Z", errorCode="30008")],
            ]
        )

    real_follow = follow.follow

    def after_sending(*args: Any, **kwargs: Any) -> Any:
        script()
        return real_follow(*args, **kwargs)

    monkeypatch.setattr("ocelot_sms_cli.commands.follow", after_sending)
    result = send(rows_csv(tmp_path, 2), "waited", "--wait")
    # Then the progress as it changed, the counts as a table, and exit 0: every message final
    ended(result, Exit.DONE, "waited: final 0/2 · accepted 2", "final 1/2 · accepted 1 · delivered 1")
    assert re.search(r"│ delivered\s+│\s+1 │", result.output)
    assert "done: all 2 messages of send waited are final: delivered 1 · failed 1" in result.output
    assert "--output csv` gives each one's reason" in result.output


def test_wait_gives_up_at_the_timeout_with_exit_3(
    tmp_path: Path, target: Target, stack_api: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(0, 10_000, 7))
    monkeypatch.setattr("ocelot_sms_cli.follow.monotonic", lambda: float(next(clock)))
    monkeypatch.setattr("ocelot_sms_cli.follow.sleep", lambda seconds: None)
    result = send(rows_csv(tmp_path, 2), "slow", "--wait", "--timeout", "20")
    ended(result, Exit.UNKNOWN, "still waiting after 21s: 2 message(s) of send slow are not final yet")


def test_wait_on_the_queue_waits_for_the_sender_to_take_the_parts(
    tmp_path: Path, target: Target, stack_api: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given nothing takes the queued parts
    monkeypatch.setattr("ocelot_sms_cli.follow.sleep", lambda seconds: None)
    clock = iter(range(0, 100, 5))
    monkeypatch.setattr("ocelot_sms_cli.follow.monotonic", lambda: float(next(clock)))
    result = send(rows_csv(tmp_path, 1), "q", "--via", "sqs", "--wait", "--timeout", "9")
    ended(result, Exit.UNKNOWN, "waiting for the Sender to take the first part", "still waiting after 10s")
