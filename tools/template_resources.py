"""template.yaml, read once for the tests and the tools: its tables and queues created elsewhere (moto)
from the SAME definitions, and each function as the template deploys it (handler, code, timeout,
memory, environment with its intrinsics resolved, HTTP routes, SQS event sources).

Nothing about the resources or the functions is written down a second time, so nothing can drift
from what is deployed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
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


# ---- the functions, resolved against local resources --------------------------------------------------

FUNCTION_TYPE = "AWS::Serverless::Function"
_NO_VALUE = object()


class TemplateError(ValueError):
    """The template uses something the local stack does not emulate."""


@dataclass(frozen=True, slots=True)
class HttpRoute:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class SqsSource:
    queue: str  # logical id of the queue
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    logical_id: str
    handler: str
    code_dir: Path
    timeout_seconds: int
    memory_mb: int
    environment: Mapping[str, str]
    routes: tuple[HttpRoute, ...]
    sqs_sources: tuple[SqsSource, ...]  # `Schedule` events are not run on a timer locally: on demand


class Resolver:
    """Resolves the intrinsics the functions' properties use (Ref, Fn::GetAtt .Arn, Fn::If and the
    conditions it names); anything else is a TemplateError, not a silent guess."""

    def __init__(
        self,
        *,
        parameters: Mapping[str, str],
        refs: Mapping[str, str],
        arns: Mapping[str, str],
        region: str,
        account_id: str,
    ) -> None:
        self._template = load_template()
        declared = self._template.get("Parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
        self.parameters = {
            name: str(parameters.get(name, p.get("Default", ""))) for name, p in declared.items()
        }
        pseudo = {"AWS::Region": region, "AWS::AccountId": account_id, "AWS::Partition": "aws"}
        self._refs = {
            **refs,
            **pseudo,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "ocelot-sms-local",
        }
        self._arns = arns

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument
                if attribute != "Arn" or logical_id not in self._arns:
                    raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not emulated locally")
                return self._arns[logical_id]
            if key == "Fn::If":
                condition, when_true, when_false = argument
                return self.value(when_true if self.condition(condition) else when_false)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not emulated locally")
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def condition(self, name: str) -> bool:
        return self._condition(self._template.get("Conditions", {})[name])

    def _condition(self, node: Any) -> bool:
        ((key, argument),) = node.items()
        match key:
            case "Fn::Equals":
                left, right = (str(self.value(v)).lower() for v in argument)
                return left == right
            case "Fn::Not":
                return not self._condition(argument[0])
            case "Condition":
                return self.condition(argument)
        raise TemplateError(f"condition function {key} is not emulated locally")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self._refs:
            return self._refs[name]
        raise TemplateError(f"Ref {name} has no local counterpart")


def function_specs(resolver: Resolver) -> list[FunctionSpec]:
    """Every function of the template, its properties resolved (Globals first, its own on top)."""
    template = load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    specs = []
    for logical_id, spec in template["Resources"].items():
        if spec.get("Type") != FUNCTION_TYPE:
            continue
        properties = {**globals_, **spec.get("Properties", {})}
        environment = resolver.value(function_environment(logical_id))
        routes: list[HttpRoute] = []
        sources: list[SqsSource] = []
        for name, event in properties.get("Events", {}).items():
            given = event.get("Properties", {})

            def get(key: str, default: Any = None, given: Mapping[str, Any] = given) -> Any:
                return resolver.value(given.get(key, default))

            match event.get("Type"):
                case "HttpApi":
                    routes.append(HttpRoute(str(get("Method")).upper(), str(get("Path"))))
                case "SQS":
                    queue = given["Queue"]
                    if not (isinstance(queue, dict) and "Fn::GetAtt" in queue):
                        raise TemplateError(f"{logical_id}.{name}: the queue must be !GetAtt <Queue>.Arn")
                    sources.append(
                        SqsSource(
                            queue=queue["Fn::GetAtt"][0],
                            batch_size=int(get("BatchSize", 10)),
                            batching_window_seconds=float(get("MaximumBatchingWindowInSeconds", 0)),
                            report_batch_item_failures="ReportBatchItemFailures"
                            in get("FunctionResponseTypes", []),
                        )
                    )
                case "Schedule":
                    pass
                case other:
                    raise TemplateError(f"{logical_id}.{name}: event type {other} is not emulated locally")
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                handler=str(properties["Handler"]),
                code_dir=ROOT / str(properties["CodeUri"]),
                timeout_seconds=int(resolver.value(properties.get("Timeout", 3))),
                memory_mb=int(resolver.value(properties.get("MemorySize", 128))),
                environment={k: str(v) for k, v in environment.items() if v is not None},
                routes=tuple(routes),
                sqs_sources=tuple(sources),
            )
        )
    return specs
