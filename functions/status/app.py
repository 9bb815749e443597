"""Status API (IAM auth): GET /sends, GET /sends/{sendId}, GET /batches/{requestId},
GET /messages/{messageId} and GET /inbound."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.errors import BadRequest, NotFound
from ocelot_sms.http import json_api, json_response
from ocelot_sms.observability import logger
from ocelot_sms.runtime import status_service

ERRORS = {BadRequest: 400, NotFound: 404}

app = json_api(ERRORS)


# Path parameters arrive as sent, percent-encoded ("school%3A42"): the resolver does not decode them.
@app.get("/batches/<request_id>")
def get_batch(request_id: str) -> Response[str]:
    query = app.current_event.query_string_parameters or {}
    batch = status_service().batch(unquote(request_id), limit=query.get("limit"), cursor=query.get("cursor"))
    return json_response(200, batch)


@app.get("/sends")
def list_sends() -> Response[str]:
    query = app.current_event.query_string_parameters or {}
    return json_response(200, status_service().sends(limit=query.get("limit"), cursor=query.get("cursor")))


@app.get("/sends/<send_id>")
def get_send(send_id: str) -> Response[str]:
    query = app.current_event.query_string_parameters or {}
    send = status_service().send(unquote(send_id), limit=query.get("limit"), cursor=query.get("cursor"))
    return json_response(200, send)


@app.get("/messages/<message_id>")
def get_message(message_id: str) -> Response[str]:
    return json_response(200, status_service().message(unquote(message_id)))


@app.get("/inbound")
def list_inbound() -> Response[str]:
    query = app.current_event.query_string_parameters or {}
    inbound = status_service().inbound(
        since=query.get("since"), limit=query.get("limit"), cursor=query.get("cursor")
    )
    return json_response(200, inbound)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
