"""The functions, invoked as Lambda invokes them, and the SQS event source mapping that feeds them.

One "container" per function: invocations of the same function run one at a time (a Lambda execution
environment handles one event at a time, and the handlers keep per-container state such as the
Sender's deadline and Powertools' batch processor), different functions run concurrently.

Whatever serves events (the HTTP API front, the SQS poller) goes through the `Invoker` protocol:
`InProcessFunctions` runs the real handlers in this process, `EndpointInvoker` invokes through a
Lambda Invoke API on loopback (`sam local start-lambda`, `make demo SAM=1`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.config import Config

from tools.local.aws import client
from tools.local.lambda_context import LambdaContext
from tools.template_resources import FunctionSpec, SqsSource

log = logging.getLogger("local.functions")
HISTORY = 500
Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class Invocation:
    function: str
    trigger: str
    request_id: str
    started_at: str
    duration_ms: float
    payload: Any = None
    error: str | None = None
    records: int | None = None  # SQS records in the event

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        payload = data.pop("payload")
        if isinstance(payload, dict) and "batchItemFailures" in payload:
            data["batch_item_failures"] = [f.get("itemIdentifier") for f in payload["batchItemFailures"]]
        elif isinstance(payload, dict) and "statusCode" in payload:
            data["status_code"] = payload["statusCode"]
        return data


class Invoker(Protocol):
    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> Invocation: ...

    def history(self) -> list[dict[str, Any]]: ...


class _OneAtATime:
    """Serialises the invocations of each function and keeps the last HISTORY of them."""

    def __init__(self) -> None:
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._history: deque[Invocation] = deque(maxlen=HISTORY)

    def _call(self, function: str, event: dict[str, Any]) -> tuple[str, Any, str | None]:
        """(request id, payload, error) of one invocation."""
        raise NotImplementedError

    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> Invocation:
        with self._guard:
            lock = self._locks[function]
        with lock:
            started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            start = time.monotonic()
            request_id, payload, error = self._call(function, event)
            duration = time.monotonic() - start
        records = event.get("Records")
        invocation = Invocation(
            function,
            trigger,
            request_id,
            started_at,
            round(duration * 1000, 1),
            payload,
            error,
            len(records) if isinstance(records, list) else None,
        )
        with self._guard:
            self._history.append(invocation)
        return invocation

    def history(self) -> list[dict[str, Any]]:
        with self._guard:
            return [invocation.summary() for invocation in self._history]


class InProcessFunctions(_OneAtATime):
    def __init__(self, specs: Sequence[FunctionSpec], region: str) -> None:
        super().__init__()
        self.specs = {spec.logical_id: spec for spec in specs}
        self._region = region
        self._handlers: dict[str, Handler] = {}
        # A function whose module does not import fails alone, as in Lambda (Runtime.ImportModuleError).
        self.load_errors: dict[str, str] = {}

    def load(self) -> InProcessFunctions:
        """Import every handler. The environment must already be set: modules read it at import."""
        for spec in self.specs.values():
            try:
                self._handlers[spec.logical_id] = load_handler(spec)
            except Exception as error:
                log.exception("%s: handler %s does not load", spec.logical_id, spec.handler)
                self.load_errors[spec.logical_id] = (
                    f"Runtime.ImportModuleError: {type(error).__name__}: {error}"
                )
        return self

    def _call(self, function: str, event: dict[str, Any]) -> tuple[str, Any, str | None]:
        spec = self.specs[function]
        context = LambdaContext(
            f"ocelot-sms-local-{function}", spec.memory_mb, spec.timeout_seconds, self._region
        )
        start = time.monotonic()
        payload: Any = None
        error: str | None = None
        try:
            if function not in self._handlers:
                raise RuntimeError(self.load_errors[function])
            # A copy: in Lambda the event is deserialised afresh for every invocation.
            payload = self._handlers[function](copy.deepcopy(event), context)
        except Exception as failure:
            log.exception("%s raised (Lambda reports a function error)", function)
            error = f"{type(failure).__name__}: {failure}"
        if time.monotonic() - start > spec.timeout_seconds:
            log.warning("%s ran over its %ss: Lambda would have stopped it", function, spec.timeout_seconds)
        return context.aws_request_id, payload, error


class EndpointInvoker(_OneAtATime):
    """Invokes through a Lambda Invoke API with boto3 and answers with the same `Invocation`: the
    function's result as `payload`, or, when Lambda reports a function error, its error as `error` (and
    its error document as `payload`). A failed call to the endpoint itself raises."""

    # One attempt (a retry would run the function again), and Lambda's longest timeout: an
    # invocation is never given up while the function may still run.
    CONFIG = Config(connect_timeout=5, read_timeout=900, retries={"total_max_attempts": 1})

    def __init__(self, endpoint_url: str, region: str) -> None:
        super().__init__()
        self.endpoint_url = endpoint_url
        self._client = client("lambda", endpoint_url, region, self.CONFIG)

    def _call(self, function: str, event: dict[str, Any]) -> tuple[str, Any, str | None]:
        response = self._client.invoke(
            FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        raw = response["Payload"].read()
        payload = json.loads(raw) if raw.strip() else None
        error: str | None = None
        if response.get("FunctionError"):
            document = payload if isinstance(payload, dict) else {}
            kind = document.get("errorType", response["FunctionError"])
            error = f"{kind}: {document.get('errorMessage', raw)}"
            log.error("%s raised (Lambda reports a function error): %s", function, error)
        return str(response["ResponseMetadata"].get("RequestId", "")), payload, error

    def close(self) -> None:
        self._client.close()


def load_handler(spec: FunctionSpec) -> Handler:
    """The handler named by the template, imported from the function's own folder. Every function's
    module has the same name (`app`, as Lambda imports it from /var/task), so each is loaded from its
    file under a name of its own."""
    module_name, _, attribute = spec.handler.rpartition(".")
    path = spec.code_dir / (module_name.replace(".", "/") + ".py")
    unique = f"{spec.logical_id}.{module_name}"
    module_spec = importlib.util.spec_from_file_location(unique, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"no module {module_name!r} in {spec.code_dir}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[unique] = module
    module_spec.loader.exec_module(module)
    handler: Handler = getattr(module, attribute)
    return handler


def merged_environment(specs: Sequence[FunctionSpec], overrides: Mapping[str, str]) -> dict[str, str]:
    """One process serves every function, so their environments are merged; they must agree."""
    merged: dict[str, str] = {}
    for spec in specs:
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value and name not in overrides:
                raise ValueError(f"{name} differs between functions ({merged[name]!r} vs {value!r})")
            merged[name] = value
    return {**merged, **overrides}


# ---- the SQS event source mapping ----------------------------------------------------------------

IDLE_POLL_SECONDS = 0.2
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as Lambda hands it to the function (the shape of events/sqs_batch.json)."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: attributes[name] for name in _RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value.get("DataType"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_ids(invocation: Invocation, batch_ids: set[str], report_failures: bool) -> set[str]:
    """The messages that stay on the queue after this invocation (Lambda's ReportBatchItemFailures)."""
    if invocation.error is not None:
        return set(batch_ids)
    payload = invocation.payload
    failures = payload.get("batchItemFailures") if isinstance(payload, dict) and report_failures else None
    if not failures:
        return set()
    reported = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
    # An empty or unknown identifier makes Lambda treat the whole batch as failed.
    return set(batch_ids) if not reported <= batch_ids else reported


class SqsPoller:
    """Lambda's SQS event source mapping: up to BatchSize messages (waiting up to the batching window
    to fill a batch), one invocation, then every message not reported failed is deleted. What is left
    comes back after the (short, local) visibility timeout, given with each ReceiveMessage; after
    maxReceiveCount receives moto moves it to the dead-letter queue, as SQS does."""

    def __init__(
        self,
        invoker: Invoker,
        function: str,
        source: SqsSource,
        aws_endpoint_url: str,
        queue: tuple[str, str],  # URL, ARN
        region: str,
        visibility_timeout: int,
    ) -> None:
        self._invoker, self._function, self._source = invoker, function, source
        self._sqs = client("sqs", aws_endpoint_url, region)
        (self._queue_url, self._queue_arn), self._region = queue, region
        self._visibility_timeout = visibility_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sqs-{source.queue}", daemon=True)
        self.stats: Counter[str] = Counter()

    def start(self) -> SqsPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sqs.close()

    def status(self) -> dict[str, Any]:
        return {"queue": self._source.queue, "function": self._function, **self.stats}

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("polling %s failed; retrying in 1s", self._source.queue)
                self.stats["poll_errors"] += 1
                self._stop.wait(1.0)

    def _receive(self, count: int) -> list[dict[str, Any]]:
        # Short polls: each one is atomic in the local moto; idle costs 5 calls/s.
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=0,
            VisibilityTimeout=self._visibility_timeout,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def poll_once(self) -> int:
        """One receive-invoke-delete round. Returns the number of messages handed to the function."""
        batch_size = self._source.batch_size
        messages = self._receive(batch_size)
        if not messages:
            self._stop.wait(IDLE_POLL_SECONDS)
            return 0
        # Never gathered for longer than half the visibility timeout: a message received first would
        # become visible again and come back into the same batch.
        window_end = time.monotonic() + min(
            self._source.batching_window_seconds, self._visibility_timeout / 2
        )
        while len(messages) < batch_size and time.monotonic() < window_end and not self._stop.is_set():
            more = self._receive(batch_size - len(messages))
            if not more:
                self._stop.wait(0.1)
            seen = {m["MessageId"] for m in messages}
            messages.extend(m for m in more if m["MessageId"] not in seen)
        records = [lambda_record(m, self._queue_arn, self._region) for m in messages]
        trigger = f"sqs:{self._source.queue}"
        invocation = self._invoker.invoke(self._function, {"Records": records}, trigger=trigger)
        batch_ids = {m["MessageId"] for m in messages}
        failed = failed_ids(invocation, batch_ids, self._source.report_batch_item_failures)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        self.stats.update(batches=1, messages=len(messages), deleted=len(done), left_for_retry=len(failed))
        self.stats["function_errors"] += invocation.error is not None
        log.info(
            "%s: %d message(s) -> %s: %d deleted, %d left for retry",
            self._source.queue,
            len(messages),
            self._function,
            len(done),
            len(failed),
        )
        return len(messages)
