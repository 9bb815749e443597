"""A stack of its own whose quiet hours hold now: the hour before and the hour after it (UTC wall time),
set as the template parameters QuietHours and QuietHoursTimeZone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.support import STACK_ARGS, running_stack
from tools.local.stack import StackProcess


def window_around(now: datetime) -> str:
    """HH:MM-HH:MM from an hour before `now` to an hour after it (crossing midnight when it must)."""
    return f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"


@pytest.fixture(scope="package")
def stack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    quiet = ["--param", f"QuietHours={window_around(datetime.now(UTC))}", "--param", "QuietHoursTimeZone=UTC"]
    yield from running_stack(tmp_path_factory.mktemp("quiet-stack"), [*STACK_ARGS, *quiet])
