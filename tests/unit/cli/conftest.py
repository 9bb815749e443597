"""Fixtures for the `ocelot-sms` command line through click's CliRunner.

AWS is moto (queues, tables, a CloudFormation stack); the HTTP API is `responses` handing each
request to the real Lambda handlers (the Sender for POST /batches, the status function for GETs),
which read and write moto; Ocelot is `responses` too (FakeOcelot).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
import responses

from functions.sender import app as sender_handler
from functions.status import app as status_handler
from ocelot_sms_cli.context import Where
from ocelot_sms_cli.target import Target
from tests.events import load_event, with_body
from tests.unit.support.aws import FakeContext
from tests.unit.support.cli import API
from tests.unit.support.flows import api_get, delete_batch
from tests.unit.support.ocelot import FakeOcelot, guard_network, ocelot_mock
from tools.template_resources import create_queue_pair


@pytest.fixture(autouse=True)
def environment() -> Iterator[None]:
    """The CLI points the layer's code at its target through the environment: restore it after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def target(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Target:
    """The stack the CLI talks to (whichever way it was chosen): moto's queues and tables, the API at
    API (a `responses` URL)."""
    queue_url, dlq_url = create_queue_pair(boto3.client("sqs"), "SendQueue", "SendDeadLetterQueue", "cli")
    chosen = Target(
        api_url=API + "/",
        queue_url=queue_url,
        dlq_url=dlq_url,
        table_name="messages",
        idempotency_table_name="idempotency",
        region="us-east-1",
        webhook_secret_id="ocelot-webhook",
    )
    monkeypatch.setattr(Where, "target", lambda self: chosen)
    return chosen


@pytest.fixture
def http(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    """HTTP mocked for the test (one mock for Ocelot and our API): anything unregistered is refused."""
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    with ocelot_mock() as mock:
        yield mock


@pytest.fixture
def ocelot(http: responses.RequestsMock) -> FakeOcelot:
    return FakeOcelot(http)


@pytest.fixture
def stack_api(http: responses.RequestsMock, ocelot: FakeOcelot) -> list[str]:
    """The API served by the real Sender and status Lambdas: the requests it got ("POST /batches")."""
    asked: list[str] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256")
        url = urllib.parse.urlsplit(request.url or "")
        asked.append(f"{request.method} {url.path}" + (f"?{url.query}" if url.query else ""))
        if request.method == "POST":
            event = with_body(load_event("api_post_batch"), json.loads(request.body or b"{}"))
            response = dict(sender_handler.lambda_handler(event, FakeContext()))
        elif request.method == "DELETE":
            response = dict(sender_handler.lambda_handler(delete_batch(url.path), FakeContext()))
        else:
            response = status_handler.lambda_handler(status_event(url), FakeContext())  # type: ignore[arg-type]
        return response["statusCode"], response.get("headers") or {}, response["body"]

    http.add_callback(responses.POST, f"{API}/batches", callback=answer)
    http.add_callback(responses.GET, re.compile(re.escape(API) + r"/.*"), callback=answer)
    http.add_callback(responses.DELETE, re.compile(re.escape(API) + r"/batches/.*"), callback=answer)
    return asked


def status_event(url: urllib.parse.SplitResult) -> dict[str, Any]:
    segments = url.path.strip("/").split("/", 1)
    query = dict(urllib.parse.parse_qsl(url.query))
    routes = {"sends": "sendId", "batches": "requestId", "messages": "messageId"}
    if len(segments) == 1:
        event = api_get(f"/{segments[0]}", {}, query)
    else:
        name = routes[segments[0]]
        event = api_get(f"/{segments[0]}/{{{name}}}", {name: urllib.parse.unquote(segments[1])}, query)
    event["rawPath"] = event["requestContext"]["http"]["path"] = url.path
    return event
