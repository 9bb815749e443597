"""Sends made later: `sendAt` and quiet hours stored at once and scheduled, the schedule's message sending
the stored request at its time, a cancel and a send deciding by one conditional write, idempotency
across scheduling."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ocelot_sms import runtime
from ocelot_sms import sender as sender_module
from ocelot_sms.clock import iso
from ocelot_sms.errors import Cancelled, InvalidRequest, NotFound, SendingStarted, Unavailable
from ocelot_sms.observability import metrics
from ocelot_sms.scheduling import at_expression, fire_message, fired_request, schedule_name
from ocelot_sms.sender import SenderService
from ocelot_sms.settings import get_settings
from ocelot_sms.store import ScheduleStatus
from tests.unit.layer.conftest import Wired
from tests.unit.layer.test_sender import make_service
from tests.unit.support.aws import EmfReader
from tests.unit.support.ocelot import FakeOcelot, batch

pytestmark = pytest.mark.usefixtures("emf")

NOW = datetime(2026, 1, 15, 16, 0, tzinfo=UTC)  # 10:00 in Chicago (winter)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """The Sender's clock, fixed at NOW; calling it moves it on."""
    now = [NOW]
    monkeypatch.setattr(sender_module, "utc_now", lambda: now[0])

    def move(by: timedelta) -> None:
        now[0] += by

    return move


def later(request_id: str, at: datetime, count: int = 2) -> dict[str, object]:
    return batch(request_id, count, sendAt=at.isoformat())


def fire(service: SenderService, request_id: str) -> object:
    """What the schedule does at its time: its message on the send queue, taken by the Sender."""
    return service.submit_queued(fire_message(request_id), "queue-message-1")


def test_a_request_for_later_is_stored_and_scheduled_not_sent(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a request for Thursday 9:00 Chicago, written on Monday
    service = make_service()
    at = datetime(2026, 1, 15, 9, 0, tzinfo=UTC) + timedelta(days=3, hours=6)
    request = service.parse(later("thursday", at))

    # When it is submitted
    result = service.submit(request, origin="api")

    # Then it is answered scheduled, for that time, each message scheduled, and nothing was sent
    assert (result.status, result.scheduled_for, result.schedule_reason) == ("scheduled", iso(at), "sendAt")
    assert [m.status.value for m in result.messages] == ["scheduled", "scheduled"]
    assert ocelot.sent == []
    # And one schedule puts a message naming it on the send queue at that time
    assert wired.schedules.made == {schedule_name("thursday"): (at, fire_message("thursday"))}
    stored = wired.store.batches["thursday"]
    assert stored.schedule is not None
    assert stored.schedule.status is ScheduleStatus.SCHEDULED


def test_the_same_request_scheduled_twice_is_one_send(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a request scheduled an hour ahead, submitted twice (a retry)
    service = make_service()
    body = later("twice", NOW + timedelta(hours=1))
    first = service.submit(service.parse(body), origin="api")
    again = service.submit(service.parse(body), origin="api")

    # Then both answers are the same schedule, and one schedule exists
    assert (first.scheduled_for, again.scheduled_for) == (again.scheduled_for, iso(NOW + timedelta(hours=1)))
    assert list(wired.schedules.made) == [schedule_name("twice")]

    # When its time comes and the schedule fires, then fires again (at-least-once delivery), and the
    # request is submitted once more afterwards
    clock(timedelta(hours=1))
    fire(service, "twice")
    fire(service, "twice")
    service.submit(service.parse(body), origin="api")

    # Then Ocelot got it once
    assert len(ocelot.sent) == 1
    assert [m["to"] for m in ocelot.payloads[0]["messages"]] == [m["to"] for m in body["messages"]]  # type: ignore[attr-defined]


def test_send_at_in_the_past_is_sent_now(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a request whose sendAt has passed
    service = make_service()
    request = service.parse(later("past", NOW - timedelta(minutes=5), count=1))

    # When submitted; Then it is sent at once, no schedule made
    result = service.submit(request, origin="api")
    assert result.status == "accepted"
    assert len(ocelot.sent) == 1
    assert wired.schedules.made == {}


def test_send_at_more_than_35_days_ahead_is_refused(wired: Wired) -> None:
    # Given a request for 36 days ahead
    service = make_service()
    body = later("far", datetime.now(UTC) + timedelta(days=36))

    # When parsed; Then the field is the problem
    with pytest.raises(InvalidRequest) as caught:
        service.parse(body)
    assert [p.field for p in caught.value.problems] == ["sendAt"]
    assert "35 days" in caught.value.problems[0].message


@pytest.mark.parametrize("value", ["2026-01-15T09:00:00", 1768467600, "tomorrow"])
def test_send_at_needs_an_instant_with_an_offset(wired: Wired, value: object) -> None:
    # Given a sendAt without an offset, a bare number, or not a time; When parsed; Then refused
    with pytest.raises(InvalidRequest) as caught:
        make_service().parse(batch("bad-at", 1, sendAt=value))
    assert [p.field for p in caught.value.problems] == ["sendAt"]


def test_a_schedule_firing_early_is_retried_by_the_queue(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a request scheduled an hour ahead
    service = make_service()
    service.submit(service.parse(later("early", NOW + timedelta(hours=1))), origin="api")

    # When its message comes a minute early; Then nothing is sent and the queue gives it again
    clock(timedelta(minutes=59))
    with pytest.raises(Unavailable):
        fire(service, "early")
    assert ocelot.sent == []
    # And within the tolerance it is sent
    clock(timedelta(seconds=58))
    fire(service, "early")
    assert len(ocelot.sent) == 1


def test_a_fired_message_for_no_stored_request_is_rejected_not_retried(wired: Wired) -> None:
    # Given / When a schedule's message names a request nobody stored
    assert fire(make_service(), "nobody") is None
    # Then it is kept as rejected (not raised: the queue does not retry it)
    assert [r.source_id for r in wired.store.rejections.values()] == ["queue-message-1"]


def test_cancel_before_the_time_means_never_sent(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a request scheduled an hour ahead
    service = make_service()
    body = later("cancel", NOW + timedelta(hours=1))
    service.submit(service.parse(body), origin="api")

    # When it is cancelled, twice
    answer = service.cancel("cancel")
    again = service.cancel("cancel")

    # Then both say cancelled, the schedule is gone
    assert answer["status"] == again["status"] == "cancelled"
    assert wired.schedules.made == {}
    # And a schedule that fired anyway, or the same request again, sends nothing
    clock(timedelta(hours=1))
    assert fire(service, "cancel") is None
    with pytest.raises(Cancelled):
        service.submit(service.parse(body), origin="api")
    assert ocelot.sent == []


def test_cancel_once_sending_began_is_refused(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a scheduled request whose time came and was sent, and a request sent at once
    service = make_service()
    service.submit(service.parse(later("begun", NOW + timedelta(minutes=1))), origin="api")
    clock(timedelta(minutes=1))
    fire(service, "begun")
    service.submit(service.parse(batch("at-once", 1)), origin="api")

    # When / Then neither can be cancelled; a request never made is not found
    with pytest.raises(SendingStarted):
        service.cancel("begun")
    with pytest.raises(SendingStarted):
        service.cancel("at-once")
    with pytest.raises(NotFound):
        service.cancel("never")


def _race(service: SenderService, request_id: str) -> dict[str, str]:
    """The schedule's message and a cancel of the same request, started at the same moment."""
    outcomes: dict[str, str] = {}
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        outcomes["send"] = "sent" if fire(service, request_id) is not None else "not sent"

    def cancel() -> None:
        start.wait()
        try:
            outcomes["cancel"] = service.cancel(request_id)["status"]
        except SendingStarted:
            outcomes["cancel"] = "too late"

    threads = [threading.Thread(target=send), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_a_cancel_racing_the_send_one_wins(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a request whose time has come, fired and cancelled at the same moment, many times over
    sends = 0
    for round_ in range(20):
        service = make_service()
        request_id = f"race-{round_}"
        at = NOW + timedelta(minutes=round_ + 1)  # the clock is at NOW + round_ minutes
        service.submit(service.parse(later(request_id, at, count=1)), origin="api")
        clock(timedelta(minutes=1))
        outcomes = _race(service, request_id)

        # Then exactly one of them won: sent and too late to cancel, or cancelled and not sent
        assert outcomes in (
            {"send": "sent", "cancel": "too late"},
            {"send": "not sent", "cancel": "cancelled"},
        )
        status = wired.store.batches[request_id].schedule
        assert status is not None
        assert status.status is (
            ScheduleStatus.STARTED if outcomes["send"] == "sent" else ScheduleStatus.CANCELLED
        )
        # And Ocelot got the request only when the send won
        sends += outcomes["send"] == "sent"
        assert len(ocelot.sent) == sends


def test_a_schedule_that_could_not_be_made_is_made_by_the_same_request_again(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given Scheduler failing
    service = make_service()
    body = later("retry-schedule", NOW + timedelta(hours=2))
    wired.schedules.refuse = RuntimeError("throttled")

    # When the request is submitted; Then the caller is told to send it again
    with pytest.raises(Unavailable):
        service.submit(service.parse(body), origin="api")

    # And the same request again, Scheduler back, makes the schedule
    wired.schedules.refuse = None
    assert service.submit(service.parse(body), origin="api").status == "scheduled"
    assert list(wired.schedules.made) == [schedule_name("retry-schedule")]


# ---- quiet hours -----------------------------------------------------------------------------------


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quiet hours 21:00-08:00 in Chicago."""
    monkeypatch.setenv("QUIET_HOURS", "21:00-08:00")
    monkeypatch.setenv("QUIET_HOURS_TIME_ZONE", "America/Chicago")


@pytest.mark.usefixtures("quiet")
def test_a_send_inside_quiet_hours_is_scheduled_for_their_end(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given it is 22:00 in Chicago (04:00 UTC)
    clock(timedelta(hours=12))
    service = make_service()

    # When a request is submitted for now
    result = service.submit(service.parse(batch("evening", 1)), origin="api")

    # Then it is scheduled for 08:00 Chicago (14:00 UTC), reported as quiet hours, not sent
    assert (result.status, result.schedule_reason) == ("scheduled", "quiet_hours")
    assert result.scheduled_for == iso(datetime(2026, 1, 16, 14, 0, tzinfo=UTC))
    assert ocelot.sent == []


@pytest.mark.usefixtures("quiet")
def test_a_send_at_inside_quiet_hours_moves_to_their_end(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given a sendAt of 23:30 Chicago the same day
    service = make_service()
    at = datetime(2026, 1, 16, 5, 30, tzinfo=UTC)

    # When submitted; Then it waits for the end of that night's quiet hours
    result = service.submit(service.parse(later("late", at, 1)), origin="api")
    assert (result.scheduled_for, result.schedule_reason) == (
        iso(datetime(2026, 1, 16, 14, 0, tzinfo=UTC)),
        "quiet_hours",
    )


@pytest.mark.usefixtures("quiet")
def test_an_urgent_send_inside_quiet_hours_goes_now_and_is_counted(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None], emf: EmfReader
) -> None:
    # Given it is 22:00 in Chicago
    clock(timedelta(hours=12))
    service = make_service()

    # When an urgent request (an emergency notice) is submitted
    result = service.submit(service.parse(batch("closure", 1, urgent=True)), origin="api")
    metrics.flush_metrics()

    # Then it is sent now, and logged and counted
    assert result.status == "accepted"
    assert len(ocelot.sent) == 1
    assert wired.schedules.made == {}
    assert emf.read()["UrgentInQuietHours"] == 1
    assert any("urgent request sent inside quiet hours" in line for line in emf.lines)


@pytest.mark.usefixtures("quiet")
def test_outside_quiet_hours_a_send_goes_now(
    wired: Wired, ocelot: FakeOcelot, clock: Callable[[timedelta], None]
) -> None:
    # Given it is 10:00 in Chicago; When a request is submitted; Then it is sent
    service = make_service()
    assert service.submit(service.parse(batch("morning", 1)), origin="api").status == "accepted"


def test_without_a_schedule_group_a_later_send_is_refused(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, clock: Callable[[timedelta], None]
) -> None:
    # Given a Sender with no Scheduler (a stack without the group)
    service = SenderService(get_settings(), wired.store, runtime.ocelot_client(), wired.idempotency)

    # When a request for later comes; Then sendAt is the problem
    with pytest.raises(InvalidRequest) as caught:
        service.submit(service.parse(later("no-group", NOW + timedelta(hours=1))), origin="api")
    assert caught.value.problems[0].field == "sendAt"


# ---- the schedule's own parts ----------------------------------------------------------------------


def test_schedule_names_fit_scheduler_and_differ_per_request() -> None:
    # Given the longest requestIds, with colons; When named; Then 64 characters of its alphabet at most
    names = {schedule_name("a:" * 64), schedule_name("b:" * 64)}
    assert len(names) == 2
    assert all(len(n) <= 64 and n.replace("-", "").isalnum() for n in names)


def test_at_expression_is_whole_seconds_never_early() -> None:
    # Given an instant with microseconds in another zone; When expressed; Then UTC, rounded up
    at = datetime(2026, 1, 15, 9, 0, 0, 500, tzinfo=UTC).astimezone()
    assert at_expression(at) == "at(2026-01-15T09:00:01)"
    assert at_expression(datetime(2026, 1, 15, 9, tzinfo=UTC)) == "at(2026-01-15T09:00:00)"


def test_fired_request_reads_only_a_schedules_message() -> None:
    # Given / When / Then
    assert fired_request(json.loads(fire_message("r-1"))) == "r-1"
    assert fired_request({"requestId": "r-1", "messages": []}) is None
    assert fired_request({"scheduledRequestId": 5}) is None
    assert fired_request([]) is None
