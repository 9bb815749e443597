"""Read template.yaml and create its tables and queues elsewhere (moto), from the SAME definitions.

Tests and the local stack call these instead of keeping a second, hand-written copy of the key
schema, indexes, TTL or redrive settings that could drift from what is deployed.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"

# Table properties CreateTable accepts as they are written in the template.
_CREATE_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !GetAtt, !If, ...) as their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader + CFN tags
    return template


def resource(logical_id: str, path: Path = TEMPLATE) -> dict[str, Any]:
    return load_template(path)["Resources"][logical_id]  # type: ignore[no-any-return]


def create_table(client: Any, logical_id: str, table_name: str) -> None:
    """CreateTable (and TTL) from the template's AWS::DynamoDB::Table definition."""
    properties = resource(logical_id)["Properties"]
    kwargs = {key: properties[key] for key in _CREATE_TABLE_KEYS if key in properties}
    stream = properties.get("StreamSpecification")
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    client.create_table(TableName=table_name, **kwargs)
    client.get_waiter("table_exists").wait(TableName=table_name)
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
        )


def create_queue_pair(client: Any, queue_id: str, dlq_id: str, prefix: str) -> tuple[str, str]:
    """The queue and its dead-letter queue with the template's attributes and redrive policy."""
    dlq_url = client.create_queue(QueueName=f"{prefix}-{dlq_id}", Attributes=_queue_attributes(dlq_id))[
        "QueueUrl"
    ]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = _queue_attributes(queue_id)
    redrive = resource(queue_id)["Properties"].get("RedrivePolicy")
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
        )
    queue_url = client.create_queue(QueueName=f"{prefix}-{queue_id}", Attributes=attributes)["QueueUrl"]
    return queue_url, dlq_url


def _queue_attributes(logical_id: str) -> dict[str, str]:
    properties = resource(logical_id)["Properties"]
    names = ("VisibilityTimeout", "MessageRetentionPeriod", "SqsManagedSseEnabled")
    return {
        name: str(properties[name]).lower() if isinstance(properties[name], bool) else str(properties[name])
        for name in names
        if name in properties
    }


def function_environment(logical_id: str) -> dict[str, Any]:
    """Globals + the function's own environment variables, intrinsic values left unresolved."""
    template = load_template()
    merged = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(resource(logical_id)["Properties"].get("Environment", {}).get("Variables", {}))
    return merged
