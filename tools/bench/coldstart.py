"""Cold start proxy: a handler's import (and its first-call objects) in fresh interpreters, against a
boto3 baseline measured in the same run, interleaved so that drift hits both alike.

Each sample is a new `python -P -c ...` process (bench venv: boto3 as in the Lambda runtime) with
PYTHONPATH=<function dir>:<layer dir> from a private copy of the BUILT artifacts, the function's
Lambda environment and PYTHONDONTWRITEBYTECODE=1: like Lambda's read-only /opt and /var/task,
nothing compiled in one start is reused by the next. The time is taken inside the process, around
the import, so interpreter start-up (the same for all) is left out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.common import BENCH_PYTHON, BUILD, ROOT, spread

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
    function: str | None  # logical id whose built dir goes first on the path (None: layer only)
    env_function: str  # whose Lambda environment the process gets
    variant: str  # "as_built" or "precompiled"

    def code(self) -> str:
        return _TIMED.format(imports=self.imports, objects=self.objects)


BASELINE_WEBHOOK = ("import boto3", "boto3.client('dynamodb')")
BASELINE_SENDER = ("import boto3, requests", "boto3.client('dynamodb')")
WEBHOOK = ("import app", "from ocelot_sms import runtime\nruntime.callback_service()")
SENDER = ("import app", "from ocelot_sms import runtime\nruntime.sender_service()")


def cases() -> list[Case]:
    """One round, interleaved: each handler right after its baseline, as built and precompiled."""
    out: list[Case] = []
    for variant in ("as_built", "precompiled"):
        out += [
            Case(f"baseline_webhook/{variant}", *BASELINE_WEBHOOK, None, "WebhookFunction", variant),
            Case(f"webhook/{variant}", *WEBHOOK, "WebhookFunction", "WebhookFunction", variant),
            Case(f"baseline_sender/{variant}", *BASELINE_SENDER, None, "SenderFunction", variant),
            Case(f"sender/{variant}", *SENDER, "SenderFunction", "SenderFunction", variant),
        ]
    return out


# Where the sources a patch may touch land in a tree (a copy of .aws-sam/build).
PATCHABLE = {
    "layers/shared/ocelot_sms": "opt/python/ocelot_sms",
    "functions/webhook": "WebhookFunction",
    "functions/sender": "SenderFunction",
}


def prepare(root: Path, patch: Path | None = None) -> dict[str, Path]:
    """Private copies of the built layer and functions: as built, and with precompiled bytecode.

    `patch` (a unified diff against the repository, as `git diff` writes it) is applied to copies of
    the sources and the patched packages replace the built ones: a proposed change, measured without
    touching the work tree. Only the Python packages above are patched.
    """
    trees: dict[str, Path] = {}
    patched = _patched_sources(root / "patched", patch) if patch else None
    for variant in ("as_built", "precompiled"):
        base = root / variant
        shutil.copytree(BUILD / "SharedLayer" / "python", base / "opt" / "python")
        for function in ("WebhookFunction", "SenderFunction"):
            shutil.copytree(BUILD / function, base / function)
        if patched is not None:
            for source, target in PATCHABLE.items():
                shutil.rmtree(base / target)
                shutil.copytree(patched / source, base / target)
        trees[variant] = base
    precompile(trees["precompiled"])
    return trees


# The build step docs/performance.md proposes, applied to the "precompiled" copy: bytecode for what
# the functions can import (hash-based pycs need no source timestamps, which a zip round trip may not
# keep), none for the parts of the dependencies they never import, and no Swagger UI assets.
PRECOMPILE_EXCLUDE = (
    r"pydantic/(v1|deprecated)/|pydantic/mypy\.py|urllib3/contrib/emscripten/"
    r"|aws_lambda_powertools/utilities/(auth_alpha|feature_flags|circuit_breaker|kafka|data_masking"
    r"|streaming|validation)/"
)
UNUSED_ASSETS = ("opt/python/aws_lambda_powertools/event_handler/openapi/swagger_ui",)


def precompile(tree: Path) -> None:
    for asset in UNUSED_ASSETS:
        shutil.rmtree(tree / asset, ignore_errors=True)
    command = ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run(
        [str(BENCH_PYTHON), *command, "-x", PRECOMPILE_EXCLUDE, "."],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _patched_sources(root: Path, patch: Path) -> Path:
    for source in PATCHABLE:
        shutil.copytree(ROOT / source, root / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    includes = [f"--include={source}/*" for source in PATCHABLE]
    subprocess.run(["git", "apply", *includes, str(patch.resolve())], cwd=root, check=True)
    return root


def python_path(trees: Mapping[str, Path], case: Case) -> str:
    base = trees[case.variant]
    parts = ([str(base / case.function)] if case.function else []) + [str(base / "opt" / "python")]
    return ":".join(parts)


def _run(case: Case, trees: Mapping[str, Path], envs: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    env = dict(envs[case.env_function])
    env["PYTHONPATH"] = python_path(trees, case)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BENCH_PYTHON), "-P", "-c", case.code()], env=env, capture_output=True, text=True, timeout=120
    )
    process_ms = (time.perf_counter() - started) * 1e3
    if done.returncode != 0:
        raise RuntimeError(f"cold start {case.name} failed:\n{done.stderr[-3000:]}")
    values: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**values, "process_ms": process_ms}


def measure(
    trees: Mapping[str, Path], envs: Mapping[str, Mapping[str, str]], rounds: int
) -> dict[str, dict[str, Any]]:
    samples: defaultdict[str, defaultdict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    plan = cases()
    # One discarded round: the page cache then holds every file for all the measured ones.
    for case in plan:
        _run(case, trees, envs)
    for _ in range(rounds):
        for case in plan:
            for key, value in _run(case, trees, envs).items():
                samples[case.name][key].append(value)
    summary: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        summary[name] = {key: spread(series) for key, series in values.items()}
        summary[name]["samples"] = dict(values)
    return summary


def ratios(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Handler / baseline, per round (each handler ran right after its baseline) then the median of
    those ratios, which cancels drift; CPU time (what the goal uses) and wall time."""
    out: dict[str, dict[str, float]] = {}
    for variant in ("as_built", "precompiled"):
        for handler in ("webhook", "sender"):
            mine = summary[f"{handler}/{variant}"]
            base = summary[f"baseline_{handler}/{variant}"]

            out[f"{handler}/{variant}"] = {
                "baseline_cpu_ms": spread(base["samples"]["total_cpu_ms"])["median"],
                "import_cpu_ms": spread(mine["samples"]["import_cpu_ms"])["median"],
                "import_and_objects_cpu_ms": spread(mine["samples"]["total_cpu_ms"])["median"],
                "ratio_cpu": paired_ratio(mine["samples"], base["samples"], "total_cpu_ms"),
                "ratio_import_cpu": paired_ratio(
                    mine["samples"], base["samples"], "import_cpu_ms", "total_cpu_ms"
                ),
                "baseline_ms": spread(base["samples"]["total_ms"])["median"],
                "import_ms": spread(mine["samples"]["import_ms"])["median"],
                "import_and_objects_ms": spread(mine["samples"]["total_ms"])["median"],
                "ratio_wall": paired_ratio(mine["samples"], base["samples"], "total_ms"),
                "ratio_of_medians_wall": spread(mine["samples"]["total_ms"])["median"]
                / spread(base["samples"]["total_ms"])["median"],
            }
    return out


def paired_ratio(
    mine: Mapping[str, list[float]], base: Mapping[str, list[float]], key: str, base_key: str | None = None
) -> float:
    pairs = [h / b for h, b in zip(mine[key], base[base_key or key], strict=True) if b > 0]
    return spread(pairs)["median"]


# ---- -X importtime: what the handler imports that the baseline does not -------------------------


@dataclass
class ImportLine:
    name: str
    depth: int
    self_us: int
    cumulative_us: int
    parent: str | None = None
    children: list[ImportLine] = field(default_factory=list)


def parse_importtime(stderr: str) -> list[ImportLine]:
    lines: list[ImportLine] = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:") or "self [us]" in raw:
            continue
        self_us, cumulative, name = raw[len("import time:") :].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        lines.append(ImportLine(name.strip(), depth, int(self_us), int(cumulative)))
    # Post-order: a module's children are the lines just before it, one level deeper.
    stack: list[ImportLine] = []
    for line in lines:
        while stack and stack[-1].depth > line.depth:
            child = stack.pop()
            if child.depth == line.depth + 1:
                child.parent = line.name
                line.children.append(child)
        stack.append(line)
    return lines


def importtime(
    trees: Mapping[str, Path], envs: Mapping[str, Mapping[str, str]], case: Case, baseline: Case
) -> dict[str, Any]:
    def run(target: Case) -> list[ImportLine]:
        env = dict(envs[target.env_function])
        env["PYTHONPATH"] = python_path(trees, target)
        done = subprocess.run(
            [str(BENCH_PYTHON), "-P", "-X", "importtime", "-c", target.code()],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return parse_importtime(done.stderr)

    known = {line.name for line in run(baseline)}
    every = run(case)
    lines = [line for line in every if line.name not in known]
    # Cumulative time of what the baseline does not import anyway (boto3 inside a subtree is not
    # the handler's cost). Lines come children first, so one pass fills every subtree's sum.
    new_total: dict[int, int] = {}
    for line in every:
        mine = 0 if line.name in known else line.self_us
        new_total[id(line)] = mine + sum(new_total.get(id(child), 0) for child in line.children)

    def new_us(line: ImportLine) -> int:
        return new_total[id(line)]

    ours = ("ocelot_sms", "app")
    by_package: defaultdict[str, int] = defaultdict(int)
    for line in lines:
        by_package[line.name.split(".")[0]] += line.self_us
    # Edges worth a lazy import: our code (or the top level) pulling in something that is not ours.
    edges = [
        {
            "module": line.name,
            "imported_by": line.parent or "(top)",
            "new_cumulative_ms": new_us(line) / 1e3,
        }
        for line in lines
        if not line.name.startswith(ours) and (line.parent is None or line.parent.startswith(ours))
    ]
    own = [
        {"module": line.name, "self_ms": line.self_us / 1e3, "new_cumulative_ms": new_us(line) / 1e3}
        for line in lines
        if line.name.startswith(ours)
    ]
    return {
        "new_modules": len(lines),
        "new_self_ms": sum(line.self_us for line in lines) / 1e3,
        "by_package_ms": dict(
            sorted(((k, v / 1e3) for k, v in by_package.items()), key=lambda kv: -kv[1])[:12]
        ),
        "heaviest_edges": sorted(edges, key=lambda e: -float(str(e["new_cumulative_ms"])))[:12],
        "own_modules": sorted(own, key=lambda e: -float(str(e["new_cumulative_ms"]))),
    }


def offenders(
    trees: Mapping[str, Path], envs: Mapping[str, Mapping[str, str]], variant: str
) -> dict[str, Any]:
    by_name = {case.name: case for case in cases()}
    return {
        handler: importtime(
            trees, envs, by_name[f"{handler}/{variant}"], by_name[f"baseline_{handler}/{variant}"]
        )
        for handler in ("webhook", "sender")
    }
