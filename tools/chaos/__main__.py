"""`make chaos [N=20000]`: python -m tools.chaos --messages N [--seed S] [--out bench/chaos-last.json]."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.chaos.run import CI_MESSAGES, DEFAULT_OUT, run_chaos
from tools.local import netguard
from tools.local.stack import interrupt_on_signals
from tools.template_resources import ROOT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    parser.add_argument("--messages", "-n", type=int, default=CI_MESSAGES)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".local" / "chaos")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report ('-': none)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument(
        "--storage-scope",
        choices=("callbacks", "all"),
        default="callbacks",
        help="DynamoDB writes that fail: the callbacks' (webhook, applier: the standard run), or any",
    )
    args = parser.parse_args(argv)

    received = interrupt_on_signals()
    netguard.install()  # this process talks to the stack on loopback only
    out = None if str(args.out) == "-" else args.out.resolve()
    try:
        result = run_chaos(
            args.messages,
            args.seed,
            args.state_dir.resolve(),
            out,
            timeout=args.timeout,
            storage_scope=args.storage_scope,
        )
    except KeyboardInterrupt:
        print("interrupted (the stack was stopped)", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    violations = netguard.snapshot()["violations"]
    if violations:
        print(f"ERROR: tried to leave loopback: {violations}", file=sys.stderr)
        return 2
    if result.error:
        return 2
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
