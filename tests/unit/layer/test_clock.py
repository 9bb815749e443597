"""Instants as stored: UTC, microseconds, a Z; TTL values in epoch seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

from ocelot_sms.clock import epoch_after, from_iso, iso

T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)


def test_iso_is_utc_with_microseconds_and_reads_back() -> None:
    offset = datetime(2026, 11, 26, 11, 0, 9, tzinfo=timezone(timedelta(hours=-5)))
    assert iso(offset) == "2026-11-26T16:00:09.000000Z"
    assert from_iso(iso(offset)) == offset


def test_epoch_after_counts_days_from_now_or_a_given_time() -> None:
    assert epoch_after(30, T0) == int(T0.timestamp()) + 30 * 86400
    assert abs(epoch_after(1) - (time.time() + 86400)) < 5
