"""Helpers for the integration tests: requests and callbacks to a local stack, the CLI with --local,
a local stack run for a test package and checked to stop cleanly, the CI-sized chaos run in a thread."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from click.testing import CliRunner, Result

from ocelot_sms_cli.main import cli
from tools.chaos.run import CI_MESSAGES, ChaosResult, run_chaos
from tools.local.client import StackClient
from tools.local.stack import PID_FILE, STACK_FILE, StackInfo, StackProcess

SEED = 11
# Short visibility timeout: a failed queue message is retried after 1 s (the queue says 540 s).
# botocore's retry waits x0.1 in the stack: a test that fails DynamoDB writes on purpose waits less.
STACK_ARGS = ["--seed", str(SEED), "--visibility-timeout", "1", "--aws-backoff-scale", "0.1"]
CHAOS_SEED = 5  # the CI-sized chaos run's


class BackgroundChaos:
    """run_chaos in a daemon thread: if the session ends first, its stack stops with this process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.progress: list[str] = []
        self.result: ChaosResult | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-run", daemon=True)

    def _run(self) -> None:
        out = self.workdir / "chaos.json"
        stack_dir = self.workdir / "stack"
        self.result = run_chaos(CI_MESSAGES, CHAOS_SEED, stack_dir, out, self.progress.append, timeout=600)

    def start(self) -> BackgroundChaos:
        self._thread.start()
        return self

    def wait(self, timeout: float) -> ChaosResult:
        self._thread.join(timeout)
        assert self.result is not None, "the chaos run did not finish:\n" + "\n".join(self.progress[-40:])
        return self.result


def ports(info: StackInfo) -> set[int]:
    urls = (info.api_url, info.sandbox_url, info.aws_endpoint_url, info.control_url)
    return {port for url in urls if url and (port := urlsplit(url).port)}


def port_is_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def assert_stopped(process: StackProcess, info: StackInfo) -> None:
    assert process.process is not None
    assert process.process.poll() is not None, "the stack still runs"
    assert all(port_is_closed(p) for p in ports(info)), "a port of the stack still answers"
    assert not (Path(info.state_dir) / STACK_FILE).exists()
    assert not (Path(info.state_dir) / PID_FILE).exists()


def request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def batch(prefix: str, recipients: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "requestId": request_id(prefix),
        "messages": [
            {"to": to, "text": f"integration test {n}", "ref": f"{prefix}-{n}"}
            for n, to in enumerate(recipients)
        ],
        **extra,
    }


_numbers = iter(range(1, 10**6))


def recipients(*suffixes: str) -> list[str]:
    """Unique numbers per call (so sandbox rules never hit another test) ending in the given suffixes."""
    block = next(_numbers)
    return [f"+1555{block:03d}{n:02d}{suffix}" for n, suffix in enumerate(suffixes)]


def post_callback(
    stack: StackInfo, body: bytes | str, headers: Mapping[str, str] | None = None
) -> requests.Response:
    """One delivery to the webhook with the stack's Basic credentials, as Ocelot would send it."""
    assert stack.webhook_url is not None
    credentials = stack.webhook_credentials
    return requests.post(
        stack.webhook_url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        auth=(credentials["username"], credentials["password"]),
        timeout=30,
    )


def raw_delivery(client: StackClient, stack: StackInfo, delivery_id: str) -> dict[str, Any]:
    """The raw delivery's item (plain values), found by its delivery id."""
    items = client.table_items(
        stack.tables["messages"], ["deliveryId", "type", "problems", "problemCount", "truncatedFrom"]
    )
    [item] = [i for i in items if i.get("deliveryId", {}).get("S") == delivery_id]
    return {k: _plain(v) for k, v in item.items()}


def _plain(value: Mapping[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "N":
        return int(inner)
    if kind == "L":
        return [_plain(v) for v in inner]
    return inner


def ocelot_sms(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, ["--local", *args], catch_exceptions=False)


def running_stack(state_dir: Path, args: list[str]) -> Iterator[StackProcess]:
    """A local stack started in `state_dir`; when the generator closes, stopped, exiting 0, nothing left."""
    process = StackProcess(state_dir, args)
    try:
        process.start(timeout=60)
        yield process
    finally:
        info = process.info
        code = process.stop()
        if info is not None:
            assert code == 0, f"the stack exited with {code}:\n{process.log_tail()}"
            assert_stopped(process, info)
