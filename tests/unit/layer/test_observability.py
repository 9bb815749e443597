"""Logs and metrics: masking, EMF output, and no secret or message text in anything printed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions.applier import app as applier
from functions.webhook import app as handler
from ocelot_sms.http import json_response
from ocelot_sms.observability import mask_phone
from tests.events import load_event, with_body
from tests.unit.support.aws import WEBHOOK_CREDENTIALS, EmfReader, FakeContext
from tests.unit.support.stream import TableStream


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15551230010", "********0010"),
        (" +15551230010 ", "********0010"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("12", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone_keeps_the_last_four_digits_only(number: str | None, masked: str) -> None:
    assert mask_phone(number) == masked


def test_json_response_sets_the_content_type_and_headers() -> None:
    # Given a reply with an extra header; Then JSON with its content type and the header
    response = json_response(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Basic"})
    assert response.status_code == 401
    assert json.loads(response.body or "") == {"error": "unauthorized"}
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"] == "Basic"


def test_json_response_without_headers() -> None:
    response = json_response(200, {"ok": True})
    assert (response.status_code, response.body) == (200, '{"ok": true}')


@pytest.mark.usefixtures("atomic_dynamodb")
def test_nothing_secret_or_private_is_printed(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext, emf: EmfReader
) -> None:
    # Given deliveries carrying Basic credentials, the URL token, a cookie, and message text
    text = "Meet me at 5, private-text-7f3a"
    body = [
        {"eventId": "in-1", "name": "IncomingSms.received", "from": "+15551230010", "message": text},
        {"eventId": "e-1", "name": "OutgoingSms.statusChanged", "messageId": "m-1", "status": "sent"},
    ]
    good = with_body(load_event("webhook_status_event"), body)
    good["headers"]["cookie"] = "session=cookie-value-9c1d"
    token = with_body(load_event("webhook_token_auth"), body)
    malformed = with_body(load_event("webhook_status_event"), f'{{"message": "{text}", ')
    bad = with_body(load_event("webhook_bad_auth"), body)
    # When the webhook handles them, and the applier applies what the webhook kept
    codes = [handler.lambda_handler(e, lambda_context)["statusCode"] for e in (good, token, malformed, bad)]
    assert codes == [200, 200, 200, 401]
    applier.lambda_handler(TableStream(env["TABLE_NAME"]).event(), lambda_context)
    # Then metrics were emitted as EMF in the project's namespace
    counted = emf.read()
    assert counted["WebhookAuthFailures"] == 1
    assert counted["WebhookMalformedItems"] == 1
    printed = "\n".join(emf.lines)
    assert '"Namespace":"OcelotSms"' in printed
    # And no credential, cookie, message text or full phone number appears in any log line or metric
    userpass = f"{WEBHOOK_CREDENTIALS['username']}:{WEBHOOK_CREDENTIALS['password']}"
    forbidden = [
        WEBHOOK_CREDENTIALS["password"],
        WEBHOOK_CREDENTIALS["token"],
        base64.b64encode(userpass.encode()).decode(),
        "cookie-value-9c1d",
        "private-text-7f3a",
        "+15551230010",
    ]
    assert [f for f in forbidden if f in printed] == []
    # And the stored delivery logs name it by id
    assert any('"deliveryId":"wh-0001"' in line for line in emf.lines), printed
