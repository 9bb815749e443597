"""The domain errors the services raise. Each handler maps them to HTTP in one table of its own
(see `ocelot_sms.http.json_api`); nothing in the layer knows a status code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ocelot_sms.models import Problem


class DomainError(Exception):
    """`code` names the error in a response body; `details` and `retry_after` travel with it."""

    code: ClassVar[str] = "error"
    # Errors a retry can fix say when to try again, even if nobody gave a time.
    default_retry_after: ClassVar[float | None] = None

    def __init__(
        self, message: str, *, details: Mapping[str, Any] | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details) if details else None
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after


class BadRequest(DomainError):
    """The request cannot be read: not JSON, or a query parameter out of range."""

    code = "bad_request"


class InvalidRequest(DomainError):
    """The request is readable but has invalid fields; one problem per field."""

    code = "invalid_request"

    def __init__(self, problems: Sequence[Problem], message: str = "the request has invalid fields") -> None:
        super().__init__(message)
        self.problems = list(problems)

    def __str__(self) -> str:
        return "; ".join(f"{p.field}: {p.message}" for p in self.problems)


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The requestId was used before with a different payload."""

    code = "conflict"


class Cancelled(DomainError):
    """The request was scheduled and then cancelled: it is never sent."""

    code = "cancelled"


class SendingStarted(DomainError):
    """A scheduled request cannot be cancelled: its sending began (or it was never scheduled)."""

    code = "sending_started"


class InProgress(DomainError):
    """Another invocation is working on the same request right now."""

    code = "in_progress"
    default_retry_after = 1.0


class Rejected(DomainError):
    """Ocelot refused the request: sending the same again gets the same answer."""

    code = "rejected"


class Unavailable(DomainError):
    """Ocelot certainly did not take the request (busy, down, unreachable, no time left): retry later."""

    code = "unavailable"
    default_retry_after = 1.0


class NotConfigured(Unavailable):
    """The stack is not set up to send: the Ocelot secret holds its placeholder or is malformed.
    Nothing was sent; the same request sends once a person has put the credentials in the secret."""

    code = "not_configured"
    # The time a person takes to fix it, rather than Unavailable's second: each try reads the secret.
    default_retry_after = 300.0


class StorageUnavailable(DomainError):
    """DynamoDB did not store what was asked; every write is idempotent, so a retry completes it."""

    code = "storage_unavailable"
    default_retry_after = 1.0


class Unauthorized(DomainError):
    code = "unauthorized"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class Malformed(DomainError):
    """A callback body that is not the shape of the contract (kept raw all the same)."""

    code = "malformed"

    def __init__(self, problems: Sequence[str], *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__("; ".join(problems), details=details)
        self.problems = list(problems)
