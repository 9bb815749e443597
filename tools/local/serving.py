"""The one HTTP server of the tools: a WSGI app in a background thread, on a loopback port the OS picks.

Hand-written on http.server because werkzeug's development server closes the connection after every
response, while botocore, urllib3 and Lambda keep theirs alive: the bench would measure a new TCP
connection per DynamoDB request. Enough for our clients: Content-Length bodies, no chunked requests.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

LOOPBACK = "127.0.0.1"
log = logging.getLogger("local.http")
# Headers the server sets itself from the body it sends.
_OWN_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "date", "server"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body go out in two writes: without this, Nagle's algorithm holds the body back
    # until the client's delayed ACK (~40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    timeout = 300  # an idle kept-alive connection ends after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.server.name, *args)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "SERVER_NAME": LOOPBACK,
            "SERVER_PORT": str(self.server.server_port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length) if length else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda data: None

        try:
            result = self.server.app(environ, start_response)
            try:
                payload = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
        except Exception:  # as werkzeug's server does: the client gets a 500, not a dropped connection
            log.exception("%s: the app failed on %s %s", self.server.name, self.command, self.path)
            started[:], payload = ["500 Internal Server Error", [("Content-Type", "text/plain")]], b"error"
        status, headers = started
        code, _, reason = str(status).partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in _OWN_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: WSGIApplication, name: str, port: int) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.app, self.name = app, name
        self.open: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open.discard(request)
        super().shutdown_request(request)


class ServerThread:
    def __init__(self, app: WSGIApplication, name: str, port: int = 0) -> None:
        # Binding here (port 0) reserves the port at once: no window for another process to take it.
        self._server = _Server(app, name, port)
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
        # Kept-alive connections end too: nothing reaches the app once it is stopped.
        for connection in list(self._server.open):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
