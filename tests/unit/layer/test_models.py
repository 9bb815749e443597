"""Our public request model: every rule of the README's "The API" section, one problem per bad field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from ocelot_sms.contract import MAX_MESSAGE_CHARS
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import InvalidRequest
from ocelot_sms.models import (
    BatchRequest,
    BatchResult,
    ChunkOutcome,
    MessageResult,
    Problem,
    problems_from,
)
from tests.events import load_event
from tests.unit.support.ocelot import batch, outgoing


def problems(payload: Any, max_messages: int | None = None) -> list[Problem]:
    """The problems a payload is refused with (fails the test when it is accepted)."""
    context = {"max_messages": max_messages} if max_messages is not None else None
    with pytest.raises(ValidationError) as caught:
        BatchRequest.model_validate(payload, context=context)
    return problems_from(caught.value)


def fields(found: list[Problem]) -> list[str]:
    return [p.field for p in found]


def test_a_complete_request_is_read_with_our_public_names() -> None:
    # Given a body using every public field
    body = batch("req-1", 2, dryRun=True)

    # When it is validated
    request = BatchRequest.model_validate(body, context={"max_messages": 10})

    # Then each field lands where the sender reads it
    assert request.request_id == "req-1"
    assert request.sender == "+15550000000"
    assert request.operator_id == "operator-1"
    assert request.dry_run is True
    assert [(m.to, m.text, m.ref) for m in request.messages] == [
        (outgoing(i)["to"], outgoing(i)["text"], outgoing(i)["ref"]) for i in range(2)
    ]


def test_from_operator_ref_and_dry_run_are_optional() -> None:
    # Given only the required fields
    body = {"requestId": "r", "messages": [{"to": "+15551230001", "text": "hi"}]}

    # When validated
    request = BatchRequest.model_validate(body)

    # Then the optional ones are empty (defaults are applied later, from configuration)
    assert (request.sender, request.operator_id, request.dry_run, request.messages[0].ref) == (
        None,
        None,
        False,
        None,
    )


@pytest.mark.parametrize("number", ["+15551234567", "+4915123456789", "+1234567", "+123456789012345"])
def test_e164_numbers_are_accepted(number: str) -> None:
    # Given a valid E.164 number as recipient and as sender; When validated; Then both are kept
    request = BatchRequest.model_validate(
        batch("r", 1, **{"from": number}) | {"messages": [outgoing(0, to=number)]}
    )
    assert (request.sender, request.messages[0].to) == (number, number)


@pytest.mark.parametrize(
    "number",
    [
        "15551234567",  # no "+"
        "+05551234567",  # country code cannot start with 0
        "+123456",  # too short
        "+1234567890123456",  # too long (16 digits)
        "+1 555 123 4567",  # spaces
        "+1555123456a",
        "",
    ],
)
def test_non_e164_numbers_are_a_problem_of_that_field(number: str) -> None:
    # Given a bad number in the second message and in "from"
    body = batch("r", 2, **{"from": number})
    body["messages"][1]["to"] = number

    # When validated
    found = problems(body)

    # Then each bad number is reported once, at its own path
    assert fields(found) == ["from", "messages.1.to"]
    assert all("pattern" in p.message for p in found)


@pytest.mark.parametrize(
    "number",
    [
        "+1" + "".join(chr(0xFF10 + int(d)) for d in "5551230001"),  # fullwidth digits
        "+1" + "".join(chr(0x0660 + int(d)) for d in "5551230001"),  # Arabic-Indic digits
        "+1555123000" + chr(0x0967),  # one Devanagari digit
        "+1555123000\n",  # a trailing newline
    ],
    ids=["fullwidth", "arabic-indic", "devanagari", "newline"],
)
def test_only_ascii_digits_make_an_e164_number(number: str) -> None:
    # Given digits other than 0-9 (regex engines may read them as digits)
    body = batch("r", 1, **{"from": number})
    body["messages"][0]["to"] = number

    # When validated; Then both numbers are refused
    assert fields(problems(body)) == ["from", "messages.0.to"]


@pytest.mark.parametrize(
    "text", ["x", "x" * MAX_MESSAGE_CHARS, "é" * MAX_MESSAGE_CHARS, "🎓" * MAX_MESSAGE_CHARS]
)
def test_texts_of_1_to_2000_characters_are_accepted(text: str) -> None:
    # Given a text at a boundary (characters, not bytes); When validated; Then it is kept whole
    request = BatchRequest.model_validate(batch("r", 1) | {"messages": [outgoing(0, text=text)]})
    assert request.messages[0].text == text


@pytest.mark.parametrize(("text", "expected"), [("", "at least 1 character"), ("x" * 2001, "at most 2000")])
def test_an_empty_or_too_long_text_is_a_problem(text: str, expected: str) -> None:
    # Given one bad text among good ones
    body = batch("r", 3)
    body["messages"][2]["text"] = text

    # When validated
    found = problems(body)

    # Then the problem names the message and the limit
    assert fields(found) == ["messages.2.text"]
    assert expected in found[0].message


def test_at_least_one_message_is_required() -> None:
    # Given no messages; When validated; Then "messages" is the problem
    found = problems(batch("r", 0))
    assert fields(found) == ["messages"]
    assert "at least 1" in found[0].message


def test_up_to_the_configured_number_of_messages_is_accepted() -> None:
    # Given exactly as many messages as configured; When validated; Then all are kept
    request = BatchRequest.model_validate(batch("r", 5), context={"max_messages": 5})
    assert len(request.messages) == 5


def test_more_messages_than_configured_is_a_problem() -> None:
    # Given one message over the configured limit
    # When validated
    found = problems(batch("r", 6), max_messages=5)

    # Then the problem says the limit and the count
    assert fields(found) == ["messages"]
    assert "at most 5 messages per request, got 6" in found[0].message


def test_without_a_configured_limit_any_count_is_accepted() -> None:
    # Given no limit in the validation context; When validated; Then a large batch passes
    assert len(BatchRequest.model_validate(batch("r", 1500)).messages) == 1500


def test_a_repeated_ref_is_a_problem_naming_both_messages() -> None:
    # Given message 3 reusing message 1's ref
    body = batch("r", 4)
    body["messages"][3]["ref"] = body["messages"][1]["ref"]

    # When validated
    found = problems(body)

    # Then the problem points at both positions
    assert fields(found) == ["messages"]
    assert "messages.3.ref 'ref-1' repeats messages.1.ref" in found[0].message


def test_messages_without_ref_are_not_duplicates_of_each_other() -> None:
    # Given several messages without a ref; When validated; Then they are all accepted
    body = batch("r", 1) | {
        "messages": [{"to": "+15551230001", "text": "a"}, {"to": "+15551230001", "text": "a"}]
    }
    assert len(BatchRequest.model_validate(body).messages) == 2


@pytest.mark.parametrize("request_id", ["a", "fall-2026_11.26:batch-1", "A" * 128])
def test_request_ids_matching_the_pattern_are_accepted(request_id: str) -> None:
    # Given a requestId within [A-Za-z0-9._:-]{1,128}; When validated; Then it is kept
    assert BatchRequest.model_validate(batch(request_id, 1)).request_id == request_id


@pytest.mark.parametrize("request_id", ["", "has space", "A" * 129, "a/b", "ünïcode", "semi;colon"])
def test_request_ids_outside_the_pattern_are_a_problem(request_id: str) -> None:
    # Given a requestId outside the pattern; When validated; Then it is the one problem
    found = problems(batch(request_id, 1))
    assert fields(found) == ["requestId"]


def test_a_missing_request_id_is_a_problem() -> None:
    # Given no requestId; When validated; Then it is required
    body = batch("r", 1)
    del body["requestId"]
    found = problems(body)
    assert [(p.field, p.message) for p in found] == [("requestId", "Field required")]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"priority": "high"}, "priority"),
        # Python-side names are not part of the public API either.
        ({"request_id": "x"}, "request_id"),
        ({"dry_run": True}, "dry_run"),
        ({"sender": "+15551230001"}, "sender"),
        ({"operator_id": "operator-2"}, "operator_id"),
    ],
)
def test_unknown_top_level_fields_are_rejected(extra: dict[str, Any], field: str) -> None:
    # Given an otherwise valid body with one field we do not define
    # When validated
    found = problems(batch("r", 1) | extra)

    # Then that field is named as not permitted
    assert [(p.field, p.message) for p in found] == [(field, "Extra inputs are not permitted")]


def test_unknown_message_fields_are_rejected() -> None:
    # Given a message with a field we do not define; When validated; Then it is named, with its path
    body = batch("r", 2)
    body["messages"][1]["mediaUrl"] = "https://example.invalid/x.png"
    found = problems(body)
    assert [(p.field, p.message) for p in found] == [
        ("messages.1.mediaUrl", "Extra inputs are not permitted")
    ]


def test_every_bad_field_of_the_invalid_example_event_is_reported() -> None:
    # Given the body of events/api_post_batch_invalid.json
    body = json.loads(load_event("api_post_batch_invalid")["body"])

    # When validated
    found = problems(body)

    # Then there is exactly one problem per bad field
    assert sorted(fields(found)) == sorted(
        ["requestId", "messages.0.to", "messages.0.text", "messages.1.text"]
    )
    assert all(p.message for p in found)


@pytest.mark.parametrize("payload", [[], "text", 42, None])
def test_a_body_that_is_not_an_object_is_one_body_problem(payload: Any) -> None:
    # Given JSON that is not an object; When validated; Then one problem, on "body"
    found = problems(payload)
    assert fields(found) == ["body"]


def test_invalid_request_message_lists_each_problem() -> None:
    # Given two problems; When wrapped; Then the text names both and keeps the list
    error = InvalidRequest([Problem(field="from", message="bad"), Problem(field="messages", message="empty")])
    assert str(error) == "from: bad; messages: empty"
    assert fields(error.problems) == ["from", "messages"]


def test_batch_result_json_uses_the_public_names() -> None:
    # Given a result built in Python
    result = BatchResult(
        request_id="r",
        status="accepted",
        batch_ids=["b-1"],
        chunks=[ChunkOutcome(index=0, status="accepted", batch_id="b-1", size=1)],
        messages=[
            MessageResult(
                index=0, ref="a", to="+15551230001", message_id="m-1", status=DeliveryStatus.ACCEPTED
            )
        ],
    )

    # When serialised
    body = result.to_json()

    # Then the names are the API's (camelCase) and absent values are left out
    assert body == {
        "requestId": "r",
        "status": "accepted",
        "dryRun": False,
        "batchIds": ["b-1"],
        "chunks": [{"index": 0, "status": "accepted", "batchId": "b-1", "size": 1}],
        "messages": [
            {"index": 0, "ref": "a", "to": "+15551230001", "messageId": "m-1", "status": "accepted"}
        ],
    }


# ---- the send a batch is a part of -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"sendId": "fall"}, "sendId, part and parts go together"),
        ({"part": 1, "parts": 2}, "sendId, part and parts go together"),
        ({"sendId": "fall", "part": 3, "parts": 2}, "part 3 is beyond parts 2"),
        ({"sendId": "fall", "part": 0, "parts": 2}, "greater than or equal to 1"),
        ({"sendId": "fall", "part": 1, "parts": 10_001}, "less than or equal to 10000"),
        ({"sendId": "no spaces", "part": 1, "parts": 1}, "should match pattern"),
    ],
)
def test_send_fields_are_refused_unless_complete_and_in_range(fields: dict[str, Any], problem: str) -> None:
    [found] = problems(batch("r", 1, **fields))
    assert problem in found.message


def test_a_batch_without_send_fields_is_a_send_of_its_own() -> None:
    assert BatchRequest.model_validate(batch("r", 1)).send == ("r", 1, 1)
    named = BatchRequest.model_validate(batch("r-p2", 1, sendId="r", part=2, parts=3))
    assert named.send == ("r", 2, 3)
    part = named.send_part("api")
    assert (part.send_id, part.part, part.parts, part.request_id, part.message_count) == (
        "r",
        2,
        3,
        "r-p2",
        1,
    )
