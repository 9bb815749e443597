"""The local stack supervisor: one process runs moto, the Ocelot sandbox, the API front and the poller.

    python -m tools.local.stack up [--background] [--state-dir .local] [--functions inprocess|none]
    python -m tools.local.stack down [--state-dir .local]
    python -m tools.local.stack status [--state-dir .local]

`up` binds every server to a free loopback port, writes <state-dir>/stack.pid at once and
<state-dir>/stack.json when ready, and runs until SIGTERM/SIGINT/SIGHUP (or until --parent-pid dies);
then it stops everything and removes both files. Everything lives in this one process, so nothing
can outlive it even when it is killed. `--background` starts that same process detached, waits until
it is ready, and returns.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tools.local import ROOT, netguard
from tools.local.stackinfo import LOG_FILE, PID_FILE, STACK_FILE, StackInfo, is_stack_process, read_pid

if TYPE_CHECKING:
    from tools.local.aws_process import MotoProcess

log = logging.getLogger("local.stack")

DEFAULT_STATE_DIR = ROOT / ".local"
REGION = "us-east-1"
PREFIX = "ocelot-sms-local"
SEND_FUNCTION, WEBHOOK_FUNCTION = "SenderFunction", "WebhookFunction"

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
    # Small chunks, so that a batch of ten shows several Ocelot batches.
    "OcelotMaxMessages": "5",
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


@dataclass
class StackOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    functions: str = "inprocess"
    seed: int = 0
    visibility_timeout: int = SQS_VISIBILITY_TIMEOUT
    parameters: dict[str, str] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    # Function environment overrides on top of LOCAL_TUNING (e.g. READ_TIMEOUT_SECONDS for the chaos run).
    env: dict[str, str] = field(default_factory=dict)
    # < 1 compresses botocore's retry waits in this process (tools/local/aws.py scale_retry_backoff).
    aws_backoff_scale: float = 1.0
    # moto in a child process (a second core; tools/local/aws_process.py) instead of threads here.
    aws_process: bool = False


def aws_environment(endpoint_url: str | None) -> dict[str, str]:
    """Fake credentials, the region, and nothing from the developer's ~/.aws or instance metadata."""
    from tools.local.aws import FAKE_CREDENTIALS

    env = {name.upper(): value for name, value in FAKE_CREDENTIALS.items()}
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


class LocalStack:
    """Start and stop the components in this process. `stop()` is safe at any point of `start()`."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self._stoppers: list[tuple[str, Any]] = []
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> StackInfo:
        from tools.local.api_front import ApiFront
        from tools.local.aws import (
            ACCOUNT_ID,
            DEAD_LETTER_QUEUE,
            OCELOT_SECRET,
            WEBHOOK_SECRET,
            MotoServer,
            provision,
            scale_retry_backoff,
            sqs_client,
        )
        from tools.local.lambdas import InProcessFunctions, merged_environment
        from tools.local.sandbox import Sandbox, SandboxConfig, updated_config
        from tools.local.serving import ServerThread
        from tools.local.sqs_poller import SqsPoller
        from tools.local.template_env import Resolver, function_specs
        from tools.template_resources import load_template, resource

        netguard.install()
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(aws_environment(None))
        options = self.options
        if options.aws_backoff_scale != 1.0:
            scale_retry_backoff(options.aws_backoff_scale)

        moto: MotoServer | MotoProcess
        if options.aws_process:
            from tools.local.aws_process import MotoProcess

            moto = MotoProcess().start()
        else:
            moto = MotoServer().start()
        self._stoppers.append(("moto", moto.stop))
        os.environ["AWS_ENDPOINT_URL"] = moto.url
        log.info("moto server on %s", moto.url)
        resources = provision(
            moto.url,
            REGION,
            PREFIX,
            {OCELOT_SECRET: OCELOT_CREDENTIALS, WEBHOOK_SECRET: WEBHOOK_CREDENTIALS},
        )

        sandbox_config = updated_config(
            SandboxConfig(
                seed=options.seed,
                chatbot_id=OCELOT_CREDENTIALS["chatbotId"],
                api_key=OCELOT_CREDENTIALS["apiKey"],
                webhook_username=WEBHOOK_CREDENTIALS["username"],
                webhook_password=WEBHOOK_CREDENTIALS["password"],
            ),
            options.sandbox,
        )
        sandbox = Sandbox(sandbox_config).start()
        self._stoppers.append(("sandbox", sandbox.stop))
        sandbox_server = ServerThread(sandbox, "sandbox").start()
        self._stoppers.append(("sandbox server", sandbox_server.stop))
        log.info("Ocelot sandbox on %s", sandbox_server.url)

        resolver = Resolver(
            load_template(),
            parameters={**LOCAL_PARAMETERS, "OcelotBaseUrl": sandbox_server.url, **options.parameters},
            refs=resources.refs,
            arns=resources.arns,
            region=REGION,
            account_id=ACCOUNT_ID,
        )
        specs = function_specs(resolver)
        function_env = merged_environment(
            specs, {**LOCAL_TUNING, **options.env, "AWS_ENDPOINT_URL": moto.url}
        )
        invoker: InProcessFunctions | None = None
        pollers: list[SqsPoller] = []
        if options.functions == "inprocess":
            from ocelot_sms import runtime

            os.environ.update(function_env)
            runtime.reset()
            invoker = InProcessFunctions(specs, REGION, ACCOUNT_ID).load()
        front = ApiFront(
            invoker,
            specs,
            extra_status=lambda: {"pollers": [p.status() for p in pollers]},
            storage_faults=moto.faults,
            table_items=lambda table, attributes: moto.table_items(table, attributes, REGION),
        )
        front_server = ServerThread(front, "api").start()
        self._stoppers.append(("api front", front_server.stop))
        log.info("API front on %s (routes: %s)", front_server.url, sorted(front.routes))

        api_url = webhook_url = None
        webhook_path = next(r.path for s in specs if s.logical_id == WEBHOOK_FUNCTION for r in s.routes)
        if invoker is not None:
            api_url = front_server.url
            webhook_url = f"{front_server.url}{webhook_path}"
            sandbox.configure(webhook_url=webhook_url)
            sqs = sqs_client(moto.url, REGION)
            for spec in specs:
                for source in spec.sqs_sources:
                    poller = SqsPoller(
                        invoker,
                        spec.logical_id,
                        source,
                        sqs,
                        resources.refs[source.queue],
                        resources.arns[source.queue],
                        REGION,
                        options.visibility_timeout,
                    )
                    pollers.append(poller.start())
                    # Stopped first (the list is unwound in reverse): no invocation starts during teardown.
                    self._stoppers.append((f"poller {source.queue}", poller.stop))

        redrive = resource("SendQueue")["Properties"].get("RedrivePolicy", {})
        return StackInfo(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            state_dir=str(options.state_dir),
            log_file=str(options.state_dir / LOG_FILE),
            functions=options.functions,
            region=REGION,
            sandbox_url=sandbox_server.url,
            aws_endpoint_url=moto.url,
            control_url=front_server.url,
            queue_url=resources.queue_url,
            dlq_url=resources.refs[DEAD_LETTER_QUEUE],
            tables={
                "messages": resources.refs["MessagesTable"],
                "idempotency": resources.refs["IdempotencyTable"],
            },
            secrets={"ocelot": resources.refs[OCELOT_SECRET], "webhook": resources.refs[WEBHOOK_SECRET]},
            webhook_credentials=dict(WEBHOOK_CREDENTIALS),
            ocelot_credentials=dict(OCELOT_CREDENTIALS),
            aws_credentials={
                k.lower(): v for k, v in aws_environment(None).items() if "KEY" in k or "TOKEN" in k
            },
            api_url=api_url,
            webhook_url=webhook_url,
            function_env={k: v for k, v in function_env.items() if not k.startswith("AWS_")},
            functions_served=sorted(invoker.specs) if invoker else [],
            function_errors=dict(invoker.load_errors) if invoker else {},
            webhook_path=webhook_path,
            sqs={
                "visibility_timeout_seconds": options.visibility_timeout,
                "max_receive_count": int(redrive.get("maxReceiveCount", 0)),
                "batch_size": next((s.batch_size for spec in specs for s in spec.sqs_sources), None),
                # The event source mappings, resolved: what a poller outside the stack needs.
                "sources": [
                    {
                        "function": spec.logical_id,
                        **asdict(source),
                        "queue_url": resources.refs[source.queue],
                        "queue_arn": resources.arns[source.queue],
                    }
                    for spec in specs
                    for source in spec.sqs_sources
                ],
            },
            seed=options.seed,
            aws_pid=getattr(moto, "pid", None),
        )

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        # Reverse order of start; one failing stop does not keep the others from running.
        for name, stop in reversed(self._stoppers):
            try:
                stop()
                log.info("stopped %s", name)
            except Exception:
                log.exception("could not stop %s", name)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _remove_if_ours(path: Path, pid: int) -> None:
    try:
        if path.name == PID_FILE and read_pid(path) != pid:
            return
        if path.name == STACK_FILE and StackInfo.load(path).pid != pid:
            return
        path.unlink()
    except (OSError, ValueError, TypeError):
        pass


def run_foreground(options: StackOptions, parent_pid: int | None) -> int:
    state_dir = options.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file, stack_file = state_dir / PID_FILE, state_dir / STACK_FILE
    running = read_pid(pid_file)
    if running and running != os.getpid() and is_stack_process(running):
        print(f"a local stack already runs from {state_dir} (pid {running}); `make local-down` stops it")
        return 2
    my_pid = os.getpid()
    pid_file.write_text(f"{my_pid}\n")
    stack_file.unlink(missing_ok=True)

    stack = LocalStack(options)
    stop_requested = threading.Event()
    ready = threading.Event()

    def cleanup() -> None:
        stack.stop()
        _remove_if_ours(stack_file, my_pid)
        _remove_if_ours(pid_file, my_pid)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set():
            return  # already stopping: let the cleanup finish
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop_requested.set()
        if not ready.is_set():
            raise KeyboardInterrupt  # abort the start; `finally` stops what was started

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    atexit.register(cleanup)
    try:
        info = stack.start()
        info.write(stack_file)
        ready.set()
        log.info("ready: %s", stack_file)
        print(f"local stack ready (pid {my_pid}): {stack_file}", flush=True)
        while not stop_requested.wait(0.5):
            if parent_pid is not None and not _alive(parent_pid):
                log.info("parent %s is gone: stopping", parent_pid)
                break
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("the local stack failed")
        return 1
    finally:
        cleanup()
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_background(state_dir: Path, extra: Sequence[str], timeout: float) -> int:
    stack_file, pid_file = state_dir / STACK_FILE, state_dir / PID_FILE
    running = read_pid(pid_file)
    if running and is_stack_process(running) and stack_file.exists():
        print(f"local stack already running (pid {running})")
        print_summary(StackInfo.load(stack_file))
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / LOG_FILE
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.local.stack", "up", "--state-dir", str(state_dir), *extra],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Its own session: a Ctrl-C in this terminal later does not reach it; `down` stops it.
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                print(f"the local stack exited ({process.returncode}) while starting; log: {log_path}")
                print(_tail(log_path))
                return 1
            if stack_file.exists() and StackInfo.load(stack_file).pid == process.pid:
                print(f"local stack started in the background (pid {process.pid}); log: {log_path}")
                print_summary(StackInfo.load(stack_file))
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        process.terminate()
        process.wait(15)
        raise
    print(f"the local stack was not ready within {timeout:.0f}s; stopping it. Log: {log_path}")
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    return 1


def stop_background(state_dir: Path, timeout: float) -> int:
    pid_file, stack_file = state_dir / PID_FILE, state_dir / STACK_FILE
    pid = read_pid(pid_file)
    if pid is None or not is_stack_process(pid):
        for path in (pid_file, stack_file):
            path.unlink(missing_ok=True)
        print("no local stack running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_stack_process(pid):
        time.sleep(0.1)
    if is_stack_process(pid):
        print(f"pid {pid} did not stop within {timeout:.0f}s: killing it")
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    for path in (pid_file, stack_file):
        path.unlink(missing_ok=True)
    print(f"local stack stopped (pid {pid})")
    return 0


def print_summary(info: StackInfo) -> None:
    rows: Mapping[str, Any] = {
        "api (POST /batches)": info.api_url or "(not served: --functions none)",
        "webhook": info.webhook_url or "(not served)",
        "Ocelot sandbox": info.sandbox_url,
        "AWS (moto)": info.aws_endpoint_url,
        "send queue": info.queue_url,
        "dead-letter queue": info.dlq_url,
        "tables": ", ".join(info.tables.values()),
        "control": f"{info.control_url}/_local/",
        "stack file": str(Path(info.state_dir) / STACK_FILE),
        "log": info.log_file,
    }
    for name, value in rows.items():
        print(f"  {name:<20} {value}")
    for function, error in info.function_errors.items():
        print(f"  WARNING: {function} does not load, its invocations fail: {error}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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
    up.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="function environment override"
    )
    up.add_argument(
        "--aws-backoff-scale",
        type=float,
        default=1.0,
        help="multiply botocore's retry waits in the stack by this (0 < x <= 1; the chaos run: 0.01)",
    )
    up.add_argument(
        "--aws-process",
        action="store_true",
        help="serve moto from a child process (a second core) instead of threads of this one",
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
        pid = read_pid(state_dir / PID_FILE)
        if pid and is_stack_process(pid) and (state_dir / STACK_FILE).exists():
            print(f"local stack running (pid {pid})")
            print_summary(StackInfo.load(state_dir / STACK_FILE))
            return 0
        print("no local stack running")
        return 3
    if args.background:
        extra = ["--functions", args.functions, "--seed", str(args.seed)]
        extra += ["--visibility-timeout", str(args.visibility_timeout)]
        for item in args.param:
            extra += ["--param", item]
        for item in args.env:
            extra += ["--env", item]
        extra += ["--aws-backoff-scale", str(args.aws_backoff_scale)]
        extra += ["--aws-process"] if args.aws_process else []
        return start_background(state_dir, extra, args.ready_timeout)
    _configure_logging()
    options = StackOptions(
        state_dir=state_dir,
        functions=args.functions,
        seed=args.seed,
        visibility_timeout=args.visibility_timeout,
        parameters=_key_values(args.param),
        env=_key_values(args.env),
        aws_backoff_scale=args.aws_backoff_scale,
        aws_process=args.aws_process,
    )
    return run_foreground(options, args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
