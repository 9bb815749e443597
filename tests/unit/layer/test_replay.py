"""Replay: every stored raw delivery through the current contract, so that a callback our assumed
schema misread is recovered once contract.py is fixed; replaying twice changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import Field

from ocelot_sms import contract, runtime
from ocelot_sms.applier import replay_deliveries
from ocelot_sms.status import StatusService
from tests.unit.layer.conftest import Wired
from tests.unit.support.aws import EmfReader
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot

pytestmark = pytest.mark.usefixtures("emf")


def renamed_status_contract(monkeypatch: pytest.MonkeyPatch, field_name: str) -> None:
    """contract.py corrected the way an engineer would: the status is in `field_name`."""

    class CorrectedCallbackEvent(contract.CallbackEvent):
        status: str | None = Field(default=None, alias=field_name)

    monkeypatch.setattr(contract, "CallbackEvent", CorrectedCallbackEvent)


@dataclass
class Replayed:
    ids: list[str]
    since: datetime
    until: datetime
    bad: list[str]


@pytest.fixture
def misread(ocelot: FakeOcelot, wired: Wired) -> Replayed:
    """Ocelot really names the field `deliveryStatus`: deliveries stored, statuses not applied."""
    ids = [m.message_id or "" for m in send("replay-1", 3).messages]
    since = datetime.now(UTC) - timedelta(seconds=1)

    def ev(event_id: str, index: int, status: str, at: str, **extra: Any) -> dict[str, Any]:
        return callback(event_id, ids[index], status, at, status_field="deliveryStatus", **extra)

    answers = [
        deliver(
            [
                ev("r-0d", 0, "Delivered", "2026-11-26T17:00:02+01:00"),
                ev("r-0q", 0, "queued", "2026-11-26T16:00:01Z"),
            ],
            "d-1",
        ),
        deliver(ev("r-1s", 1, "sent", "2026-11-26T11:00:02-05:00"), "d-2"),
        deliver(ev("r-2f", 2, "FAILED", "2026-11-26T16:00:03Z", errorCode="30008"), "d-3"),
        deliver(None, "d-bad-json", raw_body=b'{"eventId": "cut sho'),
        deliver({"name": "OutgoingSms.statusChanged", "deliveryStatus": "sent"}, "d-no-event-id"),
    ]
    assert [a.status_code for a in answers] == [200] * 5
    assert [bool(a.applied and a.applied.problems) for a in answers] == [False, False, False, True, True]
    return Replayed(ids, since, datetime.now(UTC) + timedelta(seconds=1), ["d-bad-json", "d-no-event-id"])


def statuses(wired: Wired, ids: list[str]) -> list[str | None]:
    states = wired.store.get_states(ids)
    return [states[m].status if m in states else None for m in ids]


def test_replay_recovers_every_status_once_the_contract_names_the_right_field(
    misread: Replayed, wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given deliveries whose status field the contract did not know: kept, but no status applied
    assert statuses(wired, misread.ids) == [None, None, None]
    assert StatusService(wired.store).batch("replay-1")["counts"] == {"accepted": 3}

    # When contract.py is corrected and the time range replayed
    renamed_status_contract(monkeypatch, "deliveryStatus")
    report = replay_deliveries(wired.store, runtime.applier_service(), misread.since, misread.until)

    # Then every event is recovered, and each message is in its right state
    assert (report.deliveries, report.events, report.new, report.duplicates) == (5, 4, 4, 0)
    assert sorted(report.malformed) == misread.bad
    assert statuses(wired, misread.ids) == ["delivered", "sent", "failed"]
    assert wired.store.get_states([misread.ids[2]])[misread.ids[2]].error_code == "30008"
    history = StatusService(wired.store).message(misread.ids[0])
    assert [e["eventId"] for e in history["history"]] == ["r-0q", "r-0d"]
    assert history["history"][1]["event"]["deliveryStatus"] == "Delivered"
    assert StatusService(wired.store).batch("replay-1")["counts"] == {"delivered": 1, "failed": 1, "sent": 1}

    # And replaying again changes nothing at all
    before = (dict(wired.store.events), dict(wired.store.states))
    again = replay_deliveries(wired.store, runtime.applier_service(), misread.since, misread.until)
    assert (again.new, again.duplicates, again.events) == (0, 4, 4)
    assert (wired.store.events, wired.store.states) == before


def test_replay_through_the_old_contract_changes_no_status(misread: Replayed, wired: Wired) -> None:
    report = replay_deliveries(wired.store, runtime.applier_service(), misread.since, misread.until)
    assert (report.events, report.new) == (4, 0)
    assert statuses(wired, misread.ids) == [None, None, None]


def test_replay_takes_only_deliveries_received_in_the_range(
    misread: Replayed, wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed_status_contract(monkeypatch, "deliveryStatus")
    later = misread.until + timedelta(minutes=5)
    assert replay_deliveries(wired.store, runtime.applier_service(), misread.until, later).deliveries == 0
    assert statuses(wired, misread.ids) == [None, None, None]


def test_replay_walks_every_day_of_the_range(wired: Wired, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given deliveries on both sides of midnight UTC
    deliver(
        callback("n-1", "m-night", "sent", "2026-11-25T23:59:58Z", status_field="deliveryStatus"),
        "d-before-midnight",
        datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC),
    )
    deliver(
        callback("n-2", "m-night", "delivered", "2026-11-26T00:00:00Z", status_field="deliveryStatus"),
        "d-after-midnight",
        datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC),
    )
    renamed_status_contract(monkeypatch, "deliveryStatus")
    # When a range starting the evening before, on a UTC-5 clock, is replayed
    since = datetime(2026, 11, 25, 18, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    report = replay_deliveries(wired.store, runtime.applier_service(), since, since + timedelta(hours=1))
    # Then both days are read, and both deliveries replayed
    assert (report.deliveries, report.new) == (2, 2)
    assert statuses(wired, ["m-night"]) == ["delivered"]


def test_replay_reports_what_it_did_in_the_logs(misread: Replayed, wired: Wired, emf: EmfReader) -> None:
    emf.read()
    replay_deliveries(wired.store, runtime.applier_service(), misread.since, misread.until)
    emf.read()
    [line] = [json.loads(x) for x in emf.lines if "replay finished" in x]
    assert (line["deliveries"], line["malformed"]) == (5, 2)
