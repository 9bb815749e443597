"""`ocelot-sms status` and `sends`: a send as a person reads it (table), a spreadsheet (CSV) and the
API's JSON, against the real status Lambda."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest
import requests
from rich.console import Console

from ocelot_sms_cli import views
from ocelot_sms_cli.exits import Exit
from ocelot_sms_cli.target import Target
from tests.unit.support.cli import ended, rows_csv, run
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot, phone

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


@pytest.fixture
def shown_send(target: Target, stack_api: list[str], ocelot: FakeOcelot) -> dict[str, str]:
    """Send "fall" in two parts (chunks of 2): part 1 delivered and failed, part 2's second chunk timed
    out (unknown); the message ids by ref."""
    ocelot.then_for("ref-4", requests.ReadTimeout("read timed out"))  # part 2, chunk 1
    first = send("fall-p0001", 2, sendId="fall", part=1, parts=2)
    second = send(
        "fall-p0002",
        3,
        sendId="fall",
        part=2,
        parts=2,
        messages=[{"to": phone(i), "text": "x", "ref": f"ref-{i}"} for i in range(2, 5)],
    )
    ids = {m.ref or "": m.message_id or "" for m in (*first.messages, *second.messages)}
    deliver(
        [
            callback("e-1", ids["ref-0"], "delivered", "2026-11-26T16:00:05.123456Z"),
            callback(
                "e-2",
                ids["ref-1"],
                "failed",
                "2026-11-26T16:00:06Z",
                errorCode="30008",
                errorMessage="Unknown error",
            ),
        ],
        "d-1",
    )
    return ids


def test_status_shows_counts_as_a_table_parts_unknown_chunks_and_every_message(
    shown_send: dict[str, str],
) -> None:
    result = run("--local", "status", "fall")
    ended(result, Exit.DONE, "send fall · created ")
    out = result.output
    assert "2 part(s), 2 of 2 recorded · 5 messages" in out
    # Counts as a table, not a Python dict
    assert re.search(r"│ delivered\s+│\s+1 │", out)
    assert re.search(r"│ unknown\s+│\s+1 │", out)
    assert re.search(r"│ total\s+│\s+5 │", out)
    assert "{'" not in out
    # The parts with their own counts, the unknown chunk with its reason
    assert re.search(r"│ 2\s+│ fall-p0002\s+│\s+3 │ accepted 2 · unknown 1", out)
    assert (
        "part 2 (fall-p0002) chunk 1: 1 messages with an unknown outcome: no response from Ocelot in time"
        in out
    )
    # Every message: error code and message, whole timestamps, masked numbers; an unknown one with its
    # recipient and ref
    assert "30008: Unknown error" in out
    assert "2026-11-26T16:00:05.123456Z" in out
    assert shown_send["ref-0"] in out
    assert re.search(r"│\s+5 │\s+2 │ ref-4\s+│ \*+0004 │ unknown", out)
    assert phone(4) not in out


def test_status_as_csv_is_one_row_per_message_for_a_spreadsheet(shown_send: dict[str, str]) -> None:
    result = run("--local", "status", "fall", "--output", "csv", "--show-numbers")
    ended(result, Exit.DONE)
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["ref"] for r in rows] == [f"ref-{i}" for i in range(5)]
    failed = rows[1]
    assert (failed["status"], failed["error_code"], failed["error_message"]) == (
        "failed",
        "30008",
        "Unknown error",
    )
    assert (failed["recipient"], failed["ocelot_message_id"], failed["part"]) == (
        phone(1),
        shown_send["ref-1"],
        "1",
    )
    assert failed["ocelot_batch_id"]
    assert (rows[4]["status"], rows[4]["request_id"], rows[4]["row"]) == ("unknown", "fall-p0002", "5")
    masked = list(csv.DictReader(io.StringIO(run("--local", "status", "fall", "-o", "csv").output)))
    assert masked[1]["recipient"] == "********0001"


def test_status_as_json_is_the_api_answer_with_every_page(
    target: Target, stack_api: list[str], ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a send of 501 messages (two pages of the status API), in Ocelot's full-size chunks
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "100")
    send("big", 501)
    # When shown as JSON; Then every message of both pages is there
    result = run("--local", "status", "big", "--output", "json")
    ended(result, Exit.DONE)
    view = json.loads(result.output)
    assert len(view["messages"]) == 501
    assert view["counts"] == {"accepted": 501}
    assert view["messages"][0]["to"] == "********0000"
    assert sum(1 for asked in stack_api if asked.startswith("GET /sends/big")) == 2


def test_a_part_id_shows_that_part_and_names_its_send(
    shown_send: dict[str, str], stack_api: list[str]
) -> None:
    result = run("--local", "status", "fall-p0002")
    ended(result, Exit.DONE, "fall-p0002 is part 2 of 2 of send fall: showing this part alone")
    assert "3 messages" in result.output


def test_an_unknown_id_is_invalid_input(target: Target, stack_api: list[str]) -> None:
    ended(run("--local", "status", "nope"), Exit.INVALID, "no send or batch 'nope'", "`ocelot-sms sends`")
    ended(run("--local", "status", "--message", "nope"), Exit.INVALID, "no message 'nope'")
    ended(run("--local", "status"), Exit.INVALID, "give a SEND_ID or --message MESSAGE_ID")


def test_a_message_history_in_each_output(shown_send: dict[str, str]) -> None:
    message_id = shown_send["ref-0"]
    deliver([callback("e-0", message_id, "queued", "2026-11-26T16:00:01Z")], "d-2")
    table = run("--local", "status", "--message", message_id)
    ended(table, Exit.DONE, f"message {message_id}: delivered · request fall-p0001 · ref ref-0")
    assert table.output.index("queued") < table.output.index("e-1")
    rows = list(
        csv.DictReader(io.StringIO(run("--local", "status", "--message", message_id, "-o", "csv").output))
    )
    assert [(r["event_id"], r["status"]) for r in rows] == [("e-0", "queued"), ("e-1", "delivered")]
    as_json = json.loads(run("--local", "status", "--message", message_id, "-o", "json").output)
    assert as_json["to"] == "********0000"  # masked


def test_piped_output_is_never_cut(shown_send: dict[str, str]) -> None:
    # Given output to a pipe (CliRunner is not a terminal); Then no line is wrapped or cut short
    result = run("--local", "status", "fall")
    assert "…" not in result.output
    assert all(message_id in result.output for message_id in shown_send.values() if message_id)
    rows = [line for line in result.output.splitlines() if re.match(r"│\s+\d+ │", line)]
    assert len({len(line) for line in rows}) == 1  # one line per row: nothing folded onto a second line


def test_sends_lists_recent_sends_with_counts(shown_send: dict[str, str], ocelot: FakeOcelot) -> None:
    send("later", 1)
    table = run("--local", "sends")
    ended(table, Exit.DONE, "2 send(s), newest first")
    assert table.output.index("later") < table.output.index("fall")
    assert re.search(r"│ fall\s+│ \S+Z\s+│\s+2 │\s+5 │\s+2 │\s+1 │\s+1 │\s+1 │", table.output)
    rows = list(csv.DictReader(io.StringIO(run("--local", "sends", "-o", "csv").output)))
    assert [(r["send_id"], r["messages"], r["delivered"], r["unknown"]) for r in rows] == [
        ("later", "1", "0", "0"),
        ("fall", "5", "1", "1"),
    ]
    as_json = json.loads(run("--local", "sends", "--limit", "1", "-o", "json").output)
    assert [s["sendId"] for s in as_json["sends"]] == ["later"]


def test_a_send_from_a_file_is_shown_whole(tmp_path: Path, target: Target, stack_api: list[str]) -> None:
    ended(
        run("--local", "send", str(rows_csv(tmp_path, 3)), "--send-id", "f", "--per-request", "2"), Exit.DONE
    )
    result = run("--local", "status", "f", "-o", "csv")
    assert [r["request_id"] for r in csv.DictReader(io.StringIO(result.output))] == [
        "f-p0001",
        "f-p0001",
        "f-p0002",
    ]


@pytest.fixture
def narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal of 70 columns: too narrow for the messages', sends' and events' tables."""

    def narrow(stderr: bool = False) -> Console:
        return Console(file=sys.stderr if stderr else sys.stdout, width=70, markup=False, highlight=False)

    monkeypatch.setattr(views, "console", narrow)


def test_a_narrow_terminal_shows_each_row_as_a_block_never_squeezed(
    shown_send: dict[str, str], narrow_terminal: None
) -> None:
    # When a send, the list of sends and a message's history are shown 70 columns wide
    status = run("--local", "status", "fall")
    sends = run("--local", "sends")
    history = run("--local", "status", "--message", shown_send["ref-1"])
    # Then each message, send and event is a block of whole lines: ids and times are never cut
    ended(status, Exit.DONE, "row 2, part 1 · ref ref-1 · ********0001 · failed")
    assert f"    Ocelot message id {shown_send['ref-1']}" in status.output
    assert "    error 30008: Unknown error" in status.output
    assert "    last event 2026-11-26T16:00:05.123456Z" in status.output
    ended(sends, Exit.DONE, "fall · 2 parts · 5 messages", "delivered 1 · failed 1 · unknown 1")
    ended(history, Exit.DONE, "2026-11-26T16:00:06.000000Z · failed", "    event e-2")
    assert all(len(line) <= 70 for line in status.output.splitlines() + sends.output.splitlines())
