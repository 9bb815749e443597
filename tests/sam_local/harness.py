"""Driving `sam local` from tests: what tools/sam_local/serve.py provides (the engine, the image and
the build, start-api, start-lambda), plus `sam local invoke` of single events, and the table's stream
read as the applier's event source mapping reads it (tools/local/event_sources.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.local import functions
from tools.local.aws import ACCOUNT_ID, REGION
from tools.local.event_sources import StreamPoller
from tools.sam_local import serve
from tools.sam_local.env_vars import LOOPBACK as LOOPBACK
from tools.template_resources import ROOT as ROOT
from tools.template_resources import Resolver, stream_sources

# Re-exported from serve.py, so the tests name everything `harness.X`.
BUILD_DIR = serve.BUILD_DIR
BUILT_TEMPLATE = serve.BUILT_TEMPLATE
build = serve.build
ProvisionError = serve.ProvisionError
EngineMissing = serve.EngineMissing
Provisioned = serve.Provisioned
SamServer = serve.SamServer
free_port = serve.free_port
in_ci = serve.in_ci
provision = serve.provision
run = serve.run
sam_command = serve.sam_command
sam_environment = serve.sam_environment

EVENTS_DIR = ROOT / "events"


@dataclass(frozen=True)
class Invocation:
    function: str
    event: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def payload(self) -> Any:
        """What the function returned (SAM prints it as the last line of stdout)."""
        lines = self.stdout.strip().splitlines()
        assert self.returncode == 0, f"sam local invoke exited {self.returncode}:\n{self.log_tail()}"
        assert lines, f"sam local invoke printed nothing:\n{self.log_tail()}"
        return json.loads(lines[-1])

    @property
    def body(self) -> Any:
        """The JSON body of an API Gateway response."""
        return json.loads(self.payload["body"])

    def log_tail(self, lines: int = 40) -> str:
        return serve.tail(self.stderr, lines)


@dataclass
class SamLocal(serve.SamLocal):
    """serve.SamLocal (start-api, start-lambda) plus one-off `sam local invoke`s."""

    def invoke(
        self,
        function: str,
        event: Path,
        variables: Mapping[str, str],
        *,
        extra: Sequence[str] = (),
        timeout: float = 180,
    ) -> Invocation:
        command = [
            *sam_command(),
            "local",
            "invoke",
            function,
            "--event",
            str(event),
            *self.common_flags(self.env_file(variables)),
            *extra,
        ]
        started = time.monotonic()
        result = run(command, timeout=timeout, env=self.env)
        return Invocation(
            function, event, result.returncode, result.stdout, result.stderr, time.monotonic() - started
        )


@dataclass
class SamInvoker:
    """An Invoker (tools/local/functions.py) whose every invocation is a `sam local invoke` of the built
    function: what a stream poller hands the applier goes to its container."""

    sam: SamLocal
    variables: Mapping[str, str]
    invocations: list[Invocation] = field(default_factory=list)

    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> functions.Invocation:
        started = datetime.now(UTC).isoformat(timespec="milliseconds")
        done = self.sam.invoke(function, self.sam.write_json(f"event-{function}", event), self.variables)
        self.invocations.append(done)
        payload = done.payload
        failed = isinstance(payload, dict) and "errorType" in payload
        error = f"{payload['errorType']}: {payload.get('errorMessage')}" if failed else None
        records = len(event.get("Records", []))
        return functions.Invocation(
            function, trigger, "sam-local-invoke", started, done.seconds * 1000, payload, error, records
        )

    def history(self) -> list[dict[str, Any]]:
        return [{"function": i.function, "seconds": i.seconds} for i in self.invocations]


def stream_poller(
    invoker: functions.Invoker, aws_endpoint_url: str, stream_arn: str, on_failure_url: str
) -> StreamPoller:
    """The applier's event source mapping (as template.yaml declares it) on a table's stream; not
    started: `poll_once()` hands over what is there, or `start()` keeps polling."""
    resolver = Resolver(parameters={}, refs={}, arns={}, region=REGION, account_id=ACCOUNT_ID)
    function = "ApplierFunction"
    [source] = stream_sources(resolver)[function]
    assert source.on_failure is not None
    on_failure = (on_failure_url, source.on_failure)
    return StreamPoller(invoker, function, source, aws_endpoint_url, stream_arn, REGION, on_failure, {})


@contextlib.contextmanager
def applying(
    invoke_url: str, aws_endpoint_url: str, stream_arn: str, on_failure_url: str
) -> Iterator[StreamPoller]:
    """A stream poller invoking the applier through a Lambda Invoke API (sam local start-lambda) until
    the block ends."""
    invoker = functions.EndpointInvoker(invoke_url, REGION)
    poller = stream_poller(invoker, aws_endpoint_url, stream_arn, on_failure_url)
    poller.start()
    try:
        yield poller
    finally:
        poller.stop()
        invoker.close()


def settle(poller: StreamPoller, timeout: float) -> None:
    """Until the poller has handed over everything its stream held when this was called."""
    asked = time.monotonic()
    while not poller.settled_since(asked):
        assert time.monotonic() - asked < timeout, f"the stream poller did not settle: {poller.status()}"
        time.sleep(0.1)
