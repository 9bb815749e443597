"""Wiring: each AWS client, store and service is created once per container and reused."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from ocelot_sms.settings import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

    from ocelot_sms.applier import ApplierService
    from ocelot_sms.ocelot_client import HttpOcelotClient
    from ocelot_sms.sender import SenderService
    from ocelot_sms.status import StatusService
    from ocelot_sms.store import DynamoStore
    from ocelot_sms.webhook import WebhookService


@cache
def dynamodb_client() -> DynamoDBClient:
    settings = get_settings()
    config = Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": "standard", "max_attempts": 4},
        # One connection per concurrent event writer, or the pool becomes the bottleneck.
        max_pool_connections=max(10, settings.webhook_write_concurrency),
        # DynamoDB validates every request itself; botocore's client-side pass walks every attribute of
        # every item in Python first: ~20% of the Sender's CPU per message (docs/performance.md).
        parameter_validation=False,
    )
    return boto3.client("dynamodb", config=config)


@cache
def store() -> DynamoStore:
    from ocelot_sms.store import DynamoStore

    settings = get_settings()
    return DynamoStore(dynamodb_client(), settings.table_name, settings.data_retention_days)


@cache
def secrets_provider() -> SecretsProvider:
    """Powertools Parameters over a Secrets Manager client with short timeouts: a stalled read fails
    in seconds, before anything is claimed, instead of botocore's 60 s per attempt."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    timeout = get_settings().secrets_timeout_seconds
    config = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"mode": "standard", "total_max_attempts": 2}
    )
    return SecretsProvider(boto3_client=boto3.client("secretsmanager", config=config))


@cache
def ocelot_client() -> HttpOcelotClient:
    # Imported here: the webhook never pays for requests and urllib3 at cold start.
    from ocelot_sms.credentials import OcelotCredentials
    from ocelot_sms.ocelot_client import HttpOcelotClient

    settings = get_settings()

    def credentials(force_fetch: bool) -> OcelotCredentials:
        return OcelotCredentials.load(
            settings.ocelot_secret_id, settings.secret_max_age_seconds, force_fetch, secrets_provider()
        )

    return HttpOcelotClient(
        settings.ocelot_base_url,
        credentials,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        max_attempts=settings.max_send_attempts,
        max_retry_wait=settings.max_retry_wait_seconds,
        concurrency=settings.send_concurrency,
    )


class SqsSendQueue:
    """The send queue, for the chunks POST /batches hands over (its SQS client is made on first use)."""

    def __init__(self, queue_url: str) -> None:
        self._url = queue_url

    def put(self, body: str) -> None:
        sqs_client().send_message(QueueUrl=self._url, MessageBody=body)


@cache
def sqs_client() -> SQSClient:
    return boto3.client("sqs", config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"}))


@cache
def sender_service() -> SenderService:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from ocelot_sms.sender import SenderService

    settings = get_settings()
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table_name, boto3_client=dynamodb_client()
    )
    queue = SqsSendQueue(settings.send_queue_url) if settings.send_queue_url else None
    return SenderService(settings, store(), ocelot_client(), persistence, queue)


@cache
def status_service() -> StatusService:
    from ocelot_sms.status import StatusService

    return StatusService(store())


@cache
def webhook_service() -> WebhookService:
    from ocelot_sms.credentials import WebhookCredentials
    from ocelot_sms.webhook import WebhookService

    settings = get_settings()

    def credentials(force_fetch: bool) -> WebhookCredentials:
        return WebhookCredentials.load(
            settings.webhook_secret_id, settings.secret_max_age_seconds, force_fetch
        )

    return WebhookService(settings, store(), credentials)


@cache
def applier_service() -> ApplierService:
    from ocelot_sms.applier import ApplierService

    return ApplierService(get_settings(), store())


def reset() -> None:
    """Forget every cached object (tests change the environment between cases)."""
    for factory in (
        get_settings,
        dynamodb_client,
        store,
        secrets_provider,
        ocelot_client,
        sqs_client,
        sender_service,
        webhook_service,
        applier_service,
        status_service,
    ):
        factory.cache_clear()
