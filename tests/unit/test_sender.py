"""SenderService: validate, split into chunks, send each chunk at most once, record what Ocelot said.

The service is wired as in the Lambda (runtime.sender_service): moto for DynamoDB and Secrets
Manager, the real HTTP client, and `responses` standing in for Ocelot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from urllib3.exceptions import ProtocolError

from ocelot_sms import runtime
from ocelot_sms.models import BatchRequest, RequestInvalid
from ocelot_sms.sender import FailureKind, SenderService, SubmitFailed, request_hash
from ocelot_sms.store import ChunkRecord, ChunkStatus
from tests.unit.conftest import EmfReader, FakeContext
from tests.unit.sender_support import (
    DEFAULT_AUTH,
    DynamoCalls,
    FakeOcelot,
    Reply,
    Sent,
    accept,
    accepted,
    basic_auth,
    batch,
    get_item,
    guard_network,
    nestjs,
    ocelot_mock,
    outgoing,
    phone,
    scan,
    stored_body,
)

MESSAGES = "messages"
IDEMPOTENCY = "idempotency"


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def ocelot(aws: dict[str, Any]) -> Iterator[FakeOcelot]:
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)


def make_service(remaining_ms: int = 60_000) -> SenderService:
    """The container's service, built from the environment as it is now."""
    service = runtime.sender_service()
    service.register_context(FakeContext(remaining_ms=remaining_ms))  # type: ignore[arg-type]
    return service


@pytest.fixture
def service(aws: dict[str, Any]) -> SenderService:
    return make_service()


@pytest.fixture
def dynamodb(aws: dict[str, Any]) -> Any:
    return aws["dynamodb"]


def chunk_item(dynamodb: Any, request_id: str, index: int) -> dict[str, Any] | None:
    return get_item(dynamodb, MESSAGES, f"REQ#{request_id}", f"CHUNK#{index:05d}")


def message_items(dynamodb: Any) -> list[dict[str, Any]]:
    return [i for i in scan(dynamodb, MESSAGES) if i["SK"] == "#META"]


def busy(status: int = 503, retry_after: str = "1") -> Reply:
    return status, {"Retry-After": retry_after}, {"statusCode": status, "message": "busy", "error": "busy"}


# ---- validation and defaults ---------------------------------------------------------------------


def test_from_and_operator_are_required_when_no_default_is_configured(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no DefaultSender / DefaultOperatorId
    monkeypatch.delenv("DEFAULT_SENDER")
    monkeypatch.delenv("DEFAULT_OPERATOR_ID")
    body = batch("r", 1)
    del body["from"], body["operatorId"]

    # When a request without them is parsed
    with pytest.raises(RequestInvalid) as caught:
        make_service().parse(body)

    # Then each is a clear problem of its own field
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("from", "required: no default from is configured"),
        ("operatorId", "required: no default operatorId is configured"),
    ]


def test_a_request_that_names_them_needs_no_default(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no defaults configured; When a request names from/operatorId; Then it is valid
    monkeypatch.delenv("DEFAULT_SENDER")
    monkeypatch.delenv("DEFAULT_OPERATOR_ID")
    request = make_service().parse(batch("r", 1))
    assert (request.sender, request.operator_id) == ("+15550000000", "operator-1")


def test_configured_defaults_fill_in_from_and_operator(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given defaults configured, and a request without from/operatorId
    monkeypatch.setenv("DEFAULT_SENDER", "+15559990000")
    monkeypatch.setenv("DEFAULT_OPERATOR_ID", "operator-default")
    body = batch("defaults", 1)
    del body["from"], body["operatorId"]
    service = make_service()

    # When sent
    service.submit(service.parse(body), origin="api")

    # Then Ocelot got the defaults
    assert (ocelot.payloads[0]["phoneNumber"], ocelot.payloads[0]["operatorId"]) == (
        "+15559990000",
        "operator-default",
    )


def test_the_message_limit_comes_from_configuration(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_MESSAGES_PER_REQUEST=2
    monkeypatch.setenv("MAX_MESSAGES_PER_REQUEST", "2")
    service = make_service()

    # When 2, then 3 messages are parsed; Then 2 pass and 3 are refused
    assert len(service.parse(batch("r", 2)).messages) == 2
    with pytest.raises(RequestInvalid) as caught:
        service.parse(batch("r", 3))
    assert [p.field for p in caught.value.problems] == ["messages"]
    assert "at most 2 messages" in caught.value.problems[0].message


# ---- chunking and correlation ------------------------------------------------------------------------


def test_250_messages_go_as_3_chunks_in_order_and_every_id_is_stored(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given OCELOT_MAX_MESSAGES=100 and a request of 250 messages; DynamoDB calls counted
    calls = DynamoCalls(runtime.dynamodb_client())
    request = service.parse(batch("big-1", 250))

    # When it is submitted
    result = service.submit(request, origin="api")

    # Then exactly 3 POSTs of 100/100/50 messages went, in request order
    assert [len(p["messages"]) for p in ocelot.payloads] == [100, 100, 50]
    assert [m["externalId"] for p in ocelot.payloads for m in p["messages"]] == [
        f"ref-{i}" for i in range(250)
    ]
    assert all((p["phoneNumber"], p["operatorId"]) == ("+15550000000", "operator-1") for p in ocelot.payloads)

    # And each message got the id Ocelot returned at its position in its chunk
    returned = [m["id"] for call in ocelot.sent for m in call.body["messages"]]
    assert [(m.index, m.ref, m.to, m.message_id) for m in result.messages] == [
        (i, f"ref-{i}", phone(i), returned[i]) for i in range(250)
    ]
    assert {m.status.value for m in result.messages} == {"accepted"}
    assert result.status == "accepted"
    assert result.batch_ids == [call.body["batchId"] for call in ocelot.sent]
    assert [(c.index, c.status, c.size) for c in result.chunks] == [
        (0, "accepted", 100),
        (1, "accepted", 100),
        (2, "accepted", 50),
    ]

    # And every correlation is stored as MSG#{id} / #META
    stored = {item["messageId"]: item for item in message_items(dynamodb)}
    assert len(stored) == 250
    for i in (0, 99, 100, 249):
        item = stored[returned[i]]
        assert item["PK"] == f"MSG#{returned[i]}"
        assert (item["requestId"], item["index"], item["ref"], item["to"]) == (
            "big-1",
            i,
            f"ref-{i}",
            phone(i),
        )
        assert (item["chunkIndex"], item["batchId"]) == (i // 100, result.batch_ids[i // 100])

    # And each chunk record holds its batch id and ids; the batch header its counts
    for index in range(3):
        chunk = chunk_item(dynamodb, "big-1", index)
        assert chunk is not None
        assert (chunk["status"], chunk["batchId"]) == ("accepted", result.batch_ids[index])
        assert chunk["messageIds"] == returned[index * 100 : index * 100 + 100]
    header = get_item(dynamodb, MESSAGES, "REQ#big-1", "#BATCH")
    assert header is not None
    assert (header["messageCount"], header["chunkCount"], header["origin"]) == (250, 3, "api")

    # And the 250 message items took a handful of BatchWriteItem requests (25 items each), not 250 puts
    assert calls.count("BatchWriteItem", MESSAGES) == 4 + 4 + 2
    assert calls.count("PutItem", MESSAGES) == 1 + 3 + 3  # batch header, chunk claims, chunk results
    assert len(calls.on(MESSAGES)) < 25


def test_the_chunk_size_is_configurable(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given OCELOT_MAX_MESSAGES=2
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()

    # When 5 messages are sent; Then they go as 2/2/1
    result = service.submit(service.parse(batch("small-chunks", 5)), origin="api")
    assert [len(p["messages"]) for p in ocelot.payloads] == [2, 2, 1]
    assert [m.index for m in result.messages] == [0, 1, 2, 3, 4]


# ---- idempotency --------------------------------------------------------------------------------------


def test_the_same_request_twice_is_sent_once_with_the_same_result(
    service: SenderService, ocelot: FakeOcelot
) -> None:
    # Given a request already submitted
    request = service.parse(batch("twice", 3))
    first = service.submit(request, origin="api")

    # When it is submitted again (a client retry)
    second = service.submit(service.parse(batch("twice", 3)), origin="api")

    # Then Ocelot saw it once, and the answer is the same
    assert len(ocelot.sent) == 1
    assert second.to_json() == first.to_json()


def test_the_same_request_id_with_another_payload_is_a_conflict(
    service: SenderService, ocelot: FakeOcelot
) -> None:
    # Given a request already sent
    service.submit(service.parse(batch("reused", 2)), origin="api")

    # When the same requestId comes with a different text
    other = batch("reused", 2)
    other["messages"][1]["text"] = "a different text"
    with pytest.raises(SubmitFailed) as caught:
        service.submit(service.parse(other), origin="api")

    # Then it is refused as a conflict and nothing more was sent
    assert caught.value.kind is FailureKind.CONFLICT
    assert "already used with a different payload" in str(caught.value)
    assert len(ocelot.sent) == 1


def test_a_request_being_sent_right_now_is_not_sent_twice(service: SenderService, ocelot: FakeOcelot) -> None:
    # Given a second invocation submitting the same request while the first is talking to Ocelot
    request = service.parse(batch("busy-now", 2))
    seen: list[BaseException] = []

    def meanwhile(call: Sent) -> Reply:
        try:
            service.submit(request, origin="sqs")
        except SubmitFailed as error:
            seen.append(error)
        return 200, {}, accepted(call.payload)

    ocelot.then(meanwhile)

    # When the first completes
    result = service.submit(request, origin="api")

    # Then the second was told to come back later, and Ocelot got the chunk once
    assert result.status == "accepted"
    assert len(ocelot.sent) == 1
    assert len(seen) == 1
    assert isinstance(seen[0], SubmitFailed)
    assert (seen[0].kind, seen[0].retry_after) == (FailureKind.IN_PROGRESS, 5.0)


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
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any, reply: Any
) -> None:
    # Given Ocelot answering ambiguously
    ocelot.then(reply)
    request = service.parse(batch("ambiguous", 3))

    # When submitted
    result = service.submit(request, origin="api")

    # Then the chunk and its messages are unknown, with no ids
    assert result.status == "unknown"
    assert [(c.status, c.reason is not None) for c in result.chunks] == [("unknown", True)]
    assert {(m.status.value, m.message_id) for m in result.messages} == {("unknown", None)}

    # And the chunk record says so (and is listed for reconciliation); no correlation was stored
    chunk = chunk_item(dynamodb, "ambiguous", 0)
    assert chunk is not None
    assert chunk["status"] == "unknown"
    assert chunk["GSI1PK"] == "CHUNKS#unknown"
    assert message_items(dynamodb) == []

    # And a replay does not call Ocelot again
    again = service.submit(service.parse(batch("ambiguous", 3)), origin="api")
    assert len(ocelot.sent) == 1
    assert again.to_json() == result.to_json()


def test_an_unknown_chunk_does_not_stop_the_next_chunks(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 2, and a timeout on the second chunk only
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()
    ocelot.then(accept, requests.ReadTimeout("timed out"))

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
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given Ocelot accepting but listing one id for two messages
    ocelot.then((201, {}, {"batchId": "b-short", "messages": [{"id": "m-1", "to": phone(0)}]}))

    # When submitted
    result = service.submit(service.parse(batch("short", 2)), origin="api")

    # Then ids are not guessed: the chunk is unknown, with Ocelot's batch id kept for reconciliation
    assert (result.status, result.batch_ids) == ("unknown", ["b-short"])
    assert {m.message_id for m in result.messages} == {None}
    chunk = chunk_item(dynamodb, "short", 0)
    assert chunk is not None
    assert (chunk["status"], chunk["batchId"], chunk["reason"]) == (
        "unknown",
        "b-short",
        "accepted, but 1 ids for 2 messages",
    )


def test_a_chunk_left_sending_by_a_crash_is_reported_unknown_and_not_sent(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given a chunk claimed by an invocation that died mid-send (its idempotency lock has expired)
    runtime.store().claim_chunk(
        ChunkRecord(request_id="crashed", index=0, status=ChunkStatus.SENDING, size=3, first_index=0)
    )

    # When the request comes again
    result = service.submit(service.parse(batch("crashed", 3)), origin="sqs")

    # Then nothing is sent, and the chunk is now unknown with the reason
    assert ocelot.sent == []
    assert result.status == "unknown"
    chunk = chunk_item(dynamodb, "crashed", 0)
    assert chunk is not None
    assert chunk["status"] == "unknown"
    assert "interrupted" in chunk["reason"]

    # And a further attempt still sends nothing
    service.submit(service.parse(batch("crashed", 3)), origin="sqs")
    assert ocelot.sent == []


def test_a_chunk_accepted_earlier_is_not_sent_again_after_its_idempotency_record_expired(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given a chunk record saying Ocelot accepted it (and no idempotency record any more)
    runtime.store().finish_chunk(
        ChunkRecord(
            request_id="old",
            index=0,
            status=ChunkStatus.ACCEPTED,
            size=2,
            first_index=0,
            batch_id="b-old",
            message_ids=("m-old-0", "m-old-1"),
        )
    )

    # When the request comes again
    result = service.submit(service.parse(batch("old", 2)), origin="sqs")

    # Then the earlier ids are reported (and stored), and nothing is sent
    assert ocelot.sent == []
    assert [(m.ref, m.message_id) for m in result.messages] == [("ref-0", "m-old-0"), ("ref-1", "m-old-1")]
    assert sorted(i["messageId"] for i in message_items(dynamodb)) == ["m-old-0", "m-old-1"]


# ---- certainly not taken: retried, then not_sent and sendable later ------------------------------------


def test_a_rate_limit_then_success_is_retried(service: SenderService, ocelot: FakeOcelot) -> None:
    # Given a 429 with Retry-After: 0, then acceptance
    ocelot.then(busy(429, "0"))

    # When submitted; Then two calls, the second accepted
    result = service.submit(service.parse(batch("rate", 2)), origin="api")
    assert len(ocelot.sent) == 2
    assert result.status == "accepted"


def test_503_every_time_is_unavailable_not_sent_and_sendable_later(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given Ocelot answering 503 to every attempt (MAX_SEND_ATTEMPTS=3)
    ocelot.then(busy(), busy(), busy())
    request = service.parse(batch("down", 2))

    # When submitted
    with pytest.raises(SubmitFailed) as caught:
        service.submit(request, origin="api")

    # Then it is unavailable, with the Retry-After, after 3 attempts; the chunk is not_sent
    assert (caught.value.kind, caught.value.retry_after) == (FailureKind.UNAVAILABLE, 1.0)
    assert len(ocelot.sent) == 3
    assert caught.value.result is not None
    assert [(c.status, c.size) for c in caught.value.result.chunks] == [("not_sent", 2)]
    assert caught.value.result.status == "incomplete"
    chunk = chunk_item(dynamodb, "down", 0)
    assert chunk is not None
    assert chunk["status"] == "not_sent"

    # And its idempotency record was removed...
    assert scan(dynamodb, IDEMPOTENCY) == []

    # ...so when Ocelot is back, the same request is sent
    result = service.submit(request, origin="api")
    assert len(ocelot.sent) == 4
    assert result.status == "accepted"


def test_after_a_partial_failure_a_retry_sends_only_the_chunks_not_taken(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given chunks of 2: the first accepted, the second refused with 503 three times
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()
    ocelot.then(accept, busy(), busy(), busy())
    request = service.parse(batch("partial", 4))

    # When submitted
    with pytest.raises(SubmitFailed) as caught:
        service.submit(request, origin="sqs")

    # Then the result shows what happened to each chunk so far
    assert caught.value.result is not None
    assert [c.status for c in caught.value.result.chunks] == ["accepted", "not_sent"]
    assert caught.value.result.status == "incomplete"

    # When retried
    result = service.submit(request, origin="sqs")

    # Then only the second chunk went again
    assert [p["messages"][0]["externalId"] for p in ocelot.payloads] == [
        "ref-0",
        "ref-2",
        "ref-2",
        "ref-2",
        "ref-2",
    ]
    assert result.status == "accepted"
    assert [c.status for c in result.chunks] == ["accepted", "accepted"]


def test_a_retry_after_past_the_lambda_s_remaining_time_is_not_waited_for(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given waits of up to 30 s allowed, but only 8 s left (5 s after the 3 s safety margin)
    monkeypatch.setenv("MAX_RETRY_WAIT_SECONDS", "30")
    service = make_service(remaining_ms=8_000)
    ocelot.then(busy(503, "10"))

    # When Ocelot asks for 10 s
    with pytest.raises(SubmitFailed) as caught:
        service.submit(service.parse(batch("late", 1)), origin="api")

    # Then no second attempt is made, and the 10 s are handed on
    assert len(ocelot.sent) == 1
    assert (caught.value.kind, caught.value.retry_after) == (FailureKind.UNAVAILABLE, 10.0)


def test_the_same_retry_after_is_retried_when_the_lambda_has_time(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given the same answer but a minute left (responses does not really sleep)
    monkeypatch.setenv("MAX_RETRY_WAIT_SECONDS", "30")
    service = make_service(remaining_ms=60_000)
    ocelot.then(busy(503, "10"))

    # When submitted; Then it is retried and accepted
    assert service.submit(service.parse(batch("in-time", 1)), origin="api").status == "accepted"
    assert len(ocelot.sent) == 2


def test_with_no_time_left_nothing_is_sent(aws: dict[str, Any], ocelot: FakeOcelot, dynamodb: Any) -> None:
    # Given 5 s left: after the 3 s safety margin, less than a connection may take (3.05 s)
    service = make_service(remaining_ms=5_000)

    # When submitted; Then it is unavailable without any call, and the chunk is not_sent
    with pytest.raises(SubmitFailed) as caught:
        service.submit(service.parse(batch("no-time", 1)), origin="sqs")
    assert caught.value.kind is FailureKind.UNAVAILABLE
    assert ocelot.sent == []
    chunk = chunk_item(dynamodb, "no-time", 0)
    assert chunk is not None
    assert chunk["status"] == "not_sent"


# ---- refused by Ocelot ---------------------------------------------------------------------------------


def test_a_4xx_is_rejected_with_ocelot_s_error_and_can_be_sent_again(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given Ocelot refusing the payload
    ocelot.then(nestjs(400, ["messages.0.to is opted out"], "Bad Request"))
    request = service.parse(batch("refused", 1))

    # When submitted
    with pytest.raises(SubmitFailed) as caught:
        service.submit(request, origin="api")

    # Then Ocelot's error is kept, the chunk is not_sent, and nothing was retried
    assert caught.value.kind is FailureKind.REJECTED
    assert caught.value.ocelot_error is not None
    assert caught.value.ocelot_error.to_wire() == {
        "statusCode": 400,
        "message": ["messages.0.to is opted out"],
        "error": "Bad Request",
    }
    assert len(ocelot.sent) == 1
    chunk = chunk_item(dynamodb, "refused", 0)
    assert chunk is not None
    assert chunk["status"] == "not_sent"

    # And once fixed on Ocelot's side, the same request can go
    assert service.submit(request, origin="api").status == "accepted"
    assert len(ocelot.sent) == 2


def test_a_key_reissued_by_ocelot_support_is_used_without_a_redeploy(
    aws: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given the secret read through Powertools with SECRET_MAX_AGE_SECONDS,
    # and Ocelot taking only the live key
    monkeypatch.setenv("SECRET_MAX_AGE_SECONDS", "120")
    reads: list[dict[str, Any]] = []
    real = parameters.get_secret

    def spy(name: str, **kwargs: Any) -> Any:
        reads.append({"name": name, **kwargs})
        return real(name, **kwargs)

    monkeypatch.setattr(parameters, "get_secret", spy)
    live = {"auth": DEFAULT_AUTH}
    ocelot.default = lambda call: (
        (200, {}, accepted(call.payload))
        if call.authorization == live["auth"]
        else nestjs(401, "Invalid id or api key", "Unauthorized")
    )
    service = make_service()
    assert service.submit(service.parse(batch("before", 1)), origin="api").status == "accepted"

    # When support revokes the key and the operator stores the new one
    live["auth"] = basic_auth("chatbot-uuid", "reissued-key")
    aws["secretsmanager"].put_secret_value(
        SecretId=env["OCELOT_SECRET_ID"],
        SecretString=json.dumps({"chatbotId": "chatbot-uuid", "apiKey": "reissued-key"}),
    )
    result = service.submit(service.parse(batch("after", 1)), origin="api")

    # Then the cached key got a 401, the secret was re-read once, and the new key went through
    assert result.status == "accepted"
    assert [s.authorization for s in ocelot.sent] == [DEFAULT_AUTH, DEFAULT_AUTH, live["auth"]]
    assert [(r["name"], r["max_age"], r["force_fetch"]) for r in reads] == [
        ("ocelot-api", 120, False),
        ("ocelot-api", 120, False),
        ("ocelot-api", 120, True),
    ]


def test_a_secret_that_cannot_be_read_sends_nothing_and_can_be_fixed(
    aws: dict[str, Any], env: dict[str, str], ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given a secret an operator left in the wrong shape
    aws["secretsmanager"].put_secret_value(
        SecretId=env["OCELOT_SECRET_ID"], SecretString='{"chatbotId": "REPLACE_ME"}'
    )
    service = make_service()
    request = service.parse(batch("no-key", 1))

    # When submitted
    with pytest.raises(SubmitFailed) as caught:
        service.submit(request, origin="sqs")

    # Then nothing was sent, and the chunk is not_sent (not left "sending", which would make it unknown)
    assert caught.value.kind is FailureKind.UNAVAILABLE
    assert ocelot.sent == []
    chunk = chunk_item(dynamodb, "no-key", 0)
    assert chunk is not None
    assert chunk["status"] == "not_sent"

    # And once the secret is fixed, the retry sends
    aws["secretsmanager"].put_secret_value(
        SecretId=env["OCELOT_SECRET_ID"], SecretString=json.dumps({"chatbotId": "c", "apiKey": "k"})
    )
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    assert service.submit(request, origin="sqs").status == "accepted"
    assert [s.authorization for s in ocelot.sent] == [basic_auth("c", "k")]


# ---- dry run --------------------------------------------------------------------------------------------


def test_a_dry_run_previews_the_payloads_and_sends_and_stores_nothing(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given chunks of 2 and a dry-run request of 3 messages
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    service = make_service()

    # When submitted
    result = service.submit(service.parse(batch("preview", 3, dryRun=True)), origin="api")

    # Then the preview is exactly what would be sent, chunk by chunk
    wire = [{"to": phone(i), "message": outgoing(i)["text"], "externalId": f"ref-{i}"} for i in range(3)]
    common = {"phoneNumber": "+15550000000", "operatorId": "operator-1"}
    assert result.preview == [{**common, "messages": wire[:2]}, {**common, "messages": wire[2:]}]
    assert (result.status, result.dry_run, result.messages) == ("dry_run", True, [])
    assert [(c.status, c.size) for c in result.chunks] == [("not_sent", 2), ("not_sent", 1)]

    # And nothing was sent or stored
    assert ocelot.sent == []
    assert scan(dynamodb, MESSAGES) == []
    assert scan(dynamodb, IDEMPOTENCY) == []


def test_a_dry_run_does_not_block_the_real_request(service: SenderService, ocelot: FakeOcelot) -> None:
    # Given a dry run of a request; When the real one follows; Then it is sent (once)
    service.submit(service.parse(batch("dry-first", 2, dryRun=True)), origin="api")
    assert service.submit(service.parse(batch("dry-first", 2)), origin="api").status == "accepted"
    assert len(ocelot.sent) == 1


# ---- queue messages --------------------------------------------------------------------------------------


def test_a_queued_request_is_sent(service: SenderService, ocelot: FakeOcelot, dynamodb: Any) -> None:
    # Given a valid queue message; When handled; Then it is sent and recorded as coming from SQS
    result = service.submit_queued(json.dumps(batch("queued", 2)), "sqs-1")
    assert result is not None
    assert result.status == "accepted"
    header = get_item(dynamodb, MESSAGES, "REQ#queued", "#BATCH")
    assert header is not None
    assert header["origin"] == "sqs"


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
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any, body: str, problems: list[dict[str, str]]
) -> None:
    # When a queue message that can never succeed comes in
    assert service.submit_queued(body, "sqs-bad") is None

    # Then it is stored whole with its problems, and nothing is sent
    item = get_item(dynamodb, MESSAGES, "REJECTED#sqs-bad", "#REJECTED")
    assert item is not None
    assert (stored_body(item), item["problems"]) == (body, problems)
    assert ocelot.sent == []


def test_a_queued_conflict_is_rejected_not_retried(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any
) -> None:
    # Given a requestId already sent; When a queue message reuses it with another payload;
    # Then it is kept as rejected (a retry cannot help), not raised, and nothing more is sent
    service.submit_queued(json.dumps(batch("q-conflict", 1)), "sqs-a")
    assert service.submit_queued(json.dumps(batch("q-conflict", 2)), "sqs-b") is None
    item = get_item(dynamodb, MESSAGES, "REJECTED#sqs-b", "#REJECTED")
    assert item is not None
    assert [p["field"] for p in item["problems"]] == ["requestId"]
    assert len(ocelot.sent) == 1


@pytest.mark.parametrize(
    "reply", [busy(), nestjs(401, "Invalid id or api key", "Unauthorized")], ids=["503", "401"]
)
def test_a_queued_request_that_may_succeed_later_raises(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any, reply: Reply
) -> None:
    # Given Ocelot unavailable, or refusing the key; When a queue message is handled;
    # Then it raises (back to the queue for a retry) and is not stored as rejected
    ocelot.then(*[reply] * 3)
    with pytest.raises(SubmitFailed):
        service.submit_queued(json.dumps(batch("later", 1)), "sqs-later")
    assert get_item(dynamodb, MESSAGES, "REJECTED#sqs-later", "#REJECTED") is None


def test_a_rejected_queue_message_is_logged_without_the_keys_it_made_up(
    service: SenderService, ocelot: FakeOcelot, dynamodb: Any, emf: EmfReader
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
    item = get_item(dynamodb, MESSAGES, "REJECTED#sqs-keys", "#REJECTED")
    assert item is not None
    assert item["body"] == body
    assert "messages.0.+15559876543" in [p["field"] for p in item["problems"]]
