"""Where a handler's CPU goes: one warm invocation under cProfile, against the same local stand-ins.

    PYTHONPATH=layers/shared .venv/bin/python -m tools.bench.profile webhook|sender [--size N] [--top 40]

Not part of `make bench`. cProfile sees the handler's thread only: the webhook's event writers run
in a thread pool, so profile it with --sequential to see their work too.
"""

from __future__ import annotations

import argparse
import contextlib
import pstats
import tempfile
from pathlib import Path
from typing import Any

from tools.bench import coldstart
from tools.bench.common import DEFAULT_SENDER, OCELOT_CREDENTIALS, lambda_environment
from tools.bench.localhttp import loopback_only
from tools.bench.ocelot import OcelotServer
from tools.bench.run import DdbServer, _spec, run_workload, setup_aws


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("function", choices=("webhook", "sender"))
    parser.add_argument(
        "--size", type=int, default=0, help="events (webhook, 500) or messages (sender, 10000)"
    )
    parser.add_argument("--sequential", action="store_true", help="webhook: WEBHOOK_WRITE_CONCURRENCY=1")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args(argv)
    loopback_only()
    logical = "WebhookFunction" if args.function == "webhook" else "SenderFunction"
    with tempfile.TemporaryDirectory(prefix="ocelot-profile-") as work_dir, contextlib.ExitStack() as stack:
        work = Path(work_dir)
        trees = coldstart.prepare(work / "trees")
        ddb = DdbServer(args.latency_ms)
        stack.callback(ddb.stop)
        ocelot = OcelotServer(OCELOT_CREDENTIALS["chatbotId"], OCELOT_CREDENTIALS["apiKey"])
        stack.callback(ocelot.stop)
        setup_aws(ddb.url)
        env = lambda_environment(
            logical, ddb.url, {"OCELOT_BASE_URL": ocelot.url, "DEFAULT_SENDER": DEFAULT_SENDER}
        )
        if args.function == "webhook":
            step = {"label": "profile", "mode": "profile", "size": args.size or 500, "warmup": True}
            step["concurrency"] = 1 if args.sequential else None
            spec = _spec(logical, ddb.url, [step], profile=str(work / "profile.out"))
        else:
            size = args.size or 10_000
            step = {"label": "profile", "size": size, "max_messages": size, "warmup": True}
            spec = _spec(
                logical, ddb.url, [step], profile=str(work / "profile.out"), ocelot_control=ocelot.url
            )
        result = run_workload("profile", logical, spec, trees["as_built"], env, work)
        done = result["steps"][0]
        print(f"wall {done['wall_s']:.3f} s (profiled), cpu {done['cpu_s']:.3f} s, status {done['status']}")
        stats = pstats.Stats(str(work / "profile.out"))
        print("self time by package:")
        for package, seconds in by_package(stats)[:15]:
            print(f"  {package:<28}{seconds:8.3f} s")
        stats.sort_stats(args.sort).print_stats(args.top)


def by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Self time per top-level package (the directory after site-packages, opt/python or the stdlib)."""
    totals: dict[str, float] = {}
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, self_time, _, _) in table.items():
        parts = Path(filename).parts
        package = "(builtin)" if filename == "~" else "(stdlib)"
        for marker in ("site-packages", "python", "SenderFunction", "WebhookFunction"):
            if marker in parts and parts.index(marker) + 1 < len(parts):
                package = parts[parts.index(marker) + 1].removesuffix(".py")
        totals[package] = totals.get(package, 0.0) + self_time
    return sorted(totals.items(), key=lambda kv: -kv[1])


if __name__ == "__main__":
    main()
