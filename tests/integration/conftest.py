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
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocelot_sms import runtime
from ocelot_sms.observability import logger
from tests.integration.support import STACK_ARGS, BackgroundChaos, running_stack
from tools.local import netguard
from tools.local.client import StackClient
from tools.local.stack import STACK_FILE, StackInfo, StackProcess

CHAOS_TEST = "test_chaos_run_at_ci_size"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.name == CHAOS_TEST)  # stable: only the chaos run moves, to the end


@pytest.fixture(scope="session", autouse=True)
def chaos_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> BackgroundChaos | None:
    if not any(item.name == CHAOS_TEST for item in request.session.items):
        return None
    return BackgroundChaos(tmp_path_factory.mktemp("chaos")).start()


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
    yield from running_stack(tmp_path_factory.mktemp("stack"), STACK_ARGS)


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


# ---- callbacks straight to the webhook ------------------------------------------------------------


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
