"""The Sender Lambda's sends made later, end to end over moto (DynamoDB, SQS, EventBridge Scheduler):
POST /batches with sendAt answered 202 with a one-time schedule made; DELETE /batches/{requestId}
cancelling it (409 once sending began, 404 for none); the schedule's message on the queue sending it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from ocelot_sms.observability import metrics
from ocelot_sms.scheduling import fire_message, schedule_name
from tests.events import load_event
from tests.unit.functions.test_sender import invoke, json_body, post, sqs_record
from tests.unit.support.aws import FakeContext
from tests.unit.support.flows import delete_batch
from tests.unit.support.ocelot import FakeOcelot, batch

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

GROUP = "ocelot-sms-sends"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:send-queue"


@pytest.fixture(autouse=True)
def metrics_namespace(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "namespace", env["POWERTOOLS_METRICS_NAMESPACE"])


@pytest.fixture
def scheduler(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SCHEDULE_GROUP_NAME", GROUP)
    monkeypatch.setenv("SCHEDULE_ROLE_ARN", "arn:aws:iam::123456789012:role/schedules")
    monkeypatch.setenv("SEND_QUEUE_ARN", QUEUE_ARN)
    client = boto3.client("scheduler")
    client.create_schedule_group(Name=GROUP)
    return client


def delete(request_id: str) -> dict[str, Any]:
    return delete_batch(f"/batches/{quote(request_id, safe='')}")


def test_a_send_later_is_answered_202_with_its_schedule(
    ocelot: FakeOcelot, scheduler: Any, lambda_context: FakeContext
) -> None:
    # Given a request for an hour from now
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    body = batch("api-later", 2, sendAt=at.isoformat())

    # When posted
    response = invoke(post(body), lambda_context)

    # Then it is answered 202 scheduled, with when and why, and a status URL
    assert response["statusCode"] == 202, response["body"]
    answer = json_body(response)
    assert (answer["status"], answer["scheduleReason"]) == ("scheduled", "sendAt")
    assert response["headers"]["Location"].endswith("/batches/api-later")
    assert ocelot.sent == []
    # And a one-time schedule puts the request's name on the send queue, then deletes itself
    made = scheduler.get_schedule(GroupName=GROUP, Name=schedule_name("api-later"))
    assert made["ScheduleExpression"] == f"at({at:%Y-%m-%dT%H:%M:%S})"
    assert made["ActionAfterCompletion"] == "DELETE"
    assert made["Target"]["Arn"] == QUEUE_ARN
    assert json.loads(made["Target"]["Input"]) == {"scheduledRequestId": "api-later"}


def test_a_send_later_is_cancelled_and_its_schedule_removed(
    ocelot: FakeOcelot, scheduler: Any, lambda_context: FakeContext
) -> None:
    # Given a request scheduled for later
    at = datetime.now(UTC) + timedelta(hours=1)
    invoke(post(batch("api-cancel", 1, sendAt=at.isoformat())), lambda_context)

    # When it is cancelled, twice
    first = invoke(delete("api-cancel"), lambda_context)
    again = invoke(delete("api-cancel"), lambda_context)

    # Then both are answered 200 cancelled, and the schedule is gone
    assert (first["statusCode"], again["statusCode"]) == (200, 200)
    assert json_body(first)["status"] == "cancelled"
    assert scheduler.list_schedules(GroupName=GROUP)["Schedules"] == []

    # And its message, had it fired, sends nothing and is not retried
    record = sqs_record(load_event("sqs_batch")["Records"][0], "fired-1", fire_message("api-cancel"))
    assert invoke({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert ocelot.sent == []


def test_a_cancel_once_sent_is_409_and_of_nothing_404(
    ocelot: FakeOcelot, scheduler: Any, lambda_context: FakeContext
) -> None:
    # Given a request sent at once
    assert invoke(post(batch("api-now", 1)), lambda_context)["statusCode"] == 201

    # When / Then cancelling it is a conflict; cancelling a request never made is not found
    assert invoke(delete("api-now"), lambda_context)["statusCode"] == 409
    assert invoke(delete("api-never"), lambda_context)["statusCode"] == 404


def test_the_schedules_message_sends_the_stored_request(
    ocelot: FakeOcelot, scheduler: Any, lambda_context: FakeContext
) -> None:
    # Given a request stored for a time that has come (its sendAt a second ahead when posted)
    at = datetime.now(UTC) + timedelta(seconds=2)
    invoke(post(batch("api-fire", 2, sendAt=at.isoformat())), lambda_context)

    # When its schedule's message comes from the queue
    record = sqs_record(load_event("sqs_batch")["Records"][0], "fired-2", fire_message("api-fire"))
    answer = invoke({"Records": [record]}, lambda_context)

    # Then the request is sent (the schedule fires within its tolerance), once
    assert answer == {"batchItemFailures": []}
    assert [m["externalId"] for p in ocelot.payloads for m in p["messages"]] == ["ref-0", "ref-1"]
    # And a cancel now is too late
    assert invoke(delete("api-fire"), lambda_context)["statusCode"] == 409


def test_send_at_beyond_35_days_is_422(
    ocelot: FakeOcelot, scheduler: Any, lambda_context: FakeContext
) -> None:
    # Given a request for 36 days ahead; When posted; Then 422 naming sendAt, nothing stored or sent
    at = datetime.now(UTC) + timedelta(days=36)
    response = invoke(post(batch("api-too-far", 1, sendAt=at.isoformat())), lambda_context)
    assert response["statusCode"] == 422
    assert [p["field"] for p in json_body(response)["problems"]] == ["sendAt"]
    assert scheduler.list_schedules(GroupName=GROUP)["Schedules"] == []
    assert ocelot.sent == []


def test_a_queue_message_with_send_at_is_scheduled_like_the_api(
    ocelot: FakeOcelot, scheduler: Any, lambda_context: FakeContext
) -> None:
    # Given a request with sendAt put on the send queue
    at = datetime.now(UTC) + timedelta(hours=2)
    body = batch("sqs-later", 1, sendAt=at.isoformat())
    record = sqs_record(load_event("sqs_batch")["Records"][0], "queued-later", body)

    # When the Sender takes it; Then it is done with (not retried), scheduled, not sent
    assert invoke({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert ocelot.sent == []
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]]
    assert names == [schedule_name("sqs-later")]
