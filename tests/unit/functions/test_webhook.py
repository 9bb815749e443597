"""The webhook Lambda end to end: API Gateway events in, DynamoDB (moto) and EMF metrics out."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from functions.webhook import app as handler
from ocelot_sms import runtime
from ocelot_sms.store import DynamoStore, MessageHistory, MessageState
from ocelot_sms.store.codec import COMPRESS_ABOVE
from tests.events import load_event, with_body
from tests.unit.support.aws import WEBHOOK_CREDENTIALS, DynamoFaults, EmfReader, FakeContext

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")

Items = Callable[[], list[dict[str, Any]]]
T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
GOOD_BASIC = "Basic " + base64.b64encode(b"ocelot:local-webhook-password").decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(
    body: Any,
    *,
    authorization: str | None = GOOD_BASIC,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    request_id: str = "wh-test-1",
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for POST /webhooks/ocelot, from events/webhook_status_event.json."""
    event = with_body(load_event("webhook_status_event"), body)
    event["headers"].pop("authorization")
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    event["headers"].update(headers or {})
    if token is not None:
        event["queryStringParameters"] = {"token": token}
        event["rawQueryString"] = f"token={token}"
    event["requestContext"]["requestId"] = request_id
    return event


def status(
    event_id: str, message_id: str, value: str, at: datetime | str | None, **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "batchId": "ocelot-batch-1",
        "messageId": message_id,
        "to": "+15551230010",
        "from": "+15550000000",
        "status": value,
        **extra,
    }
    if at is not None:
        item["dateTime"] = at if isinstance(at, str) else at.isoformat()
    return item


class Invoker:
    """Calls the Lambda handler as API Gateway would, each call with a fresh request id."""

    def __init__(self, context: FakeContext) -> None:
        self._context = context
        self._ids = itertools.count(1)

    def __call__(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if event["requestContext"]["requestId"] == "wh-test-1":
            event["requestContext"]["requestId"] = f"wh-test-{next(self._ids)}"
        response = handler.lambda_handler(event, self._context)
        return response["statusCode"], json.loads(response["body"]), response.get("headers") or {}


@pytest.fixture
def invoke(aws: dict[str, Any], lambda_context: FakeContext) -> Invoker:
    return Invoker(lambda_context)


@pytest.fixture
def store(aws: dict[str, Any], env: dict[str, str]) -> DynamoStore:
    return DynamoStore(aws["dynamodb"], env["TABLE_NAME"])


def state_of(store: DynamoStore, message_id: str) -> str | None:
    found = store.get_message(message_id).state
    return found.status if found else None


def state(history: MessageHistory) -> MessageState:
    assert history.state is not None
    return history.state


def raws(table_items: Items) -> list[dict[str, Any]]:
    return [i for i in table_items() if i["PK"].startswith("RAW#")]


def events_and_states(table_items: Items) -> list[dict[str, Any]]:
    return [i for i in table_items() if not i["PK"].startswith("RAW#")]


# ---- 1. authentication --------------------------------------------------------------------------

VALID_BODY = status("evt-a1", "m-auth", "delivered", T0)


@pytest.mark.parametrize(
    ("authorization", "token", "headers"),
    [
        pytest.param(GOOD_BASIC, None, {}, id="basic"),
        pytest.param(None, WEBHOOK_CREDENTIALS["token"], {}, id="token-in-query"),
        pytest.param(basic("ocelot", "nope"), WEBHOOK_CREDENTIALS["token"], {}, id="bad-basic-good-token"),
        pytest.param(GOOD_BASIC.replace("Basic", "BASIC"), None, {}, id="scheme-case-insensitive"),
    ],
)
def test_valid_credentials_are_accepted(
    invoke: Invoker,
    store: DynamoStore,
    emf: EmfReader,
    authorization: str | None,
    token: str | None,
    headers: dict[str, str],
) -> None:
    # Given right Basic credentials or the right token in the query; When Ocelot posts an event
    code, body, _ = invoke(request(VALID_BODY, authorization=authorization, token=token, headers=headers))
    # Then 200, the event applied, and no auth failure counted
    assert (code, body) == (200, {"received": 1, "new": 1, "duplicates": 0})
    assert state_of(store, "m-auth") == "delivered"
    assert emf.read()["WebhookAuthFailures"] == 0


def test_the_authorization_header_name_is_case_insensitive(invoke: Invoker) -> None:
    event = request(VALID_BODY, authorization=None, headers={"Authorization": GOOD_BASIC})
    assert invoke(event)[0] == 200


@pytest.mark.parametrize(
    ("authorization", "token", "headers", "body"),
    [
        pytest.param(basic("ocelot", "wrong"), None, {}, VALID_BODY, id="wrong-password"),
        pytest.param(
            basic("intruder", WEBHOOK_CREDENTIALS["password"]), None, {}, VALID_BODY, id="wrong-user"
        ),
        pytest.param(basic("ocelot", ""), None, {}, VALID_BODY, id="empty-password"),
        pytest.param(
            basic("ocelot", "local-webhook-password "), None, {}, VALID_BODY, id="password-plus-space"
        ),
        pytest.param("Basic !!!not-base64!!!", None, {}, VALID_BODY, id="garbled-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), None, {}, VALID_BODY, id="no-colon"),
        pytest.param(
            "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), None, {}, VALID_BODY, id="not-utf8"
        ),
        pytest.param("Basic é", None, {}, VALID_BODY, id="non-ascii"),
        pytest.param("Basic", None, {}, VALID_BODY, id="scheme-only"),
        pytest.param("Bearer x", None, {}, VALID_BODY, id="bearer"),
        pytest.param(f"Bearer {WEBHOOK_CREDENTIALS['token']}", None, {}, VALID_BODY, id="bearer-with-token"),
        pytest.param(None, None, {}, VALID_BODY, id="no-header"),
        pytest.param(None, None, {"token": WEBHOOK_CREDENTIALS["token"]}, VALID_BODY, id="token-in-header"),
        pytest.param(
            None, None, {"x-token": WEBHOOK_CREDENTIALS["token"]}, VALID_BODY, id="token-in-x-header"
        ),
        pytest.param(None, "wrong-token", {}, VALID_BODY, id="wrong-token"),
        pytest.param(None, WEBHOOK_CREDENTIALS["token"].upper(), {}, VALID_BODY, id="token-other-case"),
        pytest.param(None, "", {}, VALID_BODY, id="empty-token"),
        pytest.param(basic("ocelot", "wrong"), None, {}, "", id="empty-body"),
        pytest.param(None, None, {}, "{not json", id="malformed-body"),
    ],
)
def test_anything_else_is_401_storing_nothing_but_a_metric(
    invoke: Invoker,
    table_items: Items,
    emf: EmfReader,
    authorization: str | None,
    token: str | None,
    headers: dict[str, str],
    body: Any,
) -> None:
    # Given a request without valid credentials; When it reaches the webhook
    code, reply, reply_headers = invoke(
        request(body, authorization=authorization, token=token, headers=headers)
    )
    # Then 401 with a Basic challenge
    assert (code, reply) == (401, {"error": "unauthorized", "message": "unauthorized", "problems": []})
    assert reply_headers["WWW-Authenticate"] == 'Basic realm="ocelot-sms"'
    # And NOTHING is stored, not even the raw delivery
    assert table_items() == []
    # And the failure is counted
    assert emf.read()["WebhookAuthFailures"] == 1


def test_the_sample_bad_auth_event_is_refused(invoke: Invoker, table_items: Items) -> None:
    assert invoke(load_event("webhook_bad_auth"))[0] == 401
    assert table_items() == []


def test_a_huge_body_with_bad_auth_is_401_not_413(invoke: Invoker, table_items: Items) -> None:
    # Given a body over the size limit from someone without credentials; Then 401, the body never read
    code, _, _ = invoke(request("x" * 1_000_001, authorization=None))
    assert code == 401
    assert table_items() == []


def test_rotated_credentials_apply_without_a_redeploy(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any], invoke: Invoker
) -> None:
    # Given secrets are re-read at every request (no cache), and the secret is rotated
    monkeypatch.setenv("SECRET_MAX_AGE_SECONDS", "0")
    runtime.reset()
    assert invoke(request(VALID_BODY))[0] == 200
    rotated = {**WEBHOOK_CREDENTIALS, "password": "rotated-password"}
    aws["secretsmanager"].put_secret_value(
        SecretId=os.environ["WEBHOOK_SECRET_ID"], SecretString=json.dumps(rotated)
    )
    # Then the new password is accepted and the old one is refused
    assert invoke(request(VALID_BODY, authorization=basic("ocelot", "rotated-password")))[0] == 200
    assert invoke(request(VALID_BODY))[0] == 401


# ---- 2. the raw delivery is kept before parsing -------------------------------------------------


def test_malformed_json_is_400_and_kept_raw_without_credentials(
    invoke: Invoker, table_items: Items, emf: EmfReader
) -> None:
    # Given the sample malformed delivery, with a cookie and an API key header too
    event = load_event("webhook_malformed")
    event["headers"].update({"Cookie": "session=abc", "X-Api-Key": "k", "X-Ocelot-Signature": "sig"})
    # When received
    code, reply, _ = invoke(event)
    # Then 400, naming the delivery
    assert code == 400
    assert reply["error"] == "malformed"
    assert reply["problems"] == ["body: not valid JSON"]
    assert reply["details"] == {"deliveryId": "wh-0005"}
    # And the raw delivery is in the table: body as received, receipt time, request id, headers
    [raw] = table_items()
    assert raw["PK"].startswith("RAW#")
    assert raw["body"] == event["body"]
    assert raw["deliveryId"] == "wh-0005"
    assert abs(datetime.fromisoformat(raw["receivedAt"]).timestamp() - time.time()) < 60
    headers = json.loads(raw["headers"])
    assert headers["content-type"] == "application/json"
    assert headers["x-ocelot-signature"] == "sig"
    # And no credential is stored in any form
    assert not {"authorization", "cookie", "x-api-key"} & {h.lower() for h in headers}
    stored = json.dumps(raw, default=str)
    assert "b2NlbG90OmxvY2FsLXdlYmhvb2stcGFzc3dvcmQ=" not in stored
    assert "session=abc" not in stored
    assert emf.read()["WebhookMalformed"] == 1


def test_a_token_in_the_query_is_not_stored(invoke: Invoker, table_items: Items) -> None:
    # Given the sample token-authenticated delivery; When received
    assert invoke(load_event("webhook_token_auth"))[0] == 200
    # Then the token appears nowhere in the table
    assert WEBHOOK_CREDENTIALS["token"] not in json.dumps(table_items(), default=str)


def test_an_item_without_event_id_is_400_with_raw_kept_and_no_event(
    invoke: Invoker, table_items: Items
) -> None:
    # Given an array whose second item has no eventId
    body = [status("evt-ok", "m-1", "sent", T0), {"name": "OutgoingSms.statusChanged", "status": "delivered"}]
    # When received
    code, reply, _ = invoke(request(body))
    # Then 400 naming the item; the raw delivery kept whole; no event of it stored
    assert code == 400
    assert reply["problems"] == ["[1].eventId: Field required"]
    [raw] = table_items()
    assert json.loads(raw["body"]) == body


def test_raw_has_a_ttl_of_raw_retention_days(
    monkeypatch: pytest.MonkeyPatch, invoke: Invoker, table_items: Items
) -> None:
    # Given RAW_RETENTION_DAYS=7 (the template passes it); When a delivery is received
    monkeypatch.setenv("RAW_RETENTION_DAYS", "7")
    runtime.reset()
    invoke(request(status("evt-1", "m-1", "sent", T0)))
    # Then its raw item expires about 7 days from now, while events keep the data retention
    [raw] = raws(table_items)
    assert abs(raw["expiresAt"] - (time.time() + 7 * 86400)) < 60
    event = next(i for i in table_items() if i["SK"] == "EVT#evt-1")
    assert event["expiresAt"] > time.time() + 300 * 86400


def test_the_raw_delivery_is_written_before_any_event(aws: dict[str, Any], invoke: Invoker) -> None:
    # Given every PutItem recorded in order
    puts: list[str] = []
    runtime.dynamodb_client().meta.events.register(
        "provide-client-params.dynamodb.PutItem", lambda params, **_: puts.append(params["Item"]["PK"]["S"])
    )
    # When a two-event delivery is received; Then the first write is the raw delivery
    invoke(request([status("e-1", "m-1", "sent", T0), status("e-2", "m-2", "sent", T0)]))
    assert puts[0].startswith("RAW#")
    assert sorted(puts[1:]) == ["MSG#m-1", "MSG#m-2"]


def test_a_base64_encoded_body_is_decoded(invoke: Invoker, store: DynamoStore) -> None:
    # Given API Gateway base64-encoded the body (a binary content type)
    event = request("")
    event["body"] = base64.b64encode(json.dumps(status("evt-1", "m-1", "sent", T0)).encode()).decode()
    event["isBase64Encoded"] = True
    # Then it is read as JSON
    assert invoke(event)[0] == 200
    assert state_of(store, "m-1") == "sent"


# ---- 3. arrays, kinds, unknown fields, tolerant values -------------------------------------------


def test_the_sample_array_of_mixed_kinds(invoke: Invoker, store: DynamoStore, table_items: Items) -> None:
    # Given the sample array: queued/delivered/sent for ocelot-msg-2, a repeat, and an inbound SMS
    code, reply, _ = invoke(load_event("webhook_event_array"))
    # Then 200: five items, one of them a repeat within the delivery
    assert code == 200
    assert reply["received"] == 5
    assert (reply["new"], reply["duplicates"]) == (4, 1)
    # And the message is delivered, with three events in event-time order
    message = store.get_message("ocelot-msg-2")
    assert state(message).status == "delivered"
    assert [e.event_id for e in message.events] == ["evt-0101", "evt-0102", "evt-0103"]
    # And the inbound SMS is stored as its own event, with its fields
    inbound = next(i for i in table_items() if i["PK"] == "EVT#evt-0199")
    assert inbound["SK"] == "EVT#evt-0199"
    assert inbound["name"] == "IncomingSms.received"
    assert "orderKey" not in inbound
    payload = json.loads(inbound["payload"])
    assert (payload["message"], payload["triggerType"], payload["from"]) == (
        "STOP",
        "Inbound",
        "+15551230010",
    )


def test_unknown_fields_are_kept_in_the_stored_payload(invoke: Invoker, table_items: Items) -> None:
    # Given an event with fields we do not know, nulls, and a known field of an unexpected shape
    item = status(
        "evt-x",
        "m-1",
        "Delivered",
        T0,
        carrier={"name": "T-Mobile", "mcc": 310},
        segments=2,
        price=None,
        errorCode={"code": 30005},
    )
    # When received
    assert invoke(request(item))[0] == 200
    # Then the stored payload is the item exactly as received
    event = next(i for i in table_items() if i["SK"] == "EVT#evt-x")
    assert json.loads(event["payload"]) == item


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        ("Delivered", "delivered"),
        ("DELIVERED", "delivered"),
        ("OPTED_OUT", "opted_out"),
        ("optedOut", "opted_out"),
        ("Opted-Out", "opted_out"),
        ("Undelivered", "undelivered"),
        ("Failed", "failed"),
    ],
)
def test_status_values_are_parsed_tolerantly(
    invoke: Invoker, store: DynamoStore, wire: str, stored: str
) -> None:
    # Given a status in another casing; When received; Then the message's state is the canonical status
    assert invoke(request(status("evt-1", "m-1", wire, T0)))[0] == 200
    assert state_of(store, "m-1") == stored


def test_an_event_name_in_another_casing_still_moves_the_status(invoke: Invoker, store: DynamoStore) -> None:
    assert invoke(request(status("evt-1", "m-1", "sent", T0, name="outgoingSms.StatusChanged")))[0] == 200
    assert state_of(store, "m-1") == "sent"


def test_an_unknown_status_is_stored_but_moves_nothing(
    invoke: Invoker, store: DynamoStore, table_items: Items
) -> None:
    # Given a status we do not know; When received; Then 200, kept under EVT#, no state
    assert invoke(request(status("evt-1", "m-1", "carrier_hold", T0)))[0] == 200
    assert state_of(store, "m-1") is None
    [event] = [i for i in table_items() if i["PK"] == "EVT#evt-1"]
    assert event["status"] == "carrier_hold"


# ---- 4. duplicates ------------------------------------------------------------------------------


def test_the_same_delivery_twice_writes_nothing_new(
    invoke: Invoker, table_items: Items, emf: EmfReader
) -> None:
    # Given a delivery of three events stored once
    body = [
        status("evt-1", "m-1", "sent", T0),
        status("evt-2", "m-1", "delivered", T0 + timedelta(seconds=2)),
        {"eventId": "in-1", "name": "IncomingSms.received", "message": "hi"},
    ]
    assert invoke(request(body))[1] == {"received": 3, "new": 3, "duplicates": 0}
    before = events_and_states(table_items)
    emf.read()
    # When Ocelot sends it again (a new HTTP request)
    code, reply, _ = invoke(request(body))
    # Then 200, all duplicates, and no event or state changed: only the new raw delivery was added
    assert (code, reply) == (200, {"received": 3, "new": 0, "duplicates": 3})
    assert events_and_states(table_items) == before
    assert len(raws(table_items)) == 2
    assert emf.read()["WebhookDuplicateEvents"] == 3


# ---- 5. order -----------------------------------------------------------------------------------

TIMELINE = {"queued": T0, "sent": T0 + timedelta(seconds=1), "delivered": T0 + timedelta(seconds=2)}


@pytest.mark.parametrize("order", list(itertools.permutations(TIMELINE)), ids="-".join)
def test_every_arrival_order_ends_delivered(
    invoke: Invoker, store: DynamoStore, order: tuple[str, ...]
) -> None:
    # Given queued, sent, delivered arriving in this order, one delivery each
    for value in order:
        assert invoke(request(status(f"evt-{value}", "m-1", value, TIMELINE[value])))[0] == 200
    # Then the message is delivered, with the history in event-time order
    message = store.get_message("m-1")
    assert state(message).status == "delivered"
    assert state(message).event_id == "evt-delivered"
    assert [e.status for e in message.events] == ["queued", "sent", "delivered"]


@pytest.mark.parametrize("order", list(itertools.permutations(TIMELINE)), ids="-".join)
def test_every_order_within_one_array_ends_delivered(
    invoke: Invoker, store: DynamoStore, order: tuple[str, ...]
) -> None:
    body = [status(f"evt-{v}", "m-1", v, TIMELINE[v]) for v in order]
    assert invoke(request(body))[0] == 200
    assert state_of(store, "m-1") == "delivered"


def test_delivered_then_a_later_sent_stays_delivered(invoke: Invoker, store: DynamoStore) -> None:
    # Given delivered; When a sent event with a LATER time arrives
    invoke(request(status("evt-d", "m-1", "delivered", T0)))
    invoke(request(status("evt-s", "m-1", "sent", T0 + timedelta(minutes=5))))
    # Then still delivered: a terminal status is never replaced by a non-terminal one
    assert state_of(store, "m-1") == "delivered"


@pytest.mark.parametrize("first", ["failed", "delivered"])
def test_between_terminal_statuses_the_later_instant_wins(
    invoke: Invoker, store: DynamoStore, first: str
) -> None:
    # Given failed at T0+1 and delivered at T0+5, arriving in either order
    times = {"failed": T0 + timedelta(seconds=1), "delivered": T0 + timedelta(seconds=5)}
    second = "delivered" if first == "failed" else "failed"
    for value in (first, second):
        invoke(request(status(f"evt-{value}", "m-1", value, times[value])))
    # Then delivered, the later one
    assert state_of(store, "m-1") == "delivered"


def test_time_zone_offsets_are_compared_as_instants(invoke: Invoker, store: DynamoStore) -> None:
    # Given delivered at 11:00:09-05:00 (16:00:09Z) and failed at 16:00:05Z; as text, failed sorts later
    invoke(request(status("evt-d", "m-1", "delivered", "2026-11-26T11:00:09-05:00")))
    invoke(request(status("evt-f", "m-1", "failed", "2026-11-26T16:00:05Z")))
    # Then delivered wins: it is the later instant
    message = store.get_message("m-1")
    assert state(message).status == "delivered"
    assert state(message).event_time == "2026-11-26T16:00:09.000000Z"
    assert [e.event_id for e in message.events] == ["evt-f", "evt-d"]


def test_a_naive_time_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch, invoke: Invoker, store: DynamoStore
) -> None:
    # Given the process runs in New York time (UTC-5 in November)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # When failed comes at naive 16:00:09 (UTC) and delivered at 11:00:05-05:00 (16:00:05Z)
        invoke(request(status("evt-f", "m-1", "failed", "2026-11-26T16:00:09")))
        invoke(request(status("evt-d", "m-1", "delivered", "2026-11-26T11:00:05-05:00")))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    # Then the naive time was read as UTC: failed is later and wins
    found = state(store.get_message("m-1"))
    assert (found.status, found.event_time) == ("failed", "2026-11-26T16:00:09.000000Z")


@pytest.mark.parametrize(
    "when",
    [None, "", "yesterday", 1795708805, "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"],
)
def test_a_missing_or_invalid_time_does_not_crash(invoke: Invoker, store: DynamoStore, when: Any) -> None:
    # Given sent at T0, then delivered with a missing, invalid or out-of-range dateTime
    invoke(request(status("evt-s", "m-1", "sent", T0)))
    item = status("evt-d", "m-1", "delivered", None)
    if when is not None:
        item["dateTime"] = when
    # When received; Then 200, delivered (terminal wins), with no event time
    assert invoke(request(item))[0] == 200
    found = state(store.get_message("m-1"))
    assert (found.status, found.event_time) == ("delivered", None)


def test_an_untimed_non_terminal_event_does_not_undo_a_timed_one(invoke: Invoker, store: DynamoStore) -> None:
    invoke(request(status("evt-s", "m-1", "sent", T0)))
    invoke(request(status("evt-q", "m-1", "queued", None)))
    assert state_of(store, "m-1") == "sent"


# ---- 6. a lost state update is repaired by Ocelot's retry ----------------------------------------


def test_a_failed_state_update_is_503_and_the_retry_repairs_it(
    invoke: Invoker, store: DynamoStore, dynamo_faults: DynamoFaults, table_items: Items
) -> None:
    # Given the state update of the next event fails once (after its event item was stored)
    fault = dynamo_faults.fail(runtime.dynamodb_client(), "UpdateItem")
    body = status("evt-1", "m-1", "delivered", T0)
    # When Ocelot delivers it; Then 503 so that Ocelot retries
    code, reply, _ = invoke(request(body))
    assert (code, reply) == (503, {"error": "storage_unavailable", "message": "try again", "problems": []})
    assert fault.injected == 1
    # And the event item is there but the state is not
    assert any(i["SK"] == "EVT#evt-1" for i in table_items())
    assert state_of(store, "m-1") is None
    # When Ocelot retries the same delivery
    code, reply, _ = invoke(request(body))
    # Then 200 (a duplicate), and the state is right
    assert (code, reply) == (200, {"received": 1, "new": 0, "duplicates": 1})
    assert state_of(store, "m-1") == "delivered"


def test_a_failed_state_update_in_an_array_is_repaired_too(
    invoke: Invoker, store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    # Given one of ten state updates fails
    dynamo_faults.fail(
        runtime.dynamodb_client(),
        "UpdateItem",
        when=lambda params: params["Key"]["PK"]["S"] == "MSG#m-7",
    )
    body = [status(f"evt-{i}", f"m-{i}", "delivered", T0) for i in range(10)]
    # When delivered, then retried
    assert invoke(request(body))[0] == 503
    assert state_of(store, "m-7") is None
    code, reply, _ = invoke(request(body))
    # Then every message is delivered. The retry finds m-7's event stored (only its state update
    # failed); writes not yet started when the first attempt failed were dropped, and are new now.
    assert code == 200
    assert reply["new"] + reply["duplicates"] == 10
    assert reply["duplicates"] >= 1
    assert all(state_of(store, f"m-{i}") == "delivered" for i in range(10))


# ---- 7. storage failures are 503, never 500 -----------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "target", "error"),
    [
        ("PutItem", "RAW#", None),
        ("PutItem", "MSG#", None),
        ("PutItem", "EVT#", None),
        ("PutItem", "RAW#", EndpointConnectionError(endpoint_url="https://dynamodb")),
        ("PutItem", "MSG#", EndpointConnectionError(endpoint_url="https://dynamodb")),
        ("GetItem", "MSG#", None),
    ],
)
def test_storage_failures_are_503_without_a_trace(
    invoke: Invoker,
    store: DynamoStore,
    dynamo_faults: DynamoFaults,
    table_items: Items,
    emf: EmfReader,
    operation: str,
    target: str,
    error: Exception | None,
) -> None:
    # Given (for the GetItem case) the event was stored but not applied, so a retry reads the state
    client = runtime.dynamodb_client()
    body = [status("evt-1", "m-1", "delivered", T0), {"eventId": "in-1", "name": "IncomingSms.received"}]
    if operation == "GetItem":
        dynamo_faults.fail(client, "UpdateItem")
        assert invoke(request(body))[0] == 503
    # Given DynamoDB fails this write
    fault = dynamo_faults.fail(
        client,
        operation,
        error=error,
        when=lambda params: params["Key" if operation == "GetItem" else "Item"]["PK"]["S"].startswith(target),
    )
    emf.read()
    # When a delivery comes
    code, reply, _ = invoke(request(body))
    # Then 503 with a short JSON body, never 500 and never a trace
    assert fault.injected >= 1
    assert (code, reply) == (503, {"error": "storage_unavailable", "message": "try again", "problems": []})
    assert emf.read()["WebhookStorageFailures"] == 1
    # And when the raw delivery failed, no event was written at all
    if target == "RAW#":
        assert table_items() == []
    # And a retry once DynamoDB is back stores everything
    assert invoke(request(body))[0] == 200
    assert state_of(store, "m-1") == "delivered"


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_an_unexpected_error_is_500_without_a_trace(monkeypatch: pytest.MonkeyPatch, invoke: Invoker) -> None:
    # Given a bug deep inside (not a storage failure)
    def broken(*_: Any) -> None:
        raise RuntimeError("bug: /secret/path line 12")

    monkeypatch.setattr(DynamoStore, "put_raw", broken)
    # Then 500 with a generic body that reveals nothing
    code, reply, _ = invoke(request(status("evt-1", "m-1", "sent", T0)))
    assert (code, reply) == (500, {"error": "internal_error", "message": "internal error", "problems": []})


# ---- 8. concurrency -----------------------------------------------------------------------------


@pytest.mark.usefixtures("atomic_dynamodb")
def test_a_300_event_array_is_written_concurrently(
    invoke: Invoker, store: DynamoStore, table_items: Items
) -> None:
    # Given 100 messages with queued/sent/delivered each, shuffled into one 300-event array
    body = [
        status(f"evt-{m}-{v}", f"m-{m}", v, TIMELINE[v] + timedelta(minutes=m))
        for m in range(100)
        for v in TIMELINE
    ]
    random.Random(42).shuffle(body)
    # And every event write records the thread that made it
    threads: set[str] = set()
    lock = threading.Lock()

    def record(**_: Any) -> None:
        with lock:
            threads.add(threading.current_thread().name)

    runtime.dynamodb_client().meta.events.register("provide-client-params.dynamodb.PutItem", record)
    # When received
    code, reply, _ = invoke(request(body))
    # Then 200 with all 300 new
    assert (code, reply) == (200, {"received": 300, "new": 300, "duplicates": 0})
    # And the writes came from the "events" pool, more than one thread at a time
    pool = {t for t in threads if t.startswith("events")}
    assert len(pool) > 1, threads
    # And every event is stored and every message ends delivered
    assert len([i for i in table_items() if i["SK"].startswith("EVT#")]) == 300
    states = store.get_states([f"m-{m}" for m in range(100)])
    assert {s.status for s in states.values()} == {"delivered"}
    assert len(states) == 100


def test_writes_overlap_in_time(monkeypatch: pytest.MonkeyPatch, invoke: Invoker) -> None:
    # Given each event write takes 20 ms (DynamoDB latency)
    original = DynamoStore.put_event
    active = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(self: DynamoStore, *args: Any) -> Any:
        with lock:
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
        time.sleep(0.02)
        try:
            return original(self, *args)
        finally:
            with lock:
                active["now"] -= 1

    monkeypatch.setattr(DynamoStore, "put_event", slow)
    # When 64 events arrive together
    code, _, _ = invoke(request([status(f"evt-{i}", f"m-{i}", "sent", T0) for i in range(64)]))
    # Then several were in flight at once
    assert code == 200
    assert active["peak"] > 1


# ---- 9. big bodies ------------------------------------------------------------------------------


def test_a_big_delivery_is_stored_gzipped_and_read_back(
    invoke: Invoker, store: DynamoStore, table_items: Items
) -> None:
    # Given a 20-event delivery larger than COMPRESS_ABOVE
    body = [status(f"evt-{i}", f"m-{i}", "delivered", T0, note="é" * 1000) for i in range(20)]
    text = json.dumps(body)
    assert len(text.encode()) > COMPRESS_ABOVE
    # When received
    assert invoke(request(text))[0] == 200
    # Then the raw item holds it gzipped, and raw_deliveries(day) gives the body back
    [raw] = raws(table_items)
    assert raw["bodyEncoding"] == "gzip"
    assert json.loads(gzip.decompress(raw["body"])) == body
    day = raw["PK"].split("#")[1]
    [read] = list(store.raw_deliveries(day))
    assert read.body == text.encode()
    assert raw["bodyBytes"] == len(text.encode())


def test_a_body_over_the_limit_is_413_and_stores_nothing(
    monkeypatch: pytest.MonkeyPatch, invoke: Invoker, table_items: Items, emf: EmfReader
) -> None:
    # Given WEBHOOK_MAX_BODY_BYTES=2000
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "2000")
    runtime.reset()
    # When an authenticated body of 2001 bytes arrives
    code, reply, _ = invoke(request("x" * 2001))
    # Then 413, nothing stored, counted
    assert (code, reply) == (
        413,
        {"error": "payload_too_large", "message": "at most 2000 bytes", "problems": []},
    )
    assert table_items() == []
    assert emf.read()["WebhookBodiesTooLarge"] == 1


def test_the_default_limit_takes_a_megabyte(invoke: Invoker, table_items: Items) -> None:
    # Given 1,000,001 bytes with the default limit (1,000,000); Then 413
    assert invoke(request("x" * 1_000_001))[0] == 413
    assert table_items() == []


# ---- the other samples --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "message_id", "expected"),
    [
        ("webhook_status_event", "ocelot-msg-1", "delivered"),
        ("webhook_token_auth", "ocelot-msg-3", "sent"),
    ],
)
def test_samples(invoke: Invoker, store: DynamoStore, sample: str, message_id: str, expected: str) -> None:
    code, reply, _ = invoke(load_event(sample))
    assert (code, reply) == (200, {"received": 1, "new": 1, "duplicates": 0})
    assert state_of(store, message_id) == expected


@pytest.mark.filterwarnings("ignore:No application metrics")
@pytest.mark.parametrize(("method", "path"), [("POST", "/webhooks/other"), ("GET", "/webhooks/ocelot")])
def test_other_routes_are_404_not_500(invoke: Invoker, table_items: Items, method: str, path: str) -> None:
    # Given a method or path the function does not serve; Then 404 (not the catch-all's 500), nothing stored
    event = request(VALID_BODY)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    assert invoke(event)[:2] == (404, {"error": "not_found", "message": "no such route", "problems": []})
    assert table_items() == []
