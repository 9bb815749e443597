"""The webhook Lambda: API Gateway events in; the raw delivery kept with one write and an answer at
once; EMF metrics out. Applying the events is the applier's (test_applier.py)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from ocelot_sms import runtime
from ocelot_sms.store import DynamoStore
from tests.events import load_event
from tests.unit.functions.conftest import GOOD_BASIC, Webhook, basic, status, webhook_request
from tests.unit.support.aws import WEBHOOK_CREDENTIALS, DynamoFaults, EmfReader
from tests.unit.support.ocelot import DynamoCalls

pytestmark = pytest.mark.usefixtures("emf")

Items = Callable[[], list[dict[str, Any]]]
T0 = datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)
VALID_BODY = status("evt-a1", "m-auth", "delivered", T0)
UNAUTHORIZED = {"error": "unauthorized", "message": "unauthorized", "problems": []}
UNAVAILABLE = {"error": "storage_unavailable", "message": "try again", "problems": []}


def raws(table_items: Items) -> list[dict[str, Any]]:
    return [i for i in table_items() if i["PK"].startswith("RAW#")]


# ---- 1. authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        pytest.param(GOOD_BASIC, None, id="basic"),
        pytest.param(None, WEBHOOK_CREDENTIALS["token"], id="token-in-query"),
        pytest.param(basic("ocelot", "nope"), WEBHOOK_CREDENTIALS["token"], id="bad-basic-good-token"),
        pytest.param(GOOD_BASIC.replace("Basic", "BASIC"), None, id="scheme-case-insensitive"),
    ],
)
def test_valid_credentials_are_accepted_and_the_delivery_kept(
    webhook: Webhook, table_items: Items, emf: EmfReader, authorization: str | None, token: str | None
) -> None:
    code, body, _ = webhook(webhook_request(VALID_BODY, authorization=authorization, token=token))
    assert (code, body["received"]) == (200, True)
    [raw] = raws(table_items)
    assert raw["deliveryId"] == body["deliveryId"]
    assert emf.read()["WebhookAuthFailures"] == 0


def test_the_authorization_header_name_is_case_insensitive(webhook: Webhook) -> None:
    event = webhook_request(VALID_BODY, authorization=None, headers={"Authorization": GOOD_BASIC})
    assert webhook(event)[0] == 200


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
    webhook: Webhook,
    table_items: Items,
    emf: EmfReader,
    authorization: str | None,
    token: str | None,
    headers: dict[str, str],
    body: Any,
) -> None:
    # Given a request without valid credentials; When it reaches the webhook
    code, reply, reply_headers = webhook(
        webhook_request(body, authorization=authorization, token=token, headers=headers)
    )
    # Then 401 with a Basic challenge, NOTHING stored (not even the raw delivery), the failure counted
    assert (code, reply) == (401, UNAUTHORIZED)
    assert reply_headers["WWW-Authenticate"] == 'Basic realm="ocelot-sms"'
    assert table_items() == []
    assert emf.read()["WebhookAuthFailures"] == 1


def test_the_sample_bad_auth_event_is_refused(webhook: Webhook, table_items: Items) -> None:
    assert webhook(load_event("webhook_bad_auth"))[0] == 401
    assert table_items() == []


def test_a_huge_body_with_bad_auth_is_401_not_413(webhook: Webhook, table_items: Items) -> None:
    # Given a body over the size limit from someone without credentials; Then 401, the body never read
    assert webhook(webhook_request("x" * 1_000_001, authorization=None))[0] == 401
    assert table_items() == []


def test_rotated_credentials_apply_without_a_redeploy(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any], webhook: Webhook
) -> None:
    # Given secrets are re-read at every request (no cache), and the secret is rotated without an overlap
    monkeypatch.setenv("SECRET_MAX_AGE_SECONDS", "0")
    runtime.reset()
    assert webhook(webhook_request(VALID_BODY))[0] == 200
    rotated = {**WEBHOOK_CREDENTIALS, "password": "rotated-password"}
    aws["secretsmanager"].put_secret_value(
        SecretId=os.environ["WEBHOOK_SECRET_ID"], SecretString=json.dumps(rotated)
    )
    # Then the new password is accepted and the old one is refused
    assert webhook(webhook_request(VALID_BODY, authorization=basic("ocelot", "rotated-password")))[0] == 200
    assert webhook(webhook_request(VALID_BODY))[0] == 401


def test_a_rotation_with_an_overlap_accepts_both_and_a_cached_container_sees_the_new_at_once(
    aws: dict[str, Any], webhook: Webhook
) -> None:
    # Given a container that cached the secret (5 minutes), and an operator who rotates it with an overlap
    assert webhook(webhook_request(VALID_BODY))[0] == 200
    until = (datetime.now(UTC) + timedelta(hours=24)).isoformat()
    rotated = {
        "username": "ocelot",
        "password": "new-password",
        "previous": {**WEBHOOK_CREDENTIALS, "acceptedUntil": until},
    }
    aws["secretsmanager"].put_secret_value(
        SecretId=os.environ["WEBHOOK_SECRET_ID"], SecretString=json.dumps(rotated)
    )
    # When Ocelot still presents the old credentials, and then the new ones
    old = webhook(webhook_request(VALID_BODY))[0]
    new = webhook(webhook_request(VALID_BODY, authorization=basic("ocelot", "new-password")))[0]
    # Then both are accepted: the new one after one re-read of the secret, the old one until the overlap ends
    assert (old, new) == (200, 200)
    assert (
        webhook(webhook_request(VALID_BODY, token=WEBHOOK_CREDENTIALS["token"], authorization=None))[0] == 200
    )


# ---- 2. one write, nothing parsed ---------------------------------------------------------------


def test_a_delivery_costs_one_write_and_no_read(aws: dict[str, Any], webhook: Webhook) -> None:
    # Given a large array; When received; Then one conditional PutItem, whatever the body holds
    calls = DynamoCalls(runtime.dynamodb_client())
    body = [status(f"evt-{i}", f"m-{i}", "sent", T0) for i in range(500)]
    assert webhook(webhook_request(body))[0] == 200
    assert calls.calls == [("PutItem", "messages")]


def test_a_malformed_body_is_kept_raw_and_answered_200(
    webhook: Webhook, table_items: Items, emf: EmfReader
) -> None:
    # Given the sample malformed delivery, with a cookie and an API key header too
    event = load_event("webhook_malformed")
    event["headers"].update({"Cookie": "session=abc", "X-Api-Key": "k", "X-Ocelot-Signature": "sig"})
    # When received; Then 200: kept for the applier to find what is wrong, naming the delivery
    code, reply, _ = webhook(event)
    assert (code, reply) == (200, {"received": True, "deliveryId": "wh-0005"})
    [raw] = table_items()
    assert (raw["type"], raw["body"], raw["deliveryId"]) == ("raw", event["body"], "wh-0005")
    assert abs(datetime.fromisoformat(raw["receivedAt"]).timestamp() - time.time()) < 60
    headers = json.loads(raw["headers"])
    assert (headers["content-type"], headers["x-ocelot-signature"]) == ("application/json", "sig")
    # And no credential is stored in any form
    assert not {"authorization", "cookie", "x-api-key"} & {h.lower() for h in headers}
    stored = json.dumps(raw, default=str)
    assert GOOD_BASIC.split()[1] not in stored
    assert "session=abc" not in stored


def test_a_token_in_the_query_is_not_stored(webhook: Webhook, table_items: Items) -> None:
    assert webhook(load_event("webhook_token_auth"))[0] == 200
    assert WEBHOOK_CREDENTIALS["token"] not in json.dumps(table_items(), default=str)


def test_raw_has_a_ttl_of_raw_retention_days(
    monkeypatch: pytest.MonkeyPatch, webhook: Webhook, table_items: Items
) -> None:
    monkeypatch.setenv("RAW_RETENTION_DAYS", "7")
    runtime.reset()
    webhook(webhook_request(status("evt-1", "m-1", "sent", T0)))
    [raw] = raws(table_items)
    assert abs(raw["expiresAt"] - (time.time() + 7 * 86400)) < 60


@pytest.mark.parametrize("encoding", ["base64", "gzip"])
def test_an_encoded_body_is_kept_decoded(
    webhook: Webhook, store: DynamoStore, table_items: Items, encoding: str
) -> None:
    # Given API Gateway base64-encoded the body (a binary content type), gzip-compressed or not
    body = json.dumps(status("evt-1", "m-1", "sent", T0)).encode()
    event = webhook_request("", headers={"content-encoding": "gzip"} if encoding == "gzip" else {})
    event["body"] = base64.b64encode(gzip.compress(body) if encoding == "gzip" else body).decode()
    event["isBase64Encoded"] = True
    # Then the delivery is kept as the JSON it holds
    assert webhook(event)[0] == 200
    [raw] = raws(table_items)
    [kept] = store.raw_deliveries(raw["PK"].split("#")[1])
    assert kept.body == body


def test_a_big_delivery_is_kept_gzipped(webhook: Webhook, store: DynamoStore, table_items: Items) -> None:
    body = [status(f"evt-{i}", f"m-{i}", "delivered", T0, note="é" * 1000) for i in range(20)]
    text = json.dumps(body)
    assert webhook(webhook_request(text))[0] == 200
    [raw] = raws(table_items)
    assert (raw["bodyEncoding"], raw["bodyBytes"]) == ("gzip", len(text.encode()))
    assert json.loads(gzip.decompress(raw["body"])) == body


# ---- 3. too large -------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_its_start_is_recorded(
    monkeypatch: pytest.MonkeyPatch, webhook: Webhook, table_items: Items, emf: EmfReader
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "2000")
    runtime.reset()
    code, reply, _ = webhook(webhook_request("x" * 2001, request_id="wh-big"))
    assert code == 413
    assert reply["error"] == "payload_too_large"
    assert reply["details"] == {"deliveryId": "wh-big"}
    [raw] = table_items()
    assert (raw["type"], raw["truncatedFrom"], raw["deliveryId"]) == ("raw_truncated", 2001, "wh-big")
    assert emf.read()["WebhookBodiesTooLarge"] == 1


def test_the_default_limit_takes_a_megabyte(webhook: Webhook, table_items: Items) -> None:
    assert webhook(webhook_request("x" * 1_000_000))[0] == 200
    assert webhook(webhook_request("x" * 1_000_001))[0] == 413
    assert sorted(i["type"] for i in table_items()) == ["raw", "raw_truncated"]


# ---- 4. failures are 5xx with a metric, never a trace -------------------------------------------


@pytest.mark.parametrize(
    "error",
    [None, EndpointConnectionError(endpoint_url="https://dynamodb")],
    ids=["throttled", "unreachable"],
)
def test_a_storage_failure_is_503_counted_and_a_retry_stores_it(
    webhook: Webhook, dynamo_faults: DynamoFaults, table_items: Items, emf: EmfReader, error: Exception | None
) -> None:
    dynamo_faults.fail(runtime.dynamodb_client(), "PutItem", error=error)
    code, reply, headers = webhook(webhook_request(VALID_BODY))
    assert (code, reply, headers["Retry-After"]) == (503, UNAVAILABLE, "1")
    counted = emf.read()
    assert (counted["WebhookStorageFailures"], counted["WebhookServerErrors"]) == (1, 1)
    assert table_items() == []
    # And Ocelot's retry is kept
    assert webhook(webhook_request(VALID_BODY))[0] == 200
    assert len(raws(table_items)) == 1


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_an_unexpected_error_is_500_counted_and_says_nothing(
    monkeypatch: pytest.MonkeyPatch, webhook: Webhook, emf: EmfReader
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("bug: /secret/path line 12")

    monkeypatch.setattr(DynamoStore, "put_raw", broken)
    code, reply, _ = webhook(webhook_request(status("evt-1", "m-1", "sent", T0)))
    assert (code, reply) == (500, {"error": "internal_error", "message": "internal error", "problems": []})
    assert emf.read()["WebhookServerErrors"] == 1


@pytest.mark.parametrize("sample", ["webhook_status_event", "webhook_token_auth", "webhook_event_array"])
def test_the_samples_are_kept(webhook: Webhook, table_items: Items, sample: str) -> None:
    event = load_event(sample)
    code, reply, _ = webhook(event)
    assert (code, reply) == (200, {"received": True, "deliveryId": event["requestContext"]["requestId"]})
    assert len(raws(table_items)) == 1


@pytest.mark.filterwarnings("ignore:No application metrics")
@pytest.mark.parametrize(("method", "path"), [("POST", "/webhooks/other"), ("GET", "/webhooks/ocelot")])
def test_other_routes_are_404_not_500(webhook: Webhook, table_items: Items, method: str, path: str) -> None:
    event = webhook_request(VALID_BODY)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    assert webhook(event)[:2] == (404, {"error": "not_found", "message": "no such route", "problems": []})
    assert table_items() == []
