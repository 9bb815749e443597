"""The policies template.yaml hands out, against what the commands really call: every AWS call and API
request an `ocelot-sms` command makes is allowed by OperatorPolicy (`reconcile resend`: ResendPolicy),
and a calling system's requests by CallerPolicy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from click.testing import Result

from functions.sender import app as sender_handler
from functions.status import app as status_handler
from ocelot_sms import runtime
from ocelot_sms_cli.target import Target, stack_target
from tests.unit.support.cli import rows_csv
from tests.unit.support.cli import run as run_cli
from tests.unit.support.flows import send
from tests.unit.support.iam import (
    Call,
    Recorder,
    api_call,
    policy_statements,
    record_calls,
    refused,
)
from tests.unit.support.ocelot import FakeOcelot

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")


@pytest.fixture
def recorder(target: Target, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Records what the command calls from the first `run` on; the Lambda handlers that answer the API
    in-process are another party: their calls are not the command's."""
    names = {
        target.table_name: "MessagesTable",
        target.idempotency_table_name: "IdempotencyTable",
        target.queue_url: "SendQueue",
        target.dlq_url: "SendDeadLetterQueue",
        str(target.webhook_secret_id): "WebhookSecret",
        env["OCELOT_SECRET_ID"]: "OcelotApiSecret",
    }
    recorder = record_calls(monkeypatch, names)
    for handler in (sender_handler, status_handler):
        answer = handler.lambda_handler

        def paused(event: Any, context: Any, answer: Any = answer) -> Any:
            with recorder.paused():
                return answer(event, context)

        monkeypatch.setattr(handler, "lambda_handler", paused)
    return recorder


def run(*args: str) -> Result:
    result = run_cli("--local", *args)
    assert result.exit_code in (0, 3), result.output + result.stderr
    return result


def api_calls(stack_api: list[str]) -> list[Call]:
    return [api_call(request) for request in stack_api]


def test_sending_and_following_a_send_need_only_the_operator_policy(
    recorder: Recorder, stack_api: list[str], ocelot: FakeOcelot, tmp_path: Path
) -> None:
    # Given a spreadsheet; When it is sent through the API and by the queue, followed, and looked at
    sheet = rows_csv(tmp_path, 3)
    run("send", str(sheet), "--send-id", "pol-api", "--wait", "--timeout", "5")
    run("send", str(sheet), "--send-id", "pol-sqs", "--via", "sqs")
    run("status", "pol-api")
    message_id = json.loads(run("status", "pol-api", "--output", "json").output)["messages"][0]["messageId"]
    run("status", "--message", message_id)
    run("sends")
    # Then every AWS call and API request was one OperatorPolicy allows
    made = recorder.calls + api_calls(stack_api)
    assert {c.action for c in made} >= {"execute-api:Invoke", "sqs:SendMessage", "sqs:GetQueueAttributes"}
    assert refused(policy_statements("OperatorPolicy"), made) == []


def test_a_calling_system_needs_only_the_caller_policy(
    recorder: Recorder, stack_api: list[str], ocelot: FakeOcelot, tmp_path: Path, target: Target
) -> None:
    # Given a calling system that submits a batch by the API, one by the queue, and reads their status
    run("send", str(rows_csv(tmp_path, 2)), "--send-id", "caller-1", "--wait", "--timeout", "5")
    run("sends")
    boto3.client("sqs").send_message(QueueUrl=target.queue_url, MessageBody=json.dumps({"requestId": "c-2"}))
    # Then CallerPolicy allows its API requests and its message to the queue
    submitted = [c for c in recorder.calls if c.action == "sqs:SendMessage"] + api_calls(stack_api)
    assert {c.resource for c in submitted} >= {"POST /batches", "GET /sends", "SendQueue"}
    assert refused(policy_statements("CallerPolicy"), submitted) == []
    # And nothing an operator does beyond that: not the table, not the dead letters
    assert refused(policy_statements("CallerPolicy"), [Call("dynamodb:Query", "MessagesTable")])
    assert refused(policy_statements("CallerPolicy"), [Call("sqs:ReceiveMessage", "SendDeadLetterQueue")])


@pytest.fixture
def unknown_chunk(target: Target, ocelot: FakeOcelot) -> None:
    """A request whose second chunk got no answer from Ocelot: its outcome is unknown. Then nothing
    cached by the Sender: the command line is a process of its own."""
    ocelot.then_for("ref-2", requests.ReadTimeout("read timed out"))
    send("pol-rec", 4)
    runtime.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.mark.usefixtures("unknown_chunk")
def test_reconcile_replay_redrive_and_rotation_need_only_the_operator_policy(
    recorder: Recorder, target: Target
) -> None:
    # Given an unknown chunk and a message in the dead-letter queue
    with recorder.paused():
        boto3.client("sqs").send_message(QueueUrl=target.dlq_url, MessageBody='{"requestId": "dl-1"}')
    # When an operator reconciles, replays, redrives and rotates the webhook's credentials
    run("reconcile", "list")
    run("reconcile", "attach", "pol-rec", "1", "--batch-id", "ob-1", "--message-ids", "om-1,om-2")
    run("replay", "--since", datetime.now(UTC).date().isoformat())
    run("redrive")
    run("webhook-credentials", "rotate", "--output", "json")
    # Then OperatorPolicy allows every call they made
    actions = {c.action for c in recorder.calls}
    assert actions >= {
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "secretsmanager:PutSecretValue",
    }
    assert refused(policy_statements("OperatorPolicy"), recorder.calls) == []


@pytest.mark.usefixtures("unknown_chunk")
def test_reconcile_resend_needs_the_resend_policy_which_the_operator_policy_lacks(
    recorder: Recorder, ocelot: FakeOcelot
) -> None:
    # When an unknown chunk is sent again
    result = run("reconcile", "resend", "pol-rec", "1", "--yes")
    # Then it was sent, and ResendPolicy allows every call; OperatorPolicy not the Ocelot secret's read
    assert "chunk 1 of pol-rec: accepted" in result.output
    assert refused(policy_statements("ResendPolicy"), recorder.calls) == []
    assert refused(policy_statements("OperatorPolicy"), recorder.calls) == [
        Call("secretsmanager:GetSecretValue", "OcelotApiSecret")
    ]


def test_finding_a_deployed_stack_is_allowed_to_operators_and_resenders(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployed stack with the outputs the command line reads
    outputs = ("ApiUrl", "SendQueueUrl", "DeadLetterQueueUrl", "MessagesTableName", "IdempotencyTableName")
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": f"https://{name.lower()}"} for name in outputs},
    }
    boto3.client("cloudformation").create_stack(StackName="pol-stack", TemplateBody=json.dumps(template))
    # When the command line finds it
    recorder = record_calls(monkeypatch, {})
    stack_target("pol-stack", "us-east-1")
    # Then both policies allow that
    assert recorder.calls == [Call("cloudformation:DescribeStacks", "Stack")]
    for policy in ("OperatorPolicy", "ResendPolicy"):
        assert refused(policy_statements(policy), recorder.calls) == []


def test_sending_later_cancelling_replies_and_suppression_need_only_the_operator_policy(
    recorder: Recorder,
    stack_api: list[str],
    ocelot: FakeOcelot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stack that sends later (the Sender's schedule group)
    monkeypatch.setenv("SCHEDULE_GROUP_NAME", "sends")
    monkeypatch.setenv("SCHEDULE_ROLE_ARN", "arn:aws:iam::123456789012:role/schedules")
    monkeypatch.setenv("SEND_QUEUE_ARN", "arn:aws:sqs:us-east-1:123456789012:send")
    with recorder.paused():
        boto3.client("scheduler").create_schedule_group(Name="sends")
    # When an operator sends a file for later, cancels it, lists replies and manages suppressions
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    run("send", str(rows_csv(tmp_path, 2)), "--send-id", "pol-later", "--at", at)
    run("cancel", "pol-later")
    run("inbound")
    run("suppression", "add", "+15551230001")
    run("suppression", "list")
    run("suppression", "remove", "+15551230001")
    # Then every AWS call and API request was one OperatorPolicy allows
    made = recorder.calls + api_calls(stack_api)
    assert {c.resource for c in made} >= {"DELETE /batches/pol-later", "GET /inbound"}
    assert {c.action for c in made} >= {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"}
    assert refused(policy_statements("OperatorPolicy"), made) == []
    # And a calling system may cancel and read replies too, not change suppressions
    api_made = api_calls(stack_api)
    assert (
        refused(policy_statements("CallerPolicy"), [c for c in api_made if c.resource != "POST /batches"])
        == []
    )
    assert refused(policy_statements("CallerPolicy"), [Call("dynamodb:DeleteItem", "MessagesTable")])
