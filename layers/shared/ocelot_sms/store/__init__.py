"""Storage: typed records (records.py) behind one interface (base.py), kept in DynamoDB (dynamodb.py).

Keys are spelled in keys.py and items made in codec.py; nothing outside this package sees an item.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ocelot_sms.store.base import (
    INTERRUPTED_REASON,
    RequestConflict,
    RequestTooLarge,
    SendConflict,
    StorageError,
    Store,
)
from ocelot_sms.store.records import (
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    EventRecord,
    EventWrite,
    Inbound,
    InboundPage,
    MessageHistory,
    MessageRecord,
    MessageState,
    RawDelivery,
    RawRef,
    Recipient,
    Rejection,
    Schedule,
    ScheduleStatus,
    SendPage,
    SendPart,
    SendRecord,
    SentRef,
    StateChange,
    StoredBatch,
    StoredSend,
    Suppression,
    SuppressionPage,
    SuppressionSource,
)

if TYPE_CHECKING:
    from ocelot_sms.store.codec import change_from_values as change_from_image
    from ocelot_sms.store.codec import raw_from_values as raw_delivery_from_image
    from ocelot_sms.store.dynamodb import DynamoStore

# The backend and the codec import boto3: loaded when first used, so that a path that only validates
# (the Sender's 422 and dry run) imports no boto3.
_ON_FIRST_USE = {
    "DynamoStore": ("ocelot_sms.store.dynamodb", "DynamoStore"),
    "change_from_image": ("ocelot_sms.store.codec", "change_from_values"),
    "raw_delivery_from_image": ("ocelot_sms.store.codec", "raw_from_values"),
}


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _ON_FIRST_USE[name]
    return getattr(importlib.import_module(module), attribute)


__all__ = [
    "INTERRUPTED_REASON",
    "BatchRecord",
    "ChunkRecord",
    "ChunkStatus",
    "DynamoStore",
    "EventRecord",
    "EventWrite",
    "Inbound",
    "InboundPage",
    "MessageHistory",
    "MessageRecord",
    "MessageState",
    "RawDelivery",
    "RawRef",
    "Recipient",
    "Rejection",
    "RequestConflict",
    "RequestTooLarge",
    "Schedule",
    "ScheduleStatus",
    "SendConflict",
    "SendPage",
    "SendPart",
    "SendRecord",
    "SentRef",
    "StateChange",
    "StorageError",
    "Store",
    "StoredBatch",
    "StoredSend",
    "Suppression",
    "SuppressionPage",
    "SuppressionSource",
    "change_from_image",
    "raw_delivery_from_image",
]
