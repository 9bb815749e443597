"""The functions, invoked as Lambda invokes them.

One "container" per function: invocations of the same function run one at a time (a Lambda execution
environment handles one event at a time, and the handlers keep per-container state such as the
Sender's deadline and Powertools' batch processor), different functions run concurrently.

Whatever serves events (the HTTP API front, the event source pollers of event_sources.py) goes
through the `Invoker` protocol:
`InProcessFunctions` runs the real handlers in this process, `EndpointInvoker` invokes through a
Lambda Invoke API on loopback (`sam local start-lambda`, `make demo SAM=1`).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.config import Config

from tools.local.aws import client
from tools.local.lambda_context import LambdaContext
from tools.template_resources import FunctionSpec

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
    records: int | None = None  # records in the event (SQS messages, stream records)

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


# ---- what an event source mapping leaves failed ----------------------------------------------------


def failed_ids(invocation: Invocation, batch_ids: set[str], report_failures: bool) -> set[str]:
    """The records that failed in this invocation, by Lambda's ReportBatchItemFailures rules: every one
    when the function raised; those reported (a queue message's id, a stream record's sequence
    number); every one when a reported identifier is empty or not of this batch."""
    if invocation.error is not None:
        return set(batch_ids)
    payload = invocation.payload
    failures = payload.get("batchItemFailures") if isinstance(payload, dict) and report_failures else None
    if not failures:
        return set()
    reported = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
    # An empty or unknown identifier makes Lambda treat the whole batch as failed.
    return set(batch_ids) if not reported <= batch_ids else reported
