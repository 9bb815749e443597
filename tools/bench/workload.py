"""One Lambda-like container: imports a handler from the BUILT layer/function and invokes it per a plan
(the webhook: API Gateway events; the applier: stream events of stored deliveries; the sender).

    python -P -m tools.bench.workload SPEC.json OUT.json

Run by common.run_workload with the function's environment (common.lambda_environment) and
PYTHONPATH=<function dir>:<layer dir>:<repo root>, under the bench venv's python, whose site-packages
hold boto3 as the Lambda runtime does; so it imports nothing but the standard library and the built
layer. Everything the handler prints (Powertools logs, EMF metrics) is counted, not shown: those
bytes are what CloudWatch Logs ingests.

Per step: wall time, CPU time of the whole process (all threads, so waits are excluded), the reply,
log bytes, the DynamoDB usage moto metered and the send requests the sandbox answered. At the end:
peak RSS (VmHWM; ru_maxrss too) and, when the spec asks for it, the tracemalloc peak (a separate
run: tracing slows it down).
"""

from __future__ import annotations

import cProfile
import importlib
import io
import json
import os
import pstats
import resource
import sys
import time
import tracemalloc
import urllib.request
import uuid
from collections import Counter
from typing import Any

from tools.bench.events import batch_body, batch_event, callback_items, stream_event, webhook_event
from tools.local import netguard
from tools.local.lambda_context import LambdaContext

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(url: str, payload: Any = None) -> Any:
    """GET (or POST a JSON payload to) a stand-in's control route, never through a proxy."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    with _NO_PROXY.open(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


class CountingStream(io.TextIOBase):
    """Stands in for sys.stdout: counts bytes and lines, keeps a short sample."""

    def __init__(self, sample_limit: int = 6000) -> None:
        self.bytes = 0
        self.lines = 0
        self.sample: list[str] = []
        self._sample_left = sample_limit

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        self.lines += text.count("\n")
        if self._sample_left > 0:
            self.sample.append(text[: self._sample_left])
            self._sample_left -= len(text)
        return len(text)

    def writable(self) -> bool:
        return True


class Container:
    def __init__(self, spec: dict[str, Any], stream: CountingStream) -> None:
        self.spec = spec
        self.stream = stream
        self.usage, self.ocelot = f"{spec['aws_url']}/_local/dynamodb-usage", str(spec["ocelot_url"])
        # Unique to this container: another container's events and requests are never replays of ours.
        self.tag = f"{spec.get('tag', 'c')}-{uuid.uuid4().hex[:8]}"
        self.profiles: list[cProfile.Profile] = []
        module = importlib.import_module(str(spec["handler_module"]))
        self.handler = module.lambda_handler
        from ocelot_sms import runtime
        from ocelot_sms.contract import status_event

        self.runtime = runtime
        self.status_event = status_event
        self.stream_arn = str(spec.get("stream_arn", ""))

    def raw_image(self, items: list[dict[str, Any]], delivery_id: str) -> dict[str, Any]:
        """The item the webhook stores for a delivery of these items (the layer's own codec)."""
        from datetime import UTC, datetime

        from ocelot_sms.store import RawDelivery, codec

        body = json.dumps(items).encode()
        raw = RawDelivery(delivery_id, datetime.now(UTC), body, {"content-type": "application/json"})
        image: dict[str, Any] = codec.raw_item(raw, int(time.time()) + 86400)
        return image

    def context(self) -> LambdaContext:
        memory, timeout = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]), float(self.spec["timeout_s"])
        return LambdaContext(
            os.environ["AWS_LAMBDA_FUNCTION_NAME"], memory, timeout, os.environ["AWS_REGION"]
        )

    def configure(self, variables: dict[str, str | None]) -> None:
        """A container with other settings (None: the variable unset, as deployed): new environment,
        every cached client and service rebuilt."""
        changed = {k: v for k, v in variables.items() if os.environ.get(k) != v}
        for name, value in changed.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if changed:
            self.runtime.reset()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        http_json(self.usage, {"reset": True})
        http_json(f"{self.ocelot}/_sandbox/reset", {"config": False, "record": True})
        log_bytes, log_lines = self.stream.bytes, self.stream.lines
        context = self.context()
        profiler = cProfile.Profile() if self.spec.get("profile") else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            response = profiler.runcall(self.handler, event, context)
            self.profiles.append(profiler)
        else:
            response = self.handler(event, context)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        ddb = http_json(self.usage)
        sent = http_json(f"{self.ocelot}/_sandbox/record?parts=requests")["requests"]
        # An API Gateway answer has a body; a stream batch's answer is the batch item failures.
        body = (response.get("body") or "{}") if "statusCode" in response else json.dumps(response)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "status": response.get("statusCode"),
            "reply": json.loads(body) if body.startswith("{") else body[:300],
            "reply_bytes": len(body.encode()),
            "request_bytes": len(str(event.get("body", "")).encode()),
            "log_bytes": self.stream.bytes - log_bytes,
            "log_lines": self.stream.lines - log_lines,
            "ddb": ddb,
            "ocelot": {"requests": len(sent), "by_status": dict(Counter(str(r["status"]) for r in sent))},
        }


def run_webhook(container: Container, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step: one delivery of `size` events, after a 1-event warm-up when asked."""
    credentials = container.spec["credentials"]
    results: list[dict[str, Any]] = []
    for number, step in enumerate(plan):
        if step.get("warmup"):
            items = callback_items(1, f"{container.tag}w{number}", container.status_event)
            container.invoke(
                webhook_event(items, f"warm-{number}", credentials["username"], credentials["password"])
            )
        items = callback_items(int(step["size"]), f"{container.tag}r{number}", container.status_event)
        event = webhook_event(items, f"delivery-{number}", credentials["username"], credentials["password"])
        results.append({**step, **container.invoke(event), "events": len(items)})
    return results


def run_applier(container: Container, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step: one stream batch of `deliveries` stored deliveries of `size` events each (or the same
    batch again: `replay_of`), with WEBHOOK_WRITE_CONCURRENCY `concurrency` (None: as deployed)."""
    results: list[dict[str, Any]] = []
    batches: dict[str, list[list[dict[str, Any]]]] = {}
    for number, step in enumerate(plan):
        concurrency = step.get("concurrency")
        container.configure({"WEBHOOK_WRITE_CONCURRENCY": None if concurrency is None else str(concurrency)})
        if step.get("warmup"):
            items = callback_items(1, f"{container.tag}w{number}", container.status_event)
            warm = container.raw_image(items, f"warm-{number}")
            container.invoke(stream_event([warm], container.stream_arn))
        if step.get("replay_of"):
            deliveries = batches[step["replay_of"]]
        else:
            deliveries = [
                callback_items(int(step["size"]), f"{container.tag}r{number}d{d}", container.status_event)
                for d in range(int(step.get("deliveries", 1)))
            ]
        batches[step["label"]] = deliveries
        images = [container.raw_image(items, f"d-{number}-{d}") for d, items in enumerate(deliveries)]
        result = container.invoke(stream_event(images, container.stream_arn))
        if step.get("verify"):
            result["states"] = verify_states(container, [i for items in deliveries for i in items])
        unique = sum(len({item["eventId"] for item in items}) for items in deliveries)
        events = sum(len(items) for items in deliveries)
        results.append(
            {
                **step,
                **result,
                "events": events,
                "unique_events": unique,
                "expected_new": 0 if step.get("replay_of") else unique,
                "expected_duplicates": events if step.get("replay_of") else events - unique,
            }
        )
    return results


def verify_states(container: Container, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Each message's stored current status is its furthest event (the store's own order key): checks
    that the fake DynamoDB applied every condition as DynamoDB would."""
    from ocelot_sms.contract import CallbackEvent
    from ocelot_sms.delivery import order_key

    try:
        expected: dict[str, tuple[str, str]] = {}
        for item in items:
            event = CallbackEvent.model_validate(item)
            status = event.delivery_status
            if status is None or event.message_id is None:
                continue
            key = order_key(status, event.instant, event.event_id)
            if event.message_id not in expected or key > expected[event.message_id][0]:
                expected[event.message_id] = (key, event.event_id)
        states = container.runtime.store().get_states(sorted(expected))
        wrong = [
            m for m, (_, event_id) in expected.items() if getattr(states.get(m), "event_id", None) != event_id
        ]
        return {"checked": len(expected), "wrong": len(wrong), "examples": wrong[:3]}
    except Exception as error:  # the store's read API changed: report, do not hide the timings
        return {"checked": 0, "wrong": 0, "error": f"{type(error).__name__}: {error}"}


def run_sender(container: Container, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for number, step in enumerate(plan):
        container.configure({"MAX_MESSAGES_PER_REQUEST": str(step["max_messages"])})
        if step.get("warmup"):
            body = batch_body(1, f"{container.tag}-warm-{number}")
            container.invoke(batch_event(body, f"api-warm-{number}"))
        body = batch_body(int(step["size"]), f"{container.tag}-{number}-{int(step['size'])}")
        result = container.invoke(batch_event(body, f"api-{number}"))
        reply = result["reply"] if isinstance(result["reply"], dict) else {}
        results.append(
            {
                **step,
                **result,
                "messages": int(step["size"]),
                "reply": {k: reply.get(k) for k in ("requestId", "status", "batchIds") if k != "batchIds"}
                | {"batches": len(reply.get("batchIds") or []), "results": len(reply.get("messages") or [])},
            }
        )
    return results


def peak_rss_kb() -> int:
    """Peak resident set size of this process (VmHWM), like Lambda's "Max Memory Used"."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> None:
    spec_path, out_path = argv or sys.argv[1:3]
    with open(spec_path) as handle:
        spec = json.load(handle)
    netguard.install()
    if spec.get("tracemalloc"):
        tracemalloc.start()
    stream = CountingStream()
    real_stdout, sys.stdout = sys.stdout, stream
    try:
        started = time.perf_counter()
        container = Container(spec, stream)
        init_s = time.perf_counter() - started
        runner = {"webhook": run_webhook, "applier": run_applier, "sender": run_sender}[spec["function"]]
        steps = runner(container, spec["plan"])
    finally:
        sys.stdout = real_stdout
    if spec.get("profile") and container.profiles:
        # The last invocation (warm); only the handler's own thread (worker threads are not traced).
        pstats.Stats(container.profiles[-1]).dump_stats(spec["profile"])
    import boto3

    import ocelot_sms

    out: dict[str, Any] = {
        "function": spec["function"],
        "init_s": init_s,
        "steps": steps,
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from a big
        # parent would report the parent's size; VmHWM belongs to this process's own memory map.
        "peak_rss_kb": peak_rss_kb(),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "tracemalloc_peak_bytes": tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else None,
        "log_sample": "".join(stream.sample),
        "paths": {
            "ocelot_sms": ocelot_sms.__file__,
            "boto3": boto3.__file__,
            "boto3_version": boto3.__version__,
        },
    }
    with open(out_path, "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main()
