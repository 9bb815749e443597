"""Which stack the CLI uses (never one nobody chose), and every AWS error as one line with its exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import exceptions as aws

from ocelot_sms_cli import main as cli_main
from ocelot_sms_cli.exits import Exit
from ocelot_sms_cli.target import Target, TargetError, find_local_stack_file, local_target, stack_target
from tests.unit.support.cli import ended, run


def local_stack_file(path: Path, **changes: Any) -> Path:
    stack = {
        "api_url": "http://127.0.0.1:4001",
        "queue_url": "http://127.0.0.1:4002/123456789012/q",
        "dlq_url": "http://127.0.0.1:4002/123456789012/dlq",
        "aws_endpoint_url": "http://127.0.0.1:4002",
        "sandbox_url": "http://127.0.0.1:4003",
        "region": "us-east-1",
        "tables": {"messages": "local-messages", "idempotency": "local-idempotency"},
        "secrets": {"ocelot": "arn:aws:secretsmanager:local-ocelot", "webhook": "arn:local-webhook"},
        "aws_credentials": {"aws_access_key_id": "local-key", "aws_secret_access_key": "local-secret"},
        **changes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stack))
    return path


# ---- choosing the stack ----------------------------------------------------------------------------


def test_no_stack_chosen_is_an_error_saying_how_to_choose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a local stack in the current folder, but neither --stack, OCELOT_SMS_STACK nor --local
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OCELOT_SMS_STACK", raising=False)
    local_stack_file(tmp_path / ".local" / "stack.json")
    ended(
        run("sends"),
        Exit.SETUP,
        "no stack chosen: give --stack NAME (or set OCELOT_SMS_STACK=NAME)",
        "--local",
    )


def test_local_finds_the_stack_file_from_any_folder_inside_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    found = local_stack_file(tmp_path / ".local" / "stack.json")
    deep = tmp_path / "cli" / "ocelot_sms_cli"
    deep.mkdir(parents=True)
    assert find_local_stack_file(deep) == found
    # Not above the checkout's root
    inner = tmp_path / "inner"
    (inner / ".git").mkdir(parents=True)
    with pytest.raises(
        TargetError, match=r"no local stack: no .local/stack.json in .* up to the checkout's root"
    ):
        find_local_stack_file(inner)


def test_local_and_stack_file_resolve_to_the_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: None
) -> None:
    stack_file = local_stack_file(tmp_path / "somewhere" / "stack.json")
    monkeypatch.chdir(tmp_path)
    ended(run("--local", "sends"), Exit.SETUP, "no local stack", "`make local-up`", "--stack-file PATH")
    ended(run("--stack", "prod", "--local", "sends"), Exit.INVALID, "choose one stack")
    # OCELOT_SMS_STACK in the environment gives way to an explicit --stack-file
    monkeypatch.setenv("OCELOT_SMS_STACK", "prod")
    seen: list[Target] = []

    def api(target: Target) -> _NoSends:
        seen.append(target)
        return _NoSends()

    monkeypatch.setattr("ocelot_sms_cli.commands.Api", api)
    ended(run("--stack-file", str(stack_file), "sends", "-o", "json"), Exit.DONE)
    assert [t.api_url for t in seen] == ["http://127.0.0.1:4001"]


class _NoSends:
    def pages(self, path: str, query: Any) -> Any:
        yield {"sends": [], "nextCursor": None}


def test_the_local_target_is_read_from_stack_json_and_applied_to_the_environment(
    tmp_path: Path, environment: None
) -> None:
    target = local_target(local_stack_file(tmp_path / "stack.json"))
    assert (target.api_url, target.table_name, target.aws_endpoint_url) == (
        "http://127.0.0.1:4001",
        "local-messages",
        "http://127.0.0.1:4002",
    )
    assert os.environ["AWS_ACCESS_KEY_ID"] == "local-key"
    target.apply_to_environment()
    assert os.environ["TABLE_NAME"] == "local-messages"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4002"
    assert os.environ["OCELOT_BASE_URL"] == "http://127.0.0.1:4003"
    with pytest.raises(TargetError, match="has no api_url"):
        local_target(local_stack_file(tmp_path / "unserved.json", api_url=None))
    with pytest.raises(TargetError, match="not found"):
        local_target(tmp_path / "missing.json")


STACK_TEMPLATE = {
    "Parameters": {"OcelotBaseUrl": {"Type": "String"}},
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {
        "ApiUrl": {"Value": "https://abc.execute-api.us-east-1.amazonaws.com"},
        "SendQueueUrl": {"Value": {"Ref": "Queue"}},
        "DeadLetterQueueUrl": {"Value": "https://sqs/dlq"},
        "MessagesTableName": {"Value": "prod-messages"},
        "IdempotencyTableName": {"Value": "prod-idempotency"},
        "OcelotSecretId": {"Value": "arn:aws:secretsmanager:ocelot"},
        "WebhookSecretId": {"Value": "arn:aws:secretsmanager:webhook"},
    },
}


def test_a_deployed_stack_is_read_from_its_outputs_and_parameters(
    aws: dict[str, Any], environment: None
) -> None:
    boto3.client("cloudformation").create_stack(
        StackName="ocelot-prod",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": "OcelotBaseUrl", "ParameterValue": "https://ai.ocelotbot.com"}],
    )
    target = stack_target("ocelot-prod", "us-east-1")
    assert (target.api_url, target.table_name, target.region, target.name) == (
        "https://abc.execute-api.us-east-1.amazonaws.com",
        "prod-messages",
        "us-east-1",
        "ocelot-prod",
    )
    target.apply_to_environment()
    assert os.environ["OCELOT_BASE_URL"] == "https://ai.ocelotbot.com"
    assert os.environ["OCELOT_SECRET_ID"] == "arn:aws:secretsmanager:ocelot"


def test_a_stack_that_does_not_exist_or_lacks_outputs_is_one_line(
    aws: dict[str, Any], environment: None
) -> None:
    template = {"Resources": STACK_TEMPLATE["Resources"], "Outputs": {"ApiUrl": {"Value": "https://x"}}}
    boto3.client("cloudformation").create_stack(StackName="partial", TemplateBody=json.dumps(template))
    ended(run("--stack", "partial", "sends"), Exit.SETUP, "stack 'partial' has no output(s) SendQueueUrl")
    ended(
        run("--stack", "missing", "--region", "us-east-1", "sends"),
        Exit.SETUP,
        "stack 'missing' not found in us-east-1: check --stack (or OCELOT_SMS_STACK) and --region",
    )


def test_the_target_makes_clients_for_its_endpoint_region_and_profile(aws: dict[str, Any]) -> None:
    target = Target("a", "q", "d", "t", aws_endpoint_url="http://127.0.0.1:1", region="eu-west-1")
    client = target.client("sqs")
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:1", "eu-west-1")


# ---- AWS errors: one line, never a traceback ---------------------------------------------------------


def _client_error(code: str, message: str = "no") -> aws.ClientError:
    return aws.ClientError({"Error": {"Code": code, "Message": message}}, "DescribeStacks")


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (aws.NoRegionError(), Exit.SETUP, "no AWS region: give --region"),
        (aws.NoCredentialsError(), Exit.SETUP, "no AWS credentials found: give --profile NAME"),
        (
            aws.ProfileNotFound(profile="ops"),
            Exit.SETUP,
            "The config profile (ops) could not be found: check --profile",
        ),
        (aws.SSOTokenLoadError(error_msg="expired"), Exit.SETUP, "run `aws sso login`"),
        (
            aws.EndpointConnectionError(endpoint_url="https://cloudformation.us-east-1.amazonaws.com"),
            Exit.UNAVAILABLE,
            "could not reach AWS (Could not connect to the endpoint URL",
        ),
        (
            _client_error("AccessDenied", "User x is not authorized"),
            Exit.SETUP,
            "access denied to DescribeStacks",
        ),
        (_client_error("ExpiredToken"), Exit.SETUP, "AWS refused your credentials (ExpiredToken)"),
        (_client_error("Throttling"), Exit.UNAVAILABLE, "AWS is throttling DescribeStacks"),
        (_client_error("ResourceNotFoundException", "table"), Exit.SETUP, "is the stack fully deployed?"),
        (_client_error("InternalFailure", "oops"), Exit.UNAVAILABLE, "AWS answered InternalFailure"),
    ],
)
def test_each_aws_error_is_one_line_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, error: Exception, code: Exit, said: str
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Target:
        raise error

    monkeypatch.setattr("ocelot_sms_cli.context.stack_target", failing)
    result = run("--stack", "prod", "sends")
    ended(result, code, said)
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Target:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("ocelot_sms_cli.context.stack_target", broken)
    ended(run("--stack", "prod", "sends"), Exit.UNEXPECTED, "unexpected error: ZeroDivisionError", "--debug")
    debugged = run("--debug", "--stack", "prod", "sends")
    assert isinstance(debugged.exception, ZeroDivisionError)


def test_a_real_missing_region_and_missing_credentials_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given no region and no credentials anywhere boto3 looks (metadata service off: no network)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ended(run("--stack", "prod", "sends"), Exit.SETUP, "no AWS region")
    ended(run("--stack", "prod", "--region", "us-east-1", "sends"), Exit.SETUP, "no AWS credentials found")
    ended(run("--stack", "prod", "--profile", "nobody", "sends"), Exit.SETUP, "(nobody) could not be found")


# ---- help and version ----------------------------------------------------------------------------------


def test_help_works_without_a_stack_and_shows_the_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCELOT_SMS_STACK", raising=False)
    for args in (
        ["-h"],
        ["send", "--help"],
        ["reconcile", "attach", "-h"],
        ["status", "-h"],
        ["sends", "-h"],
    ):
        ended(run(*args), Exit.DONE, "Usage:")
    top = run("--help").output
    assert "[env var: OCELOT_SMS_STACK]" in top
    assert "--profile" in top
    for code in ("0  done", "2  invalid input", "3  some outcomes unknown", "4  rejected", "5  conflict"):
        assert code in top
    assert "6  unavailable, retry later" in run("send", "-h").output


def test_version_is_shown() -> None:
    ended(run("--version"), Exit.DONE, "ocelot-sms, version 0.1.0")


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "cli", interrupted)
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 130
