"""The real handlers, invoked in this process the way Lambda invokes them.

One "container" per function: invocations of the same function run one at a time (a Lambda
execution environment handles one event at a time, and the handlers keep per-container state such as
the Sender's deadline and Powertools' batch processor), while different functions run concurrently.

Anything that serves events (the HTTP API front, the SQS poller) goes through the `Invoker` protocol,
so `sam local start-lambda` can take this module's place without changing them: `EndpointInvoker`
invokes through its Lambda Invoke API (`make demo SAM=1`).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tools.local.template_env import FunctionSpec

log = logging.getLogger("local.lambdas")
HISTORY = 500


class LambdaContext:
    """The parts of the Lambda context the handlers and Powertools read; the time left is real."""

    def __init__(self, spec: FunctionSpec, region: str, account_id: str) -> None:
        self.function_name = f"ocelot-sms-local-{spec.logical_id}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{self.function_name}"
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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


class InProcessFunctions:
    def __init__(self, specs: Sequence[FunctionSpec], region: str, account_id: str) -> None:
        self.specs = {spec.logical_id: spec for spec in specs}
        self._region = region
        self._account_id = account_id
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        # A function whose module does not import fails alone, as in Lambda (Runtime.ImportModuleError).
        self.load_errors: dict[str, str] = {}
        self._locks = {name: threading.Lock() for name in self.specs}
        self._history: deque[Invocation] = deque(maxlen=HISTORY)
        self._history_lock = threading.Lock()

    def load(self) -> InProcessFunctions:
        """Import every handler. The environment must already be set: modules read it at import."""
        for spec in self.specs.values():
            # As in Lambda: the layers' code at /opt/python, importable by every function.
            for folder in spec.layer_dirs:
                if str(folder) not in sys.path:
                    sys.path.insert(0, str(folder))
        for spec in self.specs.values():
            try:
                self._handlers[spec.logical_id] = load_handler(spec)
            except Exception as error:
                log.exception("%s: handler %s does not load", spec.logical_id, spec.handler)
                reason = f"{type(error).__name__}: {error}"
                self.load_errors[spec.logical_id] = f"Runtime.ImportModuleError: {reason}"
        return self

    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> Invocation:
        spec = self.specs[function]
        handler = self._handlers.get(function)
        with self._locks[function]:
            context = LambdaContext(spec, self._region, self._account_id)
            started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            start = time.monotonic()
            payload: Any = None
            error: str | None = None
            try:
                if handler is None:
                    raise RuntimeError(self.load_errors[function])
                # A copy: in Lambda the event is deserialised afresh for every invocation.
                payload = handler(copy.deepcopy(event), context)
            except Exception as failure:
                log.exception("%s raised (Lambda reports a function error)", function)
                error = f"{type(failure).__name__}: {failure}"
            duration = time.monotonic() - start
        if duration > spec.timeout_seconds:
            log.warning(
                "%s ran %.1fs: Lambda would have stopped it at %ss", function, duration, spec.timeout_seconds
            )
        invocation = Invocation(
            function=function,
            trigger=trigger,
            request_id=context.aws_request_id,
            started_at=started_at,
            duration_ms=round(duration * 1000, 1),
            payload=payload,
            error=error,
            records=len(event["Records"]) if isinstance(event.get("Records"), list) else None,
        )
        with self._history_lock:
            self._history.append(invocation)
        return invocation

    def history(self) -> list[dict[str, Any]]:
        with self._history_lock:
            return [invocation.summary() for invocation in self._history]


class EndpointInvoker:
    """Invokes through a Lambda Invoke API on loopback (`sam local start-lambda`) with boto3, one call
    at a time per function as InProcessFunctions does, and answers with the same `Invocation`: the
    function's result as `payload`, or, when Lambda reports a function error, its error as `error`
    (and its error document as `payload`). A failed call to the endpoint itself raises."""

    # Lambda's longest timeout: an invocation is never given up while the function may still run.
    READ_TIMEOUT_SECONDS = 900.0

    def __init__(self, endpoint_url: str, region: str) -> None:
        from tools.local.aws import lambda_client

        self.endpoint_url = endpoint_url
        self._client = lambda_client(endpoint_url, region, self.READ_TIMEOUT_SECONDS)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> Invocation:
        with self._locks_lock:
            lock = self._locks.setdefault(function, threading.Lock())
        with lock:
            started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            start = time.monotonic()
            response = self._client.invoke(
                FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
            raw = response["Payload"].read()
            duration = time.monotonic() - start
        payload = json.loads(raw) if raw.strip() else None
        error: str | None = None
        if response.get("FunctionError"):
            document = payload if isinstance(payload, dict) else {}
            error = (
                f"{document.get('errorType', response['FunctionError'])}: {document.get('errorMessage', raw)}"
            )
            log.error("%s raised (Lambda reports a function error): %s", function, error)
        return Invocation(
            function=function,
            trigger=trigger,
            request_id=response["ResponseMetadata"].get("RequestId", ""),
            started_at=started_at,
            duration_ms=round(duration * 1000, 1),
            payload=payload,
            error=error,
            records=len(event["Records"]) if isinstance(event.get("Records"), list) else None,
        )

    def close(self) -> None:
        self._client.close()


def load_handler(spec: FunctionSpec) -> Callable[[dict[str, Any], Any], Any]:
    """The handler named by the template, imported from the function's own folder. Every function's
    module has the same name (`app`, as Lambda imports it from /var/task), so each is loaded from its
    file under a name of its own instead of through sys.path."""
    module_name, _, attribute = spec.handler.rpartition(".")
    path = spec.code_dir / (module_name.replace(".", "/") + ".py")
    unique = f"{spec.logical_id}.{module_name}"
    module_spec = importlib.util.spec_from_file_location(unique, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"no module {module_name!r} in {spec.code_dir}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[unique] = module
    module_spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, attribute)
    return handler


def merged_environment(specs: Sequence[FunctionSpec], overrides: Mapping[str, str]) -> dict[str, str]:
    """One process serves every function, so their environments are merged; they must agree."""
    merged: dict[str, str] = {}
    for spec in specs:
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value and name not in overrides:
                raise ValueError(f"{name} differs between functions ({merged[name]!r} vs {value!r})")
            merged[name] = value
    merged.update(overrides)
    return merged
