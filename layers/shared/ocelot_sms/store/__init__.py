"""Storage: typed records (records.py) behind one interface (base.py), kept in DynamoDB (dynamodb.py).

Keys are spelled in keys.py and items made in codec.py; nothing outside this package sees an item.
"""

from typing import TYPE_CHECKING, Any

from ocelot_sms.store.base import (
    INTERRUPTED_REASON,
    RequestConflict,
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
    MessageHistory,
    MessageRecord,
    MessageState,
    RawDelivery,
    RawRef,
    Recipient,
    Rejection,
    SendPage,
    SendPart,
    SendRecord,
    StateChange,
    StoredBatch,
    StoredSend,
)

if TYPE_CHECKING:
    from ocelot_sms.store.codec import raw_from_values as raw_delivery_from_image
    from ocelot_sms.store.dynamodb import DynamoStore


def __getattr__(name: str) -> Any:
    """The backend and the codec import boto3: loaded when first used, so that a path that only
    validates (the Sender's 422 and dry run) imports no AWS SDK."""
    if name == "DynamoStore":
        from ocelot_sms.store.dynamodb import DynamoStore

        return DynamoStore
    if name == "raw_delivery_from_image":
        from ocelot_sms.store.codec import raw_from_values

        return raw_from_values
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INTERRUPTED_REASON",
    "BatchRecord",
    "ChunkRecord",
    "ChunkStatus",
    "DynamoStore",
    "EventRecord",
    "EventWrite",
    "MessageHistory",
    "MessageRecord",
    "MessageState",
    "RawDelivery",
    "RawRef",
    "Recipient",
    "Rejection",
    "RequestConflict",
    "SendConflict",
    "SendPage",
    "SendPart",
    "SendRecord",
    "StateChange",
    "StorageError",
    "Store",
    "StoredBatch",
    "StoredSend",
    "raw_delivery_from_image",
]
