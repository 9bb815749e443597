"""Times an operator gives on the command line: an instant or a day to read from, a time to send at."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import click


class Instant(click.ParamType):
    """An ISO 8601 instant (UTC when it has no offset), or a date: its start, or with `end_of_day` its
    last microsecond (so `--until 2026-11-26` includes that day)."""

    name = "instant"

    def __init__(self, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                moment = time.max if self.end_of_day else time.min
                return datetime.combine(day, moment, tzinfo=UTC)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO date or instant (2026-11-26, 2026-11-26T16:00:00Z)", param, ctx
            )
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SendTime(click.ParamType):
    """When to send: an ISO 8601 instant with its offset (2026-11-26T09:00:00-06:00, or Z for UTC).
    Never relative ("in two hours"): the same command run again must name the same time, or it would
    be another request."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            instant = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not a time: give 2026-11-26T09:00:00-06:00 (or Z for UTC)", param, ctx)
        if instant.tzinfo is None:
            self.fail(
                f"{value!r} has no offset: say which time zone, e.g. {text}-06:00 or {text}Z (UTC)",
                param,
                ctx,
            )
        return instant.isoformat()
