"""Sending a batch: validate, split into Ocelot-sized chunks, send each chunk at most once, record ids.

Two guards keep a chunk from being sent twice:
1. Powertools Idempotency, keyed on requestId + chunk index, returns the stored outcome to any
   repeat (API retry, SQS redelivery, duplicate SQS message); the hash of the whole request is
   validated, so the same requestId with a different payload is refused before anything is sent.
2. A chunk record claimed (conditional put) before the HTTP call: if a Lambda dies mid-send, the
   idempotency lock expires, but the claim stays and the chunk is reported `unknown` rather than
   sent again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from pydantic import ValidationError

from ocelot_sms.contract import SendMessage, SendRequest
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import Conflict, InProgress, InvalidRequest, Rejected, Unavailable
from ocelot_sms.models import (
    BatchRequest,
    BatchResult,
    ChunkOutcome,
    MessageResult,
    OutgoingMessage,
    Problem,
    problems_from,
)
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.ocelot_client import OcelotClient, OcelotOutcomeUnknown, OcelotRejected, OcelotUnavailable
from ocelot_sms.settings import Settings
from ocelot_sms.store import (
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    MessageRecord,
    Rejection,
    RequestConflict,
    Store,
)

# How long a caller should wait before asking again about a request another invocation is sending.
IN_PROGRESS_RETRY_AFTER = 5.0

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    first_index: int
    messages: tuple[OutgoingMessage, ...]


@dataclass
class _Progress:
    chunks: list[ChunkOutcome] = field(default_factory=list)
    messages: list[MessageResult] = field(default_factory=list)


def request_hash(request: BatchRequest) -> str:
    """What makes two submissions "the same request" (dryRun excluded: a preview changes nothing)."""
    canonical = request.canonical()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def split(messages: Sequence[OutgoingMessage], size: int) -> Iterator[Chunk]:
    for index, start in enumerate(range(0, len(messages), size)):
        yield Chunk(index=index, first_index=start, messages=tuple(messages[start : start + size]))


class SenderService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: OcelotClient,
        persistence: BasePersistenceLayer,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="[requestId, chunkIndex]",
            payload_validation_jmespath="requestHash",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.idempotency_expiry_seconds,
        )
        self._send_chunk_once = idempotent_function(
            data_keyword_argument="chunk", persistence_store=persistence, config=self.idempotency
        )(self._send_chunk)
        self._deadline = time.monotonic() + 60.0

    def register_context(self, context: LambdaContext) -> None:
        """Bound retries by the Lambda's remaining time, and let idempotency locks expire with it."""
        self.idempotency.register_lambda_context(context)
        remaining = context.get_remaining_time_in_millis() / 1000
        self._deadline = time.monotonic() + remaining - self._settings.safety_margin_seconds

    def parse(self, payload: Any) -> BatchRequest:
        """The request, or InvalidRequest with one problem per bad field."""
        try:
            request = BatchRequest.model_validate(
                payload, context={"max_messages": self._settings.max_messages_per_request}
            )
        except ValidationError as error:
            raise InvalidRequest(problems_from(error)) from error
        missing = [
            Problem(field=name, message=f"required: no default {name} is configured")
            for name, given, default in (
                ("from", request.sender, self._settings.default_sender),
                ("operatorId", request.operator_id, self._settings.default_operator_id),
            )
            if not (given or default)
        ]
        if missing:
            raise InvalidRequest(missing)
        return request

    def submit(self, request: BatchRequest, origin: str) -> BatchResult:
        """Send every chunk at most once. Raises Conflict, InProgress, Rejected or Unavailable (with
        what happened to each chunk so far in `details["result"]`) when the request did not complete."""
        chunks = list(split(request.messages, self._settings.ocelot_max_messages))
        if request.dry_run:
            return self._preview(request, chunks)

        digest = request_hash(request)
        progress = _Progress()
        try:
            self._store.put_batch(
                BatchRecord(request.request_id, digest, len(request.messages), len(chunks), origin)
            )
            self._store.put_send_part(request.send_part(origin))
        except RequestConflict as error:
            raise Conflict(str(error), details=self._details(request, progress, chunks)) from error
        for chunk in chunks:
            try:
                outcome = self._send_chunk_once(chunk=self._chunk_data(request, chunk, digest))
            except IdempotencyValidationError as error:
                raise Conflict(
                    f"requestId {request.request_id!r} was already used with a different payload",
                    details=self._details(request, progress, chunks),
                ) from error
            except IdempotencyAlreadyInProgressError as error:
                raise InProgress(
                    f"requestId {request.request_id!r} is being sent right now",
                    details=self._details(request, progress, chunks),
                    retry_after=IN_PROGRESS_RETRY_AFTER,
                ) from error
            except OcelotRejected as error:
                self._record_not_sent(chunk, progress, str(error))
                raise Rejected(str(error), details=self._details(request, progress, chunks, error)) from error
            except OcelotUnavailable as error:
                self._record_not_sent(chunk, progress, str(error))
                raise Unavailable(
                    str(error),
                    details=self._details(request, progress, chunks, error),
                    retry_after=error.retry_after or 1.0,
                ) from error
            self._record(request, chunk, outcome, progress)

        result = self._result(request, progress, chunks)
        metrics.add_metric(name="BatchesSubmitted", unit=MetricUnit.Count, value=1)
        logger.info(
            "batch submitted",
            extra={
                "requestId": request.request_id,
                "status": result.status,
                "chunks": len(chunks),
                "messages": len(request.messages),
            },
        )
        return result

    def submit_queued(self, body: str, queue_message_id: str) -> BatchResult | None:
        """An SQS message. Returns normally when done or permanently rejected (recorded, not retried);
        raises when a retry can help (Ocelot unavailable or refusing, another invocation busy)."""
        try:
            return self.submit(self.parse(json.loads(body)), origin="sqs")
        except InvalidRequest as error:
            self._reject_queued(body, queue_message_id, error.problems)
        except (ValueError, RecursionError):  # not JSON
            self._reject_queued(body, queue_message_id, [Problem(field="body", message="not valid JSON")])
        except Conflict as error:
            self._reject_queued(body, queue_message_id, [Problem(field="requestId", message=str(error))])
        return None

    def _reject_queued(self, body: str, queue_message_id: str, problems: list[Problem]) -> None:
        # Kept whole (the table is encrypted, the item expires) so that nothing sent to us is lost.
        self._store.put_rejection(
            Rejection(queue_message_id, body, tuple(p.model_dump() for p in problems)),
            self._settings.raw_retention_days,
        )
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        logger.warning(
            "queued request rejected",
            extra={"queueMessageId": queue_message_id, "problems": [_loggable(p.field) for p in problems]},
        )

    # ---- one chunk, at most once -----------------------------------------------------------------

    def _chunk_data(self, request: BatchRequest, chunk: Chunk, digest: str) -> dict[str, Any]:
        return {
            "requestId": request.request_id,
            "chunkIndex": chunk.index,
            "requestHash": digest,
            "firstIndex": chunk.first_index,
            "payload": self._wire_request(request, chunk).to_wire(),
        }

    def _wire_request(self, request: BatchRequest, chunk: Chunk) -> SendRequest:
        return SendRequest(
            sender=request.sender or self._settings.default_sender,
            operator_id=request.operator_id or self._settings.default_operator_id,
            messages=[SendMessage(to=m.to, text=m.text, external_id=m.ref) for m in chunk.messages],
        )

    def _send_chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """Runs only when no idempotency record exists. Returns (and so records) accepted and unknown
        outcomes; raises when Ocelot certainly did not take the chunk, which deletes the record."""
        wire = SendRequest.model_validate(chunk["payload"])
        claim = ChunkRecord(
            request_id=chunk["requestId"],
            index=chunk["chunkIndex"],
            status=ChunkStatus.SENDING,
            size=len(wire.messages),
            first_index=chunk["firstIndex"],
        )
        # Kept only if the outcome turns out unknown: what an operator may decide to resend.
        payload = chunk["payload"]
        earlier = self._store.claim_chunk(claim)
        if earlier is not None:
            if earlier.status is ChunkStatus.ACCEPTED:
                return _outcome(earlier)
            reason = earlier.reason or "an earlier attempt was interrupted after it may have sent this chunk"
            return self._finish(claim, ChunkStatus.UNKNOWN, reason=reason, payload=payload)
        try:
            response = self._client.send(wire, self._deadline)
        except OcelotOutcomeUnknown as error:
            logger.warning(
                "chunk outcome unknown",
                extra={"requestId": claim.request_id, "chunk": claim.index, "reason": str(error)},
            )
            return self._finish(claim, ChunkStatus.UNKNOWN, reason=str(error), payload=payload)
        except (OcelotRejected, OcelotUnavailable) as error:
            self._store.finish_chunk(replace(claim, status=ChunkStatus.NOT_SENT, reason=str(error)))
            raise
        ids = tuple(m.message_id for m in response.messages)
        if len(ids) != len(wire.messages):
            # Ocelot took the chunk but did not list each message: ids can't be matched by position.
            return self._finish(
                claim,
                ChunkStatus.UNKNOWN,
                batch_id=response.batch_id,
                reason=f"accepted, but {len(ids)} ids for {len(wire.messages)} messages",
                payload=payload,
            )
        return self._finish(claim, ChunkStatus.ACCEPTED, batch_id=response.batch_id, message_ids=ids)

    def _finish(self, claim: ChunkRecord, status: ChunkStatus, **changes: Any) -> dict[str, Any]:
        record = replace(claim, status=status, **changes)
        self._store.finish_chunk(record)
        return _outcome(record)

    # ---- results --------------------------------------------------------------------------------

    def _record(
        self, request: BatchRequest, chunk: Chunk, outcome: dict[str, Any], progress: _Progress
    ) -> None:
        status = ChunkStatus(outcome["status"])
        ids: list[str] = outcome.get("messageIds") or []
        progress.chunks.append(
            ChunkOutcome(
                index=chunk.index,
                status=status.value,
                batch_id=outcome.get("batchId"),
                size=len(chunk.messages),
                reason=outcome.get("reason"),
            )
        )
        records = []
        for offset, message in enumerate(chunk.messages):
            index = chunk.first_index + offset
            message_id = ids[offset] if status is ChunkStatus.ACCEPTED else None
            progress.messages.append(
                MessageResult(
                    index=index,
                    ref=message.ref,
                    to=message.to,
                    message_id=message_id,
                    status=DeliveryStatus.ACCEPTED if message_id else DeliveryStatus.UNKNOWN,
                )
            )
            if message_id:
                records.append(
                    MessageRecord(
                        message_id=message_id,
                        request_id=request.request_id,
                        index=index,
                        ref=message.ref,
                        to=message.to,
                        chunk_index=chunk.index,
                        batch_id=outcome["batchId"],
                    )
                )
        # Repeated on a replay on purpose: a put of the same correlation is harmless, a missing one is not.
        self._store.put_messages(records)
        if records:
            metrics.add_metric(name="MessagesSent", unit=MetricUnit.Count, value=len(records))
        if status is ChunkStatus.UNKNOWN:
            metrics.add_metric(name="ChunksUnknown", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="MessagesUnknown", unit=MetricUnit.Count, value=len(chunk.messages))

    def _record_not_sent(self, chunk: Chunk, progress: _Progress, reason: str) -> None:
        progress.chunks.append(
            ChunkOutcome(
                index=chunk.index, status=ChunkStatus.NOT_SENT.value, size=len(chunk.messages), reason=reason
            )
        )
        metrics.add_metric(name="ChunksNotSent", unit=MetricUnit.Count, value=1)

    def _details(
        self,
        request: BatchRequest,
        progress: _Progress,
        chunks: Sequence[Chunk],
        ocelot: OcelotRejected | OcelotUnavailable | None = None,
    ) -> dict[str, Any]:
        """What a caller needs after a failure: each chunk's outcome so far, and Ocelot's own error."""
        details: dict[str, Any] = {"result": self._result(request, progress, chunks).to_json()}
        if ocelot is not None and ocelot.body is not None:
            details["ocelot"] = ocelot.body.to_wire()
        return details

    def _result(self, request: BatchRequest, progress: _Progress, chunks: Sequence[Chunk]) -> BatchResult:
        statuses = {c.status for c in progress.chunks}
        if len(progress.chunks) < len(chunks) or ChunkStatus.NOT_SENT.value in statuses:
            overall = "incomplete"
        elif ChunkStatus.UNKNOWN.value in statuses:
            overall = "unknown"
        else:
            overall = "accepted"
        return BatchResult(
            request_id=request.request_id,
            status=overall,
            batch_ids=[c.batch_id for c in progress.chunks if c.batch_id],
            chunks=progress.chunks,
            messages=progress.messages,
        )

    def _preview(self, request: BatchRequest, chunks: Sequence[Chunk]) -> BatchResult:
        return BatchResult(
            request_id=request.request_id,
            status="dry_run",
            dry_run=True,
            batch_ids=[],
            chunks=[ChunkOutcome(index=c.index, status="not_sent", size=len(c.messages)) for c in chunks],
            messages=[],
            preview=[self._wire_request(request, c).to_wire() for c in chunks],
        )


_FIELD_NAMES = frozenset(
    {"body"}
    | {f.alias or name for model in (BatchRequest, OutgoingMessage) for name, f in model.model_fields.items()}
)


def _loggable(field: str) -> str:
    """A problem's path for the logs: our field names and list indexes; any other key is the sender's
    own data (e.g. a phone number used as a key) and is left out."""
    return ".".join(
        part if part in _FIELD_NAMES or (part.isascii() and part.isdigit() and len(part) <= 6) else "<key>"
        for part in field.split(".")
    )


def _outcome(record: ChunkRecord) -> dict[str, Any]:
    return {
        "status": record.status.value,
        "batchId": record.batch_id,
        "reason": record.reason,
        "messageIds": list(record.message_ids),
    }
