"""Configuration, parsed once per container from the environment the template sets.

Each setting is a typed field whose constraints are declared next to it (`Annotated[int, Between(1,
100)]`); `from_env` converts by the declared type and checks every constraint, reporting all problems
at once. Hand-written rather than pydantic-settings: the webhook imports no pydantic at cold start.
"""

from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin, get_type_hints

# The longest a function keeps a secret it read: what a rotation waits for (the CLI says so).
SECRET_MAX_AGE_LIMIT = 300


if TYPE_CHECKING:
    from ocelot_sms.quiet_hours import QuietHours


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Between:
    low: float
    high: float

    def problem(self, value: Any) -> str | None:
        # Written so that a NaN fails too: every comparison with it is false.
        if self.low <= value <= self.high:
            return None
        return f"must be between {self.low:g} and {self.high:g}"


@dataclass(frozen=True, slots=True)
class Matches:
    pattern: str
    meaning: str

    def problem(self, value: Any) -> str | None:
        return None if re.fullmatch(self.pattern, str(value)) else f"must be {self.meaning}"


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """HH:MM-HH:MM that does not start where it ends, or empty."""

    def problem(self, value: Any) -> str | None:
        from ocelot_sms.quiet_hours import QuietHours

        try:
            QuietHours.parse(str(value), "UTC")
        except ValueError as error:
            return f"must be a window HH:MM-HH:MM or empty ({error})"
        return None


@dataclass(frozen=True, slots=True)
class TimeZoneName:
    """An IANA time zone (America/Chicago)."""

    def problem(self, value: Any) -> str | None:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(str(value))
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            return "must be an IANA time zone such as America/Chicago"
        return None


NonNegative = Between(0, math.inf)
Positive = Between(math.ulp(0.0), math.inf)
AtLeastOne = Between(1, math.inf)


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str
    idempotency_table_name: str = ""
    ocelot_base_url: Annotated[str, Matches(r"https?://\S+", "an http(s) URL")] = "https://ai.ocelotbot.com"
    ocelot_secret_id: str = ""
    webhook_secret_id: str = ""
    default_sender: str = ""
    default_operator_id: str = ""
    # Messages per Ocelot request (one "chunk"): contract.DEFAULT_MAX_MESSAGES_PER_REQUEST, written out
    # because the webhook reads its settings without importing the contract's pydantic models.
    ocelot_max_messages: Annotated[int, Between(1, 10_000)] = 100
    # Messages per request to OUR API / per SQS message.
    max_messages_per_request: Annotated[int, AtLeastOne] = 1000
    connect_timeout_seconds: Annotated[float, Positive] = 3.05
    read_timeout_seconds: Annotated[float, Positive] = 15.0
    max_send_attempts: Annotated[int, AtLeastOne] = 4
    # Never wait longer than this for a Retry-After, whatever Ocelot asks.
    max_retry_wait_seconds: Annotated[float, NonNegative] = 20.0
    # Keep this much of the Lambda's time for recording the outcome after the last attempt.
    safety_margin_seconds: Annotated[float, NonNegative] = 3.0
    # Chunks one invocation sends to Ocelot at once (QueueMaximumConcurrency x this bounds the stack).
    send_concurrency: Annotated[int, Between(1, 32)] = 4
    # POST /batches sends only what can finish in this time after the handler starts (API Gateway
    # answers 504 at 30 s, cold start included); the chunks it cannot start go to the send queue.
    api_budget_seconds: Annotated[float, Between(1, 29)] = 25.0
    send_queue_url: str = ""
    # Sends made later (sendAt, quiet hours): EventBridge Scheduler's schedule group, the role its
    # schedules put the request on the send queue with, and that queue's ARN (a schedule's target).
    schedule_group_name: str = ""
    schedule_role_arn: str = ""
    send_queue_arn: str = ""
    # A daily window of wall-clock time in quiet_hours_time_zone in which no send starts (it is
    # scheduled for the window's end unless urgent); empty: none.
    quiet_hours: Annotated[str, QuietWindow()] = ""
    quiet_hours_time_zone: Annotated[str, TimeZoneName()] = "UTC"
    # Where status changes and inbound messages are published (EventBridge bus name or ARN).
    event_bus_name: str = ""
    # A request is handed to the send queue only if its body fits (SQS's default maximum, 256 KiB).
    send_queue_max_bytes: Annotated[int, Between(1024, 1_048_576)] = 262_144
    # Connect and read timeout of each Secrets Manager call (two attempts at most).
    secrets_timeout_seconds: Annotated[float, Positive] = 2.0
    # At most 5 minutes, so that a rotated key applies soon.
    secret_max_age_seconds: Annotated[int, Between(0, SECRET_MAX_AGE_LIMIT)] = SECRET_MAX_AGE_LIMIT
    raw_retention_days: Annotated[int, AtLeastOne] = 30
    data_retention_days: Annotated[int, AtLeastOne] = 400
    idempotency_expiry_seconds: Annotated[int, AtLeastOne] = 7 * 24 * 3600
    webhook_max_body_bytes: Annotated[int, AtLeastOne] = 1_000_000
    webhook_write_concurrency: Annotated[int, Between(1, 64)] = 16
    # A message with no terminal status this long after it was accepted is marked unknown.
    stale_after_hours: Annotated[int, AtLeastOne] = 72
    # An event dated more than this after we received it is ordered as if it happened on receipt.
    clock_skew_seconds: Annotated[int, NonNegative] = 300
    # After a refused webhook request, the secret is read again at most this often per container.
    secret_recheck_seconds: Annotated[int, NonNegative] = 60

    def quiet(self) -> QuietHours | None:
        """The quiet hours `quiet_hours` and `quiet_hours_time_zone` describe (None: off); both were
        validated when the settings were read."""
        from ocelot_sms.quiet_hours import QuietHours

        return QuietHours.parse(self.quiet_hours, self.quiet_hours_time_zone)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every field from its upper-case variable; an empty or absent one keeps the default."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls, include_extras=True)
        values: dict[str, Any] = {}
        problems = []
        for field in fields(cls):
            name = field.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            kind, checks = _declared(hints[field.name])
            try:
                value = kind(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a valid {kind.__name__}")
                continue
            problems += [f"{name}={raw!r} {p}" for c in checks if (p := c.problem(value)) is not None]
            values[field.name] = value
        if "table_name" not in values:
            problems.append("TABLE_NAME is required")
        if problems:
            raise SettingsError("; ".join(problems))
        return cls(**values)


def _declared(hint: Any) -> tuple[type, list[Any]]:
    """The type to convert to (`int | None` is int) and the constraints declared on the field."""
    checks: list[Any] = []
    if get_origin(hint) is Annotated:
        hint, *checks = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    return hint, checks


@cache
def get_settings() -> Settings:
    return Settings.from_env()
