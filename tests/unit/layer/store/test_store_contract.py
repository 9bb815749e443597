"""What every store does, whatever keeps the data: run against DynamoStore on moto and MemoryStore.

The services' own tests use MemoryStore; these tests are what lets them trust it.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ocelot_sms.clock import iso, utc_now
from ocelot_sms.delivery import DeliveryStatus, order_key
from ocelot_sms.store import (
    INTERRUPTED_REASON,
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    EventRecord,
    EventWrite,
    MessageRecord,
    RawRef,
    Recipient,
    RequestConflict,
    Schedule,
    ScheduleStatus,
    SendConflict,
    SendPart,
    SendRecord,
    StateChange,
    Store,
    Suppression,
    SuppressionSource,
    dynamodb,
)
from ocelot_sms.store.codec import MAX_STORED_BODY, RAW_HEAD_BYTES
from tests.unit.fakes import MemoryStore
from tests.unit.layer.store.support import RAW, T0, event, raw, status

ACCEPTED = ChunkRecord("req-1", 0, ChunkStatus.ACCEPTED, 2, 0, "b-1", None, ("m-0", "m-1"))


def message(index: int, chunk: int = 0, request_id: str = "req-1") -> MessageRecord:
    return MessageRecord(
        f"m-{index}", request_id, index, f"ref-{index}", f"+1555123{index:04d}", chunk, "b-1"
    )


# ---- batches and chunks ----------------------------------------------------------------------------


def test_a_batch_reads_back_with_its_chunks_in_order(store: Store) -> None:
    # Given a batch and two chunks written out of order
    store.put_batch(BatchRecord("req-1", "hash-1", 150, 2, "api"))
    unknown = ChunkRecord("req-1", 1, ChunkStatus.UNKNOWN, 50, 100, None, "read timeout")
    store.finish_chunk(unknown)
    store.finish_chunk(ACCEPTED)
    # When read; Then the header and the chunks by index, with when the batch was created
    stored = store.get_batch("req-1")
    assert stored is not None
    assert stored.batch == BatchRecord("req-1", "hash-1", 150, 2, "api")
    assert stored.batch.created_at is not None
    assert stored.chunks == (ACCEPTED, unknown)
    assert store.get_batch("nope") is None


def test_the_first_batch_record_wins_and_another_payload_conflicts(store: Store) -> None:
    # Given a batch; When recorded again with the same hash (a retry from the queue)
    store.put_batch(BatchRecord("req-1", "hash-1", 10, 1, "api"))
    created = store.get_batch("req-1")
    store.put_batch(BatchRecord("req-1", "hash-1", 10, 1, "sqs"))
    # Then the first record stays as it was
    again = store.get_batch("req-1")
    assert again is not None
    assert created is not None
    assert (again.batch.origin, again.batch.created_at) == ("api", created.batch.created_at)
    # When the requestId comes with another payload; Then a conflict, and nothing changes
    with pytest.raises(RequestConflict, match="different payload"):
        store.put_batch(BatchRecord("req-1", "hash-2", 99, 9, "sqs"))
    assert store.get_batch("req-1") == again


def test_a_chunk_is_claimed_once_unless_certainly_not_sent(store: Store) -> None:
    # Given a new chunk; When claimed; Then claimed (None) and readable
    sending = ChunkRecord("req-1", 0, ChunkStatus.SENDING, 100, 0)
    assert store.claim_chunk(sending) is None
    assert store.get_chunk("req-1", 0) == sending
    # When claimed again; Then refused with the record that stands
    assert store.claim_chunk(sending) == sending
    # Given it was certainly not sent; Then it can be claimed again
    store.finish_chunk(ChunkRecord("req-1", 0, ChunkStatus.NOT_SENT, 100, 0, reason="503"))
    assert store.claim_chunk(sending) is None
    assert store.get_chunk("req-1", 1) is None


@pytest.mark.parametrize("standing", [ChunkStatus.ACCEPTED, ChunkStatus.UNKNOWN])
def test_a_finished_chunk_is_never_claimed_again(store: Store, standing: ChunkStatus) -> None:
    finished = ChunkRecord("req-1", 0, standing, 2, 0, "b-1", "why", ("m-0", "m-1"))
    store.finish_chunk(finished)
    assert store.claim_chunk(ChunkRecord("req-1", 0, ChunkStatus.SENDING, 2, 0)) == finished


def test_an_unknown_chunk_keeps_its_ocelot_request(store: Store) -> None:
    payload = {"phoneNumber": "+15550000000", "operatorId": "op", "messages": [{"to": "+15551230000"}]}
    chunk = ChunkRecord("req-1", 0, ChunkStatus.UNKNOWN, 1, 0, reason="read timeout", payload=payload)
    store.finish_chunk(chunk)
    assert store.get_chunk("req-1", 0) == chunk


def test_messages_are_listed_per_chunk_in_request_order(store: Store) -> None:
    # Given 60 messages over two chunks (more than one BatchWriteItem of 25), written shuffled
    records = [message(i, chunk=i // 30) for i in range(60)]
    store.put_messages(random.Random(3).sample(records, len(records)))
    # When one chunk is listed; Then exactly its messages, in index order
    assert store.batch_messages("req-1", 1) == records[30:]
    assert store.batch_messages("req-1", 2) == []


# ---- events and states -----------------------------------------------------------------------------


def test_a_new_status_is_applied_and_kept_in_the_history(store: Store) -> None:
    # Given a delivered event for m-1; When stored
    outcome = store.put_event(status("e-1", "m-1", "Delivered", T0, errorCode="0"))
    # Then applied: the current state, and the event in the history as received
    assert outcome is EventWrite.APPLIED
    history = store.get_message("m-1")
    assert history.found
    state = history.state
    assert state is not None
    assert (state.status, state.event_id, state.error_code, state.batch_id, state.event_time) == (
        "delivered",
        "e-1",
        "0",
        "b-1",
        iso(T0),
    )
    assert state.order_key == order_key(DeliveryStatus.DELIVERED, T0, "e-1")
    [stored] = history.events
    assert (stored.event_id, stored.status, stored.event_time, stored.raw) == (
        "e-1",
        "delivered",
        iso(T0),
        RAW,
    )
    assert json.loads(stored.payload or "")["status"] == "Delivered"


def test_the_same_event_twice_is_a_duplicate_that_changes_nothing(store: Store) -> None:
    event_ = status("e-1", "m-1", "sent", T0)
    assert store.put_event(event_) is EventWrite.APPLIED
    before = store.get_message("m-1")
    # When the same eventId comes again, even from another raw delivery
    again = status("e-1", "m-1", "sent", T0, raw=RawRef("d-2", "2026-11-26T16:00:09.000000Z"))
    assert store.put_event(again) is EventWrite.DUPLICATE
    assert store.get_message("m-1") == before


def test_an_older_status_is_kept_in_the_history_only(store: Store) -> None:
    # Given delivered at T0+5; When sent at T0+9 (later, but not terminal) arrives
    assert store.put_event(status("e-2", "m-1", "delivered", T0 + timedelta(seconds=5))) is EventWrite.APPLIED
    assert store.put_event(status("e-1", "m-1", "sent", T0 + timedelta(seconds=9))) is EventWrite.STORED
    # Then the state stays delivered, and both are in the history in event-time order
    history = store.get_message("m-1")
    assert history.state is not None
    assert history.state.status == "delivered"
    assert [e.status for e in history.events] == ["delivered", "sent"]


def test_the_history_is_in_event_time_order_untimed_first(store: Store) -> None:
    # Given events stored out of order, one without time and one at another offset
    store.put_messages([message(0)])
    store.put_event(status("e-c", "m-0", "delivered", "2026-11-26T11:00:09-05:00"))
    store.put_event(status("e-a", "m-0", "queued", "2026-11-26T16:00:01Z"))
    store.put_event(status("e-z", "m-0", "sent", None))
    store.put_event(status("e-b", "m-0", "sent", "2026-11-26T16:00:03Z"))
    # When read; Then meta, state, and history by instant (not by arrival or event id)
    history = store.get_message("m-0")
    assert history.meta == message(0)
    assert history.state is not None
    assert history.state.event_id == "e-c"
    assert [e.event_id for e in history.events] == ["e-z", "e-a", "e-b", "e-c"]
    assert history.events[0].event_time is None


@pytest.mark.parametrize(
    ("item", "understood"),
    [
        ({"eventId": "in-1", "name": "IncomingSms.received", "message": "STOP", "messageId": "m-1"}, True),
        (
            {
                "eventId": "e-odd",
                "name": "OutgoingSms.statusChanged",
                "messageId": "m-1",
                "status": "pending",
            },
            False,
        ),
        ({"eventId": "e-1", "messageId": "m-1", "status": "delivered"}, True),
    ],
    ids=["inbound", "unknown-status", "no-name"],
)
def test_an_event_of_a_message_that_is_no_status_change_is_in_its_history_and_moves_nothing(
    store: Store, item: dict[str, str], understood: bool
) -> None:
    # When stored; Then kept with the message (a repeat is a duplicate), and m-1 has no state
    assert store.put_event(event(item)) is EventWrite.STORED
    assert store.put_event(event(item)) is EventWrite.DUPLICATE
    history = store.get_message("m-1")
    assert history.state is None
    assert [(e.event_id, e.understood) for e in history.events] == [(item["eventId"], understood)]


def test_an_event_of_no_message_is_kept_on_its_own(store: Store) -> None:
    orphan = event({"eventId": "e-orphan", "name": "OutgoingSms.statusChanged", "status": "sent"})
    assert store.put_event(orphan) is EventWrite.STORED
    assert store.put_event(orphan) is EventWrite.DUPLICATE
    assert not store.get_message("m-1").found


def test_an_event_stored_unrecognised_is_stored_again_once_recognised(store: Store) -> None:
    # Given a status event whose status an older contract did not read: in the history, not understood
    unread = event(
        {"eventId": "e-1", "name": "OutgoingSms.statusChanged", "messageId": "m-1", "state": "sent"}
    )
    assert store.put_event(unread) is EventWrite.STORED
    assert [e.understood for e in store.get_message("m-1").events] == [False]
    # When replayed through a corrected contract; Then it is understood now, and applied
    assert store.put_event(status("e-1", "m-1", "sent", T0)) is EventWrite.APPLIED
    history = store.get_message("m-1")
    assert [(e.event_id, e.status, e.understood) for e in history.events] == [("e-1", "sent", True)]
    assert history.state is not None
    # And replaying it again is a duplicate
    assert store.put_event(status("e-1", "m-1", "sent", T0)) is EventWrite.DUPLICATE


def test_a_state_moves_only_forward(store: Store) -> None:
    later = StateChange("m-1", DeliveryStatus.SENT, order_key(DeliveryStatus.SENT, T0, "e-2"), "e-2", iso(T0))
    earlier = StateChange(
        "m-1", DeliveryStatus.QUEUED, order_key(DeliveryStatus.QUEUED, T0, "e-1"), "e-1", None
    )
    assert store.advance_state(later) is True
    assert store.advance_state(earlier) is False
    assert store.advance_state(later) is False
    assert store.get_states(["m-1"])["m-1"].status == "sent"


def test_states_are_read_for_many_messages_at_once(store: Store) -> None:
    # Given 150 messages with a state (more than one BatchGetItem of 100)
    for i in range(150):
        store.put_event(status(f"e-{i}", f"m-{i}", "delivered" if i % 2 else "sent", T0))
    # When read together with an unknown id and a repeated one
    found = store.get_states([f"m-{i}" for i in range(150)] + ["unknown-1", "m-1"])
    # Then one state per known message
    assert len(found) == 150
    assert (found["m-1"].status, found["m-2"].status) == ("delivered", "sent")
    assert store.get_states([]) == {}


# ---- raw deliveries --------------------------------------------------------------------------------


def test_raw_deliveries_are_read_back_by_utc_day_byte_for_byte(store: Store) -> None:
    # Given a big JSON body, a body that is not UTF-8, and one the next day (UTC)
    big = json.dumps([{"eventId": f"e-{i}", "pad": "é" * 40} for i in range(400)]).encode()
    latin1 = '{"message": "Caf\u00e9"}'.encode("latin-1")
    store.put_raw(raw("d-big", big), 30)
    store.put_raw(raw("d-latin", latin1, T0 + timedelta(seconds=1)), 30)
    store.put_raw(raw("d-next", b"[]", T0 + timedelta(hours=9)), 30)
    # When read by day; Then each body exactly as received, with its headers
    day = {r.delivery_id: r for r in store.raw_deliveries("2026-11-26")}
    assert {k: v.body for k, v in day.items()} == {"d-big": big, "d-latin": latin1}
    assert day["d-big"].headers == {"content-type": "application/json"}
    assert day["d-big"].received_at == T0
    assert [r.delivery_id for r in store.raw_deliveries("2026-11-27")] == ["d-next"]


def test_a_raw_body_too_large_even_compressed_keeps_its_start_and_size(store: Store) -> None:
    body = random.Random(7).randbytes(MAX_STORED_BODY + 10_000)
    assert store.put_raw(raw(body=body), 30) is False
    [kept] = store.raw_deliveries("2026-11-26")
    assert (kept.body, kept.truncated_from) == (body[:RAW_HEAD_BYTES], len(body))


def test_a_raw_delivery_known_to_be_too_large_keeps_its_start(store: Store) -> None:
    assert store.put_raw(replace(raw(body=b"x" * 5), truncated_from=2_000_000), 30) is False
    [kept] = store.raw_deliveries("2026-11-26")
    assert (kept.body, kept.truncated_from) == (b"x" * 5, 2_000_000)


def test_a_raw_delivery_is_found_by_its_reference_with_what_applying_it_found_wrong(store: Store) -> None:
    delivery = raw("d-7", b"[1, 2]")
    assert store.put_raw(delivery, 30) is True
    store.record_problems(delivery.ref, ["[0]: expected an object", "[1]: expected an object"])
    found = store.get_raw(delivery.ref)
    assert found is not None
    assert (found.body, found.problems) == (b"[1, 2]", ("[0]: expected an object", "[1]: expected an object"))
    assert store.get_raw(raw("d-8").ref) is None


# ---- operations ------------------------------------------------------------------------------------


def test_unknown_and_long_interrupted_chunks_are_listed_for_reconciliation(store: Store) -> None:
    # Given an unknown chunk, a claim in flight, and an accepted chunk
    store.finish_chunk(ChunkRecord("req-1", 1, ChunkStatus.UNKNOWN, 50, 100, reason="read timeout"))
    store.claim_chunk(ChunkRecord("req-2", 0, ChunkStatus.SENDING, 10, 0))
    store.finish_chunk(ACCEPTED)
    # When listed now; Then only the unknown one (the claim may still be sending)
    assert [(c.request_id, c.index) for c in store.unknown_chunks()] == [("req-1", 1)]
    # When listed later than any Sender runs; Then the claim too, saying what to do
    listed = store.unknown_chunks(now=utc_now() + timedelta(minutes=16))
    assert [(c.request_id, c.status) for c in listed] == [
        ("req-1", ChunkStatus.UNKNOWN),
        ("req-2", ChunkStatus.SENDING),
    ]
    assert listed[1].reason == INTERRUPTED_REASON


def test_an_accepted_chunk_is_due_for_the_sweep_once_its_whole_hour_has_passed(store: Store) -> None:
    # Given a chunk accepted now
    store.finish_chunk(ACCEPTED)
    now = utc_now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    # Then not due before the end of its hour, due after it
    assert list(store.chunks_to_sweep(hour - timedelta(days=1), hour + timedelta(minutes=59))) == []
    assert list(store.chunks_to_sweep(hour - timedelta(days=1), hour + timedelta(hours=1))) == [ACCEPTED]
    # And not due again once swept
    store.swept(ACCEPTED)
    assert list(store.chunks_to_sweep(hour - timedelta(days=1), hour + timedelta(hours=2))) == []


# ---- sends -------------------------------------------------------------------------------------------


def part(number: int, parts: int = 3, send_id: str = "fall", request_id: str | None = None) -> SendPart:
    return SendPart(
        send_id,
        number,
        parts,
        request_id or f"{send_id}-p{number:04d}",
        2,
        "api",
        (Recipient("+15551230001", "stu-1"), Recipient("+15551230002", None)),
    )


def test_a_send_reads_back_with_its_parts_in_order(store: Store) -> None:
    # Given parts 3 and 1 of a send of three, recorded in that order (a queue does not keep order)
    store.put_send_part(part(3))
    store.put_send_part(part(1))
    # When read; Then the send with the parts recorded so far, by number, recipients included
    stored = store.get_send("fall")
    assert stored is not None
    assert stored.send == SendRecord("fall", 3, "api")
    assert stored.send.created_at is not None
    assert stored.parts == (part(1), part(3))
    assert stored.parts[0].recipients[1] == Recipient("+15551230002", None)
    assert store.get_send("nope") is None


def test_a_part_recorded_again_changes_nothing_and_is_found_by_its_request(store: Store) -> None:
    store.put_send_part(part(1))
    store.put_send_part(part(1))
    stored = store.get_send("fall")
    assert stored is not None
    assert stored.parts == (part(1),)
    assert store.send_part_of("fall-p0001") == part(1)
    assert store.send_part_of("fall-p0002") is None


@pytest.mark.parametrize(
    ("again", "problem"),
    [
        (part(1, parts=4), "recorded with 3 parts"),
        (part(1, request_id="another-request"), "part 1 of send 'fall' is request 'fall-p0001'"),
    ],
)
def test_a_send_with_other_parts_conflicts(store: Store, again: SendPart, problem: str) -> None:
    # Given part 1 of 3; When another part count or another request claims part 1; Then a conflict
    store.put_send_part(part(1))
    with pytest.raises(SendConflict, match=problem):
        store.put_send_part(again)
    assert isinstance(SendConflict("x"), RequestConflict)
    stored = store.get_send("fall")
    assert stored is not None
    assert (stored.send.parts, stored.parts) == (3, (part(1),))


def test_recent_sends_page_newest_first(store: Store) -> None:
    # Given five sends, one after the other
    for n in range(5):
        store.put_send_part(part(1, parts=1, send_id=f"send-{n}"))
    # When listed two at a time, following `next`
    pages = [store.recent_sends(2)]
    while pages[-1].next:
        pages.append(store.recent_sends(2, pages[-1].next))
    # Then every send once, newest first, and no `next` after the last page
    assert [[s.send_id for s in p.sends] for p in pages] == [
        ["send-4", "send-3"],
        ["send-2", "send-1"],
        ["send-0"],
    ]
    assert store.recent_sends(10).next is None


def test_recent_sends_span_months_and_stop_at_the_retention(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given sends created in January, in the previous December and 14 months before: store clocks set
    def created_at(instant: datetime, send_id: str) -> None:
        monkeypatch.setattr(dynamodb, "utc_now", lambda: instant)
        if isinstance(store, MemoryStore):
            store.clock = lambda: instant
        store.put_send_part(part(1, parts=1, send_id=send_id))

    created_at(datetime(2025, 11, 3, tzinfo=UTC), "too-old")
    created_at(datetime(2026, 12, 30, tzinfo=UTC), "december")
    created_at(datetime(2027, 1, 2, tzinfo=UTC), "january")
    # When listed on 2027-01-05 (400 days of retention), one per page
    created_at(datetime(2027, 1, 5, tzinfo=UTC), "today")
    first = store.recent_sends(2)
    second = store.recent_sends(2, first.next)
    # Then across the month boundary, newest first; the send older than the retention is not listed
    assert [s.send_id for s in first.sends + second.sends] == ["today", "january", "december"]
    assert second.next is None


# ---- sends made later ------------------------------------------------------------------------------


def scheduled(request_id: str = "later-1") -> BatchRecord:
    schedule = Schedule(
        ScheduleStatus.SCHEDULED, "2026-11-27T15:00:00.000000Z", "sendAt", '{"requestId": "x"}'
    )
    return BatchRecord(request_id, "hash-1", 3, 1, "api", (), schedule)


def test_a_scheduled_batch_keeps_its_request_and_reads_back(store: Store) -> None:
    # Given / When a batch to be sent later is stored
    store.put_batch(scheduled())
    found = store.get_batch("later-1")

    # Then it reads back scheduled, with the request to send at its time
    assert found is not None
    assert found.batch.schedule is not None
    assert found.batch.schedule.status is ScheduleStatus.SCHEDULED
    assert found.batch.schedule.request == '{"requestId": "x"}'


def test_a_schedule_ends_once_first_writer_wins(store: Store) -> None:
    # Given a scheduled batch
    store.put_batch(scheduled())

    # When it is started (leaving out message 1), then cancelled
    started = store.end_schedule("later-1", ScheduleStatus.STARTED, (1,))
    cancelled = store.end_schedule("later-1", ScheduleStatus.CANCELLED)

    # Then the start stands, with what it left out; the cancel finds it started
    assert started is not None
    assert started.schedule is not None
    assert (started.schedule.status, started.suppressed) == (ScheduleStatus.STARTED, (1,))
    assert cancelled is not None
    assert cancelled.schedule is not None
    assert cancelled.schedule.status is ScheduleStatus.STARTED
    # And a batch sent at once, or none at all, is no schedule to end
    store.put_batch(BatchRecord("now-1", "hash-2", 1, 1, "api"))
    at_once = store.end_schedule("now-1", ScheduleStatus.CANCELLED)
    assert at_once is not None
    assert at_once.schedule is None
    assert store.end_schedule("nobody", ScheduleStatus.CANCELLED) is None


# ---- suppression -----------------------------------------------------------------------------------


def suppression(number: str, source: SuppressionSource, at: str) -> Suppression:
    return Suppression(number, source, at, reason="test")


def test_a_newer_callback_replaces_an_older_one_never_the_reverse(store: Store) -> None:
    # Given a suppression by a callback at 16:00
    number = "+15551230001"
    assert store.suppress(suppression(number, SuppressionSource.OPTED_OUT, "2026-11-26T16:00:00Z"))

    # When an older callback comes late, then a newer one
    older = store.suppress(suppression(number, SuppressionSource.REPLY, "2026-11-26T15:00:00Z"))
    newer = store.suppress(suppression(number, SuppressionSource.REPLY, "2026-11-26T17:00:00Z"))

    # Then only the newer one replaced it
    assert (older, newer) == (False, True)
    assert store.suppressions([number])[number].source is SuppressionSource.REPLY


def test_an_operators_suppression_stands_against_callbacks(store: Store) -> None:
    # Given a number an operator suppressed
    number = "+15551230002"
    store.suppress(suppression(number, SuppressionSource.OPERATOR, "2026-11-26T16:00:00Z"))

    # When a newer callback suppresses it, and a newer opt-in would lift it
    assert not store.suppress(suppression(number, SuppressionSource.OPTED_OUT, "2026-11-27T16:00:00Z"))
    assert not store.lift_suppression(number, "2026-11-27T16:00:00Z")

    # Then the operator's stands, until an operator lifts it
    assert store.suppressions([number])[number].source is SuppressionSource.OPERATOR
    assert store.lift_suppression(number)
    assert store.suppressions([number]) == {}
    assert not store.lift_suppression(number)


def test_an_opt_in_lifts_only_an_older_callbacks_suppression(store: Store) -> None:
    # Given a suppression by a STOP at 16:00
    number = "+15551230003"
    store.suppress(suppression(number, SuppressionSource.REPLY, "2026-11-26T16:00:00Z"))

    # When an opt-in from before it, then one after it
    # Then only the later lifts it
    assert not store.lift_suppression(number, "2026-11-26T15:59:00Z")
    assert store.lift_suppression(number, "2026-11-26T16:01:00Z")
    assert store.suppressions([number]) == {}


def test_suppressed_numbers_are_read_many_at_once_and_listed_in_pages(store: Store) -> None:
    # Given five suppressed numbers
    numbers = [f"+1555123{n:04d}" for n in range(10, 15)]
    for number in numbers:
        store.suppress(suppression(number, SuppressionSource.OPERATOR, "2026-11-26T16:00:00Z"))

    # When read for some, and listed two at a time
    found = store.suppressions([numbers[0], "+15559999999", numbers[4]])
    pages, after = [], None
    while True:
        page = store.list_suppressions(2, after)
        pages.append([s.number for s in page.suppressions])
        if page.next is None:
            break
        after = page.next

    # Then only the suppressed ones are found, and every number is listed once in order
    assert sorted(found) == [numbers[0], numbers[4]]
    assert [n for p in pages for n in p] == numbers
    assert max(len(p) for p in pages) == 2


# ---- replies ---------------------------------------------------------------------------------------


def reply_event(event_id: str, sender: str, minutes: int) -> EventRecord:
    return event(
        {
            "name": "IncomingSms.received",
            "eventId": event_id,
            "from": sender,
            "to": "+15550000000",
            "text": f"reply {event_id}",
            "dateTime": (T0 + timedelta(minutes=minutes)).isoformat(),
        }
    )


def test_replies_are_listed_oldest_first_in_pages_since_a_time(store: Store) -> None:
    # Given five replies stored
    for n in range(5):
        assert store.put_event(reply_event(f"in-{n}", "+15551230020", n)) is not EventWrite.DUPLICATE

    # When listed two at a time since before them
    texts, after = [], None
    while True:
        page = store.inbound(T0 - timedelta(days=1), 2, after)
        texts += [e.inbound.text for e in page.events if e.inbound]
        if page.next is None:
            break
        after = page.next

    # Then each is listed once, in the order stored
    assert texts == [f"reply in-{n}" for n in range(5)]
    # And none is listed since a time after they were stored
    assert store.inbound(utc_now() + timedelta(days=2), 10).events == ()


def test_the_last_message_sent_to_a_number_is_found(store: Store) -> None:
    # Given messages accepted for two numbers
    store.put_messages([message(0), message(1)])

    # When asked for the last sent to one of them before now, and before they were sent
    found = store.last_sent_to(message(1).to, iso(utc_now() + timedelta(seconds=1)))
    none = store.last_sent_to(message(1).to, "2000-01-01T00:00:00.000000Z")

    # Then that message, with its request and ref; nothing before
    assert found is not None
    assert (found.message_id, found.request_id, found.ref) == ("m-1", "req-1", "ref-1")
    assert none is None
