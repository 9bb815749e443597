"""The tables of docs/performance.md from bench/results.json files (one or more runs).

PYTHONPATH=layers/shared .venv/bin/python -m tools.bench.markdown bench/results.json [more.json ...]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.bench.run import Goal, _fmt

COMPONENTS = (
    ("api_gateway", "API Gateway (HTTP API)"),
    ("lambda_requests", "Lambda requests"),
    ("lambda_compute", "Lambda compute (GB-s)"),
    ("dynamodb_writes", "DynamoDB writes (WRU)"),
    ("dynamodb_reads", "DynamoDB reads (RRU)"),
    ("logs", "CloudWatch Logs ingestion"),
    ("xray", "X-Ray traces"),
    ("sqs", "SQS"),
)


def goals_table(runs: Sequence[Mapping[str, Any]]) -> str:
    header = "| goal | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | limit |"
    lines = [header, "|---|" + "---|" * (len(runs) + 1)]
    for row, first in enumerate(runs[0]["goals"]):
        shown = _shown(first["name"], first["compare"])
        cells = []
        for run in runs:
            goal = run["goals"][row]
            value = _fmt(float(goal["value"]), shown)
            cells.append(value if goal["passed"] else f"**{value} missed**")
        limit = "yes" if shown == "bool" else f"{first['compare']} {_fmt(float(first['limit']), shown)}"
        lines.append(f"| {first['name']} | " + " | ".join(cells) + f" | {limit} |")
    return "\n".join(lines)


def _shown(name: str, compare: str) -> str:
    if compare == "==":
        return "bool"
    for marker, unit in (("cost", "$"), ("CPU per message", "us"), ("layer", "MB"), (" / ", "x")):
        if marker in name:
            return unit
    return ""


def details_table(runs: Sequence[Mapping[str, Any]]) -> str:
    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(run) for run in runs) + " |"

    def cold(run: Mapping[str, Any], key: str) -> Mapping[str, float]:
        return run["coldstart"]["ratios"][key]  # type: ignore[no-any-return]

    lines = [
        "| measurement | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |",
        "|---|" + "---|" * len(runs),
        row(
            "cold start CPU, webhook: import / + objects / baseline",
            lambda r: "{:.0f} / {:.0f} / {:.0f} ms".format(
                *(
                    cold(r, "webhook/as_built")[k]
                    for k in ("import_cpu_ms", "import_and_objects_cpu_ms", "baseline_cpu_ms")
                )
            ),
        ),
        row(
            "cold start CPU, sender: import / + objects / baseline",
            lambda r: "{:.0f} / {:.0f} / {:.0f} ms".format(
                *(
                    cold(r, "sender/as_built")[k]
                    for k in ("import_cpu_ms", "import_and_objects_cpu_ms", "baseline_cpu_ms")
                )
            ),
        ),
        row(
            "cold start wall-time ratio, webhook / sender",
            lambda r: (
                f"{cold(r, 'webhook/as_built')['ratio_wall']:.2f}x / "
                f"{cold(r, 'sender/as_built')['ratio_wall']:.2f}x"
            ),
        ),
        row(
            "cold start CPU ratio with precompiled .pyc (proposal P), webhook / sender",
            lambda r: (
                f"{cold(r, 'webhook/precompiled')['ratio_cpu']:.2f}x / "
                f"{cold(r, 'sender/precompiled')['ratio_cpu']:.2f}x"
            ),
        ),
        row(
            "webhook 500 events: sequential / concurrent (median of 3)",
            lambda r: (
                f"{r['webhook']['sequential_s']['median']:.2f} s / "
                f"{r['webhook']['concurrent_s']['median']:.2f} s"
            ),
        ),
        row(
            "webhook 500 events: requests (put, update, get)",
            lambda r: "{PutItem} / {UpdateItem} / {GetItem}".format(
                **{"GetItem": 0, "UpdateItem": 0, **r["webhook"]["headline"]["requests"]}
            ),
        ),
        row("webhook CPU per event (this machine)", lambda r: f"{r['webhook']['cpu_per_event_ms']:.2f} ms"),
        row(
            "webhook speedup modelled in Lambda at 256 / 1024 MB",
            lambda r: "{:.1f}x / {:.1f}x".format(
                r["webhook"]["speedup_modeled_in_lambda_by_memory_mb"]["256"],
                r["webhook"]["speedup_modeled_in_lambda_by_memory_mb"]["1024"],
            ),
        ),
        row(
            "sender 10,000 messages: wall (median of 3), requests by operation",
            lambda r: (
                f"{r['sender']['wall_s']['median']:.1f} s, "
                + ", ".join(f"{k} {v}" for k, v in r["sender"]["requests_by_operation"].items())
            ),
        ),
        row("sender write units per message", lambda r: f"{r['sender']['write_units_per_message']:.2f}"),
        row(
            "peak RSS / tracemalloc: webhook, sender",
            lambda r: (
                f"{r['webhook']['peak_rss_mb']:.0f} / {r['webhook']['tracemalloc_peak_mb']:.0f} MB, "
                f"{r['sender']['peak_rss_mb']:.0f} / {r['sender']['tracemalloc_peak_mb']:.0f} MB"
            ),
        ),
        row(
            "layer zipped; with proposal P unzipped / zipped",
            lambda r: (
                f"{r['size']['layer_zipped_mb']:.1f} MB; {r['size']['layer_precompiled_unzipped_mb']:.1f} / "
                f"{r['size']['layer_precompiled_zipped_mb']:.1f} MB"
            ),
        ),
        row(
            "run time, load average at start",
            lambda r: f"{r['meta']['duration_s']:.0f} s, {r['meta']['load_average_at_start'][0]:.1f}",
        ),
    ]
    return "\n".join(lines)


def cost_table(run: Mapping[str, Any]) -> str:
    scenarios = run["cost"]["scenarios"]
    sizes = list(scenarios)
    lines = [
        "| per 1,000,000 messages | "
        + " | ".join(f"webhook, N = {n}" for n in sizes)
        + " | sender (10,000 per request) |",
        "|---|" + "---|" * (len(sizes) + 1),
    ]
    for key, label in COMPONENTS:
        values = [scenarios[n]["webhook"][key] for n in sizes] + [scenarios[sizes[0]]["sender"][key]]
        lines.append(f"| {label} | " + " | ".join(f"${v:.2f}" for v in values) + " |")
    totals = [sum(scenarios[n]["webhook"].values()) for n in sizes] + [
        sum(scenarios[sizes[0]]["sender"].values())
    ]
    lines.append("| **subtotal** | " + " | ".join(f"**${v:.2f}**" for v in totals) + " |")
    lines.append(
        "| **total with the sender** | "
        + " | ".join(f"**${scenarios[n]['total']:.2f}**" for n in sizes)
        + " | |"
    )
    return "\n".join(lines)


def memory_table(run: Mapping[str, Any]) -> str:
    cost = run["cost"]
    lines = []
    for n in cost["webhook_by_memory"]["256"]:
        cells = " | ".join(
            f"{cost['webhook_duration_s_by_memory'][n][mb]:.2f} s, ${cost['webhook_by_memory'][mb][n]:.2f}"
            for mb in cost["webhook_by_memory"]
        )
        lines.append(f"| N = {n}: duration, webhook cost per 1M messages | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    paths = argv or sys.argv[1:]
    runs = [json.loads(Path(path).read_text()) for path in paths]
    print(
        goals_table(runs),
        "",
        details_table(runs),
        "",
        cost_table(runs[-1]),
        "",
        memory_table(runs[-1]),
        sep="\n",
    )


__all__ = ["Goal", "main"]

if __name__ == "__main__":
    main()
