"""docs/openapi.yaml against the real handlers: every events/ case invoked (moto, a fake Ocelot), its
status documented for its route and its body valid against the document's schema; every route the
template deploys described, and nothing else."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from functions.sender import app as sender_app
from functions.status import app as status_app
from functions.webhook import app as webhook_app
from ocelot_sms.observability import metrics
from tests.events import EVENTS, load_event, with_body
from tests.unit.support.aws import FakeContext
from tests.unit.support.flows import delete_batch
from tests.unit.support.ocelot import FakeOcelot, Reply, Sent, guard_network, nestjs, ocelot_mock
from tools.template_resources import ROOT, load_template

DOCUMENT = ROOT / "docs" / "openapi.yaml"
ROOT_URI = "urn:ocelot-sms:openapi"
HANDLERS: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "SenderFunction": sender_app.lambda_handler,
    "StatusFunction": status_app.lambda_handler,
    "WebhookFunction": webhook_app.lambda_handler,
}
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def template_routes() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the function the template routes it to."""
    routes = {}
    for logical_id, spec in load_template()["Resources"].items():
        for event in spec.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes[(event["Properties"]["Method"].upper(), event["Properties"]["Path"])] = logical_id
    return routes


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI reference object (a response, a header) followed within the document."""
    while "$ref" in node:
        target: Any = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def validator(pointer: str) -> OAS31Validator:
    """A validator for the schema at `pointer` in the document, its $refs resolved in the document."""
    registry: Registry[Any] = Registry().with_resource(
        ROOT_URI, Resource.from_contents(document(), default_specification=DRAFT202012)
    )
    return OAS31Validator({"$ref": f"{ROOT_URI}#{pointer}"}, registry=registry)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def check_response(method: str, path: str, response: dict[str, Any]) -> dict[str, Any]:
    """The response's status is documented for the route, each header it requires is sent, and its body
    is valid against the route's schema for that status. Returns the parsed body."""
    operation = document()["paths"][path][method.lower()]
    status = str(response["statusCode"])
    assert status in operation["responses"], f"{method} {path} answered {status}, not in the document"
    documented = _deref(operation["responses"][status])
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    assert headers.get("content-type", "").startswith("application/json")
    for name in documented.get("headers", {}):
        if name != "Retry-After" or status == "503":  # 409 conflict has none; in_progress has one
            assert name.lower() in headers, f"{method} {path} {status} without {name}"
    body = json.loads(response["body"])
    content = "application~1json"
    if "$ref" in operation["responses"][status]:
        pointer = operation["responses"][status]["$ref"].removeprefix("#") + f"/content/{content}/schema"
    else:
        pointer = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}/content/{content}/schema"
    errors = [e.message for e in validator(pointer).iter_errors(body)]
    assert errors == [], f"{method} {path} {status}: {errors}"
    return dict(body)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    guard_network(monkeypatch)


@pytest.fixture(autouse=True)
def _metrics_namespace(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "namespace", env["POWERTOOLS_METRICS_NAMESPACE"])


def ocelot_ids(call: Sent) -> Reply:
    """Ocelot accepting a chunk with the ids events/ speak of (ocelot-msg-1, -2...)."""
    messages = [
        {"id": f"ocelot-msg-{i + 1}", "to": m["to"], "externalId": m.get("externalId")}
        for i, m in enumerate(call.payload["messages"])
    ]
    return 200, {}, {"batchId": "ocelot-batch-1", "messages": messages}


@pytest.fixture
def ocelot(aws: dict[str, Any]) -> Iterator[FakeOcelot]:
    with ocelot_mock() as mock:
        fake = FakeOcelot(mock)
        fake.default = ocelot_ids
        yield fake


class Api:
    """Invokes the function the template routes an event to, and checks the answer against the document."""

    def __init__(self, context: FakeContext) -> None:
        self.context = context
        self.routes = template_routes()

    def __call__(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        method, path = event["routeKey"].split(" ", 1)
        response = dict(HANDLERS[self.routes[(method, path)]](event, self.context))
        return response["statusCode"], check_response(method, path, response)


@pytest.fixture
def api(aws: dict[str, Any], ocelot: FakeOcelot, lambda_context: FakeContext) -> Api:
    return Api(lambda_context)


def api_events() -> list[str]:
    """Every events/ file API Gateway would send (the queue's and the stream's are not HTTP)."""
    return sorted(p.stem for p in EVENTS.glob("*.json") if "routeKey" in json.loads(p.read_text()))


def sent(api: Api) -> None:
    status, _ = api(load_event("api_post_batch"))
    assert status == 201


# Each events/ case: what is there before it (a sent batch, a stored callback), and the status it gets.
CASES: dict[str, tuple[Callable[[Api], None] | None, int]] = {
    "api_post_batch": (None, 201),
    "api_post_batch_dry_run": (None, 200),
    "api_post_batch_invalid": (None, 422),
    "api_post_batch_not_json": (None, 400),
    "api_get_batch": (sent, 200),
    "api_get_message": (sent, 200),
    "webhook_status_event": (None, 200),
    "webhook_event_array": (None, 200),
    "webhook_token_auth": (None, 200),
    "webhook_malformed": (None, 200),
    "webhook_bad_auth": (None, 401),
}


def test_the_document_is_valid_openapi_3_1() -> None:
    # Given docs/openapi.yaml; When validated as OpenAPI 3.1; Then it is (raises otherwise)
    assert document()["openapi"].startswith("3.1")
    validate_spec(document())


def test_every_route_the_template_deploys_is_described_and_nothing_else() -> None:
    # Given the template's HTTP API routes and the document's operations
    documented = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }

    # Then they are the same; every signed route says sigv4, the webhook Basic or its token
    assert documented == set(template_routes())
    assert document()["security"] == [{"sigv4": []}]
    webhook = document()["paths"]["/webhooks/ocelot"]["post"]
    assert webhook["security"] == [{"ocelotBasic": []}, {"ocelotToken": []}]


def test_every_http_event_of_events_has_a_case() -> None:
    # Given the events/ files API Gateway would send; Then each is checked below
    assert set(api_events()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_event_is_answered_as_the_document_says(name: str, api: Api) -> None:
    # Given what the case needs stored first
    given, expected = CASES[name]
    if given is not None:
        given(api)

    # When the event is sent to the function the template routes it to
    status, _body = api(load_event(name))

    # Then its status is the case's, documented for the route, with a body valid against its schema
    assert status == expected


@pytest.mark.parametrize(
    ("name", "valid"),
    [("api_post_batch", True), ("api_post_batch_dry_run", True), ("api_post_batch_invalid", False)],
)
def test_the_request_bodies_of_events_are_what_the_document_accepts(name: str, valid: bool) -> None:
    # Given a POST /batches body of events/; When checked against BatchRequest
    body = json.loads(load_event(name)["body"])
    errors = list(validator("/components/schemas/BatchRequest").iter_errors(body))

    # Then the document accepts exactly what the Sender accepts
    assert (errors == []) is valid


def test_a_queue_message_body_is_a_batch_request() -> None:
    # Given events/sqs_batch.json; Then each record's body is a BatchRequest as documented
    for record in load_event("sqs_batch")["Records"]:
        assert (
            list(validator("/components/schemas/BatchRequest").iter_errors(json.loads(record["body"]))) == []
        )


def test_sends_their_pages_and_what_is_not_found_are_answered_as_documented(api: Api) -> None:
    # Given two parts of one send, sent
    for part in (1, 2):
        body = json.loads(load_event("api_post_batch")["body"]) | {
            "requestId": f"term-report-{part}",
            "sendId": "term-report",
            "part": part,
            "parts": 3,
        }
        assert api(with_body(load_event("api_post_batch"), body))[0] == 201

    # When the sends, the send and its pages are read, and ids nobody sent
    listed = status_route(api, "GET /sends", "/sends", query={"limit": "1"})
    send = status_route(
        api, "GET /sends/{sendId}", "/sends/term-report", {"sendId": "term-report"}, {"limit": "2"}
    )
    missing = status_route(api, "GET /batches/{requestId}", "/batches/nobody", {"requestId": "nobody"})
    bad_limit = status_route(api, "GET /sends", "/sends", query={"limit": "0"})

    # Then each is valid against the document (checked by `api`), with what was stored
    assert listed[1]["sends"][0]["sendId"] == "term-report"
    assert send[1]["missingParts"] == [3]
    assert send[1]["nextCursor"] is not None
    assert (missing[0], bad_limit[0]) == (404, 400)


def status_route(
    api: Api,
    route_key: str,
    path: str,
    parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """events/api_get_batch.json turned into another status request."""
    event = load_event("api_get_batch")
    event.update(routeKey=route_key, rawPath=path, pathParameters=parameters, queryStringParameters=query)
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event["requestContext"]["routeKey"] = route_key
    event["requestContext"]["http"]["path"] = path
    return api(event)


@pytest.mark.parametrize(
    ("reply", "secret", "expected"),
    [
        (nestjs(400, "from is not active", "Bad Request"), None, (502, "rejected")),
        (nestjs(503, "busy", "Service Unavailable"), None, (503, "unavailable")),
        (None, {"chatbotId": "REPLACE_ME", "apiKey": "generated"}, (503, "not_configured")),
    ],
)
def test_errors_of_a_send_are_answered_as_documented(
    api: Api,
    ocelot: FakeOcelot,
    aws: dict[str, Any],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    reply: Reply | None,
    secret: dict[str, str] | None,
    expected: tuple[int, str],
) -> None:
    # Given Ocelot refusing or busy, or the Ocelot secret as the stack creates it
    monkeypatch.setenv("MAX_SEND_ATTEMPTS", "1")
    if reply is not None:
        ocelot.then(reply)
    if secret is not None:
        aws["secretsmanager"].put_secret_value(
            SecretId=env["OCELOT_SECRET_ID"], SecretString=json.dumps(secret)
        )

    # When a batch is posted; Then the error is the documented one, its body valid against Error
    status, body = api(load_event("api_post_batch"))
    assert (status, body["error"]) == expected


def test_a_request_id_used_with_another_body_is_a_documented_conflict(api: Api) -> None:
    # Given a sent batch; When another body comes with its requestId; Then 409 as documented
    sent(api)
    other = json.loads(load_event("api_post_batch")["body"]) | {
        "messages": [{"to": "+15551239999", "text": "x"}]
    }
    status, body = api(with_body(load_event("api_post_batch"), other))
    assert (status, body["error"]) == (409, "conflict")


def test_the_document_is_where_the_readme_says() -> None:
    # Given the README; Then it points callers at the document
    assert "docs/openapi.yaml" in (ROOT / "README.md").read_text()


def test_sending_later_cancel_and_replies_are_answered_as_documented(
    api: Api, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack that can send later, and a batch to be sent in an hour, and one sent at once
    monkeypatch.setenv("SCHEDULE_GROUP_NAME", "sends")
    monkeypatch.setenv("SCHEDULE_ROLE_ARN", "arn:aws:iam::123456789012:role/schedules")
    monkeypatch.setenv("SEND_QUEUE_ARN", "arn:aws:sqs:us-east-1:123456789012:send")
    boto3.client("scheduler").create_schedule_group(Name="sends")
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = json.loads(load_event("api_post_batch")["body"]) | {"requestId": "later-1", "sendAt": at}
    scheduled = api(with_body(load_event("api_post_batch"), later))
    sent(api)
    sent_id = json.loads(load_event("api_post_batch")["body"])["requestId"]

    # When the scheduled batch is read, cancelled twice, and the one sent at once cancelled
    read = status_route(api, "GET /batches/{requestId}", "/batches/later-1", {"requestId": "later-1"})
    cancel = delete_batch("/batches/later-1")
    cancel.update(routeKey="DELETE /batches/{requestId}", pathParameters={"requestId": "later-1"})
    cancelled, again = api(cancel), api(copy.deepcopy(cancel))
    too_late = delete_batch(f"/batches/{sent_id}")
    too_late.update(routeKey="DELETE /batches/{requestId}", pathParameters={"requestId": sent_id})
    # And the replies are listed, and with a since that is no time
    replies = status_route(api, "GET /inbound", "/inbound", query={"since": "2026-01-01"})
    bad_since = status_route(api, "GET /inbound", "/inbound", query={"since": "soon"})

    # Then each is valid against the document (checked by `api`), with what happened
    assert (scheduled[0], scheduled[1]["status"]) == (202, "scheduled")
    assert read[1]["schedule"]["status"] == "scheduled"
    assert (cancelled[0], again[0], cancelled[1]["status"]) == (200, 200, "cancelled")
    assert (api(too_late)[0], replies[0], bad_since[0]) == (409, 200, 400)
