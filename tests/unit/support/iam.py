"""The AWS calls code makes, and whether a policy of template.yaml allows them: what the tests of the
functions' roles and of the policies handed out (CallerPolicy, OperatorPolicy, ResendPolicy) hold
against each other.

A call is named by its IAM action and the template resource it touches ("MessagesTable/index/GSI1",
"SendQueue", "GET /sends/*"...); a statement's resources are read from the template's own expressions
(!GetAtt X.Arn, !Sub ${X.Arn}/index/I, the execute-api route ARNs, !If on a created secret).
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

from tools.template_resources import resource

# Operations authorized by another operation's action (the IAM reference's "Actions" column).
_AUTHORIZED_BY = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
STACK = "Stack"  # AWS::StackId: the stack itself
_ROUTE_ARN = re.compile(r"^arn:\$\{AWS::Partition\}:execute-api:.*:\$\{HttpApi\}/\*/(\w+)(/.*)$")


@dataclass(frozen=True)
class Call:
    action: str  # the IAM action, e.g. "dynamodb:Query"
    resource: str  # what it touched, as a template resource: "MessagesTable/index/GSI1", "GET /sends"


class Recorder:
    """Every AWS API call any client makes while it records (see record_calls)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.calls: list[Call] = []
        self._names = names
        self._paused = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Calls made in the block are not recorded (another party's: a Lambda handler answering the
        API in-process)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def add(self, action: str, params: Mapping[str, Any]) -> None:
        if not self._paused:
            action = _AUTHORIZED_BY.get(action, action)
            self.calls.extend(Call(action, touched) for touched in _touched(params, self._names))


def record_calls(monkeypatch: pytest.MonkeyPatch, names: Mapping[str, str]) -> Recorder:
    """Every AWS API call any client makes from now on. `names` maps the local names and URLs of
    tables, queues and secrets (TableName, QueueUrl, SecretId) to their template logical ids; a name
    not in it is kept as it is."""
    recorder = Recorder(names)
    make_api_call = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        recorder.add(f"{self.meta.service_model.signing_name}:{operation_name}", api_params)
        return make_api_call(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return recorder


def _touched(params: Mapping[str, Any], names: Mapping[str, str]) -> Iterator[str]:
    if "StackName" in params:
        yield STACK
    for key in ("QueueUrl", "SecretId"):
        if key in params:
            yield names.get(params[key], params[key])
    tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
    for table in tables:
        index = params.get("IndexName")
        yield names.get(table, table) + (f"/index/{index}" if index else "")


def api_call(request: str) -> Call:
    """A request to the HTTP API as the test's API stand-in records it: "GET /sends?limit=5"."""
    return Call("execute-api:Invoke", request.split("?", 1)[0])


def policy_statements(logical_id: str) -> list[dict[str, Any]]:
    """The statements of an AWS::IAM::ManagedPolicy, or of a function's inline policies."""
    properties = resource(logical_id)["Properties"]
    if "PolicyDocument" in properties:
        return list(properties["PolicyDocument"]["Statement"])
    return [s for policy in properties.get("Policies", []) for s in policy.get("Statement", [])]


def statement_resources(statement: Mapping[str, Any]) -> set[str]:
    value = statement["Resource"]
    return {_resource_name(v) for v in (value if isinstance(value, list) else [value])}


def _resource_name(node: Any) -> str:
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        return str(node["Fn::GetAtt"][0])
    if isinstance(node, dict) and "Fn::If" in node:  # a secret the stack creates, or one it is given
        return _resource_name(node["Fn::If"][1])
    if isinstance(node, dict) and "Ref" in node:
        return STACK if node["Ref"] == "AWS::StackId" else str(node["Ref"])
    if isinstance(node, dict) and "Fn::Sub" in node:
        text = str(node["Fn::Sub"])
        route = _ROUTE_ARN.match(text)
        if route:
            return f"{route[1]} {route[2]}"
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", text)
    return str(node)


def allows(statements: list[dict[str, Any]], call: Call) -> bool:
    """Whether an Allow statement names the call's action and a resource that matches it (an ARN's
    `*` matches any characters, as IAM's does)."""
    return any(
        statement["Effect"] == "Allow"
        and call.action in _actions(statement)
        and any(fnmatch.fnmatchcase(call.resource, pattern) for pattern in statement_resources(statement))
        for statement in statements
    )


def _actions(statement: Mapping[str, Any]) -> list[str]:
    value = statement.get("Action", [])
    return [value] if isinstance(value, str) else list(value)


def refused(statements: list[dict[str, Any]], calls: list[Call]) -> list[Call]:
    """The calls no statement allows, each once, in the order they were made."""
    return list(dict.fromkeys(c for c in calls if not allows(statements, c)))
