"""The Sender's cold start by path, against baselines doing the same kind of work, in the same run.

A path's cold start is what a fresh container spends before and beyond its first answer: the import
of the handler module, plus the CPU its first invocation takes over the next ones (the imports and
objects that path makes on first use, botocore's and urllib3's first-request work). Each sample is a
fresh process (bench venv, PYTHONPATH = the BUILT function then layer, the function's Lambda
environment, PYTHONDONTWRITEBYTECODE=1) that imports the handler, invokes it once, then twice more
with the same kind of event (new request ids): cold = import + first - median(next two), in CPU time.

Paths: an invalid request (422) and a dry run (200), which do no I/O, against the boto3+requests
baseline of `coldstart.py` (import boto3 and requests, make a DynamoDB client); a send through the
API (201) and one through the queue (an SQS record), against that baseline doing, cold then warm, one
DynamoDB GetItem and one HTTP POST to the sandbox: the first-request work a sending function cannot
avoid, counted on both sides. Rounds are interleaved (baseline, then each path) and the ratio is the
median of the per-round ratios, so that the machine's drift hits both.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.bench.common import BENCH_PYTHON, OCELOT_CREDENTIALS, StandIns, median, spread
from tools.bench.events import batch_body, batch_event, sqs_event
from tools.local import lambda_context

FUNCTION = "SenderFunction"
# Path -> the baseline it is held against ("plain": no I/O, "io": one GetItem and one POST).
PATHS = {"api_invalid": "plain", "api_dry_run": "plain", "api_send": "io", "sqs_send": "io"}
WARM_INVOCATIONS = 2
CONTEXT_MODULE = Path(lambda_context.__file__)
_PLAIN = 'import boto3, requests\nboto3.client("dynamodb")\n'

_SENDER = """\
import json, runpy, sys, time
spec = json.load(open(sys.argv[1]))
# By file: only the function and the layer are importable, as in Lambda.
LambdaContext = runpy.run_path(spec["context_module"])["LambdaContext"]
context = LambdaContext("ocelot-sms-SenderFunction", 256, 90, "us-east-1")
c0 = time.process_time()
import app
c1 = time.process_time()
runs, statuses = [], []
for event in spec["events"]:
    c = time.process_time()
    answer = app.lambda_handler(event, context)
    runs.append(time.process_time() - c)
    statuses.append(answer.get("statusCode", json.dumps(answer)))
json.dump({"import_cpu": c1 - c0, "runs": runs, "statuses": statuses}, open(sys.argv[2], "w"))
"""

_BASELINE = """\
import json, sys, time
spec = json.load(open(sys.argv[1]))
c0 = time.process_time()
import boto3, requests
client = boto3.client("dynamodb")
c1 = time.process_time()
runs = []
for n in range(1 + spec["warm"]):
    c = time.process_time()
    if n == 0:  # the Ocelot key, read once per container as the Sender does
        boto3.client("secretsmanager").get_secret_value(SecretId=spec["secret"])
    client.get_item(TableName=spec["table"], Key={"PK": {"S": "REQ#none"}, "SK": {"S": "#BATCH"}})
    requests.post(spec["url"], json=spec["payload"], auth=tuple(spec["auth"]), timeout=10).raise_for_status()
    runs.append(time.process_time() - c)
json.dump({"import_cpu": c1 - c0, "runs": runs, "statuses": []}, open(sys.argv[2], "w"))
"""


def _events(path: str, tag: str) -> list[dict[str, Any]]:
    """The first and the warm invocations of a path, each request new."""
    events = []
    for n in range(1 + WARM_INVOCATIONS):
        body = batch_body(3, f"cold-{tag}-{n}")
        if path == "api_invalid":
            body["messages"][0]["to"] = "555-0100"
        elif path == "api_dry_run":
            body["dryRun"] = True
        if path == "sqs_send":
            events.append(sqs_event(body, f"m-{tag}-{n}"))
        else:
            events.append(batch_event(body, f"cold-{tag}-{n}"))
    return events


def _run(
    code: str, spec: Mapping[str, Any], env: Mapping[str, str], work: Path, *flags: str
) -> dict[str, Any]:
    spec_path, out_path = work / "cold.spec.json", work / "cold.out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    done = subprocess.run(
        [str(BENCH_PYTHON), "-P", *flags, "-c", code, str(spec_path), str(out_path)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=work,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sender cold start failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    return result | {"stderr": done.stderr}


def _cold_ms(sample: Mapping[str, Any]) -> float:
    runs = sample["runs"]
    return float((sample["import_cpu"] + runs[0] - median(runs[1:])) * 1e3)


def measure(tree: Path, env: Mapping[str, str], ins: StandIns, rounds: int, work: Path) -> dict[str, Any]:
    """Interleaved rounds of (baseline, each path); per path the median ratio to its baseline."""
    sender_env = {**env, "PYTHONPATH": f"{tree / FUNCTION}:{tree / 'opt' / 'python'}"}
    base_env = {**env, "PYTHONPATH": str(tree / "opt" / "python")}
    baseline_spec = {
        "warm": WARM_INVOCATIONS,
        "table": env["TABLE_NAME"],
        "secret": env["OCELOT_SECRET_ID"],
        "url": ins.ocelot_url + "/api/v1/sms/send/",
        "auth": [OCELOT_CREDENTIALS["chatbotId"], OCELOT_CREDENTIALS["apiKey"]],
        "payload": {
            "phoneNumber": "+15550000000",
            "operatorId": "operator-1",
            "messages": [{"to": "+15551230010", "message": "baseline"}],
        },
    }
    samples: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for number in range(rounds + 1):  # round 0 warms the page cache and is not kept
        kept = samples if number else defaultdict(list)
        kept["baseline"].append(_run(_BASELINE, baseline_spec, base_env, work))
        for path in PATHS:
            spec = {"context_module": str(CONTEXT_MODULE), "events": _events(path, f"{path}-{number}")}
            kept[path].append(_run(_SENDER, spec, sender_env, work))
    return summarise(samples) | {"rounds": rounds, "offenders": offenders(tree, env, work)}


def summarise(samples: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    baseline = samples["baseline"]
    plain = [s["import_cpu"] * 1e3 for s in baseline]
    io = [_cold_ms(s) for s in baseline]
    paths: dict[str, Any] = {}
    for path, against in PATHS.items():
        cold = [_cold_ms(s) for s in samples[path]]
        base = plain if against == "plain" else io
        paths[path] = {
            "baseline": against,
            "cold_cpu_ms": spread(cold),
            "import_cpu_ms": median([s["import_cpu"] * 1e3 for s in samples[path]]),
            "first_cpu_ms": median([s["runs"][0] * 1e3 for s in samples[path]]),
            "warm_cpu_ms": median([median(s["runs"][1:]) * 1e3 for s in samples[path]]),
            "ratio_cpu": median([c / b for c, b in zip(cold, base, strict=True) if b > 0]),
            "statuses": samples[path][0]["statuses"],
        }
    worst = max(paths, key=lambda p: paths[p]["ratio_cpu"])
    return {
        "baseline_plain_cpu_ms": spread(plain),
        "baseline_io_cpu_ms": spread(io),
        "paths": paths,
        "worst_path": worst,
        "worst_ratio_cpu": paths[worst]["ratio_cpu"],
    }


def offenders(tree: Path, env: Mapping[str, str], work: Path) -> dict[str, Any]:
    """`-X importtime` of each path's cold process: what it imports beyond the baseline, by package
    (self time, ms)."""
    plain = _run(_PLAIN, {}, {**env, "PYTHONPATH": str(tree / "opt" / "python")}, work, "-X", "importtime")
    known = {name for name, _ in _imports(plain)}
    sender_env = {**env, "PYTHONPATH": f"{tree / FUNCTION}:{tree / 'opt' / 'python'}"}
    out = {}
    for path in PATHS:
        spec = {"context_module": str(CONTEXT_MODULE), "events": _events(path, f"{path}-imports")[:1]}
        packages: defaultdict[str, float] = defaultdict(float)
        for name, self_us in _imports(_run(_SENDER, spec, sender_env, work, "-X", "importtime")):
            if name not in known and not name.startswith("tools"):
                packages[name.split(".")[0]] += self_us / 1e3
        out[path] = dict(sorted(packages.items(), key=lambda kv: -kv[1])[:10])
    return out


def _imports(run: Mapping[str, Any]) -> list[tuple[str, int]]:
    lines = []
    for raw in str(run["stderr"]).splitlines():
        if raw.startswith("import time:") and "self [us]" not in raw:
            self_us, _, name = raw.removeprefix("import time:").split("|", 2)
            lines.append((name.strip(), int(self_us)))
    return lines


GOAL_RATIO = 1.4


def goals(result: Mapping[str, Any]) -> list[tuple[str, float, float, str, str]]:
    """(name, value, limit, compare, unit) for run.py's table: the worst path against its baseline."""
    worst = result["worst_path"]
    return [
        (
            f"cold start: sender, worst path ({worst}) / boto3 baseline",
            result["worst_ratio_cpu"],
            GOAL_RATIO,
            "<=",
            "x",
        )
    ]


def info(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    paths = result["paths"]
    shown = ", ".join(f"{path} {paths[path]['ratio_cpu']:.2f}x" for path in PATHS)
    cold = " / ".join(f"{paths[path]['cold_cpu_ms']['median']:.0f}" for path in PATHS)
    base = f"{result['baseline_plain_cpu_ms']['median']:.0f} / {result['baseline_io_cpu_ms']['median']:.0f}"
    return [
        ("cold start sender by path (CPU ratio)", shown),
        ("cold start sender by path (ms) / baselines plain, io", f"{cold} / {base}"),
    ]
