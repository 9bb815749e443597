"""One Lambda-like Sender container for the sender's pace measurements (tools/bench/sender_pace.py).

    python -P -m tools.bench.sender_workload SPEC.json OUT.json

Run like tools/bench/workload.py (the BUILT function and layer first on PYTHONPATH, the function's
Lambda environment, the bench venv), reusing its container. Each step of the plan sets the
container's settings and the sandbox's latency, then invokes the handler with a POST /batches event
or an SQS event of one request, and records wall and CPU time, the reply and what the stand-ins
counted. `floor` steps time botocore serialising the message items of a BatchWriteItem, in this
process, so that the sender's CPU per message can be held against it.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
import threading
import time
from typing import Any

from tools.bench.events import batch_body, batch_event, sqs_event
from tools.bench.workload import Container, CountingStream, http_json, peak_rss_kb
from tools.local import netguard

FLOOR_ITEMS = 2_000


def run_step(container: Container, number: int, step: dict[str, Any]) -> dict[str, Any]:
    container.configure(step.get("env", {}))
    http_json(f"{container.ocelot}/_sandbox/config", step.get("sandbox", {"slow_rate": 0.0}))
    if step.get("warmup"):
        container.invoke(batch_event(batch_body(1, f"{container.tag}-warm-{number}"), f"warm-{number}"))
    size = int(step["size"])
    body = batch_body(size, f"{container.tag}-{number}-{size}")
    if step.get("via") == "sqs":
        event = sqs_event(body, f"{container.tag}-sqs-{number}")
    else:
        event = batch_event(body, f"api-{number}")
    meter = BotocoreMeter(container.runtime.dynamodb_client())
    # CPU time, not cProfile's default wall clock: a loaded machine would put its waits anywhere.
    profile = cProfile.Profile(time.process_time) if step.get("profile") else None
    if profile is not None:
        profile.enable()
    result = container.invoke(event)
    if profile is not None:
        profile.disable()
    meter.stop()
    reply = result["reply"] if isinstance(result["reply"], dict) else {}
    chunks = [c.get("status") for c in reply.get("chunks") or []]
    return {
        **step,
        **{k: v for k, v in result.items() if k != "reply"},
        "messages": size,
        "reply": {
            "status": reply.get("status"),
            "chunks": {s: chunks.count(s) for s in set(chunks)},
            "results": len(reply.get("messages") or []),
            "failures": len(reply.get("batchItemFailures") or []),
        },
        "profile": _top(profile) if profile is not None else None,
        "botocore_dynamodb": {"cpu_s": meter.cpu_s, "requests": meter.requests},
    }


class BotocoreMeter:
    """CPU the Sender's DynamoDB client spends inside its calls (from the parameters to the parsed
    answer: serialising, endpoint, signing, the HTTP exchange), summed over every thread."""

    def __init__(self, client: Any) -> None:
        self.cpu_s, self.requests = 0.0, 0
        self._client, self._local, self._lock = client, threading.local(), threading.Lock()
        client.meta.events.register(
            "provide-client-params.dynamodb", self._start, unique_id="bench-meter-start"
        )
        client.meta.events.register("after-call.dynamodb", self._end, unique_id="bench-meter-end")
        client.meta.events.register("after-call-error.dynamodb", self._end, unique_id="bench-meter-error")

    def _start(self, **_: Any) -> None:
        self._local.started = time.thread_time()

    def _end(self, **_: Any) -> None:
        spent = time.thread_time() - getattr(self._local, "started", time.thread_time())
        with self._lock:
            self.cpu_s += spent
            self.requests += 1

    def stop(self) -> None:
        events = self._client.meta.events
        for event, unique_id in (
            ("provide-client-params.dynamodb", "bench-meter-start"),
            ("after-call.dynamodb", "bench-meter-end"),
            ("after-call-error.dynamodb", "bench-meter-error"),
        ):
            events.unregister(event, unique_id=unique_id)


def _top(profile: cProfile.Profile, rows: int = 30) -> str:
    """The functions with the most CPU of their own, then ours and botocore's by cumulative time
    (socket waits excluded: cProfile counts wall time)."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(r"^(?!.*(recv_into|sendall|socket|sleep))", rows)
    stats.sort_stats("cumulative").print_stats(
        r"ocelot_sms|botocore/(client|serialize|signers|endpoint)|boto3|pydantic|json|idempotency", rows
    )
    return out.getvalue()


def botocore_floor(count: int = FLOOR_ITEMS) -> dict[str, Any]:
    """CPU botocore spends writing one message's item, the one item every message costs: its share of
    the BatchWriteItem requests of 25 the store sends, from the typed item to the parsed answer
    (serialising, endpoint, user agent, signing, the HTTP exchange), through the Sender's own client
    and table, the waits left out (process CPU). `serialise_us`: botocore's serialiser alone."""
    from botocore.serialize import create_serializer

    from ocelot_sms import runtime
    from ocelot_sms.settings import get_settings
    from ocelot_sms.store import MessageRecord, codec

    client, table = runtime.dynamodb_client(), get_settings().table_name
    items = [
        codec.message_item(
            MessageRecord(
                f"floor-{i:08d}-{'x' * 28}", "floor-1", i, f"stu-{i:06d}", "+15551234567", i // 100, "b-1"
            ),
            "2026-11-26T16:00:00.000000+00:00",
            1_800_000_000,
        )
        for i in range(count)
    ]
    groups: list[Any] = [
        [{"PutRequest": {"Item": item}} for item in items[i : i + 25]] for i in range(0, count, 25)
    ]
    started = time.process_time()
    for group in groups:
        client.batch_write_item(RequestItems={table: group})
    whole = (time.process_time() - started) / count * 1e6
    operation = client.meta.service_model.operation_model("BatchWriteItem")
    serializer = create_serializer(client.meta.service_model.metadata["protocol"], include_validation=False)
    started = time.process_time()
    for group in groups:
        serializer.serialize_to_request({"RequestItems": {table: group}}, operation)
    serialise = (time.process_time() - started) / count * 1e6
    return {"items": count, "cpu_per_item_us": whole, "serialise_us": serialise}


def main(argv: list[str] | None = None) -> None:
    spec_path, out_path = argv or sys.argv[1:3]
    with open(spec_path) as handle:
        spec = json.load(handle)
    netguard.install()
    stream = CountingStream()
    real_stdout, sys.stdout = sys.stdout, stream
    try:
        container = Container(spec, stream)
        steps = []
        for number, step in enumerate(spec["plan"]):
            if step.get("floor"):
                steps.append({**step, **botocore_floor()})
            else:
                steps.append(run_step(container, number, step))
    finally:
        sys.stdout = real_stdout
    with open(out_path, "w") as handle:
        json.dump({"steps": steps, "peak_rss_kb": peak_rss_kb()}, handle)


if __name__ == "__main__":
    main()
