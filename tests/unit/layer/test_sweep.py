"""The stale-message sweep: messages accepted long ago with no terminal status become `unknown`,
each chunk once, and a later terminal callback still wins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests

from ocelot_sms.reconcile import attach_ids
from ocelot_sms.status import StatusService
from ocelot_sms.sweep import mark_stale_messages
from tests.unit.layer.conftest import Wired
from tests.unit.support.aws import EmfReader
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot

pytestmark = pytest.mark.usefixtures("emf")

ACCEPTED_AT = datetime(2026, 11, 20, 10, 45, tzinfo=UTC)
DUE = ACCEPTED_AT + timedelta(hours=74)


@dataclass
class Stale:
    ids: list[str]


@pytest.fixture
def stale(ocelot: FakeOcelot, wired: Wired, monkeypatch: pytest.MonkeyPatch) -> Stale:
    """stale-1, accepted at ACCEPTED_AT in 2 chunks: #0 delivered, #1 sent, #2 nothing, #3 failed."""
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    wired.store.clock = lambda: ACCEPTED_AT
    ids = [m.message_id or "" for m in send("stale-1", 4).messages]
    wired.store.clock = lambda: datetime.now(UTC)
    deliver(
        [
            callback("s-0", ids[0], "delivered", "2026-11-20T10:46:00Z"),
            callback("s-1", ids[1], "sent", "2026-11-20T10:46:00Z"),
            callback("s-3", ids[3], "failed", "2026-11-20T10:46:00Z"),
        ],
        "d-stale",
    )
    return Stale(ids)


def statuses(wired: Wired, ids: list[str]) -> list[str | None]:
    states = wired.store.get_states(ids)
    return [states[m].status if m in states else None for m in ids]


def test_messages_with_no_terminal_status_after_n_hours_become_unknown(
    stale: Stale, wired: Wired, emf: EmfReader
) -> None:
    emf.read()
    # When the sweep runs well after 72 hours
    marked = mark_stale_messages(wired.store, 72, now=DUE)
    # Then the sent one and the silent one are unknown; delivered and failed are untouched
    assert marked == 2
    assert statuses(wired, stale.ids) == ["delivered", "unknown", "unknown", "failed"]
    assert emf.read()["MessagesMarkedUnknown"] == 2
    silent = wired.store.get_states([stale.ids[2]])[stale.ids[2]]
    assert (silent.event_id, silent.event_time) == ("stale-sweep", "2026-11-23T12:45:00.000000Z")
    assert StatusService(wired.store).batch("stale-1")["counts"] == {
        "delivered": 1,
        "failed": 1,
        "unknown": 2,
    }


@pytest.mark.parametrize("minutes_early", [1, 30, 44])
def test_no_message_is_marked_before_n_hours(stale: Stale, wired: Wired, minutes_early: int) -> None:
    # Given messages accepted at 10:45; When the sweep runs shortly before 72 hours have passed
    now = ACCEPTED_AT + timedelta(hours=72) - timedelta(minutes=minutes_early)
    # Then nothing is marked (the hour bucket 10:00 holds messages not yet 72 hours old)
    assert mark_stale_messages(wired.store, 72, now=now) == 0
    assert statuses(wired, stale.ids) == ["delivered", "sent", None, "failed"]
    # And they are marked by a later run
    assert mark_stale_messages(wired.store, 72, now=DUE) == 2


def test_a_chunk_is_swept_once(stale: Stale, wired: Wired, emf: EmfReader) -> None:
    assert mark_stale_messages(wired.store, 72, now=DUE) == 2
    emf.read()
    assert mark_stale_messages(wired.store, 72, now=DUE + timedelta(hours=1)) == 0
    metrics = emf.read()
    assert "MessagesMarkedUnknown" in metrics  # published as 0: the sweep did run
    assert metrics["MessagesMarkedUnknown"] == 0


def test_a_later_terminal_callback_wins_over_unknown_and_an_older_non_terminal_one_does_not(
    stale: Stale, wired: Wired
) -> None:
    mark_stale_messages(wired.store, 72, now=DUE)
    # When callbacks arrive after the sweep: #2 delivered (its event time before the sweep, even),
    # #1 queued from long ago
    deliver(
        [
            callback("late-2", stale.ids[2], "delivered", "2026-11-20T11:00:00Z"),
            callback("late-1", stale.ids[1], "queued", "2026-11-20T10:45:30Z"),
        ],
        "d-late",
    )
    # Then #2 is delivered, #1 stays unknown
    assert statuses(wired, stale.ids) == ["delivered", "unknown", "delivered", "failed"]


def test_an_interrupted_sweep_is_finished_by_the_next_without_marking_twice(
    stale: Stale, wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sweep that fails after marking the first chunk, before recording it as swept
    real_swept = wired.store.swept

    def fails_once(chunk: object) -> None:
        monkeypatch.setattr(wired.store, "swept", real_swept)
        raise RuntimeError("InternalServerError")

    monkeypatch.setattr(wired.store, "swept", fails_once)
    with pytest.raises(RuntimeError, match="InternalServerError"):
        mark_stale_messages(wired.store, 72, now=DUE)
    assert statuses(wired, stale.ids) == ["delivered", "unknown", None, "failed"]
    # When the next run comes; Then it marks only what was left, and both chunks are done
    assert mark_stale_messages(wired.store, 72, now=DUE + timedelta(hours=1)) == 1
    assert statuses(wired, stale.ids) == ["delivered", "unknown", "unknown", "failed"]
    assert mark_stale_messages(wired.store, 72, now=DUE + timedelta(hours=2)) == 0


def test_chunks_older_than_the_lookback_are_left_alone(stale: Stale, wired: Wired) -> None:
    assert mark_stale_messages(wired.store, 72, lookback_days=14, now=ACCEPTED_AT + timedelta(days=15)) == 0
    assert mark_stale_messages(wired.store, 72, lookback_days=16, now=ACCEPTED_AT + timedelta(days=15)) == 2


def test_a_reconciled_chunk_is_swept_too(
    ocelot: FakeOcelot, wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a chunk whose answer timed out, resolved by an operator at ACCEPTED_AT
    ocelot.then(requests.ReadTimeout("read timed out"))
    send("rec-1", 2)
    wired.store.clock = lambda: ACCEPTED_AT
    attach_ids(wired.store, "rec-1", 0, "ob-portal", ["om-0", "om-1"])
    # Then its messages are swept like any accepted chunk's
    assert mark_stale_messages(wired.store, 72, now=DUE) == 2
    assert statuses(wired, ["om-0", "om-1"]) == ["unknown", "unknown"]
