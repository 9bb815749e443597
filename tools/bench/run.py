"""`make bench`: measure, compare with baselines taken in the same run, write bench/results.json,
print the table, draw docs/webhook-throughput.png; exit 1 when a goal is missed (each one named).

Ratios only, never absolute times, are held against goals: this machine is noisy and has 2 cores.
Every server it starts listens on 127.0.0.1 and is stopped on the way out, error or not.
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
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench import coldstart, cost, size
from tools.bench.common import (
    BENCH_PYTHON,
    BUILD,
    DEFAULT_SENDER,
    IDEMPOTENCY_TABLE,
    MESSAGES_TABLE,
    OCELOT_CREDENTIALS,
    OCELOT_SECRET,
    PLOT,
    RESULTS,
    ROOT,
    WEBHOOK_CREDENTIALS,
    WEBHOOK_SECRET,
    function_config,
    lambda_environment,
    median,
    spread,
)
from tools.bench.localhttp import HOST, loopback_only
from tools.bench.ocelot import OcelotServer

FUNCTIONS = ("WebhookFunction", "SenderFunction")
CURVE_SIZES = (1, 10, 50, 100, 250)
HEADLINE_SIZE = 500
COST_ARRAY_SIZES = (1, 10, 100, 500)
ASSUMED_EVENTS_PER_CALLBACK = 10
MEMORY_SIZES = (128, 256, 512, 1024, 1769)


SECTIONS = ("size", "coldstart", "webhook", "sender")


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


# ---- processes and servers ------------------------------------------------------------------


class DdbServer:
    """tools.bench.ddb_server in its own process (its own GIL), on a free 127.0.0.1 port."""

    def __init__(self, latency_ms: float) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'shared'}"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.ddb_server", "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            cwd=ROOT,
        )
        port: list[int] = []
        reader = threading.Thread(target=lambda: port.append(self._read_port()), daemon=True)
        reader.start()
        reader.join(60)
        if not port:
            self.stop()
            raise RuntimeError("the DynamoDB stand-in did not start within 60 s")
        self.url = f"http://{HOST}:{port[0]}"

    def _read_port(self) -> int:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        return int(line.split()[1])

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)


def setup_aws(endpoint: str) -> None:
    """The template's tables and the two secrets, in the stand-in."""
    import boto3

    from tools.template_resources import create_table

    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
    }
    dynamodb = boto3.client("dynamodb", **options)
    create_table(dynamodb, "MessagesTable", MESSAGES_TABLE)
    create_table(dynamodb, "IdempotencyTable", IDEMPOTENCY_TABLE)
    secrets = boto3.client("secretsmanager", **options)
    secrets.create_secret(Name=OCELOT_SECRET, SecretString=json.dumps(OCELOT_CREDENTIALS))
    secrets.create_secret(Name=WEBHOOK_SECRET, SecretString=json.dumps(WEBHOOK_CREDENTIALS))


def run_workload(
    name: str, function: str, spec: dict[str, Any], tree: Path, env: Mapping[str, str], work: Path
) -> dict[str, Any]:
    spec_path, out_path = work / f"{name}.spec.json", work / f"{name}.out.json"
    spec_path.write_text(json.dumps({**spec, "tag": name}))
    process_env = dict(env)
    process_env["PYTHONPATH"] = f"{tree / function}:{tree / 'opt' / 'python'}:{ROOT}"
    done = subprocess.run(
        [str(BENCH_PYTHON), "-P", "-m", "tools.bench.workload", str(spec_path), str(out_path)],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=work,
    )
    if done.returncode != 0:
        raise RuntimeError(f"workload {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


def _spec(function: str, control: str, plan: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    config = function_config(function)
    return {
        "function": "webhook" if function == "WebhookFunction" else "sender",
        "handler_module": str(config["Handler"]).rsplit(".", 1)[0],
        "timeout_s": config["Timeout"],
        "control_url": control,
        "credentials": WEBHOOK_CREDENTIALS,
        "plan": plan,
        **extra,
    }


# ---- the measurements ---------------------------------------------------------------------


def measure_webhook(
    options: Options, tree: Path, env: Mapping[str, str], control: str, work: Path
) -> dict[str, Any]:
    from ocelot_sms.settings import Settings

    deployed = Settings(table_name="-").webhook_write_concurrency
    modes = {"sequential": 1, "concurrent": None}  # None: the variable unset, as deployed
    plan: list[dict[str, Any]] = []
    for rep in range(options.reps):
        for mode, concurrency in modes.items():
            plan.append(
                {
                    "label": f"{mode}-{HEADLINE_SIZE}-{rep}",
                    "mode": mode,
                    "concurrency": concurrency,
                    "size": HEADLINE_SIZE,
                    "warmup": True,
                    "verify": mode == "concurrent" and rep == 0,
                }
            )
    plan.append(
        {
            "label": "replay",
            "mode": "concurrent",
            "concurrency": None,
            "size": HEADLINE_SIZE,
            "replay_of": f"concurrent-{HEADLINE_SIZE}-0",
        }
    )
    for rep in range(options.reps):
        for size_ in CURVE_SIZES:
            for mode, concurrency in modes.items():
                plan.append(
                    {
                        "label": f"{mode}-{size_}-{rep}",
                        "mode": mode,
                        "concurrency": concurrency,
                        "size": size_,
                        "warmup": True,
                    }
                )
    timing = run_workload(
        "webhook", "WebhookFunction", _spec("WebhookFunction", control, plan), tree, env, work
    )
    memory_plan = [dict(plan[1], verify=False)]
    traced = run_workload(
        "webhook-memory",
        "WebhookFunction",
        _spec("WebhookFunction", control, memory_plan, tracemalloc=True),
        tree,
        env,
        work,
    )
    steps: list[dict[str, Any]] = timing["steps"]

    def walls(prefix: str) -> list[float]:
        return [s["wall_s"] for s in steps if s["label"].startswith(prefix)]

    sequential, concurrent = walls(f"sequential-{HEADLINE_SIZE}-"), walls(f"concurrent-{HEADLINE_SIZE}-")
    curve: dict[str, dict[str, float]] = {
        str(HEADLINE_SIZE): {"sequential": median(sequential), "concurrent": median(concurrent)}
    }
    for size_ in CURVE_SIZES:
        curve[str(size_)] = {mode: median(walls(f"{mode}-{size_}-")) for mode in modes}
    headline = next(s for s in steps if s["label"] == f"concurrent-{HEADLINE_SIZE}-0")
    # The same two runs as Lambda would time them at each memory size (its CPU share scales with it).
    runs = {mode: [s for s in steps if s["label"].startswith(f"{mode}-{HEADLINE_SIZE}-")] for mode in modes}

    def in_lambda(mode: str, mb: int) -> float:
        overlapped = mode == "concurrent"
        return median([cost.lambda_duration_s(s["wall_s"], s["cpu_s"], mb, overlapped) for s in runs[mode]])

    modeled = {str(mb): in_lambda("sequential", mb) / in_lambda("concurrent", mb) for mb in MEMORY_SIZES}
    replay = next(s for s in steps if s["label"] == "replay")
    return {
        "latency_ms": options.latency_ms,
        "deployed_concurrency": deployed,
        "sequential_s": spread(sequential),
        "concurrent_s": spread(concurrent),
        "speedup": median(sequential) / median(concurrent),
        "speedup_paired": [s / c for s, c in zip(sequential, concurrent, strict=True)],
        "speedup_modeled_in_lambda_by_memory_mb": modeled,
        "curve": curve,
        "headline": _webhook_counts(headline),
        "replay": _webhook_counts(replay),
        "states": headline.get("states"),
        "replies_correct": all(_reply_correct(s) for s in steps),
        "wrong_replies": [s["label"] for s in steps if not _reply_correct(s)],
        "cpu_per_event_ms": headline["cpu_s"] / headline["events"] * 1e3,
        "log_bytes_per_invocation": {
            str(s["events"]): s["log_bytes"] for s in steps if s["mode"] == "concurrent"
        },
        "steps": [_without_noise(s) for s in steps],
        "peak_rss_mb": timing["peak_rss_kb"] / 1024,
        "ru_maxrss_mb": timing["ru_maxrss_kb"] / 1024,
        "tracemalloc_peak_mb": (traced["tracemalloc_peak_bytes"] or 0) / 2**20,
        "log_sample": timing["log_sample"][:3000],
        "paths": timing["paths"],
    }


def _reply_correct(step: Mapping[str, Any]) -> bool:
    reply = step["reply"] if isinstance(step["reply"], dict) else {}
    return bool(
        step["status"] == 200
        and reply.get("received") == step["events"]
        and reply.get("new") == step["expected_new"]
        and reply.get("duplicates") == step["expected_duplicates"]
    )


def _items(step: Mapping[str, Any], operation: str, kind_suffix: str, outcome: str | None = None) -> int:
    total = 0
    for key, outcomes in step["ddb"]["items"].items():
        if key.startswith(f"{operation} ") and key.endswith(kind_suffix):
            total += sum(v for k, v in outcomes.items() if outcome is None or k == outcome)
    return total


WRITE_REQUESTS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


def _webhook_counts(step: Mapping[str, Any]) -> dict[str, Any]:
    reply = step["reply"]
    new, duplicates = int(reply.get("new", 0)), int(reply.get("duplicates", 0))
    requests = step["ddb"]["requests"]
    writes = sum(requests.get(op, 0) for op in WRITE_REQUESTS)
    raw = _items(step, "PutItem", "RAW/*")
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
        "raw_puts": raw,
        "event_puts_ok": event_ok,
        "event_puts_refused": event_refused,
        "state_updates": state,
        "writes_per_new_event": (event_ok + state) / new if new else 0.0,
        "writes_per_duplicate": event_refused / duplicates if duplicates else 0.0,
        "write_requests_per_event_all_in": writes / step["events"],
        "requests": requests,
        "write_units": step["ddb"]["write_units"],
        "read_units": step["ddb"]["read_units"],
        "wall_s": step["wall_s"],
        "cpu_s": step["cpu_s"],
    }


def _without_noise(step: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k not in ("ddb",)} | {
        "ddb_requests": step["ddb"]["requests"],
        "ddb_write_units": step["ddb"]["write_units"],
        "ddb_gsi_write_units": step["ddb"]["gsi_write_units"],
        "ddb_read_units": step["ddb"]["read_units"],
        "ddb_item_sizes": step["ddb"]["item_sizes"],
    }


def measure_sender(
    options: Options, tree: Path, env: Mapping[str, str], control: str, ocelot: str, work: Path
) -> dict[str, Any]:
    n = options.sender_messages
    chunk = int(env["OCELOT_MAX_MESSAGES"])
    plan = [
        {"label": f"sender-{n}-{rep}", "size": n, "max_messages": n, "warmup": rep == 0}
        for rep in range(options.sender_reps)
    ]
    spec = _spec("SenderFunction", control, plan, ocelot_control=ocelot)
    timing = run_workload("sender", "SenderFunction", spec, tree, env, work)
    traced = run_workload(
        "sender-memory",
        "SenderFunction",
        _spec("SenderFunction", control, plan[:1], ocelot_control=ocelot, tracemalloc=True),
        tree,
        env,
        work,
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
        "statuses": [s["status"] for s in steps],
        "replies": [s["reply"] for s in steps],
        "replies_correct": all(
            s["status"] == 201 and s["reply"].get("status") == "accepted" and s["reply"].get("results") == n
            for s in steps
        ),
        "log_bytes_per_invocation": middle["log_bytes"],
        "request_bytes": middle["request_bytes"],
        "reply_bytes": middle["reply_bytes"],
        "median_step": _without_noise(middle),
        "peak_rss_mb": timing["peak_rss_kb"] / 1024,
        "ru_maxrss_mb": timing["ru_maxrss_kb"] / 1024,
        "tracemalloc_peak_mb": (traced["tracemalloc_peak_bytes"] or 0) / 2**20,
        "log_sample": timing["log_sample"][:2000],
        "middle": middle,
    }


def bare_rss_mb(env: Mapping[str, str]) -> float:
    """Peak RSS of an interpreter that only made a DynamoDB client: the floor of any function."""
    code = (
        "import boto3\nboto3.client('dynamodb')\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    )
    done = subprocess.run(
        [str(BENCH_PYTHON), "-P", "-c", code], env=dict(env), capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip()) / 1024


def access_log_bytes() -> int:
    """One API Gateway access log line in the template's format, with typical values."""
    from tools.template_resources import resource

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


def costs(webhook: Mapping[str, Any], sender: Mapping[str, Any]) -> dict[str, Any]:
    memory = {fn: int(function_config(fn)["MemorySize"]) for fn in FUNCTIONS}
    access = access_log_bytes()
    # Per size, the concurrent (as deployed) run with the median wall time.
    by_size: dict[int, list[dict[str, Any]]] = {}
    for step in webhook["steps"]:
        if step["mode"] == "concurrent" and not step.get("replay_of"):
            by_size.setdefault(int(step["events"]), []).append(step)
    steps = {
        size_: sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2] for size_, runs in by_size.items()
    }

    def webhook_step(size_: int) -> dict[str, Any]:
        step = dict(steps[size_])
        step["ddb"] = {
            "write_units": step["ddb_write_units"],
            "gsi_write_units": step["ddb_gsi_write_units"],
            "read_units": step["ddb_read_units"],
        }
        return step

    sender_step = sender["middle"]
    sender_api = cost.sender_per_million(
        sender_step, memory["SenderFunction"], sender["chunk_size"], access, False
    )
    sender_queue = cost.sender_per_million(
        sender_step, memory["SenderFunction"], sender["chunk_size"], access, True
    )
    scenarios = {}
    for size_ in COST_ARRAY_SIZES:
        hook = cost.webhook_per_million(webhook_step(size_), memory["WebhookFunction"], access)
        scenarios[str(size_)] = {
            "webhook": hook,
            "sender": sender_api,
            "total": sum(hook.values()) + sum(sender_api.values()),
        }
    by_memory = {
        str(mb): {
            str(size_): sum(cost.webhook_per_million(webhook_step(size_), mb, access).values())
            for size_ in COST_ARRAY_SIZES
        }
        for mb in MEMORY_SIZES
    }
    durations = {
        str(size_): {
            str(mb): cost.lambda_duration_s(
                steps[size_]["wall_s"], steps[size_]["cpu_s"], mb, overlapped=True
            )
            for mb in MEMORY_SIZES
        }
        for size_ in COST_ARRAY_SIZES
    }
    sender_duration = (
        cost.lambda_duration_s(
            sender_step["wall_s"], sender_step["cpu_s"], memory["SenderFunction"], overlapped=False
        )
        + math.ceil(sender["messages"] / sender["chunk_size"]) * cost.OCELOT_LATENCY_S
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
        "sender_via_queue": sender_queue,
        "webhook_by_memory": by_memory,
        "webhook_duration_s_by_memory": durations,
        "sender_duration_s": sender_duration,
        "storage": cost.storage_per_million(storage_sizes, ASSUMED_EVENTS_PER_CALLBACK),
        "prices": cost.prices_table(),
        "assumptions": {
            "platform_log_bytes": cost.PLATFORM_LOG_BYTES,
            "xray_sampled": cost.XRAY_SAMPLED,
            "ocelot_latency_s": cost.OCELOT_LATENCY_S,
            "lambda_mb_per_vcpu": cost.LAMBDA_MB_PER_VCPU,
        },
    }


# ---- goals and the table ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    value: float
    limit: float
    compare: str  # "<=", ">=", "=="
    shown: str

    @property
    def passed(self) -> bool:
        checks: dict[str, Callable[[float, float], bool]] = {
            "<=": lambda value, limit: value <= limit,
            ">=": lambda value, limit: value >= limit,
            "==": lambda value, limit: value == limit,
        }
        return not math.isnan(self.value) and checks[self.compare](self.value, self.limit)


def goals(results: Mapping[str, Any]) -> list[Goal]:
    out: list[Goal] = []
    if "coldstart" in results:
        cold = results["coldstart"]["ratios"]
        out += [
            Goal(
                "cold start: webhook / boto3 baseline",
                cold["webhook/as_built"]["ratio_cpu"],
                1.3,
                "<=",
                "x",
            ),
            Goal(
                "cold start: sender / boto3+requests baseline",
                cold["sender/as_built"]["ratio_cpu"],
                1.4,
                "<=",
                "x",
            ),
        ]
    if "webhook" in results:
        out += _webhook_goals(results["webhook"])
    if "sender" in results:
        out += _sender_goals(results["sender"])
    if "size" in results:
        layer = results["size"]
        out += [
            Goal("layer unzipped", layer["layer_unzipped_mb"], 16.0, "<=", "MB"),
            Goal(
                "layer bundles no boto3/botocore/s3transfer",
                float(not layer["runtime_packages_bundled"]),
                1.0,
                "==",
                "bool",
            ),
        ]
    if "cost" in results:
        money = results["cost"]
        out.append(
            Goal(
                f"cost per 1M messages ({money['assumed_events_per_callback']} events per callback)",
                money["per_million"],
                10.0,
                "<=",
                "$",
            )
        )
    return out


def _webhook_goals(hook: Mapping[str, Any]) -> list[Goal]:
    states = hook.get("states") or {}
    return [
        Goal("webhook 500 events: sequential / concurrent", hook["speedup"], 8.0, ">=", "x"),
        Goal(
            "webhook: write requests per new event", hook["headline"]["writes_per_new_event"], 2.0, "<=", ""
        ),
        Goal(
            "webhook: write requests per duplicate (replay)",
            hook["replay"]["writes_per_duplicate"],
            1.0,
            "<=",
            "",
        ),
        Goal(
            "webhook: every reply counts new/duplicates right",
            float(hook["replies_correct"]),
            1.0,
            "==",
            "bool",
        ),
        Goal(
            "webhook: stored statuses match the events",
            float(states.get("checked", 0) > 0 and states.get("wrong", 1) == 0),
            1.0,
            "==",
            "bool",
        ),
    ]


def _sender_goals(send: Mapping[str, Any]) -> list[Goal]:
    return [
        Goal(
            "sender: Ocelot requests == ceil(N / chunk)",
            float(all(r == send["expected_ocelot_requests"] for r in send["ocelot_requests"])),
            1.0,
            "==",
            "bool",
        ),
        Goal(
            "sender: every request accepted, every message listed",
            float(send["replies_correct"]),
            1.0,
            "==",
            "bool",
        ),
        Goal("sender: DynamoDB write requests per message", send["writes_per_message"], 0.1, "<=", ""),
        Goal("sender: handler CPU per message", send["cpu_per_message_us"]["median"], 50.0, "<=", "us"),
    ]


def _fmt(value: float, unit: str) -> str:
    if unit == "bool":
        return "yes" if value == 1.0 else "NO"
    if unit == "$":
        return f"${value:.2f}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "us":
        return f"{value:.1f} µs"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.4g}"


def table(results: Mapping[str, Any], checks: Sequence[Goal]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    for goal in checks:
        limit = "yes" if goal.shown == "bool" else f"{goal.compare} {_fmt(goal.limit, goal.shown)}"
        rows.append((goal.name, _fmt(goal.value, goal.shown), limit, "ok" if goal.passed else "MISSED"))
    info: list[tuple[str, str]] = []
    if "coldstart" in results:
        cold = results["coldstart"]["ratios"]
        info += [
            ("cold start webhook CPU: import / +objects / baseline (ms)", _ms(cold["webhook/as_built"])),
            ("cold start sender CPU: import / +objects / baseline (ms)", _ms(cold["sender/as_built"])),
            (
                "  with precompiled .pyc: webhook / sender CPU ratio",
                f"{cold['webhook/precompiled']['ratio_cpu']:.2f}x / "
                f"{cold['sender/precompiled']['ratio_cpu']:.2f}x",
            ),
        ]
    if "webhook" in results:
        hook = results["webhook"]
        info += [
            (
                "webhook 500: sequential / concurrent (s, median)",
                f"{hook['sequential_s']['median']:.2f} / {hook['concurrent_s']['median']:.2f}",
            ),
            ("webhook CPU per event (this machine)", f"{hook['cpu_per_event_ms']:.2f} ms"),
            (
                "webhook peak: RSS (VmHWM) / tracemalloc",
                f"{hook['peak_rss_mb']:.0f} / {hook['tracemalloc_peak_mb']:.0f} MB",
            ),
        ]
    if "sender" in results:
        send = results["sender"]
        info += [
            (
                f"sender {send['messages']}: wall (s, median) / Ocelot requests",
                f"{send['wall_s']['median']:.2f} / {send['ocelot_requests']}",
            ),
            (
                "sender peak: RSS (VmHWM) / tracemalloc",
                f"{send['peak_rss_mb']:.0f} / {send['tracemalloc_peak_mb']:.0f} MB",
            ),
        ]
    if "size" in results:
        layer = results["size"]
        info.append(
            (
                "layer zipped / precompiled unzipped",
                f"{layer['layer_zipped_mb']:.1f} / {layer['layer_precompiled_unzipped_mb']:.1f} MB",
            )
        )
    if "cost" in results:
        info.append(
            (
                "cost per 1M messages, 1 event per callback",
                f"${results['cost']['per_million_one_event_per_callback']:.2f}",
            )
        )
    width = max(len(r[0]) for r in rows + [(i[0], "", "", "") for i in info]) + 2
    lines = [f"{'metric':<{width}}{'measured':>14}  {'goal':>12}  status", "-" * (width + 38)]
    lines += [f"{n:<{width}}{v:>14}  {g:>12}  {s}" for n, v, g, s in rows]
    lines += ["", *(f"{n:<{width}}{v}" for n, v in info)]
    return "\n".join(lines)


def _ms(ratio: Mapping[str, float]) -> str:
    return (
        f"{ratio['import_cpu_ms']:.0f} / {ratio['import_and_objects_cpu_ms']:.0f}"
        f" / {ratio['baseline_cpu_ms']:.0f}"
        f"  (wall ratio {ratio['ratio_wall']:.2f}x)"
    )


# ---- main -----------------------------------------------------------------------------------


def _meta(options: Options) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(git("status", "--porcelain").splitlines()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "options": {name: getattr(options, name) for name in Options.__slots__},
    }


@contextlib.contextmanager
def _section(title: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"== {title} ...", flush=True)
    yield
    print(f"   {title}: {time.perf_counter() - started:.0f} s", flush=True)


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
    for needed in (BUILD / "SharedLayer" / "python", *(BUILD / f for f in FUNCTIONS)):
        if not needed.is_dir():
            print(f"missing {needed}: run `make build` first", file=sys.stderr)
            return 2
    if not BENCH_PYTHON.exists():
        print(
            f"missing {BENCH_PYTHON}: run `make bench` (it installs tools/bench/requirements.txt)",
            file=sys.stderr,
        )
        return 2
    loopback_only()
    results = measure(options)
    checks = goals(results)
    results["goals"] = [
        {"name": g.name, "value": g.value, "limit": g.limit, "compare": g.compare, "passed": g.passed}
        for g in checks
    ]
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(table(results, checks))
    print(f"\nresults: {path} ({results['meta']['duration_s']:.0f} s)")
    if options.plot and options.patch is None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [str(BENCH_PYTHON), "-P", "-m", "tools.bench.plot", str(path), str(PLOT)], env=env, check=True
        )
    missed = [g.name for g in checks if not g.passed]
    if missed:
        print("\nMISSED goals:\n" + "\n".join(f"  - {name}" for name in missed), file=sys.stderr)
        return 1
    return 0


def measure(options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(options)}
    with tempfile.TemporaryDirectory(prefix="ocelot-bench-") as work_dir, contextlib.ExitStack() as stack:
        work = Path(work_dir)
        with _section("copying the built layer and functions" + (" (patched)" if options.patch else "")):
            trees = coldstart.prepare(work / "trees", Path(options.patch) if options.patch else None)
        if "size" in options.only:
            with _section("size"):
                results["size"] = size.measure(
                    BUILD / "SharedLayer",
                    {f: BUILD / f for f in FUNCTIONS},
                    work,
                    trees["precompiled"] / "opt",
                )
        ddb = DdbServer(options.latency_ms)
        stack.callback(ddb.stop)
        ocelot = OcelotServer(OCELOT_CREDENTIALS["chatbotId"], OCELOT_CREDENTIALS["apiKey"])
        stack.callback(ocelot.stop)
        setup_aws(ddb.url)
        envs = {
            f: lambda_environment(
                f, ddb.url, {"OCELOT_BASE_URL": ocelot.url, "DEFAULT_SENDER": DEFAULT_SENDER}
            )
            for f in FUNCTIONS
        }
        results["meta"]["ocelot"] = ocelot.kind
        if "coldstart" in options.only:
            with _section(f"cold start ({options.rounds} interleaved rounds)"):
                summary = coldstart.measure(trees, envs, options.rounds)
                results["coldstart"] = {
                    "rounds": options.rounds,
                    "ratios": coldstart.ratios(summary),
                    "summary": summary,
                    "offenders": coldstart.offenders(trees, envs, "as_built"),
                    "offenders_precompiled": coldstart.offenders(trees, envs, "precompiled"),
                }
        if "webhook" in options.only:
            with _section(f"webhook ({options.latency_ms:g} ms per DynamoDB request)"):
                results["webhook"] = measure_webhook(
                    options, trees["as_built"], envs["WebhookFunction"], ddb.url, work
                )
        if "sender" in options.only:
            with _section(f"sender ({options.sender_messages} messages)"):
                results["sender"] = measure_sender(
                    options, trees["as_built"], envs["SenderFunction"], ddb.url, ocelot.url, work
                )
        results["memory"] = {
            "bare_boto3_rss_mb": bare_rss_mb(envs["WebhookFunction"]),
            "memory_size_mb": {f: function_config(f)["MemorySize"] for f in FUNCTIONS},
        }
    if "webhook" in results and "sender" in results:
        results["cost"] = costs(results["webhook"], results["sender"])
    if "sender" in results:
        results["sender"].pop("middle", None)
    results["meta"]["duration_s"] = time.perf_counter() - started
    return results
