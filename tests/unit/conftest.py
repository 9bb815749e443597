"""Unit-test fixtures: AWS is moto's in-process mock; nothing leaves the process."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.exceptions import ClientError
from moto import mock_aws

from ocelot_sms import runtime
from tools.template_resources import create_table

OCELOT_URL = "https://ocelot.test"
OCELOT_CREDENTIALS = {"chatbotId": "chatbot-uuid", "apiKey": "api-key-secret-value"}
WEBHOOK_CREDENTIALS = {
    "username": "ocelot",
    "password": "local-webhook-password",
    "token": "local-webhook-token",
}


@dataclass
class FakeContext:
    """The parts of the Lambda context the functions use."""

    remaining_ms: int = 60_000
    function_name: str = "ocelot-sms-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ocelot-sms-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "ocelot-sms",
        "POWERTOOLS_METRICS_NAMESPACE": "OcelotSms",
        "TABLE_NAME": "messages",
        "IDEMPOTENCY_TABLE_NAME": "idempotency",
        "OCELOT_BASE_URL": OCELOT_URL,
        "OCELOT_SECRET_ID": "ocelot-api",
        "WEBHOOK_SECRET_ID": "ocelot-webhook",
        "DEFAULT_SENDER": "+15550000000",
        "DEFAULT_OPERATOR_ID": "operator-1",
        "OCELOT_MAX_MESSAGES": "100",
        "MAX_SEND_ATTEMPTS": "3",
        "MAX_RETRY_WAIT_SECONDS": "2",
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def aws(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Tables (from template.yaml's definitions) and secrets in moto; fresh per test."""
    runtime.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, "MessagesTable", env["TABLE_NAME"])
        create_table(dynamodb, "IdempotencyTable", env["IDEMPOTENCY_TABLE_NAME"])
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=env["OCELOT_SECRET_ID"], SecretString=json.dumps(OCELOT_CREDENTIALS))
        secrets.create_secret(Name=env["WEBHOOK_SECRET_ID"], SecretString=json.dumps(WEBHOOK_CREDENTIALS))
        yield {"dynamodb": dynamodb, "secretsmanager": secrets}
    runtime.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


# ---- webhook, callback and store tests ---------------------------------------------------------


def scan_table(client: Any, table_name: str) -> list[dict[str, Any]]:
    """Every item of a table, as plain Python values (numbers as int, binaries as bytes)."""
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=table_name, ConsistentRead=True):
        items.extend(
            {k: _plain_value(_deserializer.deserialize(v)) for k, v in item.items()} for item in page["Items"]
        )
    return items


def _plain_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, Binary):
        data: Any = value  # the stubs type Binary.__bytes__ as returning str
        return bytes(data)
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


_deserializer = TypeDeserializer()


@pytest.fixture
def table_items(aws: dict[str, Any], env: dict[str, str]) -> Callable[[], list[dict[str, Any]]]:
    """Scan the messages table: `table_items()` lists every item in it now."""
    return lambda: scan_table(aws["dynamodb"], env["TABLE_NAME"])


class EmfReader:
    """CloudWatch EMF blobs the Metrics utility printed to stdout, summed by metric name."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.lines: list[str] = []

    def read(self) -> Counter[str]:
        """Metrics printed since the last read, after flushing those still pending as the end of an
        invocation would (log lines are kept in `lines`)."""
        from ocelot_sms.observability import metrics

        if metrics.metric_set:
            metrics.flush_metrics()
        totals: Counter[str] = Counter()
        self.lines = self._capsys.readouterr().out.splitlines()
        for line in self.lines:
            try:
                blob = json.loads(line)
            except ValueError:
                continue
            if not isinstance(blob, dict) or "_aws" not in blob:
                continue
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    values = blob[metric["Name"]]
                    totals[metric["Name"]] += int(sum(values) if isinstance(values, list) else values)
        return totals


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def emf(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[EmfReader]:
    """Metrics (and log lines) as Lambda prints them. The shared Metrics object is created when
    ocelot_sms.observability is first imported, which in tests is before `env` sets the namespace:
    set it here, as Lambda would."""
    from ocelot_sms.observability import logger, metrics

    monkeypatch.setattr(metrics, "namespace", "OcelotSms")
    monkeypatch.setattr(metrics, "service", "ocelot-sms")
    metrics.clear_metrics()
    # The log handler holds the stdout of import time: make it write to whatever stdout is now.
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        monkeypatch.setattr(handler, "stream", _CurrentStdout())
    capsys.readouterr()
    yield EmfReader(capsys)
    metrics.clear_metrics()


@dataclass
class Fault:
    """One injected failure rule; `injected` counts the calls it failed."""

    operation: str
    error: Exception
    times: int
    when: Callable[[dict[str, Any]], bool] | None
    injected: int = 0


class DynamoFaults:
    """Make a DynamoDB client's calls fail like DynamoDB does, without a network (a botocore hook)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def fail(
        self,
        client: Any,
        operation: str,
        *,
        times: int = 1,
        code: str = "ProvisionedThroughputExceededException",
        error: Exception | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Fault:
        """The next `times` calls of `operation` whose parameters match `when` raise `error` (by default a
        ClientError with `code`); later calls go through."""
        fault = Fault(
            operation,
            error or ClientError({"Error": {"Code": code, "Message": "injected by the test"}}, operation),
            times,
            when,
        )

        def hook(params: dict[str, Any], **_: Any) -> None:
            with self._lock:
                if fault.injected >= fault.times or (fault.when is not None and not fault.when(params)):
                    return
                fault.injected += 1
            raise fault.error

        client.meta.events.register(f"before-parameter-build.dynamodb.{operation}", hook)
        return fault


@pytest.fixture
def dynamo_faults() -> DynamoFaults:
    return DynamoFaults()


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each conditional write atomically; moto does not when called from many threads.
    Serialise moto's request handling so tests that write concurrently see DynamoDB's semantics."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)
