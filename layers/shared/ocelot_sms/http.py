"""JSON responses for the functions' API Gateway routes."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from ocelot_sms.observability import logger


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=headers,
    )


def json_api() -> APIGatewayHttpResolver:
    """A resolver whose own errors are JSON too: 404 for a route the function does not serve, and 500
    with no detail (the exception is logged) for anything its routes did not handle."""
    app = APIGatewayHttpResolver()

    # Registered apart, or the catch-all below would answer 500 to any other method or path.
    @app.not_found
    def not_found(_error: NotFoundError) -> Response[str]:
        return json_response(404, {"error": "not_found", "message": "no such route"})

    @app.exception_handler(Exception)
    def unexpected(_error: Exception) -> Response[str]:
        logger.exception("unexpected error")
        return json_response(500, {"error": "internal_error", "message": "internal error"})

    return app
