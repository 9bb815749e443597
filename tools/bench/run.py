"""`make bench`: measure, compare with baselines taken in the same run, write bench/results.json,
print the table, draw docs/webhook-throughput.png; exit 1 when a goal is missed (each one named).

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench import coldstart, cost, sender_coldstart, sender_pace, size
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

CURVE_SIZES = (1, 10, 50, 100, 250)
HEADLINE_SIZE = 500
COST_ARRAY_SIZES = (1, 10, 100, 500)
ASSUMED_EVENTS_PER_CALLBACK = 10
MEMORY_SIZES = (128, 256, 512, 1024, 1769)
SECTIONS = ("size", "coldstart", "webhook", "sender", "sender-cold", "sender-pace")
WRITE_REQUESTS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int
    reps: int
    sender_reps: int
    sender_messages: int
    latency_ms: float
    plot: bool
    only: tuple[str, ...]
    patch: str | None


# ---- the measurements ---------------------------------------------------------------------------


def measure_webhook(
    options: Options, tree: Path, ins: StandIns, env: Mapping[str, str], work: Path
) -> dict[str, Any]:
    from ocelot_sms.settings import Settings

    spec = ins.specs["WebhookFunction"]
    modes = {"sequential": 1, "concurrent": None}  # None: the variable unset, as deployed

    def step(mode: str, size_: int, rep: int, **extra: Any) -> dict[str, Any]:
        label = f"{mode}-{size_}-{rep}"
        return {
            "label": label,
            "mode": mode,
            "concurrency": modes[mode],
            "size": size_,
            "warmup": True,
            **extra,
        }

    plan = [
        step(m, HEADLINE_SIZE, r, verify=m == "concurrent" and r == 0)
        for r in range(options.reps)
        for m in modes
    ]
    replay_of = f"concurrent-{HEADLINE_SIZE}-0"
    plan.append(
        {**step("concurrent", HEADLINE_SIZE, 0), "label": "replay", "warmup": False, "replay_of": replay_of}
    )
    plan += [step(m, s, r) for r in range(options.reps) for s in CURVE_SIZES for m in modes]
    timing = run_workload("webhook", workload_spec(spec, ins, plan), tree, env, work)
    traced_spec = workload_spec(spec, ins, [dict(plan[1], verify=False)], tracemalloc=True)
    traced = run_workload("webhook-memory", traced_spec, tree, env, work)
    steps: list[dict[str, Any]] = timing["steps"]

    def runs(prefix: str) -> list[dict[str, Any]]:
        return [s for s in steps if s["label"].startswith(prefix)]

    def walls(prefix: str) -> list[float]:
        return [s["wall_s"] for s in runs(prefix)]

    sequential, concurrent = walls(f"sequential-{HEADLINE_SIZE}-"), walls(f"concurrent-{HEADLINE_SIZE}-")
    curve = {str(n): {m: median(walls(f"{m}-{n}-")) for m in modes} for n in (*CURVE_SIZES, HEADLINE_SIZE)}
    headline = next(s for s in steps if s["label"] == replay_of)

    # The same runs as Lambda would time them at each memory size (its CPU share scales with it).
    def in_lambda(mode: str, mb: int) -> float:
        timed = runs(f"{mode}-{HEADLINE_SIZE}-")
        return median(
            [cost.lambda_duration_s(s["wall_s"], s["cpu_s"], mb, mode == "concurrent") for s in timed]
        )

    return {
        "latency_ms": options.latency_ms,
        "deployed_concurrency": Settings(table_name="-").webhook_write_concurrency,
        "sequential_s": spread(sequential),
        "concurrent_s": spread(concurrent),
        "speedup": median(sequential) / median(concurrent),
        "speedup_paired": [s / c for s, c in zip(sequential, concurrent, strict=True)],
        "speedup_modeled_in_lambda_by_memory_mb": {
            str(mb): in_lambda("sequential", mb) / in_lambda("concurrent", mb) for mb in MEMORY_SIZES
        },
        "curve": curve,
        "headline": _webhook_counts(headline),
        "replay": _webhook_counts(next(s for s in steps if s["label"] == "replay")),
        "states": headline.get("states"),
        "wrong_replies": [s["label"] for s in steps if not _reply_correct(s)],
        "cpu_per_event_ms": headline["cpu_s"] / headline["events"] * 1e3,
        "log_bytes_per_invocation": {
            str(s["events"]): s["log_bytes"] for s in steps if s["mode"] == "concurrent"
        },
        "steps": [_without_noise(s) for s in steps],
        **_memory(timing, traced),
    }


def _memory(timing: Mapping[str, Any], traced: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "peak_rss_mb": timing["peak_rss_kb"] / 1024,
        "ru_maxrss_mb": timing["ru_maxrss_kb"] / 1024,
        "tracemalloc_peak_mb": (traced["tracemalloc_peak_bytes"] or 0) / 2**20,
        "log_sample": timing["log_sample"][:3000],
        "paths": timing["paths"],
    }


def _reply_correct(step: Mapping[str, Any]) -> bool:
    reply = step["reply"] if isinstance(step["reply"], dict) else {}
    expected = (step["events"], step["expected_new"], step["expected_duplicates"])
    return (
        step["status"] == 200
        and (reply.get("received"), reply.get("new"), reply.get("duplicates")) == expected
    )


def _items(step: Mapping[str, Any], operation: str, kind_suffix: str, outcome: str | None = None) -> int:
    return sum(
        count
        for key, outcomes in step["ddb"]["items"].items()
        if key.startswith(f"{operation} ") and key.endswith(kind_suffix)
        for name, count in outcomes.items()
        if outcome is None or name == outcome
    )


def _webhook_counts(step: Mapping[str, Any]) -> dict[str, Any]:
    new, duplicates = int(step["reply"].get("new", 0)), int(step["reply"].get("duplicates", 0))
    requests = step["ddb"]["requests"]
    writes = sum(requests.get(op, 0) for op in WRITE_REQUESTS)
    event_ok, event_refused = (
        _items(step, "PutItem", "/EVT", "ok"),
        _items(step, "PutItem", "/EVT", "refused"),
    )
    state = _items(step, "UpdateItem", "/STATE")
    return {
        "events": step["events"],
        "new": new,
        "duplicates": duplicates,
        "write_requests": writes,
        "read_requests": sum(requests.get(op, 0) for op in ("GetItem", "BatchGetItem", "Query")),
        "raw_puts": _items(step, "PutItem", "RAW/*"),
        "event_puts_ok": event_ok,
        "event_puts_refused": event_refused,
        "state_updates": state,
        "writes_per_new_event": (event_ok + state) / new if new else 0.0,
        "writes_per_duplicate": event_refused / duplicates if duplicates else 0.0,
        "requests": requests,
        "write_units": step["ddb"]["write_units"],
        "read_units": step["ddb"]["read_units"],
        "wall_s": step["wall_s"],
        "cpu_s": step["cpu_s"],
    }


def _without_noise(step: Mapping[str, Any]) -> dict[str, Any]:
    ddb = step["ddb"]
    kept = ("requests", "write_units", "gsi_write_units", "read_units", "item_sizes")
    return {k: v for k, v in step.items() if k != "ddb"} | {f"ddb_{key}": ddb[key] for key in kept}


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
        "median_step": _without_noise(middle),
        "middle": middle,
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


def access_log_bytes() -> int:
    """One API Gateway access log line in the template's format, with typical values."""
    line = str(resource("HttpApi")["Properties"]["AccessLogSettings"]["Format"])
    for name, value in {
        "$context.requestId": "JqWq7iSxIAMEVbQ=",
        "$context.routeKey": "POST /webhooks/ocelot",
        "$context.status": "200",
        "$context.responseLatency": "142",
        "$context.integrationErrorMessage": "-",
    }.items():
        line = line.replace(name, value)
    return len(line.encode()) + 1


def costs(webhook: Mapping[str, Any], sender: Mapping[str, Any], memory: Mapping[str, int]) -> dict[str, Any]:
    access = access_log_bytes()
    # Per size, the concurrent (as deployed) run with the median wall time.
    by_size: dict[int, list[dict[str, Any]]] = {}
    for step in webhook["steps"]:
        if step["mode"] == "concurrent" and not step.get("replay_of"):
            by_size.setdefault(int(step["events"]), []).append(step)
    steps = {n: sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2] for n, runs in by_size.items()}

    def hook(n: int, mb: int) -> dict[str, float]:
        step = steps[n]
        ddb = {k: step[f"ddb_{k}"] for k in ("write_units", "gsi_write_units", "read_units")}
        return cost.webhook_per_million({**step, "ddb": ddb}, mb, access)

    middle, chunk = sender["middle"], sender["chunk_size"]
    sender_api = cost.sender_per_million(middle, memory["SenderFunction"], chunk, access, via_queue=False)
    scenarios = {}
    for n in COST_ARRAY_SIZES:
        webhook_cost = hook(n, memory["WebhookFunction"])
        total = sum(webhook_cost.values()) + sum(sender_api.values())
        scenarios[str(n)] = {"webhook": webhook_cost, "sender": sender_api, "total": total}
    sender_duration = cost.lambda_duration_s(
        middle["wall_s"], middle["cpu_s"], memory["SenderFunction"], False
    )
    storage_sizes = dict(steps[HEADLINE_SIZE]["ddb_item_sizes"]) | dict(
        sender["median_step"]["ddb_item_sizes"]
    )
    return {
        "assumed_events_per_callback": ASSUMED_EVENTS_PER_CALLBACK,
        "callbacks_per_message": cost.CALLBACKS_PER_MESSAGE,
        "memory_mb": memory,
        "access_log_bytes": access,
        "scenarios": scenarios,
        "per_million": scenarios[str(ASSUMED_EVENTS_PER_CALLBACK)]["total"],
        "per_million_one_event_per_callback": scenarios["1"]["total"],
        "sender_via_queue": cost.sender_per_million(
            middle, memory["SenderFunction"], chunk, access, via_queue=True
        ),
        "webhook_by_memory": {
            str(mb): {str(n): sum(hook(n, mb).values()) for n in COST_ARRAY_SIZES} for mb in MEMORY_SIZES
        },
        "webhook_duration_s_by_memory": {
            str(n): {
                str(mb): cost.lambda_duration_s(steps[n]["wall_s"], steps[n]["cpu_s"], mb, True)
                for mb in MEMORY_SIZES
            }
            for n in COST_ARRAY_SIZES
        },
        "sender_duration_s": sender_duration + math.ceil(sender["messages"] / chunk) * cost.OCELOT_LATENCY_S,
        "storage": cost.storage_per_million(storage_sizes, ASSUMED_EVENTS_PER_CALLBACK),
        "prices": cost.prices_table(),
        "assumptions": {
            "platform_log_bytes": cost.PLATFORM_LOG_BYTES,
            "xray_sampled": cost.XRAY_SAMPLED,
            "ocelot_latency_s": cost.OCELOT_LATENCY_S,
            "lambda_mb_per_vcpu": cost.LAMBDA_MB_PER_VCPU,
        },
    }


# ---- goals and the table -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    value: float
    limit: float
    compare: str  # "<=", ">=", "=="
    unit: str  # how it is shown: "x", "us", "MB", "$", "bool" or ""

    @property
    def passed(self) -> bool:
        value, limit = self.value, self.limit
        ok = {"<=": value <= limit, ">=": value >= limit, "==": value == limit}[self.compare]
        return not math.isnan(value) and ok

    def row(self) -> tuple[str, str, str, str]:
        limit = "yes" if self.unit == "bool" else f"{self.compare} {_fmt(self.limit, self.unit)}"
        return self.name, _fmt(self.value, self.unit), limit, "ok" if self.passed else "MISSED"


def _yes(name: str, condition: bool) -> Goal:
    return Goal(name, float(condition), 1.0, "==", "bool")


def goals(results: Mapping[str, Any]) -> list[Goal]:
    out: list[Goal] = []
    if "coldstart" in results:
        cold = results["coldstart"]["ratios"]
        out.append(Goal("cold start: webhook / boto3 baseline", cold["webhook"]["ratio_cpu"], 1.3, "<=", "x"))
    if "webhook" in results:
        hook = results["webhook"]
        states = hook.get("states") or {}
        out += [
            Goal("webhook 500 events: sequential / concurrent", hook["speedup"], 8.0, ">=", "x"),
            Goal(
                "webhook: write requests per new event",
                hook["headline"]["writes_per_new_event"],
                2.0,
                "<=",
                "",
            ),
            Goal(
                "webhook: write requests per duplicate (replay)",
                hook["replay"]["writes_per_duplicate"],
                1.0,
                "<=",
                "",
            ),
            _yes("webhook: every reply counts new/duplicates right", not hook["wrong_replies"]),
            _yes(
                "webhook: stored statuses match the events",
                states.get("checked", 0) > 0 and states.get("wrong", 1) == 0,
            ),
        ]
    if "sender" in results:
        send = results["sender"]
        out += [
            _yes(
                "sender: Ocelot requests == ceil(N / chunk)",
                set(send["ocelot_requests"]) == {send["expected_ocelot_requests"]},
            ),
            _yes("sender: every request accepted, every message listed", send["replies_correct"]),
            Goal("sender: DynamoDB write requests per message", send["writes_per_message"], 0.1, "<=", ""),
        ]
    # The sender's cold start by path, its pace and its CPU against botocore's (their own modules).
    if "sender-cold" in results:
        out += [Goal(*goal) for goal in sender_coldstart.goals(results["sender-cold"])]
    if "sender-pace" in results:
        out += [Goal(*goal) for goal in sender_pace.goals(results["sender-pace"])]
    if "size" in results:
        out.append(Goal("layer unzipped", results["size"]["layer_unzipped_mb"], 16.0, "<=", "MB"))
        out.append(
            _yes(
                "layer bundles no boto3/botocore/s3transfer", not results["size"]["runtime_packages_bundled"]
            )
        )
    if "cost" in results:
        money = results["cost"]
        name = f"cost per 1M messages ({money['assumed_events_per_callback']} events per callback)"
        out.append(Goal(name, money["per_million"], 10.0, "<=", "$"))
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "bool":
        return "yes" if value == 1.0 else "NO"
    formats = {"$": "${:.2f}", "x": "{:.2f}x", "us": "{:.1f} µs", "MB": "{:.1f} MB"}
    return formats.get(unit, "{:.4g}").format(value)


def _sender_info(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The sender's cold start by path and pace rows (their own modules)."""
    modules = (("sender-cold", sender_coldstart), ("sender-pace", sender_pace))
    return [row for name, module in modules if name in results for row in module.info(results[name])]


def table(results: Mapping[str, Any], checks: Sequence[Goal]) -> str:
    info: list[tuple[str, str]] = []
    if "coldstart" in results:
        for handler in ("webhook", "sender"):
            ratio = results["coldstart"]["ratios"][handler]
            cpu = (ratio[k] for k in ("import_cpu_ms", "import_and_objects_cpu_ms", "baseline_cpu_ms"))
            shown = " / ".join(f"{ms:.0f}" for ms in cpu)
            info.append(
                (
                    f"cold start {handler} CPU: import / +objects / baseline (ms)",
                    f"{shown}  (wall ratio {ratio['ratio_wall']:.2f}x)",
                )
            )
    if "webhook" in results:
        hook = results["webhook"]
        info.append(
            (
                "webhook 500: sequential / concurrent (s, median)",
                f"{hook['sequential_s']['median']:.2f} / {hook['concurrent_s']['median']:.2f}",
            )
        )
        info.append(("webhook CPU per event (this machine)", f"{hook['cpu_per_event_ms']:.2f} ms"))
    if "sender" in results:
        send = results["sender"]
        info.append(
            (
                f"sender {send['messages']}: wall (s, median) / Ocelot requests / CPU per message",
                f"{send['wall_s']['median']:.2f} / {send['ocelot_requests']}"
                f" / {send['cpu_per_message_us']['median']:.0f} µs",
            )
        )
    info += _sender_info(results)
    for name in ("webhook", "sender"):
        if name in results:
            info.append(
                (
                    f"{name} peak: RSS (VmHWM) / tracemalloc",
                    f"{results[name]['peak_rss_mb']:.0f} / {results[name]['tracemalloc_peak_mb']:.0f} MB",
                )
            )
    if "size" in results:
        info.append(("layer zipped", f"{results['size']['layer_zipped_mb']:.1f} MB"))
    if "cost" in results:
        info.append(
            (
                "cost per 1M messages, 1 event per callback",
                f"${results['cost']['per_million_one_event_per_callback']:.2f}",
            )
        )
    rows = [goal.row() for goal in checks]
    width = max(len(name) for name, *_ in [*rows, *info]) + 2
    lines = [f"{'metric':<{width}}{'measured':>14}  {'goal':>12}  status", "-" * (width + 38)]
    lines += [f"{n:<{width}}{v:>14}  {g:>12}  {s}" for n, v, g, s in rows]
    return "\n".join([*lines, "", *(f"{n:<{width}}{v}" for n, v in info)])


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


def measure(options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(options)}
    with (
        tempfile.TemporaryDirectory(prefix="ocelot-bench-") as work_dir,
        stand_ins(options.latency_ms) as ins,
    ):
        work = Path(work_dir)
        with _section("copying the built layer and functions" + (" (patched)" if options.patch else "")):
            tree = coldstart.prepare(work / "tree", Path(options.patch) if options.patch else None)
        envs = {f: lambda_environment(ins.specs[f], ins.aws_url) for f in FUNCTIONS}
        if "size" in options.only:
            with _section("size"):
                results["size"] = size.measure(BUILD / "SharedLayer", {f: BUILD / f for f in FUNCTIONS}, work)
        if "coldstart" in options.only:
            with _section(f"cold start ({options.rounds} interleaved rounds)"):
                summary = coldstart.measure(tree, envs, options.rounds)
                results["coldstart"] = {
                    "rounds": options.rounds,
                    "ratios": coldstart.ratios(summary),
                    "summary": summary,
                    "offenders": coldstart.offenders(tree, envs),
                }
        if "webhook" in options.only:
            with _section(f"webhook ({options.latency_ms:g} ms per DynamoDB request)"):
                results["webhook"] = measure_webhook(options, tree, ins, envs["WebhookFunction"], work)
        if "sender" in options.only:
            with _section(f"sender ({options.sender_messages} messages)"):
                results["sender"] = measure_sender(options, tree, ins, envs["SenderFunction"], work)
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
        memory = {f: ins.specs[f].memory_mb for f in FUNCTIONS}
        results["memory"] = {
            "bare_boto3_rss_mb": bare_rss_mb(envs["WebhookFunction"]),
            "memory_size_mb": memory,
        }
    if "webhook" in results and "sender" in results:
        results["cost"] = costs(results["webhook"], results["sender"], memory)
    if "sender" in results:
        results["sender"].pop("middle", None)
    results["meta"]["duration_s"] = time.perf_counter() - started
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=11, help="cold start rounds (>= 9)")
    parser.add_argument("--reps", type=int, default=3, help="webhook 500-event repetitions per mode")
    parser.add_argument("--sender-reps", type=int, default=3)
    parser.add_argument("--sender-messages", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=10.0, help="simulated DynamoDB latency")
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
        plot=not args.no_plot and "webhook" in only,
        only=only,
        patch=str(Path(args.patch).resolve()) if args.patch else None,
    )
    for needed in (BUILD / "SharedLayer" / "python", *(BUILD / f for f in FUNCTIONS), BENCH_PYTHON):
        if not needed.exists():
            print(
                f"missing {needed}: run `make bench` (it builds and installs what the bench needs)",
                file=sys.stderr,
            )
            return 2
    netguard.install()
    results = measure(options)
    checks = goals(results)
    results["goals"] = [
        {"name": g.name, "value": g.value, "limit": g.limit, "compare": g.compare, "passed": g.passed}
        for g in checks
    ]
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\n{table(results, checks)}\n\nresults: {path} ({results['meta']['duration_s']:.0f} s)")
    if options.plot and options.patch is None:
        # By file, in the bench venv (matplotlib lives there): the plot imports nothing of ours.
        plot = [str(BENCH_PYTHON), str(ROOT / "tools" / "bench" / "plot.py"), str(path), str(PLOT)]
        subprocess.run(plot, check=True)
    missed = [g.name for g in checks if not g.passed]
    if missed:
        print("\nMISSED goals:\n" + "\n".join(f"  - {name}" for name in missed), file=sys.stderr)
        return 1
    return 0
