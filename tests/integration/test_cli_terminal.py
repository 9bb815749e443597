"""`ocelot-sms` as an operator meets it: the installed command in a real terminal (a pty, read back
through a terminal emulator), against the local stack, asserting what the screen shows and the exit
code, for a send with --wait, its status, and each way a send or a setup can fail."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest

from ocelot_sms.applier import ApplierService, replay_deliveries
from ocelot_sms.observability import metrics
from ocelot_sms.settings import Settings
from ocelot_sms.store import DynamoStore
from ocelot_sms_cli.exits import Exit
from tests.integration.support import port_is_closed, request_id
from tools.local.aws import client as aws_client
from tools.local.client import StackClient
from tools.local.stack import STACK_FILE, StackInfo

OCELOT_SMS = Path(sys.executable).parent / "ocelot-sms"
_blocks = itertools.count(100)
# A terminal as an operator has one: 120 columns, tall enough to keep everything printed.
COLUMNS, LINES = 120, 400


@dataclass
class Shown:
    """What the terminal showed: at the end, and each time the screen changed while it ran."""

    screen: str
    code: int
    snapshots: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.screen.splitlines()

    @property
    def flat(self) -> str:
        """The screen's text with the terminal's wrapping undone (a wrapped line breaks at a space)."""
        return " ".join(self.lines())


def terminal_env(**extra: str) -> dict[str, str]:
    """A shell's environment with no AWS configuration of its own (nothing but loopback is reachable)."""
    nowhere = "/nonexistent/aws"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "AWS_CONFIG_FILE": nowhere,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        **extra,
    }


def in_terminal(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    columns: int = COLUMNS,
    timeout: float = 120,
    command: Path = OCELOT_SMS,
) -> Shown:
    """Run the command in a pty of `columns` columns until it exits; the screen as a person sees it."""
    screen = pyte.Screen(columns, LINES)
    stream = pyte.ByteStream(screen)
    child = pexpect.spawn(
        str(command), list(args), cwd=str(cwd), env=env or terminal_env(), dimensions=(LINES, columns)
    )
    snapshots: list[str] = []
    while True:
        try:
            data = child.read_nonblocking(65536, timeout=timeout)  # bytes: spawned without an encoding
        except pexpect.EOF:
            break
        stream.feed(data if isinstance(data, bytes) else data.encode())
        shown = _text(screen)
        if not snapshots or snapshots[-1] != shown:
            snapshots.append(shown)
    child.close()
    code = child.exitstatus if child.exitstatus is not None else -(child.signalstatus or 0)
    return Shown(_text(screen), code, snapshots)


def _text(screen: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in screen.display).rstrip()


@pytest.fixture
def checkout(stack: StackInfo, tmp_path: Path) -> Path:
    """A checkout whose .local/stack.json is the running stack's (as `make local-up` leaves it)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".local").mkdir()
    shutil.copy(Path(stack.state_dir) / STACK_FILE, tmp_path / ".local" / STACK_FILE)
    (tmp_path / "exports" / "fall").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def applying(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Applies the callbacks the webhook stores, as the table's stream does in AWS: the stored
    deliveries are replayed through the applier every half second (idempotent). Its metrics are
    flushed as a Lambda's would be, under the template's namespace."""
    monkeypatch.setattr(metrics, "namespace", "OcelotSms")
    settings = Settings(table_name=stack.tables["messages"])
    store = DynamoStore(aws_client("dynamodb", stack.aws_endpoint_url, stack.region), settings.table_name)
    applier = ApplierService(settings, store)
    since, stop = datetime.now(UTC), threading.Event()

    def run() -> None:
        while not stop.wait(0.5):
            replay_deliveries(store, applier, since, datetime.now(UTC))

    thread = threading.Thread(target=run, name="applying", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def recipients(*suffixes: str) -> list[str]:
    """US numbers of a block of their own (+1 555 BBB ssss), ending in the given suffixes; the sandbox
    scripts each one's outcome by its last four digits."""
    block = next(_blocks)
    return [f"+1555{block:03d}{suffix}" for suffix in suffixes]


def export(folder: Path, numbers: Sequence[str], name: str = "students.csv") -> Path:
    """A student-records export as Excel saves it: UTF-8 with BOM, semicolons, numbers as people type."""
    rows = ["Student ID;First Name;Mobile Phone;Course"]
    for n, number in enumerate(numbers):
        local = number.removeprefix("+1")
        typed = [f"({local[:3]}) {local[3:6]}-{local[6:]}", local, f"+1 {local[:3]} {local[3:6]} {local[6:]}"]
        rows.append(f"S{n:04d};Student{n};{typed[n % 3]};BIO {100 + n}")
    path = folder / name
    path.write_bytes(codecs.BOM_UTF8 + ("\r\n".join(rows) + "\r\n").encode())
    return path


MAPPING = ("--to-column", "Mobile Phone", "--ref-column", "Student ID")
TEMPLATE = ("--template", "Hi {first_name}, registration for {course} closes Friday.")


# ---- the journey: send with --wait, then status ------------------------------------------------------


def test_a_spreadsheet_sent_with_wait_then_its_status(
    client: StackClient, checkout: Path, applying: None
) -> None:
    # Given an export of 7 students; numbers ending 0001/0002/0003 end undelivered/failed/opted out
    numbers = recipients("0010", "0001", "0002", "0003", "0011", "0012", "0013")
    csv_file = export(checkout / "exports" / "fall", numbers)
    send_id = request_id("fall")
    # When an operator sends it in parts of 3 from a folder deep in the checkout, and waits
    shown = in_terminal(
        [
            "--local",
            "send",
            str(csv_file),
            "--send-id",
            send_id,
            *MAPPING,
            *TEMPLATE,
            "--per-request",
            "3",
            "--wait",
        ],
        cwd=checkout / "exports" / "fall",
    )
    # Then every part id, the progress while waiting, the counts as a table, and what happened: exit 0
    assert shown.code == Exit.DONE, shown.screen
    assert f"{csv_file}: 7 rows (UTF-8 with BOM, semicolon-separated): 7 to send, 0 with problems" in (
        shown.flat
    )
    for part, count in ((1, 3), (2, 3), (3, 1)):
        noun = "messages" if count > 1 else "message"
        assert f"part {part}/3 {send_id}-p000{part}: {count} {noun} accepted by Ocelot" in shown.flat
    assert any(re.search(rf"{send_id}: parts 3/3 · final [0-6]/7 · accepted", s) for s in shown.snapshots)
    assert re.search(r"│ delivered\s+│\s+4 │", shown.screen)
    assert re.search(r"│ opted_out\s+│\s+1 │", shown.screen)
    assert f"done: all 7 messages of send {send_id} are final: delivered 4 ·" in shown.flat
    assert "Traceback" not in shown.flat

    # When the operator looks at the send in an 80-column terminal
    status = in_terminal(["--local", "status", send_id], cwd=checkout, columns=80)
    # Then counts as a table, each part, error codes and reasons, whole timestamps, masked numbers
    assert status.code == Exit.DONE, status.screen
    assert f"send {send_id} · created" in status.flat
    assert re.search(r"│ undelivered\s+│\s+1 │", status.screen)
    assert re.search(rf"│ 3\s+│ {send_id}-p0003", status.screen) or f"{send_id}-p0003" in status.screen
    assert "30003" in status.flat  # the undelivered message's error code
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", status.screen)  # a whole timestamp
    assert "…" not in status.flat
    assert numbers[0] not in status.flat
    assert "****0010" in status.flat

    # When it is written to a file for a spreadsheet (piped: nothing cut, one row per message)
    saved = checkout / "outcomes.csv"
    piped = in_terminal(
        ["-c", f"{OCELOT_SMS} --local status {send_id} --output csv > {saved}"],
        cwd=checkout,
        command=Path("/bin/sh"),
    )
    assert piped.code == Exit.DONE, piped.screen
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [r["ref"] for r in rows] == [f"S{n:04d}" for n in range(7)]
    assert {r["status"] for r in rows} == {"delivered", "undelivered", "failed", "opted_out"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert (failed["error_code"], failed["recipient"]) == ("30008", f"********{numbers[2][-4:]}")
    assert all(len(r["last_event_at"]) == 27 and r["ocelot_message_id"] for r in rows)

    # When the same command is run again; Then nothing is sent again, and it says so
    again = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE, "--per-request", "3"],
        cwd=checkout,
    )
    assert again.code == Exit.DONE, again.screen
    assert f"nothing was sent again: send {send_id} was already sent (7 messages" in again.flat

    # And the list of sends shows it with its counts
    listed = in_terminal(["--local", "sends", "--limit", "5"], cwd=checkout)
    assert listed.code == Exit.DONE, listed.screen
    assert re.search(rf"│ {send_id}\s+│ \S+Z\s+│\s+3 │\s+7 │\s+0 │\s+4 │\s+3 │\s+0 │", listed.screen)


def test_a_dry_run_previews_and_sends_nothing(client: StackClient, checkout: Path) -> None:
    csv_file = export(checkout, recipients("0010", "0011"))
    send_id = request_id("dry")
    shown = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE, "--dry-run"],
        cwd=checkout,
    )
    assert shown.code == Exit.DONE, shown.screen
    assert f"part 1/1 {send_id}: 2 messages to 2 recipients in 1 chunk to Ocelot" in shown.flat
    # The sample request is one line the terminal wraps where it must (copied whole, it is JSON)
    assert '"message": "Hi Student0, registration for BIO 100 closes Friday."' in "".join(shown.lines())
    assert "dry run: 2 messages in 1 part(s) validated by the API; nothing was sent" in shown.flat
    assert client.chunks(send_id) == []


# ---- each way a send ends, with its exit code ---------------------------------------------------------


def test_bad_rows_exit_2_with_a_reason_per_line(client: StackClient, checkout: Path) -> None:
    path = checkout / "bad.csv"
    path.write_text("to,text\n(555) 123-0010,ok\n555-12,short\n+1 555 123 0011,\n")
    shown = in_terminal(["--local", "send", str(path), "--send-id", request_id("bad")], cwd=checkout)
    assert shown.code == Exit.INVALID, shown.screen
    assert "line 3: 555-12 is too short for a US number" in shown.flat
    assert "line 4: the text is empty" in shown.flat
    assert (
        "2 row(s) cannot be sent (above): fix them, or pass --skip-invalid to send the other 1"
        in shown.screen
    )


def test_a_template_naming_a_missing_column_exits_2_before_sending(
    client: StackClient, checkout: Path
) -> None:
    csv_file = export(checkout, recipients("0010"))
    shown = in_terminal(
        [
            "--local",
            "send",
            str(csv_file),
            "--send-id",
            request_id("tpl"),
            *MAPPING,
            "--template",
            "Hi {nickname}",
        ],
        cwd=checkout,
    )
    assert shown.code == Exit.INVALID, shown.screen
    assert "--template names {nickname}, which" in shown.flat
    assert "its columns are 'Student ID', 'First Name', 'Mobile Phone', 'Course'" in shown.flat


def test_an_unknown_outcome_exits_3(client: StackClient, checkout: Path) -> None:
    client.sandbox_config(accept_timeout_rate=1.0, accept_timeout_seconds=3.0)
    csv_file = export(checkout, recipients("0010", "0011"))
    send_id = request_id("unsure")
    shown = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE], cwd=checkout
    )
    assert shown.code == Exit.UNKNOWN, shown.screen
    assert f"part 1/1 {send_id}: 0 accepted, 2 with an unknown outcome" in shown.flat
    assert "`ocelot-sms reconcile list`" in shown.flat


def test_queued_without_wait_exits_3(client: StackClient, checkout: Path) -> None:
    csv_file = export(checkout, recipients("0010", "0011"))
    send_id = request_id("queued")
    shown = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE, "--via", "sqs"],
        cwd=checkout,
    )
    assert shown.code == Exit.UNKNOWN, shown.screen
    assert f"part 1/1 {send_id}: queued (2 messages)" in shown.flat
    assert "nothing is confirmed yet" in shown.flat


@pytest.mark.parametrize(
    ("rule", "code", "said"),
    [
        (
            {"status": 400, "message": "Phone number is not active"},
            Exit.REJECTED,
            "Ocelot rejected it: Phone number is not active",
        ),
        ({"status": 503}, Exit.UNAVAILABLE, "unavailable (HTTP 503"),
    ],
    ids=["rejected", "unavailable"],
)
def test_ocelot_refusing_or_unavailable_has_its_exit_code(
    client: StackClient, checkout: Path, rule: dict[str, Any], code: Exit, said: str
) -> None:
    # Given Ocelot answers this recipient's requests with `rule` (400: refused; 503: busy, every retry)
    numbers = recipients("0010")
    client.sandbox_config(fail_recipients={numbers[0]: rule})
    csv_file = export(checkout, numbers)
    shown = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", request_id("no"), *MAPPING, *TEMPLATE], cwd=checkout
    )
    assert shown.code == code, shown.screen
    assert said in shown.flat
    assert "run the same command again" in shown.flat


def test_a_send_id_used_for_other_messages_exits_5(client: StackClient, checkout: Path) -> None:
    csv_file = export(checkout, recipients("0010"))
    send_id = request_id("twice")
    first = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE], cwd=checkout
    )
    assert first.code == Exit.DONE, first.screen
    other = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, "--template", "Another text"],
        cwd=checkout,
    )
    assert other.code == Exit.CONFLICT, other.screen
    flat = other.flat
    assert f"send id '{send_id}' was used before for other messages" in flat
    assert f"see what it holds with `ocelot-sms status {send_id}`" in flat


# ---- setup: one line, never a traceback ---------------------------------------------------------------


class _Denying(BaseHTTPRequestHandler):
    """An AWS endpoint that refuses every request as IAM would."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: "
            b"arn:aws:iam::1:user/x is not authorized to perform: cloudformation:DescribeStacks</Message>"
            b"</Error><RequestId>1</RequestId></ErrorResponse>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Denying)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = int(server.server_address[1])
    server.server_close()
    assert port_is_closed(port)
    return port


FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "local-key", "AWS_SECRET_ACCESS_KEY": "local-secret"}


@pytest.mark.parametrize(
    ("args", "env", "code", "said"),
    [
        (["sends"], {}, Exit.SETUP, "no stack chosen: give --stack NAME (or set OCELOT_SMS_STACK=NAME)"),
        (["--stack", "prod", "sends"], {}, Exit.SETUP, "no AWS region: give --region"),
        (
            ["--stack", "prod", "--region", "us-east-1", "sends"],
            {"AWS_ENDPOINT_URL": "{moto}"},
            Exit.SETUP,
            "no AWS credentials found",
        ),
        (
            ["--stack", "prod", "--profile", "ops", "sends"],
            {},
            Exit.SETUP,
            "The config profile (ops) could not be found",
        ),
        (
            ["--stack", "nope", "--region", "us-east-1", "sends"],
            {"AWS_ENDPOINT_URL": "{moto}", **FAKE_KEYS},
            Exit.SETUP,
            "stack 'nope' not found in us-east-1",
        ),
        (
            ["--stack", "prod", "--region", "us-east-1", "sends"],
            {"AWS_ENDPOINT_URL": "{denying}", **FAKE_KEYS},
            Exit.SETUP,
            "access denied to DescribeStacks",
        ),
        (
            ["--stack", "prod", "--region", "us-east-1", "sends"],
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:{closed}", **FAKE_KEYS},
            Exit.UNAVAILABLE,
            "could not reach AWS",
        ),
    ],
    ids=[
        "no-stack",
        "no-region",
        "no-credentials",
        "no-profile",
        "stack-not-found",
        "access-denied",
        "no-connection",
    ],
)
def test_every_setup_problem_is_one_line_and_its_exit_code(
    stack: StackInfo,
    tmp_path: Path,
    denying_endpoint: str,
    closed_port: int,
    args: list[str],
    env: dict[str, str],
    code: Exit,
    said: str,
) -> None:
    values = {"moto": stack.aws_endpoint_url, "denying": denying_endpoint, "closed": str(closed_port)}
    shown = in_terminal(
        args, cwd=tmp_path, env=terminal_env(**{k: v.format(**values) for k, v in env.items()})
    )
    assert shown.code == code, shown.screen
    assert said in shown.flat
    assert len(shown.lines()) <= 3  # one line, wrapped at most twice at 120 columns
    assert "Traceback" not in shown.flat


def test_help_and_version_in_a_terminal(tmp_path: Path) -> None:
    helped = in_terminal(["send", "-h"], cwd=tmp_path)
    assert helped.code == Exit.DONE
    assert "--template TEXT" in helped.flat
    assert "5  conflict: the send id was used before for other messages" in helped.flat
    version = in_terminal(["--version"], cwd=tmp_path)
    assert (version.code, version.screen) == (Exit.DONE, "ocelot-sms, version 0.1.0")
