"""Status API (IAM auth): GET /batches/{requestId} and GET /messages/{messageId}."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.http import json_api, json_response
from ocelot_sms.observability import logger
from ocelot_sms.runtime import status_service
from ocelot_sms.status import DEFAULT_PAGE, BadRequest

app = json_api()


# Path parameters arrive as sent, percent-encoded ("school%3A42"): the resolver does not decode them.
@app.get("/batches/<request_id>")
def get_batch(request_id: str) -> Response[str]:
    request_id = unquote(request_id)
    query = app.current_event.query_string_parameters or {}
    try:
        limit = int(query.get("limit", str(DEFAULT_PAGE)))
    except ValueError:
        return json_response(400, {"error": "bad_request", "message": "limit must be a whole number"})
    batch = status_service().batch(request_id, limit=limit, cursor=query.get("cursor"))
    if batch is None:
        return json_response(404, {"error": "not_found", "message": f"no batch {request_id!r}"})
    return json_response(200, batch)


@app.get("/messages/<message_id>")
def get_message(message_id: str) -> Response[str]:
    message_id = unquote(message_id)
    message = status_service().message(message_id)
    if message is None:
        return json_response(404, {"error": "not_found", "message": f"no message {message_id!r}"})
    return json_response(200, message)


@app.exception_handler(BadRequest)
def bad_request(error: BadRequest) -> Response[str]:
    return json_response(400, {"error": "bad_request", "message": str(error)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
