"""AWS on loopback: moto's server in a process of its own, and the template's resources in it.

    python -m tools.local.aws --parent-pid PID [--latency-ms 10] [--meter]

The one moto runner of the tools: the local stack starts it (so the demo, the tests and the chaos
run use it), and so does the bench. It prints `ready <url>` once it listens on 127.0.0.1, and stops
on SIGTERM or when its parent dies. A process of its own puts moto's work on a second core.

In front of moto, as WSGI middleware (outermost first):
- control routes under /_local (never delayed or counted): storage-faults, dynamodb-items,
  dynamodb-usage, egress;
- `Meter` (bench): a latency per request, and DynamoDB requests, items and billed units counted;
- `StorageFaults`: DynamoDB writes failing as under load (chaos run; off until configured);
- `Atomic`: one request at a time, as AWS's APIs are atomic and moto's backends are not thread-safe.
  DynamoDB item operations call moto's handler directly there (`fast_dynamodb`): moto's generic
  request pipeline costs ~2 ms of CPU per request, which would make moto the bottleneck.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import io
import json
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal
from typing import IO, Any
from urllib.parse import parse_qs

import boto3
import requests
from botocore.config import Config

from tools.local import netguard
from tools.local.serving import ServerThread
from tools.template_resources import ROOT, create_queues, create_table, load_template, resource

log = logging.getLogger("local.aws")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
TABLES = ("MessagesTable", "IdempotencyTable")
QUEUE, DEAD_LETTER_QUEUE = "SendQueue", "SendDeadLetterQueue"
OCELOT_SECRET, WEBHOOK_SECRET = "OcelotApiSecret", "WebhookSecret"
CONTROL_PREFIX = "/_local"
DYNAMODB_TARGET = "DynamoDB_20120810."


def client(service: str, endpoint_url: str, region: str = REGION, config: Config | None = None) -> Any:
    """A boto3 client that can only reach the local endpoint, with fake credentials."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        config=config,
        **FAKE_CREDENTIALS,
    )


def aws_environment(endpoint_url: str | None = None) -> dict[str, str]:
    """Fake credentials, the region, and nothing from the developer's ~/.aws or instance metadata."""
    env = {name.upper(): value for name, value in FAKE_CREDENTIALS.items()}
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


def _json_response(start_response: Callable[..., Any], status: int, body: Any, kind: str) -> list[bytes]:
    payload = body if isinstance(body, bytes) else json.dumps(body, default=_json_default).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "")
    headers = [("Content-Type", kind), ("x-amzn-RequestId", str(uuid.uuid4()))]
    start_response(f"{status} {reason}", headers)
    return [payload]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):  # binary values base64-encoded, as DynamoDB's JSON protocol has them
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _body(environ: dict[str, Any]) -> bytes:
    """The request body, readable again by whoever comes next."""
    if "local.body" not in environ:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["local.body"] = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(environ["local.body"])
    return bytes(environ["local.body"])


def dynamodb_request(environ: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(operation, request) of a DynamoDB request, parsed once per request; None for anything else."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if not target.startswith(DYNAMODB_TARGET):
        return None
    if "local.dynamodb" not in environ:
        try:
            request = json.loads(_body(environ) or b"{}")
        except ValueError:
            request = {}
        environ["local.dynamodb"] = (target.removeprefix(DYNAMODB_TARGET), request)
    parsed: tuple[str, dict[str, Any]] = environ["local.dynamodb"]
    return parsed


# ---- one request at a time, DynamoDB's item operations straight into moto's handler ------------

_SET_CLAUSE = re.compile(r"\s*(#?[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)\s*")
FAST_OPERATIONS = {
    "PutItem": "put_item",
    "GetItem": "get_item",
    "DeleteItem": "delete_item",
    "BatchWriteItem": "batch_write_item",
    "UpdateItem": "update_item",
}


class Atomic:
    """Runs each request alone. Without this, moto's UpdateItem on a new key first stores the bare key
    and then applies the update, so a concurrent read sees an item without its attributes and two
    concurrent first updates can lose one. A long-polling SQS ReceiveMessage runs outside the lock."""

    def __init__(self, app: WSGIApp, fast_dynamodb: bool) -> None:
        from moto.core.exceptions import JsonRESTError, ServiceException
        from moto.dynamodb.comparisons import create_condition_expression_parser
        from moto.dynamodb.exceptions import ConditionalCheckFailed
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.responses import DynamoHandler

        self._app = app
        self._fast = fast_dynamodb
        self.lock = threading.Lock()  # whoever reads moto's memory directly takes it too
        self._handler, self._backends = DynamoHandler, dynamodb_backends
        self._parser, self._refused = create_condition_expression_parser, ConditionalCheckFailed
        self._errors: tuple[type[Exception], ...] = (JsonRESTError, ServiceException)

    def backend(self, region: str) -> Any:
        return self._backends[ACCOUNT_ID][region]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        dynamodb = dynamodb_request(environ)
        if dynamodb is not None and self._fast and dynamodb[0] in FAST_OPERATIONS:
            status, body = self._direct(*dynamodb)
            return _json_response(start_response, status, body, "application/x-amz-json-1.0")
        if _is_long_poll(environ, _body(environ)):
            return self._app(environ, start_response)
        with self.lock:
            # Consumed inside the lock: a lazy response body would otherwise run outside it.
            return list(self._app(environ, start_response))

    def _direct(self, operation: str, request: dict[str, Any]) -> tuple[int, Any]:
        # As moto's own request parser hands it over: binaries as bytes, not the wire's base64 (moto
        # keeps what it is given, and its stream records would carry the base64 encoded twice).
        request = _binaries_decoded(request)
        try:
            with self.lock:
                if operation == "UpdateItem" and self._plain_set(request):
                    return 200, {}
                handler = self._handler()
                handler.current_account, handler.region, handler.body = ACCOUNT_ID, REGION, request
                return 200, getattr(handler, FAST_OPERATIONS[operation])().result
        except self._errors as error:
            description, code = getattr(error, "description", None), getattr(error, "code", 400)
            if isinstance(description, str):  # moto's error document, as DynamoDB answers it
                return (code if isinstance(code, int) else 400), description.encode()
            return 400, {"__type": str(code), "message": str(error)}

    def _plain_set(self, request: dict[str, Any]) -> bool:
        """An UpdateItem `SET a = :v, ...` applied with moto's condition evaluation but without its
        expression validator (~4 ms of CPU for the 11 clauses of a state update). False: not that form."""
        expression = str(request.get("UpdateExpression", ""))
        if not expression.upper().startswith("SET ") or request.get("ReturnValues", "NONE") != "NONE":
            return False
        clauses = [_SET_CLAUSE.fullmatch(part) for part in expression[4:].split(",")]
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        if not all(c is not None and c.group(2) in values for c in clauses) or "Expected" in request:
            return False
        backend = self.backend(REGION)
        table = backend.get_table(request["TableName"])
        item = table.get_item(*backend.get_keys_value(table, request["Key"]))
        if not self._parser(request.get("ConditionExpression"), names, values).parse().expr(item):
            old = item.to_json()["Attributes"] if item is not None else None
            wanted = request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
            raise self._refused(item=old if wanted else None)
        attributes = dict(item.to_json()["Attributes"]) if item is not None else dict(request["Key"])
        for clause in clauses:
            assert clause is not None
            attributes[names.get(clause.group(1), clause.group(1))] = values[clause.group(2)]
        table.put_item(attributes, overwrite=True)
        return True

    def table_items(self, table: str, attributes: Sequence[str], region: str) -> list[dict[str, Any]]:
        """Every item of a table, with only `attributes` (wire format), read from moto's memory between
        two requests: moto answers a Scan page, and any Query, by sorting every item of the table."""
        wanted = frozenset(attributes)
        with self.lock:
            found = self.backend(region).tables.get(table)
            if found is None:
                raise LookupError(f"no table {table!r}")
            # A table with a sort key holds a dict per partition key, one without holds the item.
            items = [
                item
                for partition in found.items.values()
                for item in (partition.values() if isinstance(partition, dict) else [partition])
            ]
            return [{k: v.to_regular_json() for k, v in i.attrs.items() if k in wanted} for i in items]


def _binaries_decoded(value: Any) -> Any:
    """A DynamoDB JSON request with every B and BS attribute value decoded from base64."""
    if isinstance(value, dict):
        if len(value) == 1 and "B" in value and isinstance(value["B"], str):
            return {"B": base64.b64decode(value["B"])}
        if len(value) == 1 and "BS" in value and isinstance(value["BS"], list):
            return {"BS": [base64.b64decode(v) for v in value["BS"]]}
        return {k: _binaries_decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_binaries_decoded(v) for v in value]
    return value


def _is_long_poll(environ: Mapping[str, Any], body: bytes) -> bool:
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    try:
        if target == "AmazonSQS.ReceiveMessage":  # JSON protocol
            return int(json.loads(body or b"{}").get("WaitTimeSeconds") or 0) > 0
        if not target and b"Action=ReceiveMessage" in body:  # query protocol
            return int(parse_qs(body.decode()).get("WaitTimeSeconds", ["0"])[0]) > 0
    except (ValueError, AttributeError):
        return False
    return False


# ---- storage faults: DynamoDB throttling and internal errors on demand (the chaos run) ----------

# HTTP status of the errors DynamoDB answers under load (botocore retries both kinds).
STORAGE_ERRORS: Mapping[str, int] = {
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "InternalServerError": 500,
}
STORAGE_SCOPES = ("callbacks", "all")


@dataclass(frozen=True, slots=True)
class StorageFaultConfig:
    """Which DynamoDB writes fail, and how (docs/local-stack.md, "The storage fault hook")."""

    rate: float = 0.0
    errors: tuple[str, ...] = ("ProvisionedThroughputExceededException", "InternalServerError")
    applied_rate: float = 0.0  # share of the 500s applied first, only the answer being the error
    operations: tuple[str, ...] = ("PutItem", "UpdateItem")
    # "callbacks": raw deliveries (the webhook's), events and #STATE items (the applier's); "all": any item
    scope: str = "callbacks"
    sk_prefixes: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()  # if given, only tables whose name ends with one
    max_failures: int = -1
    seed: int = 0


def _item_key(operation: str, request: Mapping[str, Any]) -> tuple[str, str]:
    """(PK, SK) of the item a PutItem/UpdateItem/DeleteItem writes ("" when it has none)."""
    key = request.get("Item") if operation == "PutItem" else request.get("Key")
    key = key if isinstance(key, Mapping) else {}
    pk, sk = (str((key.get(name) or {}).get("S", "")) for name in ("PK", "SK"))
    return pk, sk


class StorageFaults:
    """Decides, per DynamoDB request, whether it fails; counts what it saw and did. Thread-safe."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._config = StorageFaultConfig()
        self._rng = random.Random("0/storage")
        self._outage_until, self._outages, self._counts, self._next_error = (
            0.0,
            list[dict[str, Any]](),
            Counter[str](),
            0,
        )

    def configure(
        self, reset: bool = False, outage_seconds: float | None = None, **changes: Any
    ) -> dict[str, Any]:
        unknown = sorted(set(changes) - {f.name for f in fields(StorageFaultConfig)})
        if unknown:
            raise ValueError(f"unknown storage fault setting(s): {', '.join(unknown)}")
        for name in ("errors", "operations", "sk_prefixes", "tables"):
            if name in changes:
                if isinstance(changes[name], str) or not isinstance(changes[name], Iterable):
                    raise ValueError(f"{name}: expected a list")
                changes[name] = tuple(str(v) for v in changes[name])
        with self._lock:
            new = replace(StorageFaultConfig() if reset else self._config, **changes)
            problems = [
                f"{n} must be between 0 and 1"
                for n in ("rate", "applied_rate")
                if not 0 <= getattr(new, n) <= 1
            ]
            problems += [f"unknown error {e!r}" for e in new.errors if e not in STORAGE_ERRORS]
            problems += ["errors: at least one"] if not new.errors else []
            problems += [f"scope must be one of {STORAGE_SCOPES}"] if new.scope not in STORAGE_SCOPES else []
            if outage_seconds is not None and not 0 <= float(outage_seconds) <= 600:
                problems.append("outage_seconds must be between 0 and 600")
            if problems:
                raise ValueError("; ".join(problems))
            if reset or new.seed != self._config.seed:
                self._rng = random.Random(f"{new.seed}/storage")
            if reset:
                self._outage_until, self._outages, self._counts, self._next_error = 0.0, [], Counter[str](), 0
            self._config = new
            if outage_seconds:
                self._outage_until = max(self._outage_until, time.monotonic() + float(outage_seconds))
                started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self._outages.append({"started": started, "seconds": float(outage_seconds)})
        return self.status()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "config": asdict(self._config),
                "outage_active": time.monotonic() < self._outage_until,
                "outages": list(self._outages),
                "counts": dict(self._counts),
            }

    def _decide(self, operation: str, request: Mapping[str, Any]) -> tuple[str, bool] | None:
        """(error code, applied) for a request that fails, else None."""
        with self._lock:
            config, in_outage = self._config, time.monotonic() < self._outage_until
            if operation not in config.operations or not (config.rate or in_outage):
                return None
            if config.tables and not str(request.get("TableName", "")).endswith(config.tables):
                return None
            pk, sk = _item_key(operation, request)
            if config.sk_prefixes and not sk.startswith(config.sk_prefixes):
                return None
            if config.scope == "callbacks" and not (
                pk.startswith("RAW#") or sk.startswith("EVT#") or sk == "#STATE"
            ):
                return None
            self._counts["matching"] += 1
            draw_fail, draw_applied = self._rng.random(), self._rng.random()
            if (
                not (in_outage or draw_fail < config.rate)
                or 0 <= config.max_failures <= self._counts["failed"]
            ):
                return None
            code = config.errors[self._next_error % len(config.errors)]
            self._next_error += 1
            applied = STORAGE_ERRORS[code] >= 500 and draw_applied < config.applied_rate
            self._counts["failed"] += 1
            self._counts[f"failed:{operation}:{code}{':applied' if applied else ''}"] += 1
            if in_outage:
                self._counts["failed_in_outage"] += 1
        return code, applied

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        dynamodb = dynamodb_request(environ)
        failure = self._decide(*dynamodb) if dynamodb is not None else None
        if failure is None:
            return self._app(environ, start_response)
        code, applied = failure
        if applied:  # applied by moto, then the answer is replaced: the caller cannot tell
            list(self._app(environ, lambda *_: lambda _data: None))
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"{code} (injected locally)"}
        return _json_response(start_response, STORAGE_ERRORS[code], body, "application/x-amz-json-1.0")


# ---- the bench's meter: latency per request, DynamoDB requests, items and billed units ----------

TABLE_KEYS = ("PK", "SK", "id")
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (docs: "Item sizes and formats")."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = str(Decimal(str(inner)).normalize()).replace("-", "").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in inner.items())
    return 1  # BOOL, NULL


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def item_kind(table: str, key: Mapping[str, Any]) -> str:
    """`MSG/EVT`, `REQ/CHUNK`, `RAW/*`, `<table>:record`... from the item's key."""
    if "PK" not in key:
        return f"{table}:record"
    pk = str(next(iter(key["PK"].values()), ""))
    head = str(next(iter(key.get("SK", {"S": ""}).values()), "")).lstrip("#").split("#", 1)[0]
    return f"{pk.split('#', 1)[0]}/{head if head.isalpha() and head.isupper() else '*'}"


def _updated_item(request: Mapping[str, Any]) -> dict[str, Any]:
    """The item a `SET a = :v, ...` UpdateItem leaves: exact for the items this project updates (always
    written whole), a lower bound of the billed size for others."""
    item = dict(request.get("Key", {}))
    names, values = request.get("ExpressionAttributeNames", {}), request.get("ExpressionAttributeValues", {})
    expression = str(request.get("UpdateExpression", ""))
    if expression.upper().startswith("SET "):
        for assignment in expression[4:].split(","):
            name, _, value = (part.strip() for part in assignment.partition("="))
            if value in values:
                item[names.get(name, name)] = values[value]
    return item


@dataclass(frozen=True, slots=True)
class Index:
    """A global secondary index of the template: an item carrying all its keys is written there too,
    billed for the size it projects there."""

    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()

    def projected_size(self, item: Mapping[str, Any]) -> int | None:
        if not all(key in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return item_size(item)
        names = {*TABLE_KEYS, *self.keys, *(self.included if self.projection == "INCLUDE" else ())}
        return item_size({k: v for k, v in item.items() if k in names})


def template_indexes() -> list[Index]:
    return [
        Index(
            tuple(key["AttributeName"] for key in gsi["KeySchema"]),
            str(gsi.get("Projection", {}).get("ProjectionType", "ALL")),
            tuple(gsi.get("Projection", {}).get("NonKeyAttributes", ())),
        )
        for logical in TABLES
        for gsi in resource(logical)["Properties"].get("GlobalSecondaryIndexes", [])
    ]


@dataclass
class Usage:
    requests: Counter[str] = field(default_factory=Counter)  # by operation
    items: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    write_units: int = 0
    gsi_write_units: int = 0
    read_units: float = 0.0
    sizes: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "items": {key: dict(value) for key, value in self.items.items()},
            "write_units": self.write_units,
            "gsi_write_units": self.gsi_write_units,
            "read_units": self.read_units,
            "item_sizes": {
                k: {"n": len(v), "mean": sum(v) / len(v), "max": max(v)} for k, v in self.sizes.items()
            },
        }


class Meter:
    """Delays every AWS request by `latency_s` and counts DynamoDB's: per operation, per item kind and
    outcome (ok, or refused by a condition), and the request units DynamoDB would bill."""

    def __init__(self, app: WSGIApp, latency_s: float = 0.0) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.latency_s = latency_s
        self.usage = Usage()
        self._indexes = template_indexes()

    def reset(self) -> None:
        with self._lock:
            self.usage = Usage()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.usage.to_json()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.latency_s:
            time.sleep(self.latency_s)
        dynamodb = dynamodb_request(environ)
        if dynamodb is None:
            target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
            if target:  # Secrets Manager's, for instance
                with self._lock:
                    self.usage.requests[target] += 1
            return self._app(environ, start_response)
        status: list[str] = []

        def capture(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        response = b"".join(self._app(environ, capture))
        refused = status[0].startswith("400") and b"ConditionalCheckFailed" in response
        self._record(*dynamodb, "refused" if refused else "ok")
        return [response]

    def _record(self, operation: str, request: Mapping[str, Any], outcome: str) -> None:
        table = str(request.get("TableName", ""))
        with self._lock:
            usage = self.usage
            usage.requests[operation] += 1
            if operation in ("PutItem", "UpdateItem", "DeleteItem"):
                item = request.get("Item") or (
                    _updated_item(request) if operation == "UpdateItem" else request["Key"]
                )
                self._write(operation, table, item, outcome, gsi=outcome == "ok")
            elif operation == "BatchWriteItem":
                for name, writes in request.get("RequestItems", {}).items():
                    for write in writes:
                        put = write.get("PutRequest")
                        kind = "BatchWriteItem.Put" if put else "BatchWriteItem.Delete"
                        self._write(
                            kind, name, put["Item"] if put else write["DeleteRequest"]["Key"], outcome
                        )
            elif operation == "GetItem":
                # Billed on the whole item, whatever the projection; ~1 KB items here: one 4 KB step.
                usage.read_units += 1.0 if request.get("ConsistentRead") else 0.5
                usage.items[f"GetItem {item_kind(table, request.get('Key', {}))}"][outcome] += 1
            elif operation in READ_OPERATIONS:
                usage.items[f"{operation} {table}"][outcome] += 1

    def _write(
        self, operation: str, table: str, item: Mapping[str, Any], outcome: str, gsi: bool = True
    ) -> None:
        size, kind = item_size(item), item_kind(table, item)
        self.usage.write_units += write_units(size)
        for projected in (index.projected_size(item) for index in (self._indexes if gsi else ())):
            self.usage.gsi_write_units += write_units(projected) if projected is not None else 0
        self.usage.items[f"{operation} {kind}"][outcome] += 1
        self.usage.sizes[kind].append(size)


# ---- the control routes and the app --------------------------------------------------------------


class Controls:
    """/_local/...: storage-faults (GET, POST), dynamodb-items?table=&attributes= (GET),
    dynamodb-usage (GET; POST {"reset": true, "latency_ms": 10}), egress (GET)."""

    def __init__(self, app: WSGIApp, atomic: Atomic, faults: StorageFaults, meter: Meter | None) -> None:
        self._app, self._atomic, self._faults, self._meter = app, atomic, faults, meter

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(CONTROL_PREFIX):
            return self._app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        try:
            body = json.loads(_body(environ) or b"{}") if method == "POST" else {}
            if not isinstance(body, dict):
                raise TypeError("expected a JSON object")
            status, answer = 200, self._route(method, path.removeprefix(CONTROL_PREFIX), body, environ)
        except LookupError as error:
            status, answer = 404, {"message": str(error)}
        except (ValueError, TypeError) as error:
            status, answer = 400, {"message": str(error)}
        return _json_response(start_response, status, answer, "application/json")

    def _route(self, method: str, route: str, body: dict[str, Any], environ: dict[str, Any]) -> Any:
        match method, route:
            case "GET", "/storage-faults":
                return self._faults.status()
            case "POST", "/storage-faults":
                return self._faults.configure(**body)
            case "GET", "/dynamodb-items":
                query = parse_qs(str(environ.get("QUERY_STRING", "")))
                table, attributes = query.get("table", [""])[0], query.get("attributes", [""])[0].split(",")
                if not table or not any(attributes):
                    raise ValueError("table and attributes (comma-separated) are required")
                items = self._atomic.table_items(
                    table, [a for a in attributes if a], query.get("region", [REGION])[0]
                )
                return {"table": table, "count": len(items), "items": items}
            case "GET" | "POST", "/dynamodb-usage" if self._meter is not None:
                if body.get("reset"):
                    self._meter.reset()
                if "latency_ms" in body:
                    self._meter.latency_s = float(body["latency_ms"]) / 1000
                return self._meter.snapshot()
            case "GET", "/egress":
                return netguard.snapshot()
        raise LookupError(f"no route {method} {CONTROL_PREFIX}{route}")


def moto_app(*, fast_dynamodb: bool = True, meter: bool = False, latency_ms: float = 0.0) -> WSGIApp:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    atomic = Atomic(DomainDispatcherApplication(create_backend_app), fast_dynamodb)
    faults = StorageFaults(atomic)
    metered = Meter(faults, latency_ms / 1000) if meter else None
    return Controls(metered or faults, atomic, faults, metered)


# ---- the child process ---------------------------------------------------------------------------


class MotoProcess:
    """Starts `python -m tools.local.aws` as a child of this process, knows its URL, stops it."""

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> MotoProcess:
        command = [sys.executable, "-m", "tools.local.aws", "--parent-pid", str(os.getpid()), *self.args]
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

    def control(self, route: str, body: Any = None, timeout: float = 600) -> Any:
        """GET (or POST `body` to) one of the control routes."""
        method = "GET" if body is None else "POST"
        response = requests.request(method, f"{self.url}{CONTROL_PREFIX}/{route}", json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()

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


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    lines: list[str] = []
    if stream is not None:
        reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
    return lines[0].strip() if lines else ""


def stop_with_parent(parent_pid: int, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` once process `parent_pid` is gone: checked every half second, and on Linux our
    own parent's death (the thread that started us) also sends us SIGTERM at once."""
    if parent_pid == os.getppid():
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while _alive(parent_pid):
            time.sleep(0.5)
        log.info("process %s is gone: stopping", parent_pid)
        on_gone()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local.aws", description=__doc__)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request (bench)")
    parser.add_argument("--meter", action="store_true", help="count DynamoDB usage (/_local/dynamodb-usage)")
    parser.add_argument("--moto-dynamodb", action="store_true", help="DynamoDB items through moto's full app")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    netguard.install()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    if os.getppid() != args.parent_pid:
        return 1  # the parent died before we could watch it
    stop_with_parent(args.parent_pid, stop.set)
    app = moto_app(fast_dynamodb=not args.moto_dynamodb, meter=args.meter, latency_ms=args.latency_ms)
    server = ServerThread(app, "moto").start()
    print(f"ready {server.url}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed later goes to the log
    try:
        while not stop.wait(0.5):
            pass
    finally:
        # A request thread stuck on a connection must not keep an orphan alive: exit regardless.
        deadline = threading.Timer(5.0, os._exit, args=(0,))
        deadline.daemon = True
        deadline.start()
        server.stop()
    return 0


# ---- the template's resources in it --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalResources:
    refs: Mapping[str, str]  # logical id -> what !Ref returns
    arns: Mapping[str, str]  # logical id -> what !GetAtt .Arn returns
    stream_arns: Mapping[str, str] = field(default_factory=dict)  # table -> what !GetAtt .StreamArn returns
    queues: Mapping[str, str] = field(default_factory=dict)  # logical id -> URL of every queue
    # Every event the stack's bus takes, as a rule forwards it to an SQS target (what moto delivers).
    events_queue_url: str = ""


# The stack's bus receives the events a rule sends here: their delivery is what the tests check.
EVENTS_CHECK_QUEUE = "EventsCheckQueue"
EVENT_SOURCE = "ocelot-sms"
SCHEDULE_GROUP_TYPE, ROLE_TYPE, BUS_TYPE = (
    "AWS::Scheduler::ScheduleGroup",
    "AWS::IAM::Role",
    "AWS::Events::EventBus",
)


def provision_events(endpoint_url: str, prefix: str, refs: dict[str, str], arns: dict[str, str]) -> str:
    """The template's schedule groups and event buses in moto (its roles are ARNs: moto's scheduler
    assumes none), and on each bus a rule forwarding every event of ours to a queue of the local
    stack's own. Returns that queue's URL."""
    resources = load_template()["Resources"]
    scheduler, events, sqs = (client(name, endpoint_url) for name in ("scheduler", "events", "sqs"))
    check_url = sqs.create_queue(QueueName=f"{prefix}-{EVENTS_CHECK_QUEUE}")["QueueUrl"]
    check_arn = sqs.get_queue_attributes(QueueUrl=check_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for logical_id, spec in resources.items():
        name = f"{prefix}-{logical_id}"
        if spec["Type"] == SCHEDULE_GROUP_TYPE:
            refs[logical_id], arns[logical_id] = (
                name,
                scheduler.create_schedule_group(Name=name)["ScheduleGroupArn"],
            )
        elif spec["Type"] == ROLE_TYPE:
            arns[logical_id] = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        elif spec["Type"] == BUS_TYPE:
            refs[logical_id], arns[logical_id] = name, events.create_event_bus(Name=name)["EventBusArn"]
            events.put_rule(
                Name=f"{name}-check", EventBusName=name, EventPattern=json.dumps({"source": [EVENT_SOURCE]})
            )
            events.put_targets(
                Rule=f"{name}-check", EventBusName=name, Targets=[{"Id": "check", "Arn": check_arn}]
            )
    for closing in (scheduler, events, sqs):
        closing.close()
    return str(check_url)


def provision(endpoint_url: str, prefix: str, secrets: Mapping[str, Mapping[str, str]]) -> LocalResources:
    """Tables (with their streams) and queues from template.yaml's own definitions, the secrets
    (logical id -> JSON value: the template generates random ones, which the sandbox could not know),
    the schedule group and the event bus."""
    refs: dict[str, str] = {}
    arns: dict[str, str] = {}
    stream_arns: dict[str, str] = {}
    dynamodb = client("dynamodb", endpoint_url)
    for logical_id in TABLES:
        refs[logical_id] = f"{prefix}-{logical_id}"
        create_table(dynamodb, logical_id, refs[logical_id])
        table = dynamodb.describe_table(TableName=refs[logical_id])["Table"]
        arns[logical_id] = table["TableArn"]
        if "LatestStreamArn" in table:
            stream_arns[logical_id] = table["LatestStreamArn"]
    sqs = client("sqs", endpoint_url)
    queues = create_queues(sqs, prefix)
    for logical_id, url in queues.items():
        refs[logical_id] = url
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        arns[logical_id] = attributes["Attributes"]["QueueArn"]
    secretsmanager = client("secretsmanager", endpoint_url)
    for logical_id, value in secrets.items():
        created = secretsmanager.create_secret(
            Name=f"{prefix}-{logical_id}",
            Description=str(resource(logical_id)["Properties"].get("Description", "")),
            SecretString=json.dumps(dict(value)),
        )
        refs[logical_id] = arns[logical_id] = created["ARN"]  # !Ref of a secret is its ARN
    for closing in (dynamodb, sqs, secretsmanager):
        closing.close()
    events_queue_url = provision_events(endpoint_url, prefix, refs, arns)
    return LocalResources(
        refs=refs, arns=arns, stream_arns=stream_arns, queues=queues, events_queue_url=events_queue_url
    )


_backoff_scale: list[float] = []


def scale_retry_backoff(factor: float) -> None:
    """Compress botocore's retry waits in this process by `factor` (the chaos run: 0.01).

    Only the waits: which errors are retried, how many times, and the retry quota stay botocore's.
    Keeps a run with many throttled writes (a throttle waits rand(0, 1) * 2^n s) within minutes.
    """
    from botocore.retries.standard import ExponentialBackoff

    if not 0 < factor <= 1:
        raise ValueError("the backoff scale must be in (0, 1]")
    if not _backoff_scale:
        original = ExponentialBackoff.delay_amount

        def delay_amount(self: ExponentialBackoff, context: Any) -> float:
            return float(original(self, context)) * _backoff_scale[0]

        ExponentialBackoff.delay_amount = delay_amount  # type: ignore[method-assign]
        _backoff_scale.append(factor)
    _backoff_scale[0] = factor


if __name__ == "__main__":
    sys.exit(main())
