"""Where the CLI points: a deployed stack (CloudFormation outputs) or the local stack (.local/stack.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

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
    pass


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

    def client(self, service: str) -> Any:
        make_client: Any = boto3.client  # typed per service name; ours is a variable
        return make_client(service, endpoint_url=self.aws_endpoint_url, region_name=self.region)

    def apply_to_environment(self) -> None:
        """Layer code (store, services) reads its configuration from the environment."""
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


def local_target(path: Path = LOCAL_STACK_FILE) -> Target:
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
    )


def stack_target(stack_name: str, region: str | None = None) -> Target:
    cloudformation = boto3.client("cloudformation", region_name=region)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as error:
        raise TargetError(f"stack {stack_name!r}: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stacks[0].get("Parameters", [])}
    missing = [name for name in _OUTPUTS if name not in outputs]
    if missing:
        raise TargetError(f"stack {stack_name!r} has no output(s) {', '.join(missing)}")
    return Target(
        **{field: outputs[name] for name, field in _OUTPUTS.items()},
        region=region or cloudformation.meta.region_name,
        ocelot_base_url=parameters.get("OcelotBaseUrl"),
        ocelot_secret_id=outputs.get("OcelotSecretId"),
        webhook_secret_id=outputs.get("WebhookSecretId"),
    )
