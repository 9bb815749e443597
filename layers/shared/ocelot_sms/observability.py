"""Logger and metrics shared by the functions, and the masking every log line relies on.

Never logged: Authorization headers, secrets, message text, full phone numbers. Numbers are masked
to their last four digits, which is enough to find a message with the help of its ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "mask_phone", "metrics", "metrics_dropped"]


@contextmanager
def metrics_dropped() -> Iterator[None]:
    """Metrics added meanwhile are dropped, for a process that is not a Lambda (the CLI): Powertools
    prints every 100th as EMF on stdout, where an operator's terminal is no place for them."""

    def drop(*_: Any, **__: Any) -> None:
        return None

    metrics.add_metric = drop  # type: ignore[method-assign]
    try:
        yield
    finally:
        del metrics.add_metric


def mask_phone(number: str | None) -> str:
    if not number:
        return ""
    digits = number.strip()
    return f"{'*' * max(len(digits) - 4, 0)}{digits[-4:]}" if len(digits) > 4 else "****"
