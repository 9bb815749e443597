"""The only way bench code talks HTTP to its own servers: JSON to 127.0.0.1, never through a proxy.

Standard library only: the measured (Lambda-like) processes import it too.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.request
from typing import Any

HOST = "127.0.0.1"

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(url: str, payload: Any = None, timeout: float = 30.0) -> Any:
    """GET (or POST a JSON payload to) a local control endpoint, never through a proxy."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"refusing to contact {url}: the bench only talks to {HOST}")
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


_guard_installed = False


def loopback_only() -> None:
    """Refuse any connection that is not to loopback, in this process (idempotent)."""
    global _guard_installed
    if _guard_installed:
        return
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(host, str) and not _is_loopback(host):
            raise PermissionError(f"the bench talks to loopback only, not {host}")
        original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    _guard_installed = True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
