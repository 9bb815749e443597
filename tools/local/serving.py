"""A WSGI app served by werkzeug in a background thread, on a loopback port the OS picks (never fixed)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

LOOPBACK = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    # One log line per request at DEBUG: the handlers' own logs say what matters.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logging.getLogger("local.http").debug("%s %s -> %s", self.command, self.path, code)


class ServerThread:
    def __init__(
        self,
        app: WSGIApplication,
        name: str,
        port: int = 0,
        request_handler: type[WSGIRequestHandler] = _QuietHandler,
    ) -> None:
        # Binding here (port 0) reserves the port at once: no window for another process to take it.
        self._server = make_server(LOOPBACK, port, app, threaded=True, request_handler=request_handler)
        self.name = name
        self.port: int = self._server.server_port
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"http-{name}", daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
