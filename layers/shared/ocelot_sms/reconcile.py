"""Chunks whose send outcome is unknown: an operator attaches the ids found in Ocelot's Admin
Portal, or decides to send the chunk again."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from ocelot_sms.contract import SendRequest
from ocelot_sms.errors import BadRequest, Conflict, NotFound
from ocelot_sms.ocelot_client import OcelotClient, OcelotOutcomeUnknown, OcelotRejected, OcelotUnavailable
from ocelot_sms.store import INTERRUPTED_REASON, ChunkRecord, ChunkStatus, MessageRecord, Store


def attach_ids(store: Store, request_id: str, chunk_index: int, batch_id: str, message_ids: list[str]) -> int:
    """Resolve an unknown chunk with the ids found in Ocelot's Admin Portal (in the chunk's order)."""
    chunk = unknown_chunk(store, request_id, chunk_index)
    wire = SendRequest.model_validate(chunk.payload)
    if len(message_ids) != len(wire.messages):
        raise BadRequest(f"chunk has {len(wire.messages)} messages, got {len(message_ids)} ids")
    # Each id becomes a message's key: an empty or repeated one would merge or lose messages.
    if not batch_id.strip():
        raise BadRequest("the Ocelot batch id is empty")
    if any(not m.strip() for m in message_ids):
        raise BadRequest("a message id is empty")
    repeated = sorted({m for m in message_ids if message_ids.count(m) > 1})
    if repeated:
        raise BadRequest(f"message ids repeat: {', '.join(repeated)}")
    # By position in the request: the chunk's messages less those left out as suppressed.
    positions = chunk.positions
    store.put_messages(
        [
            MessageRecord(
                message_id=message_id,
                request_id=request_id,
                index=positions[offset],
                ref=message.external_id,
                to=message.to,
                chunk_index=chunk_index,
                batch_id=batch_id,
            )
            for offset, (message_id, message) in enumerate(zip(message_ids, wire.messages, strict=True))
        ]
    )
    store.finish_chunk(
        ChunkRecord(
            request_id=request_id,
            index=chunk_index,
            status=ChunkStatus.ACCEPTED,
            size=chunk.size,
            first_index=chunk.first_index,
            batch_id=batch_id,
            message_ids=tuple(message_ids),
            reason="resolved by an operator",
            skipped=chunk.skipped,
        )
    )
    return len(message_ids)


def resend_chunk(
    store: Store, client: OcelotClient, request_id: str, chunk_index: int, timeout_seconds: float = 60.0
) -> dict[str, Any]:
    """Send an unknown chunk again, on an operator's explicit decision (recipients may get it twice).

    Returns the outcome: `accepted` (ids recorded), `unknown` again (payload still kept), or
    `not_sent` (Ocelot certainly did not take this resend; the chunk stays unknown, as the first send
    may still have been taken).
    """
    chunk = unknown_chunk(store, request_id, chunk_index)
    wire = SendRequest.model_validate(chunk.payload)
    try:
        response = client.send(wire, time.monotonic() + timeout_seconds)
    except OcelotOutcomeUnknown as error:
        store.finish_chunk(replace(chunk, status=ChunkStatus.UNKNOWN, reason=f"resend: {error}"))
        return {"status": "unknown", "reason": str(error)}
    except (OcelotRejected, OcelotUnavailable) as error:
        return {"status": ChunkStatus.NOT_SENT.value, "reason": str(error)}
    ids = [m.message_id for m in response.messages]
    if len(ids) != len(wire.messages):
        # Taken, but the ids cannot be matched by position (as in the Sender): still unknown, now with
        # Ocelot's batch id, for an operator to attach the ids from the Admin Portal.
        reason = f"resend: accepted, but {len(ids)} ids for {len(wire.messages)} messages"
        store.finish_chunk(
            replace(chunk, status=ChunkStatus.UNKNOWN, batch_id=response.batch_id, reason=reason)
        )
        return {"status": "unknown", "batchId": response.batch_id, "reason": reason}
    attach_ids(store, request_id, chunk_index, response.batch_id, ids)
    return {"status": "accepted", "batchId": response.batch_id, "messageIds": ids}


def unknown_chunk(store: Store, request_id: str, chunk_index: int) -> ChunkRecord:
    """The chunk, if an operator may attach ids to it or resend it."""
    chunk = store.get_chunk(request_id, chunk_index)
    if chunk is None:
        raise NotFound(f"no chunk {chunk_index} for request {request_id!r}")
    if chunk.status is ChunkStatus.SENDING:
        raise Conflict(f"chunk {chunk_index} of {request_id!r} is {chunk.status.value}: {INTERRUPTED_REASON}")
    if chunk.status is not ChunkStatus.UNKNOWN:
        raise Conflict(f"chunk {chunk_index} of {request_id!r} is {chunk.status.value}, not unknown")
    if not chunk.payload:
        raise Conflict("this chunk's payload was not kept (interrupted send): resubmit with a new requestId")
    return chunk
