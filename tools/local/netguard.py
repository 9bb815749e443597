"""Loopback-only network guard for a process of the local stack (and for the tests driving it).

Every outgoing connection and name lookup is checked: anything that is not 127.0.0.0/8, ::1 or
"localhost" is refused and recorded, so a misconfigured URL (or botocore looking for instance
credentials) fails loudly instead of leaving the machine.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import Counter
from typing import Any

_lock = threading.Lock()
_destinations: Counter[str] = Counter()
_violations: list[str] = []
_originals: dict[str, Any] = {}


class EgressBlocked(PermissionError):
    """A connection to a non-loopback address was attempted."""


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check(host: object, port: object, what: str) -> None:
    if not isinstance(host, str):  # AF_UNIX paths and the like are local by nature
        return
    destination = f"{host}:{port}"
    with _lock:
        if is_loopback_host(host):
            _destinations[destination] += 1
            return
        _violations.append(f"{what} {destination}")
    raise EgressBlocked(f"{what} to {destination} refused: the local stack talks to loopback only")


def install() -> None:
    """Idempotent; patches socket.socket.connect/connect_ex and socket.getaddrinfo."""
    with _lock:
        if _originals:
            return
        _originals.update(
            connect=socket.socket.connect, connect_ex=socket.socket.connect_ex, getaddrinfo=socket.getaddrinfo
        )
    connect, connect_ex, getaddrinfo = (
        _originals["connect"],
        _originals["connect_ex"],
        _originals["getaddrinfo"],
    )

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            _check(address[0], address[1], "connect")
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if isinstance(address, tuple):
            _check(address[0], address[1], "connect")
        result: int = connect_ex(self, address)
        return result

    def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        # Names other than localhost would need DNS, which is off-machine.
        if isinstance(host, bytes):
            host = host.decode()
        if host is not None:
            _check(host, port, "lookup")
        return getaddrinfo(host, port, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = guarded_getaddrinfo


def uninstall() -> None:
    with _lock:
        if not _originals:
            return
        socket.socket.connect = _originals.pop("connect")  # type: ignore[method-assign]
        socket.socket.connect_ex = _originals.pop("connect_ex")  # type: ignore[method-assign]
        socket.getaddrinfo = _originals.pop("getaddrinfo")


def snapshot() -> dict[str, Any]:
    """What this process connected to so far (counted per host:port) and what was refused."""
    with _lock:
        return {
            "installed": bool(_originals),
            "destinations": dict(_destinations),
            "violations": list(_violations),
        }
