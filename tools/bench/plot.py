"""docs/webhook-throughput.png from bench/results.json: webhook wall time against the callback's size.

    .venv-bench/bin/python tools/bench/plot.py bench/results.json docs/webhook-throughput.png

matplotlib lives in the bench venv only (tools/bench/requirements.txt), hence the import by name.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    results_path, image_path = (argv or sys.argv[1:3])[:2]
    results = json.loads(Path(results_path).read_text())
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")

    curve = results["webhook"]["curve"]
    latency = results["webhook"]["latency_ms"]
    figure, axis = pyplot.subplots(figsize=(7.5, 4.5), dpi=110)
    for mode, label, style in (
        ("sequential", "sequential (WEBHOOK_WRITE_CONCURRENCY=1)", "o--"),
        (
            "concurrent",
            f"concurrent (as deployed: {results['webhook']['deployed_concurrency']} writers)",
            "s-",
        ),
    ):
        points = sorted((int(size), values[mode]) for size, values in curve.items())
        axis.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    sizes = sorted(int(size) for size in curve)
    top = curve[str(sizes[-1])]
    axis.annotate(
        f"{top['sequential'] / top['concurrent']:.1f}x faster",
        xy=(sizes[-1], top["concurrent"]),
        xytext=(-90, 30),
        textcoords="offset points",
        arrowprops={"arrowstyle": "->"},
    )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("events in one callback delivery")
    axis.set_ylabel("handler wall time (s)")
    axis.set_title(f"Webhook: one delivery, DynamoDB at {latency:g} ms per request (local, 2 cores)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    Path(image_path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(image_path)
    print(f"plot: {image_path}")


if __name__ == "__main__":
    main()
