"""JSON responses for the functions' API Gateway routes, and the one way domain errors become HTTP.

Powertools' event handler is imported only where a resolver is built: the webhook and the Sender
answer their one route without one, reading the HTTP API event (payload 2.0) as a plain mapping, for
their cold start (docs/performance.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocelot_sms.errors import DomainError, InvalidRequest, Malformed, Unauthorized
from ocelot_sms.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
    from aws_lambda_powertools.event_handler.exceptions import NotFoundError

ErrorTable = Mapping[type[DomainError], int]
JSON = "application/json"


def json_response(
    status: int, body: Mapping[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    from aws_lambda_powertools.event_handler import Response

    return Response(status_code=status, content_type=JSON, body=json.dumps(body), headers=headers)


def stage_name(event: Mapping[str, Any]) -> str:
    """The stage's name when it is in the path (an HTTP API's `$default` stage is not)."""
    stage = str(event.get("requestContext", {}).get("stage") or "$default")
    return "" if stage == "$default" else stage


def route(event: Mapping[str, Any]) -> tuple[str, str]:
    """The request's method and path, the stage's name taken off the path."""
    method = str(event.get("requestContext", {}).get("http", {}).get("method") or "")
    stage = stage_name(event)
    return method, str(event.get("rawPath") or "").removeprefix(f"/{stage}" if stage else "")


def proxy_response(
    status: int, body: Mapping[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The same JSON answer as an API Gateway HTTP API (payload 2.0) response, for a handler without
    a resolver. UTF-8 as it is: escaped, a non-ASCII character takes 6 bytes of the 6 MB a function
    may answer."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON, **(headers or {})},
        "body": json.dumps(body, ensure_ascii=False),
        "isBase64Encoded": False,
    }


def error_json(
    code: str, message: str, problems: list[Any] | None = None, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every error answers the same shape: `error` (a code), `message`, `problems` (one per bad field,
    often none) and, when there is more to say, `details`."""
    body: dict[str, Any] = {"error": code, "message": message, "problems": problems or []}
    if details:
        body["details"] = dict(details)
    return body


def error_body(error: DomainError) -> dict[str, Any]:
    problems: list[Any] = []
    if isinstance(error, InvalidRequest):
        problems = [{"field": p.field, "message": p.message} for p in error.problems]
    elif isinstance(error, Malformed):
        problems = error.problems[:50]
    return error_json(error.code, error.message, problems, error.details)


# What a caller learns of a failure we did not foresee: nothing (the exception is logged).
INTERNAL_ERROR = error_json("internal_error", "internal error")


def status_for(error: DomainError, errors: ErrorTable) -> int | None:
    """The status of the error's class in the table, or of its nearest mapped base class."""
    return next((errors[cls] for cls in type(error).__mro__ if cls in errors), None)


def error_answer(error: DomainError, errors: ErrorTable) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Status, body and headers of a domain error, by the handler's table."""
    status = status_for(error, errors)
    if status is None:
        # A service raised what this handler never mapped: a bug, not the caller's fault.
        logger.error("unmapped domain error", extra={"error": type(error).__name__})
        return 500, INTERNAL_ERROR, None
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="ocelot-sms"'
    return status, error_body(error), headers or None


def json_api(errors: ErrorTable) -> APIGatewayHttpResolver:
    """A resolver that maps the services' domain errors through `errors` (the handler's table), and
    whose own errors are JSON too: 404 for a route the function does not serve, and 500 with no detail
    (the exception is logged) for anything else."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    app = APIGatewayHttpResolver()

    # Registered apart, or the catch-all below would answer 500 to any other method or path.
    @app.not_found
    def not_found(_error: NotFoundError) -> Response[str]:
        return json_response(404, error_json("not_found", "no such route"))

    @app.exception_handler(DomainError)
    def domain_error(error: DomainError) -> Response[str]:
        return json_response(*error_answer(error, errors))

    @app.exception_handler(Exception)
    def unexpected(_error: Exception) -> Response[str]:
        logger.exception("unexpected error")
        return json_response(500, INTERNAL_ERROR)

    return app
