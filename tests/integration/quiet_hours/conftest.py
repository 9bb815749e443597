"""A stack of its own whose quiet hours hold now: the hour before and the hour after it (UTC wall time),
set as the template parameters QuietHours and QuietHoursTimeZone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import STACK_ARGS, assert_stopped
from tools.local.stack import StackProcess


def window_around(now: datetime) -> str:
    """HH:MM-HH:MM from an hour before `now` to an hour after it (crossing midnight when it must)."""
    return f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"


@pytest.fixture(scope="package")
def stack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    quiet = ["--param", f"QuietHours={window_around(datetime.now(UTC))}", "--param", "QuietHoursTimeZone=UTC"]
    process = StackProcess(tmp_path_factory.mktemp("quiet-stack"), [*STACK_ARGS, *quiet])
    try:
        process.start(timeout=60)
        yield process
    finally:
        info = process.info
        code = process.stop()
        if info is not None:
            assert code == 0, f"the stack exited with {code}:\n{process.log_tail()}"
            assert_stopped(process, info)
