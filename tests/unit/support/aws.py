"""What the unit tests share besides fixtures: the test credentials, a Lambda context, reading a table
as plain values, the EMF metrics a function printed, and DynamoDB faults without a network."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.exceptions import ClientError

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


class CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


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
