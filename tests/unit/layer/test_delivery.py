"""The order of status events: what makes a message's current status move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

from ocelot_sms.delivery import DeliveryStatus, order_key

T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)


def test_a_terminal_status_beats_any_non_terminal_one() -> None:
    # A delivered event with no time at all beats a sent event from the far future
    assert order_key(DeliveryStatus.DELIVERED, None, "a") > order_key(
        DeliveryStatus.SENT, T0 + timedelta(days=3650), "z"
    )


def test_between_equals_the_later_instant_wins() -> None:
    assert order_key(DeliveryStatus.FAILED, T0 + timedelta(microseconds=1), "a") > order_key(
        DeliveryStatus.OPTED_OUT, T0, "z"
    )
    assert order_key(DeliveryStatus.SENT, T0 + timedelta(seconds=1), "a") > order_key(
        DeliveryStatus.SENT, T0, "z"
    )


def test_instants_are_compared_not_clock_readings() -> None:
    # 11:00:09 at UTC-5 is after 16:00:05Z
    later = datetime(2026, 11, 26, 11, 0, 9, tzinfo=timezone(timedelta(hours=-5)))
    assert order_key(DeliveryStatus.DELIVERED, later, "a") > order_key(
        DeliveryStatus.FAILED, datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC), "z"
    )


def test_rank_then_event_id_break_ties() -> None:
    assert order_key(DeliveryStatus.SENT, T0, "a") > order_key(DeliveryStatus.QUEUED, T0, "z")
    assert order_key(DeliveryStatus.SENT, T0, "b") > order_key(DeliveryStatus.SENT, T0, "a")
    assert order_key(DeliveryStatus.SENT, T0, "a") == order_key(DeliveryStatus.SENT, T0, "a")


def test_a_missing_or_pre_epoch_time_comes_first() -> None:
    before_epoch = datetime(1960, 1, 1, tzinfo=UTC)
    assert order_key(DeliveryStatus.SENT, None, "z") < order_key(DeliveryStatus.SENT, T0, "a")
    assert order_key(DeliveryStatus.SENT, before_epoch, "a") == order_key(DeliveryStatus.SENT, None, "a")


def test_keys_sort_like_instants_across_years() -> None:
    instants = [T0 - timedelta(days=20000), T0, T0 + timedelta(microseconds=1), T0 + timedelta(days=30000)]
    keys = [order_key(DeliveryStatus.SENT, i, "e") for i in instants]
    assert all(a < b for a, b in pairwise(keys))


def test_terminal_statuses_are_the_four_final_outcomes() -> None:
    assert {s for s in DeliveryStatus if s.is_terminal} == {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.UNDELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.OPTED_OUT,
    }
