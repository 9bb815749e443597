"""template.yaml sanity: the deployed resources agree with what the code assumes."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from functions.applier import app as applier
from functions.webhook import app as handler
from ocelot_sms.settings import Settings
from ocelot_sms.store import DynamoStore, MessageRecord, keys
from tests.events import load_event, with_body
from tests.unit.support.aws import FakeContext
from tests.unit.support.iam import Call, policy_statements, record_calls, refused, statement_resources
from tests.unit.support.stream import TableStream
from tools.template_resources import ROOT, create_queue_pair, function_environment, load_template, resource

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def functions() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}


def statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement in the template: functions' inline policies and any IAM resource."""
    for logical_id, res in RESOURCES.items():
        properties = res.get("Properties", {})
        for policy in properties.get("Policies", []) if isinstance(properties.get("Policies"), list) else []:
            if isinstance(policy, dict) and "Statement" in policy:
                for statement in policy["Statement"]:
                    yield logical_id, statement
        documents = [properties.get("PolicyDocument"), properties.get("AssumeRolePolicyDocument")]
        documents += [p.get("PolicyDocument") for p in properties.get("Policies", []) if isinstance(p, dict)]
        for document in documents:
            if isinstance(document, dict):
                for statement in document.get("Statement", []):
                    yield logical_id, statement


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement.get("Action", [])
    return [value] if isinstance(value, str) else list(value)


def allowed_actions(function_id: str) -> set[str]:
    return {a for fid, s in statements() if fid == function_id and s["Effect"] == "Allow" for a in actions(s)}


# ---- tables -------------------------------------------------------------------------------------


def test_the_messages_table_is_built_from_the_template(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given the aws fixture created the table with tools.template_resources.create_table
    dynamodb = aws["dynamodb"]
    table = dynamodb.describe_table(TableName=env["TABLE_NAME"])["Table"]
    # Then its keys are PK/SK, GSI1 on GSI1PK/GSI1SK projecting everything, and TTL on expiresAt
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"PK": "HASH", "SK": "RANGE"}
    gsi = next(i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == "GSI1")
    assert {k["AttributeName"]: k["KeyType"] for k in gsi["KeySchema"]} == {
        "GSI1PK": "HASH",
        "GSI1SK": "RANGE",
    }
    assert gsi["Projection"]["ProjectionType"] == "ALL"
    ttl = dynamodb.describe_time_to_live(TableName=env["TABLE_NAME"])["TimeToLiveDescription"]
    assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == ("expiresAt", "ENABLED")


def test_the_template_keys_are_the_ones_the_store_writes() -> None:
    # Given the template's definition
    properties = resource("MessagesTable")["Properties"]
    hash_key, range_key = (k["AttributeName"] for k in properties["KeySchema"])
    gsi = next(i for i in properties["GlobalSecondaryIndexes"] if i["IndexName"] == "GSI1")
    # Then the store's key helper, GSI1's keys and the TTL attribute use the same names
    assert set(keys.batch("a")) == {hash_key, range_key} == {"PK", "SK"}
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["GSI1PK", "GSI1SK"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    # And every key attribute is a string, as the store writes them
    types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
    assert {name: types[name] for name in ("PK", "SK", "GSI1PK", "GSI1SK")} == dict.fromkeys(
        ("PK", "SK", "GSI1PK", "GSI1SK"), "S"
    )
    assert set(types.values()) == {"S"}


def test_the_store_writes_expiry_and_gsi_keys_under_the_template_names(
    aws: dict[str, Any], env: dict[str, str]
) -> None:
    # Given a message written by the store; When listed through the template's GSI
    store = DynamoStore(aws["dynamodb"], env["TABLE_NAME"])
    store.put_messages([MessageRecord("m-1", "req-1", 0, None, "+15551230010", 0, "b-1")])
    # Then it is found there, and carries the TTL attribute as a number
    assert [m.message_id for m in store.batch_messages("req-1", 0)] == ["m-1"]
    [item] = aws["dynamodb"].scan(TableName=env["TABLE_NAME"])["Items"]
    assert set(item["expiresAt"]) == {"N"}


def test_the_idempotency_table_matches_powertools_defaults(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given Powertools' DynamoDB persistence layer with its default attribute names
    layer = DynamoDBPersistenceLayer(table_name=env["IDEMPOTENCY_TABLE_NAME"], boto3_client=aws["dynamodb"])
    table = aws["dynamodb"].describe_table(TableName=env["IDEMPOTENCY_TABLE_NAME"])["Table"]
    ttl = aws["dynamodb"].describe_time_to_live(TableName=env["IDEMPOTENCY_TABLE_NAME"])[
        "TimeToLiveDescription"
    ]
    # Then the table's key and TTL are the ones it reads and writes
    assert [k["AttributeName"] for k in table["KeySchema"]] == [layer.key_attr]
    assert ttl["AttributeName"] == layer.expiry_attr


@pytest.mark.parametrize("table_id", ["MessagesTable", "IdempotencyTable"])
def test_tables_are_protected(table_id: str) -> None:
    res = resource(table_id)
    assert res["DeletionPolicy"] == "Retain"
    assert res["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert res["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert res["Properties"]["BillingMode"] == "PAY_PER_REQUEST"


# ---- functions and layer ------------------------------------------------------------------------


def test_globals_set_the_runtime_and_tracing_off_unless_asked() -> None:
    globals_ = TEMPLATE["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    # Tracing is the Tracing parameter, off by default (docs/performance.md, "Tracing")
    assert globals_["Tracing"] == {"Ref": "Tracing"}
    assert TEMPLATE["Parameters"]["Tracing"]["Default"] == "Disabled"
    assert TEMPLATE["Parameters"]["Tracing"]["AllowedValues"] == ["Disabled", "Active"]
    # And no function overrides them
    for properties in (f["Properties"] for f in functions().values()):
        assert properties.get("Runtime", "python3.13") == "python3.13"
        assert "Tracing" not in properties


@pytest.mark.parametrize("layer_id", ["SharedLayer", "SharedLayerArm64"])
def test_each_layer_is_built_by_its_makefile_for_python_313(layer_id: str) -> None:
    layer = resource(layer_id)
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["ContentUri"] == "layers/shared/"
    # And the layer's Makefile has the target `sam build` runs for it
    makefile = (ROOT / "layers" / "shared" / "Makefile").read_text()
    assert f"\nbuild-{layer_id}:" in makefile


def test_every_function_is_built_by_the_functions_makefile() -> None:
    makefile = (ROOT / "functions" / "Makefile").read_text()
    for logical_id, function in functions().items():
        assert function["Metadata"]["BuildMethod"] == "makefile"
        assert function["Metadata"]["ContextPath"] == "functions"
        assert logical_id in makefile.split("FUNCTIONS := ", 1)[1].splitlines()[0].split()


def test_handlers_point_at_the_code() -> None:
    assert resource("WebhookFunction")["Properties"]["Handler"] == "app.lambda_handler"
    assert resource("WebhookFunction")["Properties"]["CodeUri"] == "functions/webhook/"
    assert callable(handler.lambda_handler)


def test_the_webhook_environment_names_only_settings_the_code_reads() -> None:
    # Given every environment variable the template gives the webhook (Globals included)
    names = set(function_environment("WebhookFunction"))
    known = {f.name.upper() for f in fields(Settings)}
    # Then each one is a Settings field or one of Powertools' own, and the ones it needs are there
    others = {n for n in names if n not in known and not n.startswith("POWERTOOLS_")}
    # AWS_ENDPOINT_URL is boto3's: empty in AWS, the local emulator under sam local (docs/sam-local.md).
    assert others - {"AWS_ENDPOINT_URL"} == set()
    assert {"TABLE_NAME", "WEBHOOK_SECRET_ID", "RAW_RETENTION_DAYS", "DATA_RETENTION_DAYS"} <= names


# ---- IAM ----------------------------------------------------------------------------------------


def test_the_template_has_iam_statements() -> None:
    assert len(list(statements())) >= 4


@pytest.mark.parametrize(
    ("logical_id", "statement"),
    [pytest.param(fid, st, id=f"{fid}-{st.get('Sid', n)}") for n, (fid, st) in enumerate(statements())],
)
def test_no_iam_statement_uses_a_wildcard_action(logical_id: str, statement: dict[str, Any]) -> None:
    # No "*" and no "service:*" (nor any other wildcard) in any action
    for action in actions(statement):
        assert "*" not in action, (logical_id, statement)
    assert "NotAction" not in statement


def test_the_webhook_may_only_put_items_and_read_its_secret() -> None:
    assert allowed_actions("WebhookFunction") == {"dynamodb:PutItem", "secretsmanager:GetSecretValue"}


def test_the_applier_may_read_its_stream_write_items_and_report_failed_records() -> None:
    assert allowed_actions("ApplierFunction") == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        # A reply's link (GSI2), an opt-in lifting a suppression.
        "dynamodb:Query",
        "dynamodb:DeleteItem",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "sqs:SendMessage",
    }


@pytest.mark.usefixtures("atomic_dynamodb", "emf")
def test_the_webhook_and_the_applier_call_only_what_their_policies_allow(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = [
        {"eventId": "e-1", "name": "OutgoingSms.statusChanged", "messageId": "m-1", "status": "sent"},
        {"eventId": "e-2", "name": "IncomingSms.received"},
        {"not": "an event"},
    ]
    stream = TableStream(env["TABLE_NAME"])
    names = {env["TABLE_NAME"]: "MessagesTable", env["WEBHOOK_SECRET_ID"]: "WebhookSecret"}
    # When the webhook handles the same delivery twice (duplicates, whose state is then checked)
    recorder = record_calls(monkeypatch, names)
    for _ in range(2):
        event = with_body(load_event("webhook_status_event"), body)
        assert handler.lambda_handler(event, lambda_context)["statusCode"] == 200
    # Then it read its secret and wrote items, as its policy allows, on its own table and secret
    assert {(c.action, c.resource) for c in recorder.calls} == {
        ("dynamodb:PutItem", "MessagesTable"),
        ("secretsmanager:GetSecretValue", "WebhookSecret"),
    }
    assert refused(policy_statements("WebhookFunction"), recorder.calls) == []
    # When the applier applies both (the stream read by the test, as Lambda's poller reads it)
    records = stream.event()
    recorder.calls.clear()
    assert applier.lambda_handler(records, lambda_context) == {"batchItemFailures": []}
    # Then it wrote, read and updated items, as its policy allows
    assert {c.action for c in recorder.calls} == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
    }
    assert refused(policy_statements("ApplierFunction"), recorder.calls) == []


def test_only_the_webhook_route_is_public() -> None:
    api = resource("HttpApi")["Properties"]["Auth"]
    assert api["DefaultAuthorizer"] == "AWS_IAM"
    public = [
        (fid, e["Properties"]["Path"])
        for fid, f in functions().items()
        for e in f["Properties"].get("Events", {}).values()
        if e["Type"] == "HttpApi" and e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    ]
    assert public == [("WebhookFunction", "/webhooks/ocelot")]
    callback = resource("WebhookFunction")["Properties"]["Events"]["Callback"]["Properties"]
    assert callback["Method"] == "POST"


# ---- queue --------------------------------------------------------------------------------------


def test_the_queue_outlasts_the_sender_and_redrives_after_retries() -> None:
    queue = resource("SendQueue")["Properties"]
    timeout = resource("SenderFunction")["Properties"].get(
        "Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]
    )
    # Then a message is invisible for at least 6x the function's timeout (AWS's advice for SQS sources)
    assert queue["VisibilityTimeout"] >= 6 * timeout
    # And goes to the dead-letter queue only after at least 5 receives
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 5
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SendDeadLetterQueue", "Arn"]}
    # And the dead-letter queue keeps messages longer than the queue
    dlq = resource("SendDeadLetterQueue")["Properties"]
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


def test_create_queue_pair_uses_the_template_attributes(aws: dict[str, Any]) -> None:
    sqs = boto3.client("sqs")
    queue_url, dlq_url = create_queue_pair(sqs, "SendQueue", "SendDeadLetterQueue", "test")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert attributes["VisibilityTimeout"] == str(resource("SendQueue")["Properties"]["VisibilityTimeout"])
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert (
        int(redrive["maxReceiveCount"])
        == resource("SendQueue")["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    )


# ---- the webhook's path: stream, applier, throttles, alarms -----------------------------------------


def test_the_applier_reads_only_new_whole_raw_deliveries_with_bounded_retries() -> None:
    mapping = resource("ApplierStreamMapping")["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["MessagesTable", "StreamArn"]}
    assert resource("MessagesTable")["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    [pattern] = mapping["FilterCriteria"]["Filters"]
    assert json.loads(pattern["Pattern"]) == {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {"type": {"S": ["raw"]}}},
    }
    assert (mapping["FunctionResponseTypes"], mapping["BisectBatchOnFunctionError"]) == (
        ["ReportBatchItemFailures"],
        True,
    )
    assert 0 < mapping["MaximumRetryAttempts"] <= 10
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["ApplierDeadLetterQueue", "Arn"]
    }


def test_the_webhook_route_has_a_throttle_of_its_own() -> None:
    api = resource("HttpApi")["Properties"]
    route = api["RouteSettings"]["POST /webhooks/ocelot"]
    assert route == {
        "ThrottlingBurstLimit": {"Ref": "WebhookThrottleBurst"},
        "ThrottlingRateLimit": {"Ref": "WebhookThrottleRate"},
    }
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0


def test_the_access_log_names_who_called_but_never_the_query_string() -> None:
    fields = json.loads(resource("HttpApi")["Properties"]["AccessLogSettings"]["Format"])
    assert {"sourceIp", "userAgent", "status", "routeKey"} <= set(fields)
    assert not any("querystring" in value.lower() or "path" in value.lower() for value in fields.values())


def alarms() -> dict[str, dict[str, Any]]:
    return {
        k: v["Properties"] for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }


def alarm_metrics(properties: dict[str, Any]) -> set[str]:
    """The metric names an alarm reads, and the functions or queues whose metrics they are."""
    stats = [properties] + [
        m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m
    ]
    names = set()
    for stat in stats:
        if "MetricName" not in stat:
            continue
        dimensions = [d["Value"] for d in stat.get("Dimensions", [])]
        refs = [d.get("Ref") or (d.get("Fn::GetAtt") or [""])[0] for d in dimensions if isinstance(d, dict)]
        names |= {f"{stat['MetricName']}:{r}" for r in refs} or {stat["MetricName"]}
        names.add(stat["MetricName"])
    return names


def test_every_failure_of_the_webhook_path_has_an_alarm_that_tells_the_topic() -> None:
    read = set().union(*(alarm_metrics(p) for p in alarms().values()))
    for metric in (
        "WebhookServerErrors",
        "WebhookBodiesTooLarge",
        "WebhookMalformedItems",
        "IteratorAge:ApplierFunction",
        "ApproximateNumberOfMessagesVisible:ApplierDeadLetterQueue",
        "Errors:ApplierFunction",
        "Errors:StatusFunction",
        "Errors:SweepFunction",
    ):
        assert metric in read, metric
    for properties in alarms().values():
        assert properties["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_the_ocelot_secret_not_set_has_an_alarm_on_the_metric_the_sender_emits() -> None:
    # Given the metric the Sender emits when the Ocelot secret holds its placeholder (test_sender.py
    # asserts the Sender emits it); Then an alarm reads it, on the first one, in the Sender's namespace
    [properties] = [p for p in alarms().values() if "OcelotSecretNotSet" in alarm_metrics(p)]
    assert (
        properties["Namespace"]
        == TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    )
    assert (properties["Threshold"], properties["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert "OcelotSecretId" in properties["AlarmDescription"]


# ---- the roles the stack creates, as CloudFormation receives them (SAM's transform) ----------------

# Actions that take no resource-level permission: a statement of them alone may name "*".
NO_RESOURCE_ACTIONS = frozenset(
    {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"}
)
AWS_POLICY = "arn:aws:iam::aws:policy/"
# What SAM attaches to every function role: AWS's own policy for Lambda's logs, and with tracing on,
# X-Ray's write-only policy (its actions take no resource).
BASIC_EXECUTION = "service-role/AWSLambdaBasicExecutionRole"
XRAY_WRITE = "AWSXrayWriteOnlyAccess"


@cache
def transformed(tracing: str) -> dict[str, Any]:
    """template.yaml through the SAM translator that aws-sam-cli installs, as CloudFormation's
    AWS::Serverless transform runs it, with Tracing as given and the other parameters' defaults: the
    code where `sam deploy` uploads it (S3), as the transform receives it."""
    template = copy.deepcopy(TEMPLATE)
    for logical_id, spec in template["Resources"].items():
        for uri in ("CodeUri", "ContentUri"):
            if uri in spec.get("Properties", {}):
                spec["Properties"][uri] = f"s3://artifacts/{logical_id}.zip"
    session = boto3.session.Session(region_name="us-east-1")  # the region's name only: no call is made
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=session)
    pseudo = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
    result: dict[str, Any] = translator.translate(
        sam_template=template, parameter_values={"Tracing": tracing, **pseudo}
    )
    return result


def created(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def wildcard_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements naming "*" as a resource for an action that takes resources."""
    found = []
    for statement in document["Statement"]:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if "*" in resources and not set(actions(statement)) <= NO_RESOURCE_ACTIONS:
            found.append(statement)
    return found


@pytest.mark.parametrize("tracing", ["Disabled", "Active"])
def test_no_role_the_stack_creates_has_a_wildcard_resource(tracing: str) -> None:
    # Given the template as CloudFormation receives it after SAM's transform
    template = transformed(tracing)
    roles = created(template, "AWS::IAM::Role")
    # Then there is one role per function (none for the event source mappings: Lambda's own), and
    # the role the send-later schedules act as, which may put a message on the send queue and no more
    schedules = roles.pop("SendScheduleRole")
    assert set(roles) == {f"{function}Role" for function in functions()}
    [put] = [s for p in schedules["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert (put["Action"], put["Resource"]) == (["sqs:SendMessage"], {"Fn::GetAtt": ["SendQueue", "Arn"]})
    assert "ManagedPolicyArns" not in schedules
    for role_id, role in roles.items():
        # And no inline statement of any role names "*" where its actions take a resource
        for policy in role.get("Policies", []):
            assert wildcard_statements(policy["PolicyDocument"]) == [], (role_id, policy["PolicyName"])
        # And the only managed policies are Lambda's logging one, and X-Ray's when tracing is on:
        # no AWSLambdaSQSQueueExecutionRole (receive and delete on every queue), nor any other
        attached = [arn.removeprefix(AWS_POLICY) for arn in role["ManagedPolicyArns"]]
        assert attached == [BASIC_EXECUTION] + ([XRAY_WRITE] if tracing == "Active" else []), role_id
    # And the policies the stack hands out name no "*" either
    for policy_id, policy in created(template, "AWS::IAM::ManagedPolicy").items():
        assert wildcard_statements(policy["PolicyDocument"]) == [], policy_id


@pytest.mark.parametrize("tracing", ["Disabled", "Active"])
def test_functions_are_traced_only_when_tracing_is_active(tracing: str) -> None:
    # Given the transformed template with Tracing as given
    deployed = created(transformed(tracing), "AWS::Lambda::Function")
    # Then every function has Lambda's active tracing when asked, and no tracing configuration otherwise
    expected = {"Mode": {"Ref": "Tracing"}} if tracing == "Active" else None
    assert {name: f.get("TracingConfig") for name, f in deployed.items()} == dict.fromkeys(deployed, expected)


def test_the_sender_reads_its_own_queue_alone_through_an_event_source_mapping() -> None:
    # Given the Sender's event source mapping on the send queue
    mapping = resource("SenderQueueMapping")["Properties"]
    assert mapping["FunctionName"] == {"Ref": "SenderFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["SendQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "QueueMaximumConcurrency"}}
    assert {e["Type"] for e in resource("SenderFunction")["Properties"]["Events"].values()} == {"HttpApi"}
    # Then the Sender's role lets Lambda's poller receive, delete and read the attributes of that
    # queue, and names no other queue
    statements = policy_statements("SenderFunction")
    poller = [
        Call(f"sqs:{a}", "SendQueue") for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    ]
    assert refused(statements, poller) == []
    queues = [statement_resources(s) for s in statements if any(a.startswith("sqs:") for a in actions(s))]
    assert set().union(*queues) == {"SendQueue"}


# ---- parameters: what `sam deploy --guided` and the console ask ---------------------------------------

PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
INTERFACE: dict[str, Any] = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_every_parameter_says_what_it_is_and_bounds_its_value(name: str) -> None:
    parameter = PARAMETERS[name]
    assert len(parameter.get("Description", "")) > 20, name
    constrained = (
        "AllowedValues" in parameter
        or "AllowedPattern" in parameter
        or {"MinValue", "MaxValue"} <= set(parameter)
    )
    assert constrained, f"{name}: no AllowedValues, AllowedPattern or MinValue/MaxValue"
    if "AllowedPattern" in parameter:
        # A refused value is explained, and the default itself is allowed
        assert parameter.get("ConstraintDescription"), name
        assert re.fullmatch(parameter["AllowedPattern"], str(parameter["Default"])), name


def test_every_parameter_has_a_group_and_a_label_and_guided_deploy_asks_them_group_by_group() -> None:
    grouped = [name for group in INTERFACE["ParameterGroups"] for name in group["Parameters"]]
    assert sorted(grouped) == sorted(PARAMETERS), "each parameter in exactly one group"
    assert set(INTERFACE["ParameterLabels"]) == set(PARAMETERS)
    # `sam deploy --guided` asks in template order: the groups' order, the Ocelot account first
    assert list(PARAMETERS) == grouped
    assert grouped[:2] == ["OcelotSecretArn", "DefaultSender"]


@pytest.mark.parametrize(
    ("name", "allowed", "mistakes"),
    [
        (
            "DefaultSender",
            ["", "+15550000000", "+447700900123"],
            ["5550000000", "+0155", "+1 555 000", "+1555x"],
        ),
        (
            "OcelotBaseUrl",
            ["https://ai.ocelotbot.com", "https://sandbox.ocelotbot.com:8443/v2"],
            [
                "http://ai.ocelotbot.com",
                "ai.ocelotbot.com",
                "https://",
                "https://a.com/?key=1",
                "https://a b",
            ],
        ),
        (
            "OcelotSecretArn",
            ["", "arn:aws:secretsmanager:us-east-1:123456789012:secret:ocelot-AbCdEf"],
            ["ocelot", "arn:aws:sns:us-east-1:123456789012:x", "arn:aws:secretsmanager:us-east-1:1:secret:x"],
        ),
        (
            "AlarmTopicArn",
            ["", "arn:aws:sns:us-east-1:123456789012:ops-alarms"],
            ["ops-alarms", "arn:aws:sqs:us-east-1:123456789012:q"],
        ),
        ("DefaultOperatorId", ["", "operator-1", "8d1b0f3c-5b1e-4c1b-9a45-0c1f6f0e5d7a"], ["two words"]),
    ],
)
def test_patterns_take_what_they_should_and_refuse_the_mistakes(
    name: str, allowed: list[str], mistakes: list[str]
) -> None:
    # CloudFormation matches an AllowedPattern against the whole value
    pattern = PARAMETERS[name]["AllowedPattern"]
    assert [v for v in allowed if not re.fullmatch(pattern, v)] == []
    assert [v for v in mistakes if re.fullmatch(pattern, v)] == []


def test_the_webhook_secret_pattern_is_the_ocelot_secrets() -> None:
    assert PARAMETERS["WebhookSecretArn"]["AllowedPattern"] == PARAMETERS["OcelotSecretArn"]["AllowedPattern"]
