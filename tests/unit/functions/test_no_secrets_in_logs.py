"""No secret and no personal data in any log line or metric, whatever path a request takes.

Full flows run through both Lambda handlers (send via the API and via SQS: accepted, refused by Ocelot,
outcome unknown after a read timeout, retried after 503s, rejected as invalid; webhook deliveries with
Basic auth, token auth, bad auth, malformed and unexpected bodies) with every channel captured:

- the Powertools logger's own handler (its JSON lines), at DEBUG;
- every LogRecord of every logger reaching the root logger, and of Powertools' own package logger (all
  attributes, extras and tracebacks), at DEBUG for our code, Powertools, requests and urllib3 (Ocelot
  is a real HTTP server on 127.0.0.1);
- stdout and stderr at the file-descriptor level (EMF metrics, prints, anything else).

Control assertions prove each channel captured the lines it should, so the test cannot pass by
capturing nothing.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.applier.app import lambda_handler as applier_handler
from functions.sender.app import lambda_handler as send_handler
from functions.webhook.app import lambda_handler as webhook_handler
from ocelot_sms import runtime
from ocelot_sms.observability import logger, metrics
from tests.unit.functions.hostile_support import (
    API_EVENT,
    WEBHOOK_EVENT,
    basic,
    http_event,
    prepare_lambda,
    sqs_event,
    webhook_headers,
)
from tests.unit.support.aws import OCELOT_CREDENTIALS, WEBHOOK_CREDENTIALS, FakeContext
from tests.unit.support.ocelot import ACCEPT, Hang, LoopbackOcelot, Reply
from tests.unit.support.stream import TableStream
from tools.template_resources import load_template

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

WRONG_PASSWORD = "WRONG-PASSWORD-abc"
TEXT = "SECRET-TEXT-xyz"  # every message text starts with it
NUMBERS = [f"+1555987654{digit}" for digit in range(10)]
SENDER = "+15559876599"
READ_TIMEOUT = 0.5

OCELOT_BASIC = base64.b64encode(
    f"{OCELOT_CREDENTIALS['chatbotId']}:{OCELOT_CREDENTIALS['apiKey']}".encode()
).decode()
WEBHOOK_BASIC = basic(WEBHOOK_CREDENTIALS["username"], WEBHOOK_CREDENTIALS["password"])
WRONG_BASIC = basic(WEBHOOK_CREDENTIALS["username"], WRONG_PASSWORD)

SECRETS = {
    "webhook Authorization header": WEBHOOK_BASIC,
    "webhook Basic credentials": WEBHOOK_BASIC.removeprefix("Basic "),
    "webhook password": WEBHOOK_CREDENTIALS["password"],
    "webhook token": WEBHOOK_CREDENTIALS["token"],
    "wrong Authorization header": WRONG_BASIC,
    "wrong Basic credentials": WRONG_BASIC.removeprefix("Basic "),
    "wrong password": WRONG_PASSWORD,
    "Ocelot apiKey": OCELOT_CREDENTIALS["apiKey"],
    "Ocelot chatbotId": OCELOT_CREDENTIALS["chatbotId"],
    "Basic credentials sent to Ocelot": OCELOT_BASIC,
    "message text": TEXT,
    # A full number with or without its "+" (a masked "*******6543" is fine)
    **{f"phone number {number}": number.removeprefix("+") for number in [*NUMBERS, SENDER]},
}


def leaks(text: str) -> dict[str, list[str]]:
    """Each secret found in `text`, with the lines it was found in."""
    lines = text.splitlines()
    found = {}
    for name, secret in SECRETS.items():
        for variant in {secret, json.dumps(secret)[1:-1]}:  # as written, and as escaped in JSON
            hits = [line[:400] for line in lines if variant in line]
            if hits:
                found[name] = hits[:3]
    return found


# ---- capturing every channel ----------------------------------------------------------------------


class RecordCollector(logging.Handler):
    """Every record, all of it: message, args, extras, exception and stack as text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        lines = []
        for record in self.records:
            lines.append(self._formatter.format(record))
            # Every attribute (extras included) but the exception object itself: its formatted traceback
            # is in the line above, which is what any handler writes
            attributes = {k: v for k, v in vars(record).items() if k != "exc_info"}
            lines.append(json.dumps(attributes, default=repr, ensure_ascii=False))
        return "\n".join(lines)


@dataclass
class Captured:
    powertools: io.StringIO = field(default_factory=io.StringIO)
    records: RecordCollector = field(default_factory=RecordCollector)
    fd_out: str = ""
    fd_err: str = ""

    def everything(self) -> str:
        return "\n".join([self.powertools.getvalue(), self.records.text(), self.fd_out, self.fd_err])


# The AWS SDK's own DEBUG logging prints every request and response on the wire (secret values read from
# Secrets Manager, items written to DynamoDB): it is off in Lambda unless someone turns it on, and no
# code can make it safe. Those loggers stay at INFO; everything else is captured at DEBUG.
SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "moto")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Captured]:
    capture = Captured()
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    streams = []
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            streams.append((handler, handler.setStream(capture.powertools)))
    assert streams, "the Powertools logger has no stream handler to capture"
    root = logging.getLogger()
    root_level = root.level
    root.addHandler(capture.records)
    root.setLevel(logging.DEBUG)
    # Powertools' own package logger does not propagate (it prints only with POWERTOOLS_DEBUG): listen too
    package = logging.getLogger("aws_lambda_powertools")
    package_level = package.level
    package.addHandler(capture.records)
    package.setLevel(logging.DEBUG)
    sdk_levels = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    capfd.readouterr()
    try:
        yield capture
    finally:
        for name, level in sdk_levels.items():
            logging.getLogger(name).setLevel(level)
        package.setLevel(package_level)
        package.removeHandler(capture.records)
        root.setLevel(root_level)
        root.removeHandler(capture.records)
        for handler, stream in streams:
            handler.setStream(stream)
        logger.setLevel(previous_level)


def read_fds(capture: Captured, capfd: pytest.CaptureFixture[str]) -> None:
    out, err = capfd.readouterr()
    capture.fd_out += out
    capture.fd_err += err


# ---- the flows -----------------------------------------------------------------------------------


def message(index: int, tag: str) -> dict[str, Any]:
    return {"to": NUMBERS[index % len(NUMBERS)], "text": f"{TEXT}-{tag}-{index}", "ref": f"ref-{tag}-{index}"}


def batch(tag: str, count: int = 3, **changes: Any) -> dict[str, Any]:
    body = {
        "requestId": f"logs-{tag}-{uuid.uuid4()}",
        "from": SENDER,
        "operatorId": "operator-1",
        "messages": [message(i, tag) for i in range(count)],
    }
    body.update(changes)
    return body


def post_batch(body: dict[str, Any] | str, context: FakeContext, request_id: str) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    event = http_event(
        API_EVENT, body=text, headers={"content-type": "application/json"}, request_id=request_id
    )
    response: dict[str, Any] = send_handler(event, context)
    return response


def ocelot_echo(status: int) -> Reply:
    """An Ocelot error that repeats the request back: the texts and numbers must still not be logged."""
    problems = [f"messages.{i}.to {n} is not reachable: {TEXT}-echo-{i}" for i, n in enumerate(NUMBERS[:3])]
    return (status, {}, {"statusCode": status, "message": problems, "error": "Bad Request"})


def callback(event_id: str, index: int, status: str = "delivered") -> dict[str, Any]:
    return {
        "name": "OutgoingSms.statusChanged",
        "eventId": event_id,
        "batchId": "ocelot-batch-logs",
        "messageId": f"ocelot-msg-{index}",
        "to": NUMBERS[index],
        "from": SENDER,
        "status": status,
        "dateTime": "2026-11-26T16:00:05Z",
        "errorMessage": f"{TEXT}-error {NUMBERS[index]}",
    }


def inbound(event_id: str) -> dict[str, Any]:
    return {
        "name": "IncomingSms.received",
        "eventId": event_id,
        "from": NUMBERS[7],
        "to": SENDER,
        "message": f"{TEXT}-inbound STOP",
        "dateTime": "2026-11-26T16:01:00Z",
    }


def deliver(
    context: FakeContext,
    body: str,
    request_id: str,
    authorization: str | None = WEBHOOK_BASIC,
    token: str | None = None,
) -> dict[str, Any]:
    event = http_event(
        WEBHOOK_EVENT,
        body=body,
        headers=webhook_headers(authorization),
        query={"token": token} if token else None,
        request_id=request_id,
    )
    response: dict[str, Any] = webhook_handler(event, context)
    return response


@pytest.fixture
def ocelot(monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]) -> Iterator[LoopbackOcelot]:
    with LoopbackOcelot() as server:
        monkeypatch.setenv("OCELOT_BASE_URL", server.base_url)
        monkeypatch.setenv("READ_TIMEOUT_SECONDS", str(READ_TIMEOUT))
        runtime.reset()
        prepare_lambda(monkeypatch)
        yield server
    metrics.clear_metrics()


def test_no_secret_or_personal_data_reaches_any_log_or_metric(
    ocelot: LoopbackOcelot,
    captured: Captured,
    capfd: pytest.CaptureFixture[str],
    lambda_context: FakeContext,
    env: dict[str, str],
) -> None:
    statuses: dict[str, Any] = {}

    # Send API: accepted; Ocelot refuses (400, echoing the request); no answer in time (unknown outcome)
    statuses["api accepted"] = post_batch(batch("api"), lambda_context, "req-logs-api")["statusCode"]
    ocelot.script.append(ocelot_echo(400))
    statuses["api refused"] = post_batch(batch("refused"), lambda_context, "req-logs-refused")["statusCode"]
    ocelot.script.append(Hang(READ_TIMEOUT * 3))
    statuses["api unknown"] = post_batch(batch("timeout"), lambda_context, "req-logs-timeout")["statusCode"]
    # ... invalid requests: a field of each kind wrong, and not JSON at all
    invalid = batch(
        "invalid", messages=[{"to": NUMBERS[5][1:], "text": f"{TEXT}-invalid", "ref": NUMBERS[5]}]
    )
    statuses["api invalid"] = post_batch(invalid, lambda_context, "req-logs-invalid")["statusCode"]
    not_json = f'{{"to": "{NUMBERS[6]}", "text": "{TEXT}-not-json"'
    statuses["api not JSON"] = post_batch(not_json, lambda_context, "req-logs-not-json")["statusCode"]

    # Send queue: accepted, invalid (kept as rejected), Ocelot unavailable (retried, then left to SQS)
    ocelot.script.extend([ACCEPT, ocelot_echo(503), ocelot_echo(503), ocelot_echo(503)])
    queued = sqs_event(
        [
            json.dumps(batch("sqs")),
            json.dumps(
                batch("sqs-invalid", messages=[{"to": NUMBERS[8][2:], "text": f"{TEXT}-sqs-invalid"}])
            ),
            f"{TEXT}-not-json {NUMBERS[9]}",
            json.dumps(batch("sqs-503")),
        ]
    )
    statuses["queue"] = send_handler(queued, lambda_context)

    # Webhook: Basic auth, token auth, a wrong password, malformed bodies, an unexpected failure
    statuses["webhook basic"] = deliver(
        lambda_context, json.dumps(callback("evt-logs-1", 1)), "wh-logs-basic"
    )
    token_body = json.dumps([callback("evt-logs-2", 2, "sent"), inbound("evt-logs-3")])
    statuses["webhook token"] = deliver(
        lambda_context, token_body, "wh-logs-token", authorization=None, token=WEBHOOK_CREDENTIALS["token"]
    )
    statuses["webhook wrong password"] = deliver(
        lambda_context, json.dumps(callback("evt-logs-4", 4)), "wh-logs-wrong", authorization=WRONG_BASIC
    )
    statuses["webhook wrong token"] = deliver(
        lambda_context, json.dumps(callback("evt-logs-5", 5)), "wh-logs-wrong-token", None, WRONG_PASSWORD
    )
    truncated = json.dumps(callback("evt-logs-6", 6))[:-20]
    statuses["webhook truncated"] = deliver(lambda_context, truncated, "wh-logs-truncated")
    wrong_types = {**callback("evt-logs-7", 7), "eventId": 1.5, "messageId": NUMBERS[3] * 30}
    statuses["webhook wrong types"] = deliver(lambda_context, json.dumps(wrong_types), "wh-logs-types")
    # (a lone surrogate in an unknown field currently fails unexpectedly: see test_hostile_input.py)
    unexpected = json.dumps(inbound("evt-logs-8"))[:-1] + ', "extra": "\\udc00"}'
    statuses["webhook unexpected"] = deliver(lambda_context, unexpected, "wh-logs-unexpected")
    # Applier: everything the webhook kept, as the table's stream hands it over
    statuses["applier"] = applier_handler(TableStream(env["TABLE_NAME"]).event(), lambda_context)
    logger.debug("capture probe: debug lines are captured")

    read_fds(captured, capfd)
    everything = captured.everything()
    powertools_lines = captured.powertools.getvalue()
    records = captured.records.text()

    # Control: the flows took the paths they were meant to
    assert statuses["api accepted"] == 201
    assert statuses["api refused"] == 502
    assert statuses["api unknown"] == 202
    assert statuses["api invalid"] == 422
    assert statuses["api not JSON"] == 400
    assert statuses["queue"] == {"batchItemFailures": [{"itemIdentifier": queued["Records"][3]["messageId"]}]}
    assert statuses["webhook basic"]["statusCode"] == 200
    assert statuses["webhook token"]["statusCode"] == 200
    assert statuses["webhook wrong password"]["statusCode"] == 401
    assert statuses["webhook wrong token"]["statusCode"] == 401
    assert statuses["webhook truncated"]["statusCode"] == 200
    assert statuses["webhook wrong types"]["statusCode"] == 200
    assert statuses["applier"] == {"batchItemFailures": []}
    assert len(ocelot.received) == 7  # api x3, queue: 1 accepted + 3 attempts refused with 503
    assert {r.authorization for r in ocelot.received} == {f"Basic {OCELOT_BASIC}"}
    # ... and every channel captured what it should have
    for line in (
        "batch submitted",
        "chunk outcome unknown",
        "queued request rejected",
        "delivery applied",
        "delivery holds items that are not events",
        "capture probe",
        "wh-logs-basic",  # the deliveryId, an extra field
    ):
        assert line in powertools_lines, line
        assert line in records, line
    assert '"correlation_id":"req-logs-api"' in powertools_lines.replace(" ", "")
    assert "Starting new HTTP connection" in records  # urllib3, at DEBUG
    assert "Record processing exception" in records  # Powertools' batch processor, at DEBUG
    for metric in (
        "BatchesSubmitted",
        "MessagesSent",
        "ChunksUnknown",
        "RequestsRejected",
        "WebhookAuthFailures",
    ):
        assert f'"{metric}"' in captured.fd_out, metric
    assert '"Namespace":"OcelotSms"' in captured.fd_out.replace(" ", "")

    # Then: no secret and no personal data anywhere (and the search does find each of them when present)
    assert leaks(everything) == {}
    for secret in SECRETS.values():
        assert leaks(everything + f"\nplanted: {secret}"), secret


def test_a_rejected_queue_message_logs_no_number_from_its_keys(
    ocelot: LoopbackOcelot,
    captured: Captured,
    capfd: pytest.CaptureFixture[str],
    lambda_context: FakeContext,
) -> None:
    # Given a queue message whose messages are written the wrong way: {number: text}
    body = {"requestId": "logs-map", "messages": [{NUMBERS[4]: f"{TEXT}-map"}]}

    # When
    result = send_handler(sqs_event([json.dumps(body)]), lambda_context)

    # Then: rejected (kept whole in the table), and the log line says which fields, not the data
    assert result == {"batchItemFailures": []}
    read_fds(captured, capfd)
    assert "queued request rejected" in captured.powertools.getvalue()
    assert leaks(captured.everything()) == {}


def test_the_template_never_turns_on_event_logging() -> None:
    """Powertools logs or prints the whole event (Authorization header, token, message texts) when any of
    these is on: the template must keep them off for every function."""
    template = load_template()
    environments = [template["Globals"]["Function"]["Environment"]["Variables"]]
    environments += [
        resource["Properties"].get("Environment", {}).get("Variables", {})
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    assert (
        template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    )
    for variables in environments:
        assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() == "false"
        assert "POWERTOOLS_DEV" not in variables
        assert "POWERTOOLS_EVENT_HANDLER_DEBUG" not in variables
