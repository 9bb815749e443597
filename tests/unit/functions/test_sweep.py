"""The hourly stale-message sweep Lambda: a scheduled event in, counts and metrics out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.sweep import app as sweep_handler
from ocelot_sms import runtime
from tests.unit.support.aws import EmfReader, FakeContext
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot, guard_network, ocelot_mock

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")

SCHEDULED = {
    "version": "0",
    "id": "5d0b7d43-0d36-4f2e-9a43-5a6e1c1b1e39",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-26T16:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/ocelot-sms-Sweep"],
    "detail": {},
}


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def sent_hours_ago(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three messages accepted 5 hours ago (in one chunk); #0 has since been delivered, #1 sent."""
    accepted_at = datetime.now(UTC) - timedelta(hours=5)
    with ocelot_mock() as mock:
        FakeOcelot(mock)
        with monkeypatch.context() as patched:
            patched.setattr("ocelot_sms.store.dynamodb.utc_now", lambda: accepted_at)
            ids = [m.message_id or "" for m in send("sweep-1", 3).messages]
    deliver(
        [
            callback("w-0", ids[0], "delivered", accepted_at.isoformat()),
            callback("w-1", ids[1], "sent", accepted_at.isoformat()),
        ],
        "d-1",
    )
    return ids


def run(context: FakeContext) -> dict[str, int]:
    result: dict[str, int] = sweep_handler.lambda_handler(SCHEDULED, context)
    return result


def test_the_sweep_marks_what_is_older_than_stale_after_hours(
    sent_hours_ago: list[str], lambda_context: FakeContext, emf: EmfReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given STALE_AFTER_HOURS=3 (read through Settings) and messages accepted 5 hours ago
    monkeypatch.setenv("STALE_AFTER_HOURS", "3")
    runtime.reset()
    emf.read()

    # When the scheduled run comes
    result = run(lambda_context)

    # Then the two without a terminal status are unknown, the count returned and published
    assert result == {"marked": 2}
    states = runtime.store().get_states(sent_hours_ago)
    assert [states[m].status for m in sent_hours_ago] == ["delivered", "unknown", "unknown"]
    assert emf.read()["MessagesMarkedUnknown"] == 2
    # And the next run has nothing left to do
    assert run(lambda_context) == {"marked": 0}


def test_the_default_of_72_hours_leaves_recent_messages_alone(
    sent_hours_ago: list[str], lambda_context: FakeContext, emf: EmfReader
) -> None:
    # Given no STALE_AFTER_HOURS: the template's default, 72
    emf.read()
    assert run(lambda_context) == {"marked": 0}
    metrics = emf.read()
    assert "MessagesMarkedUnknown" in metrics  # published as 0: the sweep did run
    assert metrics["MessagesMarkedUnknown"] == 0
    states = runtime.store().get_states(sent_hours_ago)
    assert sent_hours_ago[2] not in states


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_bad_setting_fails_the_run_loudly(
    aws: dict[str, Any], lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STALE_AFTER_HOURS", "three")
    runtime.reset()
    with pytest.raises(ValueError, match="STALE_AFTER_HOURS"):
        run(lambda_context)
