"""The stack itself: free ports, loopback only, and everything it started stops, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.support import assert_stopped, port_is_closed, ports
from tools.local.client import StackClient, wait_for
from tools.local.netguard import is_loopback_host
from tools.local.stack import PID_FILE, STACK_FILE, StackInfo, StackProcess, read_pid
from tools.template_resources import ROOT


def _stack_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.local.stack", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_only_loopback_was_contacted(client: StackClient) -> None:
    egress = client.egress()
    assert egress["installed"]
    assert egress["violations"] == []
    hosts = {destination.rsplit(":", 1)[0] for destination in egress["destinations"]}
    assert hosts
    assert all(is_loopback_host(h) for h in hosts), hosts


def test_local_up_and_down_use_free_ports_and_release_them(stack: StackInfo, tmp_path: Path) -> None:
    up = _stack_cli("up", "--background", "--state-dir", str(tmp_path))
    assert up.returncode == 0, up.stdout + up.stderr
    info = StackInfo.load(tmp_path / STACK_FILE)
    try:
        # A second stack next to the package's own: no port in common, both answer.
        assert not ports(info) & ports(stack)
        assert requests.get(f"{info.control_url}/_local/health", timeout=5).ok
        assert requests.get(f"{info.sandbox_url}/_sandbox/health", timeout=5).ok
        assert read_pid(tmp_path / PID_FILE) == info.pid
        again = _stack_cli("up", "--background", "--state-dir", str(tmp_path))
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = _stack_cli("down", "--state-dir", str(tmp_path))
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(port_is_closed(p) for p in ports(info))
    assert not (tmp_path / STACK_FILE).exists()
    assert not (tmp_path / PID_FILE).exists()
    assert _stack_cli("status", "--state-dir", str(tmp_path)).returncode == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_everything(tmp_path: Path, signum: signal.Signals) -> None:
    process = StackProcess(tmp_path)
    info = process.start(timeout=60)
    try:
        assert process.process is not None
        assert info.aws_pid is not None
        assert _running(info.aws_pid)
        process.process.send_signal(signum)
        process.process.wait(20)
    finally:
        process.stop()
    assert process.process.returncode == 0, process.log_tail()
    assert_stopped(process, info)
    wait_for(lambda: not _running(info.aws_pid or 0), 15, "moto's process to end with the stack")


def test_the_stack_stops_when_its_parent_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen(["sleep", "60"])
    stack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.local.stack",
            "up",
            "--state-dir",
            str(tmp_path),
            "--parent-pid",
            str(parent.pid),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        info = wait_for(
            lambda: StackInfo.load(tmp_path / STACK_FILE) if (tmp_path / STACK_FILE).exists() else None,
            60,
            "the stack",
            interval=0.1,
        )
        parent.kill()
        parent.wait(5)
        assert stack.wait(20) == 0
    finally:
        parent.kill()
        parent.wait(5)
        if stack.poll() is None:
            stack.kill()
            stack.wait(5)
    assert all(port_is_closed(p) for p in ports(info))
    assert not (tmp_path / STACK_FILE).exists()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a process whose parent was killed may wait a while to be reaped)."""
    try:
        os.kill(pid, 0)
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_motos_process_ends_with_a_killed_stack(tmp_path: Path) -> None:
    # moto runs in a child process of the supervisor: it must not outlive the supervisor, even when
    # that is killed outright (a signal that stops it cleanly: test_a_signal_stops_everything).
    process = StackProcess(tmp_path)
    try:
        info = process.start(timeout=60)
        aws_pid = info.aws_pid
        assert aws_pid is not None
        assert aws_pid != info.pid
        assert _running(aws_pid)
        assert not port_is_closed(urlsplit(info.aws_endpoint_url).port or 0)
        os.kill(info.pid, signal.SIGKILL)
        wait_for(lambda: not _running(aws_pid), 15, "moto's process to end with the stack")
        assert port_is_closed(urlsplit(info.aws_endpoint_url).port or 0)
    finally:
        process.stop()
