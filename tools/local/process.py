"""Run a local stack as a child process and stop it again (the demo and the integration tests).

The child is the same supervisor as `make local-up` (`python -m tools.local.stack up`), in a state
directory of its own, so it never collides with a stack a developer keeps running. It watches this
process (--parent-pid) and stops by itself if we die without stopping it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tools.local import ROOT
from tools.local.stackinfo import LOG_FILE, STACK_FILE, StackInfo


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


class StackStartError(RuntimeError):
    pass


class StackProcess:
    def __init__(self, state_dir: Path, args: Sequence[str] = ()) -> None:
        self.state_dir = state_dir
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.info: StackInfo | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    def start(self, timeout: float = 60.0) -> StackInfo:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        stack_file = self.state_dir / STACK_FILE
        command = [sys.executable, "-m", "tools.local.stack", "up", "--state-dir", str(self.state_dir)]
        command += ["--parent-pid", str(os.getpid()), *self.args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Our own Ctrl-C handling stops it in order; the terminal's SIGINT does not race us.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackStartError(f"the stack exited with {self.process.returncode}:\n{self.log_tail()}")
            if stack_file.exists():
                info = StackInfo.load(stack_file)
                if info.pid == self.process.pid:
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
