"""`.local/stack.json`: every endpoint of a running local stack, and nothing about how it is served.

Drivers (the demo, the integration tests, a developer's curl) read only this file, so the functions
can be served by the in-process front and poller or by `sam local` without changing them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STACK_FILE = "stack.json"
PID_FILE = "stack.pid"
LOG_FILE = "stack.log"
VERSION = 1


@dataclass(frozen=True, slots=True)
class StackInfo:
    pid: int
    started_at: str
    state_dir: str
    log_file: str
    functions: str  # "inprocess", or "none" when something else (sam local) serves them
    region: str
    sandbox_url: str
    aws_endpoint_url: str
    control_url: str
    queue_url: str
    dlq_url: str
    tables: dict[str, str]  # "messages", "idempotency" -> table name
    secrets: dict[str, str]  # "ocelot", "webhook" -> secret id (ARN)
    webhook_credentials: dict[str, str]  # what Ocelot (the sandbox) presents to the webhook
    ocelot_credentials: dict[str, str]  # what the sandbox expects: {"chatbotId", "apiKey"}
    aws_credentials: dict[str, str]  # fake, for boto3 clients pointed at aws_endpoint_url
    api_url: str | None = None  # base URL: POST {api_url}/batches
    webhook_url: str | None = None  # where the sandbox sends callbacks
    webhook_path: str | None = None  # the webhook's route, whoever serves it (sam local start-api too)
    function_env: dict[str, str] = field(default_factory=dict)
    functions_served: list[str] = field(default_factory=list)
    function_errors: dict[str, str] = field(default_factory=dict)  # logical id -> why it does not load
    sqs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    aws_pid: int | None = None  # moto's own process (`up --aws-process`), else None: it runs in `pid`
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: Path) -> StackInfo:
        return cls.from_json(json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        # Written whole or not at all: a reader never sees half a file.
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        temporary.replace(path)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_stack_process(pid: int) -> bool:
    """The pid is alive and is a local-stack supervisor (not a recycled pid of something else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pidfile
    if not cmdline:  # a zombie: exited, not yet reaped
        return False
    return b"tools.local.stack" in cmdline
