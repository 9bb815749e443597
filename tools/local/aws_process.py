"""moto in a process of its own (`stack up --aws-process`): the AWS emulation on a second core.

The stack's one process is bound by the GIL, and under a load of callbacks about half of it is moto
answering DynamoDB (UpdateItem parses and validates its expression on every call). The chaos run
(tools/chaos) therefore serves moto from a child process of the supervisor:

    python -m tools.local.aws_process --parent-pid PID

The child serves the same MotoServer (atomic requests, storage fault injector) on a free loopback
port, prints `ready <url>` on its stdout, and answers the two control routes that need moto's side
itself: /_local/storage-faults and /_local/dynamodb-items (the stack's API front forwards its own
routes of those names there). It stops on SIGTERM, and by itself when its parent dies: Linux's
parent-death signal, and a check of the parent every half second.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import parse_qs

import requests
from werkzeug.wrappers import Request, Response

from tools.local import ROOT, netguard

log = logging.getLogger("local.aws")
CONTROL_PREFIX = "/_local"
PR_SET_PDEATHSIG = 1


class ControlRoutes:
    """WSGI middleware of the child: the control routes, everything else to moto."""

    def __init__(self, app: Any, moto: Any, region: str) -> None:
        self._app = app
        self._moto = moto
        self._region = region

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(CONTROL_PREFIX):
            return self._app(environ, start_response)
        request = Request(environ)
        try:
            match request.method, path.removeprefix(CONTROL_PREFIX):
                case "GET", "/storage-faults":
                    response = _json(200, self._moto.faults.status())
                case "POST", "/storage-faults":
                    changes = json.loads(request.get_data() or b"{}")
                    if not isinstance(changes, dict):
                        raise TypeError("expected a JSON object")
                    response = _json(200, self._moto.faults.configure(**changes))
                case "GET", "/dynamodb-items":
                    query = parse_qs(str(environ.get("QUERY_STRING", "")))
                    table = query.get("table", [""])[0]
                    attributes = [a for a in query.get("attributes", [""])[0].split(",") if a]
                    items = self._moto.table_items(table, attributes, self._region)
                    response = _json(200, {"items": items})
                case _:
                    response = _json(404, {"message": "Not Found"})
        except LookupError as error:
            response = _json(404, {"message": str(error)})
        except (ValueError, TypeError) as error:
            response = _json(400, {"message": str(error)})
        return response(environ, start_response)


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class RemoteStorageFaults:
    """The parent's handle on the child's StorageFaults (same methods, over HTTP)."""

    def __init__(self, process: MotoProcess) -> None:
        self._process = process

    def _call(self, method: str, body: Any = None) -> dict[str, Any]:
        response = requests.request(
            method, f"{self._process.url}{CONTROL_PREFIX}/storage-faults", json=body, timeout=30
        )
        if response.status_code == 400:
            raise ValueError(response.json().get("message", "refused"))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def configure(
        self, reset: bool = False, outage_seconds: float | None = None, **changes: Any
    ) -> dict[str, Any]:
        body = {**changes, "reset": reset}
        if outage_seconds is not None:
            body["outage_seconds"] = outage_seconds
        return self._call("POST", body)

    def status(self) -> dict[str, Any]:
        return self._call("GET")


class MotoProcess:
    """Starts the child, knows its URL, stops it. Same surface as MotoServer for the stack."""

    def __init__(self) -> None:
        self.url = ""
        self.faults = RemoteStorageFaults(self)
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> MotoProcess:
        command = [sys.executable, "-m", "tools.local.aws_process", "--parent-pid", str(os.getpid())]
        self._process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # the ready line; the child's logs go to our stderr
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
        line = _read_line(self._process.stdout, timeout)
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"moto's process did not start (said {line!r})")
        self.url = line.split()[1]
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def table_items(self, table: str, attributes: Sequence[str], region: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.url}{CONTROL_PREFIX}/dynamodb-items",
            params={"table": table, "attributes": ",".join(attributes)},
            timeout=600,
        )
        if response.status_code == 404:
            raise LookupError(response.json().get("message", "not found"))
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    if stream is None:
        return ""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


def _die_with_parent(parent_pid: int, stop: threading.Event) -> None:
    try:  # Linux: SIGTERM when the parent (the thread that started us) dies
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent_pid:
                log.info("parent %s is gone: stopping", parent_pid)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    from tools.local.aws import MotoServer

    parser = argparse.ArgumentParser(prog="python -m tools.local.aws_process", description=__doc__)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    netguard.install()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    _die_with_parent(args.parent_pid, stop)
    if os.getppid() != args.parent_pid:
        return 1  # the parent died before we could watch it
    moto = MotoServer(wrap=lambda app, server: ControlRoutes(app, server, args.region)).start()
    print(f"ready {moto.url}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed later goes to the log
    try:
        while not stop.wait(0.5):
            pass
    finally:
        # A request thread stuck on a connection must not keep an orphan alive: exit regardless.
        deadline = threading.Timer(5.0, os._exit, args=(0,))
        deadline.daemon = True
        deadline.start()
        moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
