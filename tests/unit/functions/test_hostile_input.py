"""Hostile input, property-based: whatever reaches the two HTTP routes and the send queue, the functions
answer with a JSON status (never an unhandled exception, never a 5xx while storage works, never a
traceback), keep the raw delivery of every authenticated callback, and store nothing at all for an
unauthenticated one. Invalid send requests are refused with their problems before Ocelot is called.

Each property runs a fixed number of generated cases against moto (set up once per test) and asserts
that number was reached, so a strategy that silently stops generating fails the test.

Inputs that once broke storage (over-long ids, incompressible or huge bodies, lone surrogates,
undecodable bodies) are pinned by the regression tests at the end of the file.
"""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions.applier.app import lambda_handler as applier_handler
from functions.sender.app import lambda_handler as send_handler
from functions.webhook.app import lambda_handler as webhook_handler
from ocelot_sms import runtime
from ocelot_sms.contract import SEND_PATH
from ocelot_sms.observability import metrics
from ocelot_sms.settings import get_settings
from ocelot_sms.store import RawRef
from ocelot_sms.store.codec import PROBLEMS_KEPT
from tests.unit.functions.hostile_support import (
    API_EVENT,
    WEBHOOK_EVENT,
    WriteCounter,
    basic,
    http_event,
    leaked_exception_text,
    prepare_lambda,
    sqs_event,
    webhook_headers,
)
from tests.unit.support.aws import OCELOT_URL, WEBHOOK_CREDENTIALS, FakeContext, scan_table
from tests.unit.support.ocelot import accepted
from tests.unit.support.stream import TableStream

WEBHOOK_CASES = 600
SEND_API_CASES = 400
SEND_QUEUE_CASES = 150

USER = WEBHOOK_CREDENTIALS["username"]
PASSWORD = WEBHOOK_CREDENTIALS["password"]
TOKEN = WEBHOOK_CREDENTIALS["token"]
GOOD_BASIC = basic(USER, PASSWORD)
WEBHOOK_PATH = "/webhooks/ocelot"
OCELOT_SEND_URL = OCELOT_URL + SEND_PATH
OCELOT_CHUNK = 100  # OCELOT_MAX_MESSAGES in the `env` fixture
SORT_KEY_MAX_BYTES = 1024  # DynamoDB's limit; an event's sort key is "EVT#" + its eventId

pytestmark = [
    pytest.mark.usefixtures("lambda_like"),
    # A send request refused before any work publishes no metric: Powertools warns, rightly.
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
]


def cases(count: int) -> settings:
    """Exactly `count` generated cases, whatever profile is loaded; no example database in the repo."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


@pytest.fixture
def lambda_like(monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]) -> Iterator[None]:
    prepare_lambda(monkeypatch)
    yield
    metrics.clear_metrics()


def check_response(response: Any) -> tuple[int, Any]:
    """Always a dict with an int status and a JSON body free of exception text."""
    assert isinstance(response, dict), response
    status = response["statusCode"]
    assert isinstance(status, int)
    body = response.get("body") or ""
    assert not leaked_exception_text(body), body[:2000]
    assert status < 500, body[:2000]
    return status, json.loads(body)


# =====================================================================================================
# Webhook: bodies
# =====================================================================================================

ODD_CHARACTERS = (
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "\x00",
    "\x1b",
    "\u0301",  # combining acute accent
    "\u2028",  # line separator (valid in JSON, not in JavaScript)
    "\U0001f600",  # astral: a surrogate pair when escaped in JSON
    "\U0010fffd",
    "\ufffd",
    "\\",
    '"',
    "\n",
    "中",
    "ü",
    "Ω",
)
odd_text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(ODD_CHARACTERS), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
    | st.sampled_from(["", "null", "delivered", "OutgoingSms.statusChanged", "2026-11-26T16:00:00Z"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=12,
)

STATUS_WORDS = ("queued", "sent", "delivered", "undelivered", "failed", "opted_out", "OptedOut", "DELIVERED")
EVENT_NAMES = ("OutgoingSms.statusChanged", "IncomingSms.received", "outgoing_sms.status_changed", "x")
INSTANTS = (
    "2026-11-26T16:00:00Z",
    "2026-11-26T11:00:09-05:00",
    "2026-11-26 16:00:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+14:00",
    "2026-02-30T00:00:00Z",
    "not a date",
    "",
)


def fits_sort_key(event_id: str) -> bool:
    """Longer ids are refused with a 400 (test_an_event_id_too_long_for_a_dynamodb_key_is_not_a_5xx);
    the oracle here expects every generated id to be stored."""
    return len(f"EVT#{event_id}".encode()) <= SORT_KEY_MAX_BYTES


event_ids = (
    st.text(min_size=1, max_size=256).filter(fits_sort_key)
    | st.text(alphabet=st.sampled_from(ODD_CHARACTERS), min_size=1, max_size=64)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.builds(lambda: f"evt-{uuid.uuid4()}")
)
bad_event_ids = (
    st.sampled_from(["", None, True, False, 1.5, -0.0, [], {}, ["evt-1"], {"id": "evt-1"}])
    | st.integers(min_value=257, max_value=5_000).map(lambda n: "e" * n)
    | st.just("e" * 100_000)
    | st.floats(allow_nan=True)
)


def field_values(key: str) -> st.SearchStrategy[Any]:
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "name": st.sampled_from(EVENT_NAMES),
        "status": st.sampled_from(STATUS_WORDS),
        "dateTime": st.sampled_from(INSTANTS),
        "messageId": st.builds(lambda: f"m-{uuid.uuid4()}") | st.text(max_size=256),
        "to": st.sampled_from(["+15551230010", "+1 555 123 0010", ""]),
        "from": st.sampled_from(["+15550000000", "0"]),
    }
    return plausible.get(key, odd_text) | json_values


EVENT_FIELDS = (
    "name",
    "batchId",
    "messageId",
    "to",
    "from",
    "status",
    "dateTime",
    "errorCode",
    "errorMessage",
)


@st.composite
def event_objects(draw: st.DrawFn, ids: st.SearchStrategy[Any] = event_ids) -> dict[str, Any]:
    """One event item: a (possibly wrong) eventId, known fields with any JSON type, extra fields."""
    item: dict[str, Any] = {}
    if draw(st.integers(0, 9)):  # now and then, no eventId at all
        item["eventId"] = draw(ids)
    for key in EVENT_FIELDS:
        if draw(st.booleans()):
            item[key] = draw(field_values(key))
    item.update(draw(st.dictionaries(odd_text, json_values, max_size=3)))
    return item


@dataclass(frozen=True, repr=False)
class Body:
    label: str
    data: str | bytes | None  # None: no body at all; bytes: sent base64-encoded (isBase64Encoded)
    base64_encoded: bool = False

    def __repr__(self) -> str:
        data = (
            repr(self.data[:300]) + (f"... ({len(self.data)})" if len(self.data) > 300 else "")
            if self.data
            else repr(self.data)
        )
        return f"Body({self.label!r}, {data}, base64_encoded={self.base64_encoded})"

    @property
    def raw(self) -> bytes:
        """What the function receives after API Gateway: the bytes of the HTTP body."""
        if self.data is None:
            return b""
        return self.data if isinstance(self.data, bytes) else self.data.encode()


def dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def event_bodies(draw: st.DrawFn) -> Body:
    """One event or an array of them, as JSON (odd unicode raw or \\u-escaped)."""
    ascii_only = draw(st.booleans())
    if draw(st.booleans()):
        return Body("event", dumps(draw(event_objects()), ascii_only))
    items = draw(st.lists(event_objects(), min_size=0, max_size=12))
    return Body("event array", dumps(items, ascii_only))


@st.composite
def redelivered_bodies(draw: st.DrawFn) -> Body:
    """The same event repeated in one delivery (an eventId repeated, or missing from some items)."""
    event = draw(event_objects())
    event["eventId"] = f"evt-{uuid.uuid4()}"
    copies = draw(st.integers(2, 6))
    items: list[Any] = [dict(event) for _ in range(copies)]
    if draw(st.booleans()):
        del items[-1]["eventId"]
    return Body("repeated eventId", json.dumps(items))


@st.composite
def wrong_types_bodies(draw: st.DrawFn) -> Body:
    """Every known field (eventId included) of a type the contract does not expect."""
    item = {key: draw(json_values) for key in EVENT_FIELDS}
    item["eventId"] = draw(bad_event_ids | json_values)
    return Body("wrong types", json.dumps(item))


@st.composite
def truncated_bodies(draw: st.DrawFn) -> Body:
    text = draw(event_bodies()).data
    assert isinstance(text, str)
    cut = draw(st.integers(0, max(len(text) - 1, 0)))
    return Body("truncated JSON", text[:cut])


@st.composite
def repeated_keys_bodies(draw: st.DrawFn) -> Body:
    first, second = draw(json_scalars), draw(event_ids | json_scalars)
    return Body("repeated keys", f'{{"eventId": {json.dumps(first)}, "eventId": {json.dumps(second)}}}')


@st.composite
def deep_bodies(draw: st.DrawFn) -> Body:
    """Nesting of 1 to 600,000 levels, at the top or inside a field, closed or not. Depths near
    CPython's JSON nesting limit (about 10,000) are avoided: either side of it is tested."""
    depth = draw(st.sampled_from([1, 2, 64, 500, 2_000, 5_000, 20_000, 100_000, 199_999, 600_000]))
    opening, closing, leaf = draw(st.sampled_from([("[", "]", ""), ('{"a":', "}", "1")]))
    nested = opening * depth + leaf + closing * depth
    match draw(st.sampled_from(["top", "field", "unclosed"])):
        case "top":
            return Body(f"nested {depth}", nested)
        case "field":
            return Body(f"nested {depth} in a field", f'{{"eventId": "deep-{depth}", "x": {nested}}}')
        case _:
            return Body(f"unclosed {depth}", opening * depth)


@st.composite
def sized_bodies(draw: st.DrawFn) -> Body:
    """Around and over the body limit. What storage can hold stays below it: a single event of at most
    300,000 bytes (test_a_large_event_under_the_body_limit_is_not_a_5xx) and incompressible bodies of
    at most 250,000 bytes (test_an_incompressible_body_under_the_limit_is_not_a_5xx)."""
    limit = get_settings().webhook_max_body_bytes
    over = st.sampled_from([limit + 1, limit + 2, 2 * limit, 5 * limit]) | st.integers(limit + 1, 4 * limit)
    match draw(st.sampled_from(["event", "events", "junk", "incompressible"])):
        case "event":
            size = draw(st.sampled_from([1_000, 32_000, 32_001, 100_000, 300_000]) | over)
            head = f'{{"eventId": "big-{size}", "pad": "'
            return Body(f"{size}-byte event", head + "x" * max(size - len(head) - 2, 0) + '"}')
        case "events":
            count = draw(st.sampled_from([50, 200]))
            pad = "y" * draw(st.sampled_from([100, 1_000, 4_000, limit // count]))
            items = [{"eventId": f"many-{uuid.uuid4()}", "errorMessage": pad} for _ in range(count)]
            return Body(f"{count} events", json.dumps(items))
        case "junk":
            size = draw(st.sampled_from([limit - 1, limit]) | st.integers(0, limit) | over)
            return Body(f"{size} bytes of junk", "x" * size)
        case _:
            data = random.Random(draw(st.integers())).randbytes(draw(st.integers(0, 250_000)))
            return Body(f"{len(data)} random bytes", data)


@st.composite
def other_bodies(draw: st.DrawFn) -> Body:
    match draw(st.sampled_from(["text", "bytes", "scalar", "junk array", "none", "utf-16"])):
        case "text":
            return Body("random text", draw(st.text(max_size=200)))
        case "bytes":
            return Body("random bytes", draw(st.binary(max_size=200)))
        case "scalar":
            return Body("JSON scalar", json.dumps(draw(json_scalars)))
        case "junk array":
            return Body("junk array", json.dumps(draw(st.lists(json_values, max_size=8))))
        case "utf-16":
            data = json.dumps(draw(event_objects(ids=st.builds(lambda: f"evt-{uuid.uuid4()}"))))
            return Body("UTF-16 event", data.encode("utf-16"))
        case _:
            return Body("no body", None)


webhook_bodies = (
    event_bodies()
    | redelivered_bodies()
    | wrong_types_bodies()
    | truncated_bodies()
    | repeated_keys_bodies()
    | deep_bodies()
    | sized_bodies()
    | other_bodies()
)


@st.composite
def maybe_base64(draw: st.DrawFn, bodies: st.SearchStrategy[Body]) -> Body:
    body = draw(bodies)
    if isinstance(body.data, str) and draw(st.integers(0, 4)) == 0:
        return Body(body.label + " (base64)", body.data, base64_encoded=True)
    return body


# ---- what the webhook must answer (an oracle of the documented contract) ---------------------------


@dataclass(frozen=True)
class Expected:
    """The webhook's answer, then what the applier makes of the delivery."""

    status: int
    events: int = 0
    distinct_items: int = 0  # items that differ in something (an identical item is a duplicate)
    problems: int = 0  # items that are not events, or 1 for a body that is no events at all


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _event_id(item: Any) -> str | None:
    """The item's eventId as the contract reads it, or None when the item is not a valid event."""
    if not isinstance(item, dict):
        return None
    event_id = item.get("eventId")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 256:
        return None
    message_id = _as_text(item.get("messageId"))
    if message_id is not None and len(message_id) > 256:
        return None
    return event_id


def _not_json(literal: str) -> Any:
    raise ValueError(literal)


def _json_item(item: Any) -> bool:
    """Whether the item holds only JSON (no NaN or Infinity, which Python's parser would take)."""
    try:
        json.loads(json.dumps(item), parse_constant=_not_json)
    except ValueError:
        return False
    return True


def expected_webhook_reply(raw: bytes, limit: int) -> Expected:
    if len(raw) > limit:
        return Expected(413)
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return Expected(200, problems=1)
    if not isinstance(payload, dict | list) or payload == []:
        return Expected(200, problems=1)
    items = payload if isinstance(payload, list) else [payload]
    valid = [item for item in items if _event_id(item) is not None and _json_item(item)]
    distinct = len({json.dumps(item, sort_keys=True) for item in valid})
    return Expected(200, len(valid), distinct, problems=len(items) - len(valid))


# =====================================================================================================
# Webhook: authentication
# =====================================================================================================


@dataclass(frozen=True)
class Auth:
    label: str
    authenticated: bool
    headers: dict[str, str] | None  # None: the event has no headers at all
    query: dict[str, str] | None = None
    path: str = WEBHOOK_PATH
    token_in_body: bool = False


VALID_AUTH = (
    Auth("basic", True, webhook_headers(GOOD_BASIC)),
    Auth("basic, scheme in lower case", True, webhook_headers(basic(USER, PASSWORD, "basic "))),
    Auth("basic, scheme in upper case", True, webhook_headers(basic(USER, PASSWORD, "BASIC "))),
    Auth(
        "basic, header name capitalised",
        True,
        {"Authorization": GOOD_BASIC, "Content-Type": "application/json"},
    ),
    Auth(
        "basic, spaces around the credentials",
        True,
        webhook_headers(basic(USER, PASSWORD, "Basic    ") + "  "),
    ),
    Auth("token", True, webhook_headers(), {"token": TOKEN}),
    Auth("token, no headers at all", True, None, {"token": TOKEN}),
    Auth("token, wrong basic", True, webhook_headers(basic(USER, "wrong")), {"token": TOKEN}),
    Auth("basic, wrong token", True, webhook_headers(GOOD_BASIC), {"token": "wrong"}),
)


def _variants(secret: str) -> st.SearchStrategy[str]:
    """Near misses of a secret: case changed, trimmed, padded, a look-alike or invisible character."""
    position = st.integers(0, len(secret) - 1)
    return st.one_of(
        st.sampled_from([secret.upper(), secret.title(), secret.swapcase(), secret.capitalize()]),
        st.sampled_from(
            [secret[:-1], secret[1:], secret + " ", " " + secret, secret + "\n", secret + "\x00"]
        ),
        st.sampled_from([secret.replace("o", "\u043e"), secret + "\u200b", "\u202e" + secret]),
        st.tuples(position, st.characters(codec="utf-8")).map(
            lambda p: secret[: p[0]] + p[1] + secret[p[0] + 1 :]
        ),
        st.text(max_size=40).map(lambda extra: secret + extra),
        st.text(max_size=40),
    ).filter(lambda candidate: candidate != secret)


@st.composite
def wrong_basic(draw: st.DrawFn) -> str:
    user = draw(st.just(USER) | _variants(USER) | st.text(max_size=20))
    password = draw(st.just(PASSWORD) | _variants(PASSWORD) | st.sampled_from([TOKEN, ""]))
    pair = f"{user}:{password}".partition(":")
    if (pair[0], pair[2]) == (USER, PASSWORD):
        password = "wrong"
    return basic(user, password, draw(st.sampled_from(["Basic ", "basic ", "Basic  "])))


@st.composite
def garbled_authorization(draw: st.DrawFn) -> str:
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    match draw(st.integers(0, 6)):
        case 0:  # not base64 at all
            return "Basic " + draw(st.text(max_size=60))
        case 1:  # base64 of random bytes: invalid UTF-8, or no colon
            return "Basic " + base64.b64encode(draw(st.binary(max_size=60))).decode()
        case 2:  # the right words without their colon
            return "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode()
        case 3:  # "Basic" with spaces and nothing else, or the scheme alone
            return draw(st.sampled_from(["Basic", "Basic ", "Basic     ", " ", "", "Basic\t", "Basic:"]))
        case 4:  # the credentials in another scheme, or with no scheme
            scheme = draw(
                st.sampled_from(
                    ["Bearer ", "Token ", "Digest ", "Negotiate ", "NTLM ", "Basic-", "Basics ", ""]
                )
            )
            return scheme + draw(st.sampled_from([encoded, TOKEN, PASSWORD, f"{USER}:{PASSWORD}"]))
        case 5:  # unicode and invisible characters around or inside the credentials
            extra = draw(st.sampled_from(["\u200b", "\u202e", "é", "\ufeff", "\x00", "中"]))
            return draw(
                st.sampled_from(
                    [
                        f"Basic {extra}{encoded}",
                        f"Basic {encoded}{extra}",
                        f"Basic {encoded[:5]}{extra}{encoded[5:]}",
                    ]
                )
            )
        case _:  # the header repeated (API Gateway joins repeated headers with commas)
            return f"{basic(USER, 'wrong')},{GOOD_BASIC}"


@st.composite
def unauthenticated(draw: st.DrawFn) -> Auth:
    match draw(st.integers(0, 7)):
        case 0:
            return Auth("no credentials", False, webhook_headers())
        case 1:
            return Auth("no headers, no query", False, None)
        case 2:
            return Auth("wrong basic", False, webhook_headers(draw(wrong_basic())))
        case 3:
            return Auth("garbled authorization", False, webhook_headers(draw(garbled_authorization())))
        case 4:
            token = draw(_variants(TOKEN) | st.sampled_from(["", f"{TOKEN},{TOKEN}", PASSWORD]))
            return Auth("wrong token", False, webhook_headers(), {"token": token})
        case 5:  # the token in a header
            name = draw(st.sampled_from(["x-token", "token", "x-api-key", "x-webhook-token", "x-auth-token"]))
            return Auth("token in a header", False, webhook_headers(**{name: TOKEN}))
        case 6:  # the token or the credentials in another query parameter
            name = draw(
                st.sampled_from(["Token", "TOKEN", "access_token", "auth", "key", "password", "token "])
            )
            return Auth(
                "credentials in another parameter",
                False,
                webhook_headers(),
                {name: TOKEN, "username": USER, "pw": PASSWORD},
            )
        case _:  # the token in the body or in the path
            if draw(st.booleans()):
                return Auth("token in the body", False, webhook_headers(), token_in_body=True)
            path = draw(
                st.sampled_from(
                    [
                        f"{WEBHOOK_PATH}/{TOKEN}",
                        f"{WEBHOOK_PATH}/token/{TOKEN}",
                        f"{WEBHOOK_PATH};token={TOKEN}",
                    ]
                )
            )
            return Auth("token in the path", False, webhook_headers(), path=path)


webhook_auth = st.sampled_from(VALID_AUTH) | unauthenticated()


def with_token_in_body(body: Body) -> Body:
    """The token as a field of the JSON object, or the whole body when it is not an object."""
    try:
        payload = json.loads(body.raw)
    except (ValueError, RecursionError):
        return Body(body.label + " + token", json.dumps({"token": TOKEN, "eventId": "evt-token"}))
    if isinstance(payload, dict):
        payload["token"] = TOKEN
    return Body(body.label + " + token", json.dumps({"token": TOKEN, "event": payload}))


# =====================================================================================================
# Webhook: the property
# =====================================================================================================


def raw_deliveries(aws: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [item for item in scan_table(aws["dynamodb"], table) if item["PK"].startswith("RAW#")]


@pytest.mark.usefixtures("atomic_dynamodb")
def test_the_webhook_answers_every_hostile_request_and_keeps_every_authenticated_one(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext
) -> None:
    limit = get_settings().webhook_max_body_bytes
    writes = WriteCounter(runtime.dynamodb_client())
    stream = TableStream(env["TABLE_NAME"])
    seen: Counter[str] = Counter()
    refused_ids: list[str] = []

    # Always, whatever is generated: one over the limit, and 10,000 levels of nesting in a string body
    @example(auth=VALID_AUTH[0], body=Body("over the limit", "x" * (limit + 1)))
    @example(auth=VALID_AUTH[0], body=Body("nested 10,000", "[" * 10_000 + "]" * 10_000))
    @example(auth=VALID_AUTH[5], body=Body("nested 10,000 objects", '{"a":' * 10_000 + "1" + "}" * 10_000))
    @cases(WEBHOOK_CASES)
    @given(auth=webhook_auth, body=maybe_base64(webhook_bodies))
    def request(auth: Auth, body: Body) -> None:
        if auth.token_in_body:
            body = with_token_in_body(body)
        request_id = f"wh-{uuid.uuid4()}"
        event = http_event(
            WEBHOOK_EVENT,
            body=body.data,
            base64_encoded=body.base64_encoded,
            headers=auth.headers,
            query=auth.query,
            path=auth.path,
            request_id=request_id,
        )
        writes_before = writes.writes

        # When
        response = webhook_handler(event, lambda_context)

        # Then: a JSON answer, never a 5xx or a traceback
        status, reply = check_response(response)
        seen["cases"] += 1
        seen[f"{'authenticated' if auth.authenticated else 'refused'} {status}"] += 1
        if not auth.authenticated:
            # 401 (404 when the token is in an unknown path), and not a single write
            assert status == (404 if auth.path != WEBHOOK_PATH else 401), (auth, status, reply)
            if status == 401:
                assert reply == {"error": "unauthorized", "message": "unauthorized", "problems": []}
                assert response["headers"]["WWW-Authenticate"].startswith("Basic ")
            assert writes.writes == writes_before, auth
            refused_ids.append(request_id)
            return

        expected = expected_webhook_reply(body.raw, limit)
        assert status == expected.status, (body.label, reply)
        # Every authenticated request is recorded: whole, or (413) its start, never to be applied
        assert writes.writes == writes_before + 1
        if status == 413:
            assert reply["details"] == {"deliveryId": request_id}
            assert stream.next_records() == []
            return
        seen["raw kept"] += 1
        assert reply == {"received": True, "deliveryId": request_id}
        # And the applier takes whatever was kept: never a failure, problems recorded, events applied
        records = stream.next_records()
        assert len(records) == 1
        assert applier_handler({"Records": records}, lambda_context) == {"batchItemFailures": []}
        kept = runtime.store().get_raw(
            RawRef(request_id, records[0]["dynamodb"]["NewImage"]["receivedAt"]["S"])
        )
        assert kept is not None
        assert len(kept.problems) == min(expected.problems, PROBLEMS_KEPT), (body.label, kept.problems)
        seen["with problems" if expected.problems else "all events"] += 1

    request()

    print(f"webhook: {seen['cases']} generated requests: {dict(sorted(seen.items()))}")
    assert seen["cases"] >= WEBHOOK_CASES
    # Both sides of the property were exercised, not just one
    assert sum(n for key, n in seen.items() if key.startswith("refused")) > WEBHOOK_CASES // 10
    assert seen["all events"] > WEBHOOK_CASES // 20
    assert seen["with problems"] > WEBHOOK_CASES // 20
    assert seen["authenticated 413"] > 0
    # One raw delivery per authenticated request (whole under the limit), none for any other request
    raws = raw_deliveries(aws, env["TABLE_NAME"])
    assert len([r for r in raws if r["type"] == "raw"]) == seen["raw kept"]
    stored_ids = {raw["deliveryId"] for raw in raws}
    assert not stored_ids & set(refused_ids)


# =====================================================================================================
# Send API (POST /batches) and send queue
# =====================================================================================================

ascii_digits = st.text(alphabet="0123456789", min_size=6, max_size=14)
phones = st.builds(lambda first, rest: f"+{first}{rest}", st.sampled_from("123456789"), ascii_digits)
# What a text, ref or operatorId may hold (models.Printable): no control character but tab and
# newlines, no bidirectional embedding, override or isolate.
SENDABLE = st.characters(
    codec="utf-8",
    exclude_categories=["Cc"],
    exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    include_characters="\t\n\r",
)
SENDABLE_ODD = tuple(c for c in ODD_CHARACTERS if c not in "\u202e\x00\x1b")
message_texts = st.text(alphabet=SENDABLE, min_size=1, max_size=200) | st.sampled_from(
    ["x" * 2000, "\u05d0\u200f" * 1000, "\U0001f600" * 2000]
)
refs = st.text(alphabet=SENDABLE | st.sampled_from(SENDABLE_ODD), min_size=1, max_size=128)
REQUEST_ID = "<fresh>"  # replaced by a unique requestId when the case runs


@st.composite
def valid_batches(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(1, 4) | st.sampled_from([OCELOT_CHUNK, OCELOT_CHUNK + 1, 2 * OCELOT_CHUNK + 7]))
    numbers = draw(st.lists(phones, min_size=1, max_size=8))
    texts = draw(st.lists(message_texts, min_size=1, max_size=4))
    with_refs = draw(st.booleans())
    unique_refs = (
        draw(st.lists(refs, min_size=size, max_size=size, unique=True)) if with_refs and size < 10 else []
    )
    messages: list[dict[str, Any]] = []
    for index in range(size):
        message = {"to": numbers[index % len(numbers)], "text": texts[index % len(texts)]}
        if with_refs:
            message["ref"] = unique_refs[index] if unique_refs else f"ref-{index}"
        messages.append(message)
    body: dict[str, Any] = {"requestId": REQUEST_ID, "messages": messages}
    if draw(st.booleans()):
        body["from"] = draw(phones)
    if draw(st.booleans()):
        body["operatorId"] = draw(st.text(alphabet=SENDABLE, min_size=1, max_size=128))
    if draw(st.integers(0, 4)) == 0:
        body["dryRun"] = draw(st.booleans())
    return body


BAD_TOP_LEVEL: dict[str, tuple[Any, ...]] = {
    "requestId": ("", "bad id!", "x" * 129, "ü", 5, None, [], {}, True),
    "from": ("555-1234", "+0123456789", "+1" + "2" * 15, "15551234567", 15551234567, "+1555123456\n", "", []),
    "operatorId": ("", "x" * 129, 5, [], {}, "op\u2066erator", "op\x00"),
    "dryRun": ([], {}, "maybe", 2, 0.5, "yes please"),
    "messages": ([], "x", {}, None, 5, [None], [[]], ["+15551234567"]),
}
BAD_MESSAGE_FIELD: dict[str, tuple[Any, ...]] = {
    "to": ("555-1234", "", None, 15551234567, "+1 555 123 4567", "+15551234567 ", "tel:+15551234567", []),
    "text": ("", None, 5, [], {}, "x" * 2001, "\U0001f600" * 2001, "bell\x07", "\x85", "\u202e" * 2000),
    "ref": ("", "r" * 129, 5, [], {}, "r\x1b[31m", "\u202dref"),
}


@st.composite
def invalid_batches(draw: st.DrawFn) -> dict[str, Any]:
    """A valid batch with exactly one thing wrong: a field, a message, the size, an unknown field."""
    body = draw(valid_batches())
    body["dryRun"] = False
    match draw(st.integers(0, 6)):
        case 0 | 1:
            key = draw(st.sampled_from(sorted(BAD_TOP_LEVEL)))
            body[key] = draw(st.sampled_from(BAD_TOP_LEVEL[key]))
        case 2 | 3:
            message = dict(draw(st.sampled_from(body["messages"])))
            key = draw(st.sampled_from(sorted(BAD_MESSAGE_FIELD)))
            message[key] = draw(st.sampled_from(BAD_MESSAGE_FIELD[key]))
            if draw(st.booleans()):
                del message[draw(st.sampled_from(["to", "text"]))]
            body["messages"] = [*body["messages"], message]
        case 4:  # a repeated ref
            body["messages"] = [
                {"to": "+15551230001", "text": "a", "ref": "r"},
                {"to": "+15551230002", "text": "b", "ref": "r"},
            ]
        case 5:  # more messages than one request may carry
            body["messages"] = [{"to": "+15551230001", "text": "a"}] * (
                get_settings().max_messages_per_request + 1
            )
        case _:  # unknown fields, or our own Python names (only the public ones are accepted)
            unknown = st.sampled_from(["request_id", "dry_run", "sender", "token"]) | odd_text.filter(
                lambda name: name not in BAD_TOP_LEVEL
            )
            body[draw(unknown)] = draw(json_values)
            if draw(st.booleans()):
                body["messages"][0] = {
                    **body["messages"][0],
                    draw(st.sampled_from(["message", "phone", "externalId"])): "x",
                }
    return body


@st.composite
def fuzzed_batches(draw: st.DrawFn) -> dict[str, Any]:
    """The right field names with values of any type: valid or not, the function must decide."""
    keys = draw(
        st.lists(st.sampled_from(["requestId", "from", "operatorId", "dryRun", "messages"]), unique=True)
    )
    body: dict[str, Any] = {key: draw(json_values) for key in keys}
    if "messages" in body and draw(st.booleans()):
        body["messages"] = draw(
            st.lists(st.dictionaries(st.sampled_from(["to", "text", "ref"]), json_values), max_size=4)
        )
    return body


@dataclass(frozen=True)
class SendCase:
    label: str
    body: str  # the HTTP body, or the SQS message body
    kind: str  # "valid", "invalid" or "either"
    base64_encoded: bool = False  # sent base64-encoded (isBase64Encoded)
    garbled_base64: bool = False  # isBase64Encoded, but the body is not (valid) base64 of UTF-8


def send_case(label: str, kind: str, body: Any) -> SendCase:
    return SendCase(label, body if isinstance(body, str) else json.dumps(body), kind)


@st.composite
def send_cases(draw: st.DrawFn) -> SendCase:
    match draw(st.integers(0, 9)):
        case 0 | 1:
            return send_case("valid batch", "valid", draw(valid_batches()))
        case 2 | 3 | 4:
            return send_case("one thing wrong", "invalid", draw(invalid_batches()))
        case 5:
            return send_case("any values", "either", draw(fuzzed_batches()))
        case 6:
            return send_case(
                "JSON, not an object", "invalid", draw(json_scalars | st.lists(json_values, max_size=4))
            )
        case 7:
            text = draw(st.text(max_size=300) | truncated_bodies().map(lambda b: str(b.data)))
            return send_case("text", "either", text)
        case 8:
            depth = draw(st.sampled_from([64, 2_000, 20_000, 200_000]))
            return send_case(
                f"nested {depth}",
                "invalid",
                '{"requestId": "deep", "messages": ' + "[" * depth + "]" * depth + "}",
            )
        case _:
            return send_case(
                "repeated keys",
                "invalid",
                '{"requestId": "a", "requestId": 5, "messages": [{"to": "+15551230001", "text": "a"}]}',
            )


@st.composite
def api_cases(draw: st.DrawFn) -> SendCase:
    case = draw(send_cases())
    match draw(st.integers(0, 9)):
        case 0:
            return SendCase(case.label + " (base64)", case.body, case.kind, base64_encoded=True)
        case 1:  # already "encoded": not base64, or not UTF-8 once decoded
            garbled = draw(st.sampled_from(["abc", "!!!!", "=", base64.b64encode(b"\xff\xfe{").decode()]))
            return SendCase("garbled base64", garbled, "invalid", garbled_base64=True)
        case _:
            return case


def unique_request_id(body: str) -> str:
    """A fresh requestId for a valid batch: one request per case, never a conflict with another."""
    return body.replace(json.dumps(REQUEST_ID), json.dumps(f"hx-{uuid.uuid4()}"), 1)


class Ocelot:
    """Ocelot on `responses`: accepts every send (a valid response with one id per message)."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.payloads: list[dict[str, Any]] = []
        mock.add_callback(responses.POST, OCELOT_SEND_URL, callback=self._answer)

    def _answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        payload = json.loads(body)
        self.payloads.append(payload)
        return 200, {"Content-Type": "application/json"}, json.dumps(accepted(payload))


@pytest.fixture
def ocelot() -> Iterator[Ocelot]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Ocelot(mock)


def check_refusal(status: int, reply: Mapping[str, Any]) -> None:
    assert status in (400, 422), reply
    assert isinstance(reply["problems"], list)
    if status == 422:
        assert reply["problems"]
        assert all(set(p) == {"field", "message"} for p in reply["problems"])


def test_the_send_api_refuses_every_invalid_body_before_ocelot_and_never_fails(
    aws: dict[str, Any], lambda_context: FakeContext, ocelot: Ocelot
) -> None:
    writes = WriteCounter(runtime.dynamodb_client())
    seen: Counter[str] = Counter()

    @example(case=SendCase("nested 10,000", "[" * 10_000 + "]" * 10_000, "invalid"))
    @cases(SEND_API_CASES)
    @given(case=api_cases())
    def request(case: SendCase) -> None:
        body = unique_request_id(case.body) if case.kind == "valid" else case.body
        event = http_event(
            API_EVENT,
            body=body,
            base64_encoded=case.base64_encoded,
            headers={"content-type": "application/json"},
        )
        if case.garbled_base64:
            event["isBase64Encoded"] = True
        sent_before, writes_before = len(ocelot.payloads), writes.writes

        # When
        response = send_handler(event, lambda_context)

        # Then
        status, reply = check_response(response)
        sent = ocelot.payloads[sent_before:]
        seen["cases"] += 1
        seen[f"{case.kind} {status}"] += 1
        if status in (400, 422):
            check_refusal(status, reply)
            assert not sent, "Ocelot was called for a refused request"
            assert writes.writes == writes_before, "a refused request wrote to DynamoDB"
            assert case.kind != "valid", reply
        elif status == 200:
            assert reply["dryRun"] is True
            assert not sent
            assert case.kind != "invalid", reply
        else:
            assert status == 201, reply
            assert case.kind != "invalid", reply
            assert reply["status"] == "accepted"
            assert len(sent) == len(reply["chunks"]) == math.ceil(len(reply["messages"]) / OCELOT_CHUNK)
            assert all(m["status"] == "accepted" for m in reply["messages"])

    request()

    print(f"send API: {seen['cases']} generated requests: {dict(sorted(seen.items()))}")
    assert seen["cases"] >= SEND_API_CASES
    assert seen["valid 201"] > SEND_API_CASES // 20
    assert seen["invalid 422"] > SEND_API_CASES // 10
    assert seen["invalid 400"] > 0


def test_the_send_queue_rejects_and_keeps_every_invalid_message_and_never_fails(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext, ocelot: Ocelot
) -> None:
    seen: Counter[str] = Counter()

    @cases(SEND_QUEUE_CASES)
    @given(batch=st.lists(send_cases(), min_size=1, max_size=4))
    def receive(batch: list[SendCase]) -> None:
        event = sqs_event([unique_request_id(c.body) if c.kind == "valid" else c.body for c in batch])
        sent_before = len(ocelot.payloads)

        # When
        result = send_handler(event, lambda_context)

        # Then: nothing to retry (Ocelot accepts everything); each invalid message kept as rejected
        assert result == {"batchItemFailures": []}
        seen["cases"] += 1
        dynamodb = aws["dynamodb"]
        for case, record in zip(batch, event["Records"], strict=True):
            key = {"PK": {"S": f"REJECTED#{record['messageId']}"}, "SK": {"S": "#REJECTED"}}
            rejected = "Item" in dynamodb.get_item(TableName=env["TABLE_NAME"], Key=key)
            seen[f"{case.kind} {'rejected' if rejected else 'taken'}"] += 1
            assert rejected is (case.kind == "invalid") or case.kind == "either", case.label
        taken = [c for c in batch if c.kind == "valid" and not json.loads(c.body).get("dryRun")]
        assert len(ocelot.payloads) - sent_before >= len(taken)

    receive()

    print(f"send queue: {seen['cases']} generated events: {dict(sorted(seen.items()))}")
    assert seen["cases"] >= SEND_QUEUE_CASES
    assert seen["invalid rejected"] > 0
    assert seen["valid taken"] > 0


# =====================================================================================================
# Known bugs, kept out of the properties above (each fails today; strict: a fix makes it fail as XPASS,
# time to remove the marker and let the input into the property)
# =====================================================================================================


def post_callback(
    lambda_context: FakeContext,
    body: str | bytes | None,
    *,
    authorization: str | None = GOOD_BASIC,
    query: dict[str, str] | None = None,
    event_changes: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    request_id = f"wh-{uuid.uuid4()}"
    event = http_event(
        WEBHOOK_EVENT, body=body, headers=webhook_headers(authorization), query=query, request_id=request_id
    )
    event.update(event_changes or {})
    return webhook_handler(event, lambda_context), request_id


def apply_stream(env: dict[str, str], lambda_context: FakeContext) -> dict[str, Any]:
    """The applier's answer to everything stored so far, as the table's stream hands it over."""
    return dict(applier_handler(TableStream(env["TABLE_NAME"]).event(), lambda_context))


def raw_kept(aws: dict[str, Any], env: dict[str, str], request_id: str) -> bool:
    return any(raw["deliveryId"] == request_id for raw in raw_deliveries(aws, env["TABLE_NAME"]))


def test_an_event_id_too_long_for_a_dynamodb_key_is_not_a_5xx(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext
) -> None:
    # Given an eventId within the contract's 256 characters, of 4-byte characters (1,024 bytes)
    body = json.dumps({"eventId": "\U0001f600" * 256, "name": "IncomingSms.received"})

    # When
    response, request_id = post_callback(lambda_context, body)

    # Then: kept, and applied without a failure (stored under a key that fits, or a problem)
    assert response["statusCode"] == 200, response
    assert raw_kept(aws, env, request_id)
    assert apply_stream(env, lambda_context) == {"batchItemFailures": []}


def test_an_incompressible_body_under_the_limit_is_not_a_5xx(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext
) -> None:
    # Given up to 400,000 random bytes, under the body limit: over what storage holds, even compressed
    data = random.Random(7).randbytes(min(400_000, get_settings().webhook_max_body_bytes))

    # When
    response, request_id = post_callback(lambda_context, data)

    # Then: a permanent answer, not "storage unavailable, try again": 413 (Ocelot stops retrying), its
    # start recorded
    assert response["statusCode"] == 413, response
    [kept] = [r for r in raw_deliveries(aws, env["TABLE_NAME"]) if r["deliveryId"] == request_id]
    assert (kept["type"], kept["truncatedFrom"]) == ("raw_truncated", len(data))


@pytest.mark.parametrize("field", ["pad", "errorMessage", "batchId"])
def test_a_large_event_under_the_body_limit_is_not_a_5xx(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext, field: str
) -> None:
    # Given one event of up to 500 KB, under the body limit (compressible: the raw delivery is stored)
    size = min(500_000, get_settings().webhook_max_body_bytes - 200)
    body = json.dumps({"eventId": f"evt-{uuid.uuid4()}", "name": "IncomingSms.received", field: "x" * size})

    # When
    response, request_id = post_callback(lambda_context, body)

    # Then: kept whole (compressed), and applied without a failure (the event's payload left in the raw)
    assert response["statusCode"] == 200, response
    assert raw_kept(aws, env, request_id)
    assert apply_stream(env, lambda_context) == {"batchItemFailures": []}


@pytest.mark.parametrize("escape", ["\\udc00", "\\ud83d", "a\\ud83d b"])
def test_a_lone_surrogate_escaped_in_the_json_is_not_a_5xx(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext, escape: str
) -> None:
    # Given a valid event whose "message" (not a contract field) holds a lone surrogate, escaped
    body = f'{{"eventId": "evt-{uuid.uuid4()}", "name": "IncomingSms.received", "message": "{escape}"}}'

    # When
    response, request_id = post_callback(lambda_context, body)

    # Then
    assert response["statusCode"] == 200, response
    assert raw_kept(aws, env, request_id)
    assert apply_stream(env, lambda_context) == {"batchItemFailures": []}


def test_a_token_with_a_lone_surrogate_is_401(aws: dict[str, Any], lambda_context: FakeContext) -> None:
    response, _ = post_callback(
        lambda_context, '{"eventId": "e"}', authorization=None, query={"token": "\ud800"}
    )

    assert response["statusCode"] == 401, response


@pytest.mark.parametrize(
    "event_changes",
    [{"body": '{"eventId": "e-\ud800"}', "isBase64Encoded": False}, {"body": "abc", "isBase64Encoded": True}],
    ids=["lone surrogate in the event body", "body flagged base64 but not base64"],
)
def test_an_undecodable_event_body_is_kept_raw_and_not_a_5xx(
    aws: dict[str, Any], env: dict[str, str], lambda_context: FakeContext, event_changes: dict[str, Any]
) -> None:
    response, request_id = post_callback(lambda_context, "", event_changes=event_changes)

    assert response["statusCode"] == 200, response
    assert raw_kept(aws, env, request_id)
    assert apply_stream(env, lambda_context) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "number",
    [
        "+1" + "".join(chr(0xFF10 + int(d)) for d in "5551230001"),  # fullwidth digits
        "+1" + "".join(chr(0x0660 + int(d)) for d in "5551230001"),  # Arabic-Indic digits
        "+1555123000" + chr(0x0967),  # a Devanagari one
    ],
    ids=["fullwidth", "arabic-indic", "devanagari"],
)
def test_a_number_with_non_ascii_digits_is_refused_before_ocelot(
    aws: dict[str, Any], lambda_context: FakeContext, ocelot: Ocelot, number: str
) -> None:
    # Given a batch whose only number has digits other than 0-9
    body = {"requestId": f"hx-{uuid.uuid4()}", "messages": [{"to": number, "text": "hello"}]}

    # When
    response = send_handler(http_event(API_EVENT, body=json.dumps(body), headers={}), lambda_context)

    # Then
    assert response["statusCode"] == 422, response
    assert not ocelot.payloads
