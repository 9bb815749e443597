"""The Ocelot SMS API contract this project ASSUMES.

Ocelot publishes the endpoint, the auth scheme and the webhook conventions, but the exact request
and callback schemas are private (see docs/ocelot-contract.md). Every Ocelot field name, path and
status name lives in this module and nowhere else: when the real schema differs, this is the one
module to change, and the raw callbacks kept by the webhook can be replayed through it.

Both sides use it: our client (sender) and the local Ocelot sandbox (tools/), so they cannot drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ocelot_sms.delivery import DeliveryStatus

SEND_PATH = "/api/v1/sms/send/"
MAX_MESSAGE_CHARS = 2000
MAX_ID_BYTES = 512
DEFAULT_MAX_MESSAGES_PER_REQUEST = 100

# Status codes with which Ocelot certainly did not take the request: safe to send again.
RETRYABLE_STATUS_CODES = frozenset({429, 503})


def token(value: str) -> str:
    """An enum-like value as we compare it: its letters and digits, case-folded. Ocelot's APIs spell
    the same value 'OptedOut', 'opted-out', 'OPTED_OUT', 'optedout', 'Opted Out'."""
    return "".join(character for character in value.casefold() if character.isalnum())


# The statuses a callback may carry, by Ocelot's name; our own ACCEPTED and UNKNOWN are never on the
# wire. Keyed by token(), so any casing or separator reads the same.
WIRE_STATUS_NAMES = {
    token(status.value): status
    for status in (
        DeliveryStatus.QUEUED,
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.UNDELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.OPTED_OUT,
    )
}


class EventName(StrEnum):
    STATUS_CHANGED = "OutgoingSms.statusChanged"
    INBOUND_RECEIVED = "IncomingSms.received"


def parse_status(value: str) -> DeliveryStatus | None:
    return WIRE_STATUS_NAMES.get(token(value))


def parse_instant(value: str) -> datetime:
    """An ISO 8601 instant; one without an offset is taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Send request and response
# ---------------------------------------------------------------------------------------------

E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
E164 = Annotated[str, Field(pattern=E164_PATTERN)]


class _Wire(BaseModel):
    # Unknown fields are kept, so nothing Ocelot adds is lost on the way through.
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SendMessage(_Wire):
    to: E164
    text: str = Field(alias="message", min_length=1, max_length=MAX_MESSAGE_CHARS)
    external_id: str | None = Field(default=None, alias="externalId")


class SendRequest(_Wire):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    sender: E164 = Field(alias="phoneNumber")
    operator_id: str = Field(alias="operatorId", min_length=1)
    messages: list[SendMessage] = Field(min_length=1)


class AcceptedMessage(_Wire):
    message_id: str = Field(alias="id", min_length=1)
    to: str
    external_id: str | None = Field(default=None, alias="externalId")


class SendResponse(_Wire):
    batch_id: str = Field(alias="batchId", min_length=1)
    messages: list[AcceptedMessage]


class ErrorBody(_Wire):
    """NestJS-style error body: `message` is a string, or a list of strings for validation errors."""

    status_code: int = Field(alias="statusCode")
    message: str | list[str]
    error: str | None = None

    @property
    def problems(self) -> list[str]:
        return [self.message] if isinstance(self.message, str) else list(self.message)


def error_body(status_code: int, message: str | list[str], error: str) -> dict[str, Any]:
    return ErrorBody(status_code=status_code, message=message, error=error).to_wire()


def parse_error_body(status_code: int, payload: Any) -> ErrorBody:
    """Ocelot's error, or a stand-in when the body is not the documented shape (a proxy's 502 page)."""
    try:
        return ErrorBody.model_validate(payload)
    except ValidationError:
        text = payload if isinstance(payload, str) else repr(payload)
        return ErrorBody(status_code=status_code, message=text[:500], error="Unexpected response")


def validation_problems(error: ValidationError) -> list[str]:
    """Pydantic errors as the list of strings a NestJS validation error carries."""
    return [f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()]


# ---------------------------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------------------------

EVENT_ID = "eventId"
EVENT_NAME = "name"


class CallbackEvent(_Wire):
    """One item of a callback delivery, of any kind. Tolerant: only `eventId` is required; a field of
    an unexpected type reads as absent here, and the item itself is stored verbatim (see `raw`)."""

    event_id: str = Field(alias=EVENT_ID, min_length=1, max_length=256)
    name: str | None = Field(default=None, alias=EVENT_NAME)
    batch_id: str | None = Field(default=None, alias="batchId")
    message_id: str | None = Field(default=None, alias="messageId", max_length=256)
    to: str | None = None
    sender: str | None = Field(default=None, alias="from")
    status: str | None = None
    date_time: str | None = Field(default=None, alias="dateTime")
    error_code: str | None = Field(default=None, alias="errorCode")
    error_message: str | None = Field(default=None, alias="errorMessage")
    # An inbound text's words (IncomingSms.received: `from` is the recipient who wrote, `to` our number).
    text: str | None = Field(default=None, alias="message")
    # The item exactly as received (set by read_callback): what the store keeps as the payload.
    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> CallbackEvent:
        event = cls.model_validate(item)
        event._raw = item
        return event

    @property
    def raw(self) -> dict[str, Any]:
        """Every field as received, whatever its type or value (nulls too); a built event: its wire form."""
        return self._raw if self._raw is not None else self.to_wire()

    @field_validator("event_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("event_id", "message_id")
    @classmethod
    def _fits_a_key(cls, value: str | None) -> str | None:
        # Ids become DynamoDB key parts (a sort key holds at most 1,024 bytes).
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
            raise ValueError(f"longer than {MAX_ID_BYTES} bytes")
        return value

    @field_validator(
        "name",
        "batch_id",
        "message_id",
        "to",
        "sender",
        "status",
        "date_time",
        "error_code",
        "error_message",
        "text",
        mode="before",
    )
    @classmethod
    def _lenient_text(cls, value: Any) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return None

    @property
    def is_status_change(self) -> bool:
        return self.name is not None and token(self.name) == _STATUS_CHANGED_TOKEN

    @property
    def is_inbound(self) -> bool:
        return self.name is not None and token(self.name) == _INBOUND_TOKEN

    @property
    def delivery_status(self) -> DeliveryStatus | None:
        return parse_status(self.status) if self.status else None

    @property
    def instant(self) -> datetime | None:
        if not self.date_time:
            return None
        try:
            instant = parse_instant(self.date_time)
            instant.astimezone(UTC)  # OverflowError when out of range in UTC ("9999-12-31T23:59:59-05:00")
        except (ValueError, OverflowError):
            return None
        return instant


_STATUS_CHANGED_TOKEN = token(EventName.STATUS_CHANGED)
_INBOUND_TOKEN = token(EventName.INBOUND_RECEIVED)


class CallbackError(ValueError):
    """The delivery as a whole cannot be read: not JSON, or neither an event object nor an array."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class CallbackItems:
    """What a delivery holds: every item that reads as an event, in delivery order, and one problem
    line per item that does not ("[3].eventId: Field required")."""

    events: list[CallbackEvent]
    problems: list[str]


class _NotJson:
    """Stands for NaN or Infinity while parsing: JSON has neither, so the item holding one is refused."""


_NOT_JSON = _NotJson()


def read_callback(body: bytes | str) -> CallbackItems:
    """One event object or a JSON array of them, each item read on its own: a malformed item is a
    problem, and the items next to it are still events. Raises CallbackError for a body that is not
    JSON, or neither an object nor a non-empty array."""
    constants: list[str] = []

    def not_json(literal: str) -> _NotJson:
        constants.append(literal)
        return _NOT_JSON

    try:
        payload = json.loads(body, parse_constant=not_json)
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested too deep
        raise CallbackError(["body: not valid JSON"]) from error
    if not isinstance(payload, dict | list) or payload == []:
        raise CallbackError(["body: expected an event object or a non-empty array of events"])
    items = payload if isinstance(payload, list) else [payload]
    events: list[CallbackEvent] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"[{index}]: expected an object")
        elif constants and _holds(item, _NOT_JSON):
            problems.append(f"[{index}]: NaN and Infinity are not JSON numbers")
        else:
            try:
                events.append(CallbackEvent.from_item(item))
            except ValidationError as error:
                problems.extend(f"[{index}].{p}" for p in validation_problems(error))
    return CallbackItems(events, problems)


def _holds(value: Any, marker: object) -> bool:
    if value is marker:
        return True
    if isinstance(value, dict):
        return any(_holds(v, marker) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, marker) for v in value)
    return False


def status_event(
    *,
    event_id: str,
    batch_id: str,
    message_id: str,
    to: str,
    sender: str,
    status: DeliveryStatus,
    at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """A delivery-status callback item as Ocelot sends it (used by the sandbox and by tests)."""
    return CallbackEvent(
        event_id=event_id,
        name=EventName.STATUS_CHANGED.value,
        batch_id=batch_id,
        message_id=message_id,
        to=to,
        sender=sender,
        status=status.value,
        date_time=at.isoformat(),
        error_code=error_code,
        error_message=error_message,
    ).to_wire()


def inbound_event(*, event_id: str, sender: str, to: str, text: str, at: datetime) -> dict[str, Any]:
    """An inbound-text callback item as Ocelot sends it: `sender` wrote `text` to our number `to`
    (used by the sandbox and by tests)."""
    return CallbackEvent(
        event_id=event_id,
        name=EventName.INBOUND_RECEIVED.value,
        sender=sender,
        to=to,
        text=text,
        date_time=at.isoformat(),
    ).to_wire()
