"""The status API Lambda end to end: API Gateway (payload 2.0) events in, answers out.

Data comes from the real Sender (Ocelot on `responses`) and the real WebhookService, in moto.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from functions.status import app as status_handler
from ocelot_sms import runtime
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import Rejected
from ocelot_sms.status import MAX_PAGE, encode_cursor
from ocelot_sms.store.codec import EVENT_PAYLOAD_MAX
from tests.unit.support.aws import DynamoFaults, FakeContext
from tests.unit.support.flows import api_get, callback, deliver, indexes, send, walk_pages, with_method
from tests.unit.support.ocelot import DynamoCalls, FakeOcelot, guard_network, ocelot_mock, phone

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def ocelot(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOcelot]:
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "3")  # 7 messages: chunks of 3, 3 and 1
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)


def call(event: dict[str, Any], context: FakeContext) -> tuple[int, dict[str, Any]]:
    response = status_handler.lambda_handler(event, context)  # type: ignore[arg-type]
    assert response["headers"]["Content-Type"].startswith("application/json")
    return response["statusCode"], json.loads(response["body"])


def get_batch(
    request_id: str, context: FakeContext, query: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    return call(api_get("/batches/{requestId}", {"requestId": request_id}, query), context)


def get_message(message_id: str, context: FakeContext) -> tuple[int, dict[str, Any]]:
    return call(api_get("/messages/{messageId}", {"messageId": message_id}), context)


@dataclass
class Seeded:
    request_id: str
    ids: dict[int, str]  # request index -> Ocelot message id (accepted chunks only)


@pytest.fixture
def seeded(ocelot: FakeOcelot) -> Seeded:
    """7 messages in 3 chunks: chunk 1 timed out (unknown). Callbacks: #0 delivered, #1 sent (after
    queued), #2 failed, #6 none yet."""
    ocelot.then_for("ref-3", requests.ReadTimeout("read timed out"))
    result = send("status-1", 7)
    ids = {m.index: m.message_id for m in result.messages if m.message_id}
    assert sorted(ids) == [0, 1, 2, 6]
    assert [r.status_code for r in deliver_all(ids)] == [200, 200, 200]
    return Seeded("status-1", ids)


def deliver_all(ids: dict[int, str]) -> list[Any]:
    return [
        deliver(
            [
                callback("e-0q", ids[0], DeliveryStatus.QUEUED, "2026-11-26T16:00:01Z"),
                callback("e-0d", ids[0], DeliveryStatus.DELIVERED, "2026-11-26T16:00:09Z"),
            ],
            "d-1",
        ),
        deliver(
            [
                callback("e-1s", ids[1], "Sent", "2026-11-26T16:00:05Z"),
                callback("e-1q", ids[1], "QUEUED", "2026-11-26T16:00:02Z"),
            ],
            "d-2",
        ),
        deliver(callback("e-2f", ids[2], "failed", "2026-11-26T16:00:03Z", errorCode="30008"), "d-3"),
    ]


EXPECTED_COUNTS = {"accepted": 1, "delivered": 1, "failed": 1, "sent": 1, "unknown": 3}


# ---- GET /batches/{requestId} -------------------------------------------------------------------


def test_a_batch_has_counts_over_all_messages_chunks_and_current_statuses(
    seeded: Seeded, lambda_context: FakeContext
) -> None:
    # Given a sent batch with callbacks for some messages and a chunk with an unknown outcome
    # When the batch is read
    code, body = get_batch(seeded.request_id, lambda_context)

    # Then counts by current status cover every message, the unknown chunk is listed with its reason
    assert code == 200
    assert body["requestId"] == "status-1"
    assert body["messageCount"] == 7
    assert body["origin"] == "api"
    assert body["createdAt"]
    assert body["counts"] == EXPECTED_COUNTS
    assert [(c["index"], c["status"], c["size"], c["firstIndex"]) for c in body["chunks"]] == [
        (0, "accepted", 3, 0),
        (1, "unknown", 3, 3),
        (2, "accepted", 1, 6),
    ]
    [unknown] = body["unknownChunks"]
    assert (unknown["index"], unknown["status"], unknown["batchId"]) == (1, "unknown", None)
    assert "no response from Ocelot in time" in unknown["reason"]
    # And each message with its current status, in request order
    rows = {m["index"]: m for m in body["messages"]}
    assert [m["index"] for m in body["messages"]] == list(range(7))
    assert {i: rows[i]["status"] for i in rows} == {
        0: "delivered",
        1: "sent",
        2: "failed",
        3: "unknown",
        4: "unknown",
        5: "unknown",
        6: "accepted",
    }
    assert rows[0] == {
        "index": 0,
        "ref": "ref-0",
        "to": phone(0),
        "messageId": seeded.ids[0],
        "batchId": rows[0]["batchId"],
        "status": "delivered",
        "statusAt": "2026-11-26T16:00:09.000000Z",
        "errorCode": None,
        "errorMessage": None,
    }
    assert rows[0]["batchId"] == body["chunks"][0]["batchId"]
    assert (rows[2]["status"], rows[2]["errorCode"]) == ("failed", "30008")
    assert rows[6]["statusAt"] is None
    # A message whose chunk's outcome is unknown: its recipient and ref (from its send part) and why
    assert rows[4] == {
        "index": 4,
        "ref": "ref-4",
        "to": phone(4),
        "messageId": None,
        "batchId": None,
        "status": "unknown",
        "statusAt": None,
        "errorCode": None,
        "errorMessage": unknown["reason"],
    }
    # And the batch is the one part of a send of its own
    assert body["send"] == {"sendId": "status-1", "part": 1, "parts": 1}
    assert body["nextCursor"] is None
    assert Counter(m["status"] for m in body["messages"]) == Counter(body["counts"])


def test_counts_follow_later_callbacks(seeded: Seeded, lambda_context: FakeContext) -> None:
    # Given the batch above; When #6 is delivered and #1 finally undelivered
    deliver(
        [
            callback("e-6d", seeded.ids[6], "delivered", "2026-11-26T16:01:00Z"),
            callback("e-1u", seeded.ids[1], "undelivered", "2026-11-26T16:01:00Z"),
        ],
        "d-4",
    )
    # Then the counts move with them
    assert get_batch(seeded.request_id, lambda_context)[1]["counts"] == {
        "delivered": 2,
        "failed": 1,
        "undelivered": 1,
        "unknown": 3,
    }


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 100])
def test_pages_cover_every_message_once_and_each_carries_the_full_counts(
    seeded: Seeded, lambda_context: FakeContext, limit: int
) -> None:
    # Given the batch of 7; When every page is read with `limit`, following nextCursor
    def page(query: dict[str, str]) -> dict[str, Any]:
        code, body = get_batch(seeded.request_id, lambda_context, query)
        assert code == 200, body
        return body

    pages = walk_pages(page, {"limit": str(limit)})

    # Then the pages hold each message exactly once, in order, at most `limit` a page
    assert indexes(pages) == list(range(7))
    assert len(pages) == -(-7 // limit)
    assert all(len(p["messages"]) <= limit for p in pages)
    assert all(p["counts"] == EXPECTED_COUNTS for p in pages)
    assert pages[-1]["nextCursor"] is None


def test_no_limit_means_pages_of_100(
    ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    # Given 250 messages in chunks of 30 (pages end inside a chunk)
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "30")
    runtime.reset()
    send("big", 250)
    # When read without a limit
    pages = walk_pages(lambda q: get_batch("big", lambda_context, q)[1])
    # Then 100, 100, 50: every message once
    assert [len(p["messages"]) for p in pages] == [100, 100, 50]
    assert indexes(pages) == list(range(250))
    assert pages[0]["counts"] == {"accepted": 250}


def test_a_limit_above_the_maximum_is_refused(seeded: Seeded, lambda_context: FakeContext) -> None:
    code, body = get_batch(seeded.request_id, lambda_context, {"limit": str(MAX_PAGE + 1)})
    assert (code, body["error"]) == (400, "bad_request")
    assert get_batch(seeded.request_id, lambda_context, {"limit": str(MAX_PAGE)})[0] == 200


@pytest.mark.parametrize("limit", ["abc", "", "1.5", "0", "-3", "1e3", "10,20"])
def test_a_bad_limit_is_400(seeded: Seeded, lambda_context: FakeContext, limit: str) -> None:
    # Given a batch; When the limit is not a whole number from 1 to the maximum
    code, body = get_batch(seeded.request_id, lambda_context, {"limit": limit})
    # Then 400, naming the limit
    assert code == 400
    assert body["error"] == "bad_request"
    assert "limit" in body["message"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not a cursor!", id="not-base64"),
        pytest.param("é", id="non-ascii"),
        pytest.param(_b64(b"\xff\xfe"), id="not-utf8"),
        pytest.param(_b64(b"{oops"), id="not-json"),
        pytest.param(_b64(b"[1, 2]"), id="a-list"),
        pytest.param(_b64(b"42"), id="a-number"),
        pytest.param(_b64(b'"offset"'), id="a-string"),
        pytest.param(_b64(b'{"page": 2}'), id="no-offset"),
        pytest.param(_b64(b'{"offset": -1}'), id="negative"),
        pytest.param(_b64(b'{"offset": "3"}'), id="offset-a-string"),
        pytest.param(_b64(b'{"offset": 1.5}'), id="offset-a-float"),
        pytest.param(_b64(b'{"offset": true}'), id="offset-a-bool"),
        pytest.param(_b64(b'{"offset": null}'), id="offset-null"),
    ],
)
def test_a_cursor_this_api_did_not_return_is_400(
    seeded: Seeded, lambda_context: FakeContext, cursor: str
) -> None:
    code, body = get_batch(seeded.request_id, lambda_context, {"cursor": cursor})
    assert (code, body["error"]) == (400, "bad_request")
    assert "cursor" in body["message"]


def test_a_cursor_past_the_end_is_an_empty_last_page(seeded: Seeded, lambda_context: FakeContext) -> None:
    code, body = get_batch(seeded.request_id, lambda_context, {"cursor": encode_cursor(50)})
    assert code == 200
    assert (body["messages"], body["nextCursor"], body["counts"]) == ([], None, EXPECTED_COUNTS)


def test_an_unknown_batch_is_404(aws: dict[str, Any], lambda_context: FakeContext) -> None:
    code, body = get_batch("never-sent", lambda_context)
    assert (code, body["error"]) == (404, "not_found")
    assert "never-sent" in body["message"]


def test_a_percent_encoded_request_id_is_found(ocelot: FakeOcelot, lambda_context: FakeContext) -> None:
    # Given a requestId with a colon (allowed), which clients may send percent-encoded (%3A)
    send("school:42", 1)
    event = api_get("/batches/{requestId}", {"requestId": "school:42"})
    assert event["rawPath"] == "/batches/school%3A42"
    # When read; Then it is the batch
    code, body = call(event, lambda_context)
    assert (code, body["requestId"]) == (200, "school:42")


def test_a_batch_whose_chunks_were_never_sent_counts_them_as_their_chunk_status(
    ocelot: FakeOcelot, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given chunks sent one after another, and Ocelot refusing the first (4xx): nothing sent, the chunk
    # recorded not_sent, the next never tried
    monkeypatch.setenv("SEND_CONCURRENCY", "1")
    ocelot.then((400, {}, {"statusCode": 400, "message": ["bad"], "error": "Bad Request"}))
    with pytest.raises(Rejected, match="rejected"):
        send("refused", 4)
    # When read; Then every message counts, as not_sent: those of the refused chunk and those of the
    # chunk never tried (no record of its own)
    code, body = get_batch("refused", lambda_context)
    assert code == 200
    assert body["counts"] == {"not_sent": 4}
    assert [(m["index"], m["status"]) for m in body["messages"]] == [(i, "not_sent") for i in range(4)]
    assert body["unknownChunks"] == []
    assert [c["status"] for c in body["chunks"]] == ["not_sent"]


def test_storage_failures_are_500_without_details(
    seeded: Seeded, lambda_context: FakeContext, dynamo_faults: DynamoFaults
) -> None:
    from ocelot_sms import runtime

    dynamo_faults.fail(runtime.dynamodb_client(), "Query", times=10, code="InternalServerError")
    code, body = get_batch(seeded.request_id, lambda_context)
    assert (code, body) == (500, {"error": "internal_error", "message": "internal error", "problems": []})


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/batches"), ("GET", "/nothing/here"), ("POST", "/batches/status-1"), ("DELETE", "/messages/m")],
)
def test_other_routes_and_methods_are_404_not_500(
    seeded: Seeded, lambda_context: FakeContext, method: str, path: str
) -> None:
    event = with_method(api_get("/batches/{requestId}", {"requestId": "status-1"}), method, path)
    code, body = call(event, lambda_context)
    assert (code, body["error"]) == (404, "not_found")


# ---- GET /messages/{messageId} ------------------------------------------------------------------


def test_a_message_has_its_history_in_event_time_order_with_each_event_as_received(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given one sent message, and its callbacks arriving out of order with various UTC offsets:
    # sorted as strings they would read sent, queued, delivered; in time: queued, sent, delivered
    [message] = send("history", 1).messages
    message_id = message.message_id or ""
    delivered = callback(
        "h-3", message_id, "delivered", "2026-11-26T17:00:03+01:00", segments=2, price={"amount": "0.01"}
    )
    queued = callback("h-1", message_id, "queued", "2026-11-26T16:00:01Z")
    sent = callback("h-2", message_id, "sent", "2026-11-26T11:00:02-05:00", carrier=None)
    deliver(delivered, "d-1")
    deliver([sent, queued, sent], "d-2")  # with a duplicate too

    # When the message is read
    code, body = get_message(message_id, lambda_context)

    # Then its correlation, current status, and history in event-time order, each event as received
    assert code == 200
    assert {k: body[k] for k in ("messageId", "requestId", "ref", "index", "to", "status", "statusAt")} == {
        "messageId": message_id,
        "requestId": "history",
        "ref": "ref-0",
        "index": 0,
        "to": phone(0),
        "status": "delivered",
        "statusAt": "2026-11-26T16:00:03.000000Z",
    }
    assert body["batchId"] == ocelot.sent[0].body["batchId"]
    assert [e["eventId"] for e in body["history"]] == ["h-1", "h-2", "h-3"]
    assert [e["status"] for e in body["history"]] == ["queued", "sent", "delivered"]
    assert [e["eventTime"] for e in body["history"]] == [
        "2026-11-26T16:00:01.000000Z",
        "2026-11-26T16:00:02.000000Z",
        "2026-11-26T16:00:03.000000Z",
    ]
    assert [e["event"] for e in body["history"]] == [queued, sent, delivered]
    assert all(e["receivedAt"] for e in body["history"])


def test_a_message_without_callbacks_is_accepted_with_an_empty_history(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    [message] = send("quiet", 1).messages
    code, body = get_message(message.message_id or "", lambda_context)
    assert code == 200
    assert (body["status"], body["statusAt"], body["history"]) == ("accepted", None, [])


def test_a_message_known_only_from_callbacks_is_shown(
    aws: dict[str, Any], lambda_context: FakeContext
) -> None:
    # Given callbacks for a message we have no record of sending (e.g. sent before a reconcile)
    deliver(callback("o-1", "orphan-1", "failed", "2026-11-26T16:00:00Z", errorCode="30008"), "d-1")
    # When read; Then what the callbacks say, with no correlation
    code, body = get_message("orphan-1", lambda_context)
    assert code == 200
    assert (body["requestId"], body["index"], body["status"], body["errorCode"]) == (
        None,
        None,
        "failed",
        "30008",
    )
    assert body["to"] == "+15550000001"


def test_an_unknown_message_is_404(aws: dict[str, Any], lambda_context: FakeContext) -> None:
    code, body = get_message("no-such-message", lambda_context)
    assert (code, body["error"]) == (404, "not_found")


# ---- what DynamoDB holds and what a read costs ---------------------------------------------------


def test_reading_a_batch_costs_one_query_per_chunk_and_a_batch_get_per_100(
    ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    # Given 250 messages in 3 chunks of 100 (the deployed chunk size)
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "100")
    runtime.reset()
    send("costly", 250)
    calls = DynamoCalls(runtime.dynamodb_client())
    # When read; Then the batch query, its send part's (GSI1), one per chunk, ceil(250/100)
    # BatchGetItems; nothing written
    code, body = get_batch("costly", lambda_context, {"limit": "10"})
    assert (code, body["counts"]) == (200, {"accepted": 250})
    assert calls.on("messages") == ["Query"] * 5 + ["BatchGetItem"] * 3


def test_an_event_too_large_to_keep_inline_is_listed_without_its_body(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    [message] = send("huge-event", 1).messages
    message_id = message.message_id or ""
    deliver(
        callback("t-3", message_id, "delivered", "2026-11-26T16:00:03Z", note="x" * EVENT_PAYLOAD_MAX), "d-3"
    )
    code, body = get_message(message_id, lambda_context)
    assert code == 200
    assert [(e["eventId"], e["event"]) for e in body["history"]] == [("t-3", None)]
    assert body["status"] == "delivered"


def test_an_unreadable_stored_event_does_not_hide_the_recipient(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext
) -> None:
    # Given a callback naming the recipient, and a later stored event whose payload is no event
    deliver(callback("r-2", "orphan-2", "sent", "2026-11-26T16:00:02Z", to="+15559999999"), "d-2")
    aws["dynamodb"].put_item(
        TableName=env["TABLE_NAME"],
        Item={
            "PK": {"S": "MSG#orphan-2"},
            "SK": {"S": "EVT#r-3"},
            "eventId": {"S": "r-3"},
            "eventTime": {"S": "2026-11-26T16:00:03.000000Z"},
            "payload": {"S": json.dumps(["not", "an", "event"])},
        },
    )
    code, body = get_message("orphan-2", lambda_context)
    assert (code, body["to"]) == (200, "+15559999999")


# ---- GET /sends and /sends/{sendId} ----------------------------------------------------------------


def test_a_send_and_the_list_of_sends_are_served(ocelot: FakeOcelot, lambda_context: FakeContext) -> None:
    # Given a send in two parts (ids with a colon, percent-encoded in the path) and a batch of its own
    for part, count in ((1, 2), (2, 1)):
        send(f"term:1-p{part}", count, sendId="term:1", part=part, parts=2)
    send("alone", 1)
    # When the send is read
    code, body = call(api_get("/sends/{sendId}", {"sendId": "term:1"}, {"limit": "2"}), lambda_context)
    # Then its counts over both parts, its parts, and a first page of its messages
    assert (code, body["sendId"], body["partCount"], body["counts"]) == (200, "term:1", 2, {"accepted": 3})
    assert [p["requestId"] for p in body["parts"]] == ["term:1-p1", "term:1-p2"]
    assert [m["position"] for m in body["messages"]] == [1, 2]
    assert body["nextCursor"]
    # And the list of sends, newest first
    code, listed = call(api_get("/sends", {}, {"limit": "5"}), lambda_context)
    assert (code, [s["sendId"] for s in listed["sends"]]) == (200, ["alone", "term:1"])
    # And an unknown send or a bad limit are answered as such
    assert call(api_get("/sends/{sendId}", {"sendId": "nope"}), lambda_context)[0] == 404
    assert call(api_get("/sends", {}, {"limit": "0"}), lambda_context)[0] == 400


# ---- GET /inbound ------------------------------------------------------------------------------------


def test_inbound_lists_replies_in_pages_each_linked_to_what_it_answers(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given a message sent to a number, then five replies from it
    sent = send("inbound-1", 1)
    to = sent.messages[0].to
    replies = [
        {
            "name": "IncomingSms.received",
            "eventId": f"in-{n}",
            "from": to,
            "to": "+15550000000",
            "text": f"answer {n}",
            "dateTime": datetime.now(UTC).isoformat(),
        }
        for n in range(5)
    ]
    assert deliver(replies, "d-inbound").status_code == 200

    # When listed two at a time
    pages = walk_pages(lambda query: call(api_get("/inbound", {}, query), lambda_context)[1], {"limit": "2"})

    # Then every reply is listed once, oldest first, each linked to the message it answers
    listed = [m for p in pages for m in p["messages"]]
    assert sorted(m["text"] for m in listed) == [f"answer {n}" for n in range(5)]
    assert len(pages) == 3
    assert {(m["inReplyTo"]["requestId"], m["inReplyTo"]["ref"]) for m in listed} == {("inbound-1", "ref-0")}


def test_inbound_since_must_be_a_time(lambda_context: FakeContext, aws: dict[str, Any]) -> None:
    # Given / When / Then a since that is not a time is a bad request
    code, body = call(api_get("/inbound", {}, {"since": "last week"}), lambda_context)
    assert code == 400
    assert "since" in body["message"]
