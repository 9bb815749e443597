"""A local stand-in for the HTTP API: HTTP requests in, API Gateway payload v2.0 events to the handlers.

Routes come from the template's HttpApi events (path parameters included: /messages/{messageId}).
Not emulated: the IAM (SigV4) authorizer, throttling, and the 30 s integration timeout.

Control routes of the local stack (not part of the API), under /_local: GET health, GET|POST faults
(make webhook requests fail: WebhookFaults), POST invoke/<fn> (the body is the event; empty: a
scheduled event), and those the stack adds (egress, invocations, event-sources).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from tools.local.functions import Invoker
from tools.template_resources import FunctionSpec

log = logging.getLogger("local.api")
CONTROL_PREFIX = "/_local"
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "+json")


@dataclass(frozen=True, slots=True)
class WebhookFaults:
    """Fail a share of the requests to `path` with `status`, for tests of Ocelot's retries.

    Which requests fail is decided by a hash of the body, so it is deterministic; with
    `first_attempt_only` a body fails once and its re-delivery (same bytes) goes through.
    mode "before": answered without invoking the function (as if the API failed);
    mode "after": the function runs (events stored), then the answer is replaced (a lost response).
    """

    fail_rate: float = 0.0
    status: int = 503
    mode: str = "before"
    first_attempt_only: bool = True
    path: str = "/webhooks/ocelot"

    def decides_to_fail(self, body: bytes) -> bool:
        share = int.from_bytes(hashlib.sha256(body).digest()[:4], "big") / 2**32
        return share < self.fail_rate


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str  # as in the template: /messages/{messageId}
    function: str
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, method: str, path: str, function: str) -> _Route:
        regex = ""
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                regex += re.escape(part)
        return cls(method, path, function, re.compile(f"^{regex}$"))


class ApiFront:
    def __init__(
        self,
        invoker: Invoker | None,
        specs: Sequence[FunctionSpec],
        controls: Mapping[str, Callable[[Request], Any]],  # "GET /egress" -> JSON answer
    ) -> None:
        self._invoker = invoker
        self._controls = controls
        self._specs = {spec.logical_id: spec for spec in specs}
        routes = (
            [_Route.of(r.method, r.path, s.logical_id) for s in specs for r in s.routes] if invoker else []
        )
        # As API Gateway picks: the most specific route first (fewer parameters, then longer).
        self._routes = sorted(routes, key=lambda r: (r.path.count("{"), -len(r.path)))
        self._lock = threading.Lock()
        self._faults = WebhookFaults()
        self._failed_bodies: set[str] = set()
        self._injected: list[dict[str, Any]] = []

    @property
    def routes(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self._routes]

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        for route in self._routes:
            found = route.pattern.match(path)
            if found and route.method in (method, "ANY"):
                return route, found.groupdict()
        return None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        control = request.path.startswith(CONTROL_PREFIX)
        response = self._control(request) if control else self._api(request)
        return response(environ, start_response)

    # ---- the API ----------------------------------------------------------------------------

    def _api(self, request: Request) -> Response:
        matched = self._match(request.method, request.path)
        if matched is None or self._invoker is None:
            return _json(404, {"message": "Not Found"})
        route, parameters = matched
        body = request.get_data()
        fault = self._fault_for(request.path, body)
        if fault is not None and fault.mode == "before":
            return self._injected_failure(fault, request.path, "before")
        route_key = f"{route.method} {route.path}"
        event = http_api_event(request, route_key, body, parameters)
        invocation = self._invoker.invoke(route.function, event, trigger=route_key)
        if fault is not None:
            return self._injected_failure(fault, request.path, "after")
        if invocation.error is not None:
            # What API Gateway answers when the integration fails.
            return _json(500, {"message": "Internal Server Error"})
        return lambda_response(invocation.payload)

    def _fault_for(self, path: str, body: bytes) -> WebhookFaults | None:
        with self._lock:
            faults = self._faults
            if path != faults.path or not faults.fail_rate or not faults.decides_to_fail(body):
                return None
            digest = hashlib.sha256(body).hexdigest()
            if faults.first_attempt_only:
                if digest in self._failed_bodies:
                    return None
                self._failed_bodies.add(digest)
            return faults

    def _injected_failure(self, faults: WebhookFaults, path: str, when: str) -> Response:
        with self._lock:
            self._injected.append({"path": path, "status": faults.status, "mode": when, "at": _now()})
        return _json(faults.status, {"message": "Service Unavailable (injected by the local API front)"})

    # ---- control ------------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        route = request.path.removeprefix(CONTROL_PREFIX)
        given = self._controls.get(f"{request.method} {route}")
        try:
            match request.method, route:
                case "GET", "/health":
                    return _json(200, {"ok": True})
                case "GET", "/faults":
                    return _json(200, self._faults_json())
                case "POST", "/faults":
                    self.set_faults(**json.loads(request.get_data() or b"{}"))
                    return _json(200, self._faults_json())
                case "POST", path if path.startswith("/invoke/"):
                    return self._invoke(path.removeprefix("/invoke/"), request.get_data())
                case _ if given is not None:
                    return _json(200, given(request))
        except (ValueError, TypeError) as error:
            return _json(400, {"message": str(error)})
        return _json(404, {"message": "Not Found"})

    def _invoke(self, function: str, body: bytes) -> Response:
        spec = self._specs.get(function)
        if spec is None or self._invoker is None:
            return _json(404, {"message": f"no function {function!r} here", "functions": list(self._specs)})
        try:
            event = json.loads(body) if body.strip() else scheduled_event(function)
        except ValueError:
            return _json(400, {"message": "the body must be the event, as JSON"})
        invocation = self._invoker.invoke(function, event, trigger="invoke")
        status = 200 if invocation.error is None else 500
        return _json(status, {**invocation.summary(), "payload": invocation.payload})

    def set_faults(self, reset: bool = False, **changes: Any) -> WebhookFaults:
        """Change some settings; `reset` starts from the defaults (no faults) instead of the current ones."""
        known = {f.name for f in fields(WebhookFaults)}
        if set(changes) - known:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(set(changes) - known))}")
        with self._lock:
            new = replace(WebhookFaults() if reset else self._faults, **changes)
            if new.mode not in ("before", "after") or not 0 <= new.fail_rate <= 1:
                raise ValueError("mode must be 'before' or 'after', fail_rate between 0 and 1")
            self._faults = new
            if reset:
                self._failed_bodies.clear()
            return new

    def _faults_json(self) -> dict[str, Any]:
        with self._lock:
            return {"faults": asdict(self._faults), "injected": list(self._injected)}


def scheduled_event(function: str) -> dict[str, Any]:
    """What EventBridge Scheduler/rules hand a function for a `Schedule` event."""
    now = datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/ocelot-sms-local-{function}"],
        "detail": {},
    }


def http_api_event(
    request: Request, route_key: str, body: bytes, path_parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """API Gateway HTTP API payload format 2.0 (the shape of events/api_post_batch.json)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        # Lower-case names, repeated headers joined with commas, as HTTP APIs do.
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookies = [f"{k}={v}" for k, v in request.cookies.items(multi=True)]
    headers.pop("cookie", None)
    query = {k: ",".join(request.args.getlist(k)) for k in request.args}
    now = datetime.now(UTC)
    content_type = headers.get("content-type", "")
    text = not content_type or any(t in content_type for t in _TEXT_TYPES)
    try:
        decoded = body.decode() if text else None
    except UnicodeDecodeError:
        decoded = None
    host = headers.get("host", request.host)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode(),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host.split(":")[0],
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            # Unique per request: the webhook keys raw deliveries on it.
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": decoded is None,
    }
    if body:
        event["body"] = decoded if decoded is not None else base64.b64encode(body).decode()
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def lambda_response(payload: Any) -> Response:
    """A payload v2.0 Lambda result as the HTTP response API Gateway would send."""
    if not (isinstance(payload, dict) and "statusCode" in payload):
        # A bare value: HTTP APIs answer 200 with it as JSON.
        return _json(200, payload)
    body = payload.get("body") or ""
    data = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=int(payload["statusCode"]))
    response.headers.pop("Content-Type", None)
    for name, value in (payload.get("headers") or {}).items():
        response.headers[name] = str(value)
    for cookie in payload.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    if "Content-Type" not in response.headers:
        response.headers["Content-Type"] = "application/json"
    return response


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
