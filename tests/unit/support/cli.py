"""Helpers for the command line's tests: run a command as CliRunner does, check how it ended, make
the CSV files an operator would have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from ocelot_sms_cli import main as cli_main
from tests.unit.support.ocelot import phone

API = "https://api.ocelot-sms.test"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli_main.cli, list(args), input=input, catch_exceptions=True)


def ended(result: Result, code: int, *fragments: str) -> None:
    """The command ended with `code`, saying each fragment, without a traceback."""
    shown = result.output + result.stderr
    assert result.exit_code == code, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}"
    )
    assert "Traceback" not in shown
    for fragment in fragments:
        assert fragment in shown, shown


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows_csv(tmp_path: Path, count: int, text: str = "Hello {i}", first: int = 0) -> Path:
    lines = ["to,text,ref"] + [f"{phone(i)},{text.format(i=i)},ref-{i}" for i in range(first, first + count)]
    return write_csv(tmp_path / "send.csv", "\n".join(lines) + "\n")


def queued(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
        "Messages", []
    ):
        bodies.extend(json.loads(m["Body"]) for m in got)
    return sorted(bodies, key=lambda b: b["requestId"])
