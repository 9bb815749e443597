"""The Sender Lambda end to end: API Gateway and SQS events from events/, moto, and a fake Ocelot.

What a caller sees: status codes, JSON bodies (never a stack trace), Retry-After, batchItemFailures.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from urllib3.connection import HTTPConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from functions.sender import app as handler
from ocelot_sms import runtime
from ocelot_sms.contract import SEND_PATH
from ocelot_sms.errors import Unavailable
from ocelot_sms.observability import metrics
from ocelot_sms.store import ChunkRecord, ChunkStatus
from tests.events import load_event, with_body
from tests.unit.support.aws import EmfReader, FakeContext
from tests.unit.support.ocelot import (
    DEFAULT_AUTH,
    FakeOcelot,
    LoopbackOcelot,
    Reply,
    Sent,
    accept,
    basic_auth,
    batch,
    busy,
    closed_port,
    get_item,
    guard_network,
    nestjs,
    ocelot_mock,
    scan,
    short_api_budget,
)

MESSAGES = "messages"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture(autouse=True)
def metrics_namespace(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics() read POWERTOOLS_METRICS_NAMESPACE when the module was imported (at collection, before
    the env fixture); in Lambda the variable is set before import. Flushing needs it."""
    monkeypatch.setattr(metrics, "namespace", env["POWERTOOLS_METRICS_NAMESPACE"])


@pytest.fixture
def ocelot(aws: dict[str, Any]) -> Iterator[FakeOcelot]:
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)


@pytest.fixture
def dynamodb(aws: dict[str, Any]) -> Any:
    return aws["dynamodb"]


def invoke(event: dict[str, Any], context: FakeContext) -> dict[str, Any]:
    return dict(handler.lambda_handler(event, context))


def post(body: Any) -> dict[str, Any]:
    """POST /batches carrying `body` (a str as it is, anything else as JSON)."""
    return with_body(load_event("api_post_batch"), body)


def json_body(response: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response["body"])
    return body


def assert_no_stack_trace(response: dict[str, Any]) -> None:
    assert "Traceback" not in response["body"]
    assert 'File "' not in response["body"]
    assert ".py" not in response["body"]


# ---- the happy path -----------------------------------------------------------------------------------


def test_a_valid_batch_is_sent_and_answered_201_with_every_id(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given events/api_post_batch.json (3 messages)
    # When invoked
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 201 JSON, each message with the id Ocelot returned for it
    assert response["statusCode"] == 201
    assert response["headers"]["Content-Type"] == "application/json"
    body = json_body(response)
    returned = ocelot.sent[0].body
    assert body["requestId"] == "demo-api-0001"
    assert body["status"] == "accepted"
    assert body["batchIds"] == [returned["batchId"]]
    assert [(m["ref"], m["messageId"], m["status"]) for m in body["messages"]] == [
        (f"stu-{i + 1}", returned["messages"][i]["id"], "accepted") for i in range(3)
    ]
    assert ocelot.sent[0].authorization == DEFAULT_AUTH
    # batch header, chunk, 3 messages; the send (of its own) and its one part
    assert len(scan(dynamodb, MESSAGES)) == 1 + 1 + 3 + 2

    # And where to follow the batch: GET /batches/{requestId} on the same host
    assert body["statusUrl"] == "https://127.0.0.1:3000/batches/demo-api-0001"


def test_a_base64_encoded_body_is_read(ocelot: FakeOcelot, lambda_context: FakeContext) -> None:
    # Given the body base64-encoded by API Gateway; When invoked; Then it is read and sent
    event = post(batch("b64", 1))
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert invoke(event, lambda_context)["statusCode"] == 201
    assert len(ocelot.sent) == 1


# ---- validation: 400 / 422 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [load_event("api_post_batch_not_json"), post(""), post("[" * 100_000), post("{'single': 'quotes'}")],
    ids=["not-json-event", "empty", "nested-too-deep", "python-repr"],
)
def test_a_body_that_is_not_json_is_400(
    ocelot: FakeOcelot, lambda_context: FakeContext, event: dict[str, Any]
) -> None:
    # When a body that is not JSON comes in
    response = invoke(event, lambda_context)

    # Then 400 with a JSON error, nothing sent
    assert response["statusCode"] == 400
    assert json_body(response) == {
        "error": "bad_request",
        "message": "the body must be a JSON object",
        "problems": [],
    }
    assert_no_stack_trace(response)
    assert ocelot.sent == []


def test_the_invalid_example_is_422_with_one_problem_per_field(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given events/api_post_batch_invalid.json (bad requestId, bad number, empty and too-long texts)
    # When invoked
    response = invoke(load_event("api_post_batch_invalid"), lambda_context)

    # Then 422 with a JSON list of {field, message}, nothing sent, nothing stored
    assert response["statusCode"] == 422
    body = json_body(response)
    assert (body["error"], body["message"]) == ("invalid_request", "the request has invalid fields")
    assert sorted(p["field"] for p in body["problems"]) == sorted(
        ["requestId", "messages.0.to", "messages.0.text", "messages.1.text"]
    )
    assert all(set(p) == {"field", "message"} and p["message"] for p in body["problems"])
    assert_no_stack_trace(response)
    assert ocelot.sent == []
    assert scan(dynamodb, MESSAGES) == []


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (batch("r", 1) | {"messages": [{"to": "5551234", "text": "hi"}]}, "messages.0.to", "pattern"),
        (
            batch("r", 1) | {"messages": [{"to": "+15551230001", "text": "x" * 2001}]},
            "messages.0.text",
            "2000",
        ),
        (batch("r", 0), "messages", "at least 1"),
        (
            batch("r", 2)
            | {
                "messages": [
                    {"to": "+15551230001", "text": "a", "ref": "s"},
                    {"to": "+15551230002", "text": "b", "ref": "s"},
                ]
            },
            "messages",
            "repeats",
        ),
        (batch("not valid!", 1), "requestId", "pattern"),
        (batch("r", 1) | {"priority": "high"}, "priority", "not permitted"),
        (batch("r", 1) | {"from": "+0123"}, "from", "pattern"),
        ([batch("r", 1)], "body", "valid dictionary"),
    ],
    ids=[
        "e164",
        "text-length",
        "no-messages",
        "duplicate-ref",
        "request-id",
        "unknown-field",
        "from",
        "not-object",
    ],
)
def test_each_invalid_field_is_a_422_problem(
    ocelot: FakeOcelot, lambda_context: FakeContext, body: Any, field: str, says: str
) -> None:
    # Given one invalid field; When posted; Then 422 naming exactly that field, nothing sent
    response = invoke(post(body), lambda_context)
    assert response["statusCode"] == 422
    problems = json_body(response)["problems"]
    assert [p["field"] for p in problems] == [field]
    assert says in problems[0]["message"]
    assert ocelot.sent == []


def test_more_messages_than_max_messages_per_request_is_422(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given MAX_MESSAGES_PER_REQUEST=2
    monkeypatch.setenv("MAX_MESSAGES_PER_REQUEST", "2")

    # When 3 messages are posted; Then 422 on "messages"; 2 messages are fine
    response = invoke(post(batch("too-many", 3)), lambda_context)
    assert response["statusCode"] == 422
    assert json_body(response)["problems"] == [
        {"field": "messages", "message": "Value error, at most 2 messages per request, got 3"}
    ]
    assert invoke(post(batch("two", 2)), lambda_context)["statusCode"] == 201


def test_missing_from_and_operator_without_defaults_is_422(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given no defaults configured (the template's parameters left empty)
    monkeypatch.setenv("DEFAULT_SENDER", "")
    monkeypatch.setenv("DEFAULT_OPERATOR_ID", "")
    body = batch("no-defaults", 1)
    del body["from"], body["operatorId"]

    # When posted; Then both are named
    response = invoke(post(body), lambda_context)
    assert response["statusCode"] == 422
    assert json_body(response)["problems"] == [
        {"field": "from", "message": "required: no default from is configured"},
        {"field": "operatorId", "message": "required: no default operatorId is configured"},
    ]


def test_an_unexpected_error_is_500_without_details(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given storage failing in a way nobody planned for
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom in /var/task/ocelot_sms/store.py with secret-ish detail")

    monkeypatch.setattr(runtime.store(), "put_batch", broken)

    # When a valid batch is posted
    response = invoke(post(batch("boom", 1)), lambda_context)

    # Then a bare 500: no message, no trace, nothing sent
    assert response["statusCode"] == 500
    assert json_body(response) == {"error": "internal_error", "message": "internal error", "problems": []}
    assert "boom" not in response["body"]
    assert_no_stack_trace(response)
    assert ocelot.sent == []


# ---- idempotency: replay, conflict, in progress ---------------------------------------------------------


def test_the_same_request_twice_is_sent_once_and_answered_the_same(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # When the same event is posted twice (a client retry)
    first = invoke(load_event("api_post_batch"), lambda_context)
    second = invoke(load_event("api_post_batch"), lambda_context)

    # Then Ocelot was called once, and both answers are the same
    assert len(ocelot.sent) == 1
    assert (second["statusCode"], json_body(second)) == (first["statusCode"], json_body(first))


def test_the_same_request_id_with_another_payload_is_409_and_not_sent(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given a request already sent
    assert invoke(post(batch("reuse", 2)), lambda_context)["statusCode"] == 201

    # When the same requestId comes with another recipient
    other = batch("reuse", 2)
    other["messages"][0]["to"] = "+15557654321"
    response = invoke(post(other), lambda_context)

    # Then 409 conflict, no Retry-After, nothing more sent
    assert response["statusCode"] == 409
    assert json_body(response)["error"] == "conflict"
    assert "Retry-After" not in response["headers"]
    assert len(ocelot.sent) == 1


def test_a_request_id_whose_first_attempt_sent_nothing_still_refuses_another_payload(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given a request whose every attempt got 503: nothing sent, its idempotency records removed
    ocelot.then(busy(503, "1"), busy(503, "1"), busy(503, "1"))
    assert invoke(post(batch("reuse-unsent", 2)), lambda_context)["statusCode"] == 503

    # When the same requestId comes back with another recipient
    other = batch("reuse-unsent", 2)
    other["messages"][0]["to"] = "+15557654321"
    response = invoke(post(other), lambda_context)

    # Then 409 conflict (the batch record remembers the first payload), and nothing more was sent
    assert response["statusCode"] == 409
    assert json_body(response)["error"] == "conflict"
    assert len(ocelot.sent) == 3


def test_a_request_being_sent_right_now_is_409_with_retry_after(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given a second API call with the same request arriving while the first is talking to Ocelot
    event = post(batch("concurrent", 1))
    meanwhile: list[dict[str, Any]] = []

    def slow_ocelot(call: Sent) -> Reply:
        meanwhile.append(invoke(copy.deepcopy(event), FakeContext()))
        return accept(call)

    ocelot.then(slow_ocelot)

    # When the first completes
    first = invoke(event, lambda_context)

    # Then the second was told to retry later, and the chunk went once
    assert first["statusCode"] == 201
    assert meanwhile[0]["statusCode"] == 409
    assert json_body(meanwhile[0])["error"] == "in_progress"
    assert meanwhile[0]["headers"]["Retry-After"] == "5"
    assert len(ocelot.sent) == 1


# ---- ambiguous outcomes: 202 unknown, never re-sent ------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
        nestjs(500, "Internal server error", "Internal Server Error"),
        (502, {"Content-Type": "text/html"}, "<html>502 Bad Gateway</html>"),
        (200, {}, {"batchId": "b-1", "messages": "not a list"}),
    ],
    ids=["read-timeout", "reset", "500", "502", "2xx-unreadable"],
)
def test_an_ambiguous_outcome_is_202_unknown_and_a_replay_does_not_resend(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any, reply: Any
) -> None:
    # Given Ocelot answering ambiguously
    ocelot.then(reply)

    # When the batch is posted
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 202 with status "unknown" for the chunk and its messages
    assert response["statusCode"] == 202
    body = json_body(response)
    assert body["status"] == "unknown"
    assert [c["status"] for c in body["chunks"]] == ["unknown"]
    assert {m["status"] for m in body["messages"]} == {"unknown"}
    assert all("messageId" not in m or m["messageId"] is None for m in body["messages"])

    # And the chunk item in DynamoDB is unknown
    chunk = get_item(dynamodb, MESSAGES, "REQ#demo-api-0001", "CHUNK#00000")
    assert chunk is not None
    assert chunk["status"] == "unknown"

    # And replaying the request does not call Ocelot again
    again = invoke(load_event("api_post_batch"), lambda_context)
    assert (again["statusCode"], json_body(again)) == (202, body)
    assert len(ocelot.sent) == 1


def test_a_chunk_left_sending_by_a_crash_is_202_unknown_and_not_sent(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given the chunk claimed by an invocation that died mid-send
    runtime.store().claim_chunk(
        ChunkRecord(request_id="demo-api-0001", index=0, status=ChunkStatus.SENDING, size=3, first_index=0)
    )

    # When the request is posted again
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then it reports unknown and sends nothing
    assert response["statusCode"] == 202
    assert json_body(response)["chunks"][0]["status"] == "unknown"
    assert ocelot.sent == []
    chunk = get_item(dynamodb, MESSAGES, "REQ#demo-api-0001", "CHUNK#00000")
    assert chunk is not None
    assert chunk["status"] == "unknown"


# ---- certainly not taken: retried, then 503 ----------------------------------------------------------------


def test_429_then_200_is_retried_and_201(ocelot: FakeOcelot, lambda_context: FakeContext) -> None:
    # Given a 429 with Retry-After: 0, then acceptance; When posted; Then 201 after 2 identical calls
    ocelot.then(busy(429, "0"))
    response = invoke(load_event("api_post_batch"), lambda_context)
    assert response["statusCode"] == 201
    assert len(ocelot.sent) == 2
    assert ocelot.payloads[0] == ocelot.payloads[1]


def test_503_every_time_is_503_with_retry_after_and_a_later_retry_sends(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    ocelot: FakeOcelot,
    lambda_context: FakeContext,
    dynamodb: Any,
) -> None:
    # Given Ocelot down for every attempt (MAX_SEND_ATTEMPTS=3), asking for 2 s (allowed: up to 10 s)
    monkeypatch.setenv("MAX_RETRY_WAIT_SECONDS", "10")
    ocelot.then(busy(503, "2"), busy(503, "2"), busy(503, "2"))

    # When the batch is posted
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 503 with Ocelot's Retry-After, after 3 attempts; the chunk is not_sent
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "2"
    body = json_body(response)
    assert body["error"] == "unavailable"
    assert body["details"]["result"]["chunks"][0]["status"] == "not_sent"
    assert body["details"]["ocelot"] == {"statusCode": 503, "message": "busy", "error": "busy"}
    assert len(ocelot.sent) == 3
    chunk = get_item(dynamodb, MESSAGES, "REQ#demo-api-0001", "CHUNK#00000")
    assert chunk is not None
    assert chunk["status"] == "not_sent"

    # And when the client retries later, the request is sent
    retry = invoke(load_event("api_post_batch"), lambda_context)
    assert retry["statusCode"] == 201
    assert len(ocelot.sent) == 4


def test_a_refused_connection_is_retried_then_503(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: FakeContext,
    connections: list[tuple[str, int]],
) -> None:
    # Given OCELOT_BASE_URL on a loopback port nothing listens on
    port = closed_port()
    monkeypatch.setenv("OCELOT_BASE_URL", f"http://127.0.0.1:{port}")

    # When the batch is posted (responses active: only loopback passes through)
    with ocelot_mock():
        response = invoke(load_event("api_post_batch"), lambda_context)

    # Then every attempt tried to connect, and the answer is 503 with a Retry-After
    assert connections == [("127.0.0.1", port)] * 3
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert "could not connect" in json_body(response)["message"]


def test_a_connection_never_made_is_503(ocelot: FakeOcelot, lambda_context: FakeContext) -> None:
    # Given no TCP connection to Ocelot (urllib3 gave up connecting); When posted; Then 503 with Retry-After
    refused = NewConnectionError(HTTPConnection("ocelot.test"), "Failed to establish a new connection")
    ocelot.then(requests.ConnectionError(MaxRetryError(None, SEND_PATH, refused)))  # type: ignore[arg-type]
    response = invoke(load_event("api_post_batch"), lambda_context)
    assert response["statusCode"] == 503
    assert "Retry-After" in response["headers"]


def test_a_real_retry_after_is_slept_then_201(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    # Given a real server: 429 Retry-After: 1, then acceptance (MAX_RETRY_WAIT_SECONDS=2)
    with ocelot_mock(), LoopbackOcelot(busy(429, "1")) as server:
        monkeypatch.setenv("OCELOT_BASE_URL", server.base_url)

        # When the batch is posted
        response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 201 after two requests about a second apart
    assert response["statusCode"] == 201
    assert len(server.received) == 2
    assert 0.9 <= server.received[1].at - server.received[0].at < 10.0


def test_a_retry_after_over_the_limit_is_not_slept_and_passed_on(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    # Given a real server asking for 30 s while MAX_RETRY_WAIT_SECONDS=2
    with ocelot_mock(), LoopbackOcelot(busy(429, "30")) as server:
        monkeypatch.setenv("OCELOT_BASE_URL", server.base_url)
        started = time.monotonic()

        # When the batch is posted
        response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 503 at once, asking the client for Ocelot's 30 s
    assert time.monotonic() - started < 5.0
    assert len(server.received) == 1
    assert (response["statusCode"], response["headers"]["Retry-After"]) == (503, "30")


def test_a_retry_after_past_the_remaining_lambda_time_is_not_slept(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot
) -> None:
    # Given 25 s left (22 s after the safety margin, time for one attempt of up to 18.05 s), waits up
    # to 30 s allowed, Ocelot asking for 10 s
    monkeypatch.setenv("MAX_RETRY_WAIT_SECONDS", "30")
    ocelot.then(busy(503, "10"), busy(503, "10"))

    # When the batch is posted
    response = invoke(load_event("api_post_batch"), FakeContext(remaining_ms=25_000))

    # Then one attempt only, and 503 with the 10 s
    assert len(ocelot.sent) == 1
    assert (response["statusCode"], response["headers"]["Retry-After"]) == (503, "10")


# ---- refused by Ocelot: 502 ------------------------------------------------------------------------------


def test_ocelot_s_400_is_502_carrying_its_error_body(ocelot: FakeOcelot, lambda_context: FakeContext) -> None:
    # Given Ocelot's NestJS validation error
    error = {
        "statusCode": 400,
        "message": ["messages.0.to is opted out", "phoneNumber inactive"],
        "error": "Bad Request",
    }
    ocelot.then((400, {}, error))

    # When posted
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 502 with Ocelot's body as it was, and the chunk not sent
    assert response["statusCode"] == 502
    body = json_body(response)
    assert body["error"] == "rejected"
    assert body["details"]["ocelot"] == error
    assert body["details"]["result"]["chunks"][0]["status"] == "not_sent"
    assert "Retry-After" not in response["headers"]
    assert len(ocelot.sent) == 1


def test_ocelot_s_401_is_502_when_the_secret_has_not_changed(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given Ocelot refusing the key, and no new key in the secret; When posted;
    # Then 502 carrying Ocelot's error, after one call
    ocelot.then(nestjs(401, "Invalid id or api key", "Unauthorized"))
    response = invoke(load_event("api_post_batch"), lambda_context)
    assert response["statusCode"] == 502
    assert json_body(response)["details"]["ocelot"] == {
        "statusCode": 401,
        "message": "Invalid id or api key",
        "error": "Unauthorized",
    }
    assert len(ocelot.sent) == 1


def test_a_rotated_key_is_picked_up_on_401_without_a_redeploy(
    aws: dict[str, Any], env: dict[str, str], ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given a container that already cached the old key
    assert invoke(post(batch("warm", 1)), lambda_context)["statusCode"] == 201

    # When support reissues the key, the operator stores it, and the next batch comes
    new_auth = basic_auth("chatbot-uuid", "reissued-key")
    ocelot.default = lambda call: (
        accept(call)
        if call.authorization == new_auth
        else nestjs(401, "Invalid id or api key", "Unauthorized")
    )
    aws["secretsmanager"].put_secret_value(
        SecretId=env["OCELOT_SECRET_ID"],
        SecretString=json.dumps({"chatbotId": "chatbot-uuid", "apiKey": "reissued-key"}),
    )
    response = invoke(post(batch("rotated", 1)), lambda_context)

    # Then the 401 made it re-read the secret and send again with the new key
    assert response["statusCode"] == 201
    assert [s.authorization for s in ocelot.sent] == [DEFAULT_AUTH, DEFAULT_AUTH, new_auth]


def test_the_placeholder_secret_is_503_naming_it_with_a_metric_and_nothing_sent(
    aws: dict[str, Any],
    env: dict[str, str],
    ocelot: FakeOcelot,
    lambda_context: FakeContext,
    emf: EmfReader,
) -> None:
    # Given the Ocelot secret as the stack creates it: a placeholder chatbotId, a generated key
    aws["secretsmanager"].put_secret_value(
        SecretId=env["OCELOT_SECRET_ID"],
        SecretString=json.dumps({"chatbotId": "REPLACE_ME", "apiKey": "Zx81yGq0aT3mW7bK2nP5sV9dF4hJ6cL1"}),
    )

    # When a batch is posted
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 503 saying which secret holds what, and what to put in it; Ocelot was never called
    assert response["statusCode"] == 503
    body = json_body(response)
    assert body["error"] == "not_configured"
    assert "'ocelot-api' still holds a placeholder chatbotId" in body["message"]
    assert '{"chatbotId": "<your chatbot' in body["message"]
    assert body["details"]["result"]["chunks"][0]["status"] == "not_sent"
    assert int(response["headers"]["Retry-After"]) >= 60
    assert ocelot.sent == []
    # And the alarm's metric and the line that tells the operator, without the key itself
    assert emf.read()["OcelotSecretNotSet"] == 1
    logged = "\n".join(emf.lines)
    assert "the Ocelot secret is not set" in logged
    assert "Zx81yGq0aT3mW7bK2nP5sV9dF4hJ6cL1" not in logged + response["body"]

    # And once the operator has put the real credentials in it, the same request is sent at once
    aws["secretsmanager"].put_secret_value(
        SecretId=env["OCELOT_SECRET_ID"],
        SecretString=json.dumps({"chatbotId": "chatbot-uuid", "apiKey": "real-key"}),
    )
    assert invoke(load_event("api_post_batch"), lambda_context)["statusCode"] == 201
    assert [s.authorization for s in ocelot.sent] == [basic_auth("chatbot-uuid", "real-key")]


# ---- dry run ---------------------------------------------------------------------------------------------


def test_a_dry_run_is_200_with_the_preview_and_nothing_sent_or_stored(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given events/api_post_batch_dry_run.json
    # When invoked
    response = invoke(load_event("api_post_batch_dry_run"), lambda_context)

    # Then 200 with the exact Ocelot payload, and nothing sent or stored anywhere
    assert response["statusCode"] == 200
    body = json_body(response)
    assert (body["status"], body["dryRun"]) == ("dry_run", True)
    assert body["preview"] == {
        "ocelotRequests": 1,
        "messages": 3,
        "sampleMessages": 3,
        "sample": {
            "phoneNumber": "+15550000000",
            "operatorId": "operator-1",
            "messages": [
                {
                    "to": "+15551230001",
                    "message": "Reminder: registration closes Friday.",
                    "externalId": "stu-1",
                },
                {
                    "to": "+15551230002",
                    "message": "Reminder: registration closes Friday.",
                    "externalId": "stu-2",
                },
                {"to": "+15551230010", "message": "Your advisor meeting is at 10am.", "externalId": "stu-3"},
            ],
        },
    }
    assert ocelot.sent == []
    assert scan(dynamodb, MESSAGES) == []
    assert scan(dynamodb, "idempotency") == []


def test_a_dry_run_of_1000_long_non_ascii_texts_answers_far_under_lambda_s_6_mb(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given 1,000 messages of 2,000 characters outside ASCII (2 MB of Cyrillic and emoji as UTF-8)
    text = ("Запис на курс закривається в п'ятницю 📚 " * 60)[:2000]
    body = batch("dry-big", 1000) | {"dryRun": True}
    for message in body["messages"]:
        message["text"] = text

    # When the dry run is posted
    response = invoke(post(body), lambda_context)

    # Then 200 with the counts and a sample, in UTF-8 JSON as written (no \u escapes), small enough to
    # leave Lambda's response limit (6 MB, counted after the runtime's own JSON encoding) far behind
    assert response["statusCode"] == 200
    answer = json_body(response)
    assert answer["preview"]["ocelotRequests"] == 10
    assert answer["preview"]["messages"] == 1000
    assert answer["preview"]["sample"]["messages"][0]["message"] == text
    assert len(answer["preview"]["sample"]["messages"]) == answer["preview"]["sampleMessages"] == 5
    assert "\\u" not in response["body"]
    assert len(json.dumps(response, ensure_ascii=False).encode()) < 100_000
    assert ocelot.sent == []


# ---- SQS ---------------------------------------------------------------------------------------------------


def sqs_record(template: dict[str, Any], message_id: str, body: dict[str, Any] | str) -> dict[str, Any]:
    record = copy.deepcopy(template)
    record["messageId"] = message_id
    record["receiptHandle"] = f"rh-{message_id}"
    record["body"] = body if isinstance(body, str) else json.dumps(body)
    return record


def test_sqs_only_the_record_that_hit_a_503_is_a_batch_item_failure(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given events/sqs_batch_with_bad_record.json (valid, not JSON, invalid)
    # plus a record Ocelot will refuse with 503
    event = load_event("sqs_batch_with_bad_record")
    down = batch("demo-sqs-0104", 1) | {"messages": [{"to": "+15559990104", "text": "hi", "ref": "x"}]}
    event["Records"].append(sqs_record(event["Records"][0], "sqs-msg-0104", down))
    ocelot.default = lambda call: (
        busy() if call.payload["messages"][0]["to"] == "+15559990104" else accept(call)
    )

    # When the batch is processed
    response = invoke(event, lambda_context)

    # Then only the 503 record comes back to the queue
    assert response == {"batchItemFailures": [{"itemIdentifier": "sqs-msg-0104"}]}

    # And the valid one was sent once, the 503 one tried MAX_SEND_ATTEMPTS times
    assert [p["messages"][0]["to"] for p in ocelot.payloads] == ["+15551230001"] + ["+15559990104"] * 3

    # And the two that can never succeed are kept with their problems, not retried
    not_json = get_item(dynamodb, MESSAGES, "REJECTED#sqs-msg-0102", "#REJECTED")
    invalid = get_item(dynamodb, MESSAGES, "REJECTED#sqs-msg-0103", "#REJECTED")
    assert not_json is not None
    assert invalid is not None
    assert (not_json["body"], not_json["problems"]) == (
        "{not json",
        [{"field": "body", "message": "not valid JSON"}],
    )
    assert [p["field"] for p in invalid["problems"]] == ["messages.0.to"]
    assert get_item(dynamodb, MESSAGES, "REJECTED#sqs-msg-0101", "#REJECTED") is None
    assert get_item(dynamodb, MESSAGES, "REJECTED#sqs-msg-0104", "#REJECTED") is None


def test_sqs_valid_records_use_the_configured_defaults(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given events/sqs_batch.json: the second record has no from/operatorId
    response = invoke(load_event("sqs_batch"), lambda_context)

    # Then both are sent, the second with the defaults
    assert response == {"batchItemFailures": []}
    assert [p["messages"][0]["externalId"] for p in ocelot.payloads] == ["stu-1", "stu-9"]
    assert (ocelot.payloads[1]["phoneNumber"], ocelot.payloads[1]["operatorId"]) == (
        "+15550000000",
        "operator-1",
    )
    header = get_item(dynamodb, MESSAGES, "REQ#demo-sqs-0002", "#BATCH")
    assert header is not None
    assert header["origin"] == "sqs"


def test_sqs_without_defaults_rejects_the_record_that_needs_them(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    ocelot: FakeOcelot,
    lambda_context: FakeContext,
    dynamodb: Any,
) -> None:
    # Given no defaults configured; When events/sqs_batch.json is handled;
    # Then the record without from/operatorId is rejected with both problems, the other is sent
    monkeypatch.setenv("DEFAULT_SENDER", "")
    monkeypatch.setenv("DEFAULT_OPERATOR_ID", "")
    response = invoke(load_event("sqs_batch"), lambda_context)
    assert response == {"batchItemFailures": []}
    assert len(ocelot.sent) == 1
    item = get_item(dynamodb, MESSAGES, "REJECTED#sqs-msg-0002", "#REJECTED")
    assert item is not None
    assert [p["field"] for p in item["problems"]] == ["from", "operatorId"]


def test_sqs_duplicates_and_redeliveries_are_not_sent_again(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given the same request twice in one batch (a duplicate message), then the whole batch redelivered
    event = load_event("sqs_batch")
    first = event["Records"][0]
    event["Records"].append(sqs_record(first, "sqs-msg-dup", first["body"]))

    # When processed twice
    assert invoke(event, lambda_context) == {"batchItemFailures": []}
    assert invoke(copy.deepcopy(event), lambda_context) == {"batchItemFailures": []}

    # Then each distinct request went to Ocelot once
    assert sorted(p["messages"][0]["externalId"] for p in ocelot.payloads) == ["stu-1", "stu-9"]


def test_sqs_a_reused_request_id_is_rejected_not_retried(
    ocelot: FakeOcelot, lambda_context: FakeContext, dynamodb: Any
) -> None:
    # Given a second record reusing the first one's requestId with another payload; When handled;
    # Then it is kept as rejected, not returned to the queue, and only the first is sent
    event = load_event("sqs_batch")
    first = event["Records"][0]
    event["Records"] = [
        first,
        sqs_record(first, "sqs-msg-conflict", json.loads(first["body"]) | {"operatorId": "other"}),
    ]
    assert invoke(event, lambda_context) == {"batchItemFailures": []}
    assert len(ocelot.sent) == 1
    item = get_item(dynamodb, MESSAGES, "REJECTED#sqs-msg-conflict", "#REJECTED")
    assert item is not None
    assert [p["field"] for p in item["problems"]] == ["requestId"]


def test_sqs_a_record_ocelot_refuses_is_retried_through_the_queue(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given Ocelot refusing the second record's chunk (a 4xx an operator may fix: an inactive number)
    ocelot.default = lambda call: (
        nestjs(403, "phone number inactive", "Forbidden")
        if call.payload["messages"][0]["externalId"] == "stu-9"
        else accept(call)
    )
    response = invoke(load_event("sqs_batch"), lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "sqs-msg-0002"}]}


def test_a_failure_without_a_partial_result_is_answered_without_details(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    # Given the service failing before any chunk was tried, with no Retry-After of Ocelot's
    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise Unavailable("Ocelot credentials unavailable: CredentialsError")

    monkeypatch.setattr(runtime.sender_service(), "submit", unavailable)

    # When a batch is posted
    response = invoke(post(batch("early", 1)), lambda_context)

    # Then 503 with the default Retry-After and no "details"
    assert (response["statusCode"], response["headers"]["Retry-After"]) == (503, "1")
    assert json_body(response) == {
        "error": "unavailable",
        "message": "Ocelot credentials unavailable: CredentialsError",
        "problems": [],
    }


def test_unknown_and_sent_messages_are_counted_in_metrics(
    ocelot: FakeOcelot, lambda_context: FakeContext, emf: EmfReader
) -> None:
    # Given chunk 1 accepted and chunk 2 timing out (chunks of 100)
    ocelot.then_for("ref-100", requests.ReadTimeout("timed out"))

    # When 150 messages are posted
    response = invoke(post(batch("counted", 150)), lambda_context)

    # Then the metrics an unknown-outcome alarm needs were emitted
    assert response["statusCode"] == 202
    counted = emf.read()
    assert counted["MessagesSent"] == 100
    assert counted["ChunksUnknown"] == 1
    assert counted["MessagesUnknown"] == 50
    assert counted["BatchesSubmitted"] == 1


# ---- the API budget: 202 with what is pending on the send queue ---------------------------------------


def test_chunks_not_started_in_the_api_s_time_are_202_pending_with_the_status_url(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given an API budget that lets two chunks start and not the next two, and the send queue in moto
    queue_url = aws_queue(aws)
    short_api_budget(monkeypatch, ocelot)
    monkeypatch.setenv("SEND_QUEUE_URL", queue_url)
    event = post(batch("pending-api", 4))
    event["headers"]["x-forwarded-proto"] = "https"
    event["headers"]["host"] = "abc123.execute-api.us-east-1.amazonaws.com"

    # When posted
    response = invoke(event, lambda_context)

    # Then 202: two chunks accepted, two pending, and where to follow them
    assert response["statusCode"] == 202
    body = json_body(response)
    assert body["status"] == "pending"
    assert [c["status"] for c in body["chunks"]] == ["accepted", "accepted", "pending", "pending"]
    url = "https://abc123.execute-api.us-east-1.amazonaws.com/batches/pending-api"
    assert (body["statusUrl"], response["headers"]["Location"]) == (url, url)

    # And the same request is on the send queue: handled from there, it sends the other two
    [message] = aws["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    record = {"messageId": "sqs-pending", "body": message["Body"], "receiptHandle": "rh", "attributes": {}}
    record |= {"eventSource": "aws:sqs", "messageAttributes": {}, "md5OfBody": "", "awsRegion": "us-east-1"}
    assert invoke({"Records": [record]}, FakeContext()) == {"batchItemFailures": []}
    assert sorted(p["messages"][0]["externalId"] for p in ocelot.payloads) == [f"ref-{i}" for i in range(4)]


def test_without_a_send_queue_what_the_api_cannot_start_is_503_not_sent(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given the same slow Ocelot and short API budget, and no send queue configured
    short_api_budget(monkeypatch, ocelot)
    monkeypatch.delenv("SEND_QUEUE_URL", raising=False)

    # When posted; Then 503: the chunks not started are not_sent, saying why, and sendable again
    response = invoke(post(batch("no-queue-api", 4)), lambda_context)
    assert response["statusCode"] == 503
    chunks = json_body(response)["details"]["result"]["chunks"]
    assert [c["status"] for c in chunks] == ["accepted", "accepted", "not_sent", "not_sent"]
    assert "no send queue is configured" in chunks[2]["reason"]


def aws_queue(aws: dict[str, Any]) -> str:
    import boto3

    aws["sqs"] = boto3.client("sqs")
    url: str = aws["sqs"].create_queue(QueueName="send-queue")["QueueUrl"]
    return url


@pytest.mark.parametrize(
    ("raw_path", "stage", "method", "status"),
    [
        ("/batches", "$default", "POST", 201),
        ("/prod/batches", "prod", "POST", 201),
        ("/batches", "$default", "GET", 404),
        ("/batches/x", "$default", "POST", 404),
        ("/other/batches", "$default", "POST", 404),
    ],
)
def test_only_post_batches_is_served(
    ocelot: FakeOcelot, lambda_context: FakeContext, raw_path: str, stage: str, method: str, status: int
) -> None:
    # Given the valid example on another path, stage or method
    event = load_event("api_post_batch")
    event["rawPath"] = raw_path
    event["requestContext"]["stage"] = stage
    event["requestContext"]["http"]["method"] = method

    # When invoked; Then only POST /batches (on any stage) is served, anything else is a JSON 404
    response = invoke(event, lambda_context)
    assert response["statusCode"] == status
    if status == 404:
        assert json_body(response) == {"error": "not_found", "message": "no such route", "problems": []}
    else:
        prefix = "" if stage == "$default" else f"/{stage}"
        assert json_body(response)["statusUrl"].endswith(f"127.0.0.1:3000{prefix}/batches/demo-api-0001")


# ---- hardening ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["inf", "1e400", "99999999999999999999", "-inf", "nan"])
def test_an_unbounded_retry_after_is_capped_never_a_crash(
    ocelot: FakeOcelot, lambda_context: FakeContext, header: str
) -> None:
    # Given Ocelot answering 503 to every attempt with an absurd Retry-After
    ocelot.default = lambda call: busy(503, header)

    # When the batch is posted
    response = invoke(load_event("api_post_batch"), lambda_context)

    # Then 503 with a Retry-After of at most an hour (none for one that says nothing), never a crash
    assert response["statusCode"] == 503
    expected = {"-inf": "1", "nan": "1"}.get(header, "3600")
    assert response["headers"]["Retry-After"] == expected
    assert json_body(response)["details"]["result"]["chunks"][0]["status"] == "not_sent"


def test_a_retry_after_given_as_an_http_date_is_passed_on_in_seconds(
    ocelot: FakeOcelot, lambda_context: FakeContext
) -> None:
    # Given Ocelot asking to come back at a time 40 s from now (longer than the Sender waits)
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    ocelot.default = lambda call: busy(429, when)

    # When the batch is posted; Then 503 asking the caller for those 40 s
    response = invoke(load_event("api_post_batch"), lambda_context)
    assert response["statusCode"] == 503
    assert 38 <= int(response["headers"]["Retry-After"]) <= 41
    assert len(ocelot.sent) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "Registration closes\x07 Friday",
            "control character (only tabs and newlines are allowed), U+0007 at position 19",
        ),
        ("Pay \u202e0001$ now", "bidirectional control (RIGHT-TO-LEFT OVERRIDE), U+202E at position 4"),
        ("isolate \u2066x\u2069", "bidirectional control (LEFT-TO-RIGHT ISOLATE), U+2066 at position 8"),
        ("C1 \x9b[31m", "control character (only tabs and newlines are allowed), U+009B at position 3"),
    ],
    ids=["bell", "rlo", "isolate", "c1-csi"],
)
def test_a_text_with_control_or_bidirectional_characters_is_422_for_its_message(
    ocelot: FakeOcelot, lambda_context: FakeContext, text: str, says: str
) -> None:
    # Given a batch whose second text holds the character, the others tabs and newlines
    body = batch("controls", 3)
    body["messages"][0]["text"] = "Line one\nLine two\r\n\tindented"
    body["messages"][1]["text"] = text

    # When posted; Then 422 naming that message's text and the character, and nothing sent
    response = invoke(post(body), lambda_context)
    assert response["statusCode"] == 422
    assert json_body(response)["problems"] == [{"field": "messages.1.text", "message": f"contains a {says}"}]
    assert ocelot.sent == []


# ---- what a path imports --------------------------------------------------------------------------

_IMPORTS_PROBE = """
import json, sys
from functions.sender import app
from tests.events import load_event, with_body
from tools.local.lambda_context import LambdaContext
event = load_event("api_post_batch")
invalid = with_body(event, {"requestId": "r", "messages": [{"to": "555", "text": "x"}]})
dry = with_body(event, {**json.loads(event["body"]), "dryRun": True})
context = LambdaContext("sender", 256, 90, "us-east-1")
statuses = [app.lambda_handler(e, context)["statusCode"] for e in (invalid, dry)]
heavy = ("boto3", "aws_lambda_powertools.utilities.idempotency")
print(json.dumps({"statuses": statuses, "imported": [m for m in heavy if m in sys.modules]}))
"""


def test_an_invalid_request_and_a_dry_run_import_no_boto3_and_no_idempotency(env: dict[str, str]) -> None:
    # Given a fresh interpreter, as a cold Lambda container is
    # When it answers an invalid request and a dry run
    probe = [sys.executable, "-c", _IMPORTS_PROBE]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    # Then both were answered, and neither boto3 nor the idempotency machinery was imported for them
    assert seen == {"statuses": [422, 200], "imported": []}
