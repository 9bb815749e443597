"""The `ocelot-sms` command line, through click's CliRunner.

AWS is moto (queues, tables, a CloudFormation stack); the HTTP API is `responses`, either answering
on its own or handing each request to the real status Lambda; Ocelot is `responses` too.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import click
import pytest
import requests
import responses
from click.testing import CliRunner, Result
from pydantic import Field

from functions.status import app as status_handler
from ocelot_sms import contract, runtime
from ocelot_sms.models import OutgoingMessage
from ocelot_sms_cli import main as cli_main
from ocelot_sms_cli.main import SQS_BATCH, parts, read_csv
from ocelot_sms_cli.target import Target, TargetError, local_target, stack_target
from tests.unit.support.aws import OCELOT_URL, FakeContext
from tests.unit.support.flows import api_get, callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot, guard_network, ocelot_mock, phone
from tools.template_resources import create_queue_pair

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")

API = "https://api.ocelot-sms.test"


@pytest.fixture(autouse=True)
def environment() -> Iterator[None]:
    """The CLI points the layer's code at its target through the environment: restore it after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def target(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Target:
    """The stack the CLI talks to: moto's queues and tables, the API at API (a `responses` URL)."""
    queue_url, dlq_url = create_queue_pair(boto3.client("sqs"), "SendQueue", "SendDeadLetterQueue", "cli")
    chosen = Target(
        api_url=API + "/",
        queue_url=queue_url,
        dlq_url=dlq_url,
        table_name="messages",
        idempotency_table_name="idempotency",
        region="us-east-1",
    )
    monkeypatch.setattr(cli_main, "local_target", lambda: chosen)
    return chosen


@pytest.fixture
def api(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    """HTTP mocked for the test (one mock for Ocelot and our API): anything unregistered is refused."""
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    with ocelot_mock() as mock:
        yield mock


@pytest.fixture
def ocelot(api: responses.RequestsMock) -> FakeOcelot:
    return FakeOcelot(api)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal wide enough that tables show whole ids."""
    monkeypatch.setattr(cli_main.console, "width", 200)


def run(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli_main.cli, list(args), catch_exceptions=True)


def failed_cleanly(result: Result, *fragments: str) -> None:
    """Exit 1 with a message for the operator, not a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    for fragment in fragments:
        assert fragment in result.stderr + result.output, result.stderr + result.output


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows_csv(tmp_path: Path, count: int, text: str = "Hello {i}") -> Path:
    lines = ["to,text,ref"] + [f"{phone(i)},{text.format(i=i)},ref-{i}" for i in range(count)]
    return write_csv(tmp_path / "send.csv", "\n".join(lines) + "\n")


def queued(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
        "Messages", []
    ):
        bodies.extend(json.loads(m["Body"]) for m in got)
    return sorted(bodies, key=lambda b: b["requestId"])


# ---- reading a CSV -------------------------------------------------------------------------------


def test_a_valid_csv_reads_in_order_with_optional_refs(tmp_path: Path) -> None:
    # Given a file saved by Excel (BOM), columns in any order, a quoted text with a comma and a newline
    path = tmp_path / "ok.csv"
    path.write_bytes(
        '\ufeffref,text,to\nr-1,"Hi, there\nsecond line",+15550000001\n,Hola,+15550000002\n'.encode()
    )
    rows = read_csv(path)
    assert rows.problems == []
    assert [(m.to, m.text, m.ref) for m in rows.messages] == [
        ("+15550000001", "Hi, there\nsecond line", "r-1"),
        ("+15550000002", "Hola", None),
    ]


def test_every_bad_row_is_reported_by_its_line_and_none_is_dropped_silently(tmp_path: Path) -> None:
    # Given bad numbers, an empty text, a repeated ref, and a text spanning two lines before them
    path = write_csv(
        tmp_path / "bad.csv",
        "to,text,ref\n"
        '+15550000001,"two\nlines",a\n'  # lines 2-3
        "555-1234,hi,b\n"  # line 4
        "+05550000003,hi,c\n"  # line 5
        "+15550000004,,d\n"  # line 6
        "+15550000005,hi,a\n"  # line 7: repeats line 2
        "+15550000006,fine,\n",  # line 8
    )
    rows = read_csv(path)
    assert [(m.to, m.ref) for m in rows.messages] == [("+15550000001", "a"), ("+15550000006", None)]
    assert [(line, field) for line, field, _ in rows.problems] == [
        (4, "to"),
        (5, "to"),
        (6, "text"),
        (7, "ref"),
    ]
    assert rows.problems[3][2] == "repeats line 2"


@pytest.mark.parametrize("header", ["+15550000001,hello\n", "phone,message\n+15550000001,hi\n", ""])
def test_a_file_without_the_to_and_text_columns_is_a_usage_error(tmp_path: Path, header: str) -> None:
    path = write_csv(tmp_path / "no-header.csv", header)
    with pytest.raises(click.UsageError, match=r"missing \['text', 'to'\]|missing \['t"):
        read_csv(path)


def test_parts_keep_the_request_id_for_one_part_and_number_several() -> None:
    messages = [OutgoingMessage(to=phone(i), text="x") for i in range(2500)]
    assert [(rid, len(chunk)) for rid, chunk in parts("one", messages[:1000], 1000)] == [("one", 1000)]
    split = list(parts("many", messages, 1000))
    assert [(rid, len(chunk)) for rid, chunk in split] == [
        ("many-p0000", 1000),
        ("many-p0001", 1000),
        ("many-p0002", 500),
    ]
    assert [m for _, chunk in split for m in chunk] == messages


# ---- send ----------------------------------------------------------------------------------------


def test_send_via_sqs_queues_one_message_per_part(tmp_path: Path, target: Target) -> None:
    # Given 5 valid rows; When sent through the queue, 2 per request, with a sender and operator
    result = run(
        "send",
        str(rows_csv(tmp_path, 5)),
        "--request-id",
        "term-1",
        "--via",
        "sqs",
        "--per-request",
        "2",
        "--from",
        "+15551112222",
        "--operator-id",
        "op-9",
    )
    # Then three queue messages, each a valid request body for the Sender
    assert result.exit_code == 0, result.output
    assert "done: 5 messages via sqs" in result.output
    bodies = queued(boto3.client("sqs"), target.queue_url)
    assert [b["requestId"] for b in bodies] == ["term-1-p0000", "term-1-p0001", "term-1-p0002"]
    assert bodies[0] == {
        "requestId": "term-1-p0000",
        "from": "+15551112222",
        "operatorId": "op-9",
        "dryRun": False,
        "messages": [
            {"to": phone(0), "text": "Hello 0", "ref": "ref-0"},
            {"to": phone(1), "text": "Hello 1", "ref": "ref-1"},
        ],
    }
    assert [m["ref"] for b in bodies for m in b["messages"]] == [f"ref-{i}" for i in range(5)]


def test_send_via_sqs_uses_several_batches_for_many_parts(tmp_path: Path, target: Target) -> None:
    result = run(
        "send", str(rows_csv(tmp_path, 25)), "--request-id", "many", "--via", "sqs", "--per-request", "1"
    )
    assert result.exit_code == 0, result.output
    assert len(queued(boto3.client("sqs"), target.queue_url)) == 25 > SQS_BATCH


def test_send_via_sqs_keeps_each_batch_within_the_sqs_size_limit(tmp_path: Path, target: Target) -> None:
    # Given 3 requests of ~420 KB each (long texts): together over SendMessageBatch's 1 MiB
    csv_file = rows_csv(tmp_path, 600, text="{i}" + "x" * 1990)
    # When sent through the queue; Then every request is queued
    result = run("send", str(csv_file), "--request-id", "big", "--via", "sqs", "--per-request", "200")
    assert result.exit_code == 0, result.output
    assert [b["requestId"] for b in queued(boto3.client("sqs"), target.queue_url)] == [
        "big-p0000",
        "big-p0001",
        "big-p0002",
    ]


def test_a_request_too_large_for_one_queue_message_is_refused_before_sending(
    tmp_path: Path, target: Target
) -> None:
    csv_file = rows_csv(tmp_path, 600, text="{i}" + "x" * 1990)
    result = run("send", str(csv_file), "--request-id", "huge", "--via", "sqs", "--per-request", "600")
    failed_cleanly(result, "--per-request")
    assert queued(boto3.client("sqs"), target.queue_url) == []


def test_a_request_id_too_long_for_its_parts_is_refused(tmp_path: Path, target: Target) -> None:
    long_id = "r" * 125  # fits alone (128), not with "-p0000"
    result = run(
        "send", str(rows_csv(tmp_path, 3)), "--request-id", long_id, "--via", "sqs", "--per-request", "2"
    )
    assert result.exit_code == 2, result.output
    assert "request-id" in result.stderr
    assert queued(boto3.client("sqs"), target.queue_url) == []
    ok = run("send", str(rows_csv(tmp_path, 3)), "--request-id", "r" * 128, "--via", "sqs")
    assert ok.exit_code == 0, ok.output


def test_invalid_rows_stop_the_send_unless_skipped(tmp_path: Path, target: Target) -> None:
    csv_file = write_csv(tmp_path / "mixed.csv", "to,text\n+15550000001,ok\n12,bad number\n")
    refused = run("send", str(csv_file), "--request-id", "mixed", "--via", "sqs")
    failed_cleanly(refused, "fix the rows above")
    assert "line 3: to:" in refused.output
    assert queued(boto3.client("sqs"), target.queue_url) == []

    skipped = run("send", str(csv_file), "--request-id", "mixed", "--via", "sqs", "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert [len(b["messages"]) for b in queued(boto3.client("sqs"), target.queue_url)] == [1]


def test_a_file_with_no_valid_row_sends_nothing(tmp_path: Path, target: Target) -> None:
    csv_file = write_csv(tmp_path / "none.csv", "to,text\n12,bad\n")
    failed_cleanly(run("send", str(csv_file), "--request-id", "x", "--skip-invalid"), "nothing to send")


def test_queue_refusals_are_reported(tmp_path: Path, target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"Successful": [], "Failed": [{"Id": e["Id"], "Message": "throttled"} for e in Entries]}

    monkeypatch.setattr(Target, "client", lambda self, service: Refusing())
    result = run(
        "send", str(rows_csv(tmp_path, 3)), "--request-id", "r", "--via", "sqs", "--per-request", "1"
    )
    failed_cleanly(result, "3 request(s) failed", "rerun with the same --request-id")
    assert "queue refused a request: throttled" in result.output


def test_send_via_the_api_signs_each_request_with_sigv4(
    tmp_path: Path, target: Target, api: responses.RequestsMock
) -> None:
    api.add(responses.POST, f"{API}/batches", json={"status": "accepted"}, status=201)
    result = run("send", str(rows_csv(tmp_path, 3)), "--request-id", "api-1", "--per-request", "2")
    assert result.exit_code == 0, result.output
    assert "done: 3 messages via api" in result.output

    calls = api.calls
    assert [c.request.url for c in calls] == [f"{API}/batches", f"{API}/batches"]
    for call in calls:
        headers = call.request.headers
        authorization = headers["Authorization"]
        assert re.match(
            r"AWS4-HMAC-SHA256 Credential=\w+/\d{8}/us-east-1/execute-api/aws4_request, ", authorization
        )
        signed = re.search(r"SignedHeaders=([^,]+)", authorization)
        assert signed is not None
        assert {"host", "x-amz-date", "content-type"} <= set(signed.group(1).split(";"))
        assert headers["X-Amz-Security-Token"]
        assert re.fullmatch(r"\d{8}T\d{6}Z", headers["X-Amz-Date"])
    bodies = [json.loads(c.request.body or b"") for c in calls]
    assert [(b["requestId"], len(b["messages"]), b["dryRun"]) for b in bodies] == [
        ("api-1-p0000", 2, False),
        ("api-1-p0001", 1, False),
    ]


def test_send_via_the_api_reports_refused_parts(
    tmp_path: Path, target: Target, api: responses.RequestsMock
) -> None:
    api.add(responses.POST, f"{API}/batches", json={"error": "invalid_request"}, status=422)
    result = run("send", str(rows_csv(tmp_path, 2)), "--request-id", "api-2", "--dry-run")
    failed_cleanly(result, "1 request(s) failed")
    assert "api-2: HTTP 422" in result.output
    assert json.loads(api.calls[0].request.body or b"")["dryRun"] is True


def test_without_aws_credentials_nothing_is_sent(
    tmp_path: Path, target: Target, api: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boto3.Session, "get_credentials", lambda self: None)
    result = run("send", str(rows_csv(tmp_path, 1)), "--request-id", "nocreds")
    failed_cleanly(result, "no AWS credentials")
    assert len(api.calls) == 0


# ---- status --------------------------------------------------------------------------------------


@pytest.fixture
def status_api(api: responses.RequestsMock) -> list[str]:
    """The API URL served by the real status Lambda (reading moto): the URLs it was asked for."""
    asked: list[str] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256")
        url = urllib.parse.urlsplit(request.url or "")
        asked.append(url.path + (f"?{url.query}" if url.query else ""))
        route, value = ("/batches/{requestId}", "requestId")
        if url.path.startswith("/messages/"):
            route, value = "/messages/{messageId}", "messageId"
        raw = url.path.split("/", 2)[2]
        event = api_get(route, {value: urllib.parse.unquote(raw)}, dict(urllib.parse.parse_qsl(url.query)))
        event["rawPath"] = event["requestContext"]["http"]["path"] = url.path
        response = status_handler.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
        return response["statusCode"], response["headers"], response["body"]

    api.add_callback(responses.GET, re.compile(re.escape(API) + r"/.*"), callback=answer)
    return asked


def test_status_shows_counts_unknown_chunks_and_each_message_masked(
    target: Target, ocelot: FakeOcelot, status_api: list[str]
) -> None:
    # Given a batch of 3 (chunks of 2): chunk 1 timed out; #0 delivered
    ocelot.then_for("ref-2", requests.ReadTimeout("read timed out"))
    result = send("show-1", 3)
    first = result.messages[0].message_id or ""
    deliver(callback("c-1", first, "delivered", "2026-11-26T16:00:05Z"), "d-1")

    shown = run("status", "show-1")

    assert shown.exit_code == 0, shown.output
    assert "show-1: {'delivered': 1, 'accepted': 1, 'unknown': 1}" in shown.output or (
        "show-1: {'accepted': 1, 'delivered': 1, 'unknown': 1}" in shown.output
    )
    assert "chunk 1 UNKNOWN: no response from Ocelot in time" in shown.output
    assert first in shown.output
    assert "*******0000" in shown.output  # +15550000000 masked
    assert phone(0) not in shown.output
    assert "2026-11-26T16:00:05" in shown.output
    assert status_api == ["/batches/show-1"]


def test_status_shows_text_from_the_tables_as_it_is_never_as_markup(
    target: Target, ocelot: FakeOcelot, status_api: list[str]
) -> None:
    # Given refs that look like console markup (a school's own ids), one of them a bare closing tag
    send(
        "marks",
        2,
        messages=[
            {"to": phone(0), "text": "a", "ref": "[/]"},
            {"to": phone(1), "text": "b", "ref": "[bold]x"},
        ],
    )
    shown = run("status", "marks")
    assert shown.exit_code == 0, shown.output
    assert "[/]" in shown.output
    assert "[bold]x" in shown.output


def test_a_narrow_terminal_folds_message_ids_rather_than_cutting_them(
    target: Target, ocelot: FakeOcelot, status_api: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    [message] = send("narrow", 1).messages
    monkeypatch.setattr(cli_main.console, "width", 60)
    shown = run("status", "narrow")
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.output
    assert (message.message_id or "")[:8] in shown.output


def test_status_json_follows_every_page(target: Target, ocelot: FakeOcelot, status_api: list[str]) -> None:
    # Given 150 messages: two pages of the API's default 100
    send("paged", 150)
    shown = run("status", "paged", "--json")
    assert shown.exit_code == 0, shown.output
    result = json.loads(shown.output)
    assert [m["index"] for m in result["messages"]] == list(range(150))
    assert result["counts"] == {"accepted": 150}
    assert len(status_api) == 2
    assert status_api[1].startswith("/batches/paged?cursor=")


def test_status_of_a_message_shows_its_history(
    target: Target, ocelot: FakeOcelot, status_api: list[str]
) -> None:
    [message] = send("one", 1).messages
    message_id = message.message_id or ""
    deliver(
        [
            callback("h-2", message_id, "sent", "2026-11-26T16:00:02Z"),
            callback("h-1", message_id, "queued", "2026-11-26T16:00:01Z"),
        ],
        "d-1",
    )
    shown = run("status", "--message", message_id)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert f"{message_id}: sent (request one, ref ref-0)" in lines[0]
    assert ["h-1" in lines[1], "h-2" in lines[2]] == [True, True]

    as_json = json.loads(run("status", "--message", message_id, "--json").output)
    assert [e["eventId"] for e in as_json["history"]] == ["h-1", "h-2"]


def test_status_needs_a_request_or_a_message(target: Target) -> None:
    result = run("status")
    assert result.exit_code == 2
    assert "give a REQUEST_ID or --message MESSAGE_ID" in result.stderr


def test_status_of_an_unknown_batch_fails_with_the_api_answer(target: Target, status_api: list[str]) -> None:
    failed_cleanly(run("status", "nothing-here"), "HTTP 404", "no batch")


# ---- reconcile -----------------------------------------------------------------------------------


@pytest.fixture
def unknown_chunk(target: Target, ocelot: FakeOcelot) -> dict[str, Any]:
    ocelot.then_for("ref-2", requests.ReadTimeout("read timed out"))
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
    failed_cleanly(run("reconcile", "attach", *args), problem)


def test_reconcile_resend_needs_yes(unknown_chunk: dict[str, Any], ocelot: FakeOcelot) -> None:
    failed_cleanly(run("reconcile", "resend", "rec-cli", "1"), "pass --yes")
    assert len(ocelot.sent) == unknown_chunk["sent"]


def test_reconcile_resend_sends_once_and_reports_the_outcome(
    unknown_chunk: dict[str, Any], ocelot: FakeOcelot
) -> None:
    result = run("reconcile", "resend", "rec-cli", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "chunk 1 of rec-cli: accepted" in result.output
    assert len(ocelot.sent) == unknown_chunk["sent"] + 1
    again = run("reconcile", "resend", "rec-cli", "1", "--yes")
    failed_cleanly(again, "is accepted, not unknown")
    assert len(ocelot.sent) == unknown_chunk["sent"] + 1


def test_a_resend_with_no_answer_again_fails_saying_so(
    unknown_chunk: dict[str, Any], ocelot: FakeOcelot
) -> None:
    ocelot.then(requests.ReadTimeout("read timed out"))
    result = run("reconcile", "resend", "rec-cli", "1", "--yes")
    failed_cleanly(result, "is still unknown")
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


def test_replay_refuses_a_bad_instant(target: Target) -> None:
    result = run("replay", "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since" in result.stderr


# ---- where the CLI points --------------------------------------------------------------------------


def local_stack_file(path: Path, **changes: Any) -> Path:
    stack = {
        "api_url": "http://127.0.0.1:4001",
        "queue_url": "http://127.0.0.1:4002/123456789012/q",
        "dlq_url": "http://127.0.0.1:4002/123456789012/dlq",
        "aws_endpoint_url": "http://127.0.0.1:4002",
        "sandbox_url": "http://127.0.0.1:4003",
        "region": "us-east-1",
        "tables": {"messages": "local-messages", "idempotency": "local-idempotency"},
        "secrets": {"ocelot": "arn:aws:secretsmanager:local-ocelot", "webhook": "arn:local-webhook"},
        "aws_credentials": {"aws_access_key_id": "local-key", "aws_secret_access_key": "local-secret"},
        **changes,
    }
    path.write_text(json.dumps(stack))
    return path


def test_the_local_target_is_read_from_stack_json_and_applied_to_the_environment(tmp_path: Path) -> None:
    target = local_target(local_stack_file(tmp_path / "stack.json"))
    assert (target.api_url, target.table_name, target.aws_endpoint_url) == (
        "http://127.0.0.1:4001",
        "local-messages",
        "http://127.0.0.1:4002",
    )
    assert os.environ["AWS_ACCESS_KEY_ID"] == "local-key"
    target.apply_to_environment()
    assert os.environ["TABLE_NAME"] == "local-messages"
    assert os.environ["IDEMPOTENCY_TABLE_NAME"] == "local-idempotency"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4002"
    # The Ocelot the stack's Sender uses (for `reconcile resend`): its sandbox and its secret
    assert os.environ["OCELOT_BASE_URL"] == "http://127.0.0.1:4003"
    assert os.environ["OCELOT_SECRET_ID"] == "arn:aws:secretsmanager:local-ocelot"


@pytest.mark.parametrize(("content", "problem"), [(None, "not found"), ({"api_url": None}, "has no api_url")])
def test_a_missing_or_unserved_local_stack_is_an_error(
    tmp_path: Path, content: dict[str, Any] | None, problem: str
) -> None:
    path = tmp_path / "stack.json"
    if content is not None:
        local_stack_file(path, **content)
    with pytest.raises(TargetError, match=problem):
        local_target(path)


def test_no_local_stack_is_a_clean_error_but_help_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OCELOT_SMS_STACK", raising=False)
    failed_cleanly(run("reconcile", "list"), "start the local stack")
    for args in (["--help"], ["send", "--help"], ["reconcile", "attach", "--help"]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


STACK_TEMPLATE = {
    "Parameters": {"OcelotBaseUrl": {"Type": "String"}},
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {
        "ApiUrl": {"Value": "https://abc.execute-api.us-east-1.amazonaws.com"},
        "SendQueueUrl": {"Value": {"Ref": "Queue"}},
        "DeadLetterQueueUrl": {"Value": "https://sqs/dlq"},
        "MessagesTableName": {"Value": "prod-messages"},
        "IdempotencyTableName": {"Value": "prod-idempotency"},
        "OcelotSecretId": {"Value": "arn:aws:secretsmanager:ocelot"},
        "WebhookSecretId": {"Value": "arn:aws:secretsmanager:webhook"},
    },
}


def test_a_deployed_stack_is_read_from_its_outputs_and_parameters(aws: dict[str, Any]) -> None:
    boto3.client("cloudformation").create_stack(
        StackName="ocelot-prod",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": "OcelotBaseUrl", "ParameterValue": "https://ai.ocelotbot.com"}],
    )
    target = stack_target("ocelot-prod", "us-east-1")
    assert target.api_url == "https://abc.execute-api.us-east-1.amazonaws.com"
    assert target.table_name == "prod-messages"
    assert target.region == "us-east-1"
    assert target.aws_endpoint_url is None
    target.apply_to_environment()
    assert os.environ["OCELOT_BASE_URL"] == "https://ai.ocelotbot.com"
    assert os.environ["OCELOT_SECRET_ID"] == "arn:aws:secretsmanager:ocelot"
    assert os.environ["TABLE_NAME"] == "prod-messages"


def test_a_stack_without_the_outputs_or_that_does_not_exist_is_an_error(aws: dict[str, Any]) -> None:
    template = {"Resources": STACK_TEMPLATE["Resources"], "Outputs": {"ApiUrl": {"Value": "https://x"}}}
    boto3.client("cloudformation").create_stack(StackName="partial", TemplateBody=json.dumps(template))
    with pytest.raises(TargetError, match="has no output"):
        stack_target("partial", "us-east-1")
    failed_cleanly(run("--stack", "missing", "reconcile", "list"), "stack 'missing'")


def test_the_target_makes_clients_for_its_endpoint(aws: dict[str, Any]) -> None:
    target = Target("a", "q", "d", "t", aws_endpoint_url="http://127.0.0.1:1", region="eu-west-1")
    client = target.client("sqs")
    assert client.meta.endpoint_url == "http://127.0.0.1:1"
    assert client.meta.region_name == "eu-west-1"


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "cli", interrupted)
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 130


def test_ocelot_settings_default_to_the_environment(target: Target) -> None:
    assert os.environ["OCELOT_BASE_URL"] == OCELOT_URL
