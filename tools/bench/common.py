"""What every bench measurement shares: paths, the stand-ins on 127.0.0.1, the measured processes'
Lambda-like environment, running a workload there, and small statistics."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.local.aws import ACCOUNT_ID, OCELOT_SECRET, REGION, WEBHOOK_SECRET, MotoProcess, provision
from tools.local.sandbox import Sandbox, SandboxConfig
from tools.local.serving import ServerThread
from tools.template_resources import ROOT, FunctionSpec, Resolver, function_specs

BUILD = ROOT / ".aws-sam" / "build"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
RESULTS = ROOT / "bench" / "results.json"
PLOT = ROOT / "docs" / "callback-throughput.png"
# The measured functions, by the name the workload knows them by.
FUNCTIONS = {"webhook": "WebhookFunction", "applier": "ApplierFunction", "sender": "SenderFunction"}
OCELOT_CREDENTIALS = {"chatbotId": "bench-chatbot", "apiKey": "bench-api-key"}
WEBHOOK_CREDENTIALS = {"username": "ocelot", "password": "bench-webhook-password"}
# Values the template leaves empty by default, which a deployment sets.
PARAMETERS = {"DefaultSender": "+15550000000", "DefaultOperatorId": "operator-1"}
# Never inherited from the caller: they could send the measured processes anywhere but 127.0.0.1.
_SCRUBBED_PREFIXES = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "PYTHON", "POWERTOOLS_")


@dataclass(frozen=True)
class StandIns:
    aws_url: str  # moto, its own process: every request delayed, DynamoDB's metered
    ocelot_url: str  # the sandbox, with no webhook: it plans callbacks but sends none
    specs: Mapping[str, FunctionSpec]  # the functions, resolved against those two
    stream_arn: str  # MessagesTable's stream, named in the applier's events


@contextlib.contextmanager
def stand_ins(latency_ms: float) -> Iterator[StandIns]:
    """moto and the Ocelot sandbox on 127.0.0.1, the template's tables and secrets in moto."""
    with contextlib.ExitStack() as started:
        moto = MotoProcess("--meter", "--latency-ms", str(latency_ms)).start()
        started.callback(moto.stop)
        config = SandboxConfig(
            chatbot_id=OCELOT_CREDENTIALS["chatbotId"], api_key=OCELOT_CREDENTIALS["apiKey"]
        )
        sandbox = Sandbox(config).start()
        started.callback(sandbox.stop)
        server = ServerThread(sandbox, "sandbox").start()
        started.callback(server.stop)
        resources = provision(
            moto.url, "bench", {OCELOT_SECRET: OCELOT_CREDENTIALS, WEBHOOK_SECRET: WEBHOOK_CREDENTIALS}
        )
        resolver = Resolver(
            parameters={**PARAMETERS, "OcelotBaseUrl": server.url},
            refs=resources.refs,
            arns=resources.arns,
            region=REGION,
            account_id=ACCOUNT_ID,
        )
        specs = {spec.logical_id: spec for spec in function_specs(resolver)}
        yield StandIns(moto.url, server.url, specs, resources.stream_arns["MessagesTable"])


def lambda_environment(spec: FunctionSpec, aws_url: str) -> dict[str, str]:
    """What the function sees in Lambda (its template environment resolved locally, and the runtime's
    own variables), pointed at the local stand-ins and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_SCRUBBED_PREFIXES)}
    return {
        **env,
        **spec.environment,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": f"ocelot-sms-{spec.logical_id}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "_HANDLER": spec.handler,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # Like a read-only /opt and /var/task: nothing is cached between cold starts.
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def workload_spec(
    spec: FunctionSpec, ins: StandIns, plan: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "function": next(name for name, logical_id in FUNCTIONS.items() if logical_id == spec.logical_id),
        "handler_module": spec.handler.rsplit(".", 1)[0],
        "stream_arn": ins.stream_arn,
        "timeout_s": spec.timeout_seconds,
        "aws_url": ins.aws_url,
        "ocelot_url": ins.ocelot_url,
        "credentials": WEBHOOK_CREDENTIALS,
        "plan": plan,
        **extra,
    }


def run_workload(
    name: str,
    spec: Mapping[str, Any],
    tree: Path,
    env: Mapping[str, str],
    work: Path,
    driver: str = "tools.bench.workload",
    timeout: float = 900,
) -> dict[str, Any]:
    """A workload driver (tools/bench/workload.py unless told) in the bench venv: one Lambda-like
    container of the BUILT code in `tree`."""
    spec_path, out_path = work / f"{name}.spec.json", work / f"{name}.out.json"
    spec_path.write_text(json.dumps({**spec, "tag": name}))
    function = FUNCTIONS[spec["function"]]
    # The function's folder, then the layer's, as Lambda's /var/task and /opt/python; then the driver.
    python_path = f"{tree / function}:{tree / 'opt' / 'python'}:{ROOT}"
    done = subprocess.run(
        [str(BENCH_PYTHON), "-P", "-m", driver, str(spec_path), str(out_path)],
        env={**env, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=work,
    )
    if done.returncode != 0:
        raise RuntimeError(f"workload {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the interquartile range of a sample."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "iqr": float("nan"), "n": 0}
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    iqr = quartiles[2] - quartiles[0]
    return {"median": median(ordered), "min": ordered[0], "max": ordered[-1], "iqr": iqr, "n": len(ordered)}
