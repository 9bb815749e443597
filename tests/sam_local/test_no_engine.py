"""Without a Docker engine: one skip line outside CI, failures with CI=true (never a skip); and
`make demo SAM=1` outside CI fails with a clear error (no fallback to in-process functions).

Each case runs test_events.py in a child pytest whose DOCKER_HOST names a socket nobody serves,
so no engine answers (ensure-docker.sh refuses to start a local engine for a custom DOCKER_HOST,
which keeps the CI case from installing or starting anything).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sam_local import harness

pytestmark = pytest.mark.sam_local


def no_engine_env(tmp_path: Path, ci: bool) -> dict[str, str]:
    """This environment with DOCKER_HOST on a socket nothing serves. Nothing of this run leaks in:
    not CI, not pytest's options, not pytest-cov's subprocess hooks."""
    dropped = ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("COV_CORE")}
    env["DOCKER_HOST"] = f"unix://{tmp_path / 'no-engine.sock'}"
    if ci:
        env["CI"] = "true"
    return env


def child_pytest(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = no_engine_env(tmp_path, ci)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/sam_local/test_events.py",
            "-q",
            "-rsE",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "child"),
        ],
        cwd=harness.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_outside_ci_the_tests_skip_with_one_line_saying_why(tmp_path: Path) -> None:
    """Given no Docker engine answers and CI is not set,
    When the sam_local tests run,
    Then those needing the engine are skipped, reported on ONE line that says why, and the run passes."""
    result = child_pytest(tmp_path, ci=False)

    output = result.stdout
    skip_lines = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert result.returncode == 0, output
    assert len(skip_lines) == 1, output
    assert re.match(r"SKIPPED \[\d+\] tests/sam_local/\S+:\d+: sam_local: no Docker engine", skip_lines[0])
    assert "make docker-up" in skip_lines[0]


def test_in_ci_a_missing_engine_is_a_failure_never_a_skip(tmp_path: Path) -> None:
    """Given no Docker engine answers and none can be started, with CI=true,
    When the sam_local tests run,
    Then the run fails, those tests error out with the reason, and none is skipped."""
    result = child_pytest(tmp_path, ci=True)

    output = result.stdout
    assert result.returncode == 1, output
    assert "skipped" not in output.splitlines()[-1], output
    assert "sam_local provisioning failed (CI)" in output
    assert "does not answer 'docker info'" in output


def test_make_demo_sam_without_an_engine_says_so_and_fails(tmp_path: Path) -> None:
    """Given no Docker engine answers and CI is not set,
    When the demo runs in SAM mode (what `make demo SAM=1` runs),
    Then it exits nonzero at once with an error naming the missing engine and how to start one,
    without falling back to in-process functions and without starting a stack."""
    env = no_engine_env(tmp_path, ci=False)
    state_dir = tmp_path / "demo"

    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--sam", "--state-dir", str(state_dir)],
        cwd=harness.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "`make demo SAM=1` needs a Docker engine, and none answers" in result.stderr
    assert "make docker-up" in result.stderr
    assert "[2/6]" not in result.stdout  # the demo proper never ran
    assert not (state_dir / "stack.log").exists()  # nor did a stack start
