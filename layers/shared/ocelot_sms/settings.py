"""Configuration, parsed once per container from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from ocelot_sms.contract import DEFAULT_MAX_MESSAGES_PER_REQUEST


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str
    idempotency_table_name: str = ""
    ocelot_base_url: str = "https://ai.ocelotbot.com"
    ocelot_secret_id: str = ""
    webhook_secret_id: str = ""
    default_sender: str = ""
    default_operator_id: str = ""
    # Messages per Ocelot request (one "chunk").
    ocelot_max_messages: int = DEFAULT_MAX_MESSAGES_PER_REQUEST
    # Messages per request to OUR API / per SQS message.
    max_messages_per_request: int = 1000
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 15.0
    max_send_attempts: int = 4
    # Never wait longer than this for a Retry-After, whatever Ocelot asks.
    max_retry_wait_seconds: float = 20.0
    # Keep this much of the Lambda's time for recording the outcome after the last attempt.
    safety_margin_seconds: float = 3.0
    secret_max_age_seconds: int = 300
    raw_retention_days: int = 30
    data_retention_days: int = 400
    idempotency_expiry_seconds: int = 7 * 24 * 3600
    webhook_max_body_bytes: int = 1_000_000
    webhook_write_concurrency: int = 16
    # A message with no terminal status this long after it was accepted is marked unknown.
    stale_after_hours: int = 72

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems = []
        for field in fields(cls):
            raw = env.get(field.name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = _convert(field.type, raw)
            except ValueError:
                problems.append(f"{field.name.upper()}={raw!r} is not a valid {field.type}")
        if "table_name" not in values:
            problems.append("TABLE_NAME is required")
        if problems:
            raise SettingsError("; ".join(problems))
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if not 1 <= self.ocelot_max_messages <= 10_000:
            raise SettingsError("OCELOT_MAX_MESSAGES must be between 1 and 10000")
        if self.max_messages_per_request < 1:
            raise SettingsError("MAX_MESSAGES_PER_REQUEST must be at least 1")
        if not self.ocelot_base_url.startswith(("https://", "http://")):
            raise SettingsError("OCELOT_BASE_URL must be an http(s) URL")
        # Written as `not (...)` so that a NaN fails too.
        if not (0 <= self.secret_max_age_seconds <= 300):
            raise SettingsError("SECRET_MAX_AGE_SECONDS must be between 0 and 300 (rotated keys apply soon)")
        if not (self.connect_timeout_seconds > 0 and self.read_timeout_seconds > 0):
            raise SettingsError("CONNECT_TIMEOUT_SECONDS and READ_TIMEOUT_SECONDS must be positive")
        if self.max_send_attempts < 1:
            raise SettingsError("MAX_SEND_ATTEMPTS must be at least 1")
        if not (self.max_retry_wait_seconds >= 0 and self.safety_margin_seconds >= 0):
            raise SettingsError("MAX_RETRY_WAIT_SECONDS and SAFETY_MARGIN_SECONDS must not be negative")


def _convert(type_name: Any, raw: str) -> Any:
    match str(type_name):
        case "int":
            return int(raw)
        case "float":
            return float(raw)
        case _:
            return raw


@cache
def get_settings() -> Settings:
    return Settings.from_env()
