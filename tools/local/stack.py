"""The local stack: moto, the Ocelot sandbox, the API front, the event source pollers and the real
handlers on loopback.

    python -m tools.local.stack up [--background] [--state-dir .local] [--functions inprocess|none]
    python -m tools.local.stack down|status [--state-dir .local]

`up` binds every server to a free loopback port, writes <state-dir>/stack.pid at once and
<state-dir>/stack.json when ready, and runs until SIGTERM/SIGINT/SIGHUP (or until --parent-pid dies);
then it stops everything and removes both files. moto runs in a child process that ends with this
one, even when this one is killed. `--background` starts the same process detached, waits until it
is ready, and returns.

Drivers (the demo, the tests, the chaos run, sam local, a developer's curl) know the stack only by
its stack.json (`StackInfo`), so the functions can be served in process or by `sam local`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from tools.local import netguard
from tools.local.api_front import ApiFront
from tools.local.aws import (
    ACCOUNT_ID,
    DEAD_LETTER_QUEUE,
    OCELOT_SECRET,
    QUEUE,
    REGION,
    WEBHOOK_SECRET,
    MotoProcess,
    aws_environment,
    provision,
    scale_retry_backoff,
    stop_with_parent,
)
from tools.local.event_sources import Poller, SqsPoller, StreamPoller
from tools.local.functions import EndpointInvoker, InProcessFunctions, merged_environment
from tools.local.sandbox import Sandbox, SandboxConfig
from tools.local.scheduler import ScheduleRunner
from tools.local.serving import ServerThread
from tools.template_resources import ROOT, Resolver, function_specs, resource

log = logging.getLogger("local.stack")

DEFAULT_STATE_DIR = ROOT / ".local"
STACK_FILE, PID_FILE, LOG_FILE = "stack.json", "stack.pid", "stack.log"
PREFIX = "ocelot-sms-local"
WEBHOOK_FUNCTION = "WebhookFunction"
SCHEDULE_GROUPS = ("SendSchedules",)
EVENT_BUS = "StatusEventBus"

# What the sandbox expects, stored in the Ocelot secret; and what it presents to the webhook, stored in
# the webhook secret. The events/webhook_*.json files carry the same webhook credentials.
OCELOT_CREDENTIALS = {"chatbotId": "local-chatbot-0000", "apiKey": "local-api-key-0000"}
WEBHOOK_CREDENTIALS = {
    "username": "ocelot",
    "password": "local-webhook-password",
    "token": "local-webhook-token",
}
# Template parameters for the local stack (as a samconfig would give them). OcelotBaseUrl is the sandbox.
LOCAL_PARAMETERS = {
    "Stage": "dev",
    "DefaultSender": "+15550000000",
    "DefaultOperatorId": "operator-1",
    "OcelotMaxMessages": "5",  # small chunks, so that a batch of ten shows several Ocelot batches
}
# Settings the template leaves at their defaults, tuned so that faults show within seconds locally.
LOCAL_TUNING = {
    "CONNECT_TIMEOUT_SECONDS": "1",
    "READ_TIMEOUT_SECONDS": "2",
    "MAX_SEND_ATTEMPTS": "3",
    "MAX_RETRY_WAIT_SECONDS": "2",
    "SECRET_MAX_AGE_SECONDS": "5",
}
SQS_VISIBILITY_TIMEOUT = 2


@dataclass(frozen=True, slots=True)
class StackInfo:
    """`stack.json`: every endpoint of a running stack, and nothing about how the functions are served."""

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
    # The mappings on a table's stream: {"sources": [{function, mapping, table, stream_arn, ...}]}
    streams: dict[str, Any] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)  # every queue of the template: logical id -> URL
    # The stack's EventBridge bus, and the queue a rule on it forwards every event of ours to (a check).
    event_bus: str = ""
    events_queue_url: str = ""
    schedule_groups: list[str] = field(default_factory=list)  # fired by the stack (tools/local/scheduler.py)
    seed: int = 0
    aws_pid: int | None = None  # moto's own process

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> StackInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

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
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ProcessLookupError, PermissionError):
        return False
    except OSError:
        return True  # no /proc: trust the pidfile
    return b"tools.local.stack" in cmdline  # empty for a zombie: exited, not yet reaped


@dataclass
class StackOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    functions: str = "inprocess"
    seed: int = 0
    visibility_timeout: int = SQS_VISIBILITY_TIMEOUT
    parameters: dict[str, str] = field(default_factory=dict)
    # Function environment overrides on top of LOCAL_TUNING (e.g. READ_TIMEOUT_SECONDS for the chaos run).
    env: dict[str, str] = field(default_factory=dict)
    # < 1 compresses botocore's retry waits in this process (tools/local/aws.py scale_retry_backoff).
    aws_backoff_scale: float = 1.0


class LocalStack:
    """Start and stop the components in this process. `stop()` is safe at any point of `start()`."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self._stoppers: list[tuple[str, Callable[[], None]]] = []
        self._pollers: list[Poller] = []
        # Per stream mapping, where its shards were read up to: kept when its pollers are replaced.
        self._checkpoints: dict[str, dict[str, str]] = {}
        self._invoker: Any = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> StackInfo:
        from ocelot_sms import runtime  # the handlers' cached clients, rebuilt for this environment

        netguard.install()
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(aws_environment())
        options = self.options
        if options.aws_backoff_scale != 1.0:
            scale_retry_backoff(options.aws_backoff_scale)
        self.moto = MotoProcess().start()
        self._stoppers.append(("moto", self.moto.stop))
        log.info("moto on %s (pid %s)", self.moto.url, self.moto.pid)
        secrets = {OCELOT_SECRET: OCELOT_CREDENTIALS, WEBHOOK_SECRET: WEBHOOK_CREDENTIALS}
        resources = provision(self.moto.url, PREFIX, secrets)
        groups = [resources.refs[g] for g in SCHEDULE_GROUPS if g in resources.refs]
        self._scheduler = ScheduleRunner(self.moto.url, groups, REGION).start()
        self._stoppers.append(("scheduler", self._scheduler.stop))

        ocelot, webhook = OCELOT_CREDENTIALS, WEBHOOK_CREDENTIALS
        sandbox = Sandbox(
            SandboxConfig(
                seed=options.seed,
                chatbot_id=ocelot["chatbotId"],
                api_key=ocelot["apiKey"],
                webhook_username=webhook["username"],
                webhook_password=webhook["password"],
            )
        ).start()
        self._stoppers.append(("sandbox", sandbox.stop))
        sandbox_server = ServerThread(sandbox, "sandbox").start()
        self._stoppers.append(("sandbox server", sandbox_server.stop))
        log.info("Ocelot sandbox on %s", sandbox_server.url)

        resolver = Resolver(
            parameters={**LOCAL_PARAMETERS, "OcelotBaseUrl": sandbox_server.url, **options.parameters},
            refs=resources.refs,
            arns=resources.arns,
            region=REGION,
            account_id=ACCOUNT_ID,
        )
        self._specs = specs = function_specs(resolver)
        self._resources = resources
        self._queues = {q: (url, resources.arns[q]) for q, url in resources.queues.items()}
        tuning = {**LOCAL_TUNING, **options.env, "AWS_ENDPOINT_URL": self.moto.url}
        function_env = merged_environment(specs, tuning)
        if options.functions == "inprocess":
            os.environ.update(function_env)
            runtime.reset()
            self._invoker = InProcessFunctions(specs, REGION).load()
        front = ApiFront(
            self._invoker,
            specs,
            {
                "GET /egress": lambda _: self.egress(),
                "GET /invocations": lambda _: self.invocations(),
                "POST /event-sources": lambda request: self.invoke_event_sources(
                    json.loads(request.get_data() or b"{}").get("invoke_url")
                ),
                "POST /event-sources/settle": lambda request: self.settle(
                    float(json.loads(request.get_data() or b"{}").get("timeout", 60))
                ),
            },
        )
        front_server = ServerThread(front, "api").start()
        self._stoppers.append(("api front", front_server.stop))
        log.info("API front on %s (routes: %s)", front_server.url, sorted(front.routes))

        webhook_path = next(r.path for s in specs if s.logical_id == WEBHOOK_FUNCTION for r in s.routes)
        api_url = webhook_url = None
        if self._invoker is not None:
            api_url, webhook_url = front_server.url, f"{front_server.url}{webhook_path}"
            sandbox.configure(webhook_url=webhook_url)
            self._start_pollers()

        redrive = resource(QUEUE)["Properties"].get("RedrivePolicy", {})
        served = getattr(self._invoker, "specs", {})
        return StackInfo(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            state_dir=str(options.state_dir),
            log_file=str(options.state_dir / LOG_FILE),
            functions=options.functions,
            region=REGION,
            sandbox_url=sandbox_server.url,
            aws_endpoint_url=self.moto.url,
            control_url=front_server.url,
            queue_url=resources.refs[QUEUE],
            dlq_url=resources.refs[DEAD_LETTER_QUEUE],
            tables={
                "messages": resources.refs["MessagesTable"],
                "idempotency": resources.refs["IdempotencyTable"],
            },
            secrets={"ocelot": resources.refs[OCELOT_SECRET], "webhook": resources.refs[WEBHOOK_SECRET]},
            webhook_credentials=dict(WEBHOOK_CREDENTIALS),
            ocelot_credentials=dict(OCELOT_CREDENTIALS),
            aws_credentials={
                k.lower(): v for k, v in aws_environment().items() if "KEY" in k or "TOKEN" in k
            },
            api_url=api_url,
            webhook_url=webhook_url,
            webhook_path=webhook_path,
            function_env={k: v for k, v in function_env.items() if not k.startswith("AWS_")},
            functions_served=sorted(served),
            function_errors=dict(getattr(self._invoker, "load_errors", {})),
            sqs={
                "visibility_timeout_seconds": options.visibility_timeout,
                "max_receive_count": int(redrive.get("maxReceiveCount", 0)),
                "batch_size": next((s.batch_size for spec in specs for s in spec.sqs_sources), None),
                # The event source mappings: the functions sam local start-lambda has to serve.
                "sources": [
                    {
                        "function": spec.logical_id,
                        **asdict(source),
                        "queue_url": self._queues[source.queue][0],
                    }
                    for spec in specs
                    for source in spec.sqs_sources
                ],
            },
            streams={"sources": self._stream_sources_json()},
            queues=dict(resources.queues),
            event_bus=resources.refs.get(EVENT_BUS, ""),
            events_queue_url=resources.events_queue_url,
            schedule_groups=groups,
            seed=options.seed,
            aws_pid=self.moto.pid,
        )

    def _stream_sources_json(self) -> list[dict[str, Any]]:
        """The stream mappings as stack.json lists them: the functions sam local start-lambda serves."""
        return [
            {
                "function": spec.logical_id,
                **asdict(source),
                "stream_arn": self._resources.stream_arns[source.table],
                "on_failure_queue_url": self._queues[source.on_failure][0] if source.on_failure else None,
            }
            for spec in self._specs
            for source in spec.stream_sources
        ]

    def _start_pollers(self) -> None:
        for spec in self._specs:
            for source in spec.sqs_sources:
                poller: Poller = SqsPoller(
                    self._invoker,
                    spec.logical_id,
                    source,
                    self.moto.url,
                    self._queues[source.queue],
                    REGION,
                    self.options.visibility_timeout,
                )
                self._pollers.append(poller.start())
            for stream in spec.stream_sources:
                on_failure = stream.on_failure
                poller = StreamPoller(
                    self._invoker,
                    spec.logical_id,
                    stream,
                    self.moto.url,
                    self._resources.stream_arns[stream.table],
                    REGION,
                    (self._queues[on_failure][0], on_failure) if on_failure else None,
                    self._checkpoints.setdefault(stream.mapping, {}),
                )
                self._pollers.append(poller.start())

    def _stop_pollers(self) -> None:
        while self._pollers:
            self._pollers.pop().stop()

    def invoke_event_sources(self, invoke_url: str | None) -> dict[str, Any]:
        """POST /_local/event-sources: the queue's messages and the stream's records go to the functions
        through this Lambda Invoke API (sam local start-lambda), or nowhere (None). For a stack with
        `--functions none`; a stream resumes where it was left."""
        if self.options.functions != "none":
            raise ValueError("this stack serves its functions itself")
        if invoke_url is not None and not invoke_url.startswith("http://127.0.0.1:"):
            raise ValueError(f"invoke_url must be http://127.0.0.1:<port>, got {invoke_url!r}")
        with self._lock:
            self._stop_pollers()
            if self._invoker is not None:
                self._invoker.close()
                self._invoker = None
            if invoke_url is not None:
                self._invoker = EndpointInvoker(invoke_url, REGION)
                self._start_pollers()
        return self.invocations()

    def invocations(self) -> dict[str, Any]:
        history = self._invoker.history() if self._invoker is not None else []
        return {
            "invocations": history,
            "pollers": [poller.status() for poller in self._pollers],
            "scheduler": self._scheduler.status(),
        }

    def settle(self, timeout: float) -> dict[str, Any]:
        """POST /_local/event-sources/settle: wait until every stream poller has handed over (and seen
        through, retries included) every record written before this call. `settled` false: not within
        `timeout` seconds, or no stream poller runs."""
        asked = time.monotonic()
        with self._lock:
            pollers = [p for p in self._pollers if isinstance(p, StreamPoller)]
        while pollers and not all(p.settled_since(asked) for p in pollers):
            if time.monotonic() - asked >= timeout:
                break
            time.sleep(0.05)
        settled = bool(pollers) and all(p.settled_since(asked) for p in pollers)
        waited = round(time.monotonic() - asked, 3)
        return {"settled": settled, "seconds": waited, "pollers": [p.status() for p in pollers]}

    def egress(self) -> dict[str, Any]:
        """Where this process and moto's connected to (loopback only, or it was refused)."""
        mine, moto = netguard.snapshot(), self.moto.control("egress", timeout=10)
        destinations = Counter(mine["destinations"]) + Counter(moto["destinations"])
        return {
            "installed": mine["installed"] and moto["installed"],
            "destinations": dict(destinations),
            "violations": mine["violations"] + moto["violations"],
        }

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            # Pollers first: no invocation starts during teardown; then the reverse order of start.
            stoppers = [("pollers", self._stop_pollers), *reversed(self._stoppers)]
        for name, stop in stoppers:
            try:
                stop()
                log.info("stopped %s", name)
            except Exception:
                log.exception("could not stop %s", name)


# ---- running it ----------------------------------------------------------------------------------


def _claim(state_dir: Path) -> bool:
    """This process's pid in the state directory, unless another stack runs from it."""
    pid_file = state_dir / PID_FILE
    running, my_pid = read_pid(pid_file), os.getpid()
    if running and running != my_pid and is_stack_process(running):
        print(f"a local stack already runs from {state_dir} (pid {running}); `make local-down` stops it")
        return False
    pid_file.write_text(f"{my_pid}\n")
    (state_dir / STACK_FILE).unlink(missing_ok=True)
    return True


def _release(stack: LocalStack, state_dir: Path) -> None:
    """Stop the stack, and remove the files that say it runs (if they still speak of this process)."""
    stack.stop()
    pid_file, stack_file, my_pid = state_dir / PID_FILE, state_dir / STACK_FILE, os.getpid()
    with contextlib.suppress(OSError, ValueError, TypeError):
        if StackInfo.load(stack_file).pid == my_pid:
            stack_file.unlink()
    if read_pid(pid_file) == my_pid:
        pid_file.unlink(missing_ok=True)


def _stop_on_signals(stop_requested: threading.Event, ready: threading.Event) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set():
            return  # already stopping: let the cleanup finish
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop_requested.set()
        if not ready.is_set():
            raise KeyboardInterrupt  # abort the start; `finally` stops what was started

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)


def run_foreground(options: StackOptions, parent_pid: int | None) -> int:
    state_dir = options.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    if not _claim(state_dir):
        return 2
    stack = LocalStack(options)
    stop_requested, ready = threading.Event(), threading.Event()
    _stop_on_signals(stop_requested, ready)
    atexit.register(_release, stack, state_dir)
    try:
        stack.start().write(state_dir / STACK_FILE)
        ready.set()
        print(f"local stack ready (pid {os.getpid()}): {state_dir / STACK_FILE}", flush=True)
        if parent_pid is not None:
            stop_with_parent(parent_pid, stop_requested.set)
        while not stop_requested.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("the local stack failed")
        return 1
    finally:
        _release(stack, state_dir)
    return 0


class StackStartError(RuntimeError):
    pass


class StackProcess:
    """`python -m tools.local.stack up` as a child process, in a state directory of its own (so it never
    collides with a stack a developer keeps running). Unless `detached` (`up --background`), the child
    watches this process and stops by itself if we die without stopping it."""

    def __init__(self, state_dir: Path, args: Sequence[str] = (), detached: bool = False) -> None:
        self.state_dir = state_dir
        self.args = list(args) + ([] if detached else ["--parent-pid", str(os.getpid())])
        self.process: subprocess.Popen[bytes] | None = None
        self.info: StackInfo | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    def start(self, timeout: float = 60.0) -> StackInfo:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        stack_file = self.state_dir / STACK_FILE
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.local.stack",
                    "up",
                    "--state-dir",
                    str(self.state_dir),
                    *self.args,
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Its own session: a Ctrl-C in this terminal does not race our own orderly stop.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackStartError(f"the stack exited with {self.process.returncode}:\n{self.log_tail()}")
            if stack_file.exists() and (info := StackInfo.load(stack_file)).pid == self.process.pid:
                self.info = info
                return info
            time.sleep(0.05)
        self.stop()
        raise StackStartError(f"the stack was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code (None if never started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def interrupt_on_signals() -> list[int]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt once, so a command's cleanup runs; a second
    signal does not interrupt that cleanup. Returns the list the first signal number lands in.

    Set explicitly: a shell starts background jobs with SIGINT ignored, and Ctrl-C must still stop us."""
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    return received


def running_info(state_dir: Path) -> StackInfo | None:
    pid = read_pid(state_dir / PID_FILE)
    if pid and is_stack_process(pid) and (state_dir / STACK_FILE).exists():
        return StackInfo.load(state_dir / STACK_FILE)
    return None


def start_background(state_dir: Path, args: Sequence[str], timeout: float) -> int:
    info = running_info(state_dir)
    if info is None:
        stack = StackProcess(state_dir, args, detached=True)
        try:
            info = stack.start(timeout)
        except StackStartError as error:
            print(f"the local stack did not start; log: {stack.log_path}\n{error}")
            return 1
        except KeyboardInterrupt:
            stack.stop()
            raise
        print(f"local stack started in the background (pid {info.pid}); log: {stack.log_path}")
    else:
        print(f"local stack already running (pid {info.pid})")
    print_summary(info)
    return 0


def stop_background(state_dir: Path, timeout: float) -> int:
    pid = read_pid(state_dir / PID_FILE)
    if pid is not None and is_stack_process(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and is_stack_process(pid):
            time.sleep(0.1)
        if is_stack_process(pid):
            print(f"pid {pid} did not stop within {timeout:.0f}s: killing it")
            os.kill(pid, signal.SIGKILL)
    for name in (PID_FILE, STACK_FILE):
        (state_dir / name).unlink(missing_ok=True)
    print(f"local stack stopped (pid {pid})" if pid else "no local stack running")
    return 0


def print_summary(info: StackInfo) -> None:
    rows = {
        "api (POST /batches)": info.api_url or "(not served: --functions none)",
        "webhook": info.webhook_url or "(not served)",
        "Ocelot sandbox": info.sandbox_url,
        "AWS (moto)": info.aws_endpoint_url,
        "send queue": info.queue_url,
        "dead-letter queue": info.dlq_url,
        **{
            f"{s['function']} <- stream": f"{s['table']}; failed batches to {s['on_failure_queue_url']}"
            for s in info.streams.get("sources", [])
        },
        "tables": ", ".join(info.tables.values()),
        "schedules fired": ", ".join(info.schedule_groups) or "-",
        "event bus": f"{info.event_bus or '-'}; every event also to {info.events_queue_url or '-'}",
        "control": f"{info.control_url}/_local/",
        "stack file": str(Path(info.state_dir) / STACK_FILE),
        "log": info.log_file,
    }
    for name, value in rows.items():
        print(f"  {name:<20} {value}")
    for function, error in info.function_errors.items():
        print(f"  WARNING: {function} does not load, its invocations fail: {error}")


def _key_values(items: Sequence[str]) -> dict[str, str]:
    pairs = dict(item.split("=", 1) for item in items if "=" in item)
    if len(pairs) != len(items):
        raise SystemExit("expected NAME=VALUE")
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local.stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack (foreground unless --background)")
    up.add_argument("--background", action="store_true", help="detach, wait until ready, return")
    up.add_argument("--functions", choices=("inprocess", "none"), default="inprocess")
    up.add_argument("--seed", type=int, default=0, help="the sandbox's seed")
    up.add_argument("--visibility-timeout", type=int, default=SQS_VISIBILITY_TIMEOUT)
    up.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter")
    up.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="function setting")
    up.add_argument(
        "--aws-backoff-scale",
        type=float,
        default=1.0,
        help="multiply botocore's retry waits in the stack by this (0 < x <= 1; the chaos run: 0.01)",
    )
    up.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    up.add_argument("--ready-timeout", type=float, default=90.0)
    for command in (up, commands.add_parser("down"), commands.add_parser("status")):
        command.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()

    if args.command == "down":
        return stop_background(state_dir, timeout=20)
    if args.command == "status":
        info = running_info(state_dir)
        print(f"local stack running (pid {info.pid})" if info else "no local stack running")
        if info is None:
            return 3
        print_summary(info)
        return 0
    if args.background:
        forwarded = ["--functions", args.functions, "--seed", str(args.seed)]
        forwarded += ["--visibility-timeout", str(args.visibility_timeout)]
        forwarded += ["--aws-backoff-scale", str(args.aws_backoff_scale)]
        forwarded += [arg for item in args.param for arg in ("--param", item)]
        forwarded += [arg for item in args.env for arg in ("--env", item)]
        return start_background(state_dir, forwarded, args.ready_timeout)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = StackOptions(
        state_dir=state_dir,
        functions=args.functions,
        seed=args.seed,
        visibility_timeout=args.visibility_timeout,
        parameters=_key_values(args.param),
        env=_key_values(args.env),
        aws_backoff_scale=args.aws_backoff_scale,
    )
    return run_foreground(options, args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
