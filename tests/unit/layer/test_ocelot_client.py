"""HttpOcelotClient: the one rule is "send again only when Ocelot certainly did not take the request".

Ocelot's HTTP is `responses` (unregistered URLs raise), except where real sockets on 127.0.0.1 are
needed to show urllib3's own behaviour (sleeping for Retry-After, refused connections).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from urllib3.connection import HTTPConnection
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ProtocolError
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from ocelot_sms.contract import SEND_PATH, SendRequest
from ocelot_sms.credentials import OCELOT_SECRET_SHAPE, CredentialsError, CredentialsNotSet, OcelotCredentials
from ocelot_sms.ocelot_client import (
    RETRY_AFTER_CAP_SECONDS,
    DeadlineRetry,
    HttpOcelotClient,
    OcelotNotConfigured,
    OcelotOutcomeUnknown,
    OcelotRejected,
    OcelotUnavailable,
    OutOfTime,
    parse_retry_after,
)
from tests.unit.support.aws import OCELOT_URL
from tests.unit.support.ocelot import (
    DEFAULT_AUTH,
    DROP,
    FakeOcelot,
    Hang,
    LoopbackOcelot,
    basic_auth,
    busy,
    closed_port,
    guard_network,
    nestjs,
    ocelot_mock,
)

OLD = OcelotCredentials("chatbot-uuid", "api-key-secret-value")
NEW = OcelotCredentials("chatbot-uuid", "reissued-key")


@dataclass
class Keys:
    """The credentials callable the client is given: records each read and whether it was forced."""

    cached: OcelotCredentials = OLD
    fresh: OcelotCredentials | Exception = OLD
    reads: list[bool] = field(default_factory=list)
    broken: Exception | None = None

    def __call__(self, force_fetch: bool) -> OcelotCredentials:
        self.reads.append(force_fetch)
        if self.broken is not None:
            raise self.broken
        if not force_fetch:
            return self.cached
        if isinstance(self.fresh, Exception):
            raise self.fresh
        return self.fresh


def wire(count: int = 2) -> SendRequest:
    return SendRequest.model_validate(
        {
            "phoneNumber": "+15550000000",
            "operatorId": "operator-1",
            "messages": [
                {"to": f"+1555123000{i}", "message": f"text {i}", "externalId": f"ref-{i}"}
                for i in range(count)
            ],
        }
    )


def soon(seconds: float = 60.0) -> float:
    return time.monotonic() + seconds


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every real connection attempt; any to a non-loopback address fails the test."""
    return guard_network(monkeypatch)


@pytest.fixture
def ocelot() -> Iterator[FakeOcelot]:
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def client(keys: Keys) -> HttpOcelotClient:
    # A trailing slash on the base URL must not double the path's.
    return HttpOcelotClient(OCELOT_URL + "/", keys, max_attempts=3, max_retry_wait=2.0, backoff_factor=0.01)


# ---- success -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
def test_a_2xx_with_ids_is_read(ocelot: FakeOcelot, client: HttpOcelotClient, status: int) -> None:
    # Given Ocelot accepting the batch
    ocelot.then(
        (
            status,
            {},
            {
                "batchId": "b-1",
                "messages": [
                    {"id": "m-1", "to": "+15551230000"},
                    {"id": "m-2", "to": "+15551230001", "extra": 1},
                ],
            },
        )
    )

    # When one chunk is sent
    response = client.send(wire(), soon())

    # Then the ids come back in request order
    assert response.batch_id == "b-1"
    assert [m.message_id for m in response.messages] == ["m-1", "m-2"]


def test_the_request_is_the_documented_wire_shape_with_basic_auth(
    ocelot: FakeOcelot, client: HttpOcelotClient
) -> None:
    # Given Ocelot accepting
    # When a chunk is sent
    client.send(wire(2), soon())

    # Then one POST to {base}/api/v1/sms/send/ carried the JSON body and base64(chatbotId:apiKey)
    assert len(ocelot.sent) == 1
    assert ocelot.sent[0].authorization == DEFAULT_AUTH
    assert ocelot.payloads[0] == {
        "phoneNumber": "+15550000000",
        "operatorId": "operator-1",
        "messages": [
            {"to": "+15551230000", "message": "text 0", "externalId": "ref-0"},
            {"to": "+15551230001", "message": "text 1", "externalId": "ref-1"},
        ],
    }
    request = ocelot.mock.calls[0].request
    assert request.url == OCELOT_URL + SEND_PATH
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"


# ---- outcomes that may have reached Ocelot: unknown, never retried ---------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
        requests.exceptions.ChunkedEncodingError("connection broken mid-body"),
        (500, {}, {"statusCode": 500, "message": "Internal server error"}),
        (502, {"Content-Type": "text/html"}, "<html>Bad gateway</html>"),
        (504, {}, ""),
        (200, {"Content-Type": "text/html"}, "<html>ok?</html>"),
        (201, {}, {"batchId": "b-1"}),  # no per-message ids
        (200, {}, {"messages": []}),  # no batch id
    ],
    ids=[
        "read-timeout",
        "reset-after-send",
        "broken-body",
        "500",
        "502-html",
        "504",
        "2xx-html",
        "no-ids",
        "no-batch",
    ],
)
def test_an_outcome_ocelot_may_have_taken_is_unknown_and_sent_once(
    ocelot: FakeOcelot, client: HttpOcelotClient, reply: object
) -> None:
    # Given Ocelot answering ambiguously
    ocelot.then(reply)  # type: ignore[arg-type]

    # When a chunk is sent; Then the outcome is unknown and no second request went out
    with pytest.raises(OcelotOutcomeUnknown):
        client.send(wire(), soon())
    assert len(ocelot.sent) == 1


def test_an_unknown_5xx_keeps_ocelot_s_error(ocelot: FakeOcelot, client: HttpOcelotClient) -> None:
    # Given a NestJS 500; When sent; Then unknown, with Ocelot's status and message kept
    ocelot.then(nestjs(500, "Internal server error", "Internal Server Error"))
    with pytest.raises(OcelotOutcomeUnknown) as caught:
        client.send(wire(), soon())
    assert caught.value.status_code == 500
    assert caught.value.body is not None
    assert caught.value.body.problems == ["Internal server error"]


# ---- outcomes Ocelot certainly did not take: retried, then unavailable ------------------------------


def test_429_with_retry_after_then_200_is_retried_once(ocelot: FakeOcelot, client: HttpOcelotClient) -> None:
    # Given a rate limit, then acceptance
    ocelot.then((429, {"Retry-After": "0"}, nestjs(429, "Too Many Requests", "Too Many Requests")[2]))

    # When a chunk is sent
    response = client.send(wire(), soon())

    # Then the same payload went twice and the second answer is the result
    assert len(ocelot.sent) == 2
    assert ocelot.payloads[0] == ocelot.payloads[1]
    assert len(response.messages) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retryable_status_until_attempts_run_out_is_unavailable(
    ocelot: FakeOcelot, client: HttpOcelotClient, status: int
) -> None:
    # Given Ocelot refusing every attempt with a Retry-After within the allowed wait
    ocelot.then(*[(status, {"Retry-After": "1"}, nestjs(status, "busy", "busy")[2])] * 5)

    # When a chunk is sent
    with pytest.raises(OcelotUnavailable) as caught:
        client.send(wire(), soon())

    # Then max_attempts (3) were made, and the last answer's Retry-After and body are reported
    assert len(ocelot.sent) == 3
    assert (caught.value.status_code, caught.value.retry_after) == (status, 1.0)
    assert caught.value.body is not None
    assert caught.value.body.problems == ["busy"]


def test_a_retry_after_longer_than_the_longest_wait_is_not_waited_for(
    ocelot: FakeOcelot, client: HttpOcelotClient
) -> None:
    # Given Ocelot asking for 30 s while MAX_RETRY_WAIT is 2 s
    ocelot.then((429, {"Retry-After": "30"}, ""), (200, {}, "unused"))

    # When a chunk is sent
    with pytest.raises(OcelotUnavailable) as caught:
        client.send(wire(), soon())

    # Then it gives up at once and hands the 30 s on to the caller
    assert len(ocelot.sent) == 1
    assert caught.value.retry_after == 30.0


def test_a_retry_after_past_the_deadline_is_not_waited_for(ocelot: FakeOcelot, keys: Keys) -> None:
    # Given a generous wait limit but only 5 s left (an attempt may take 3 s), and Ocelot asking for 10 s
    client = HttpOcelotClient(
        OCELOT_URL, keys, connect_timeout=1.0, read_timeout=2.0, max_attempts=3, max_retry_wait=30.0
    )
    ocelot.then((503, {"Retry-After": "10"}, ""), (200, {}, "unused"))

    # When a chunk is sent
    with pytest.raises(OcelotUnavailable) as caught:
        client.send(wire(), soon(5.0))

    # Then no second attempt is made
    assert len(ocelot.sent) == 1
    assert caught.value.retry_after == 10.0


def test_the_same_retry_after_is_waited_for_when_time_allows(ocelot: FakeOcelot, keys: Keys) -> None:
    # Given the same answer as above but a minute left (responses does not really sleep)
    client = HttpOcelotClient(OCELOT_URL, keys, connect_timeout=1.0, max_attempts=3, max_retry_wait=30.0)
    ocelot.then((503, {"Retry-After": "10"}, ""))

    # When a chunk is sent; Then it is retried and succeeds
    assert client.send(wire(), soon(60.0)).batch_id
    assert len(ocelot.sent) == 2


@pytest.mark.parametrize(
    ("header", "expected"), [(None, None), ("7", 7.0), ("soon", None), ("-3", 0.0), ("0", 0.0)]
)
def test_an_unreadable_retry_after_still_means_unavailable(
    ocelot: FakeOcelot, client: HttpOcelotClient, header: str | None, expected: float | None
) -> None:
    # Given a 503 whose Retry-After is absent, a number, or garbage
    headers = {"Retry-After": header} if header is not None else {}
    ocelot.then(*[(503, headers, "")] * 3)

    # When a chunk is sent
    with pytest.raises(OcelotUnavailable) as caught:
        client.send(wire(), soon())

    # Then it is a certain "not taken" (never unknown), retried like any 503 unless it asks too much
    assert caught.value.retry_after == expected
    assert len(ocelot.sent) == (1 if expected == 7.0 else 3)


def test_too_little_time_left_sends_nothing(ocelot: FakeOcelot, client: HttpOcelotClient) -> None:
    # Given less time left than a connection may take
    # When a chunk is sent; Then it is unavailable before any request
    with pytest.raises(OcelotUnavailable, match="not enough time"):
        client.send(wire(), soon(1.0))
    assert ocelot.sent == []


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectTimeout("connect timed out"),
        requests.ConnectionError(
            MaxRetryError(None, SEND_PATH, NewConnectionError(HTTPConnection("ocelot.test"), "refused"))  # type: ignore[arg-type]
        ),
        requests.ConnectionError(MaxRetryError(None, SEND_PATH, ConnectTimeoutError("connect timeout"))),  # type: ignore[arg-type]
    ],
    ids=["connect-timeout", "refused", "max-retries-connect-timeout"],
)
def test_no_connection_is_unavailable(ocelot: FakeOcelot, client: HttpOcelotClient, error: Exception) -> None:
    # Given no TCP connection made; When sent; Then unavailable (certainly not taken)
    ocelot.then(error)
    with pytest.raises(OcelotUnavailable, match="could not connect"):
        client.send(wire(), soon())


def test_a_connection_error_without_a_connect_failure_inside_is_unknown(
    ocelot: FakeOcelot, client: HttpOcelotClient
) -> None:
    # Given a MaxRetryError whose cause is not a connect failure (e.g. TLS broke mid-request)
    ocelot.then(requests.ConnectionError(MaxRetryError(None, SEND_PATH, ProtocolError("broken"))))  # type: ignore[arg-type]

    # Then it may have been taken
    with pytest.raises(OcelotOutcomeUnknown):
        client.send(wire(), soon())


# ---- refused by Ocelot: 4xx ---------------------------------------------------------------------------


def test_a_400_is_rejected_with_ocelot_s_validation_messages(
    ocelot: FakeOcelot, client: HttpOcelotClient
) -> None:
    # Given a NestJS 400 with a list of messages; When sent; Then rejected with that list, no retry
    ocelot.then(nestjs(400, ["messages.0.to must be E.164", "operatorId unknown"], "Bad Request"))
    with pytest.raises(OcelotRejected) as caught:
        client.send(wire(), soon())
    assert caught.value.status_code == 400
    assert caught.value.body is not None
    assert caught.value.body.problems == ["messages.0.to must be E.164", "operatorId unknown"]
    assert len(ocelot.sent) == 1


def test_a_4xx_without_a_nestjs_body_is_rejected_with_a_stand_in(
    ocelot: FakeOcelot, client: HttpOcelotClient
) -> None:
    # Given a 404 with a plain-text body; When sent; Then rejected with a stand-in error body
    ocelot.then((404, {"Content-Type": "text/plain"}, "no such route"))
    with pytest.raises(OcelotRejected) as caught:
        client.send(wire(), soon())
    assert caught.value.body is not None
    assert caught.value.body.to_wire() == {
        "statusCode": 404,
        "message": "no such route",
        "error": "Unexpected response",
    }


def test_401_with_an_unchanged_secret_is_rejected_after_one_forced_read(
    ocelot: FakeOcelot, client: HttpOcelotClient, keys: Keys
) -> None:
    # Given a key Ocelot refuses, and the secret still holding it
    ocelot.then(nestjs(401, "Invalid id or api key", "Unauthorized"))

    # When a chunk is sent
    with pytest.raises(OcelotRejected) as caught:
        client.send(wire(), soon())

    # Then the secret was re-read once (forced), and nothing was sent again with the same key
    assert keys.reads == [False, True]
    assert len(ocelot.sent) == 1
    assert caught.value.status_code == 401
    assert caught.value.body is not None
    assert caught.value.body.problems == ["Invalid id or api key"]


def test_401_with_a_rotated_secret_is_retried_with_the_new_key(
    ocelot: FakeOcelot, client: HttpOcelotClient, keys: Keys
) -> None:
    # Given a cached old key and a reissued one in the secret
    keys.fresh = NEW
    ocelot.then(nestjs(401, "Invalid id or api key", "Unauthorized"))

    # When a chunk is sent
    response = client.send(wire(), soon())

    # Then the second request carried the new key and succeeded
    assert [s.authorization for s in ocelot.sent] == [
        basic_auth(OLD.chatbot_id, OLD.api_key),
        basic_auth(NEW.chatbot_id, NEW.api_key),
    ]
    assert response.batch_id


def test_401_when_the_secret_cannot_be_re_read_reports_the_401(
    ocelot: FakeOcelot, client: HttpOcelotClient, keys: Keys
) -> None:
    # Given a 401 and a secret that cannot be re-read; When sent; Then Ocelot's 401 is reported
    keys.fresh = CredentialsError("secret 'x' must hold chatbotId and apiKey")
    ocelot.then(nestjs(401, "Invalid id or api key", "Unauthorized"))
    with pytest.raises(OcelotRejected) as caught:
        client.send(wire(), soon())
    assert caught.value.status_code == 401
    assert len(ocelot.sent) == 1


def test_credentials_that_cannot_be_read_send_nothing_and_are_unavailable(
    ocelot: FakeOcelot, client: HttpOcelotClient, keys: Keys
) -> None:
    # Given a secret that cannot be read
    keys.broken = CredentialsError("secret 'ocelot-api' could not be read")

    # When a chunk is sent; Then nothing went out, and it is safe to try again later
    with pytest.raises(OcelotUnavailable, match="credentials unavailable: CredentialsError"):
        client.send(wire(), soon())
    assert ocelot.sent == []


def test_a_secret_not_set_sends_nothing_and_is_read_afresh_next_time(
    ocelot: FakeOcelot, client: HttpOcelotClient, keys: Keys
) -> None:
    # Given a secret still holding the placeholder the stack created it with
    keys.broken = CredentialsNotSet("ocelot-api", "still holds a placeholder chatbotId", OCELOT_SECRET_SHAPE)

    # When a chunk is sent; Then nothing went out, and the error says which secret and what to put in it
    with pytest.raises(OcelotNotConfigured) as caught:
        client.send(wire(), soon())
    assert ocelot.sent == []
    assert isinstance(caught.value, OcelotUnavailable)  # certainly not sent
    assert caught.value.not_set.secret_id == "ocelot-api"
    assert "'ocelot-api' still holds a placeholder chatbotId; put {\"chatbotId\"" in str(caught.value)

    # When an operator has put the credentials in it and the next chunk comes
    keys.broken = None
    client.send(wire(), soon())

    # Then that read was forced past the cache (the fix works at once), and the one after is cached
    client.send(wire(), soon())
    assert keys.reads == [False, True, False]
    assert len(ocelot.sent) == 2


# ---- real sockets on loopback ----------------------------------------------------------------------


def test_retry_after_is_really_slept_between_attempts(keys: Keys) -> None:
    # Given a real server answering 429 with Retry-After: 1, then accepting
    with (
        ocelot_mock(),
        LoopbackOcelot((429, {"Retry-After": "1"}, {"statusCode": 429, "message": "slow down"})) as server,
    ):
        client = HttpOcelotClient(server.base_url, keys, max_attempts=3, max_retry_wait=2.0)

        # When a chunk is sent
        response = client.send(wire(), soon())

    # Then two requests were made about a second apart (bounded generously)
    assert response.batch_id
    assert len(server.received) == 2
    gap = server.received[1].at - server.received[0].at
    assert 0.9 <= gap < 10.0


def test_a_long_retry_after_from_a_real_server_is_not_slept(keys: Keys) -> None:
    # Given a real server asking for 30 s while the longest wait allowed is 2 s
    with ocelot_mock(), LoopbackOcelot((429, {"Retry-After": "30"}, "")) as server:
        client = HttpOcelotClient(server.base_url, keys, max_attempts=3, max_retry_wait=2.0)
        started = time.monotonic()

        # When a chunk is sent
        with pytest.raises(OcelotUnavailable) as caught:
            client.send(wire(), soon())

    # Then it gave up at once, after one request
    assert time.monotonic() - started < 5.0
    assert len(server.received) == 1
    assert caught.value.retry_after == 30.0


def test_a_refused_connection_is_retried_then_unavailable(
    keys: Keys, connections: list[tuple[str, int]]
) -> None:
    # Given nothing listening on a loopback port
    port = closed_port()
    client = HttpOcelotClient(f"http://127.0.0.1:{port}", keys, max_attempts=3, backoff_factor=0.01)

    # When a chunk is sent (responses active: only loopback may pass through)
    with ocelot_mock(), pytest.raises(OcelotUnavailable, match="could not connect"):
        client.send(wire(), soon())

    # Then every attempt (3) tried to connect, and none got further
    assert connections == [("127.0.0.1", port)] * 3


def test_unregistered_remote_urls_are_blocked() -> None:
    # Given the Ocelot mock with nothing registered; When any other host is called; Then it is refused
    with ocelot_mock(), pytest.raises(requests.ConnectionError, match="Connection refused by Responses"):
        requests.post("https://ai.ocelotbot.com/api/v1/sms/send/", json={}, timeout=1)


# ---- DeadlineRetry ---------------------------------------------------------------------------------


def retry_response(retry_after: str | None) -> HTTPResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return HTTPResponse(body=b"", headers=headers, status=503, preload_content=False)


def deadline_retry(deadline: float | None, **kwargs: Any) -> DeadlineRetry:
    settings: dict[str, Any] = {
        "total": 3,
        "connect": 3,
        "read": False,
        "status": 3,
        "status_forcelist": {429, 503},
        "allowed_methods": frozenset({"POST"}),
        "backoff_factor": 0.5,
        "backoff_max": 20.0,
        **kwargs,
    }
    return DeadlineRetry(deadline=deadline, **settings)


def test_new_keeps_the_deadline_unless_given_another() -> None:
    # Given a retry with a deadline
    retry = deadline_retry(123.0)

    # When copied (as urllib3 does on every increment), or copied with a new deadline
    # Then the deadline is kept, or replaced
    assert retry.new().deadline == 123.0
    assert retry.new(total=1).deadline == 123.0
    assert retry.new(deadline=456.0).deadline == 456.0
    assert isinstance(retry.new(), DeadlineRetry)


def test_increment_within_the_deadline_returns_the_next_retry_with_the_deadline() -> None:
    # Given plenty of time; When a 503 asking for 1 s is counted
    deadline = soon(60.0)
    retry = deadline_retry(deadline).increment("POST", SEND_PATH, response=retry_response("1"))

    # Then one retry is used up and the deadline travels with it
    assert (retry.total, retry.status, retry.deadline) == (2, 2, deadline)


def test_increment_raises_when_the_retry_after_passes_the_deadline() -> None:
    # Given 2 s left; When a 503 asks for 5 s; Then MaxRetryError (urllib3 then hands back the 503)
    with pytest.raises(MaxRetryError, match="would pass the deadline"):
        deadline_retry(soon(2.0)).increment("POST", SEND_PATH, response=retry_response("5"))


def test_increment_raises_when_the_retry_after_passes_the_longest_wait() -> None:
    # Given 3 s asked with at most 2 s allowed (and time enough); When counted; Then it gives up
    with pytest.raises(MaxRetryError, match="longest wait allowed"):
        deadline_retry(soon(600.0), backoff_max=2.0).increment(
            "POST", SEND_PATH, response=retry_response("3")
        )


def test_increment_raises_when_the_backoff_passes_the_deadline() -> None:
    # Given connect failures and 0.7 s left: the 1st retry waits 0 s, the 2nd 0.5 * 2 = 1 s
    error = ConnectTimeoutError("refused")
    first = deadline_retry(soon(0.7)).increment("POST", SEND_PATH, error=error)
    assert first.connect == 2

    # When the second failure is counted; Then it gives up with the connect error as the reason
    with pytest.raises(MaxRetryError) as caught:
        first.increment("POST", SEND_PATH, error=error)
    assert caught.value.reason is error


def test_increment_without_a_deadline_only_counts() -> None:
    # Given no deadline; When a 503 asking for 15 s is counted; Then only the counters change
    retry = deadline_retry(None).increment("POST", SEND_PATH, response=retry_response("15"))
    assert (retry.status, retry.deadline) == (2, None)


def test_increment_still_stops_when_retries_are_exhausted() -> None:
    # Given no retries left; When one more is counted; Then urllib3's own limit still applies
    with pytest.raises(MaxRetryError):
        deadline_retry(soon(), total=0, status=0).increment("POST", SEND_PATH, response=retry_response(None))


def test_a_read_error_is_never_retried() -> None:
    # Given a read failure (the request went out); When counted; Then it is re-raised as is
    with pytest.raises(ProtocolError):
        deadline_retry(soon()).increment("POST", SEND_PATH, error=ProtocolError("Connection aborted."))


def test_an_unreadable_retry_after_header_reads_as_none() -> None:
    # Given a Retry-After that is not seconds nor a date; When read; Then None (back off instead)
    assert deadline_retry(None).get_retry_after(retry_response("next tuesday-ish")) is None
    assert deadline_retry(None).get_retry_after(retry_response("4")) == 4.0


@pytest.mark.parametrize("step", [Hang(1.5), DROP], ids=["no-answer-in-time", "closed-without-answer"])
def test_a_request_that_reached_a_real_server_is_never_sent_twice(keys: Keys, step: Hang | str) -> None:
    # Given a real server that reads the request, then answers nothing in time / drops the connection
    with ocelot_mock(), LoopbackOcelot(step) as server:
        client = HttpOcelotClient(server.base_url, keys, read_timeout=0.5, max_attempts=3)

        # When a chunk is sent
        with pytest.raises(OcelotOutcomeUnknown):
            client.send(wire(), soon())

    # Then the outcome is unknown and the server got the request exactly once
    assert len(server.received) == 1


def test_an_attempt_that_could_not_wait_for_its_whole_answer_is_not_started(
    ocelot: FakeOcelot, keys: Keys
) -> None:
    # Given a read timeout of 30 s and a deadline 4 s away
    client = HttpOcelotClient(OCELOT_URL, keys, connect_timeout=1.0, read_timeout=30.0)

    # When a chunk is sent; Then nothing goes out: cut short, the answer would be an unknown outcome
    with pytest.raises(OutOfTime, match="not enough time"):
        client.send(wire(), soon(4.0))
    assert ocelot.sent == []


def test_an_answer_that_never_comes_is_unknown_after_the_read_timeout(keys: Keys) -> None:
    # Given a server that reads the request and never answers, a read timeout of 2 s and time for it
    with ocelot_mock(), LoopbackOcelot(Hang(10.0)) as server:
        client = HttpOcelotClient(server.base_url, keys, connect_timeout=1.0, read_timeout=2.0)
        started = time.monotonic()

        # When a chunk is sent
        with pytest.raises(OcelotOutcomeUnknown):
            client.send(wire(), soon(4.0))
        elapsed = time.monotonic() - started

    # Then it gave up after the read timeout, within the deadline, and sent once
    assert 1.5 <= elapsed < 4.0
    assert len(server.received) == 1


# ---- Retry-After, read bounded --------------------------------------------------------------------


NOW = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("inf", RETRY_AFTER_CAP_SECONDS),
        ("1e400", RETRY_AFTER_CAP_SECONDS),
        ("99999999999999999999", RETRY_AFTER_CAP_SECONDS),
        ("9" * 5000, RETRY_AFTER_CAP_SECONDS),
        ("Thu, 26 Nov 2026 16:00:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 15:59:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CAP_SECONDS),
        ("nan", None),
        ("soon", None),
        ("", None),
        ("\u0663", None),  # an Arabic-Indic three: float() reads it, HTTP does not
        ("Thu, 99 Nov 2026 16:00:30 GMT", None),
    ],
)
def test_a_retry_after_is_read_bounded_and_never_raises(header: str, seconds: float | None) -> None:
    # When Ocelot's Retry-After is read; Then seconds between 0 and the cap, or None when it says nothing
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize("header", ["inf", "1e400", "99999999999999999999"])
def test_an_absurd_retry_after_is_handed_on_capped(
    ocelot: FakeOcelot, client: HttpOcelotClient, header: str
) -> None:
    # Given 429s asking for ever; When a chunk is sent; Then unavailable after one attempt, an hour asked
    ocelot.then(*[(429, {"Retry-After": header}, "")] * 3)
    with pytest.raises(OcelotUnavailable) as caught:
        client.send(wire(), soon())
    assert caught.value.retry_after == RETRY_AFTER_CAP_SECONDS
    assert len(ocelot.sent) == 1


# ---- concurrent sends -----------------------------------------------------------------------------


def test_each_thread_sends_with_the_retries_it_set(keys: Keys) -> None:
    # Given the client's adapter, and two threads each setting a Retry of its own
    client = HttpOcelotClient(OCELOT_URL, keys)
    adapter: Any = client.session.get_adapter(OCELOT_URL)
    seen: dict[str, int] = {}
    both_set = threading.Barrier(2, timeout=5)

    def send_as(name: str, total: int) -> None:
        adapter.max_retries = Retry(total=total)
        both_set.wait()
        seen[name] = adapter.max_retries.total

    # When both set theirs before either reads it back
    threads = [threading.Thread(target=send_as, args=(name, n)) for name, n in (("a", 1), ("b", 5))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each reads its own: one call's deadline never becomes another's
    assert seen == {"a": 1, "b": 5}


def test_a_429_holds_a_concurrent_send_for_its_retry_after(keys: Keys) -> None:
    # Given a real Ocelot answering the first request 429 with Retry-After: 1
    with ocelot_mock(), LoopbackOcelot(busy(429, "1")) as server:
        client = HttpOcelotClient(server.base_url, keys, max_retry_wait=2.0)
        first = threading.Thread(target=client.send, args=(wire(), soon()))
        first.start()
        while not server.received:
            time.sleep(0.01)
        time.sleep(0.1)  # the 429 is answered

        # When another chunk is prepared and sent meanwhile
        credentials = client.prepare(soon())
        client.send(wire(), soon(), credentials)
        first.join()

    # Then it waited for the second Ocelot asked for, like the retry of the limited one
    assert len(server.received) == 3
    assert all(later.at - server.received[0].at >= 0.9 for later in server.received[1:])


def test_a_wait_past_the_deadline_is_out_of_time_before_anything_is_read_or_sent(
    ocelot: FakeOcelot, keys: Keys
) -> None:
    # Given a 503 asking for 2 s to one send, and another chunk with 4 s left and attempts of 3 s
    client = HttpOcelotClient(OCELOT_URL, keys, connect_timeout=1.0, read_timeout=2.0, max_retry_wait=2.0)
    ocelot.then(*[(503, {"Retry-After": "2"}, "")] * 3)
    with pytest.raises(OcelotUnavailable):
        client.send(wire(), soon(4.0))
    reads = len(keys.reads)

    # When the other chunk is prepared; Then it is out of time at once, the secret not even read
    with pytest.raises(OutOfTime, match="Ocelot asked to wait"):
        client.prepare(soon(4.0))
    assert len(keys.reads) == reads
    assert len(ocelot.sent) == 1


def test_an_attempt_is_not_started_when_its_time_ran_out_after_the_credentials_were_read(
    ocelot: FakeOcelot, keys: Keys
) -> None:
    # Given credentials read, and a deadline that leaves less than an attempt (1 s + 2 s) by now
    client = HttpOcelotClient(OCELOT_URL, keys, connect_timeout=1.0, read_timeout=2.0)

    # When the chunk is sent; Then nothing goes out
    with pytest.raises(OutOfTime, match="not enough time"):
        client.send(wire(), soon(2.0), OLD)
    assert ocelot.sent == []
