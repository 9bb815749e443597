"""Before/after of a proposed change, interleaved: the same workload alternately on the built code
and on the built code with a diff applied, so that the machine's drift hits both alike.

    PYTHONPATH=layers/shared .venv/bin/python -m tools.bench.ab PATCH.diff sender|webhook [--pairs 4]

sender: a 10,000-message request (CPU per message, DynamoDB requests); webhook: the 500-event
callback, concurrent as deployed (wall, CPU per event, DynamoDB requests). Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench import coldstart
from tools.bench.common import DEFAULT_SENDER, OCELOT_CREDENTIALS, lambda_environment, spread
from tools.bench.localhttp import loopback_only
from tools.bench.ocelot import OcelotServer
from tools.bench.run import DdbServer, _spec, run_workload, setup_aws


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("patch")
    parser.add_argument("function", choices=("webhook", "sender"))
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    loopback_only()
    logical = "WebhookFunction" if args.function == "webhook" else "SenderFunction"
    metrics: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="ocelot-ab-") as work_dir, contextlib.ExitStack() as stack:
        work = Path(work_dir)
        trees = {
            "before": coldstart.prepare(work / "before")["as_built"],
            "after": coldstart.prepare(work / "after", Path(args.patch))["as_built"],
        }
        ddb = DdbServer(args.latency_ms)
        stack.callback(ddb.stop)
        ocelot = OcelotServer(OCELOT_CREDENTIALS["chatbotId"], OCELOT_CREDENTIALS["apiKey"])
        stack.callback(ocelot.stop)
        setup_aws(ddb.url)
        env = lambda_environment(
            logical, ddb.url, {"OCELOT_BASE_URL": ocelot.url, "DEFAULT_SENDER": DEFAULT_SENDER}
        )
        size = args.size or (500 if args.function == "webhook" else 10_000)
        if args.function == "webhook":
            plan = [{"label": "ab", "mode": "concurrent", "concurrency": None, "size": size, "warmup": True}]
            spec = _spec(logical, ddb.url, plan)
        else:
            plan = [{"label": "ab", "size": size, "max_messages": size, "warmup": True}]
            spec = _spec(logical, ddb.url, plan, ocelot_control=ocelot.url)
        extract = _webhook_metrics if args.function == "webhook" else _sender_metrics
        for pair in range(args.pairs):
            for side in ("before", "after") if pair % 2 == 0 else ("after", "before"):
                step = run_workload(f"{side}-{pair}", logical, spec, trees[side], env, work)["steps"][0]
                for name, value in extract(step).items():
                    metrics[side].setdefault(name, []).append(value)
    summary = {
        name: {side: spread(metrics[side][name])["median"] for side in ("before", "after")}
        for name in metrics["before"]
    }
    print(
        json.dumps({"patch": args.patch, "function": args.function, "pairs": args.pairs, **summary}, indent=1)
    )


def _sender_metrics(step: dict[str, Any]) -> dict[str, float]:
    n = float(step["messages"])
    requests: dict[str, int] = step["ddb"]["requests"]
    return {
        "cpu_per_message_us": step["cpu_s"] / n * 1e6,
        "wall_s": step["wall_s"],
        "ddb_requests": float(sum(requests.values())),
        "ok": float(step["status"] == 201),
    }


def _webhook_metrics(step: dict[str, Any]) -> dict[str, float]:
    requests: dict[str, int] = step["ddb"]["requests"]
    writes: Callable[[str], int] = lambda op: requests.get(op, 0)  # noqa: E731
    reply = step["reply"] if isinstance(step["reply"], dict) else {}
    return {
        "wall_s": step["wall_s"],
        "cpu_per_event_ms": step["cpu_s"] / step["events"] * 1e3,
        "write_requests": float(writes("PutItem") + writes("UpdateItem") + writes("BatchWriteItem")),
        "read_requests": float(writes("GetItem")),
        "new": float(reply.get("new", -1)),
        "duplicates": float(reply.get("duplicates", -1)),
    }


if __name__ == "__main__":
    main()
