"""Storage: typed records (records.py) behind one interface (base.py), kept in DynamoDB (dynamodb.py).

Keys are spelled in keys.py and items made in codec.py; nothing outside this package sees an item.
"""

from ocelot_sms.store.base import (
    INTERRUPTED_REASON,
    RequestConflict,
    SendConflict,
    StorageError,
    Store,
)
from ocelot_sms.store.codec import raw_from_values as raw_delivery_from_image
from ocelot_sms.store.dynamodb import DynamoStore
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
