"""The bench's goals (each a measured value against its limit) and the table `make bench` prints."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tools.bench import sender_coldstart, sender_pace

# Handler / its baseline, CPU time. The sender's goal is held by path (sender_coldstart).
COLD_START_LIMITS = {"webhook": 1.15}


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


def _coldstart(results: Mapping[str, Any]) -> list[Goal]:
    ratios = results["coldstart"]["ratios"]
    baselines = {"webhook": "boto3 + DynamoDB client"}
    return [
        Goal(
            f"cold start: {handler} / {baselines[handler]} baseline",
            ratios[handler]["ratio_cpu"],
            limit,
            "<=",
            "x",
        )
        for handler, limit in COLD_START_LIMITS.items()
    ]


def _webhook(results: Mapping[str, Any]) -> list[Goal]:
    hook = results["webhook"]
    sizes = sorted(int(n) for n in hook["by_size"])
    largest = sizes[-1]
    limit = hook["max_body_bytes"]

    def recorded(n: int) -> bool:
        """Kept whole (200) up to the storable size, its start kept (413) above: one write either way."""
        size = hook["by_size"][str(n)]
        expected = [200] if size["request_bytes"] <= limit else [413]
        return bool(size["statuses"] == expected and size["write_requests"] == 1)

    return [
        Goal(
            f"webhook: {largest:,}-event / 1-event delivery time",
            hook["ratio_largest_to_one"],
            1.5,
            "<=",
            "x",
        ),
        _yes(
            f"webhook: each delivery one write, whole to {limit / 1e6:g} MB (200), its start above (413)",
            all(recorded(n) for n in sizes),
        ),
    ]


def _applier(results: Mapping[str, Any]) -> list[Goal]:
    applier = results["applier"]
    states = applier.get("states") or {}
    return [
        Goal(
            "applier: write requests per new event",
            applier["headline"]["writes_per_new_event"],
            2.0,
            "<=",
            "",
        ),
        Goal(
            "applier: write requests per duplicate", applier["replay"]["writes_per_duplicate"], 1.0, "<=", ""
        ),
        _yes("applier: every batch applied, every event written once", not applier["wrong_replies"]),
        _yes(
            "applier: stored statuses match the events",
            states.get("checked", 0) > 0 and states.get("wrong", 1) == 0,
        ),
    ]


def _sender(results: Mapping[str, Any]) -> list[Goal]:
    send = results["sender"]
    return [
        _yes(
            "sender: Ocelot requests == ceil(N / chunk)",
            set(send["ocelot_requests"]) == {send["expected_ocelot_requests"]},
        ),
        _yes("sender: every request accepted, every message listed", send["replies_correct"]),
        Goal("sender: DynamoDB write requests per message", send["writes_per_message"], 0.1, "<=", ""),
    ]


def _size(results: Mapping[str, Any]) -> list[Goal]:
    measured = results["size"]
    return [
        Goal("layer unzipped", measured["layer_unzipped_mb"], 16.0, "<=", "MB"),
        _yes("layer bundles no boto3/botocore/s3transfer", not measured["runtime_packages_bundled"]),
    ]


def goals(results: Mapping[str, Any]) -> list[Goal]:
    sections = {
        "coldstart": _coldstart,
        "webhook": _webhook,
        "applier": _applier,
        "sender": _sender,
        "sender-cold": lambda results: [Goal(*g) for g in sender_coldstart.goals(results["sender-cold"])],
        "sender-pace": lambda results: [Goal(*g) for g in sender_pace.goals(results["sender-pace"])],
        "size": _size,
    }
    out = [goal for name, make in sections.items() if name in results for goal in make(results)]
    if "cost" in results:
        value = results["cost"]["per_million_one_event_per_callback"]
        out.append(Goal("cost per 1M messages (1 event per callback)", value, 10.0, "<=", "$"))
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "bool":
        return "yes" if value == 1.0 else "NO"
    formats = {"$": "${:.2f}", "x": "{:.2f}x", "us": "{:.1f} µs", "MB": "{:.1f} MB"}
    return formats.get(unit, "{:.4g}").format(value)


def _facts(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the table shows below the goals: the figures behind them."""
    info: list[tuple[str, str]] = []
    for handler, ratio in results.get("coldstart", {}).get("ratios", {}).items():
        cpu = " / ".join(
            f"{ratio[k]:.0f}" for k in ("import_cpu_ms", "import_and_objects_cpu_ms", "baseline_cpu_ms")
        )
        info.append(
            (
                f"cold start {handler} CPU: import / +objects / baseline (ms)",
                f"{cpu}  ({ratio['ratio_cpu']:.2f}x)",
            )
        )
    if "webhook" in results:
        by_size = results["webhook"]["by_size"]
        shown = ", ".join(
            f"{int(n):,}: {v['wall_s']['median'] * 1e3:.0f} ms {v['statuses']}" for n, v in by_size.items()
        )
        info.append(("webhook wall per delivery size (events: median, status)", shown))
    if "applier" in results:
        applier = results["applier"]
        shown = ", ".join(f"{int(n):,}: {v['median']:.2f} s" for n, v in applier["by_size"].items())
        info.append(("applier wall per delivery size (events)", shown))
        info.append(
            (
                "applier 500 events: sequential / concurrent (s, median)",
                f"{applier['sequential_s']['median']:.2f} / {applier['concurrent_s']['median']:.2f}"
                f"  ({applier['speedup']:.1f}x)",
            )
        )
    if "latency" in results:
        lat = results["latency"]
        info.append(
            (
                "webhook's 200 -> status visible, local stack: p50 / p90 / p99 (ms)",
                f"{lat['visible_ms_p50']:.0f} / {lat['visible_ms_p90']:.0f} / {lat['visible_ms_p99']:.0f}",
            )
        )
    if "sender" in results:
        send = results["sender"]
        info.append(
            (
                f"sender {send['messages']}: wall (s, median) / Ocelot requests",
                f"{send['wall_s']['median']:.2f} / {send['ocelot_requests']}",
            )
        )
    modules = {"sender-cold": sender_coldstart, "sender-pace": sender_pace}
    info += [row for name, module in modules.items() if name in results for row in module.info(results[name])]
    for name in ("webhook", "applier", "sender"):
        if name in results:
            peak = f"{results[name]['peak_rss_mb']:.0f} / {results[name]['tracemalloc_peak_mb']:.0f} MB"
            info.append((f"{name} peak: RSS (VmHWM) / tracemalloc", peak))
    if "size" in results:
        info.append(("layer zipped", f"{results['size']['layer_zipped_mb']:.1f} MB"))
    if "cost" in results:
        totals = {n: s["total"] for n, s in results["cost"]["scenarios"].items()}
        info.append(
            (
                "cost per 1M messages, by events per callback",
                ", ".join(f"{n}: ${t:.2f}" for n, t in totals.items()),
            )
        )
    return info


def table(results: Mapping[str, Any], checks: Sequence[Goal]) -> str:
    rows = [goal.row() for goal in checks]
    info = _facts(results)
    width = max(len(name) for name, *_ in [*rows, *info]) + 2
    lines = [f"{'metric':<{width}}{'measured':>14}  {'goal':>12}  status", "-" * (width + 38)]
    lines += [f"{n:<{width}}{v:>14}  {g:>12}  {s}" for n, v, g, s in rows]
    return "\n".join([*lines, "", *(f"{n:<{width}}{v}" for n, v in info)])
