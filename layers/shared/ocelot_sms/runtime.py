"""Wiring: each AWS client, store and service is created once per container and reused."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ocelot_sms.settings import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

    from ocelot_sms.applier import ApplierService
    from ocelot_sms.ocelot_client import HttpOcelotClient
    from ocelot_sms.publisher import PublisherService
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


def _client(service: str) -> Any:
    """A client for a call or two per invocation: short timeouts, standard retries."""
    make: Any = boto3.client  # typed per service name; not every service has stubs installed
    return make(service, config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"}))


@cache
def sqs_client() -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


@cache
def scheduler_client() -> Any:
    return _client("scheduler")


@cache
def events_client() -> Any:
    return _client("events")


class EventBridgeSchedules:
    """One-time EventBridge Scheduler schedules whose target puts a message on the send queue."""

    def __init__(self, group: str, role_arn: str, queue_arn: str) -> None:
        self._group, self._role_arn, self._queue_arn = group, role_arn, queue_arn

    def create(self, name: str, at: datetime, body: str) -> bool:
        from ocelot_sms.scheduling import at_expression

        try:
            scheduler_client().create_schedule(
                Name=name,
                GroupName=self._group,
                ScheduleExpression=at_expression(at),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={"Arn": self._queue_arn, "RoleArn": self._role_arn, "Input": body},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConflictException":
                return False
            raise
        return True

    def delete(self, name: str) -> bool:
        try:
            scheduler_client().delete_schedule(Name=name, GroupName=self._group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise
        return True


class EventBridgeBus:
    """PutEvents on one bus, ten entries a request (its limit); an entry refused, or in a request
    that failed, is reported by its position."""

    def __init__(self, bus_name: str) -> None:
        self._bus = bus_name

    def put(self, entries: Sequence[dict[str, Any]]) -> list[int]:
        failed: list[int] = []
        for start in range(0, len(entries), 10):
            group = [{**entry, "EventBusName": self._bus} for entry in entries[start : start + 10]]
            try:
                answers = events_client().put_events(Entries=group)["Entries"]
            except (ClientError, BotoCoreError):
                failed.extend(range(start, start + len(group)))
                continue
            failed.extend(start + i for i, answer in enumerate(answers) if answer.get("ErrorCode"))
        return failed


@cache
def sender_service() -> SenderService:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from ocelot_sms.sender import SenderService

    settings = get_settings()
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table_name, boto3_client=dynamodb_client()
    )
    queue = SqsSendQueue(settings.send_queue_url) if settings.send_queue_url else None
    schedules = None
    if settings.schedule_group_name and settings.schedule_role_arn and settings.send_queue_arn:
        schedules = EventBridgeSchedules(
            settings.schedule_group_name, settings.schedule_role_arn, settings.send_queue_arn
        )
    return SenderService(settings, store(), ocelot_client(), persistence, queue, schedules)


@cache
def publisher_service() -> PublisherService:
    from ocelot_sms.publisher import PublisherService

    return PublisherService(store(), EventBridgeBus(get_settings().event_bus_name))


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
        scheduler_client,
        events_client,
        publisher_service,
    ):
        factory.cache_clear()
