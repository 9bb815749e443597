"""template.yaml, read once for the tests and the tools: its tables and queues created elsewhere (moto)
from the SAME definitions, and each function as the template deploys it (handler, code, timeout,
memory, environment with its intrinsics resolved, HTTP routes, SQS event sources, the event source
mappings that read a table's stream).

Nothing about the resources or the functions is written down a second time, so nothing can drift
from what is deployed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
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
    dlq_url = create_queue(client, dlq_id, prefix)
    return create_queue(client, queue_id, prefix, {dlq_id: dlq_url}), dlq_url


def create_queue(client: Any, logical_id: str, prefix: str, created: Mapping[str, str] | None = None) -> str:
    """One queue with the template's attributes; its redrive policy, if any, names a queue already in
    `created` (logical id -> URL). Returns its URL."""
    attributes = _queue_attributes(logical_id)
    redrive = resource(logical_id)["Properties"].get("RedrivePolicy")
    if redrive:
        target = _get_att(redrive["deadLetterTargetArn"], "Arn", f"{logical_id}.RedrivePolicy")
        dlq_arn = client.get_queue_attributes(QueueUrl=(created or {})[target], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
        )
    url: str = client.create_queue(QueueName=f"{prefix}-{logical_id}", Attributes=attributes)["QueueUrl"]
    return url


def create_queues(client: Any, prefix: str) -> dict[str, str]:
    """Every AWS::SQS::Queue of the template, dead-letter queues before the queues that name them.
    Returns logical id -> URL."""
    queues = [name for name, spec in load_template()["Resources"].items() if spec["Type"] == QUEUE_TYPE]
    redriven = [q for q in queues if "RedrivePolicy" in resource(q)["Properties"]]
    created: dict[str, str] = {}
    for logical_id in [q for q in queues if q not in redriven] + redriven:
        created[logical_id] = create_queue(client, logical_id, prefix, created)
    return created


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
QUEUE_TYPE = "AWS::SQS::Queue"
MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
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
class StreamSource:
    """An AWS::Lambda::EventSourceMapping that reads a table's stream, with what Lambda does with it."""

    mapping: str  # logical id of the mapping
    table: str  # logical id of the table whose stream it reads
    batch_size: int
    batching_window_seconds: float
    starting_position: str  # TRIM_HORIZON or LATEST
    bisect_on_error: bool
    maximum_retry_attempts: int  # -1: until the record leaves the stream
    report_batch_item_failures: bool
    parallelization_factor: int
    filters: tuple[dict[str, Any], ...]  # FilterCriteria patterns; none: every record
    on_failure: str | None  # logical id of the queue a spent batch's metadata goes to

    def accepts(self, record: Mapping[str, Any]) -> bool:
        """Whether a stream record (Lambda's JSON) passes the filter criteria: any pattern matching."""
        return not self.filters or any(_matches(record, pattern) for pattern in self.filters)


def _matches(value: Any, pattern: Mapping[str, Any]) -> bool:
    """Lambda's filter patterns as far as plain values go: every key of the pattern present, nested
    objects matched in turn, a list of values matched by equality with one of them."""
    if not isinstance(value, Mapping):
        return False
    for key, wanted in pattern.items():
        if isinstance(wanted, Mapping):
            if not _matches(value.get(key), wanted):
                return False
        elif key not in value or value[key] not in wanted:
            return False
    return True


def _plain_pattern(pattern: Any, where: str) -> dict[str, Any]:
    """A filter pattern the local poller can apply exactly, or a TemplateError (no silent guess)."""
    if not isinstance(pattern, dict):
        raise TemplateError(f"{where}: a filter pattern must be a JSON object")
    for key, wanted in pattern.items():
        if isinstance(wanted, dict):
            _plain_pattern(wanted, f"{where}.{key}")
        elif not isinstance(wanted, list) or any(isinstance(v, dict | list) for v in wanted):
            raise TemplateError(f"{where}.{key}: only lists of plain values are emulated locally")
    return pattern


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
    stream_sources: tuple[StreamSource, ...] = ()


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


def _get_att(node: Any, attribute: str, where: str) -> str:
    """The logical id in `!GetAtt <id>.<attribute>`, or a TemplateError."""
    if not (isinstance(node, dict) and list(node) == ["Fn::GetAtt"] and node["Fn::GetAtt"][1] == attribute):
        raise TemplateError(f"{where}: expected !GetAtt <resource>.{attribute}")
    return str(node["Fn::GetAtt"][0])


def _mappings(attribute: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """The template's event source mappings whose source is `!GetAtt <resource>.<attribute>` (StreamArn:
    a table's stream; Arn: a queue): each one's logical id, properties and function."""
    for logical_id, spec in load_template()["Resources"].items():
        if spec.get("Type") != MAPPING_TYPE:
            continue
        given = spec["Properties"]
        source = given["EventSourceArn"]
        if not (isinstance(source, dict) and list(source) == ["Fn::GetAtt"]):
            raise TemplateError(f"{logical_id}.EventSourceArn: expected !GetAtt <resource>.<attribute>")
        if source["Fn::GetAtt"][1] != attribute:
            continue
        function = given["FunctionName"].get("Ref") if isinstance(given["FunctionName"], dict) else None
        if function is None:
            raise TemplateError(f"{logical_id}: FunctionName must be !Ref <function>")
        yield logical_id, given, function


def queue_sources(resolver: Resolver) -> dict[str, list[SqsSource]]:
    """The template's event source mappings on a queue, by the function they invoke."""
    sources: dict[str, list[SqsSource]] = {}
    for logical_id, given, function in _mappings("Arn"):
        queue = _get_att(given["EventSourceArn"], "Arn", f"{logical_id}.EventSourceArn")
        if load_template()["Resources"][queue].get("Type") != QUEUE_TYPE:
            raise TemplateError(f"{logical_id}: only queues and table streams are emulated locally")
        sources.setdefault(function, []).append(_sqs_source(queue, given, resolver))
    return sources


def _sqs_source(queue: str, given: Mapping[str, Any], resolver: Resolver) -> SqsSource:
    """An SQS event source mapping's properties, resolved."""
    return SqsSource(
        queue=queue,
        batch_size=int(resolver.value(given.get("BatchSize", 10))),
        batching_window_seconds=float(resolver.value(given.get("MaximumBatchingWindowInSeconds", 0))),
        report_batch_item_failures="ReportBatchItemFailures"
        in resolver.value(given.get("FunctionResponseTypes", [])),
    )


def stream_sources(resolver: Resolver) -> dict[str, list[StreamSource]]:
    """The template's event source mappings on a table's stream, by the function they invoke."""
    sources: dict[str, list[StreamSource]] = {}
    for logical_id, given, function in _mappings("StreamArn"):
        table = _get_att(given["EventSourceArn"], "StreamArn", f"{logical_id}.EventSourceArn")
        destination = given.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        patterns = [f["Pattern"] for f in given.get("FilterCriteria", {}).get("Filters", [])]

        def get(key: str, default: Any, given: Mapping[str, Any] = given) -> Any:
            return resolver.value(given.get(key, default))

        sources.setdefault(function, []).append(
            StreamSource(
                mapping=logical_id,
                table=table,
                batch_size=int(get("BatchSize", 100)),
                batching_window_seconds=float(get("MaximumBatchingWindowInSeconds", 0)),
                starting_position=str(get("StartingPosition", "LATEST")),
                bisect_on_error=bool(get("BisectBatchOnFunctionError", False)),
                maximum_retry_attempts=int(get("MaximumRetryAttempts", -1)),
                report_batch_item_failures="ReportBatchItemFailures" in get("FunctionResponseTypes", []),
                parallelization_factor=int(get("ParallelizationFactor", 1)),
                filters=tuple(
                    _plain_pattern(json.loads(str(p)), f"{logical_id}.FilterCriteria") for p in patterns
                ),
                on_failure=_get_att(destination, "Arn", f"{logical_id}.OnFailure") if destination else None,
            )
        )
    return sources


def function_specs(resolver: Resolver) -> list[FunctionSpec]:
    """Every function of the template, its properties resolved (Globals first, its own on top)."""
    template = load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    streams = stream_sources(resolver)
    queues = queue_sources(resolver)
    specs = []
    for logical_id, spec in template["Resources"].items():
        if spec.get("Type") != FUNCTION_TYPE:
            continue
        properties = {**globals_, **spec.get("Properties", {})}
        environment = resolver.value(function_environment(logical_id))
        routes: list[HttpRoute] = []
        # SQS events are event source mappings of their own (SAM's SQS event attaches a policy that
        # reads every queue of the account): queue_sources.
        sources: list[SqsSource] = list(queues.get(logical_id, ()))
        for name, event in properties.get("Events", {}).items():
            given = event.get("Properties", {})

            def get(key: str, default: Any = None, given: Mapping[str, Any] = given) -> Any:
                return resolver.value(given.get(key, default))

            match event.get("Type"):
                case "HttpApi":
                    routes.append(HttpRoute(str(get("Method")).upper(), str(get("Path"))))
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
                stream_sources=tuple(streams.get(logical_id, ())),
            )
        )
    return specs
