"""`make bench`: measure, compare with baselines taken in the same run, write bench/results.json,
print the table, draw docs/callback-throughput.png; exit 1 when a goal is missed (each one named).

Ratios only, never absolute times, are held against goals (but the sender's CPU per message): this
machine is noisy and has 2 cores. Every stand-in listens on 127.0.0.1 and is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench import coldstart, cost, latency, report, sender_coldstart, sender_pace, size
from tools.bench.common import (
    BENCH_PYTHON,
    BUILD,
    FUNCTIONS,
    PLOT,
    RESULTS,
    StandIns,
    lambda_environment,
    median,
    run_workload,
    spread,
    stand_ins,
    workload_spec,
)
from tools.local import netguard
from tools.template_resources import ROOT, resource

WEBHOOK_SIZES = (1, 10, 100, 1_000, 10_000)
APPLIER_SIZES = (1, 10, 100, 500)
HEADLINE = 500  # the applier's delivery the speedup, the writes and the states are measured on
# Stream records per applier invocation when callbacks carry one event: the mapping's BatchSize.
BATCH = int(resource("ApplierStreamMapping")["Properties"]["BatchSize"])
SECTIONS = ("size", "coldstart", "webhook", "applier", "latency", "sender", "sender-cold", "sender-pace")
WRITE_REQUESTS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int
    reps: int
    sender_reps: int
    sender_messages: int
    latency_ms: float
    latency_samples: int
    plot: bool
    only: tuple[str, ...]
    patch: str | None


# ---- the webhook: one write per delivery, whatever its size ----------------------------------------


def measure_webhook(
    options: Options, tree: Path, ins: StandIns, env: Mapping[str, str], work: Path
) -> dict[str, Any]:
    spec = ins.specs["WebhookFunction"]
    # Sizes interleaved within each repetition, so that the machine's drift hits them alike.
    plan = [
        {"label": f"webhook-{n}-{rep}", "size": n, "warmup": rep == 0 and n == WEBHOOK_SIZES[0]}
        for rep in range(options.reps)
        for n in WEBHOOK_SIZES
    ]
    timing = run_workload("webhook", workload_spec(spec, ins, plan), tree, env, work)
    largest = [dict(plan[len(WEBHOOK_SIZES) - 1], warmup=True)]
    traced = run_workload(
        "webhook-memory", workload_spec(spec, ins, largest, tracemalloc=True), tree, env, work
    )
    steps: list[dict[str, Any]] = timing["steps"]
    by_size = {str(n): _webhook_size([s for s in steps if s["size"] == n]) for n in WEBHOOK_SIZES}
    small, large = by_size[str(WEBHOOK_SIZES[0])], by_size[str(WEBHOOK_SIZES[-1])]
    return {
        "latency_ms": options.latency_ms,
        "max_body_bytes": _max_body_bytes(env),
        "by_size": by_size,
        "ratio_largest_to_one": large["wall_s"]["median"] / small["wall_s"]["median"],
        "ratio_largest_to_one_cpu": large["cpu_s"]["median"] / small["cpu_s"]["median"],
        "steps": [_without_noise(s) for s in steps],
        **_memory(timing, traced),
    }


def _max_body_bytes(env: Mapping[str, str]) -> int:
    from ocelot_sms.settings import Settings

    return int(env.get("WEBHOOK_MAX_BODY_BYTES") or Settings("-").webhook_max_body_bytes)


def _webhook_size(runs: list[dict[str, Any]]) -> dict[str, Any]:
    middle = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    return {
        "wall_s": spread([r["wall_s"] for r in runs]),
        "cpu_s": spread([r["cpu_s"] for r in runs]),
        "request_bytes": middle["request_bytes"],
        "statuses": sorted({int(r["status"]) for r in runs}),
        "write_requests": sum(middle["ddb"]["requests"].get(op, 0) for op in WRITE_REQUESTS),
        "raw_write_units": middle["ddb"]["write_units"],
        # The raw delivery's item: text up to 32 KB, gzip above; only the start when not kept whole.
        "raw_item_bytes": middle["ddb"]["item_sizes"].get("RAW/*", {}).get("max"),
        "middle": middle,
    }


# ---- the applier: each stored delivery, from the stream ---------------------------------------------


def measure_applier(
    options: Options, tree: Path, ins: StandIns, env: Mapping[str, str], work: Path
) -> dict[str, Any]:
    from ocelot_sms.settings import Settings

    spec = ins.specs["ApplierFunction"]

    def step(label: str, size_: int, **extra: Any) -> dict[str, Any]:
        return {"label": label, "size": size_, "concurrency": None, **extra}

    plan = [
        step("headline", HEADLINE, warmup=True, verify=True),
        step("replay", HEADLINE, replay_of="headline"),
        *(step(f"sequential-{rep}", HEADLINE, concurrency=1, warmup=True) for rep in range(options.reps)),
        *(step(f"concurrent-{rep}", HEADLINE, warmup=True) for rep in range(options.reps)),
        *(step(f"size-{n}-{rep}", n) for rep in range(options.reps) for n in APPLIER_SIZES),
        *(step(f"batch-{rep}", 1, deliveries=BATCH) for rep in range(options.reps)),
    ]
    timing = run_workload("applier", workload_spec(spec, ins, plan), tree, env, work)
    traced = run_workload(
        "applier-memory", workload_spec(spec, ins, plan[:1], tracemalloc=True), tree, env, work
    )
    steps: list[dict[str, Any]] = timing["steps"]

    def walls(prefix: str) -> list[float]:
        return [s["wall_s"] for s in steps if s["label"].startswith(prefix)]

    headline = next(s for s in steps if s["label"] == "headline")
    sequential, concurrent = walls("sequential-"), walls("concurrent-")
    batches = sorted((s for s in steps if s["label"].startswith("batch-")), key=lambda s: s["wall_s"])
    return {
        "latency_ms": options.latency_ms,
        "deployed_concurrency": Settings("-").webhook_write_concurrency,
        "batch_size": BATCH,
        "headline": _applier_counts(headline),
        "replay": _applier_counts(next(s for s in steps if s["label"] == "replay")),
        "states": headline.get("states"),
        "wrong_replies": [s["label"] for s in steps if not _applied_right(s)],
        "sequential_s": spread(sequential),
        "concurrent_s": spread(concurrent),
        "speedup": median(sequential) / median(concurrent),
        "by_size": {str(n): spread(walls(f"size-{n}-")) for n in APPLIER_SIZES},
        "cpu_per_event_ms": median(
            [s["cpu_s"] / s["events"] * 1e3 for s in steps if "concurrent-" in s["label"]]
        ),
        "batch_step": _without_noise(batches[len(batches) // 2]) if batches else None,
        "size_steps": {
            str(n): _without_noise(sorted(ss, key=lambda s: s["wall_s"])[len(ss) // 2])
            for n in APPLIER_SIZES
            if (ss := [s for s in steps if s["label"].startswith(f"size-{n}-")])
        },
        "steps": [_without_noise(s) for s in steps],
        **_memory(timing, traced),
    }


def _items(step: Mapping[str, Any], operation: str, kind_suffix: str, outcome: str | None = None) -> int:
    return sum(
        count
        for key, outcomes in step["ddb"]["items"].items()
        if key.startswith(f"{operation} ") and key.endswith(kind_suffix)
        for name, count in outcomes.items()
        if outcome is None or name == outcome
    )


def _applier_counts(step: Mapping[str, Any]) -> dict[str, Any]:
    new, duplicates = int(step["expected_new"]), int(step["expected_duplicates"])
    requests = step["ddb"]["requests"]
    event_ok, event_refused = (
        _items(step, "PutItem", "/EVT", "ok"),
        _items(step, "PutItem", "/EVT", "refused"),
    )
    state = _items(step, "UpdateItem", "/STATE")
    return {
        "events": step["events"],
        "new": new,
        "duplicates": duplicates,
        "write_requests": sum(requests.get(op, 0) for op in WRITE_REQUESTS),
        "read_requests": sum(requests.get(op, 0) for op in ("GetItem", "BatchGetItem", "Query")),
        "event_puts_ok": event_ok,
        "event_puts_refused": event_refused,
        "state_updates": state,
        # Every write a new event costs; every write a duplicate costs (its refused put, and a state
        # update when it repaired one).
        "writes_per_new_event": (event_ok + state) / new if new else 0.0,
        "writes_per_duplicate": (event_refused + (state if not new else 0)) / duplicates
        if duplicates
        else 0.0,
        "requests": requests,
        "write_units": step["ddb"]["write_units"],
        "read_units": step["ddb"]["read_units"],
        "wall_s": step["wall_s"],
        "cpu_s": step["cpu_s"],
    }


def _applied_right(step: Mapping[str, Any]) -> bool:
    """No record reported failed, and the event puts the stand-in saw are the events' (new or not)."""
    reply = step["reply"] if isinstance(step["reply"], dict) else {}
    if reply.get("batchItemFailures") != []:
        return False
    unique = int(step["unique_events"])
    if step.get("replay_of"):
        return _items(step, "PutItem", "/EVT", "refused") == unique
    return _items(step, "PutItem", "/EVT", "ok") == unique


# ---- shared pieces ----------------------------------------------------------------------------------


def _memory(timing: Mapping[str, Any], traced: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "peak_rss_mb": timing["peak_rss_kb"] / 1024,
        "ru_maxrss_mb": timing["ru_maxrss_kb"] / 1024,
        "tracemalloc_peak_mb": (traced["tracemalloc_peak_bytes"] or 0) / 2**20,
        "log_sample": timing["log_sample"][:3000],
        "paths": timing["paths"],
    }


def _without_noise(step: Mapping[str, Any]) -> dict[str, Any]:
    """A step without what only a debugger needs: the meter's per-kind counts stay for the costs."""
    ddb = step["ddb"]
    kept = ("requests", "items", "write_units", "gsi_write_units", "read_units", "item_sizes")
    return {k: v for k, v in step.items() if k != "ddb"} | {"ddb": {key: ddb[key] for key in kept}}


def measure_sender(
    options: Options, tree: Path, ins: StandIns, env: Mapping[str, str], work: Path
) -> dict[str, Any]:
    spec, n = ins.specs["SenderFunction"], options.sender_messages
    chunk = int(env["OCELOT_MAX_MESSAGES"])
    plan = [
        {"label": f"sender-{n}-{rep}", "size": n, "max_messages": n, "warmup": rep == 0}
        for rep in range(options.sender_reps)
    ]
    # Its costs, not the API budget (sender_pace measures that): every chunk may start in 29 - 6 s.
    env = {**env, "API_BUDGET_SECONDS": "29", "READ_TIMEOUT_SECONDS": "5"}
    timing = run_workload("sender", workload_spec(spec, ins, plan), tree, env, work)
    traced = run_workload(
        "sender-memory", workload_spec(spec, ins, plan[:1], tracemalloc=True), tree, env, work
    )
    steps: list[dict[str, Any]] = timing["steps"]
    writes = [sum(s["ddb"]["requests"].get(op, 0) for op in WRITE_REQUESTS) for s in steps]
    middle = sorted(steps, key=lambda s: s["cpu_s"])[len(steps) // 2]
    return {
        "messages": n,
        "chunk_size": chunk,
        "expected_ocelot_requests": math.ceil(n / chunk),
        "ocelot_requests": [s["ocelot"]["requests"] for s in steps],
        "ocelot_by_status": [s["ocelot"]["by_status"] for s in steps],
        "write_requests": writes,
        "writes_per_message": max(writes) / n,
        "requests_by_operation": steps[0]["ddb"]["requests"],
        "item_kinds": steps[0]["ddb"]["items"],
        "write_units_per_message": (middle["ddb"]["write_units"] + middle["ddb"]["gsi_write_units"]) / n,
        "cpu_per_message_us": spread([s["cpu_s"] / n * 1e6 for s in steps]),
        "wall_s": spread([s["wall_s"] for s in steps]),
        "replies": [s["reply"] for s in steps],
        "replies_correct": all(
            s["status"] == 201 and s["reply"].get("status") == "accepted" and s["reply"].get("results") == n
            for s in steps
        ),
        "middle": _without_noise(middle),
        **_memory(timing, traced),
    }


_PRINT_PEAK_RSS = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"


def bare_rss_mb(env: Mapping[str, str]) -> float:
    """Peak RSS of an interpreter that only made a DynamoDB client: the floor of any function."""
    code = "import boto3\nboto3.client('dynamodb')\n" + _PRINT_PEAK_RSS
    done = subprocess.run(
        [str(BENCH_PYTHON), "-P", "-c", code], env=dict(env), capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip()) / 1024


# ---- main ----------------------------------------------------------------------------------------


def _meta(options: Options) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(git("status", "--porcelain").splitlines()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "options": {name: getattr(options, name) for name in Options.__slots__},
        "ocelot": "tools/local/sandbox.py (no webhook: callbacks are planned, not sent)",
    }


@contextlib.contextmanager
def _section(title: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"== {title} ...", flush=True)
    yield
    print(f"   {title}: {time.perf_counter() - started:.0f} s", flush=True)


def _in_stand_ins(options: Options, results: dict[str, Any]) -> dict[str, int]:
    """The sections measured against the bench's moto (latency per request, metered) and sandbox;
    returns each function's memory size."""
    measures = {"webhook": measure_webhook, "applier": measure_applier, "sender": measure_sender}
    with (
        tempfile.TemporaryDirectory(prefix="ocelot-bench-") as work_dir,
        stand_ins(options.latency_ms) as ins,
    ):
        work = Path(work_dir)
        with _section("copying the built layer and functions" + (" (patched)" if options.patch else "")):
            tree = coldstart.prepare(work / "tree", Path(options.patch) if options.patch else None)
        envs = {f: lambda_environment(ins.specs[f], ins.aws_url) for f in FUNCTIONS.values()}
        if "size" in options.only:
            with _section("size"):
                built = {f: BUILD / f for f in FUNCTIONS.values()}
                results["size"] = size.measure(BUILD / "SharedLayer", built, work)
        if "coldstart" in options.only:
            with _section(f"cold start ({options.rounds} interleaved rounds)"):
                summary = coldstart.measure(tree, envs, options.rounds)
                results["coldstart"] = {
                    "rounds": options.rounds,
                    "ratios": coldstart.ratios(summary),
                    "summary": summary,
                    "offenders": coldstart.offenders(tree, envs),
                }
        for name, measure_one in measures.items():
            if name in options.only:
                with _section(f"{name} ({options.latency_ms:g} ms per DynamoDB request)"):
                    results[name] = measure_one(options, tree, ins, envs[FUNCTIONS[name]], work)
        if "sender-cold" in options.only:
            with _section(f"sender cold start by path ({options.rounds} interleaved rounds)"):
                results["sender-cold"] = sender_coldstart.measure(
                    tree, envs["SenderFunction"], ins, options.rounds, work
                )
        if "sender-pace" in options.only:
            with _section("sender at Ocelot's pace (parallel, queue, CPU)"):
                results["sender-pace"] = sender_pace.run(
                    tree, ins, envs["SenderFunction"], work, options.sender_reps
                )
        results["memory"] = {"bare_boto3_rss_mb": bare_rss_mb(envs["WebhookFunction"])}
        return {f: ins.specs[f].memory_mb for f in FUNCTIONS.values()}


def measure(options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(options)}
    memory = _in_stand_ins(options, results)
    results["memory"]["memory_size_mb"] = memory
    if "latency" in options.only:
        with _section(f"200 to status visible, local stack ({options.latency_samples} callbacks)"):
            results["latency"] = latency.measure(options.latency_samples)
    if all(name in results for name in ("webhook", "applier", "sender")):
        results["cost"] = cost.model(results["webhook"], results["applier"], results["sender"], memory)
    for name in ("webhook", "sender"):
        if name in results:  # kept for the costs; the steps hold them already
            results[name].pop("middle", None)
            for values in results[name].get("by_size", {}).values():
                values.pop("middle", None)
    results["meta"]["duration_s"] = time.perf_counter() - started
    return results


def _options(argv: list[str] | None) -> tuple[Options, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=11, help="cold start rounds (>= 9)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each webhook and applier run")
    parser.add_argument("--sender-reps", type=int, default=3)
    parser.add_argument("--sender-messages", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=10.0, help="simulated DynamoDB latency")
    parser.add_argument("--latency-samples", type=int, default=200, help="callbacks timed 200 -> visible")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--patch", help="measure with this diff (git diff format) applied to copies of the code"
    )
    parser.add_argument("--results", default=str(RESULTS), help="where to write the JSON results")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer samples, for trying the bench itself")
    args = parser.parse_args(argv)
    only = tuple(s for s in SECTIONS if s in args.only.split(","))
    options = Options(
        rounds=3 if args.quick else args.rounds,
        reps=1 if args.quick else args.reps,
        sender_reps=1 if args.quick else args.sender_reps,
        sender_messages=args.sender_messages,
        latency_ms=args.latency_ms,
        latency_samples=20 if args.quick else args.latency_samples,
        plot=not args.no_plot and {"webhook", "applier"} <= set(only),
        only=only,
        patch=str(Path(args.patch).resolve()) if args.patch else None,
    )
    return options, str(args.results)


def main(argv: list[str] | None = None) -> int:
    options, results_path = _options(argv)
    for needed in (BUILD / "SharedLayer" / "python", *(BUILD / f for f in FUNCTIONS.values()), BENCH_PYTHON):
        if not needed.exists():
            print(
                f"missing {needed}: run `make bench` (it builds and installs what the bench needs)",
                file=sys.stderr,
            )
            return 2
    netguard.install()
    results = measure(options)
    checks = report.goals(results)
    results["goals"] = [
        {"name": g.name, "value": g.value, "limit": g.limit, "compare": g.compare, "passed": g.passed}
        for g in checks
    ]
    path = Path(results_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\n{report.table(results, checks)}\n\nresults: {path} ({results['meta']['duration_s']:.0f} s)")
    if options.plot and options.patch is None:
        # By file, in the bench venv (matplotlib lives there): the plot imports nothing of ours.
        plot = [str(BENCH_PYTHON), str(ROOT / "tools" / "bench" / "plot.py"), str(path), str(PLOT)]
        subprocess.run(plot, check=True)
    missed = [g.name for g in checks if not g.passed]
    if missed:
        print("\nMISSED goals:\n" + "\n".join(f"  - {name}" for name in missed), file=sys.stderr)
        return 1
    return 0
