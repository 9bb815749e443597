"""Paths, the Lambda-like environment of the measured processes, and small statistics helpers."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.template_resources import load_template, resource

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
BENCH_VENV = ROOT / ".venv-bench"
BENCH_PYTHON = BENCH_VENV / "bin" / "python"
RESULTS = ROOT / "bench" / "results.json"
PLOT = ROOT / "docs" / "webhook-throughput.png"

MESSAGES_TABLE = "bench-messages"
IDEMPOTENCY_TABLE = "bench-idempotency"
OCELOT_SECRET = "bench-ocelot-api"  # noqa: S105 - a secret's name
WEBHOOK_SECRET = "bench-ocelot-webhook"  # noqa: S105 - a secret's name
OCELOT_CREDENTIALS = {"chatbotId": "bench-chatbot", "apiKey": "bench-api-key"}
WEBHOOK_CREDENTIALS = {"username": "ocelot", "password": "bench-webhook-password"}
DEFAULT_SENDER = "+15550000000"

# Local names for the template's resources that the functions' environment refers to.
_RESOURCE_VALUES = {
    "MessagesTable": MESSAGES_TABLE,
    "IdempotencyTable": IDEMPOTENCY_TABLE,
    "OcelotApiSecret": OCELOT_SECRET,
    "WebhookSecret": WEBHOOK_SECRET,
}
# Values the template leaves empty by default, which a deployment sets.
_PARAMETER_VALUES = {"DefaultSender": DEFAULT_SENDER, "DefaultOperatorId": "operator-1"}

# Never inherited from the caller: they could send the measured processes anywhere but 127.0.0.1.
_SCRUBBED_PREFIXES = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "PYTHON", "POWERTOOLS_")


def function_config(logical_id: str) -> dict[str, Any]:
    """MemorySize, Timeout and Handler of a function: its own value, else the template's Globals."""
    template = load_template()
    defaults = template.get("Globals", {}).get("Function", {})
    own = resource(logical_id)["Properties"]
    return {key: own.get(key, defaults.get(key)) for key in ("MemorySize", "Timeout", "Handler", "CodeUri")}


def _resolve(value: Any, template: Mapping[str, Any]) -> Any:
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        name = value["Ref"]
        if name in _PARAMETER_VALUES:
            return _PARAMETER_VALUES[name]
        if name in template.get("Parameters", {}):
            return template["Parameters"][name].get("Default", "")
        return _RESOURCE_VALUES.get(name, name)
    if "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        chosen = when_true if _condition(condition, template) else when_false
        return _resolve(chosen, template)
    raise ValueError(f"cannot resolve {value!r} for a local run")


def _condition(name: str, template: Mapping[str, Any]) -> bool:
    return bool(_evaluate(template["Conditions"][name], template))


def _evaluate(expression: Any, template: Mapping[str, Any]) -> Any:
    if isinstance(expression, dict) and "Fn::Equals" in expression:
        left, right = expression["Fn::Equals"]
        return _evaluate(left, template) == _evaluate(right, template)
    if isinstance(expression, dict) and "Fn::Not" in expression:
        return not _evaluate(expression["Fn::Not"][0], template)
    if isinstance(expression, dict) and "Condition" in expression:
        return _condition(expression["Condition"], template)
    return _resolve(expression, template)


def lambda_environment(
    logical_id: str, endpoint: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What the function sees in Lambda (template Globals + its own variables, resolved locally,
    plus the runtime's own variables), pointed at the local endpoint and nothing else."""
    template = load_template()
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    variables.update(resource(logical_id)["Properties"].get("Environment", {}).get("Variables", {}))
    config = function_config(logical_id)
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith(_SCRUBBED_PREFIXES)}
    env.update({name: str(_resolve(value, template)) for name, value in variables.items()})
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": f"ocelot-sms-{logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config["MemorySize"]),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "_HANDLER": str(config["Handler"]),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            # Like a read-only /opt and /var/task: nothing is cached between cold starts.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(overrides or {})
    return env


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the interquartile range of a sample."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "iqr": float("nan"), "n": 0}
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {
        "median": median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "iqr": quartiles[2] - quartiles[0],
        "n": len(ordered),
    }
