"""Secrets from Secrets Manager through Powertools Parameters, cached for a bounded time.

Ocelot has no self-service key rotation: support revokes a leaked key and issues a new one. With a
cache of at most a few minutes, an operator swaps the secret value and every container picks it up
without a redeploy.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities import parameters

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider


class CredentialsError(RuntimeError):
    """The secret is missing or not the documented JSON shape."""


class CredentialsNotSet(CredentialsError):
    """The secret can be read but holds no usable credentials: the placeholder the stack created it
    with, or not the documented shape. Only a person can fix it: sending cannot work until then."""

    def __init__(self, secret_id: str, problem: str, expected: str) -> None:
        super().__init__(f"secret {secret_id!r} {problem}; put {expected} in it")
        self.secret_id = secret_id
        self.problem = problem
        self.expected = expected


# What each secret must hold, as an operator writes it (never the values themselves).
WEBHOOK_SECRET_SHAPE = '{"username": "<user>", "password": "<password>"} and/or {"token": "<token>"}'  # noqa: S105
OCELOT_SECRET_SHAPE = '{"chatbotId": "<your chatbot\'s id>", "apiKey": "<its API key>"}'  # noqa: S105
# The placeholder template.yaml creates the Ocelot secret with, and the ones people leave behind.
_PLACEHOLDER = re.compile(
    r"(replace[_ -]?me.*|change[_ -]?me|todo|tbd|x{3,}|\.{3}|<[^>]*>|your[_ -].*|placeholder)", re.IGNORECASE
)


def _load(
    secret_id: str,
    max_age: int,
    keys: tuple[str, ...],
    shape: str,
    force_fetch: bool = False,
    provider: SecretsProvider | None = None,
) -> dict[str, Any]:
    """The secret's JSON object, through `provider` (Powertools' default one when None). `shape` is
    what it must hold, for the message when it does not."""
    if not secret_id:
        raise CredentialsError("no secret configured")
    try:
        if provider is None:
            value: Any = parameters.get_secret(
                secret_id, transform="json", max_age=max_age, force_fetch=force_fetch
            )
        else:
            value = provider.get(secret_id, transform="json", max_age=max_age, force_fetch=force_fetch)
    except parameters.exceptions.TransformParameterError as error:
        raise CredentialsNotSet(secret_id, "is not JSON", shape) from error
    except parameters.exceptions.GetParameterError as error:
        raise CredentialsError(f"secret {secret_id!r} could not be read: {error}") from error
    if not isinstance(value, dict):
        raise CredentialsNotSet(secret_id, f"must be a JSON object with {', '.join(keys)}", shape)
    return {k: v for k, v in value.items() if k in keys and isinstance(v, str | dict)}


@dataclass(frozen=True, slots=True, repr=False)
class OcelotCredentials:
    """`{"chatbotId", "apiKey"}`: Ocelot's Basic auth is base64(chatbotId:apiKey)."""

    chatbot_id: str
    api_key: str

    @classmethod
    def load(
        cls,
        secret_id: str,
        max_age: int,
        force_fetch: bool = False,
        provider: SecretsProvider | None = None,
    ) -> OcelotCredentials:
        value = _load(secret_id, max_age, ("chatbotId", "apiKey"), OCELOT_SECRET_SHAPE, force_fetch, provider)
        chatbot_id, api_key = _text(value.get("chatbotId")), _text(value.get("apiKey"))
        if not chatbot_id or not api_key:
            raise CredentialsNotSet(secret_id, "must hold chatbotId and apiKey", OCELOT_SECRET_SHAPE)
        for name, text in (("chatbotId", chatbot_id), ("apiKey", api_key)):
            problem = _unusable(name, text)
            if problem:
                raise CredentialsNotSet(secret_id, problem, OCELOT_SECRET_SHAPE)
        return cls(chatbot_id=chatbot_id, api_key=api_key)


@dataclass(frozen=True, slots=True, repr=False)
class WebhookCredentials:
    """`{"username", "password", "token"?, "previous"?}`: what Ocelot presents when it calls our webhook.

    Basic credentials (Ocelot's webhook configuration sends them) and/or a token in the URL's query
    (`?token=`) for portals that only take a URL. During a rotation the secret also holds the
    credentials it replaced, `previous`, with `acceptedUntil`: both work until then, so callbacks
    keep coming while Ocelot's configuration is changed (`ocelot-sms webhook-credentials rotate`).
    """

    username: str | None
    password: str | None
    token: str | None
    previous: WebhookCredentials | None = None
    previous_until: datetime | None = None

    @classmethod
    def load(cls, secret_id: str, max_age: int, force_fetch: bool = False) -> WebhookCredentials:
        keys = ("username", "password", "token", "previous")
        value = _load(secret_id, max_age, keys, WEBHOOK_SECRET_SHAPE, force_fetch)
        creds = cls.from_value(value)
        if not creds.usable:
            raise CredentialsNotSet(secret_id, "needs username+password and/or token", WEBHOOK_SECRET_SHAPE)
        return creds

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> WebhookCredentials:
        previous = value.get("previous")
        older = cls.from_value(previous) if isinstance(previous, dict) else None
        until = _instant(previous.get("acceptedUntil")) if isinstance(previous, dict) else None
        return cls(
            _text(value.get("username")),
            _text(value.get("password")),
            _text(value.get("token")),
            older if older is not None and older.usable and until is not None else None,
            until,
        )

    @property
    def usable(self) -> bool:
        return bool(self.username and self.password) or bool(self.token)

    def accepts(self, basic: tuple[str, str] | None, token: str | None, now: datetime | None = None) -> bool:
        """The current credentials, or the previous ones until their acceptedUntil."""
        if self._matches(basic, token):
            return True
        if self.previous is None or self.previous_until is None:
            return False
        return (now or datetime.now(UTC)) < self.previous_until and self.previous._matches(basic, token)

    def _matches(self, basic: tuple[str, str] | None, token: str | None) -> bool:
        """Constant-time: a wrong guess takes as long as a near miss."""
        basic_ok = (
            basic is not None
            and self.username is not None
            and self.password is not None
            # Both compared every time, so the timing does not reveal which one was wrong.
            and _same(basic[0], self.username) & _same(basic[1], self.password)
        )
        token_ok = token is not None and self.token is not None and _same(token, self.token)
        return bool(basic_ok or token_ok)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _unusable(name: str, value: str) -> str | None:
    """Why a credential Ocelot would refuse (401) is not worth sending, or None. Named, never shown."""
    if _PLACEHOLDER.fullmatch(value.strip()):
        return f"still holds a placeholder {name}"
    if value != value.strip() or any(c.isspace() or not c.isprintable() for c in value):
        return f"has spaces, line breaks or control characters in {name} (copied with them?)"
    if name == "chatbotId" and ":" in value:
        return "has a ':' in chatbotId, which Basic auth cannot carry"
    return None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _same(given: str, expected: str) -> bool:
    # surrogatepass: a malformed string (a lone surrogate) is a wrong credential, not a crash.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
