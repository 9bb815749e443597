"""Instants as the application stores and shows them: UTC, ISO 8601 with microseconds and a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def epoch_after(days: int, now: datetime | None = None) -> int:
    """Epoch seconds `days` after `now`: a DynamoDB TTL value."""
    return int(((now or utc_now()) + timedelta(days=days)).timestamp())
