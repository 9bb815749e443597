"""Cold start proxy: a handler's import (and its first-call objects) in fresh interpreters, against a
boto3 baseline measured in the same run, interleaved so that drift hits both alike.

Each sample is a new `python -P -c ...` process (bench venv: boto3 as in the Lambda runtime) with
PYTHONPATH=<function dir>:<layer dir> from a private copy of the BUILT artifacts (`make build`
precompiles them), the function's Lambda environment and PYTHONDONTWRITEBYTECODE=1: like Lambda's
read-only /opt and /var/task, nothing compiled in one start is reused by the next. The time is taken
inside the process, around the import, so interpreter start-up (the same for all) is left out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench.common import BENCH_PYTHON, BUILD, FUNCTIONS, spread
from tools.template_resources import ROOT

_TIMED = """\
import json, time
t0, c0 = time.perf_counter(), time.process_time()
{imports}
t1, c1 = time.perf_counter(), time.process_time()
{objects}
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({{
    "import_ms": (t1 - t0) * 1e3, "total_ms": (t2 - t0) * 1e3,
    "import_cpu_ms": (c1 - c0) * 1e3, "total_cpu_ms": (c2 - c0) * 1e3,
}}))
"""


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    imports: str
    objects: str
    function: str  # whose Lambda environment the process gets
    handler: bool  # False: a baseline, with the layer only on the path

    def code(self) -> str:
        return _TIMED.format(imports=self.imports, objects=self.objects)


# One round: each handler right after its baseline.
CASES = (
    Case("baseline_webhook", "import boto3", "boto3.client('dynamodb')", "WebhookFunction", False),
    Case(
        "webhook",
        "import app",
        "from ocelot_sms import runtime\nruntime.webhook_service()",
        "WebhookFunction",
        True,
    ),
    Case("baseline_applier", "import boto3", "boto3.client('dynamodb')", "ApplierFunction", False),
    Case(
        "applier",
        "import app",
        "from ocelot_sms import runtime\nruntime.applier_service()",
        "ApplierFunction",
        True,
    ),
    Case("baseline_sender", "import boto3, requests", "boto3.client('dynamodb')", "SenderFunction", False),
    Case(
        "sender",
        "import app",
        "from ocelot_sms import runtime\nruntime.sender_service()",
        "SenderFunction",
        True,
    ),
)
HANDLERS = tuple(case.name for case in CASES if case.handler)
# Where the sources a patch may touch land in a tree (a copy of .aws-sam/build).
PATCHABLE = {
    "layers/shared/ocelot_sms": "opt/python/ocelot_sms",
    "functions/webhook": "WebhookFunction",
    "functions/applier": "ApplierFunction",
    "functions/sender": "SenderFunction",
}


def prepare(root: Path, patch: Path | None = None) -> Path:
    """A private copy of the built layer and functions. `patch` (a unified diff against the repository,
    as `git diff` writes it) is applied to copies of our sources, which replace the built ones and are
    compiled as `make build` compiles them: a proposed change, measured without touching the work tree."""
    shutil.copytree(BUILD / "SharedLayer" / "python", root / "opt" / "python")
    for function in FUNCTIONS.values():
        shutil.copytree(BUILD / function, root / function)
    if patch is not None:
        patched = root.parent / f"{root.name}-sources"
        for source in PATCHABLE:
            shutil.copytree(ROOT / source, patched / source, ignore=shutil.ignore_patterns("__pycache__"))
        includes = [f"--include={source}/*" for source in PATCHABLE]
        subprocess.run(["git", "apply", *includes, str(patch.resolve())], cwd=patched, check=True)
        for source, target in PATCHABLE.items():
            shutil.rmtree(root / target)
            shutil.copytree(patched / source, root / target)
        compile_ = ["-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
        subprocess.run([str(BENCH_PYTHON), *compile_, *PATCHABLE.values()], cwd=root, check=True)
    return root


def _env(tree: Path, envs: Mapping[str, Mapping[str, str]], case: Case) -> dict[str, str]:
    path = ([str(tree / case.function)] if case.handler else []) + [str(tree / "opt" / "python")]
    return {**envs[case.function], "PYTHONPATH": ":".join(path)}


def _run(
    case: Case, tree: Path, envs: Mapping[str, Mapping[str, str]], *flags: str
) -> subprocess.CompletedProcess[str]:
    command = [str(BENCH_PYTHON), "-P", *flags, "-c", case.code()]
    done = subprocess.run(command, env=_env(tree, envs, case), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"cold start {case.name} failed:\n{done.stderr[-3000:]}")
    return done


def measure(tree: Path, envs: Mapping[str, Mapping[str, str]], rounds: int) -> dict[str, dict[str, Any]]:
    samples: defaultdict[str, defaultdict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for case in CASES:  # one discarded round: the page cache then holds every file for all the others
        _run(case, tree, envs)
    for _ in range(rounds):
        for case in CASES:
            started = time.perf_counter()
            values = json.loads(_run(case, tree, envs).stdout.strip().splitlines()[-1])
            values["process_ms"] = (time.perf_counter() - started) * 1e3
            for key, value in values.items():
                samples[case.name][key].append(value)
    return {
        name: {**{k: spread(v) for k, v in values.items()}, "samples": dict(values)}
        for name, values in samples.items()
    }


def ratios(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Handler / baseline, per round (each handler ran right after its baseline) then the median of
    those ratios, which cancels drift; CPU time (what the goal uses) and wall time."""
    out: dict[str, dict[str, float]] = {}
    for handler in HANDLERS:
        mine, base = summary[handler]["samples"], summary[f"baseline_{handler}"]["samples"]
        out[handler] = {
            "baseline_cpu_ms": spread(base["total_cpu_ms"])["median"],
            "import_cpu_ms": spread(mine["import_cpu_ms"])["median"],
            "import_and_objects_cpu_ms": spread(mine["total_cpu_ms"])["median"],
            "ratio_cpu": _paired(mine["total_cpu_ms"], base["total_cpu_ms"]),
            "ratio_import_cpu": _paired(mine["import_cpu_ms"], base["total_cpu_ms"]),
            "baseline_ms": spread(base["total_ms"])["median"],
            "import_and_objects_ms": spread(mine["total_ms"])["median"],
            "ratio_wall": _paired(mine["total_ms"], base["total_ms"]),
        }
    return out


def _paired(mine: list[float], base: list[float]) -> float:
    return spread([h / b for h, b in zip(mine, base, strict=True) if b > 0])["median"]


def offenders(tree: Path, envs: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """`-X importtime`: per handler, the modules it imports that its baseline does not, by package
    (self time), and the heaviest of them by cumulative time."""
    by_name = {case.name: case for case in CASES}
    out: dict[str, Any] = {}
    for handler in HANDLERS:
        known = {name for name, _, _ in _importtime(by_name[f"baseline_{handler}"], tree, envs)}
        new = [line for line in _importtime(by_name[handler], tree, envs) if line[0] not in known]
        packages: defaultdict[str, float] = defaultdict(float)
        for name, self_us, _ in new:
            packages[name.split(".")[0]] += self_us / 1e3
        out[handler] = {
            "new_modules": len(new),
            "new_self_ms": sum(self_us for _, self_us, _ in new) / 1e3,
            "by_package_ms": dict(sorted(packages.items(), key=lambda kv: -kv[1])[:12]),
            "heaviest_cumulative_ms": {n: c / 1e3 for n, _, c in sorted(new, key=lambda line: -line[2])[:12]},
        }
    return out


def _importtime(case: Case, tree: Path, envs: Mapping[str, Mapping[str, str]]) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) of every import."""
    lines = []
    for raw in _run(case, tree, envs, "-X", "importtime").stderr.splitlines():
        if raw.startswith("import time:") and "self [us]" not in raw:
            self_us, cumulative, name = raw.removeprefix("import time:").split("|", 2)
            lines.append((name.strip(), int(self_us), int(cumulative)))
    return lines
