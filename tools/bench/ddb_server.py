"""moto (DynamoDB, Secrets Manager) behind a WSGI middleware that adds a per-request latency and counts.

Runs as its own process (`python -m tools.bench.ddb_server`), so moto's CPU does not share a GIL with
the handler being measured. Prints `PORT <n>` once it listens on 127.0.0.1.

Per DynamoDB request the middleware records the operation, the kind of item (from its key), whether a
condition refused it, and the request units it is billed: write units from the item sizes as DynamoDB
computes them (1 KB steps, plus a write to every global secondary index of the template whose keys
the item carries, at the size it projects there), read units in 4 KB steps for strongly consistent
reads and half of that for eventually consistent ones.

moto's generic request pipeline (Flask, dispatch, botocore-model parsing) costs ~2 ms of CPU per request
and its UpdateItem ~4 ms for an 11-clause SET: at 16 requests in flight that, not the handler, would
be what the bench measures. So the data-plane operations (Get/Put/Delete/BatchWrite/UpdateItem) call
moto's DynamoDB handler methods and models directly, under one lock (each operation atomic, as in
DynamoDB), and an UpdateItem of the plain `SET a = :v, ...` form is applied with moto's own condition
evaluation but without its expression validator. Everything else goes through moto's full app.

Control (never delayed): GET /__bench/stats, POST /__bench/reset, POST /__bench/config {"latency_ms"}.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tools.bench.wsgi import WSGIServer

WSGIEnv = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnv, StartResponse], Iterable[bytes]]

TARGET_PREFIX = "DynamoDB_20120810."
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
TABLE_KEYS = ("PK", "SK", "id")


@dataclass(frozen=True, slots=True)
class Index:
    """A global secondary index as the template defines it: an item carrying all its key attributes
    is written to it too, and billed for the size it projects there."""

    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()

    def projected_size(self, item: Mapping[str, Any]) -> int | None:
        if not all(key in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return item_size(item)
        names = {*TABLE_KEYS, *self.keys, *(self.included if self.projection == "INCLUDE" else ())}
        return item_size({name: value for name, value in item.items() if name in names})


def template_indexes() -> list[Index]:
    from tools.template_resources import resource

    indexes = []
    for logical in ("MessagesTable", "IdempotencyTable"):
        for gsi in resource(logical)["Properties"].get("GlobalSecondaryIndexes", []):
            projection = gsi.get("Projection", {})
            indexes.append(
                Index(
                    tuple(key["AttributeName"] for key in gsi["KeySchema"]),
                    str(projection.get("ProjectionType", "ALL")),
                    tuple(projection.get("NonKeyAttributes", ())),
                )
            )
    return indexes


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (docs: "Item sizes and formats")."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = str(Decimal(str(inner)).normalize()).replace("-", "").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in inner)
    if kind == "NS":
        return sum(attribute_size({"N": v}) for v in inner)
    if kind == "BS":
        return sum(len(base64.b64decode(v)) for v in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in inner.items())
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def item_kind(table: str, key: Mapping[str, Any]) -> str:
    """`MSG/EVT`, `REQ/CHUNK`, `RAW/*`, `<table>:record`... from the item's key."""
    if "PK" not in key:
        return f"{table}:record"
    pk = str(next(iter(key["PK"].values()), ""))
    sk = str(next(iter(key.get("SK", {"S": ""}).values()), ""))
    head = sk.lstrip("#").split("#", 1)[0]
    return f"{pk.split('#', 1)[0]}/{head if head.isalpha() and head.isupper() else '*'}"


def _updated_item(body: Mapping[str, Any]) -> dict[str, Any]:
    """The item an UpdateItem that SETs every attribute leaves: its key plus the SET values.

    Exact for the items this project updates (state and idempotency records are always written
    whole); for other updates a lower bound of the size DynamoDB bills.
    """
    item = dict(body.get("Key", {}))
    names = body.get("ExpressionAttributeNames", {})
    values = body.get("ExpressionAttributeValues", {})
    expression = str(body.get("UpdateExpression", ""))
    if expression.upper().startswith("SET "):
        for assignment in expression[4:].split(","):
            name, _, value = (part.strip() for part in assignment.partition("="))
            if value in values:
                item[names.get(name, name)] = values[value]
    return item


class Recorder:
    """Counts per (operation, item kind, outcome); thread-safe."""

    def __init__(self, indexes: list[Index] | None = None) -> None:
        self._lock = threading.Lock()
        self.latency_s = 0.0
        self.indexes = indexes or []
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.items: defaultdict[str, Counter[str]] = defaultdict(Counter)
            self.write_units = 0
            self.gsi_write_units = 0
            self.read_units = 0.0
            self.bytes_written = 0
            self.sizes: defaultdict[str, list[int]] = defaultdict(list)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "items": {key: dict(value) for key, value in self.items.items()},
                "write_units": self.write_units,
                "gsi_write_units": self.gsi_write_units,
                "read_units": self.read_units,
                "bytes_written": self.bytes_written,
                "item_sizes": {
                    kind: {"n": len(v), "mean": sum(v) / len(v), "max": max(v)}
                    for kind, v in self.sizes.items()
                },
                "latency_ms": self.latency_s * 1000,
            }

    def record(self, operation: str, body: Mapping[str, Any], refused: bool) -> None:
        with self._lock:
            self.requests[operation] += 1
            table = str(body.get("TableName", ""))
            outcome = "refused" if refused else "ok"
            if operation in ("PutItem", "UpdateItem", "DeleteItem"):
                item = body.get("Item") or (_updated_item(body) if operation == "UpdateItem" else body["Key"])
                self._write(operation, table, item, outcome, gsi=not refused)
            elif operation == "BatchWriteItem":
                for name, requests in body.get("RequestItems", {}).items():
                    for request in requests:
                        put = request.get("PutRequest")
                        item = put["Item"] if put else request["DeleteRequest"]["Key"]
                        self._write(
                            "BatchWriteItem.Put" if put else "BatchWriteItem.Delete", name, item, outcome
                        )
            elif operation == "GetItem":
                # Billed on the whole item, whatever the projection; ~1 KB items here: one 4 KB step.
                units = 1.0 if body.get("ConsistentRead") else 0.5
                self.read_units += units
                self.items[f"GetItem {item_kind(table, body.get('Key', {}))}"][outcome] += 1
            elif operation in READ_OPERATIONS:
                self.items[f"{operation} {table}"][outcome] += 1

    def _write(
        self, operation: str, table: str, item: Mapping[str, Any], outcome: str, gsi: bool = True
    ) -> None:
        size = item_size(item)
        kind = item_kind(table, item)
        units = write_units(size)
        self.write_units += units
        self.bytes_written += size
        for index in self.indexes if gsi else ():
            projected = index.projected_size(item)
            if projected is not None:
                self.gsi_write_units += write_units(projected)
        self.items[f"{operation} {kind}"][outcome] += 1
        self.sizes[kind].append(size)


_SET_CLAUSE = re.compile(r"\s*(#?[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)\s*")
FAST_OPERATIONS = {
    "PutItem": "put_item",
    "GetItem": "get_item",
    "DeleteItem": "delete_item",
    "BatchWriteItem": "batch_write_item",
    "UpdateItem": "update_item",
}


class DataPlane:
    """DynamoDB item operations straight into moto's handler and models (see the module docstring)."""

    def __init__(self, account: str, region: str) -> None:
        from moto.core.exceptions import JsonRESTError, ServiceException
        from moto.dynamodb.comparisons import create_condition_expression_parser
        from moto.dynamodb.exceptions import ConditionalCheckFailed
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.responses import DynamoHandler

        self._account = account
        self._region = region
        self._lock = threading.Lock()
        self._handler_class = DynamoHandler
        self._backends = dynamodb_backends
        self._condition_parser = create_condition_expression_parser
        self._refused = ConditionalCheckFailed
        self._errors: tuple[type[Exception], ...] = (JsonRESTError, ServiceException)

    def call(self, operation: str, body: dict[str, Any]) -> tuple[int, str]:
        """(HTTP status, JSON body) as DynamoDB answers."""
        try:
            with self._lock:
                if operation == "UpdateItem":
                    simple = self._simple_update(body)
                    if simple is not None:
                        return 200, json.dumps(simple)
                handler = self._handler_class()
                handler.current_account = self._account
                handler.region = self._region
                handler.body = body
                result = getattr(handler, FAST_OPERATIONS[operation])().result
            return 200, json.dumps(result, default=_json_default)
        except self._errors as error:
            description = getattr(error, "description", None)
            if not isinstance(description, str):
                description = json.dumps({"__type": str(getattr(error, "code", "")), "message": str(error)})
            code = getattr(error, "code", 400)
            return (code if isinstance(code, int) else 400), description

    def _simple_update(self, body: dict[str, Any]) -> dict[str, Any] | None:
        expression = str(body.get("UpdateExpression", ""))
        if not expression.upper().startswith("SET ") or body.get("ReturnValues", "NONE") != "NONE":
            return None
        clauses = [_SET_CLAUSE.fullmatch(part) for part in expression[4:].split(",")]
        values = body.get("ExpressionAttributeValues", {})
        if not all(clauses) or "Expected" in body or "AttributeUpdates" in body:
            return None
        names = body.get("ExpressionAttributeNames", {})
        backend = self._backends[self._account][self._region]
        table = backend.get_table(body["TableName"])
        key = body["Key"]
        hash_value, range_value = backend.get_keys_value(table, key)
        item = table.get_item(hash_value, range_value)
        condition = self._condition_parser(body.get("ConditionExpression"), names, values).parse()
        if not condition.expr(item):
            old = item.to_json()["Attributes"] if item is not None else None
            failure_item = old if body.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            raise self._refused(item=failure_item)
        attributes = dict(item.to_json()["Attributes"]) if item is not None else dict(key)
        for clause in clauses:
            assert clause is not None
            name, value = clause.group(1), clause.group(2)
            if value not in values:
                return None
            attributes[names.get(name, name)] = values[value]
        table.put_item(attributes, overwrite=True)
        return {}


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Middleware:
    def __init__(self, app: WSGIApp, recorder: Recorder, data_plane: DataPlane | None = None) -> None:
        self._app = app
        self._recorder = recorder
        self._data_plane = data_plane

    def __call__(self, environ: WSGIEnv, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/__bench/"):
            return self._control(path, environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if self._recorder.latency_s:
            time.sleep(self._recorder.latency_s)
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
        if self._data_plane is not None and operation in FAST_OPERATIONS:
            parsed = json.loads(body or b"{}")
            code, text = self._data_plane.call(operation, parsed)
            payload = text.encode()
            refused = code == 400 and b"ConditionalCheckFailed" in payload
            self._recorder.record(operation, parsed, refused)
            start_response(
                f"{code} {'OK' if code == 200 else 'Bad Request'}",
                [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        status: list[str] = []

        def capture(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        response = b"".join(self._app(environ, capture))
        if operation:
            refused = bool(status) and status[0].startswith("400") and b"ConditionalCheckFailed" in response
            self._recorder.record(operation, json.loads(body or b"{}"), refused)
        elif target:
            self._recorder.requests[target] += 1
        return [response]

    def _control(self, path: str, environ: WSGIEnv, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        payload = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        if path == "/__bench/reset":
            self._recorder.reset()
        elif path == "/__bench/config":
            self._recorder.latency_s = float(payload.get("latency_ms", 0)) / 1000
        body = json.dumps(self._recorder.snapshot()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _exit_with_parent(parent: int, server: WSGIServer) -> None:
    """Never outlive the bench: if the process that started us is gone (killed), stop."""
    while os.getppid() == parent:
        time.sleep(1.0)
    server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--moto-only", action="store_true", help="every request through moto's full app")
    args = parser.parse_args(argv)

    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    recorder = Recorder(template_indexes())
    recorder.latency_s = args.latency_ms / 1000
    data_plane = None if args.moto_only else DataPlane(DEFAULT_ACCOUNT_ID, "us-east-1")
    app = Middleware(DomainDispatcherApplication(create_backend_app), recorder, data_plane)
    server = WSGIServer(app, args.port)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(), server), daemon=True).start()
    print(f"PORT {server.port}", flush=True)
    server.serve()
    sys.exit(0)


if __name__ == "__main__":
    main()
