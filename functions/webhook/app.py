"""Webhook Lambda: POST /webhooks/ocelot. Authenticates Ocelot's callback, keeps it raw, answers 200.

The events are applied from the table's stream (functions/applier): the answer never waits for them.
No event resolver and no Powertools event data class (importing one imports them all): one route,
read from the event as a mapping, and a cold start close to boto3's own (docs/performance.md).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.errors import DomainError, PayloadTooLarge, StorageUnavailable, Unauthorized
from ocelot_sms.http import INTERNAL_ERROR, error_answer, error_json, proxy_response, route
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.runtime import webhook_service
from ocelot_sms.store import RawDelivery
from ocelot_sms.webhook import TOKEN_PARAMETER

# 503 makes Ocelot retry: every write is idempotent, so a retry completes what failed.
ERRORS = {Unauthorized: 401, PayloadTooLarge: 413, StorageUnavailable: 503}
ROUTE = ("POST", "/webhooks/ocelot")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = answer(event)
    if response["statusCode"] >= 500:
        # Every 5xx counted: a handled one leaves Lambda's Errors at 0, and the alarm reads this.
        metrics.add_metric(name="WebhookServerErrors", unit=MetricUnit.Count, value=1)
    return response


def answer(event: Mapping[str, Any]) -> dict[str, Any]:
    if route(event) != ROUTE:
        return proxy_response(404, error_json("not_found", "no such route"))
    context = event.get("requestContext") or {}
    # HTTP API sends header names in lower case; other senders (sam local, tests) may not.
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    try:
        service = webhook_service()
        # A request refused here leaves nothing stored: only the metric counted in authenticate().
        service.authenticate(basic_credentials(headers.get("authorization")), _token(event))
        receipt = service.receive(
            RawDelivery(
                delivery_id=context["requestId"],
                received_at=datetime.now(UTC),
                body=_body_bytes(event.get("body") or "", bool(event.get("isBase64Encoded"))),
                headers=headers,
                source_ip=context.get("http", {}).get("sourceIp"),
            )
        )
    except DomainError as error:
        return proxy_response(*error_answer(error, ERRORS))
    except Exception:
        logger.exception("unexpected error")
        return proxy_response(500, INTERNAL_ERROR)
    return proxy_response(200, {"received": True, "deliveryId": receipt.delivery_id})


def _token(event: Mapping[str, Any]) -> str | None:
    return (event.get("queryStringParameters") or {}).get(TOKEN_PARAMETER)


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
