"""AWS on loopback: one moto server (threads of the stack's process) with the template's resources.

Tables and queues are created by tools/template_resources.py from template.yaml's own definitions;
the two secrets take the template's descriptions and local, known values (the template generates
random ones, which the sandbox could not know).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import parse_qs

import boto3

from tools.local.serving import ServerThread
from tools.template_resources import create_queue_pair, create_table, resource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sqs.client import SQSClient

FAKE_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
ACCOUNT_ID = "123456789012"  # moto's default account

TABLES = ("MessagesTable", "IdempotencyTable")
QUEUE, DEAD_LETTER_QUEUE = "SendQueue", "SendDeadLetterQueue"
OCELOT_SECRET, WEBHOOK_SECRET = "OcelotApiSecret", "WebhookSecret"


class _Credentials(TypedDict):
    aws_access_key_id: str
    aws_secret_access_key: str
    aws_session_token: str


def _credentials() -> _Credentials:
    return _Credentials(
        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        aws_session_token=FAKE_CREDENTIALS["aws_session_token"],
    )


# Clients that can only reach the local endpoint, with fake credentials.
def dynamodb_client(endpoint_url: str, region: str) -> DynamoDBClient:
    return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region, **_credentials())


def sqs_client(endpoint_url: str, region: str) -> SQSClient:
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=region, **_credentials())


def secretsmanager_client(endpoint_url: str, region: str) -> SecretsManagerClient:
    return boto3.client("secretsmanager", endpoint_url=endpoint_url, region_name=region, **_credentials())


class AtomicRequests:
    """Runs each AWS request alone: moto's backends are not thread-safe, AWS's APIs are atomic.

    Without this, moto's UpdateItem on a new key first stores the bare key and then applies the update,
    so a concurrent read sees an item without its attributes, and two concurrent first updates can lose
    one (the webhook writes a delivery's events with many threads). A long-polling SQS ReceiveMessage
    (WaitTimeSeconds > 0) runs outside the lock, so a waiting consumer never stalls everything else.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if _is_long_poll(environ, body):
            return self._app(environ, start_response)
        with self._lock:
            # Consumed inside the lock: a lazy response body would otherwise run outside it.
            return list(self._app(environ, start_response))


def _is_long_poll(environ: Mapping[str, Any], body: bytes) -> bool:
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    try:
        if target == "AmazonSQS.ReceiveMessage":  # JSON protocol
            return int(json.loads(body or b"{}").get("WaitTimeSeconds") or 0) > 0
        if not target and b"Action=ReceiveMessage" in body:  # query protocol
            return int(parse_qs(body.decode()).get("WaitTimeSeconds", ["0"])[0]) > 0
    except (ValueError, AttributeError):
        return False
    return False


class MotoServer:
    """moto's server app in a thread on a free loopback port.

    What ThreadedMotoServer does (the same app and request handler), through ServerThread, because
    ThreadedMotoServer builds its app internally and gives no way to wrap it in AtomicRequests.
    """

    def __init__(self) -> None:
        # Imported here: drivers use this module's clients without loading moto.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        app = AtomicRequests(DomainDispatcherApplication(create_backend_app))
        self._server = ServerThread(app, "moto", request_handler=MotoRequestHandler)
        self.url = self._server.url

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@dataclass(frozen=True, slots=True)
class LocalResources:
    endpoint_url: str
    region: str
    refs: Mapping[str, str] = field(default_factory=dict)  # logical id -> what !Ref returns
    arns: Mapping[str, str] = field(default_factory=dict)  # logical id -> what !GetAtt .Arn returns

    @property
    def queue_url(self) -> str:
        return self.refs[QUEUE]

    @property
    def dlq_url(self) -> str:
        return self.refs[DEAD_LETTER_QUEUE]


def provision(
    endpoint_url: str,
    region: str,
    prefix: str,
    secrets: Mapping[str, Mapping[str, str]],
) -> LocalResources:
    """Tables, the queue and its DLQ, and the secrets (logical id -> JSON value) in moto."""
    refs: dict[str, str] = {}
    arns: dict[str, str] = {}
    dynamodb = dynamodb_client(endpoint_url, region)
    for logical_id in TABLES:
        name = f"{prefix}-{logical_id}"
        create_table(dynamodb, logical_id, name)
        refs[logical_id] = name
        arns[logical_id] = dynamodb.describe_table(TableName=name)["Table"]["TableArn"]

    sqs = sqs_client(endpoint_url, region)
    queue_url, dlq_url = create_queue_pair(sqs, QUEUE, DEAD_LETTER_QUEUE, prefix)
    for logical_id, url in ((QUEUE, queue_url), (DEAD_LETTER_QUEUE, dlq_url)):
        refs[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    secretsmanager = secretsmanager_client(endpoint_url, region)
    for logical_id, value in secrets.items():
        properties = resource(logical_id)["Properties"]
        created = secretsmanager.create_secret(
            Name=f"{prefix}-{logical_id}",
            Description=str(properties.get("Description", "")),
            SecretString=json.dumps(dict(value)),
        )
        # !Ref of an AWS::SecretsManager::Secret is its ARN.
        refs[logical_id] = arns[logical_id] = created["ARN"]
    return LocalResources(endpoint_url=endpoint_url, region=region, refs=refs, arns=arns)
