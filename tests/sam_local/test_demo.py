"""`make demo SAM=1` end to end: the same demo driver, the functions served by sam local.

The demo runs as `make demo SAM=1` runs it (`python -m tools.demo --sam`), in a child process
with a state directory of its own; what SAM served is read from start-api's and start-lambda's logs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sam_local import harness

pytestmark = [pytest.mark.sam_local, pytest.mark.timeout(600)]

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some request lines
WEBHOOK_200 = '"POST /webhooks/ocelot HTTP/1.1" 200'
BATCH_201 = '"POST /batches HTTP/1.1" 201'
BATCH_202 = '"POST /batches HTTP/1.1" 202'
SQS_INVOKE = '"POST /2015-03-31/functions/SenderFunction/invocations HTTP/1.1" 200'
STREAM_INVOKE = '"POST /2015-03-31/functions/ApplierFunction/invocations HTTP/1.1" 200'


def only_log(folder: Path, pattern: str) -> str:
    (path,) = folder.glob(pattern)
    return ANSI.sub("", path.read_text(errors="replace"))


def demo_command(state_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tools.demo", "--sam", "--state-dir", str(state_dir)]


def demo_env() -> dict[str, str]:
    # CI stays as it is (it decides whether a missing engine may be started); coverage hooks do not.
    return {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}


def containers_in(*logs: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for log in logs
        for line in log.splitlines()
        if line.startswith("SAM_CONTAINER_ID:")
    ]


def still_there(containers: list[str]) -> list[str]:
    return [c for c in containers if harness.run(["docker", "inspect", c], timeout=30).returncode == 0]


def processes_naming(path: Path) -> list[str]:
    """Command lines that mention `path` (the stack and the SAM servers all do: their state/env files)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found


def test_the_demo_in_sam_mode_passes_with_the_functions_served_by_sam_local(
    provisioned: harness.Provisioned, tmp_path: Path
) -> None:
    """Given a Docker engine, the Lambda image and a fresh build (this session's provisioning),
    When the demo runs in SAM mode,
    Then it passes (every message as scripted, exit 0), and sam local did the work: start-api
    accepted the API batch and answered every one of the sandbox's callback attempts 200,
    start-lambda ran SenderFunction for the queued batch and ApplierFunction for the stored
    deliveries (as many as were acknowledged), and no container is left afterwards."""
    state_dir = tmp_path / "demo"

    # When
    result = subprocess.run(
        demo_command(state_dir),
        cwd=harness.ROOT,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )

    # Then: the demo passed, and said who served the functions
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "functions served by sam local: start-api http://127.0.0.1:" in result.stdout
    assert "20/20 messages ended as scripted" in result.stdout
    summary = re.search(r"callback attempts (\d+)", result.stdout)
    assert summary, result.stdout
    attempts = int(summary.group(1))

    # ... start-api served POST /batches and the webhook: every callback attempt answered 200 there
    api_url = re.search(r"^\s+API (http://127\.0\.0\.1:\d+) \| webhook", result.stdout, re.MULTILINE)
    assert api_url, result.stdout
    api_log = only_log(state_dir / "sam", f"start-api-{api_url.group(1).rsplit(':', 1)[1]}.log")
    # (the API batch, then the batches of the step beyond sending; every callback of the demo)
    beyond = re.search(
        r"POST /batches in this step: (\d+) answered 201, (\d+) answered 202 \| in the whole demo: "
        r"callback attempts (\d+), (\d+) acknowledged",
        result.stdout,
    )
    assert beyond, result.stdout
    answered_201, answered_202, all_attempts, all_acknowledged = map(int, beyond.groups())
    assert api_log.count(BATCH_201) == 1 + answered_201, api_log[-3000:]
    assert api_log.count(BATCH_202) == answered_202 == 1, api_log[-3000:]
    assert attempts > 0
    assert all_attempts == all_acknowledged > attempts
    assert api_log.count(WEBHOOK_200) == all_attempts, api_log[-3000:]

    # ... start-lambda ran the Sender for the SQS batch and the applier for the stored deliveries
    # (through the pollers' Invoke calls): every acknowledged delivery applied
    lambda_log = only_log(state_dir / "sam", "start-lambda-*.log")
    assert lambda_log.count(SQS_INVOKE) >= 1, lambda_log[-3000:]
    assert lambda_log.count(STREAM_INVOKE) >= 1, lambda_log[-3000:]
    applied = re.search(r"(\d+) acknowledged, (\d+) applied", result.stdout)
    assert applied, result.stdout
    assert int(applied.group(1)) == int(applied.group(2)) == attempts

    # ... and everything it started is gone: SAM's warm containers, the stack's files
    containers = containers_in(api_log, lambda_log)
    assert containers
    assert still_there(containers) == []
    assert not (state_dir / "stack.json").exists()
    assert not (state_dir / "stack.pid").exists()


def test_ctrl_c_in_sam_mode_stops_sam_local_its_containers_and_the_stack(
    provisioned: harness.Provisioned, tmp_path: Path
) -> None:
    """Given the demo in SAM mode, with sam local serving the functions,
    When it gets SIGINT (Ctrl-C),
    Then it reports the interruption (exit 130) and nothing it started is left: no SAM server, no
    warm container, no stack."""
    state_dir = tmp_path / "demo"
    output = tmp_path / "demo.out"
    with output.open("w") as sink:
        demo = subprocess.Popen(
            demo_command(state_dir), cwd=harness.ROOT, env=demo_env(), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 300
        while "functions served by sam local" not in output.read_text() and time.monotonic() < deadline:
            assert demo.poll() is None, output.read_text()
            time.sleep(0.2)
        logs = [
            only_log(state_dir / "sam", "start-api-*.log"),
            only_log(state_dir / "sam", "start-lambda-*.log"),
        ]
        containers = containers_in(*logs)
        assert containers, logs
        assert len(processes_naming(state_dir)) >= 4  # the demo, the stack, start-api, start-lambda

        # When
        demo.send_signal(signal.SIGINT)
        code = demo.wait(120)
    finally:
        if demo.poll() is None:
            demo.kill()

    # Then
    text = output.read_text()
    assert code == 128 + signal.SIGINT, text
    assert "INTERRUPTED" in text
    assert still_there(containers) == []
    assert processes_naming(state_dir) == []
    assert not (state_dir / "stack.pid").exists()
