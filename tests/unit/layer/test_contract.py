"""The assumed Ocelot contract: callback parsing, tolerant enums, instants, error bodies, send models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ocelot_sms.contract import (
    WIRE_STATUS_NAMES,
    AcceptedMessage,
    CallbackError,
    CallbackEvent,
    CallbackItems,
    ErrorBody,
    EventName,
    SendMessage,
    SendRequest,
    SendResponse,
    error_body,
    parse_error_body,
    parse_instant,
    parse_status,
    read_callback,
    status_event,
    token,
    validation_problems,
)
from ocelot_sms.delivery import TERMINAL_STATUSES, DeliveryStatus


def item(event_id: Any = "evt-1", **fields: Any) -> dict[str, Any]:
    return {"eventId": event_id, "name": "OutgoingSms.statusChanged", **fields}


# ---- read_callback: the shapes a delivery can take ---------------------------------------------


def read(payload: Any) -> CallbackItems:
    return read_callback(json.dumps(payload).encode())


def test_a_single_object_is_one_event() -> None:
    # Given one event object; When read; Then one event with its fields read by alias
    [event] = read(item(messageId="m-1", status="sent", dateTime="2026-11-26T16:00:05Z")).events
    assert (event.event_id, event.message_id, event.status) == ("evt-1", "m-1", "sent")


def test_an_array_keeps_every_item_in_order() -> None:
    # Given an array of three events; When read; Then three events, in the array's order
    items = read([item("a"), item("b"), {"eventId": "c", "name": "IncomingSms.received"}])
    assert ([e.event_id for e in items.events], items.problems) == (["a", "b", "c"], [])


@pytest.mark.parametrize("payload", [[], "text", 42, None, True])
def test_a_body_that_is_neither_an_object_nor_a_non_empty_array_is_refused_whole(payload: Any) -> None:
    with pytest.raises(CallbackError) as caught:
        read(payload)
    assert caught.value.problems == ["body: expected an event object or a non-empty array of events"]


@pytest.mark.parametrize("body", [b"", b'{"eventId": "e-1", "status":', b"\xff\xfe garbage", b"[" * 200_000])
def test_a_body_that_is_not_json_is_refused_whole(body: bytes) -> None:
    with pytest.raises(CallbackError) as caught:
        read_callback(body)
    assert caught.value.problems == ["body: not valid JSON"]
    assert str(caught.value) == "body: not valid JSON"


@pytest.mark.parametrize("bad", ["text", 42, None, [1]])
def test_an_item_that_is_not_an_object_is_a_problem_and_the_others_are_events(bad: Any) -> None:
    items = read([item("a"), bad, item("c")])
    assert ([e.event_id for e in items.events], items.problems) == (["a", "c"], ["[1]: expected an object"])


@pytest.mark.parametrize("event_id", [None, "", 1.5, True, {"id": 1}])
def test_an_item_without_a_usable_event_id_is_a_problem_named_by_its_path(event_id: Any) -> None:
    payload: dict[str, Any] = {"name": "OutgoingSms.statusChanged", "status": "sent"}
    if event_id is not None:
        payload["eventId"] = event_id
    items = read([item("ok"), payload])
    assert [e.event_id for e in items.events] == ["ok"]
    assert items.problems
    assert all(p.startswith("[1].eventId") for p in items.problems), items.problems


def test_every_bad_item_is_reported_not_just_the_first() -> None:
    items = read([{"status": "x"}, item("ok"), 7])
    assert [p.split(".")[0].split(":")[0] for p in items.problems] == ["[0]", "[2]"]
    assert [e.event_id for e in items.events] == ["ok"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_make_their_item_a_problem(literal: str) -> None:
    body = f'[{{"eventId": "a", "errorCode": {literal}}}, {{"eventId": "b", "nested": [{{"x": 1}}]}}]'
    items = read_callback(body.encode())
    assert ([e.event_id for e in items.events], items.problems) == (
        ["b"],
        ["[0]: NaN and Infinity are not JSON numbers"],
    )


def test_an_integer_event_id_is_read_as_text() -> None:
    # Given eventId 12345 (a number); When read; Then "12345"
    [event] = read(item(12345)).events
    assert event.event_id == "12345"


def test_fields_of_an_unexpected_type_read_as_absent_but_the_item_is_kept_verbatim() -> None:
    # Given known fields of odd types, numbers, nulls and unknown fields
    raw = item(
        "evt-odd",
        status={"code": "DELIVERED"},
        messageId=987,
        errorCode=30005,
        to=True,
        dateTime=None,
        carrier={"name": "T-Mobile", "mcc": 310},
        note=None,
    )
    # When read
    [event] = read(raw).events
    # Then the typed view is lenient: numbers become text, other types read as absent
    assert (event.status, event.message_id, event.error_code, event.to) == (None, "987", "30005", None)
    # And unknown fields are kept on the model and in the wire form
    assert event.model_extra == {"carrier": {"name": "T-Mobile", "mcc": 310}, "note": None}
    assert event.to_wire()["carrier"] == {"name": "T-Mobile", "mcc": 310}
    # And `raw` is the item exactly as received (odd types and nulls included)
    assert event.raw == raw


def test_a_built_event_has_its_wire_form_as_raw() -> None:
    # Given an event built in code (not parsed); Then raw is its wire form
    event = CallbackEvent(event_id="e", status="sent")
    assert event.raw == {"eventId": "e", "status": "sent"}


def test_an_overlong_message_id_is_a_problem() -> None:
    # Given a messageId beyond 256 characters (it becomes part of a DynamoDB key)
    [problem] = read(item(messageId="m" * 257)).problems
    assert problem.startswith("[0].messageId")


# ---- tolerant enums ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("OptedOut", "optedout"),
        ("opted-out", "optedout"),
        ("OPTED_OUT", "optedout"),
        (" Opted Out ", "optedout"),
        ("OutgoingSms.statusChanged", "outgoingsmsstatuschanged"),
        ("OUTGOINGSMS.STATUSCHANGED", "outgoingsmsstatuschanged"),
        ("sms2Go", "sms2go"),
    ],
)
def test_a_token_is_letters_and_digits_case_folded(value: str, expected: str) -> None:
    assert token(value) == expected


SEPARATORS = st.sampled_from(["", "_", "-", " ", ".", "__"])


def spelled(value: str, data: st.DataObject) -> str:
    """`value` as another API might spell it: any letter's case changed, separators anywhere."""
    words = [w for w in value.replace(".", "_").split("_") if w]
    out = []
    for word in words:
        out.append("".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in word))
    return data.draw(SEPARATORS).join(out) if len(out) > 1 else out[0] + data.draw(SEPARATORS)


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from(sorted(WIRE_STATUS_NAMES.values())), data=st.data())
def test_every_status_is_read_whatever_its_casing_and_separators(
    status: DeliveryStatus, data: st.DataObject
) -> None:
    assert parse_status(spelled(status.value, data)) is status


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_status_event_name_is_read_whatever_its_casing_and_separators(data: st.DataObject) -> None:
    name = spelled("Outgoing_Sms.status_Changed", data)
    assert CallbackEvent(event_id="e", name=name, status="sent").is_status_change, name


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("delivered", DeliveryStatus.DELIVERED),
        ("Delivered", DeliveryStatus.DELIVERED),
        ("DELIVERED", DeliveryStatus.DELIVERED),
        ("OPTED_OUT", DeliveryStatus.OPTED_OUT),
        ("optedOut", DeliveryStatus.OPTED_OUT),
        ("Opted-Out", DeliveryStatus.OPTED_OUT),
        ("Undelivered", DeliveryStatus.UNDELIVERED),
        ("FAILED", DeliveryStatus.FAILED),
        ("Queued", DeliveryStatus.QUEUED),
        ("sent ", DeliveryStatus.SENT),
    ],
)
def test_parse_status_is_tolerant_of_casing_and_separators(value: str, status: DeliveryStatus) -> None:
    assert parse_status(value) is status


@pytest.mark.parametrize("value", ["accepted", "unknown", "pending", "", "deliver"])
def test_parse_status_refuses_our_own_and_unknown_statuses(value: str) -> None:
    # Given a status Ocelot never sends (ours: accepted/unknown) or does not exist; Then None
    assert parse_status(value) is None


def test_status_sets() -> None:
    # Terminal: the four final outcomes; wire statuses: everything but our own two
    assert {s.value for s in TERMINAL_STATUSES} == {"delivered", "undelivered", "failed", "opted_out"}
    assert DeliveryStatus.ACCEPTED not in WIRE_STATUS_NAMES.values()
    assert DeliveryStatus.UNKNOWN not in WIRE_STATUS_NAMES.values()
    assert DeliveryStatus.DELIVERED.is_terminal
    assert not DeliveryStatus.SENT.is_terminal
    assert DeliveryStatus.QUEUED.rank < DeliveryStatus.SENT.rank < DeliveryStatus.DELIVERED.rank


@pytest.mark.parametrize(
    ("name", "is_status"),
    [
        ("OutgoingSms.statusChanged", True),
        ("outgoingSms.StatusChanged", True),
        ("outgoing_sms.status_changed", True),
        ("IncomingSms.received", False),
        (None, False),
    ],
)
def test_status_change_events_are_recognised_tolerantly(name: str | None, is_status: bool) -> None:
    event = CallbackEvent(event_id="e", name=name, status="Delivered")
    assert event.is_status_change is is_status
    assert event.delivery_status is DeliveryStatus.DELIVERED


def test_an_event_without_status_has_no_delivery_status() -> None:
    assert CallbackEvent(event_id="e").delivery_status is None


# ---- instants ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-26T16:00:05Z", datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC)),
        ("2026-11-26T16:00:05z", datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC)),
        ("2026-11-26T11:00:09-05:00", datetime(2026, 11, 26, 16, 0, 9, tzinfo=UTC)),
        ("2026-11-26T16:00:05.123456+00:00", datetime(2026, 11, 26, 16, 0, 5, 123456, tzinfo=UTC)),
        (" 2026-11-26T16:00:05 ", datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC)),  # naive: UTC
    ],
)
def test_parse_instant(value: str, expected: datetime) -> None:
    parsed = parse_instant(value)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_offsets_are_compared_as_instants() -> None:
    # 11:00:09 at UTC-5 is 16:00:09Z: later than 16:00:05Z, though it sorts earlier as text
    assert parse_instant("2026-11-26T11:00:09-05:00") > parse_instant("2026-11-26T16:00:05Z")


def test_a_naive_time_keeps_its_clock_reading_as_utc() -> None:
    parsed = parse_instant("2026-11-26T16:00:05")
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.hour == 16


@pytest.mark.parametrize("value", ["yesterday", "", "2026-13-01T00:00:00Z", "16:00"])
def test_parse_instant_refuses_what_is_not_iso(value: str) -> None:
    with pytest.raises(ValueError, match=r"isoformat|must be in"):
        parse_instant(value)


@pytest.mark.parametrize(
    "value",
    [None, "", "yesterday", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"],
)
def test_event_instant_is_none_when_missing_invalid_or_out_of_range(value: str | None) -> None:
    # Given a missing, invalid, or valid-but-unrepresentable-in-UTC dateTime; Then no instant, no crash
    assert CallbackEvent(event_id="e", date_time=value).instant is None


def test_event_instant_keeps_the_offset_instant() -> None:
    instant = CallbackEvent(event_id="e", date_time="2026-11-26T11:00:09-05:00").instant
    assert instant == datetime(2026, 11, 26, 16, 0, 9, tzinfo=UTC)


# ---- error bodies -----------------------------------------------------------------------------


def test_parse_error_body_reads_nestjs_errors() -> None:
    # Given Ocelot's documented 401 body; Then its fields, and one problem
    body = parse_error_body(
        401, {"statusCode": 401, "message": "Invalid id or api key", "error": "Unauthorized"}
    )
    assert (body.status_code, body.error, body.problems) == (401, "Unauthorized", ["Invalid id or api key"])


def test_parse_error_body_reads_validation_lists() -> None:
    body = parse_error_body(400, {"statusCode": 400, "message": ["a is bad", "b is bad"]})
    assert body.problems == ["a is bad", "b is bad"]
    assert body.error is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
        ({"unexpected": True}, "{'unexpected': True}"),
        (None, "None"),
        ("x" * 600, "x" * 500),
    ],
)
def test_parse_error_body_falls_back_on_other_bodies(payload: Any, message: str) -> None:
    # Given a body that is not the documented shape (a proxy's page, JSON of another shape, nothing)
    body = parse_error_body(502, payload)
    # Then a stand-in with the HTTP status, the text (cut to 500 characters) and a clear error
    assert (body.status_code, body.message, body.error) == (502, message, "Unexpected response")


def test_error_body_builds_the_wire_shape() -> None:
    assert error_body(400, ["x"], "Bad Request") == {
        "statusCode": 400,
        "message": ["x"],
        "error": "Bad Request",
    }
    assert ErrorBody(status_code=500, message="m").to_wire() == {"statusCode": 500, "message": "m"}


def test_validation_problems_name_the_path() -> None:
    with pytest.raises(ValidationError) as caught:
        SendRequest.model_validate({"phoneNumber": "123", "operatorId": "op", "messages": []})
    problems = validation_problems(caught.value)
    assert any(p.startswith("phoneNumber: ") for p in problems)
    assert any(p.startswith("messages: ") for p in problems)


# ---- status_event builder ---------------------------------------------------------------------


def test_status_event_round_trips_through_read_callback() -> None:
    # Given a callback item built by the sandbox helper, with a non-UTC time and an error
    at = datetime(2026, 11, 26, 11, 0, 9, tzinfo=timezone(timedelta(hours=-5)))
    wire = status_event(
        event_id="evt-9",
        batch_id="b-1",
        message_id="m-1",
        to="+15551230010",
        sender="+15550000000",
        status=DeliveryStatus.UNDELIVERED,
        at=at,
        error_code="30005",
        error_message="Unknown destination",
    )
    # Then it uses Ocelot's names
    assert wire["name"] == EventName.STATUS_CHANGED.value
    assert {"eventId", "batchId", "messageId", "from", "dateTime", "errorCode", "errorMessage"} <= set(wire)
    # When read back; Then every field means the same
    [event] = read(wire).events
    assert event.is_status_change
    assert event.delivery_status is DeliveryStatus.UNDELIVERED
    assert event.instant == at
    assert (event.event_id, event.batch_id, event.message_id) == ("evt-9", "b-1", "m-1")
    assert (event.to, event.sender) == ("+15551230010", "+15550000000")
    assert (event.error_code, event.error_message) == ("30005", "Unknown destination")


def test_status_event_leaves_out_absent_errors() -> None:
    wire = status_event(
        event_id="e",
        batch_id="b",
        message_id="m",
        to="+15551230010",
        sender="+15550000000",
        status=DeliveryStatus.SENT,
        at=datetime(2026, 11, 26, tzinfo=UTC),
    )
    assert "errorCode" not in wire
    assert "errorMessage" not in wire


# ---- send request and response ----------------------------------------------------------------


def test_send_request_comes_out_by_wire_names() -> None:
    # Given a request built with Python names
    request = SendRequest(
        sender="+15550000000",
        operator_id="op-1",
        messages=[SendMessage(to="+15551230010", text="Hello", external_id="ref-1")],
    )
    # When put on the wire; Then Ocelot's names, and no Python names
    assert request.to_wire() == {
        "phoneNumber": "+15550000000",
        "operatorId": "op-1",
        "messages": [{"to": "+15551230010", "message": "Hello", "externalId": "ref-1"}],
    }


def test_send_request_accepts_wire_names_and_refuses_unknown_fields() -> None:
    wire = {
        "phoneNumber": "+15550000000",
        "operatorId": "op-1",
        "messages": [{"to": "+15551230010", "message": "x"}],
    }
    assert SendRequest.model_validate(wire).messages[0].text == "x"
    with pytest.raises(ValidationError):
        SendRequest.model_validate({**wire, "surprise": 1})


@pytest.mark.parametrize(
    "message",
    [
        {"to": "15551230010", "message": "x"},
        {"to": "+15551230010", "message": ""},
        {"to": "+1555", "message": "x"},
    ],
)
def test_send_message_validates_number_and_text(message: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SendMessage.model_validate(message)


def test_send_message_text_is_at_most_2000_characters() -> None:
    assert SendMessage(to="+15551230010", text="x" * 2000).text
    with pytest.raises(ValidationError):
        SendMessage(to="+15551230010", text="x" * 2001)


def test_send_response_reads_wire_names_and_keeps_unknown_fields() -> None:
    # Given Ocelot's success body with a field we do not know
    response = SendResponse.model_validate(
        {"batchId": "b-1", "messages": [{"id": "m-1", "to": "+15551230010", "externalId": "r-1"}], "extra": 1}
    )
    # Then the ids are read by alias, and the unknown field survives a round trip
    assert response.batch_id == "b-1"
    assert response.messages[0] == AcceptedMessage(message_id="m-1", to="+15551230010", external_id="r-1")
    assert response.to_wire() == {
        "batchId": "b-1",
        "messages": [{"id": "m-1", "to": "+15551230010", "externalId": "r-1"}],
        "extra": 1,
    }


def test_send_response_needs_a_batch_id() -> None:
    with pytest.raises(ValidationError):
        SendResponse.model_validate({"batchId": "", "messages": []})
