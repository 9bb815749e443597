"""When a request is sent: now, at its `sendAt`, or at the end of the quiet hours it would start in.

A request to be sent later is stored at once with its schedule (store.Schedule) and an EventBridge
Scheduler one-time schedule is made for it: at its time the schedule puts a small message naming the
request (`fire_message`) on the send queue and deletes itself; the queue's Sender loads the stored
request and sends it, unless it was cancelled in the meantime (one conditional write decides).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ocelot_sms.models import BatchRequest
    from ocelot_sms.quiet_hours import QuietHours

SEND_AT = "sendAt"
QUIET_HOURS = "quiet_hours"
# A time less than this ahead is now: a schedule could not be made before it passes.
MIN_LEAD = timedelta(seconds=1)
# The key of the message a schedule puts on the send queue: {"scheduledRequestId": "..."}.
FIRE_KEY = "scheduledRequestId"


class Schedules(Protocol):
    """EventBridge Scheduler, as the Sender uses it (runtime.EventBridgeSchedules)."""

    def create(self, name: str, at: datetime, body: str) -> bool:
        """A one-time schedule that puts `body` on the send queue at `at`, then deletes itself. True
        when made now; False when one of that name exists already (left as it is)."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the schedule; False when there is none (it fired, or was never made)."""
        ...


@dataclass(frozen=True, slots=True)
class Timing:
    """When to send a request: `at` None is now; `reason` says why later. `quiet_overridden`: it would
    have started inside quiet hours, and says it is urgent."""

    at: datetime | None = None
    reason: str | None = None
    quiet_overridden: bool = False


def when_to_send(request: BatchRequest, now: datetime, quiet: QuietHours | None) -> Timing:
    start, reason = now, None
    if request.send_at is not None and request.send_at > now:
        start, reason = request.send_at.astimezone(UTC), SEND_AT
    end = quiet.end_of(start) if quiet is not None else None
    overridden = end is not None and request.urgent
    if end is not None and not overridden:
        start, reason = end, QUIET_HOURS
    if reason is None or start <= now + MIN_LEAD:
        return Timing(quiet_overridden=overridden)
    return Timing(start, reason, overridden)


def at_expression(at: datetime) -> str:
    """A one-time schedule's expression, in UTC, in whole seconds and never before `at`."""
    utc = at.astimezone(UTC)
    whole = utc.replace(microsecond=0) + (timedelta(seconds=1) if utc.microsecond else timedelta(0))
    return f"at({whole:%Y-%m-%dT%H:%M:%S})"


def schedule_name(request_id: str) -> str:
    """The schedule of a request (Scheduler names: 64 characters of [0-9a-zA-Z-_.]; requestIds may
    hold ':' and be 128 long, so a digest). One per requestId: making it twice makes one."""
    return f"send-{hashlib.sha256(request_id.encode()).hexdigest()[:48]}"


def fire_message(request_id: str) -> str:
    return json.dumps({FIRE_KEY: request_id})


def fired_request(payload: Any) -> str | None:
    """The requestId a schedule's message names, or None for any other message."""
    named = payload.get(FIRE_KEY) if isinstance(payload, dict) and len(payload) == 1 else None
    return named if isinstance(named, str) else None
