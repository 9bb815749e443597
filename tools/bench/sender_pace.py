"""The Sender at Ocelot's pace: chunks in parallel against one after another, a 10,000-message queue
request at 1 s per Ocelot request, and the CPU per message against botocore's floor, in one run.

Ocelot is the bench's sandbox with its latency knob (`slow_rate` 1.0, `slow_seconds`): every send
request is answered after that long, as Ocelot registering each text in its Admin Portal would.
DynamoDB is the bench's moto (10 ms per request). Everything runs in one Sender container of the
BUILT code (tools/bench/sender_workload.py).

- parallel: a 1,000-message POST /batches (10 chunks), the sandbox answering after 300 ms, with
  SEND_CONCURRENCY=1 and 4 alternately; goal: parallel <= 0.35x sequential (medians).
- queue: a 10,000-message request from the send queue, the sandbox answering after 1 s, as deployed
  (SEND_CONCURRENCY=4); goal: done within the Sender's timeout with 30% to spare, both as measured
  here and as modelled at the deployed memory (this machine's CPU time stretched to Lambda's share).
- CPU: 10,000-message POST /batches, the sandbox answering at once; process CPU (all threads) per
  message, against the CPU botocore takes to serialise one message's item (the floor, measured in
  the same process right after); goal: <= 2x. One more run, sequential and under cProfile (which
  sees one thread), shows where the CPU goes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.bench import cost
from tools.bench.common import StandIns, median, run_workload, spread, workload_spec

FUNCTION = "SenderFunction"
PARALLEL_MESSAGES, PARALLEL_LATENCY_S, PARALLEL_CONCURRENCY = 1_000, 0.3, 4
QUEUE_MESSAGES, QUEUE_LATENCY_S = 10_000, 1.0
CPU_MESSAGES = 10_000
# The CPU runs measure the sender's costs, not its API budget: every chunk may start in 29 - 6 s.
CPU_ENV = {
    "SEND_CONCURRENCY": None,
    "MAX_MESSAGES_PER_REQUEST": str(CPU_MESSAGES),
    "API_BUDGET_SECONDS": "29",
    "READ_TIMEOUT_SECONDS": "5",
}
GOAL_PARALLEL_RATIO, GOAL_TIMEOUT_SHARE, GOAL_FLOOR_RATIO = 0.35, 0.70, 2.0


def _slow(seconds: float) -> dict[str, float]:
    return {"slow_rate": 1.0 if seconds else 0.0, "slow_seconds": seconds}


def plan(reps: int) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for rep in range(reps):
        for concurrency in (1, PARALLEL_CONCURRENCY):
            steps.append(
                {
                    "label": f"parallel-{concurrency}-{rep}",
                    "size": PARALLEL_MESSAGES,
                    "env": {
                        "SEND_CONCURRENCY": str(concurrency),
                        "MAX_MESSAGES_PER_REQUEST": None,
                        "API_BUDGET_SECONDS": None,
                        "READ_TIMEOUT_SECONDS": None,
                    },
                    "sandbox": _slow(PARALLEL_LATENCY_S),
                    "warmup": True,  # each setting a new container: its clients made before it is timed
                }
            )
    steps.append(
        {
            "label": "queue",
            "size": QUEUE_MESSAGES,
            "via": "sqs",
            "warmup": True,
            "env": {
                "SEND_CONCURRENCY": None,
                "MAX_MESSAGES_PER_REQUEST": str(QUEUE_MESSAGES),
                "API_BUDGET_SECONDS": None,
                "READ_TIMEOUT_SECONDS": None,
            },
            "sandbox": _slow(QUEUE_LATENCY_S),
        }
    )
    for rep in range(reps):
        steps.append(
            {
                "label": f"cpu-{rep}",
                "size": CPU_MESSAGES,
                "env": CPU_ENV,
                "warmup": True,
                "sandbox": _slow(0.0),
            }
        )
        steps.append({"label": f"floor-{rep}", "floor": True})
    steps.append(
        {
            "label": "profile",
            "size": CPU_MESSAGES,
            "warmup": True,
            "via": "sqs",  # one thread, so slower: from the queue, the API budget never cuts it short
            "env": CPU_ENV | {"SEND_CONCURRENCY": "1"},
            "sandbox": _slow(0.0),
            "profile": True,
        }
    )
    return steps


def run(tree: Path, ins: StandIns, env: Mapping[str, str], work: Path, reps: int) -> dict[str, Any]:
    spec = workload_spec(ins.specs[FUNCTION], ins, plan(reps))
    done = run_workload("pace", spec, tree, env, work, driver="tools.bench.sender_workload", timeout=1800)
    steps: list[dict[str, Any]] = done["steps"]
    function = ins.specs[FUNCTION]
    return summarise(steps, function.timeout_seconds, function.memory_mb, int(env["OCELOT_MAX_MESSAGES"]))


def summarise(steps: list[dict[str, Any]], timeout_s: float, memory_mb: int, chunk: int) -> dict[str, Any]:
    def labelled(prefix: str) -> list[dict[str, Any]]:
        return [s for s in steps if s["label"].startswith(prefix)]

    sequential, parallel = labelled("parallel-1-"), labelled(f"parallel-{PARALLEL_CONCURRENCY}-")
    queue = labelled("queue")[0]
    cpu, floors = labelled("cpu-"), labelled("floor-")
    # Conservative: as if none of the CPU overlapped the waits for Ocelot.
    queue_modelled = cost.lambda_duration_s(queue["wall_s"], queue["cpu_s"], memory_mb, False)
    per_message = [s["cpu_s"] / s["messages"] * 1e6 for s in cpu]
    botocore = [s["botocore_dynamodb"]["cpu_s"] / s["messages"] * 1e6 for s in cpu]
    item = median([f["cpu_per_item_us"] for f in floors])
    return {
        "parallel": {
            "messages": PARALLEL_MESSAGES,
            "ocelot_latency_s": PARALLEL_LATENCY_S,
            "concurrency": PARALLEL_CONCURRENCY,
            "sequential_s": spread([s["wall_s"] for s in sequential]),
            "parallel_s": spread([s["wall_s"] for s in parallel]),
            "ratio": median([s["wall_s"] for s in parallel]) / median([s["wall_s"] for s in sequential]),
            "ideal_ratio": math.ceil(PARALLEL_MESSAGES / chunk / PARALLEL_CONCURRENCY)
            / (PARALLEL_MESSAGES / chunk),
            "replies": [s["reply"] for s in sequential + parallel],
            "all_accepted": all(s["status"] == 201 for s in sequential + parallel),
        },
        "queue": {
            "messages": QUEUE_MESSAGES,
            "ocelot_latency_s": QUEUE_LATENCY_S,
            "wall_s": queue["wall_s"],
            "cpu_s": queue["cpu_s"],
            "modelled_in_lambda_s": queue_modelled,
            "timeout_s": timeout_s,
            "share_of_timeout": max(queue["wall_s"], queue_modelled) / timeout_s,
            "ocelot_requests": queue["ocelot"]["requests"],
            "reply": queue["reply"],
            "done": queue["reply"].get("failures") == 0
            and queue["ocelot"]["requests"] == math.ceil(QUEUE_MESSAGES / chunk),
        },
        "cpu": {
            "messages": CPU_MESSAGES,
            "sender_cpu_per_message_us": spread(per_message),
            # The floor: botocore writing the message's item(s), in the same invocation (the message's
            # item and its share of the chunk's four writes; their count is held by the writes goal).
            "botocore_dynamodb_per_message_us": spread(botocore),
            "dynamodb_requests_per_message": [
                s["botocore_dynamodb"]["requests"] / s["messages"] for s in cpu
            ],
            "ratio_to_floor": median([c / b for c, b in zip(per_message, botocore, strict=True) if b]),
            # The same, outside the Sender: one message item in BatchWriteItem requests of 25.
            "message_item_write_us": spread([f["cpu_per_item_us"] for f in floors]),
            "message_item_serialise_us": spread([f["serialise_us"] for f in floors]),
            "ratio_to_message_item": median(per_message) / item if item else float("nan"),
            "wall_s": spread([s["wall_s"] for s in cpu]),
            "all_accepted": all(s["status"] == 201 for s in cpu),
            "profile": labelled("profile")[0]["profile"],
        },
    }


def goals(result: Mapping[str, Any]) -> list[tuple[str, float, float, str, str]]:
    """(name, value, limit, compare, unit) for run.py's table."""
    parallel, queue, cpu = result["parallel"], result["queue"], result["cpu"]
    return [
        (
            f"sender {PARALLEL_MESSAGES} by API, Ocelot {PARALLEL_LATENCY_S:g} s: parallel / sequential",
            parallel["ratio"],
            GOAL_PARALLEL_RATIO,
            "<=",
            "x",
        ),
        (
            "sender: every parallel and sequential request accepted",
            float(parallel["all_accepted"]),
            1.0,
            "==",
            "bool",
        ),
        (
            f"sender {QUEUE_MESSAGES} by queue, Ocelot {QUEUE_LATENCY_S:g} s: share of the timeout",
            queue["share_of_timeout"],
            GOAL_TIMEOUT_SHARE,
            "<=",
            "x",
        ),
        ("sender: the queue request sent whole, each chunk once", float(queue["done"]), 1.0, "==", "bool"),
        (
            "sender CPU per message / botocore writing its items",
            cpu["ratio_to_floor"],
            GOAL_FLOOR_RATIO,
            "<=",
            "x",
        ),
    ]


def info(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    parallel, queue, cpu = result["parallel"], result["queue"], result["cpu"]
    return [
        (
            "sender parallel: sequential / parallel (s, median)",
            f"{parallel['sequential_s']['median']:.2f} / {parallel['parallel_s']['median']:.2f}"
            f" (ideal {parallel['ideal_ratio']:.2f}x)",
        ),
        (
            f"sender queue {QUEUE_MESSAGES}: wall / modelled in Lambda / timeout (s)",
            f"{queue['wall_s']:.1f} / {queue['modelled_in_lambda_s']:.1f} / {queue['timeout_s']:.0f}",
        ),
        (
            "sender CPU per message / botocore DynamoDB (µs)",
            f"{cpu['sender_cpu_per_message_us']['median']:.0f}"
            f" / {cpu['botocore_dynamodb_per_message_us']['median']:.0f}",
        ),
        (
            "one message item: botocore write / serialise alone (µs)",
            f"{cpu['message_item_write_us']['median']:.0f} / {cpu['message_item_serialise_us']['median']:.0f}"
            f" (sender {cpu['ratio_to_message_item']:.2f}x the write)",
        ),
    ]
