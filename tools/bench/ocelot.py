"""Ocelot on 127.0.0.1 for the sender workload: the project's sandbox (tools/local/sandbox.py), else a
minimal stub of the same send contract. Either way wrapped to count the send requests.

GET /__bench/ocelot returns {"requests", "by_status", "bytes"}; POST /__bench/ocelot/reset zeroes them.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ocelot_sms.contract import SEND_PATH, AcceptedMessage, SendRequest, SendResponse
from tools.bench.wsgi import WSGIServer

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def stub_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The send contract only: a valid SendRequest gets a batch id and one id per message (201)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if environ.get("PATH_INFO") != SEND_PATH or environ.get("REQUEST_METHOD") != "POST":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"statusCode": 404, "message": "Not Found"}']
    send = SendRequest.model_validate_json(environ["wsgi.input"].read(length))
    response = SendResponse(
        batch_id=str(uuid.uuid4()),
        messages=[
            AcceptedMessage(message_id=str(uuid.uuid4()), to=m.to, external_id=m.external_id)
            for m in send.messages
        ],
    )
    body = json.dumps(response.to_wire()).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Counting:
    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/__bench/ocelot"):
            with self._lock:
                if path.endswith("/reset"):
                    self._stats.clear()
                stats = dict(self._stats)
            body = json.dumps(
                {
                    "requests": stats.get("requests", 0),
                    "bytes": stats.get("bytes", 0),
                    "by_status": {k[7:]: v for k, v in stats.items() if k.startswith("status:")},
                }
            ).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        status: list[str] = []

        def capture(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code.split(" ", 1)[0])
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        response = list(self._app(environ, capture))
        if path == SEND_PATH:
            with self._lock:
                self._stats["requests"] += 1
                self._stats["bytes"] += int(environ.get("CONTENT_LENGTH") or 0)
                self._stats[f"status:{status[0] if status else '?'}"] += 1
        return response


class OcelotServer:
    def __init__(self, chatbot_id: str, api_key: str) -> None:
        self._stop_app: Callable[[], None] = lambda: None
        try:
            from tools.local.sandbox import Sandbox, SandboxConfig

            sandbox = Sandbox(SandboxConfig(chatbot_id=chatbot_id, api_key=api_key)).start()
            app: WSGIApp = sandbox
            self._stop_app = sandbox.stop
            self.kind = "tools/local/sandbox.py (no webhook: callbacks are planned, not sent)"
        except Exception as error:  # absent or changed: the bench still needs an Ocelot
            logging.getLogger(__name__).warning("sandbox unavailable (%s): using the bench stub", error)
            app = stub_app
            self.kind = "tools/bench/ocelot.py stub"
        self._server = WSGIServer(Counting(app)).start()
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()
        self._stop_app()
