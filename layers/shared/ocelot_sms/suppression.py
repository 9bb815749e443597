"""Suppression: the numbers nothing is sent to, because their recipients opted out.

A number is suppressed by its latest opt-out signal: a status callback `opted_out`, or a reply that is
an opt-out keyword (STOP...); a reply that is an opt-in keyword (START, UNSTOP) lifts it. Ocelot
checks opt-outs itself after a send; this lets a school leave those numbers out before it (not paid
for, not reported) and see them at submit time. An operator may suppress or lift any number
(`ocelot-sms suppression`); what an operator set is never changed by a callback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard

from ocelot_sms.contract import E164_PATTERN
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.store import EventRecord, Suppression, SuppressionSource

# The keywords carriers honour (CTIA), as the whole text of a reply, whatever its case or punctuation.
OPT_OUT_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
OPT_IN_WORDS = frozenset({"start", "unstop"})


@dataclass(frozen=True, slots=True)
class Lift:
    """An opt-in reply from `number` at `at`: lifts a callback's suppression older than it."""

    number: str
    at: str


def is_number(value: str | None) -> TypeGuard[str]:
    """Whether a callback's number is one (E.164): only such become keys."""
    return value is not None and re.fullmatch(E164_PATTERN, value) is not None


def keyword(text: str | None) -> str | None:
    """The reply as a keyword (its letters, case-folded), if it is one of either list."""
    word = "".join(c for c in (text or "").casefold() if c.isalnum())
    return word if word in OPT_OUT_WORDS | OPT_IN_WORDS else None


def change_of(event: EventRecord) -> Suppression | Lift | None:
    """What an applied event does to its number's suppression, if anything."""
    at = event.event_time or event.raw.received_at
    change = event.change
    if change is not None and change.status is DeliveryStatus.OPTED_OUT and is_number(change.to):
        return Suppression(
            number=change.to,
            source=SuppressionSource.OPTED_OUT,
            at=at,
            event_id=event.event_id,
            message_id=change.message_id,
            reason=change.error_message or "opted out (status callback)",
        )
    inbound = event.inbound
    if inbound is None or not is_number(inbound.sender):
        return None
    word = keyword(inbound.text)
    if word in OPT_OUT_WORDS:
        return Suppression(
            number=inbound.sender,
            source=SuppressionSource.REPLY,
            at=at,
            event_id=event.event_id,
            reason=f"replied {word.upper()}",
        )
    if word in OPT_IN_WORDS:
        return Lift(inbound.sender, at)
    return None
