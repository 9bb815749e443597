"""What template.yaml says about each function, resolved against the local resources.

The local stack serves the functions the way the template deploys them: the same handler, code and
layer folders, timeout, environment (Globals + the function's own, intrinsics resolved against the
moto resources and the parameters' defaults or local overrides), HTTP API routes and SQS event source
settings. Nothing about the functions is written down a second time here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.template_resources import ROOT, function_environment, load_template

FUNCTION_TYPE = "AWS::Serverless::Function"
_NO_VALUE = object()


class TemplateError(ValueError):
    """The template uses something the local stack does not emulate."""


@dataclass(frozen=True, slots=True)
class HttpRoute:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class ScheduleSource:
    """Not run on a timer locally (an hourly job would never fire in a demo): POST /_local/invoke/<fn>."""

    name: str
    expression: str


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
    layer_dirs: tuple[Path, ...]
    timeout_seconds: int
    memory_mb: int
    environment: Mapping[str, str]
    routes: tuple[HttpRoute, ...]
    sqs_sources: tuple[SqsSource, ...]
    schedules: tuple[ScheduleSource, ...] = ()


class Resolver:
    """Resolves the intrinsics the template uses (Ref, Fn::GetAtt .Arn, Fn::If, Fn::Sub, conditions)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, str],
        refs: Mapping[str, str],
        arns: Mapping[str, str],
        region: str,
        account_id: str,
    ) -> None:
        self._template = template
        declared = template.get("Parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
        self.parameters = {
            name: str(parameters.get(name, spec.get("Default", ""))) for name, spec in declared.items()
        }
        self._refs = {
            **refs,
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
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
            if key == "Fn::Sub":
                return self._sub(argument)
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
            case "Fn::And":
                return all(self._condition(v) for v in argument)
            case "Fn::Or":
                return any(self._condition(v) for v in argument)
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

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.value(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self.value({"Fn::GetAtt": [logical_id, attribute]}))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!][^}]*)\}", replace, text)


def _as_int(value: Any) -> int:
    return int(str(value))


def function_specs(resolver: Resolver) -> list[FunctionSpec]:
    template = load_template()
    resources: Mapping[str, Any] = template["Resources"]
    globals_ = template.get("Globals", {}).get("Function", {})
    specs = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        properties = {**globals_, **resource.get("Properties", {})}
        environment = {
            name: str(value)
            for name, value in resolver.value(function_environment(logical_id)).items()
            if value is not None
        }
        layer_dirs = []
        for layer in properties.get("Layers", []):
            layer_id = str(layer.get("Ref")) if isinstance(layer, dict) else ""
            if layer_id not in resources:
                raise TemplateError(f"{logical_id}: only layers defined in the template are emulated")
            layer_dirs.append(ROOT / resources[layer_id]["Properties"]["ContentUri"])
        routes: list[HttpRoute] = []
        sources: list[SqsSource] = []
        schedules: list[ScheduleSource] = []
        for name, event in properties.get("Events", {}).items():
            event_properties = event.get("Properties", {})
            match event.get("Type"):
                case "HttpApi":
                    routes.append(
                        HttpRoute(
                            str(resolver.value(event_properties["Method"])).upper(),
                            str(resolver.value(event_properties["Path"])),
                        )
                    )
                case "SQS":
                    queue = event_properties["Queue"]
                    if not (isinstance(queue, dict) and "Fn::GetAtt" in queue):
                        raise TemplateError(f"{logical_id}.{name}: the queue must be !GetAtt <Queue>.Arn")
                    sources.append(
                        SqsSource(
                            queue=queue["Fn::GetAtt"][0],
                            batch_size=_as_int(resolver.value(event_properties.get("BatchSize", 10))),
                            batching_window_seconds=float(
                                resolver.value(event_properties.get("MaximumBatchingWindowInSeconds", 0))
                            ),
                            report_batch_item_failures="ReportBatchItemFailures"
                            in resolver.value(event_properties.get("FunctionResponseTypes", [])),
                        )
                    )
                case "Schedule":
                    schedules.append(ScheduleSource(name, str(resolver.value(event_properties["Schedule"]))))
                case other:
                    raise TemplateError(f"{logical_id}.{name}: event type {other} is not emulated locally")
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                handler=str(properties["Handler"]),
                code_dir=ROOT / str(properties["CodeUri"]),
                layer_dirs=tuple(layer_dirs),
                timeout_seconds=_as_int(resolver.value(properties.get("Timeout", 3))),
                memory_mb=_as_int(resolver.value(properties.get("MemorySize", 128))),
                environment=environment,
                routes=tuple(routes),
                sqs_sources=tuple(sources),
                schedules=tuple(schedules),
            )
        )
    return specs
