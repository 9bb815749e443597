"""AWS on loopback: one moto server (threads of the stack's process, or a process of its own with
`--aws-process`, tools/local/aws_process.py) with the template's resources.

Tables and queues are created by tools/template_resources.py from template.yaml's own definitions;
the two secrets take the template's descriptions and local, known values (the template generates
random ones, which the sandbox could not know).
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, TypedDict
from urllib.parse import parse_qs

import boto3
from botocore.config import Config

from tools.local.serving import ServerThread
from tools.template_resources import create_queue_pair, create_table, resource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sqs.client import SQSClient

FAKE_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
ACCOUNT_ID = "123456789012"  # moto's default account

TABLES = ("MessagesTable", "IdempotencyTable")
QUEUE, DEAD_LETTER_QUEUE = "SendQueue", "SendDeadLetterQueue"
OCELOT_SECRET, WEBHOOK_SECRET = "OcelotApiSecret", "WebhookSecret"


class _Credentials(TypedDict):
    aws_access_key_id: str
    aws_secret_access_key: str
    aws_session_token: str


def _credentials() -> _Credentials:
    return _Credentials(
        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        aws_session_token=FAKE_CREDENTIALS["aws_session_token"],
    )


# Clients that can only reach the local endpoint, with fake credentials.
def dynamodb_client(endpoint_url: str, region: str) -> DynamoDBClient:
    return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region, **_credentials())


def sqs_client(endpoint_url: str, region: str) -> SQSClient:
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=region, **_credentials())


def secretsmanager_client(endpoint_url: str, region: str) -> SecretsManagerClient:
    return boto3.client("secretsmanager", endpoint_url=endpoint_url, region_name=region, **_credentials())


def lambda_client(endpoint_url: str, region: str, read_timeout: float) -> LambdaClient:
    """For a local Lambda Invoke API (sam local start-lambda): one attempt per invocation (a retry
    would run the function again), and a read timeout that outlasts the function's own."""
    config = Config(connect_timeout=5, read_timeout=read_timeout, retries={"total_max_attempts": 1})
    return boto3.client(
        "lambda", endpoint_url=endpoint_url, region_name=region, config=config, **_credentials()
    )


class AtomicRequests:
    """Runs each AWS request alone: moto's backends are not thread-safe, AWS's APIs are atomic.

    Without this, moto's UpdateItem on a new key first stores the bare key and then applies the update,
    so a concurrent read sees an item without its attributes, and two concurrent first updates can lose
    one (the webhook writes a delivery's events with many threads). A long-polling SQS ReceiveMessage
    (WaitTimeSeconds > 0) runs outside the lock, so a waiting consumer never stalls everything else.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    @property
    def lock(self) -> threading.Lock:
        """Held while a request runs: whoever reads moto's memory directly takes it too."""
        return self._lock

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if _is_long_poll(environ, body):
            return self._app(environ, start_response)
        with self._lock:
            # Consumed inside the lock: a lazy response body would otherwise run outside it.
            return list(self._app(environ, start_response))


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


# ---------------------------------------------------------------------------------------------
# Storage faults: DynamoDB throttling and internal errors on demand (the chaos run, tools/chaos)
# ---------------------------------------------------------------------------------------------

DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
# HTTP status and `__type` of the errors DynamoDB answers under load (botocore retries both).
STORAGE_ERRORS: Mapping[str, int] = {
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "InternalServerError": 500,
}
STORAGE_SCOPES = ("webhook", "all")


@dataclass(frozen=True, slots=True)
class StorageFaultConfig:
    """Which DynamoDB writes fail, and how.

    - `rate`: share of the matching requests that fail (drawn from `seed`, in arrival order);
    - an outage (`POST /_local/storage-faults {"outage_seconds": 2}`): every matching request fails
      until it ends;
    - `errors`: the error codes to answer, cycled through (throttling never applies the write);
    - `applied_rate`: share of the failed InternalServerErrors that are applied first, the answer
      being lost (DynamoDB may apply a write it answers 500 to);
    - `scope` "webhook": only what the webhook writes (event, message state and raw-delivery items);
      "all": any item of any table; `operations`: which DynamoDB actions; `sk_prefixes`: if given,
      only items whose sort key starts with one of them ("CHUNK#": the Sender's chunk records);
    - `max_failures`: stop failing after that many (-1: no limit), e.g. 1 to fail one write once.
    """

    rate: float = 0.0
    errors: tuple[str, ...] = ("ProvisionedThroughputExceededException", "InternalServerError")
    applied_rate: float = 0.0
    operations: tuple[str, ...] = ("PutItem", "UpdateItem")
    scope: str = "webhook"
    sk_prefixes: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()  # if given, only tables whose name ends with one ("IdempotencyTable")
    max_failures: int = -1
    seed: int = 0


def _item_key(operation: str, request: Mapping[str, Any]) -> tuple[str, str]:
    """(PK, SK) of the item a PutItem/UpdateItem/DeleteItem writes ("" when it has none)."""
    key = request.get("Item") if operation == "PutItem" else request.get("Key")
    if not isinstance(key, Mapping):
        return "", ""
    pk, sk = (key.get(name) for name in ("PK", "SK"))
    return (
        str(pk.get("S", "")) if isinstance(pk, Mapping) else "",
        str(sk.get("S", "")) if isinstance(sk, Mapping) else "",
    )


def _matches(config: StorageFaultConfig, operation: str, request: Mapping[str, Any]) -> bool:
    if config.tables and not str(request.get("TableName", "")).endswith(config.tables):
        return False
    pk, sk = _item_key(operation, request)
    if config.sk_prefixes and not sk.startswith(config.sk_prefixes):
        return False
    # The webhook's writes: an event item, a message's #STATE, a raw delivery.
    return config.scope == "all" or pk.startswith("RAW#") or sk.startswith("EVT#") or sk == "#STATE"


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str
    status: int
    applied: bool  # the write is applied, only the answer is the error


class StorageFaultControl(Protocol):
    """What the API front's /_local/storage-faults needs: StorageFaults here, or its remote handle
    when moto runs in a process of its own (tools/local/aws_process.py)."""

    def configure(
        self, reset: bool = False, outage_seconds: float | None = None, **changes: Any
    ) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...


class StorageFaults:
    """Decides, per DynamoDB request, whether it fails; counts what it saw and did. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config = StorageFaultConfig()
        self._rng = random.Random("0/storage")
        self._outage_until = 0.0
        self._outages: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()
        self._next_error = 0

    def configure(
        self, reset: bool = False, outage_seconds: float | None = None, **changes: Any
    ) -> dict[str, Any]:
        known = {f.name for f in fields(StorageFaultConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown storage fault setting(s): {', '.join(unknown)}")
        for name in ("errors", "operations", "sk_prefixes", "tables"):
            if name in changes:
                value = changes[name]
                if isinstance(value, str) or not isinstance(value, Iterable):
                    raise ValueError(f"{name}: expected a list")
                changes[name] = tuple(str(v) for v in value)
        with self._lock:
            new = replace(StorageFaultConfig() if reset else self._config, **changes)
            problems = [
                f"{name} must be between 0 and 1"
                for name in ("rate", "applied_rate")
                if not 0 <= getattr(new, name) <= 1
            ]
            problems += [f"unknown error {e!r}" for e in new.errors if e not in STORAGE_ERRORS]
            if not new.errors:
                problems.append("errors: at least one")
            if new.scope not in STORAGE_SCOPES:
                problems.append(f"scope must be one of {STORAGE_SCOPES}")
            if outage_seconds is not None and not 0 <= float(outage_seconds) <= 600:
                problems.append("outage_seconds must be between 0 and 600")
            if problems:
                raise ValueError("; ".join(problems))
            if reset or new.seed != self._config.seed:
                self._rng = random.Random(f"{new.seed}/storage")
            if reset:
                self._outage_until, self._outages, self._counts, self._next_error = 0.0, [], Counter(), 0
            self._config = new
            if outage_seconds:
                now = time.monotonic()
                self._outage_until = max(self._outage_until, now + float(outage_seconds))
                self._outages.append({"started": _wall_now(), "seconds": float(outage_seconds)})
        return self.status()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "config": asdict(self._config),
                "outage_active": time.monotonic() < self._outage_until,
                "outages": list(self._outages),
                "counts": dict(self._counts),
            }

    def decide(self, target: str, body: bytes) -> _Failure | None:
        if not target.startswith(DYNAMODB_TARGET_PREFIX):
            return None
        operation = target.removeprefix(DYNAMODB_TARGET_PREFIX)
        with self._lock:
            config = self._config
            if operation not in config.operations or not (
                config.rate or time.monotonic() < self._outage_until
            ):
                return None
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(request, dict) or not _matches(config, operation, request):
            return None
        with self._lock:
            self._counts["matching"] += 1
            draw_fail, draw_applied = self._rng.random(), self._rng.random()
            in_outage = time.monotonic() < self._outage_until
            if not (in_outage or draw_fail < config.rate):
                return None
            if 0 <= config.max_failures <= self._counts["failed"]:
                return None
            code = config.errors[self._next_error % len(config.errors)]
            self._next_error += 1
            status = STORAGE_ERRORS[code]
            applied = status >= 500 and draw_applied < config.applied_rate
            self._counts["failed"] += 1
            self._counts[f"failed:{operation}:{code}{':applied' if applied else ''}"] += 1
            if in_outage:
                self._counts["failed_in_outage"] += 1
        return _Failure(code, status, applied)


class StorageFaultInjector:
    """WSGI middleware in front of moto: answers the DynamoDB error StorageFaults decides on."""

    def __init__(self, app: Any, faults: StorageFaults) -> None:
        self._app = app
        self._faults = faults

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if not target.startswith(DYNAMODB_TARGET_PREFIX):
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        failure = self._faults.decide(target, body)
        if failure is None:
            return self._app(environ, start_response)
        if failure.applied:
            # Applied by moto, then the answer is replaced: the caller cannot tell it was written.
            list(self._app(environ, _discard_response))
        payload = json.dumps(
            {
                "__type": f"com.amazonaws.dynamodb.v20120810#{failure.code}",
                "message": f"{failure.code} (injected by the local stack)",
            }
        ).encode()
        start_response(
            f"{failure.status} {'Bad Request' if failure.status == 400 else 'Internal Server Error'}",
            [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Content-Length", str(len(payload))),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ],
        )
        return [payload]


_backoff_scale: list[float] = []


def scale_retry_backoff(factor: float) -> None:
    """Compress botocore's retry waits in this process by `factor` (the chaos run: 0.01).

    Only the waits: which errors are retried, how many times, and the retry quota stay botocore's.
    Like the short SQS visibility timeout and the sandbox's short delays, it keeps a run with many
    throttled writes (a throttle waits rand(0, 1) * 2^n s) within minutes. Idempotent; 1 undoes it.
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


def _discard_response(_status: str, _headers: Any, _exc_info: Any = None) -> Any:
    return lambda _data: None


def _wall_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class MotoServer:
    """moto's server app in a thread on a free loopback port.

    What ThreadedMotoServer does (the same app and request handler), through ServerThread, because
    ThreadedMotoServer builds its app internally and gives no way to wrap it in AtomicRequests.
    `faults` makes DynamoDB writes fail on demand (StorageFaults; off until configured).
    """

    def __init__(self, wrap: Callable[[Any, MotoServer], Any] | None = None) -> None:
        # Imported here: drivers use this module's clients without loading moto.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self.faults = StorageFaults()
        self._atomic = AtomicRequests(DomainDispatcherApplication(create_backend_app))
        app = StorageFaultInjector(self._atomic, self.faults)
        if wrap is not None:  # outermost middleware (tools/local/aws_process.py: its control routes)
            app = wrap(app, self)
        self._server = ServerThread(app, "moto", request_handler=MotoRequestHandler)
        self.url = self._server.url

    def table_items(self, table: str, attributes: Sequence[str], region: str) -> list[dict[str, Any]]:
        """Every item of a table, with only `attributes` (wire format: {"S": ...}), read from moto's
        memory between two requests.

        For checks over a whole table (the chaos run): moto answers a Scan page, and any Query, by
        sorting every item of the table, so reading 100,000 items through the API takes hours.
        """
        from moto.dynamodb.models import dynamodb_backends

        wanted = frozenset(attributes)
        with self._atomic.lock:
            found = dynamodb_backends[ACCOUNT_ID][region].tables.get(table)
            if found is None:
                raise LookupError(f"no table {table!r}")
            rows = []
            for partition in found.items.values():
                # A table with a sort key holds a dict per partition key, one without holds the item.
                for item in partition.values() if isinstance(partition, dict) else [partition]:
                    rows.append(
                        {
                            name: _json_safe(value.to_regular_json())
                            for name, value in item.attrs.items()
                            if name in wanted
                        }
                    )
        return rows

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


def _json_safe(value: Any) -> Any:
    """Binary values base64-encoded, as DynamoDB's JSON protocol has them."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class LocalResources:
    endpoint_url: str
    region: str
    refs: Mapping[str, str] = field(default_factory=dict)  # logical id -> what !Ref returns
    arns: Mapping[str, str] = field(default_factory=dict)  # logical id -> what !GetAtt .Arn returns

    @property
    def queue_url(self) -> str:
        return self.refs[QUEUE]

    @property
    def dlq_url(self) -> str:
        return self.refs[DEAD_LETTER_QUEUE]


def provision(
    endpoint_url: str,
    region: str,
    prefix: str,
    secrets: Mapping[str, Mapping[str, str]],
) -> LocalResources:
    """Tables, the queue and its DLQ, and the secrets (logical id -> JSON value) in moto."""
    refs: dict[str, str] = {}
    arns: dict[str, str] = {}
    dynamodb = dynamodb_client(endpoint_url, region)
    for logical_id in TABLES:
        name = f"{prefix}-{logical_id}"
        create_table(dynamodb, logical_id, name)
        refs[logical_id] = name
        arns[logical_id] = dynamodb.describe_table(TableName=name)["Table"]["TableArn"]

    sqs = sqs_client(endpoint_url, region)
    queue_url, dlq_url = create_queue_pair(sqs, QUEUE, DEAD_LETTER_QUEUE, prefix)
    for logical_id, url in ((QUEUE, queue_url), (DEAD_LETTER_QUEUE, dlq_url)):
        refs[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    secretsmanager = secretsmanager_client(endpoint_url, region)
    for logical_id, value in secrets.items():
        properties = resource(logical_id)["Properties"]
        created = secretsmanager.create_secret(
            Name=f"{prefix}-{logical_id}",
            Description=str(properties.get("Description", "")),
            SecretString=json.dumps(dict(value)),
        )
        # !Ref of an AWS::SecretsManager::Secret is its ARN.
        refs[logical_id] = arns[logical_id] = created["ARN"]
    return LocalResources(endpoint_url=endpoint_url, region=region, refs=refs, arns=arns)
