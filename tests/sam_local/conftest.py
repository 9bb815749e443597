"""sam local tests: provisioning (engine, image, build) once per session, a local stack per use.

Outside CI, no Docker engine means every test here is skipped for one reason, shown once in the
summary (`-ra`). With CI=true a missing engine is started (installed if need be) and any failure
to provide the engine, the image or the build FAILS the tests: CI never skips them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.sam_local import harness
from tools.local import netguard
from tools.local.aws import (
    DEAD_LETTER_QUEUE,
    OCELOT_SECRET,
    QUEUE,
    WEBHOOK_SECRET,
    LocalResources,
    provision,
)
from tools.local.client import StackClient
from tools.local.event_sources import StreamPoller
from tools.local.functions import Invoker
from tools.local.stack import StackInfo, StackProcess
from tools.sam_local.env_vars import for_sam, from_stack

_prefixes = itertools.count(1)


def _provision(workdir: Path) -> harness.Provisioned:
    """Engine, image and build, or skip (outside CI, no engine) / fail (anything else)."""
    try:
        # CI: install and start an engine if none answers; ProvisionError fails every test
        return harness.provision(workdir, start_missing_engine=harness.in_ci())
    except harness.EngineMissing as missing:
        pytest.skip(f"sam_local: no Docker engine ({missing}); `make docker-up` starts one")


@pytest.fixture(scope="package", autouse=True)
def loopback_only() -> Iterator[None]:
    """This test process talks to 127.0.0.1 only (the stack, start-api); the containers are checked
    by test_start_api.py, SAM itself by tools/sam_local/sam.py, the functions' URLs by env_vars.py."""
    before = len(netguard.snapshot()["violations"])
    netguard.install()
    try:
        yield
    finally:
        violations = netguard.snapshot()["violations"][before:]
        netguard.uninstall()
    assert not violations, f"the sam_local tests tried to leave loopback: {violations}"


@pytest.fixture(scope="session")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> harness.Provisioned:
    try:
        return _provision(tmp_path_factory.mktemp("provision"))
    except harness.ProvisionError as error:
        pytest.fail(
            f"sam_local provisioning failed{' (CI)' if harness.in_ci() else ''}: {error}", pytrace=False
        )


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder plain `sam build` fills (built first if stale); no Docker engine needed."""
    try:
        return harness.build(tmp_path_factory.mktemp("build"))
    except harness.ProvisionError as error:
        pytest.fail(f"sam build failed: {error}", pytrace=False)


@pytest.fixture(scope="session")
def session_stack(
    provisioned: harness.Provisioned, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackInfo]:
    """The local stack (tools/local) with the functions left to sam local: moto + Ocelot sandbox."""
    stack = StackProcess(tmp_path_factory.mktemp("stack"), ["--functions", "none"])
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def sam(
    provisioned: harness.Provisioned, session_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> harness.SamLocal:
    workdir = tmp_path_factory.mktemp("sam")
    env = harness.sam_environment(session_stack.aws_endpoint_url, workdir / "sam-cli")
    return harness.SamLocal(provisioned.image, provisioned.template, env, workdir)


@dataclass
class LocalAws:
    """One test's own tables, queue and secrets in a stack's moto server; its sandbox, shared."""

    info: StackInfo
    client: StackClient
    variables: dict[str, str]  # the functions' environment (--env-vars)
    resources: LocalResources

    def stream_poller(self, invoker: Invoker) -> StreamPoller:
        """The applier's event source mapping on this test's own table (not started)."""
        return harness.stream_poller(invoker, self.info.aws_endpoint_url, *self._stream())

    def applying(self, invoke_url: str) -> contextlib.AbstractContextManager[StreamPoller]:
        """A stream poller on this test's table, invoking the applier through `invoke_url`."""
        return harness.applying(invoke_url, self.info.aws_endpoint_url, *self._stream())

    def _stream(self) -> tuple[str, str]:
        return self.resources.stream_arns["MessagesTable"], self.resources.queues["ApplierDeadLetterQueue"]

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self.client.dynamodb.get_item(
            TableName=self.info.tables["messages"],
            Key={"PK": {"S": pk}, "SK": {"S": sk}},
            ConsistentRead=True,
        )
        raw = response.get("Item")
        return _plain(raw) if raw else None

    def scan(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        paginator = self.client.dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self.info.tables["messages"], ConsistentRead=True):
            items.extend(_plain(item) for item in page.get("Items", []))
        return items


_deserializer = TypeDeserializer()


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values (numbers as int: the table holds no fractions)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {key: plain(_deserializer.deserialize(value)) for key, value in item.items()}


def isolated_aws(stack: StackInfo) -> Iterator[LocalAws]:
    """Fresh tables/queue/secrets (unique names) in the stack's moto; the sandbox reset to its defaults."""
    prefix = f"samlocal-{os.getpid()}-{next(_prefixes)}"
    resources = provision(
        stack.aws_endpoint_url,
        prefix,
        {OCELOT_SECRET: stack.ocelot_credentials, WEBHOOK_SECRET: stack.webhook_credentials},
    )
    info = replace(
        stack,
        tables={
            "messages": resources.refs["MessagesTable"],
            "idempotency": resources.refs["IdempotencyTable"],
        },
        secrets={"ocelot": resources.refs[OCELOT_SECRET], "webhook": resources.refs[WEBHOOK_SECRET]},
        queue_url=resources.refs[QUEUE],
        dlq_url=resources.refs[DEAD_LETTER_QUEUE],
    )
    variables, _dropped = for_sam(from_stack(info.to_json()))
    client = StackClient(info)
    client.sandbox_reset(config=True, record=True)
    try:
        yield LocalAws(info, client, variables, resources)
    finally:
        client.sandbox_reset(config=True, record=True)
        for table in info.tables.values():
            client.dynamodb.delete_table(TableName=table)
        client.close()


@pytest.fixture
def aws(session_stack: StackInfo) -> Iterator[LocalAws]:
    yield from isolated_aws(session_stack)
