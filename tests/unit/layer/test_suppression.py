"""Suppression: written by the applier from a number's latest opt-out signal (an `opted_out` callback, a
STOP reply; lifted by START), read by the Sender to leave those numbers out of what goes to Ocelot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ocelot_sms.applier import ApplierService
from ocelot_sms.contract import inbound_event, status_event
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.observability import metrics
from ocelot_sms.settings import Settings
from ocelot_sms.store import MessageRecord, RawDelivery, Suppression, SuppressionSource
from ocelot_sms.suppression import keyword
from tests.unit.fakes import MemoryStore
from tests.unit.layer.conftest import Wired
from tests.unit.layer.test_sender import make_service
from tests.unit.support.aws import EmfReader
from tests.unit.support.ocelot import FakeOcelot, batch, phone

pytestmark = pytest.mark.usefixtures("emf")

AT = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
OURS = "+15550000000"
_ids = iter(range(10**6))


def deliver(store: MemoryStore, *events: dict[str, object]) -> None:
    """Callbacks stored raw and applied, as the webhook and the applier do."""
    raw = RawDelivery(f"d-{next(_ids)}", AT + timedelta(minutes=5), json.dumps(list(events)).encode(), {})
    store.put_raw(raw, 30)
    stored = store.get_raw(raw.ref)
    assert stored is not None
    ApplierService(Settings(table_name="messages"), store).apply(stored)


def opted_out(number: str, minutes: int = 0, message_id: str = "m-1") -> dict[str, object]:
    return status_event(
        event_id=f"e-{next(_ids)}",
        batch_id="b-1",
        message_id=message_id,
        to=number,
        sender=OURS,
        status=DeliveryStatus.OPTED_OUT,
        at=AT + timedelta(minutes=minutes),
        error_message="recipient opted out",
    )


def reply(number: str, text: str, minutes: int = 0) -> dict[str, object]:
    return inbound_event(
        event_id=f"e-{next(_ids)}", sender=number, to=OURS, text=text, at=AT + timedelta(minutes=minutes)
    )


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("STOP", "stop"),
        (" Stop. ", "stop"),
        ("unsubscribe", "unsubscribe"),
        ("START", "start"),
        ("stop it", None),
    ],
)
def test_a_reply_is_a_keyword_only_as_its_whole_text(text: str, word: str | None) -> None:
    # Given / When / Then
    assert keyword(text) == word


def test_an_opted_out_callback_suppresses_the_number() -> None:
    # Given a message whose status callback says the recipient opted out
    store = MemoryStore()

    # When applied
    deliver(store, opted_out(phone(1)))

    # Then the number is suppressed, by that callback
    found = store.suppressions([phone(1), phone(2)])
    assert list(found) == [phone(1)]
    assert (found[phone(1)].source, found[phone(1)].message_id) == (SuppressionSource.OPTED_OUT, "m-1")


def test_a_stop_reply_suppresses_and_a_later_start_lifts() -> None:
    # Given a STOP reply
    store = MemoryStore()
    deliver(store, reply(phone(1), "STOP"))
    assert store.suppressions([phone(1)])[phone(1)].source is SuppressionSource.REPLY

    # When an older START arrives late; Then it changes nothing
    deliver(store, reply(phone(1), "START", minutes=-1))
    assert phone(1) in store.suppressions([phone(1)])

    # When a newer START arrives; Then the number is no longer suppressed
    deliver(store, reply(phone(1), "start", minutes=1))
    assert store.suppressions([phone(1)]) == {}


def test_an_ordinary_reply_changes_nothing() -> None:
    store = MemoryStore()
    # Given / When a reply that is no keyword; Then no suppression
    deliver(store, reply(phone(1), "Stop by the office at 3?"))
    assert store.suppressions([phone(1)]) == {}


def test_an_operators_suppression_is_not_changed_by_callbacks() -> None:
    # Given a number an operator suppressed
    store = MemoryStore()
    store.suppress(Suppression(phone(1), SuppressionSource.OPERATOR, "2026-11-26T15:00:00Z", reason="asked"))

    # When the recipient texts START later
    deliver(store, reply(phone(1), "START", minutes=30))

    # Then the operator's suppression stands
    assert store.suppressions([phone(1)])[phone(1)].source is SuppressionSource.OPERATOR


def test_a_reply_is_linked_to_the_last_message_sent_to_its_number() -> None:
    # Given two messages sent to a number, on Monday and Tuesday, and one to another number after
    now = [AT - timedelta(days=2)]
    store = MemoryStore(clock=lambda: now[0])
    for message_id, request_id, to in (("m-1", "monday", phone(1)), ("m-2", "tuesday", phone(1))):
        store.put_messages([MessageRecord(message_id, request_id, 0, f"ref-{request_id}", to, 0, "b-1")])
        now[0] += timedelta(days=1)
    store.put_messages([MessageRecord("m-3", "other", 0, None, phone(2), 0, "b-1")])

    # When the number replies
    now[0] = AT + timedelta(minutes=10)
    deliver(store, reply(phone(1), "Which room?", minutes=10))

    # Then the reply is listed, linked to Tuesday's message (the last sent to it)
    listed = store.inbound(AT - timedelta(days=1), 10).events
    assert len(listed) == 1
    inbound = listed[0].inbound
    assert inbound is not None
    assert inbound.text == "Which room?"
    assert inbound.reply_to is not None
    assert (inbound.reply_to.message_id, inbound.reply_to.request_id, inbound.reply_to.ref) == (
        "m-2",
        "tuesday",
        "ref-tuesday",
    )


# ---- the Sender ------------------------------------------------------------------------------------


def suppress(wired: Wired, *numbers: str) -> None:
    for number in numbers:
        wired.store.suppress(Suppression(number, SuppressionSource.OPTED_OUT, "2026-11-26T16:00:00Z"))


def test_suppressed_numbers_are_left_out_and_reported(wired: Wired, ocelot: FakeOcelot) -> None:
    # Given a suppressed number that appears twice in a request of four messages
    suppress(wired, phone(1))
    body = batch("left-out", 3)
    body["messages"].append({"to": phone(1), "text": "again", "ref": "ref-again"})
    service = make_service()

    # When sent
    result = service.submit(service.parse(body), origin="api")

    # Then Ocelot got only the others, and each message to the number is reported suppressed
    assert [m["to"] for m in ocelot.payloads[0]["messages"]] == [phone(0), phone(2)]
    assert [m.status.value for m in result.messages] == ["accepted", "suppressed", "accepted", "suppressed"]
    assert [m.message_id is None for m in result.messages] == [False, True, False, True]
    # And the request is done, not an error
    assert result.status == "accepted"


def test_a_chunk_of_suppressed_numbers_only_is_not_sent(
    wired: Wired, ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given chunks of two, the first all suppressed
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    suppress(wired, phone(0), phone(1))
    service = make_service()

    # When a request of four is sent
    result = service.submit(service.parse(batch("first-chunk-out", 4)), origin="api")

    # Then only the second chunk went to Ocelot
    assert [[m["to"] for m in p["messages"]] for p in ocelot.payloads] == [[phone(2), phone(3)]]
    assert [m.status.value for m in result.messages] == ["suppressed", "suppressed", "accepted", "accepted"]


def test_include_suppressed_sends_to_them_and_is_counted(
    wired: Wired, ocelot: FakeOcelot, emf: EmfReader
) -> None:
    # Given a suppressed number
    suppress(wired, phone(1))
    service = make_service()

    # When a request says includeSuppressed
    result = service.submit(service.parse(batch("override", 2, includeSuppressed=True)), origin="api")
    metrics.flush_metrics()

    # Then it is sent to it as well, and the override is counted
    assert [m["to"] for m in ocelot.payloads[0]["messages"]] == [phone(0), phone(1)]
    assert [m.status.value for m in result.messages] == ["accepted", "accepted"]
    assert emf.read()["SuppressionOverridden"] == 1


def test_a_retry_reports_the_same_messages_suppressed(wired: Wired, ocelot: FakeOcelot) -> None:
    # Given a request sent with a suppressed number
    suppress(wired, phone(1))
    service = make_service()
    body = batch("same-answer", 2)
    first = service.submit(service.parse(body), origin="api")

    # When the number is lifted and the same request comes again
    wired.store.lift_suppression(phone(1))
    again = service.submit(service.parse(body), origin="api")

    # Then the answer is the same, and nothing more was sent
    assert [m.status for m in again.messages] == [m.status for m in first.messages]
    assert len(ocelot.sent) == 1
