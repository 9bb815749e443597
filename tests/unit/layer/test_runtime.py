"""Wiring: one client, store and service per container, configured from the environment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocelot_sms import runtime
from ocelot_sms.credentials import CredentialsError
from ocelot_sms.errors import Unauthorized
from ocelot_sms.settings import get_settings
from ocelot_sms.store import DynamoStore
from ocelot_sms.webhook import WebhookService
from tests.unit.support.aws import WEBHOOK_CREDENTIALS


def test_objects_are_created_once_per_container(aws: dict[str, Any]) -> None:
    # Given a fresh container; When each factory is called twice; Then the same object both times
    assert runtime.dynamodb_client() is runtime.dynamodb_client()
    assert runtime.store() is runtime.store()
    assert runtime.webhook_service() is runtime.webhook_service()


def test_reset_forgets_everything(aws: dict[str, Any]) -> None:
    client, store, service, settings = (
        runtime.dynamodb_client(),
        runtime.store(),
        runtime.webhook_service(),
        get_settings(),
    )
    runtime.reset()
    assert runtime.dynamodb_client() is not client
    assert runtime.store() is not store
    assert runtime.webhook_service() is not service
    assert get_settings() is not settings


def test_the_dynamodb_client_has_a_pool_for_every_writer(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]
) -> None:
    # Given 40 concurrent event writers; Then 40 connections, bounded timeouts and standard retries
    monkeypatch.setenv("WEBHOOK_WRITE_CONCURRENCY", "40")
    runtime.reset()
    config: Any = runtime.dynamodb_client().meta.config
    assert config.max_pool_connections == 40
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}  # 4 retries after the first
    # And never fewer than 10
    monkeypatch.setenv("WEBHOOK_WRITE_CONCURRENCY", "2")
    runtime.reset()
    config = runtime.dynamodb_client().meta.config
    assert config.max_pool_connections == 10


def test_the_store_uses_the_configured_table_and_retention(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any], env: dict[str, str]
) -> None:
    monkeypatch.setenv("DATA_RETENTION_DAYS", "90")
    runtime.reset()
    store = runtime.store()
    assert isinstance(store, DynamoStore)
    assert store._table == env["TABLE_NAME"]
    assert store._retention_days == 90
    assert store._client is runtime.dynamodb_client()


def accepts(service: WebhookService, basic: tuple[str, str] | None, token: str | None) -> bool:
    try:
        service.authenticate(basic, token)
    except Unauthorized:
        return False
    return True


def test_the_webhook_service_reads_the_webhook_secret(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]
) -> None:
    # Given the webhook secret in Secrets Manager
    runtime.reset()
    service = runtime.webhook_service()
    # Then it accepts the secret's Basic credentials and token, and nothing else
    assert isinstance(service, WebhookService)
    assert accepts(service, (WEBHOOK_CREDENTIALS["username"], WEBHOOK_CREDENTIALS["password"]), None)
    assert accepts(service, None, WEBHOOK_CREDENTIALS["token"])
    assert not accepts(service, ("ocelot", "nope"), "nope")


def test_the_applier_writes_with_the_configured_concurrency(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]
) -> None:
    monkeypatch.setenv("WEBHOOK_WRITE_CONCURRENCY", "5")
    runtime.reset()
    assert runtime.applier_service()._executor._max_workers == 5
    assert runtime.applier_service() is runtime.applier_service()


def test_a_rotated_webhook_secret_applies_once_the_cache_expires(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any], env: dict[str, str]
) -> None:
    # Given no secret caching, and a service that accepted the first password
    monkeypatch.setenv("SECRET_MAX_AGE_SECONDS", "0")
    runtime.reset()
    service = runtime.webhook_service()
    assert accepts(service, ("ocelot", WEBHOOK_CREDENTIALS["password"]), None)
    # When an operator puts a new password in the secret
    aws["secretsmanager"].put_secret_value(
        SecretId=env["WEBHOOK_SECRET_ID"], SecretString=json.dumps({"username": "ocelot", "password": "new"})
    )
    # Then the same service accepts the new one and refuses the old one and the removed token
    assert accepts(service, ("ocelot", "new"), None)
    assert not accepts(service, ("ocelot", WEBHOOK_CREDENTIALS["password"]), None)
    assert not accepts(service, None, WEBHOOK_CREDENTIALS["token"])


def test_a_webhook_secret_without_credentials_is_refused(
    aws: dict[str, Any], env: dict[str, str], emf: Any
) -> None:
    # Given a secret holding neither a username+password nor a token
    aws["secretsmanager"].put_secret_value(
        SecretId=env["WEBHOOK_SECRET_ID"], SecretString=json.dumps({"x": 1})
    )
    # Then authentication fails loudly rather than letting anyone in
    with pytest.raises(CredentialsError):
        runtime.webhook_service().authenticate(None, None)


def test_the_sender_service_can_be_built(aws: dict[str, Any]) -> None:
    # Given the environment of the tests; Then the Sender's wiring builds once and is reused
    service = runtime.sender_service()
    assert service is runtime.sender_service()
