"""Serving the functions with `sam local`: the engine, the image and the build, then start-api and
start-lambda as child processes that are ready when returned and leave nothing behind when stopped.

Used by the sam_local tests (tests/sam_local/harness.py) and by `make demo SAM=1` (tools/demo.py).
Everything SAM runs comes from `sam build`'s output (.aws-sam/build: the functions mounted at
/var/task, the layer baked in at /opt/python); every address handed to SAM or to a function is
127.0.0.1, and the containers share the host's network so they reach the local stack there. The
local stack is known only by its stack.json and its control routes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tools.sam_local.env_vars import (
    ENDPOINT_VARIABLE,
    LOOPBACK,
    declared_names,
    document,
    for_sam,
    from_stack,
)
from tools.template_resources import ROOT, load_template

BUILD_DIR = ROOT / ".aws-sam" / "build"
BUILT_TEMPLATE = BUILD_DIR / "template.yaml"
TOOLS = ROOT / "tools" / "sam_local"
# What `sam build` reads: a change to any of them makes the build stale.
BUILD_INPUTS = (ROOT / "template.yaml", ROOT / "samconfig.toml", ROOT / "functions", ROOT / "layers")
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Passed through to SAM from our environment; nothing else is (SAM hands any shell variable named
# like a template variable to the functions, so the environment starts empty).
PASSTHROUGH: tuple[str, ...] = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PYENV_ROOT")
# pip's own settings, for the layer's build (layers/shared/Makefile installs its wheels with pip).
PASSTHROUGH += ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT")
PASSTHROUGH += tuple(f"DOCKER_{name}" for name in ("HOST", "CONFIG", "CERT_PATH", "TLS_VERIFY"))


class ProvisionError(RuntimeError):
    """The engine, the image, the build or a `sam local` server could not be made ready."""


class EngineMissing(ProvisionError):
    """No Docker engine answers, and we were not to start one (outside CI)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(
    command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---- provisioning ------------------------------------------------------------------------------


def engine_problem() -> str | None:
    """None when a Docker engine answers `docker info`, else why not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        result = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if result.returncode != 0:
        return f"`docker info` failed: {tail(result.stderr, 1) or result.returncode}"
    return None


def start_engine() -> None:
    """tools/sam_local/ensure-docker.sh: installs docker.io if needed and starts dockerd (root)."""
    result = run(["bash", str(TOOLS / "ensure-docker.sh")], timeout=900)
    if result.returncode != 0:
        raise ProvisionError(f"ensure-docker.sh failed:\n{tail(result.stdout + result.stderr)}")


def ensure_image() -> str:
    """tools/sam_local/ensure-image.sh: the image to pass as --invoke-image (built if missing)."""
    result = run(["bash", str(TOOLS / "ensure-image.sh")], timeout=1800)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ProvisionError(f"ensure-image.sh failed:\n{tail(result.stderr)}")
    return lines[-1].strip()


def _newest_mtime(paths: Sequence[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if d != "__pycache__"]
                # A directory's own mtime changes when a file in it is added or removed.
                newest = max(newest, Path(dirpath).stat().st_mtime)
                newest = max((newest, *(Path(dirpath, f).stat().st_mtime for f in filenames)))
    return newest


def build_is_fresh() -> bool:
    return BUILT_TEMPLATE.is_file() and BUILT_TEMPLATE.stat().st_mtime >= _newest_mtime(BUILD_INPUTS)


def sam_command() -> list[str]:
    """SAM CLI through tools/sam_local/sam.py: `--docker-network host` then really means the host's
    network (SAM 1.170 ignores it), so containers reach the local stack on 127.0.0.1."""
    if importlib.util.find_spec("samcli") is None:
        raise ProvisionError("the SAM CLI is not installed in this Python (make install)")
    return [sys.executable, "-m", "tools.sam_local.sam"]


def sam_environment(aws_endpoint_url: str | None, app_dir: Path) -> dict[str, str]:
    """The environment every sam command runs with: fake credentials, AWS on loopback, no telemetry.

    tools/sam_local/sam.py already keeps SAM off the network (no STS call, no version check);
    AWS_ENDPOINT_URL is there for anything else SAM might ask AWS. __SAM_CLI_APP_DIR keeps SAM's
    own state (installation id) out of the developer's ~/.aws-sam.
    """
    env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    bin_dir = str(Path(sys.executable).parent)
    # The venv first: `sam build` needs the python3.13 it provides for runtime python3.13.
    env["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/bin:/bin")])
    env.update(FAKE_AWS)
    if aws_endpoint_url:
        env["AWS_ENDPOINT_URL"] = aws_endpoint_url
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAM_CLI_TELEMETRY": "0",
            "__SAM_CLI_APP_DIR": str(app_dir),
            # tools/sam_local/sam.py stops SAM (and so its containers) if this process dies.
            "SAMLOCAL_PARENT_PID": str(os.getpid()),
        }
    )
    app_dir.mkdir(parents=True, exist_ok=True)
    return env


def sam_build(env: Mapping[str, str]) -> None:
    result = run([*sam_command(), "build"], timeout=900, env=env)
    if result.returncode != 0:
        raise ProvisionError(f"sam build failed:\n{tail(result.stdout + result.stderr, 25)}")


def build(workdir: Path) -> Path:
    """Plain `sam build` (no config env: what a user runs), unless the build is newer than its inputs;
    the build folder. Needs no Docker engine."""
    if not build_is_fresh():
        sam_build(sam_environment(None, workdir / "sam-cli"))
    return BUILD_DIR


@dataclass(frozen=True)
class Provisioned:
    image: str
    template: Path = BUILT_TEMPLATE


def provision(workdir: Path, *, start_missing_engine: bool) -> Provisioned:
    """Engine, image and build. Without an answering engine: EngineMissing, unless asked to start one
    (CI), when any failure to get it is a ProvisionError."""
    problem = engine_problem()
    if problem is not None:
        if not start_missing_engine:
            raise EngineMissing(problem)
        start_engine()  # installs and starts one
        problem = engine_problem()
        if problem is not None:
            raise ProvisionError(f"CI: the Docker engine still does not answer: {problem}")
    image = ensure_image()
    build(workdir)
    # SAM passes a function only the variables its template declares: without this one, boto3 in the
    # functions would call real AWS instead of the local stack.
    undeclared = [
        f
        for f, names in declared_names(load_template(BUILT_TEMPLATE)).items()
        if ENDPOINT_VARIABLE not in names
    ]
    if undeclared:
        raise ProvisionError(f"template.yaml must declare {ENDPOINT_VARIABLE} for {', '.join(undeclared)}")
    return Provisioned(image)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


# ---- start-api / start-lambda --------------------------------------------------------------------


# samconfig.toml's config env for this repository's offline setup: the image ensure-image.sh tags,
# no pull, the host's network, 127.0.0.1 for the emulators and servers, the functions on x86_64.
CONFIG_ENV = "local"
# Named, because SAM reads the samconfig.toml next to --template otherwise: the built template's
# folder has none, and without it every setting above falls back to SAM's defaults (arm64, a pull).
CONFIG_FILE = ROOT / "samconfig.toml"


@dataclass
class SamLocal:
    """`sam local` as we run it: samconfig.toml's `local` config env, the built template, AWS on
    loopback. Only what differs from run to run is passed as a flag."""

    image: str  # what ensure-image.sh provided (samconfig names it by its alias)
    template: Path
    env: dict[str, str]
    workdir: Path
    _files: int = field(default=0, init=False)

    def common_flags(self, env_file: Path) -> list[str]:
        return [
            *("--config-file", str(CONFIG_FILE), "--config-env", CONFIG_ENV),
            *("--template", str(self.template), "--env-vars", str(env_file)),
        ]

    def write_json(self, stem: str, content: Any) -> Path:
        self._files += 1
        path = self.workdir / f"{self._files:03d}-{stem}.json"
        path.write_text(json.dumps(content, indent=2))
        return path

    def env_file(self, values: Mapping[str, str]) -> Path:
        return self.write_json("env-vars", document(values))

    @contextlib.contextmanager
    def start_api(
        self, variables: Mapping[str, str], port: int, *, ready_timeout: float = 120
    ) -> Iterator[SamServer]:
        """POST /batches, the webhook route...: the template's HttpApi routes on 127.0.0.1:port."""
        with self._serve("start-api", ["--no-watch"], variables, port, ready_timeout) as server:
            yield server

    @contextlib.contextmanager
    def start_lambda(
        self,
        variables: Mapping[str, str],
        port: int,
        functions: Sequence[str] = (),
        *,
        ready_timeout: float = 120,
    ) -> Iterator[SamServer]:
        """Lambda's Invoke API on 127.0.0.1:port (boto3 `lambda` client, endpoint_url=server.url),
        for `functions` only (their warm containers start at once), or for all of them."""
        with self._serve("start-lambda", list(functions), variables, port, ready_timeout) as server:
            yield server

    @contextlib.contextmanager
    def _serve(
        self,
        subcommand: str,
        extra: Sequence[str],
        variables: Mapping[str, str],
        port: int,
        ready_timeout: float,
    ) -> Iterator[SamServer]:
        command = [
            *sam_command(),
            "local",
            subcommand,
            *extra,
            "--port",
            str(port),
            *self.common_flags(self.env_file(variables)),
        ]
        log_path = self.workdir / f"{subcommand}-{port}.log"
        with log_path.open("w") as log:
            # Its own session: SIGTERM/SIGKILL reach it (and nothing of ours) by its pid alone.
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = SamServer(subcommand, process, f"http://{LOOPBACK}:{port}", log_path)
        try:
            server.wait_ready(ready_timeout)
            yield server
        finally:
            server.stop()


@dataclass
class SamServer:
    """A running `sam local start-api` or `start-lambda`, its log, and what stopping it left."""

    name: str  # "start-api" or "start-lambda"
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    stopped_cleanly: bool | None = None
    leftover_containers: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def container_ids(self) -> list[str]:
        """The warm containers SAM started (it prints SAM_CONTAINER_ID for each)."""
        return [
            line.split(":", 1)[1].strip()
            for line in self.log().splitlines()
            if line.startswith("SAM_CONTAINER_ID:")
        ]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        host, port = self.url.removeprefix("http://").split(":")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProvisionError(
                    f"sam local {self.name} exited ({self.process.returncode}):\n{tail(self.log(), 30)}"
                )
            if f"Running on {self.url}" in self.log():
                with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                    return
            time.sleep(0.2)
        raise ProvisionError(
            f"sam local {self.name} not ready after {timeout:.0f} s:\n{tail(self.log(), 30)}"
        )

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a backgrounded SAM ignores SIGINT), SIGKILL if it lingers; then make sure none of
        its containers is left (SAM removes them itself when it stops cleanly)."""
        containers = self.container_ids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
                self.stopped_cleanly = True
            except subprocess.TimeoutExpired:
                self.stopped_cleanly = False
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        for container in containers:
            if run(["docker", "inspect", container], timeout=30).returncode == 0:
                self.leftover_containers.append(container)
                run(["docker", "rm", "-f", container], timeout=60)
        release_build_locks(self.process.pid)


def release_build_locks(pid: int) -> list[Path]:
    """SAM's image build locks (in the temp directory) that a stopped SAM process still held, marked
    failed and removed: the next SAM then builds the image itself, instead of waiting five minutes for
    a build that will never finish (SAM stopped in the middle of building a warm container's image)."""
    released = []
    for lock in Path(tempfile.gettempdir()).glob("samcli_*.building.lock"):
        try:
            owner = lock.read_text().split()[0]
        except (OSError, IndexError):
            continue
        if owner == str(pid):
            lock.with_suffix(".status").write_text(f"failed\n{time.time()}")
            lock.unlink(missing_ok=True)
            released.append(lock)
    return released


# ---- a local stack's functions, served by sam local -------------------------------------------


@dataclass
class ServedStack:
    api: SamServer  # every HTTP route, POST /batches and the webhook the sandbox calls back
    lambdas: SamServer  # the event source mappings' functions, invoked by the stack's poller
    webhook_url: str


@contextlib.contextmanager
def serve_stack(stack: Mapping[str, Any], provisioned: Provisioned, workdir: Path) -> Iterator[ServedStack]:
    """The functions of a `--functions none` local stack (its stack.json) served by sam local:
    start-api for the HTTP routes, start-lambda for the functions its queue and its table's stream
    feed. The sandbox is told to call start-api back, and the stack's pollers to invoke through
    start-lambda. On exit everything started here is stopped, the pollers first, and no container is
    left."""
    if stack["functions"] != "none" or not stack.get("webhook_path"):
        raise ProvisionError("the stack serves its functions itself: start it with --functions none")
    workdir.mkdir(parents=True, exist_ok=True)
    sam = SamLocal(
        provisioned.image,
        provisioned.template,
        sam_environment(stack["aws_endpoint_url"], workdir / "sam-cli"),
        workdir,
    )
    # What the in-process functions get (function_env, the stack's resources, AWS on moto), as a
    # --env-vars file holding only the names the template declares.
    variables, _dropped = for_sam(from_stack(stack))
    consumers = event_source_functions(stack)
    event_sources = f"{stack['control_url']}/_local/event-sources"
    with contextlib.ExitStack() as started:
        api = started.enter_context(sam.start_api(variables, free_port()))
        lambdas = started.enter_context(sam.start_lambda(variables, free_port(), consumers))
        webhook_url = f"{api.url}{stack['webhook_path']}"
        _post(f"{stack['sandbox_url']}/_sandbox/config", {"webhook_url": webhook_url})
        _post(event_sources, {"invoke_url": lambdas.url})
        started.callback(_post, event_sources, {"invoke_url": None}, quiet=True)
        yield ServedStack(api, lambdas, webhook_url)


def event_source_functions(stack: Mapping[str, Any]) -> list[str]:
    """The functions a stack's event source mappings invoke (its queue's, its stream's)."""
    sources = [*stack["sqs"].get("sources", []), *stack.get("streams", {}).get("sources", [])]
    return sorted({str(source["function"]) for source in sources})


def _post(url: str, body: Any, quiet: bool = False) -> None:
    try:
        requests.post(url, json=body, timeout=30).raise_for_status()
    except requests.RequestException:
        if not quiet:  # stopping: a stack already gone has nothing left to stop
            raise
