"""Driving `sam local` from tests: what tools/sam_local/serve.py provides (the engine, the image and
the build, start-api, start-lambda), plus `sam local invoke` of single events.

"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.sam_local import serve
from tools.sam_local.env_vars import LOOPBACK as LOOPBACK
from tools.template_resources import ROOT as ROOT

# Re-exported from serve.py, so the tests name everything `harness.X`.
BUILD_DIR = serve.BUILD_DIR
BUILT_TEMPLATE = serve.BUILT_TEMPLATE
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
