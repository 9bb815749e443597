"""docs/callback-throughput.png from bench/results.json: the webhook's and the applier's wall time
against the size of a delivery.

    .venv-bench/bin/python tools/bench/plot.py bench/results.json docs/callback-throughput.png

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

    webhook, applier = results["webhook"], results["applier"]
    figure, axis = pyplot.subplots(figsize=(7.5, 4.5), dpi=110)
    hook = sorted((int(n), v["wall_s"]["median"]) for n, v in webhook["by_size"].items())
    axis.plot([n for n, _ in hook], [s for _, s in hook], "o-", label="webhook: keep it, answer (one write)")
    apply = sorted((int(n), v["median"]) for n, v in applier["by_size"].items())
    axis.plot(
        [n for n, _ in apply],
        [s for _, s in apply],
        "s-",
        label=f"applier: apply it ({applier['deployed_concurrency']} writers, 2 writes per event)",
    )
    for n, seconds in hook:
        statuses = webhook["by_size"][str(n)]["statuses"]
        if statuses != [200]:
            axis.annotate(
                f"answered {statuses}", xy=(n, seconds), xytext=(-60, 15), textcoords="offset points"
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("events in one callback delivery")
    axis.set_ylabel("handler wall time (s)")
    axis.set_title(f"One delivery, DynamoDB at {webhook['latency_ms']:g} ms per request (local, 2 cores)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    Path(image_path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(image_path)
    print(f"plot: {image_path}")


if __name__ == "__main__":
    main()
