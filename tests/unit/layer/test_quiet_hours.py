"""Quiet hours: when a window of the school's wall-clock time holds an instant, and when it ends, across
midnight and on the days the clocks change (zoneinfo)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ocelot_sms.quiet_hours import QuietHours

CHICAGO = "America/Chicago"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(text: str, zone: str = CHICAGO) -> QuietHours:
    parsed = QuietHours.parse(text, zone)
    assert parsed is not None
    return parsed


def test_an_empty_window_is_no_quiet_hours() -> None:
    # Given / When / Then
    assert QuietHours.parse("", CHICAGO) is None


@pytest.mark.parametrize("text", ["21:00", "9:00-08:00", "21:00-24:00", "08:00-08:00", "late"])
def test_a_window_not_of_the_form_or_empty_is_refused(text: str) -> None:
    # Given a window that is not HH:MM-HH:MM, or one that starts where it ends
    # When / Then it is refused
    with pytest.raises(ValueError, match=r"window|starts where"):
        QuietHours.parse(text, CHICAGO)


@pytest.mark.parametrize(
    ("instant", "end"),
    [
        # Winter, UTC-6: 21:00-08:00 Chicago is 03:00-14:00 UTC.
        ("2026-01-15T03:30:00", "2026-01-15T14:00:00"),  # 21:30 local, before midnight
        ("2026-01-15T07:00:00", "2026-01-15T14:00:00"),  # 01:00 local, after midnight
        ("2026-01-15T13:59:59", "2026-01-15T14:00:00"),  # one second before the end
        ("2026-01-15T14:00:00", None),  # the end itself is outside
        ("2026-01-15T02:59:00", None),  # 20:59 local
        ("2026-01-15T20:00:00", None),  # 14:00 local
        # Summer, UTC-5: the same window is 02:00-13:00 UTC.
        ("2026-07-15T02:30:00", "2026-07-15T13:00:00"),
        ("2026-07-15T13:30:00", None),
    ],
)
def test_a_window_crossing_midnight(instant: str, end: str | None) -> None:
    # Given quiet hours 21:00-08:00 in Chicago
    quiet = window("21:00-08:00")

    # When / Then an instant inside ends at the next 08:00 local; one outside has no end
    assert quiet.end_of(utc(instant)) == (utc(end) if end else None)


def test_a_window_within_one_day() -> None:
    # Given quiet hours 12:00-13:00 UTC
    quiet = window("12:00-13:00", "UTC")

    # When / Then
    assert quiet.end_of(utc("2026-03-01T12:30:00")) == utc("2026-03-01T13:00:00")
    assert quiet.end_of(utc("2026-03-01T11:59:00")) is None
    assert quiet.end_of(utc("2026-03-01T13:00:00")) is None


def test_a_night_spanning_the_spring_change_ends_at_the_new_offset() -> None:
    # Given quiet hours 21:00-08:00 in Chicago, and the night the clocks go forward (8 March 2026,
    # 02:00 CST -> 03:00 CDT)
    quiet = window("21:00-08:00")

    # When a send would start at 21:30 CST on the 7th
    end = quiet.end_of(utc("2026-03-08T03:30:00"))

    # Then it waits until 08:00 CDT (13:00 UTC), one hour less than a winter night
    assert end == utc("2026-03-08T13:00:00")


def test_a_night_spanning_the_autumn_change_ends_at_the_old_offset() -> None:
    # Given the night the clocks go back (1 November 2026, 02:00 CDT -> 01:00 CST)
    quiet = window("21:00-08:00")

    # When a send would start at 21:30 CDT on 31 October
    end = quiet.end_of(utc("2026-11-01T02:30:00"))

    # Then it waits until 08:00 CST (14:00 UTC)
    assert end == utc("2026-11-01T14:00:00")


def test_a_window_ending_in_the_skipped_hour_ends_when_the_clock_jumps() -> None:
    # Given a window ending at 02:30, a wall time that does not exist on 8 March 2026 in Chicago
    quiet = window("22:00-02:30")

    # When a send would start at 01:30 CST (07:30 UTC)
    end = quiet.end_of(utc("2026-03-08T07:30:00"))

    # Then the window ends at 02:30 read with the offset before the change (08:30 UTC = 03:30 CDT)
    assert end == utc("2026-03-08T08:30:00")


def test_a_window_ending_in_the_repeated_hour_ends_at_its_first_occurrence_to_come() -> None:
    # Given a window ending at 01:30, a wall time that happens twice on 1 November 2026 in Chicago
    quiet = window("23:00-01:30")

    # When a send would start at 00:30 CDT (05:30 UTC)
    first = quiet.end_of(utc("2026-11-01T05:30:00"))
    # And when one would start in the repeated hour, at 01:10 CST (07:10 UTC), after the first 01:30
    second = quiet.end_of(utc("2026-11-01T07:10:00"))

    # Then the first ends at 01:30 CDT (06:30 UTC), the second at 01:30 CST (07:30 UTC)
    assert first == utc("2026-11-01T06:30:00")
    assert second == utc("2026-11-01T07:30:00")


def test_describe_names_the_window_and_zone() -> None:
    # Given / When / Then
    assert window("21:00-08:00").describe() == "21:00-08:00 America/Chicago"
