"""Webhook Lambda: POST /webhooks/ocelot, called by Ocelot whenever a message's status changes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.errors import Malformed, PayloadTooLarge, StorageUnavailable, Unauthorized
from ocelot_sms.http import json_api, json_response
from ocelot_sms.observability import logger, metrics
from ocelot_sms.runtime import webhook_service
from ocelot_sms.store import RawDelivery
from ocelot_sms.webhook import TOKEN_PARAMETER

# A 400 is not retried by Ocelot: only for bodies a retry could never fix. 503 makes it retry.
ERRORS = {Unauthorized: 401, Malformed: 400, PayloadTooLarge: 413, StorageUnavailable: 503}

app = json_api(ERRORS)


@app.post("/webhooks/ocelot")
def receive_callback() -> Response[str]:
    event = app.current_event
    service = webhook_service()
    token = (event.query_string_parameters or {}).get(TOKEN_PARAMETER)
    # A request that fails here leaves nothing stored: only the metric counted in authenticate().
    service.authenticate(basic_credentials(event.headers.get("authorization")), token)
    receipt = service.receive(
        RawDelivery(
            delivery_id=event.request_context.request_id,
            received_at=datetime.now(UTC),
            body=_body_bytes(event.body or "", bool(event.is_base64_encoded)),
            headers=event.headers,
            source_ip=event.request_context.http.source_ip,
        )
    )
    return json_response(
        200, {"received": receipt.received, "new": receipt.new, "duplicates": receipt.duplicates}
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def _body_bytes(body: str, is_base64: bool) -> bytes:
    """The body as bytes, whatever API Gateway hands over: the raw delivery is stored before any
    parsing, so decoding must not fail (a body that is not the base64 it claims is kept as text)."""
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:  # binascii.Error
            pass
    return body.encode("utf-8", "surrogatepass")


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        username, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text ("Basic é")
        return None
    return (username, password) if sep else None
