"""Unit-test fixtures: AWS is moto's in-process mock; nothing leaves the process."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from ocelot_sms import runtime
from tests.unit.support.aws import (
    OCELOT_CREDENTIALS,
    OCELOT_URL,
    WEBHOOK_CREDENTIALS,
    CurrentStdout,
    DynamoFaults,
    EmfReader,
    FakeContext,
    scan_table,
)
from tools.template_resources import create_table


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
    """Tables (from template.yaml's definitions) and secrets in moto; fresh per test.

    boto3's default session is kept from test to test (moto would make a new one each time): a client
    from a new session loads its service model again, about 50 ms per client."""
    runtime.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, "MessagesTable", env["TABLE_NAME"])
        create_table(dynamodb, "IdempotencyTable", env["IDEMPOTENCY_TABLE_NAME"])
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=env["OCELOT_SECRET_ID"], SecretString=json.dumps(OCELOT_CREDENTIALS))
        secrets.create_secret(Name=env["WEBHOOK_SECRET_ID"], SecretString=json.dumps(WEBHOOK_CREDENTIALS))
        yield {"dynamodb": dynamodb, "secretsmanager": secrets}
    runtime.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture
def table_items(aws: dict[str, Any], env: dict[str, str]) -> Callable[[], list[dict[str, Any]]]:
    """Scan the messages table: `table_items()` lists every item in it now."""
    return lambda: scan_table(aws["dynamodb"], env["TABLE_NAME"])


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
        monkeypatch.setattr(handler, "stream", CurrentStdout())
    capsys.readouterr()
    yield EmfReader(capsys)
    metrics.clear_metrics()


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
