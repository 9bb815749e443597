"""Unit-test fixtures: AWS is moto's in-process mock; nothing leaves the process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from ocelot_sms import runtime
from tools.template_resources import create_table

OCELOT_URL = "https://ocelot.test"
OCELOT_CREDENTIALS = {"chatbotId": "chatbot-uuid", "apiKey": "api-key-secret-value"}
WEBHOOK_CREDENTIALS = {"username": "ocelot", "password": "local-webhook-password", "token": "local-webhook-token"}


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
    parameters.clear_caches()
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, "MessagesTable", env["TABLE_NAME"])
        create_table(dynamodb, "IdempotencyTable", env["IDEMPOTENCY_TABLE_NAME"])
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=env["OCELOT_SECRET_ID"], SecretString=json.dumps(OCELOT_CREDENTIALS))
        secrets.create_secret(Name=env["WEBHOOK_SECRET_ID"], SecretString=json.dumps(WEBHOOK_CREDENTIALS))
        yield {"dynamodb": dynamodb, "secretsmanager": secrets}
    runtime.reset()
    parameters.clear_caches()
