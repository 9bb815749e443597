"""The file `sam local invoke|start-api --env-vars` reads: the functions' environment on loopback.

SAM CLI gives a function only the variables its template declares (Globals + the function's own):
a name in this file that the template does not declare is dropped without a word, and a value
that is not overridden keeps the template's default (for OCELOT_BASE_URL, the real Ocelot). So
`document()` refuses any URL that is not http://127.0.0.1, and `undeclared()` names what SAM
would drop.

    python -m tools.sam_local.env_vars [--stack .local/stack.json] [--out .local/sam-env.json]

writes the file for the local stack that `python -m tools.local.stack up` started (its moto
server, tables, secrets and Ocelot sandbox), so that `sam local invoke SenderFunction -e
events/<file>` (samconfig.toml: env_vars) runs against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tools.template_resources import ROOT, function_environment, load_template

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
LOOPBACK = "127.0.0.1"
DEFAULT_STACK_FILE = ROOT / ".local" / "stack.json"
DEFAULT_OUT = ROOT / ".local" / "sam-env.json"
FUNCTION_TYPE = "AWS::Serverless::Function"


class EnvVarsError(ValueError):
    """A value would send a function's traffic off loopback, or the input is incomplete."""


def function_ids(template: Mapping[str, Any] | None = None) -> list[str]:
    resources = (template or load_template())["Resources"]
    return [name for name, spec in resources.items() if spec.get("Type") == FUNCTION_TYPE]


def declared_names(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """Function -> the variable names SAM passes it (Globals + its own) in this template."""
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    declared: dict[str, set[str]] = {}
    for name in function_ids(template):
        own = template["Resources"][name].get("Properties", {}).get("Environment", {}).get("Variables", {})
        declared[name] = set(global_vars) | set(own)
    return declared


def undeclared(values: Mapping[str, str], template: Mapping[str, Any] | None = None) -> list[str]:
    """Names no function declares: SAM would drop them silently."""
    if template is None:
        everywhere = {n for f in function_ids() for n in function_environment(f)}
    else:
        everywhere = set().union(*declared_names(template).values())
    return sorted(set(values) - everywhere)


def for_sam(
    values: Mapping[str, str], template: Mapping[str, Any] | None = None
) -> tuple[dict[str, str], list[str]]:
    """(what to write, what SAM would drop anyway). AWS_ENDPOINT_URL is always kept: without it
    boto3 would call real AWS, so its absence from the template must show, not vanish."""
    dropped = [name for name in undeclared(values, template) if name != ENDPOINT_VARIABLE]
    return {k: v for k, v in values.items() if k not in dropped}, dropped


def check_loopback(values: Mapping[str, str]) -> None:
    """Every URL must be http(s)://127.0.0.1[:port]: nothing the functions call may leave the machine."""
    for name, value in values.items():
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname != LOOPBACK:
            raise EnvVarsError(f"{name}={value!r}: only {LOOPBACK} is allowed")
        if name == ENDPOINT_VARIABLE and parts.hostname != LOOPBACK:
            raise EnvVarsError(f"{ENDPOINT_VARIABLE}={value!r} must point at the moto server on {LOOPBACK}")


def document(values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The --env-vars JSON: one "Parameters" block, which SAM applies to every function."""
    if ENDPOINT_VARIABLE not in values:
        raise EnvVarsError(f"{ENDPOINT_VARIABLE} is required: without it boto3 would call real AWS")
    check_loopback(values)
    return {"Parameters": {name: str(value) for name, value in sorted(values.items())}}


def from_stack(stack: Mapping[str, Any]) -> dict[str, str]:
    """The variables for the functions from a `.local/stack.json` (tools/local/stack.py StackInfo)."""
    try:
        values = {str(k): str(v) for k, v in (stack.get("function_env") or {}).items()}
        values.update(
            {
                "TABLE_NAME": stack["tables"]["messages"],
                "IDEMPOTENCY_TABLE_NAME": stack["tables"]["idempotency"],
                "OCELOT_SECRET_ID": stack["secrets"]["ocelot"],
                "WEBHOOK_SECRET_ID": stack["secrets"]["webhook"],
                "OCELOT_BASE_URL": stack["sandbox_url"],
                ENDPOINT_VARIABLE: stack["aws_endpoint_url"],
            }
        )
    except (KeyError, TypeError) as error:
        raise EnvVarsError(f"stack file lacks {error}") from error
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write sam local's --env-vars file for the local stack.")
    parser.add_argument("--stack", type=Path, default=DEFAULT_STACK_FILE, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    if not args.stack.is_file():
        print(f"{args.stack} not found: start the local stack first (make local-up)", file=sys.stderr)
        return 1
    try:
        values, dropped = for_sam(from_stack(json.loads(args.stack.read_text())))
        body = document(values)
    except (EnvVarsError, ValueError) as error:
        print(f"cannot write {args.out}: {error}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(body, indent=2) + "\n")
    temporary.replace(args.out)
    print(
        f"wrote {args.out}: {len(values)} variables, AWS at {values[ENDPOINT_VARIABLE]}, "
        f"Ocelot at {values.get('OCELOT_BASE_URL')}"
    )
    if dropped:
        print(f"  not declared in template.yaml, so sam local would ignore them: {', '.join(dropped)}")
    if undeclared({ENDPOINT_VARIABLE: ""}):
        print(
            f"warning: template.yaml does not declare {ENDPOINT_VARIABLE}: sam local drops it and the "
            "functions would call real AWS; see docs/sam-local.md",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
