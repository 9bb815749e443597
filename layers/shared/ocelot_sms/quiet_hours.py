"""Quiet hours: a daily window of the school's wall-clock time in which no send starts.

The window is read in its time zone's local time, so it follows daylight saving time: 21:00-08:00
America/Chicago is 03:00-14:00 UTC in winter and 02:00-13:00 UTC in summer. A window whose start is
after its end crosses midnight. On the days the clocks change, a wall time that does not exist (the
hour skipped in spring) ends the window at the same time on the clock before the change, and one that
happens twice (the hour repeated in autumn) at its first occurrence still to come.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

WINDOW_PATTERN = r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])"


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, window: str, zone: str) -> QuietHours | None:
        """`HH:MM-HH:MM` in the IANA time zone `zone`; None when `window` is empty (no quiet hours).
        Raises ValueError for a window that is not of that form or that starts where it ends."""
        if not window:
            return None
        found = re.fullmatch(WINDOW_PATTERN, window.strip())
        if found is None:
            raise ValueError(f"{window!r} is not a window HH:MM-HH:MM")
        start_h, start_m, end_h, end_m = (int(part) for part in found.groups())
        start, end = time(start_h, start_m), time(end_h, end_m)
        if start == end:
            raise ValueError(f"{window!r} starts where it ends")
        return cls(start, end, ZoneInfo(zone))

    def end_of(self, instant: datetime) -> datetime | None:
        """When the window holding `instant` ends (in UTC), or None when `instant` is outside it."""
        local = instant.astimezone(self.zone)
        wall = local.time().replace(tzinfo=None)
        if self.start < self.end:
            inside, end_day = self.start <= wall < self.end, local.date()
        else:
            inside = wall >= self.start or wall < self.end
            end_day = local.date() + timedelta(days=1) if wall >= self.start else local.date()
        if not inside:
            return None
        readings = [datetime.combine(end_day, self.end, self.zone).replace(fold=f) for f in (0, 1)]
        real = [r.astimezone(UTC) for r in readings if _exists(r)]
        if not real:  # skipped by the change: fold 0 reads it with the offset before the change
            return readings[0].astimezone(UTC)
        return min(r for r in real if r > instant.astimezone(UTC))

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}"


def _exists(wall: datetime) -> bool:
    """Whether a zoned wall time is one the clocks show (not one skipped when they moved forward)."""
    return wall.astimezone(UTC).astimezone(wall.tzinfo).replace(tzinfo=None) == wall.replace(tzinfo=None)
