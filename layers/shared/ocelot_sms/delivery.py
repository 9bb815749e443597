"""Our vocabulary of delivery statuses, and the rule that orders them.

Ocelot's names for them are mapped in contract.py; here is what they mean to us. Kept free of
pydantic and boto3, so the webhook's receiver can import it at no cold-start cost.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    # Ours: Ocelot has accepted the message and no callback has come yet.
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    OPTED_OUT = "opted_out"
    # Ours too: the send outcome is unknown, or no terminal status came in time.
    UNKNOWN = "unknown"
    # Ours, never on the wire and never a state: to be sent later (sendAt, quiet hours), cancelled
    # before it was sent, or left out of the send because its number is suppressed.
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def rank(self) -> int:
        """Tie-break between events with the same instant: the further along wins."""
        return _RANK[self]


TERMINAL_STATUSES = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED, DeliveryStatus.OPTED_OUT}
)
_RANK = {status: rank for rank, status in enumerate(DeliveryStatus)}


def order_key(status: DeliveryStatus, instant: datetime | None, event_id: str) -> str:
    """Sortable key of a status event: terminal beats non-terminal, then the later instant, then the
    further status, then the event id (so equal keys mean the same event).

    Compared as a string in a DynamoDB condition, so a message's current status only moves forward
    whatever order its events arrive in.
    """
    micros = max(0, int(instant.timestamp() * 1_000_000)) if instant else 0
    return f"{int(status.is_terminal)}#{micros:020d}#{status.rank:02d}#{event_id}"
