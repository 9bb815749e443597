"""Integration fixtures: a real local stack (its own process, free loopback ports) per test package.

The stack is the one `make local-up` runs, started in a temporary state directory and stopped at the
end of the package, also when a test fails. This process may only talk to loopback while it runs.
Callbacks reach the webhook, which stores them; the stack's stream poller hands them to the applier.

The CI-sized chaos run has a stack of its own: it starts with the first integration test, runs in a
thread beside the other tests (most of them wait on timers: retries, visibility timeouts, callback
delays), and is checked by test_chaos.py's test, which runs last.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner, Result

from ocelot_sms import runtime
from ocelot_sms.observability import logger
from ocelot_sms_cli.main import cli
from tools.chaos.run import CI_MESSAGES, ChaosResult, run_chaos
from tools.local import netguard
from tools.local.client import StackClient
from tools.local.stack import PID_FILE, STACK_FILE, StackInfo, StackProcess

SEED = 11
# Short visibility timeout: a failed queue message is retried after 1 s (the queue says 540 s).
# botocore's retry waits x0.1 in the stack: a test that fails DynamoDB writes on purpose waits less.
STACK_ARGS = ["--seed", str(SEED), "--visibility-timeout", "1", "--aws-backoff-scale", "0.1"]
CHAOS_TEST, CHAOS_SEED = "test_chaos_run_at_ci_size", 5


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.name == CHAOS_TEST)  # stable: only the chaos run moves, to the end


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


@pytest.fixture(scope="session", autouse=True)
def chaos_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> BackgroundChaos | None:
    if not any(item.name == CHAOS_TEST for item in request.session.items):
        return None
    return BackgroundChaos(tmp_path_factory.mktemp("chaos")).start()


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


@pytest.fixture(scope="package", autouse=True)
def loopback_only() -> Iterator[None]:
    """This test process connects to loopback only; anything else fails the connection and the run."""
    netguard.install()
    yield
    violations = netguard.snapshot()["violations"]
    netguard.uninstall()
    assert not violations, f"the tests tried to leave loopback: {violations}"


@pytest.fixture(scope="package")
def stack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    process = StackProcess(tmp_path_factory.mktemp("stack"), STACK_ARGS)
    try:
        process.start(timeout=60)
        yield process
    finally:
        info = process.info
        code = process.stop()
        if info is not None:
            assert code == 0, f"the stack exited with {code}:\n{process.log_tail()}"
            assert_stopped(process, info)


@pytest.fixture(scope="package")
def stack(stack_process: StackProcess) -> StackInfo:
    assert stack_process.info is not None
    return stack_process.info


@pytest.fixture(scope="package")
def client(stack: StackInfo) -> Iterator[StackClient]:
    with StackClient(stack) as stack_client:
        yield stack_client


@pytest.fixture(autouse=True)
def calm_sandbox(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts and ends with no chaos (the record is kept: tests use their own request ids)."""
    if "client" not in request.fixturenames:
        yield
        return
    stack_client: StackClient = request.getfixturevalue("client")
    stack_client.sandbox_reset(config=True, record=False)
    stack_client.webhook_faults(reset=True)
    yield
    stack_client.sandbox_reset(config=True, record=False)
    stack_client.webhook_faults(reset=True)


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


# ---- callbacks straight to the webhook ------------------------------------------------------------


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


# ---- the CLI, --local -----------------------------------------------------------------------------


@pytest.fixture
def operator(stack: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A shell in a checkout whose .local/stack.json is the running stack's; the environment, the
    layer's cached clients and its log stream are put back afterwards."""
    (tmp_path / ".local").mkdir()
    shutil.copy(Path(stack.state_dir) / STACK_FILE, tmp_path / ".local" / STACK_FILE)
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        monkeypatch.setattr(handler, "stream", handler.stream)
    runtime.reset()
    yield tmp_path
    runtime.reset()
    os.environ.clear()
    os.environ.update(saved)


def ocelot_sms(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, ["--local", *args], catch_exceptions=False)
