"""SenderService: validate, split into chunks, send each chunk at most once, record what Ocelot said.

The service is wired as in the Lambda (runtime.sender_service) over the in-memory store and
idempotency records, with the real HTTP client and `responses` standing in for Ocelot.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from urllib3.exceptions import ProtocolError

from ocelot_sms import runtime
from ocelot_sms.errors import Conflict, DomainError, InProgress, InvalidRequest, Rejected, Unavailable
from ocelot_sms.models import BatchRequest
from ocelot_sms.sender import SenderService, request_hash
from ocelot_sms.store import BatchRecord, ChunkRecord, ChunkStatus
from tests.unit.layer.conftest import Wired
from tests.unit.support.aws import EmfReader, FakeContext
from tests.unit.support.ocelot import (
    FakeOcelot,
    InFlight,
    LoopbackOcelot,
    Reply,
    Sent,
    accepted,
    batch,
    busy,
    nestjs,
    ocelot_mock,
    outgoing,
    phone,
    short_api_budget,
)

pytestmark = pytest.mark.usefixtures("emf")


def make_service(remaining_ms: int = 60_000) -> SenderService:
    """The container's service, built from the environment as it is now."""
    service = runtime.sender_service()
    service.register_context(FakeContext(remaining_ms=remaining_ms))  # type: ignore[arg-type]
    return service


@pytest.fixture
def service(wired: Wired) -> SenderService:
    return make_service()


def chunk(wired: Wired, request_id: str, index: int) -> ChunkRecord:
    found = wired.store.get_chunk(request_id, index)
    assert found is not None
    return found


def first_ref(payload: dict[str, Any]) -> int:
    return int(payload["messages"][0]["externalId"].removeprefix("ref-"))


def in_request_order(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ocelot's requests by the position of their first message (chunks go out concurrently)."""
    return sorted(payloads, key=first_ref)


def result_of(error: DomainError) -> dict[str, Any]:
    """What the caller is told about each chunk when a request did not complete."""
    assert error.details is not None
    result: dict[str, Any] = error.details["result"]
    return result


# ---- validation and defaults ---------------------------------------------------------------------


def test_from_and_operator_are_required_when_no_default_is_configured(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no DefaultSender / DefaultOperatorId
    monkeypatch.delenv("DEFAULT_SENDER")
    monkeypatch.delenv("DEFAULT_OPERATOR_ID")
    body = batch("r", 1)
    del body["from"], body["operatorId"]

    # When a request without them is parsed
    with pytest.raises(InvalidRequest) as caught:
        make_service().parse(body)

    # Then each is a clear problem of its own field
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("from", "required: no default from is configured"),
        ("operatorId", "required: no default operatorId is configured"),
    ]


def test_a_request_that_names_them_needs_no_default(wired: Wired, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no defaults configured; When a request names from/operatorId; Then it is valid
    monkeypatch.delenv("DEFAULT_SENDER")
    monkeypatch.delenv("DEFAULT_OPERATOR_ID")
    request = make_service().parse(batch("r", 1))
    assert (request.sender, request.operator_id) == ("+15550000000", "operator-1")


def test_configured_defaults_fill_in_from_and_operator(
    monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given defaults configured, and a request without from/operatorId
    monkeypatch.setenv("DEFAULT_SENDER", "+15559990000")
    monkeypatch.setenv("DEFAULT_OPERATOR_ID", "operator-default")
    body = batch("defaults", 1)
    del body["from"], body["operatorId"]
    service = make_service()

    # When sent; Then Ocelot got the defaults
    service.submit(service.parse(body), origin="api")
    assert (ocelot.payloads[0]["phoneNumber"], ocelot.payloads[0]["operatorId"]) == (
        "+15559990000",
        "operator-default",
    )


def test_the_message_limit_comes_from_configuration(wired: Wired, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MAX_MESSAGES_PER_REQUEST=2
    monkeypatch.setenv("MAX_MESSAGES_PER_REQUEST", "2")
    service = make_service()

    # When 2, then 3 messages are parsed; Then 2 pass and 3 are refused
    assert len(service.parse(batch("r", 2)).messages) == 2
    with pytest.raises(InvalidRequest) as caught:
        service.parse(batch("r", 3))
    assert [p.field for p in caught.value.problems] == ["messages"]
    assert "at most 2 messages" in caught.value.problems[0].message


# ---- chunking and correlation ------------------------------------------------------------------------


def test_250_messages_go_as_3_chunks_in_order_and_every_id_is_stored(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given OCELOT_MAX_MESSAGES=100; When a request of 250 messages is submitted
    result = service.submit(service.parse(batch("big-1", 250)), origin="api")

    # Then exactly 3 POSTs of 100/100/50 messages went, each of consecutive messages
    payloads = in_request_order(ocelot.payloads)
    assert [len(p["messages"]) for p in payloads] == [100, 100, 50]
    assert [m["externalId"] for p in payloads for m in p["messages"]] == [f"ref-{i}" for i in range(250)]
    assert all((p["phoneNumber"], p["operatorId"]) == ("+15550000000", "operator-1") for p in payloads)

    # And each message got the id Ocelot returned at its position in its chunk
    calls = sorted(ocelot.sent, key=lambda call: first_ref(call.payload))
    returned = [m["id"] for call in calls for m in call.body["messages"]]
    assert [(m.index, m.ref, m.to, m.message_id) for m in result.messages] == [
        (i, f"ref-{i}", phone(i), returned[i]) for i in range(250)
    ]
    assert {m.status.value for m in result.messages} == {"accepted"}
    assert result.status == "accepted"
    assert result.batch_ids == [call.body["batchId"] for call in calls]
    assert [(c.index, c.status, c.size) for c in result.chunks] == [
        (0, "accepted", 100),
        (1, "accepted", 100),
        (2, "accepted", 50),
    ]

    # And every correlation is stored, chunk by chunk
    for index in range(3):
        messages = wired.store.batch_messages("big-1", index)
        assert [m.message_id for m in messages] == returned[index * 100 : index * 100 + 100]
        assert {(m.request_id, m.batch_id) for m in messages} == {("big-1", result.batch_ids[index])}
    last = wired.store.messages[returned[249]]
    assert (last.index, last.ref, last.to, last.chunk_index) == (249, "ref-249", phone(249), 2)

    # And each chunk record holds its batch id and ids; the batch header its counts
    for index in range(3):
        stored = chunk(wired, "big-1", index)
        assert (stored.status, stored.batch_id) == (ChunkStatus.ACCEPTED, result.batch_ids[index])
        assert list(stored.message_ids) == returned[index * 100 : index * 100 + 100]
    assert wired.store.batches["big-1"] == BatchRecord(
        "big-1", request_hash(service.parse(batch("big-1", 250))), 250, 3, "api"
    )


def test_the_chunk_size_is_configurable(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given OCELOT_MAX_MESSAGES=2
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()

    # When 5 messages are sent; Then they go as 2/2/1
    result = service.submit(service.parse(batch("small-chunks", 5)), origin="api")
    assert [len(p["messages"]) for p in in_request_order(ocelot.payloads)] == [2, 2, 1]
    assert [m.index for m in result.messages] == [0, 1, 2, 3, 4]


# ---- idempotency --------------------------------------------------------------------------------------


def test_the_same_request_twice_is_sent_once_with_the_same_result(
    service: SenderService, ocelot: FakeOcelot
) -> None:
    # Given a request already submitted; When it is submitted again (a client retry)
    first = service.submit(service.parse(batch("twice", 3)), origin="api")
    second = service.submit(service.parse(batch("twice", 3)), origin="api")

    # Then Ocelot saw it once, and the answer is the same
    assert len(ocelot.sent) == 1
    assert second.to_json() == first.to_json()


def test_the_same_request_id_with_another_payload_is_a_conflict(
    service: SenderService, ocelot: FakeOcelot
) -> None:
    # Given a request already sent; When the same requestId comes with a different text
    service.submit(service.parse(batch("reused", 2)), origin="api")
    other = batch("reused", 2)
    other["messages"][1]["text"] = "a different text"
    with pytest.raises(Conflict, match="already used with a different payload") as caught:
        service.submit(service.parse(other), origin="api")

    # Then it is refused as a conflict with no chunk tried, and nothing more was sent
    assert result_of(caught.value)["chunks"] == []
    assert len(ocelot.sent) == 1


def test_a_request_being_sent_right_now_is_not_sent_twice(service: SenderService, ocelot: FakeOcelot) -> None:
    # Given a second invocation submitting the same request while the first is talking to Ocelot
    request = service.parse(batch("busy-now", 2))
    seen: list[DomainError] = []

    def meanwhile(call: Sent) -> Reply:
        try:
            service.submit(request, origin="sqs")
        except DomainError as error:
            seen.append(error)
        return 200, {}, accepted(call.payload)

    ocelot.then(meanwhile)

    # When the first completes
    result = service.submit(request, origin="api")

    # Then the second was told to come back later, and Ocelot got the chunk once
    assert result.status == "accepted"
    assert len(ocelot.sent) == 1
    [error] = seen
    assert isinstance(error, InProgress)
    assert error.retry_after == 5.0


def test_request_hash_ignores_dry_run_but_nothing_else() -> None:
    # Given a request, its dry-run twin, and a copy with one different character
    base = BatchRequest.model_validate(batch("h", 2))
    dry = BatchRequest.model_validate(batch("h", 2, dryRun=True))
    changed_body = batch("h", 2)
    changed_body["messages"][0]["text"] += "!"
    changed = BatchRequest.model_validate(changed_body)

    # Then only the real change changes the hash
    assert request_hash(base) == request_hash(dry)
    assert request_hash(base) != request_hash(changed)


def test_a_send_of_its_own_hashes_as_a_request_without_send_fields() -> None:
    # Given a request without send fields, the same naming itself part 1 of 1, and as part of another send
    plain = BatchRequest.model_validate(batch("h", 2))
    own = BatchRequest.model_validate(batch("h", 2, sendId="h", part=1, parts=1))
    other = BatchRequest.model_validate(batch("h", 2, sendId="fall", part=1, parts=2))
    # Then the first two are the same request; the third is another
    assert request_hash(plain) == request_hash(own)
    assert request_hash(plain) != request_hash(other)


def test_each_batch_is_recorded_as_a_part_of_its_send(
    service: SenderService, wired: Wired, ocelot: FakeOcelot
) -> None:
    # Given part 2 of 2 of send "term", and a batch with no send fields
    service.submit(service.parse(batch("term-p2", 2, sendId="term", part=2, parts=2)), origin="sqs")
    service.submit(service.parse(batch("solo", 1)), origin="api")
    # Then each is a part of its send, with its recipients; the plain batch a send of its own
    term = wired.store.get_send("term")
    assert term is not None
    assert (term.send.parts, [(p.part, p.request_id, p.origin) for p in term.parts]) == (
        2,
        [(2, "term-p2", "sqs")],
    )
    assert [r.to for r in term.parts[0].recipients] == [phone(0), phone(1)]
    solo = wired.store.send_part_of("solo")
    assert solo is not None
    assert (solo.send_id, solo.part, solo.parts) == ("solo", 1, 1)


def test_a_part_taken_by_another_request_is_a_conflict_before_anything_is_sent(
    service: SenderService, ocelot: FakeOcelot
) -> None:
    # Given part 1 of send "term" sent as request term-a; When request term-b claims part 1 too
    service.submit(service.parse(batch("term-a", 1, sendId="term", part=1, parts=2)), origin="api")
    with pytest.raises(Conflict, match="part 1 of send 'term' is request 'term-a'") as caught:
        service.submit(service.parse(batch("term-b", 1, sendId="term", part=1, parts=2)), origin="api")
    # Then refused with no chunk tried; Ocelot got the first request only
    assert result_of(caught.value)["chunks"] == []
    assert len(ocelot.sent) == 1


# ---- ambiguous outcomes: recorded unknown, never re-sent -----------------------------------------------


AMBIGUOUS: list[Any] = [
    requests.ReadTimeout("read timed out"),
    requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
    nestjs(500, "Internal server error", "Internal Server Error"),
    (502, {"Content-Type": "text/html"}, "<html>502 Bad Gateway</html>"),
    (200, {"Content-Type": "text/plain"}, "OK"),
]
AMBIGUOUS_IDS = ["read-timeout", "reset", "500", "502", "2xx-unreadable"]


@pytest.mark.parametrize("reply", AMBIGUOUS, ids=AMBIGUOUS_IDS)
def test_an_ambiguous_outcome_is_recorded_unknown_and_never_resent(
    service: SenderService, ocelot: FakeOcelot, wired: Wired, reply: Any
) -> None:
    # Given Ocelot answering ambiguously; When submitted
    ocelot.then(reply)
    result = service.submit(service.parse(batch("ambiguous", 3)), origin="api")

    # Then the chunk and its messages are unknown, with no ids
    assert result.status == "unknown"
    assert [(c.status, c.reason is not None) for c in result.chunks] == [("unknown", True)]
    assert {(m.status.value, m.message_id) for m in result.messages} == {("unknown", None)}

    # And the chunk record says so, with the request Ocelot got, and is listed for reconciliation
    stored = chunk(wired, "ambiguous", 0)
    assert stored.status is ChunkStatus.UNKNOWN
    assert stored.payload == ocelot.payloads[0]
    assert wired.store.unknown_chunks() == [stored]
    assert wired.store.messages == {}

    # And a replay does not call Ocelot again
    again = service.submit(service.parse(batch("ambiguous", 3)), origin="api")
    assert len(ocelot.sent) == 1
    assert again.to_json() == result.to_json()


def test_an_unknown_chunk_does_not_stop_the_next_chunks(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 2, and a timeout on the second chunk only
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()
    ocelot.then_for("ref-2", requests.ReadTimeout("timed out"))

    # When 5 messages are submitted
    result = service.submit(service.parse(batch("middle", 5)), origin="api")

    # Then all 3 chunks were sent once, and only the second is unknown
    assert len(ocelot.sent) == 3
    assert [c.status for c in result.chunks] == ["accepted", "unknown", "accepted"]
    assert [m.status.value for m in result.messages] == [
        "accepted",
        "accepted",
        "unknown",
        "unknown",
        "accepted",
    ]
    assert result.status == "unknown"


def test_fewer_ids_than_messages_is_unknown_but_keeps_the_batch_id(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given Ocelot accepting but listing one id for two messages
    ocelot.then((201, {}, {"batchId": "b-short", "messages": [{"id": "m-1", "to": phone(0)}]}))

    # When submitted
    result = service.submit(service.parse(batch("short", 2)), origin="api")

    # Then ids are not guessed: the chunk is unknown, with Ocelot's batch id kept for reconciliation
    assert (result.status, result.batch_ids) == ("unknown", ["b-short"])
    assert {m.message_id for m in result.messages} == {None}
    stored = chunk(wired, "short", 0)
    assert (stored.status, stored.batch_id, stored.reason) == (
        ChunkStatus.UNKNOWN,
        "b-short",
        "accepted, but 1 ids for 2 messages",
    )


def test_a_chunk_left_sending_by_a_crash_is_reported_unknown_and_not_sent(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a chunk claimed by an invocation that died mid-send (its idempotency lock has expired)
    wired.store.claim_chunk(ChunkRecord("crashed", 0, ChunkStatus.SENDING, 3, 0))

    # When the request comes again
    result = service.submit(service.parse(batch("crashed", 3)), origin="sqs")

    # Then nothing is sent, and the chunk is now unknown with the reason and the Ocelot request
    assert ocelot.sent == []
    assert result.status == "unknown"
    stored = chunk(wired, "crashed", 0)
    assert stored.status is ChunkStatus.UNKNOWN
    assert "interrupted" in (stored.reason or "")
    assert stored.payload is not None
    assert [m["to"] for m in stored.payload["messages"]] == [phone(0), phone(1), phone(2)]

    # And a further attempt still sends nothing
    service.submit(service.parse(batch("crashed", 3)), origin="sqs")
    assert ocelot.sent == []


def test_a_chunk_accepted_earlier_is_not_sent_again_after_its_idempotency_record_expired(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a chunk record saying Ocelot accepted it (and no idempotency record any more)
    wired.store.finish_chunk(
        ChunkRecord(
            "old", 0, ChunkStatus.ACCEPTED, 2, 0, batch_id="b-old", message_ids=("m-old-0", "m-old-1")
        )
    )

    # When the request comes again
    result = service.submit(service.parse(batch("old", 2)), origin="sqs")

    # Then the earlier ids are reported (and stored), and nothing is sent
    assert ocelot.sent == []
    assert [(m.ref, m.message_id) for m in result.messages] == [("ref-0", "m-old-0"), ("ref-1", "m-old-1")]
    assert sorted(wired.store.messages) == ["m-old-0", "m-old-1"]


# ---- certainly not taken: retried, then not_sent and sendable later ------------------------------------


def test_a_rate_limit_then_success_is_retried(service: SenderService, ocelot: FakeOcelot) -> None:
    # Given a 429 with Retry-After: 0, then acceptance; When submitted; Then two calls, the second accepted
    ocelot.then(busy(429, "0"))
    result = service.submit(service.parse(batch("rate", 2)), origin="api")
    assert len(ocelot.sent) == 2
    assert result.status == "accepted"


def test_503_every_time_is_unavailable_not_sent_and_sendable_later(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given Ocelot answering 503 to every attempt (MAX_SEND_ATTEMPTS=3)
    ocelot.then(busy(), busy(), busy())
    request = service.parse(batch("down", 2))

    # When submitted
    with pytest.raises(Unavailable) as caught:
        service.submit(request, origin="api")

    # Then it is unavailable, with the Retry-After, after 3 attempts; the chunk is not_sent
    assert caught.value.retry_after == 1.0
    assert len(ocelot.sent) == 3
    result = result_of(caught.value)
    assert [(c["status"], c["size"]) for c in result["chunks"]] == [("not_sent", 2)]
    assert result["status"] == "incomplete"
    assert caught.value.details is not None
    assert caught.value.details["ocelot"] == {"statusCode": 503, "message": "busy", "error": "busy"}
    assert chunk(wired, "down", 0).status is ChunkStatus.NOT_SENT

    # And its idempotency record was removed...
    assert wired.idempotency.records == {}

    # ...so when Ocelot is back, the same request is sent
    assert service.submit(request, origin="api").status == "accepted"
    assert len(ocelot.sent) == 4


def test_after_a_partial_failure_a_retry_sends_only_the_chunks_not_taken(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 2: the first accepted, the second refused with 503 three times
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()
    ocelot.then_for("ref-2", busy(), busy(), busy())
    request = service.parse(batch("partial", 4))

    # When submitted; Then the result shows what happened to each chunk so far
    with pytest.raises(Unavailable) as caught:
        service.submit(request, origin="sqs")
    result = result_of(caught.value)
    assert [c["status"] for c in result["chunks"]] == ["accepted", "not_sent"]
    assert result["status"] == "incomplete"

    # When retried; Then only the second chunk went again
    retried = service.submit(request, origin="sqs")
    assert Counter(first_ref(p) for p in ocelot.payloads) == {0: 1, 2: 4}
    assert retried.status == "accepted"
    assert [c.status for c in retried.chunks] == ["accepted", "accepted"]


def test_a_retry_after_past_the_lambda_s_remaining_time_is_not_waited_for(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given waits of up to 30 s allowed, 22 s left after the 3 s safety margin, and an attempt that
    # may take 18.05 s (3.05 s to connect, 15 s to answer)
    monkeypatch.setenv("MAX_RETRY_WAIT_SECONDS", "30")
    service = make_service(remaining_ms=25_000)
    ocelot.then(busy(503, "10"))

    # When Ocelot asks for 10 s; Then no second attempt is made, and the 10 s are handed on
    with pytest.raises(Unavailable) as caught:
        service.submit(service.parse(batch("late", 1)), origin="sqs")
    assert len(ocelot.sent) == 1
    assert caught.value.retry_after == 10.0


def test_the_same_retry_after_is_retried_when_the_lambda_has_time(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given the same answer but a minute left, from the queue (responses does not really sleep)
    monkeypatch.setenv("MAX_RETRY_WAIT_SECONDS", "30")
    service = make_service(remaining_ms=60_000)
    ocelot.then(busy(503, "10"))

    # When submitted; Then it is retried and accepted
    assert service.submit(service.parse(batch("in-time", 1)), origin="sqs").status == "accepted"
    assert len(ocelot.sent) == 2


def test_with_no_time_left_nothing_is_sent(ocelot: FakeOcelot, wired: Wired) -> None:
    # Given 20 s left: after the 3 s safety margin, less than an attempt may take (18.05 s)
    service = make_service(remaining_ms=20_000)

    # When submitted from the queue
    with pytest.raises(Unavailable) as caught:
        service.submit(service.parse(batch("no-time", 1)), origin="sqs")

    # Then it is unavailable without any call, reported not_sent, and nothing was claimed
    assert ocelot.sent == []
    assert [c["status"] for c in result_of(caught.value)["chunks"]] == ["not_sent"]
    assert wired.store.get_chunk("no-time", 0) is None


def test_a_secret_that_cannot_be_read_sends_nothing_and_can_be_fixed(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a secret an operator left without its apiKey
    del wired.ocelot_secret["apiKey"]
    request = service.parse(batch("no-key", 1))

    # When submitted; Then nothing was sent, the chunk is not_sent, and nothing was claimed
    with pytest.raises(Unavailable) as caught:
        service.submit(request, origin="sqs")
    assert ocelot.sent == []
    assert [c["status"] for c in result_of(caught.value)["chunks"]] == ["not_sent"]
    assert wired.store.get_chunk("no-key", 0) is None

    # And once the secret is fixed, the retry sends
    wired.ocelot_secret["apiKey"] = "api-key-secret-value"
    assert service.submit(request, origin="sqs").status == "accepted"


# ---- refused by Ocelot ---------------------------------------------------------------------------------


def test_a_4xx_is_rejected_with_ocelot_s_error_and_can_be_sent_again(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given Ocelot refusing the payload
    ocelot.then(nestjs(400, ["messages.0.to is opted out"], "Bad Request"))
    request = service.parse(batch("refused", 1))

    # When submitted
    with pytest.raises(Rejected) as caught:
        service.submit(request, origin="api")

    # Then Ocelot's error is kept, the chunk is not_sent, and nothing was retried
    assert caught.value.details is not None
    assert caught.value.details["ocelot"] == {
        "statusCode": 400,
        "message": ["messages.0.to is opted out"],
        "error": "Bad Request",
    }
    assert len(ocelot.sent) == 1
    assert chunk(wired, "refused", 0).status is ChunkStatus.NOT_SENT

    # And once fixed on Ocelot's side, the same request can go
    assert service.submit(request, origin="api").status == "accepted"
    assert len(ocelot.sent) == 2


# ---- dry run --------------------------------------------------------------------------------------------


def test_a_dry_run_previews_the_payloads_and_sends_and_stores_nothing(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 2 and a dry-run request of 3 messages
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()

    # When submitted
    result = service.submit(service.parse(batch("preview", 3, dryRun=True)), origin="api")

    # Then the preview counts the Ocelot requests and shows the first exactly as it would be sent
    wire = [{"to": phone(i), "message": outgoing(i)["text"], "externalId": f"ref-{i}"} for i in range(2)]
    sample = {"phoneNumber": "+15550000000", "operatorId": "operator-1", "messages": wire}
    assert result.preview == {"ocelotRequests": 2, "messages": 3, "sampleMessages": 2, "sample": sample}
    assert (result.status, result.dry_run, result.messages) == ("dry_run", True, [])
    assert [(c.status, c.size) for c in result.chunks] == [("not_sent", 2), ("not_sent", 1)]

    # And nothing was sent or stored
    assert ocelot.sent == []
    assert (wired.store.batches, wired.store.chunks, wired.idempotency.records) == ({}, {}, {})


def test_a_dry_run_does_not_block_the_real_request(service: SenderService, ocelot: FakeOcelot) -> None:
    # Given a dry run of a request; When the real one follows; Then it is sent (once)
    service.submit(service.parse(batch("dry-first", 2, dryRun=True)), origin="api")
    assert service.submit(service.parse(batch("dry-first", 2)), origin="api").status == "accepted"
    assert len(ocelot.sent) == 1


# ---- queue messages --------------------------------------------------------------------------------------


def test_a_queued_request_is_sent(service: SenderService, ocelot: FakeOcelot, wired: Wired) -> None:
    # Given a valid queue message; When handled; Then it is sent and recorded as coming from SQS
    result = service.submit_queued(json.dumps(batch("queued", 2)), "sqs-1")
    assert result is not None
    assert result.status == "accepted"
    assert wired.store.batches["queued"].origin == "sqs"


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ("{not json", [{"field": "body", "message": "not valid JSON"}]),
        ("[" * 100_000, [{"field": "body", "message": "not valid JSON"}]),
        (
            json.dumps({"requestId": "q", "messages": []}),
            [{"field": "messages", "message": "List should have at least 1 item after validation, not 0"}],
        ),
    ],
    ids=["not-json", "too-deep", "invalid"],
)
def test_a_bad_queued_request_is_kept_as_rejected_and_not_raised(
    service: SenderService, ocelot: FakeOcelot, wired: Wired, body: str, problems: list[dict[str, str]]
) -> None:
    # When a queue message that can never succeed comes in
    assert service.submit_queued(body, "sqs-bad") is None

    # Then it is stored whole with its problems, and nothing is sent
    rejection = wired.store.rejections["sqs-bad"]
    assert (rejection.body, list(rejection.problems)) == (body, problems)
    assert ocelot.sent == []


def test_a_queued_conflict_is_rejected_not_retried(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a requestId already sent; When a queue message reuses it with another payload;
    # Then it is kept as rejected (a retry cannot help), not raised, and nothing more is sent
    service.submit_queued(json.dumps(batch("q-conflict", 1)), "sqs-a")
    assert service.submit_queued(json.dumps(batch("q-conflict", 2)), "sqs-b") is None
    assert [p["field"] for p in wired.store.rejections["sqs-b"].problems] == ["requestId"]
    assert len(ocelot.sent) == 1


@pytest.mark.parametrize(
    "reply", [busy(), nestjs(401, "Invalid id or api key", "Unauthorized")], ids=["503", "401"]
)
def test_a_queued_request_that_may_succeed_later_raises(
    service: SenderService, ocelot: FakeOcelot, wired: Wired, reply: Reply
) -> None:
    # Given Ocelot unavailable, or refusing the key; When a queue message is handled;
    # Then it raises (back to the queue for a retry) and is not stored as rejected
    ocelot.then(*[reply] * 3)
    with pytest.raises((Unavailable, Rejected)):
        service.submit_queued(json.dumps(batch("later", 1)), "sqs-later")
    assert wired.store.rejections == {}


def test_a_rejected_queue_message_is_logged_without_the_keys_it_made_up(
    service: SenderService, ocelot: FakeOcelot, wired: Wired, emf: EmfReader
) -> None:
    # Given a queue message whose message is written as {number: text}
    body = json.dumps({"requestId": "keys", "messages": [{"+15559876543": "hello", "to": "bad"}]})

    # When it is rejected
    assert service.submit_queued(body, "sqs-keys") is None

    # Then the log line names the problem paths, without the number used as a key
    emf.read()
    logged = [json.loads(line) for line in emf.lines if "queued request rejected" in line]
    assert len(logged) == 1
    assert sorted(logged[0]["problems"]) == ["messages.0.<key>", "messages.0.text", "messages.0.to"]
    assert "+15559876543" not in "\n".join(emf.lines)

    # And the stored rejection keeps everything (the table is encrypted and the item expires)
    rejection = wired.store.rejections["sqs-keys"]
    assert rejection.body == body
    assert "messages.0.+15559876543" in [p["field"] for p in rejection.problems]


# ---- chunks in parallel ---------------------------------------------------------------------------------


def test_send_concurrency_chunks_are_sent_at_once(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given SEND_CONCURRENCY=4, and an Ocelot that answers none of the first 4 requests until all 4
    # have arrived (one after another, the first would wait for ever: the barrier breaks in 5 s)
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    monkeypatch.setenv("SEND_CONCURRENCY", "4")
    service = make_service()
    ocelot.default = InFlight(0.0, threading.Barrier(4, timeout=5))

    # When 8 messages (4 chunks) are submitted; Then all 4 went at once and were accepted
    result = service.submit(service.parse(batch("together", 8)), origin="api")
    assert [c.status for c in result.chunks] == ["accepted"] * 4


def test_never_more_than_send_concurrency_chunks_are_in_flight(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given SEND_CONCURRENCY=3 and an Ocelot taking 50 ms per request
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "1")
    monkeypatch.setenv("SEND_CONCURRENCY", "3")
    service = make_service()
    ocelot.default = timing = InFlight(0.05)

    # When 10 chunks are submitted; Then 3 at most were sent at once, every one once
    result = service.submit(service.parse(batch("bounded", 10)), origin="api")
    assert timing.most == 3
    assert sorted(first_ref(p) for p in ocelot.payloads) == list(range(10))
    assert result.status == "accepted"


def test_results_are_in_request_order_whatever_order_ocelot_answers_in(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 2, and Ocelot answering the first chunk last
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()

    def first_is_slow(call: Sent) -> Reply:
        time.sleep(0.3 if first_ref(call.payload) == 0 else 0.0)
        return 200, {}, accepted(call.payload)

    ocelot.default = first_is_slow

    # When 6 messages are submitted
    result = service.submit(service.parse(batch("in-order", 6)), origin="api")

    # Then chunks and messages are in request order, and every correlation is stored
    assert [c.index for c in result.chunks] == [0, 1, 2]
    assert [m.index for m in result.messages] == list(range(6))
    assert sorted(m.index for m in wired.store.messages.values()) == list(range(6))
    assert result.batch_ids == [c.batch_id for c in result.chunks]


def test_a_refused_chunk_stops_the_chunks_not_yet_started(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 1 sent 2 at once, and Ocelot refusing the first (4xx) once the second, slow, is
    # in flight too
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "1")
    monkeypatch.setenv("SEND_CONCURRENCY", "2")
    service = make_service()
    both = threading.Barrier(2, timeout=5)

    def refuse_once_both_are_in(call: Sent) -> Reply:
        both.wait()
        return nestjs(400, ["messages.0.to is opted out"], "Bad Request")

    ocelot.then_for("ref-0", refuse_once_both_are_in)
    ocelot.then_for("ref-1", InFlight(0.2, both))

    # When 5 messages are submitted
    with pytest.raises(Rejected) as caught:
        service.submit(service.parse(batch("refused-early", 5)), origin="api")

    # Then the chunk in flight finished, none was started after the refusal, and every chunk is listed
    result = result_of(caught.value)
    assert [c["status"] for c in result["chunks"]] == [
        "not_sent",
        "accepted",
        "not_sent",
        "not_sent",
        "not_sent",
    ]
    assert sorted(first_ref(p) for p in ocelot.payloads) == [0, 1]
    assert "another chunk was not sent" in result["chunks"][2]["reason"]
    assert [wired.store.get_chunk("refused-early", i) is None for i in (2, 3, 4)] == [True] * 3


def test_a_rate_limit_holds_every_chunk_for_the_retry_after(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, connections: list[tuple[str, int]]
) -> None:
    # Given a real Ocelot on loopback answering the first request 429 (Retry-After: 1), then accepting;
    # chunks of 1, sent 2 at once
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "1")
    monkeypatch.setenv("SEND_CONCURRENCY", "2")
    with ocelot_mock(), LoopbackOcelot(busy(429, "1")) as server:
        monkeypatch.setenv("OCELOT_BASE_URL", server.base_url)
        service = make_service()

        # When 8 messages are submitted
        result = service.submit(service.parse(batch("paced", 8)), origin="sqs")

    # Then every request that started after the 429 waited for its second, the retry included: early
    # are at most the one in flight at the 429 and the one its thread may start before the 429's
    # thread records the wait (without the wait, all 7 others would be early)
    assert result.status == "accepted"
    limited = server.received[0].at
    later = [r.at for r in server.received[1:]]
    assert len(later) == 8
    assert sum(at - limited < 0.9 for at in later) <= 2
    assert sorted(Counter(first_ref(r.payload) for r in server.received).values()) == [1] * 7 + [2]


# ---- the API budget: what cannot start is handed to the send queue --------------------------------------


@pytest.fixture
def slow_api(wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot) -> SenderService:
    """POST /batches with a budget that lets the first two chunks start and never the next ones."""
    short_api_budget(monkeypatch, ocelot)
    return make_service()


def test_chunks_the_api_cannot_start_in_time_are_pending_on_the_send_queue(
    slow_api: SenderService, wired: Wired, ocelot: FakeOcelot
) -> None:
    # When 5 messages are posted
    request = slow_api.parse(batch("budget", 5))
    result = slow_api.submit(request, origin="api")

    # Then the first two were sent, the other three are pending, with nothing claimed for them
    assert result.status == "pending"
    assert [c.status for c in result.chunks] == ["accepted", "accepted", "pending", "pending", "pending"]
    assert [m.index for m in result.messages] == [0, 1]
    assert sorted(first_ref(p) for p in ocelot.payloads) == [0, 1]
    assert [wired.store.get_chunk("budget", i) is None for i in (2, 3, 4)] == [True] * 3

    # And the send queue got the same request (the same hash), once
    [body] = wired.queue.bodies
    assert request_hash(slow_api.parse(json.loads(body))) == request_hash(request)


def test_the_queue_s_sender_sends_only_what_the_api_did_not(
    slow_api: SenderService, wired: Wired, ocelot: FakeOcelot
) -> None:
    # Given a request the API half sent and handed to the queue
    slow_api.submit(slow_api.parse(batch("resumed", 5)), origin="api")
    [body] = wired.queue.bodies

    # When the queue's Sender takes it (Ocelot answering at once now)
    ocelot.default = InFlight(0.0)
    queued = make_service().submit_queued(body, "sqs-resumed")

    # Then each chunk went to Ocelot once, and the queue's answer has every id in request order
    assert queued is not None
    assert queued.status == "accepted"
    assert sorted(first_ref(p) for p in ocelot.payloads) == [0, 1, 2, 3, 4]
    assert [m.index for m in queued.messages] == list(range(5))
    assert sorted(m.index for m in wired.store.messages.values()) == list(range(5))


@pytest.mark.parametrize(
    ("setting", "refusal", "says"),
    [
        (None, RuntimeError("SQS is down"), "did not take it: RuntimeError"),
        ("SEND_QUEUE_MAX_BYTES", None, "larger than the send queue takes"),
    ],
    ids=["queue-down", "too-large"],
)
def test_when_the_queue_does_not_take_it_the_api_answers_unavailable(
    slow_api: SenderService,
    wired: Wired,
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    refusal: Exception | None,
    says: str,
) -> None:
    # Given a queue that refuses, or a request larger than the queue takes
    wired.queue.refuse = refusal
    if setting is not None:
        monkeypatch.setenv(setting, "1024")
        runtime.reset()
        slow_api = make_service()
    body = batch("no-queue", 5)
    for message in body["messages"]:
        message["text"] = "x" * 300

    # When posted
    with pytest.raises(Unavailable) as caught:
        slow_api.submit(slow_api.parse(body), origin="api")

    # Then what was not started is not_sent, saying why: the caller's retry sends it
    chunks = result_of(caught.value)["chunks"]
    assert [c["status"] for c in chunks] == ["accepted", "accepted", "not_sent", "not_sent", "not_sent"]
    assert says in chunks[2]["reason"]
    assert wired.queue.bodies == []


def test_from_the_queue_what_cannot_start_in_time_is_unavailable_not_pending(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 1 sent 2 at once, attempts of up to 1.5 s, 3.6 s left (0.6 after the margin
    # would be too little for any: 4.2 s leaves time for the first round only), Ocelot taking 0.6 s
    for name, value in {
        "CONNECT_TIMEOUT_SECONDS": "0.5",
        "READ_TIMEOUT_SECONDS": "1",
        "OCELOT_MAX_MESSAGES": "1",
        "SEND_CONCURRENCY": "2",
    }.items():
        monkeypatch.setenv(name, value)
    ocelot.default = InFlight(0.6)
    service = make_service(remaining_ms=5_000)

    # When a queue message of 5 is handled; Then it raises (the message comes back), nothing handed off
    with pytest.raises(Unavailable):
        service.submit_queued(json.dumps(batch("queued-late", 5)), "sqs-late")
    assert sorted(first_ref(p) for p in ocelot.payloads) == [0, 1]
    assert wired.queue.bodies == []


# ---- credentials before the claim ---------------------------------------------------------------------


class LambdaStopped(BaseException):
    """The Lambda reaching its timeout: nothing after this line of code runs."""


def test_a_lambda_stopped_while_reading_the_secret_leaves_no_claim_and_the_retry_sends(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a Secrets Manager read that never ends: the Lambda is stopped in the middle of it
    wired.secret_error = LambdaStopped()
    request = service.parse(batch("stalled-secret", 2))
    with pytest.raises(LambdaStopped):
        service.submit(request, origin="sqs")

    # Then nothing was claimed (a claim would read "may have been sent" to the next attempt)
    assert wired.store.get_chunk("stalled-secret", 0) is None

    # And when the message comes back (the idempotency lock expired with the Lambda), it is sent
    wired.secret_error = None
    wired.idempotency.records.clear()
    assert service.submit(request, origin="sqs").status == "accepted"
    assert len(ocelot.sent) == 1


def test_the_secret_is_read_through_a_client_with_bounded_timeouts(env: dict[str, str]) -> None:
    # When the Sender's Secrets Manager client is made; Then each call gives up in seconds, twice at most
    runtime.reset()
    config: Any = runtime.secrets_provider().client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 2.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_ids_the_store_failed_to_keep_are_raised_and_kept_by_the_retry_without_a_resend(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 1 sent 2 at once, and the store failing once to keep the first chunk's ids
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "1")
    monkeypatch.setenv("SEND_CONCURRENCY", "2")
    service = make_service()
    kept, failures = wired.store.put_messages, [RuntimeError("DynamoDB down")]

    def failing_once(records: list[Any]) -> None:
        if records and records[0].index == 0 and failures:
            raise failures.pop()
        kept(records)

    monkeypatch.setattr(wired.store, "put_messages", failing_once)
    request = service.parse(batch("store-down", 4))

    # When submitted; Then the failure is raised as it is (a 500, or the queue message back)
    with pytest.raises(RuntimeError, match="DynamoDB down"):
        service.submit(request, origin="sqs")

    # And the retry sends nothing again, and every correlation is kept
    assert service.submit(request, origin="sqs").status == "accepted"
    assert sorted(first_ref(p) for p in ocelot.payloads) == [0, 1, 2, 3]
    assert sorted(m.index for m in wired.store.messages.values()) == [0, 1, 2, 3]


def test_another_payload_is_refused_by_the_chunks_records_even_without_the_batch_record(
    service: SenderService, ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a request sent, whose batch record is gone (only the chunks' idempotency records remain)
    service.submit(service.parse(batch("no-header", 2)), origin="api")
    wired.store.batches.clear()

    # When the same requestId comes with another text; Then a conflict, and nothing more is sent
    other = batch("no-header", 2)
    other["messages"][0]["text"] = "another text"
    with pytest.raises(Conflict, match="already used with a different payload"):
        service.submit(service.parse(other), origin="api")
    assert len(ocelot.sent) == 1
