"""Where the CLI points: a deployed stack (CloudFormation outputs) or the local stack (.local/stack.json).

There is no default: an operator names the stack (--stack or OCELOT_SMS_STACK) or asks for the local
one (--local, --stack-file), so a command never lands on a stack nobody chose.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ocelot_sms_cli.exits import Exit

LOCAL_STACK_FILE = Path(".local/stack.json")

# CloudFormation output name -> Target field.
_OUTPUTS = {
    "ApiUrl": "api_url",
    "SendQueueUrl": "queue_url",
    "DeadLetterQueueUrl": "dlq_url",
    "MessagesTableName": "table_name",
    "IdempotencyTableName": "idempotency_table_name",
}


class TargetError(RuntimeError):
    """The stack cannot be used; `code` is the exit code that says why."""

    def __init__(self, message: str, code: Exit = Exit.SETUP) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    api_url: str
    queue_url: str
    dlq_url: str
    table_name: str
    idempotency_table_name: str = ""
    aws_endpoint_url: str | None = None
    region: str | None = None
    # What the stack's Sender uses to reach Ocelot: `reconcile resend` sends the same way.
    ocelot_base_url: str | None = None
    ocelot_secret_id: str | None = None
    webhook_secret_id: str | None = None
    profile: str | None = None
    name: str = "local"

    def session(self) -> boto3.Session:
        return boto3.Session(profile_name=self.profile, region_name=self.region)

    def client(self, service: str) -> Any:
        make_client: Any = self.session().client  # typed per service name; ours is a variable
        return make_client(service, endpoint_url=self.aws_endpoint_url)

    def apply_to_environment(self) -> None:
        """Layer code (store, services) reads its configuration from the environment, and makes its
        clients from boto3's default session: the target's profile and region."""
        boto3.setup_default_session(profile_name=self.profile, region_name=self.region)
        os.environ["TABLE_NAME"] = self.table_name
        if self.idempotency_table_name:
            os.environ["IDEMPOTENCY_TABLE_NAME"] = self.idempotency_table_name
        if self.aws_endpoint_url:
            os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        if self.region:
            os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        for name, value in (
            ("OCELOT_BASE_URL", self.ocelot_base_url),
            ("OCELOT_SECRET_ID", self.ocelot_secret_id),
            ("WEBHOOK_SECRET_ID", self.webhook_secret_id),
        ):
            if value:
                os.environ[name] = value


def find_local_stack_file(start: Path) -> Path:
    """.local/stack.json in `start` or the nearest folder above it, up to the checkout's root (the
    folder with .git): `--local` works from anywhere inside the checkout."""
    for folder in (start, *start.parents):
        candidate = folder / LOCAL_STACK_FILE
        if candidate.exists():
            return candidate
        if (folder / ".git").exists():
            break
    raise TargetError(
        f"no local stack: no {LOCAL_STACK_FILE} in {start} or the folders above it up to the "
        "checkout's root; start one with `make local-up` in the checkout, or give --stack-file PATH"
    )


def local_target(path: Path) -> Target:
    """The stack `make local-up` started: its endpoints, tables and fake AWS credentials."""
    if not path.exists():
        raise TargetError(f"{path} not found: start the local stack with `make local-up`")
    stack = json.loads(path.read_text())
    if not stack.get("api_url"):
        raise TargetError(f"{path} has no api_url: the local stack does not serve the functions")
    for name, value in stack.get("aws_credentials", {}).items():
        os.environ[name.upper()] = value
    return Target(
        api_url=stack["api_url"],
        queue_url=stack["queue_url"],
        dlq_url=stack["dlq_url"],
        table_name=stack["tables"]["messages"],
        idempotency_table_name=stack["tables"].get("idempotency", ""),
        aws_endpoint_url=stack["aws_endpoint_url"],
        region=stack.get("region", "us-east-1"),
        ocelot_base_url=stack.get("sandbox_url"),
        ocelot_secret_id=stack.get("secrets", {}).get("ocelot"),
        webhook_secret_id=stack.get("secrets", {}).get("webhook"),
        name=f"local ({path})",
    )


def stack_target(stack_name: str, region: str | None = None, profile: str | None = None) -> Target:
    session = boto3.Session(profile_name=profile, region_name=region)
    cloudformation = session.client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            raise TargetError(
                f"stack {stack_name!r} not found in {cloudformation.meta.region_name}: check --stack "
                "(or OCELOT_SMS_STACK) and --region; `aws cloudformation list-stacks` lists them"
            ) from error
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stacks[0].get("Parameters", [])}
    missing = [name for name in _OUTPUTS if name not in outputs]
    if missing:
        raise TargetError(
            f"stack {stack_name!r} has no output(s) {', '.join(missing)}: is it an ocelot-sms stack, "
            "fully deployed?"
        )
    return Target(
        **{field: outputs[name] for name, field in _OUTPUTS.items()},
        region=cloudformation.meta.region_name,
        ocelot_base_url=parameters.get("OcelotBaseUrl"),
        ocelot_secret_id=outputs.get("OcelotSecretId"),
        webhook_secret_id=outputs.get("WebhookSecretId"),
        profile=profile,
        name=stack_name,
    )
