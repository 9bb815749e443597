"""Secrets through Powertools Parameters (cached for max_age), their shapes, and the webhook check."""

from __future__ import annotations

import hmac
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from ocelot_sms.credentials import (
    OCELOT_SECRET_SHAPE,
    CredentialsError,
    CredentialsNotSet,
    OcelotCredentials,
    WebhookCredentials,
)
from tests.unit.support.aws import OCELOT_CREDENTIALS, WEBHOOK_CREDENTIALS

NEW_KEY = {"chatbotId": "chatbot-uuid", "apiKey": "reissued-key"}


def put_secret(aws: dict[str, Any], secret_id: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    aws["secretsmanager"].put_secret_value(SecretId=secret_id, SecretString=text)


# ---- Ocelot's API key ---------------------------------------------------------------------------


def test_ocelot_credentials_come_from_the_secret(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given the secret created by the fixture; When loaded
    creds = OcelotCredentials.load(env["OCELOT_SECRET_ID"], 300)

    # Then both parts are read, and the key never shows in a repr (logs, tracebacks)
    assert (creds.chatbot_id, creds.api_key) == (
        OCELOT_CREDENTIALS["chatbotId"],
        OCELOT_CREDENTIALS["apiKey"],
    )
    assert OCELOT_CREDENTIALS["apiKey"] not in repr(creds)


def test_the_secret_is_read_through_powertools_with_the_given_max_age(
    aws: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a spy on Powertools' get_secret
    calls: list[dict[str, Any]] = []
    real = parameters.get_secret

    def spy(name: str, **kwargs: Any) -> Any:
        calls.append({"name": name, **kwargs})
        return real(name, **kwargs)

    monkeypatch.setattr(parameters, "get_secret", spy)

    # When loaded with a max age, and once forced
    OcelotCredentials.load(env["OCELOT_SECRET_ID"], 120)
    OcelotCredentials.load(env["OCELOT_SECRET_ID"], 120, force_fetch=True)

    # Then the JSON transform, the max age and the force flag are passed through
    assert calls == [
        {"name": "ocelot-api", "transform": "json", "max_age": 120, "force_fetch": False},
        {"name": "ocelot-api", "transform": "json", "max_age": 120, "force_fetch": True},
    ]


def test_a_rotated_key_is_seen_after_max_age_or_when_forced(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given the key read once (and cached for 300 s)
    secret_id = env["OCELOT_SECRET_ID"]
    assert OcelotCredentials.load(secret_id, 300).api_key == OCELOT_CREDENTIALS["apiKey"]

    # When Ocelot support reissues the key and an operator stores it
    put_secret(aws, secret_id, NEW_KEY)

    # Then the cached key is used within max_age, and a forced read sees the new one
    assert OcelotCredentials.load(secret_id, 300).api_key == OCELOT_CREDENTIALS["apiKey"]
    assert OcelotCredentials.load(secret_id, 300, force_fetch=True).api_key == NEW_KEY["apiKey"]


def test_with_max_age_zero_every_read_sees_the_current_key(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given a key read with caching off
    secret_id = env["OCELOT_SECRET_ID"]
    assert OcelotCredentials.load(secret_id, 0).api_key == OCELOT_CREDENTIALS["apiKey"]

    # When the key changes; Then the next read sees it
    put_secret(aws, secret_id, NEW_KEY)
    assert OcelotCredentials.load(secret_id, 0).api_key == NEW_KEY["apiKey"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not json{", "is not JSON"),
        ('["chatbot-uuid", "api-key"]', "must be a JSON object"),
        ('"chatbot-uuid:api-key"', "must be a JSON object"),
        ({"chatbotId": "chatbot-uuid"}, "must hold chatbotId and apiKey"),
        ({"apiKey": "k"}, "must hold chatbotId and apiKey"),
        ({"chatbotId": "chatbot-uuid", "apiKey": ""}, "must hold chatbotId and apiKey"),
        ({"chatbotId": "chatbot-uuid", "apiKey": 12345}, "must hold chatbotId and apiKey"),
        ({"chatbotId": "REPLACE_ME-only", "api_key": "snake-case"}, "must hold chatbotId and apiKey"),
    ],
)
def test_a_secret_of_the_wrong_shape_raises_credentials_error(
    aws: dict[str, Any], env: dict[str, str], value: Any, expected: str
) -> None:
    # Given a secret that is not {"chatbotId", "apiKey"} strings
    put_secret(aws, env["OCELOT_SECRET_ID"], value)

    # When loaded; Then CredentialsError says what is wrong (and never echoes the value)
    with pytest.raises(CredentialsError, match=expected) as caught:
        OcelotCredentials.load(env["OCELOT_SECRET_ID"], 0)
    assert "12345" not in str(caught.value)
    assert "snake-case" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"chatbotId": "REPLACE_ME", "apiKey": "generated-by-the-stack-12345"}, "placeholder chatbotId"),
        ({"chatbotId": "<your chatbot's id>", "apiKey": "k-12345"}, "placeholder chatbotId"),
        ({"chatbotId": "chatbot-uuid", "apiKey": "CHANGEME"}, "placeholder apiKey"),
        ({"chatbotId": "chatbot-uuid", "apiKey": "k-12345\n"}, "line breaks or control characters in apiKey"),
        ({"chatbotId": "chatbot:uuid", "apiKey": "k-12345"}, "a ':' in chatbotId"),
        ("chatbotId=chatbot-uuid apiKey=k-12345", "is not JSON"),
    ],
)
def test_a_placeholder_or_malformed_secret_says_what_to_put_in_it(
    aws: dict[str, Any], env: dict[str, str], value: Any, expected: str
) -> None:
    # Given a secret Ocelot would refuse: a placeholder left in, a pasted line break, not JSON
    put_secret(aws, env["OCELOT_SECRET_ID"], value)

    # When loaded; Then CredentialsNotSet names the secret, the problem and the shape to put in it
    with pytest.raises(CredentialsNotSet, match=expected) as caught:
        OcelotCredentials.load(env["OCELOT_SECRET_ID"], 0)
    assert caught.value.secret_id == env["OCELOT_SECRET_ID"]
    assert caught.value.expected == OCELOT_SECRET_SHAPE
    assert f"put {OCELOT_SECRET_SHAPE} in it" in str(caught.value)
    assert "12345" not in str(caught.value)


def test_real_looking_credentials_are_not_taken_for_placeholders(
    aws: dict[str, Any], env: dict[str, str]
) -> None:
    # Given a UUID chatbot id and a key with letters that spell words; When loaded; Then they are used
    value = {"chatbotId": "0b6f1c2e-9a43-4d7e-8f10-3c5b2a7d9e41", "apiKey": "yourtodoreplaceXyZ123"}
    put_secret(aws, env["OCELOT_SECRET_ID"], value)
    credentials = OcelotCredentials.load(env["OCELOT_SECRET_ID"], 0)
    assert (credentials.chatbot_id, credentials.api_key) == (value["chatbotId"], value["apiKey"])


def test_no_secret_configured_raises_credentials_error(aws: dict[str, Any]) -> None:
    # Given no secret id; When loaded; Then CredentialsError
    with pytest.raises(CredentialsError, match="no secret configured"):
        OcelotCredentials.load("", 300)


def test_a_secret_that_does_not_exist_raises_credentials_error(aws: dict[str, Any]) -> None:
    # Given a secret id nobody created; When loaded; Then CredentialsError (not Powertools' own error)
    with pytest.raises(CredentialsError, match="'missing-secret' could not be read"):
        OcelotCredentials.load("missing-secret", 300)


# ---- what Ocelot presents to our webhook --------------------------------------------------------


def test_webhook_credentials_come_from_the_secret(aws: dict[str, Any], env: dict[str, str]) -> None:
    # Given the fixture's webhook secret; When loaded; Then all three parts, never in a repr
    creds = WebhookCredentials.load(env["WEBHOOK_SECRET_ID"], 300)
    assert (creds.username, creds.password, creds.token) == (
        WEBHOOK_CREDENTIALS["username"],
        WEBHOOK_CREDENTIALS["password"],
        WEBHOOK_CREDENTIALS["token"],
    )
    assert WEBHOOK_CREDENTIALS["password"] not in repr(creds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"username": "ocelot", "password": "p"}, ("ocelot", "p", None)),
        ({"token": "t"}, (None, None, "t")),
        ({"username": "", "password": "", "token": "t"}, (None, None, "t")),
    ],
)
def test_basic_credentials_or_a_token_are_enough(
    aws: dict[str, Any], env: dict[str, str], value: dict[str, str], expected: tuple[str | None, ...]
) -> None:
    # Given a secret with Basic credentials or a token only; When loaded; Then empty parts read as None
    put_secret(aws, env["WEBHOOK_SECRET_ID"], value)
    creds = WebhookCredentials.load(env["WEBHOOK_SECRET_ID"], 0)
    assert (creds.username, creds.password, creds.token) == expected


@pytest.mark.parametrize(
    "value",
    [{}, {"username": "ocelot"}, {"password": "p"}, {"username": "ocelot", "password": "", "token": ""}],
)
def test_webhook_secret_without_a_usable_credential_is_refused(
    aws: dict[str, Any], env: dict[str, str], value: dict[str, str]
) -> None:
    # Given neither username+password nor a token; When loaded; Then CredentialsError
    put_secret(aws, env["WEBHOOK_SECRET_ID"], value)
    with pytest.raises(CredentialsError, match="needs username\\+password and/or token"):
        WebhookCredentials.load(env["WEBHOOK_SECRET_ID"], 0)


BOTH = WebhookCredentials("ocelot", "s3cret-pass", "url-token")
BASIC_ONLY = WebhookCredentials("ocelot", "s3cret-pass", None)
TOKEN_ONLY = WebhookCredentials(None, None, "url-token")


@pytest.mark.parametrize(
    ("creds", "basic", "token", "accepted"),
    [
        (BOTH, ("ocelot", "s3cret-pass"), None, True),
        (BOTH, None, "url-token", True),
        (BOTH, ("ocelot", "wrong"), "url-token", True),  # either one is enough
        (BOTH, ("ocelot", "wrong"), None, False),
        (BOTH, ("intruder", "s3cret-pass"), None, False),
        (BOTH, ("ocelot", "s3cret-pas"), None, False),  # near miss
        (BOTH, ("ocelot", "s3cret-pass "), None, False),
        (BOTH, ("", ""), "", False),
        (BOTH, None, "url-toke", False),
        (BOTH, None, None, False),
        (BOTH, ("ocëlot", "pässwörd"), "tökén", False),  # non-ASCII: refused, not an exception
        (BASIC_ONLY, None, "url-token", False),  # no token configured: a token proves nothing
        (BASIC_ONLY, None, "", False),  # ...not even an empty one
        (TOKEN_ONLY, ("", ""), None, False),
        (BASIC_ONLY, ("ocelot", "s3cret-pass"), None, True),
        (TOKEN_ONLY, ("ocelot", "s3cret-pass"), None, False),  # no Basic configured
        (TOKEN_ONLY, None, "url-token", True),
    ],
)
def test_accepts_only_the_configured_credentials(
    creds: WebhookCredentials, basic: tuple[str, str] | None, token: str | None, accepted: bool
) -> None:
    # Given configured credentials; When a request presents these; Then accepted or not, as listed
    assert creds.accepts(basic, token) is accepted


def test_accepts_compares_in_constant_time_and_checks_both_basic_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a spy on hmac.compare_digest
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    # When the user name is wrong but the password right
    assert BOTH.accepts(("intruder", "s3cret-pass"), None) is False

    # Then both parts went through the constant-time comparison (timing does not reveal which failed)
    assert compared == [(b"intruder", b"ocelot"), (b"s3cret-pass", b"s3cret-pass")]

    # And a token is compared the same way
    compared.clear()
    assert BOTH.accepts(None, "url-token") is True
    assert compared == [(b"url-token", b"url-token")]
