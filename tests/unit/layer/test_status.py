"""StatusService, the read model behind the status API: cursors and limits, rows of every kind of
chunk, a message's history. What a read costs in DynamoDB is in tests/unit/functions/test_status.py."""

from __future__ import annotations

import pytest
import requests

from ocelot_sms.errors import BadRequest, NotFound, Unavailable
from ocelot_sms.status import MAX_PAGE, StatusService, decode_cursor, encode_cursor, parse_limit
from ocelot_sms.store import BatchRecord, ChunkRecord, ChunkStatus
from tests.unit.layer.conftest import Wired
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot, accept, busy

pytestmark = pytest.mark.usefixtures("emf")


@pytest.fixture
def service(wired: Wired) -> StatusService:
    return StatusService(wired.store)


# ---- cursors and limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, 99, 10_000, 2**40])
def test_a_cursor_decodes_to_the_offset_it_was_made_from(offset: int) -> None:
    cursor = encode_cursor(offset)
    assert "=" not in cursor
    assert "/" not in cursor
    assert "+" not in cursor
    assert decode_cursor(cursor) == offset


@pytest.mark.parametrize("cursor", [None, ""])
def test_no_cursor_is_the_first_page(cursor: str | None) -> None:
    assert decode_cursor(cursor) == 0


@pytest.mark.parametrize("cursor", ["%%%", "eyJvZmZzZXQiOiB0cnVlfQ", "bnVsbA"])
def test_a_bad_cursor_is_refused(cursor: str) -> None:
    # (the last two: {"offset": true} and null)
    with pytest.raises(BadRequest, match="not one this API returned"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, 100), ("1", 1), (str(MAX_PAGE), MAX_PAGE), ("0", None), (str(MAX_PAGE + 1), None), ("ten", None)],
)
def test_limits_are_whole_numbers_from_1_to_the_maximum(limit: str | None, expected: int | None) -> None:
    if expected is not None:
        assert parse_limit(limit) == expected
    else:
        with pytest.raises(BadRequest, match=f"whole number from 1 to {MAX_PAGE}"):
            parse_limit(limit)


def test_a_bad_cursor_or_limit_is_refused_before_anything_is_read(service: StatusService) -> None:
    # Given no batch at all: a read would answer NotFound, so BadRequest shows nothing was read
    with pytest.raises(BadRequest):
        service.batch("any", cursor="%%%")
    with pytest.raises(BadRequest):
        service.batch("any", limit="0")


def test_an_unknown_batch_or_message_is_not_found(service: StatusService) -> None:
    with pytest.raises(NotFound, match="no batch 'nope'"):
        service.batch("nope")
    with pytest.raises(NotFound, match="no message 'nope'"):
        service.message("nope")


# ---- rows of a batch ------------------------------------------------------------------------------


def test_a_chunk_being_sent_counts_its_messages_as_sending(service: StatusService, wired: Wired) -> None:
    # Given a batch whose only chunk is claimed (the HTTP call in flight, or interrupted)
    wired.store.put_batch(BatchRecord("claimed", "h", 2, 1, "sqs"))
    assert (
        wired.store.claim_chunk(ChunkRecord("claimed", 0, ChunkStatus.SENDING, size=2, first_index=0)) is None
    )
    # When read; Then its messages are listed by index, as sending, with nothing else known
    batch = service.batch("claimed")
    assert batch["counts"] == {"sending": 2}
    assert [(m["index"], m["messageId"], m["status"]) for m in batch["messages"]] == [
        (0, None, "sending"),
        (1, None, "sending"),
    ]
    assert batch["unknownChunks"] == []


def test_a_batch_header_alone_lists_its_messages_as_not_sent(service: StatusService, wired: Wired) -> None:
    # Given a batch recorded, then the Lambda stopped before its first chunk was claimed
    wired.store.put_batch(BatchRecord("header-only", "h", 3, 1, "api"))
    batch = service.batch("header-only")
    assert batch["counts"] == {"not_sent": 3}
    assert batch["chunks"] == []


def test_accepted_unknown_and_untried_messages_are_one_list_in_request_order(
    service: StatusService, ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given chunks of 2, sent one after another: the first accepted, the second's answer timed out,
    # the third refused (503)
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    monkeypatch.setenv("SEND_CONCURRENCY", "1")
    ocelot.then(accept, requests.ReadTimeout("timed out"), busy(), busy(), busy())
    with pytest.raises(Unavailable):
        send("mixed", 6)
    # When read
    batch = service.batch("mixed")
    # Then every message once, by index, with the state of its chunk
    assert [(m["index"], m["status"]) for m in batch["messages"]] == [
        (0, "accepted"),
        (1, "accepted"),
        (2, "unknown"),
        (3, "unknown"),
        (4, "not_sent"),
        (5, "not_sent"),
    ]
    assert batch["counts"] == {"accepted": 2, "not_sent": 2, "unknown": 2}
    assert [c["index"] for c in batch["unknownChunks"]] == [1]


# ---- one message ------------------------------------------------------------------------------


def test_history_lists_events_without_a_time_first(service: StatusService, ocelot: FakeOcelot) -> None:
    # Given a message with a timed event and one without dateTime
    [message] = send("odd-events", 1).messages
    message_id = message.message_id or ""
    deliver(callback("t-2", message_id, "sent", "2026-11-26T16:00:02Z"), "d-1")
    untimed = callback("t-0", message_id, "queued", "")
    del untimed["dateTime"]
    deliver(untimed, "d-2")

    # When read; Then the untimed event first, each with the event as received
    found = service.message(message_id)
    assert [(e["eventId"], e["eventTime"]) for e in found["history"]] == [
        ("t-0", None),
        ("t-2", "2026-11-26T16:00:02.000000Z"),
    ]
    assert found["history"][0]["event"] == untimed
    assert (found["status"], found["requestId"], found["ref"]) == ("sent", "odd-events", "ref-0")


def test_a_message_known_only_from_callbacks_takes_its_recipient_from_the_latest_event(
    service: StatusService, wired: Wired
) -> None:
    # Given callbacks only: the later one names another number
    deliver(callback("r-1", "orphan", "queued", "2026-11-26T16:00:01Z"), "d-1")
    deliver(callback("r-2", "orphan", "sent", "2026-11-26T16:00:02Z", to="+15559999999"), "d-2")
    found = service.message("orphan")
    assert (found["to"], found["requestId"], found["status"]) == ("+15559999999", None, "sent")


def test_a_message_whose_events_name_no_recipient_has_none(service: StatusService, wired: Wired) -> None:
    event = callback("n-1", "anonymous", "sent", "2026-11-26T16:00:02Z")
    del event["to"]
    deliver(event, "d-1")
    found = service.message("anonymous")
    assert (found["to"], found["status"]) == (None, "sent")


# ---- sends ---------------------------------------------------------------------------------------


def send_part(send_id: str, part: int, parts: int, count: int, first: int = 0) -> dict[str, object]:
    """The fields that make a batch `part` of `parts` of a send (as the CLI names the parts)."""
    return {
        "sendId": send_id,
        "part": part,
        "parts": parts,
        "messages": [
            {"to": f"+1555000{i:04d}", "text": f"hi {i}", "ref": f"ref-{i}"}
            for i in range(first, first + count)
        ],
    }


def test_a_send_counts_every_part_and_lists_its_messages_in_order(
    service: StatusService, ocelot: FakeOcelot
) -> None:
    # Given parts 1 and 2 of a send of 3 (part 3 never arrived): part 2's only chunk was refused as busy
    send("fall-p0001", 2, **send_part("fall", 1, 3, 2))
    ocelot.then(busy(), busy(), busy())
    with pytest.raises(Unavailable):
        send("fall-p0002", 1, **send_part("fall", 2, 3, 1, first=2))
    first = wired_ids(service, "fall-p0001")
    deliver(callback("e-1", first[0], "delivered", "2026-11-26T16:00:05Z"), "d-1")
    # When the send is read
    view = service.send("fall")
    # Then counts over all its parts, each part with its own, the missing part named
    assert (view["sendId"], view["partCount"], view["partsRecorded"], view["missingParts"]) == (
        "fall",
        3,
        2,
        [3],
    )
    assert view["counts"] == {"accepted": 1, "delivered": 1, "not_sent": 1}
    assert [(p["part"], p["requestId"], p["counts"]) for p in view["parts"]] == [
        (1, "fall-p0001", {"accepted": 1, "delivered": 1}),
        (2, "fall-p0002", {"not_sent": 1}),
    ]
    # And every message once, in order over the parts, a message never taken with its recipient and why
    rows = view["messages"]
    assert [(m["position"], m["part"], m["index"], m["ref"]) for m in rows] == [
        (1, 1, 0, "ref-0"),
        (2, 1, 1, "ref-1"),
        (3, 2, 0, "ref-2"),
    ]
    assert (rows[2]["to"], rows[2]["status"]) == ("+15550000002", "not_sent")
    assert "503" in rows[2]["errorMessage"]
    assert view["nextCursor"] is None


def wired_ids(service: StatusService, request_id: str) -> list[str]:
    return [m["messageId"] for m in service.batch(request_id)["messages"]]


def test_a_send_pages_over_its_parts_and_limit_0_gives_counts_alone(
    service: StatusService, ocelot: FakeOcelot
) -> None:
    send("p1", 3, **send_part("paged", 1, 2, 3))
    send("p2", 2, **send_part("paged", 2, 2, 2, first=3))
    pages = [service.send("paged", limit=2)]
    while pages[-1]["nextCursor"]:
        pages.append(service.send("paged", limit=2, cursor=pages[-1]["nextCursor"]))
    assert [[m["ref"] for m in p["messages"]] for p in pages] == [
        ["ref-0", "ref-1"],
        ["ref-2", "ref-3"],
        ["ref-4"],
    ]
    counted = service.send("paged", limit=0)
    assert (counted["messages"], counted["nextCursor"], counted["counts"]) == ([], None, {"accepted": 5})
    with pytest.raises(BadRequest, match="from 0 to 500"):
        service.send("paged", limit=-1)


def test_an_unknown_send_is_not_found(service: StatusService) -> None:
    with pytest.raises(NotFound, match="no send 'nope'"):
        service.send("nope")


def test_recent_sends_list_newest_first_with_their_counts(service: StatusService, ocelot: FakeOcelot) -> None:
    # Given three sends: two of their own, one in two parts
    send("alone-1", 1)
    send("two-p1", 1, **send_part("two", 1, 2, 1))
    send("two-p2", 2, **send_part("two", 2, 2, 2, first=1))
    send("alone-2", 2)
    # When listed two at a time
    first = service.sends(limit=2)
    second = service.sends(limit="2", cursor=first["nextCursor"])
    # Then newest first, each with its parts and counts, and no cursor after the last page
    listed = [(s["sendId"], s["partCount"], s["partsRecorded"], s["messageCount"]) for s in first["sends"]]
    assert listed == [("alone-2", 1, 1, 2), ("two", 2, 2, 3)]
    assert first["sends"][1]["counts"] == {"accepted": 3}
    assert [s["sendId"] for s in second["sends"]] == ["alone-1"]
    assert second["nextCursor"] is None
    with pytest.raises(BadRequest, match="not one this API returned"):
        service.sends(cursor=encode_cursor(3))
    with pytest.raises(BadRequest, match="from 1 to 100"):
        service.sends(limit=101)
