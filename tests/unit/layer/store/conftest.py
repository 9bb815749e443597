"""Store fixtures: the DynamoDB backend on moto (the table built from template.yaml), and the
contract tests' `store`, run once against it and once against the in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from ocelot_sms.store import DynamoStore, Store
from tests.unit.fakes import MemoryStore


@pytest.fixture
def dynamo_store(aws: dict[str, Any], env: dict[str, str]) -> DynamoStore:
    return DynamoStore(aws["dynamodb"], env["TABLE_NAME"], data_retention_days=400)


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        return MemoryStore()
    backend: Store = request.getfixturevalue("dynamo_store")
    return backend
