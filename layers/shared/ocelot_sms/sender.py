"""Sending a batch: split into Ocelot-sized chunks, send up to SendConcurrency of them at once, each at
most once, and record the ids in request order.

Two guards keep a chunk from being sent twice:
1. Powertools Idempotency, keyed on requestId + chunk index, returns the stored outcome to any
   repeat (API retry, SQS redelivery, duplicate SQS message); the hash of the whole request is
   validated, so the same requestId with a different payload is refused before anything is sent.
2. A chunk record claimed (conditional put) before the HTTP call: if a Lambda dies mid-send, the
   idempotency lock expires, but the claim stays and the chunk is reported `unknown` rather than
   sent again.

Nothing that may wait is done after the claim but the HTTP call itself: the credentials are read and
a shared backoff waited out first (`OcelotClient.prepare`), so a claim always means "may be sent".
On POST /batches the chunks that cannot start within API Gateway's time (`api_budget_seconds`) are
handed to the send queue as the same request: the queue's Sender skips what was sent (guard 1).

Before anything is sent, two decisions are stored with the batch, once (first write wins), so that
every retry makes the same: when (now, or later by EventBridge Scheduler: scheduling.py), and which
messages are left out because their numbers are suppressed (decided when sending begins).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from ocelot_sms.batch import Chunk, parse, preview, queue_body, split, wire_request
from ocelot_sms.clock import from_iso, iso, utc_now
from ocelot_sms.contract import SendRequest
from ocelot_sms.delivery import DeliveryStatus
from ocelot_sms.errors import (
    Cancelled,
    Conflict,
    InProgress,
    InvalidRequest,
    NotConfigured,
    NotFound,
    Rejected,
    SendingStarted,
    Unavailable,
)
from ocelot_sms.models import (
    BatchRequest,
    BatchResult,
    ChunkOutcome,
    MessageResult,
    OutgoingMessage,
    Problem,
)
from ocelot_sms.observability import MetricUnit, logger, mask_phone, metrics
from ocelot_sms.ocelot_client import (
    OcelotClient,
    OcelotNotConfigured,
    OcelotOutcomeUnknown,
    OcelotRejected,
    OcelotUnavailable,
    OutOfTime,
)
from ocelot_sms.scheduling import (
    FIRE_KEY,
    Schedules,
    fire_message,
    fired_request,
    schedule_name,
    when_to_send,
)
from ocelot_sms.settings import Settings
from ocelot_sms.store import (
    BatchRecord,
    ChunkRecord,
    ChunkStatus,
    MessageRecord,
    Rejection,
    RequestConflict,
    RequestTooLarge,
    Schedule,
    ScheduleStatus,
    Store,
)

# How long a caller should wait before asking again about a request another invocation is sending.
IN_PROGRESS_RETRY_AFTER = 5.0
# A chunk's state in an answer when POST /batches handed it to the send queue: it will be sent.
PENDING = "pending"
# A chunk's state in an answer when every one of its recipients is suppressed: nothing to send.
SUPPRESSED = "suppressed"
# A schedule's message is taken as on time this much before its time (clocks differ a little); one
# earlier still goes back to the queue, and comes again.
FIRE_TOLERANCE = timedelta(seconds=5)
SCHEDULE_RETRY_AFTER = 30.0

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from ocelot_sms.credentials import CredentialsNotSet


class SendQueue(Protocol):
    def put(self, body: str) -> None:
        """One message on the send queue (raises when it was not taken)."""
        ...


@dataclass
class _Progress:
    chunks: list[ChunkOutcome] = field(default_factory=list)
    messages: list[MessageResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What sending one chunk came to: Ocelot's outcome (accepted or unknown), the error that ended
    it, or neither when it was never started."""

    chunk: Chunk
    outcome: dict[str, Any] | None = None
    error: Exception | None = None


class _FirstFailure:
    """The first chunk (in request order) whose sending failed, for the threads sending the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = math.inf

    def at(self, index: int) -> None:
        with self._lock:
            self._index = min(self._index, index)

    def before(self, index: int) -> bool:
        return self._index < index


# The error a request answers with when chunks failed in different ways: the first that applies.
_PRECEDENCE = (
    IdempotencyValidationError,
    IdempotencyAlreadyInProgressError,
    OcelotRejected,
    OcelotUnavailable,
)


def _report_not_configured(not_set: CredentialsNotSet) -> None:
    """What OcelotSecretNotSetAlarm reads, and the line that tells an operator what to put where."""
    metrics.add_metric(name="OcelotSecretNotSet", unit=MetricUnit.Count, value=1)
    logger.error(
        "the Ocelot secret is not set: nothing is sent until it is",
        extra={"secretId": not_set.secret_id, "problem": not_set.problem, "put": not_set.expected},
    )


def request_hash(request: BatchRequest) -> str:
    """What makes two submissions "the same request" (dryRun excluded: a preview changes nothing)."""
    canonical = request.canonical()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class SenderService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: OcelotClient,
        persistence: BasePersistenceLayer,
        queue: SendQueue | None = None,
        schedules: Schedules | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._queue = queue
        self._schedules = schedules
        self._quiet = settings.quiet()
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="[requestId, chunkIndex]",
            payload_validation_jmespath="requestHash",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.idempotency_expiry_seconds,
        )
        self._send_chunk_once = idempotent_function(
            data_keyword_argument="chunk", persistence_store=persistence, config=self.idempotency
        )(self._send_chunk)
        # Kept for the container's life: their threads and connections serve every invocation.
        parallel = settings.send_concurrency > 1
        self._executor = ThreadPoolExecutor(settings.send_concurrency, "send") if parallel else None
        self._storer = ThreadPoolExecutor(settings.send_concurrency, "store") if parallel else None
        self._started = time.monotonic()
        self._deadline = self._started + 60.0
        # When every Ocelot attempt of the current request must have ended (see submit).
        self._send_by = self._deadline

    def register_context(self, context: LambdaContext) -> None:
        """Bound retries by the Lambda's remaining time, and let idempotency locks expire with it."""
        self.idempotency.register_lambda_context(context)
        self._started = time.monotonic()
        remaining = context.get_remaining_time_in_millis() / 1000
        self._deadline = self._started + remaining - self._settings.safety_margin_seconds

    def parse(self, payload: Any) -> BatchRequest:
        """The request, or InvalidRequest with one problem per bad field."""
        return parse(payload, self._settings)

    def submit(self, request: BatchRequest, origin: str, fired: bool = False) -> BatchResult:
        """Send every chunk at most once, now or at its time. Raises Conflict, InProgress, Rejected or
        Unavailable (with what happened to each chunk so far in `details["result"]`) when the request
        did not complete, Cancelled when it was cancelled before its time. From the API (`origin="api"`),
        the chunks it cannot start in time are handed to the send queue and reported `pending`.
        `fired`: the request's schedule put it on the queue (its time has come)."""
        if request.dry_run:
            return preview(request, self._settings)
        chunks = list(split(request.messages, self._settings.ocelot_max_messages))
        digest = request_hash(request)
        progress = _Progress()
        stored = self._store_request(request, chunks, digest, origin, progress)
        if stored.schedule is not None and stored.schedule.status is not ScheduleStatus.STARTED:
            started = self._start_when_due(request, stored.schedule, fired)
            if started is None:
                return _scheduled(request, stored.schedule)
            stored = started
        budget = self._started + self._settings.api_budget_seconds if origin == "api" else self._deadline
        self._send_by = min(self._deadline, budget)
        suppressed = frozenset(stored.suppressed)
        waiting: list[_Attempt] = []  # never started, or out of time: pending if handed off
        errors: list[_Attempt] = []
        with closing(self._attempts(request, chunks, digest, suppressed)) as attempts:
            for attempt in attempts:
                if attempt.outcome is not None:
                    self._record(request, attempt.chunk, attempt.outcome, progress, suppressed)
                elif attempt.error is None or isinstance(attempt.error, OutOfTime):
                    waiting.append(attempt)
                else:
                    errors.append(attempt)
        if errors or (waiting and origin != "api"):
            self._fail(request, progress, chunks, errors + waiting)
        if waiting:
            self._hand_off(request, progress, chunks, waiting)
        progress.chunks.sort(key=lambda c: c.index)
        result = self._result(request, progress, chunks)
        metrics.add_metric(name="BatchesSubmitted", unit=MetricUnit.Count, value=1)
        logger.info(
            "batch submitted",
            extra={
                "requestId": request.request_id,
                "status": result.status,
                "chunks": len(chunks),
                "messages": len(request.messages),
                "suppressed": len(suppressed),
            },
        )
        return result

    # ---- when, and to whom ---------------------------------------------------------------------------

    def _store_request(
        self, request: BatchRequest, chunks: Sequence[Chunk], digest: str, origin: str, progress: _Progress
    ) -> BatchRecord:
        """The batch and its send part, with when it is sent and (when that is now) which messages it
        leaves out: as stored by the first submission of the request."""
        timing = when_to_send(request, utc_now(), self._quiet)
        if timing.quiet_overridden:
            metrics.add_metric(name="UrgentInQuietHours", unit=MetricUnit.Count, value=1)
            logger.warning(
                "urgent request sent inside quiet hours",
                extra={"requestId": request.request_id, "quietHours": self._quiet and self._quiet.describe()},
            )
        schedule: Schedule | None = None
        suppressed: tuple[int, ...] = ()
        if timing.at is not None and timing.reason is not None:
            if self._schedules is None:
                raise InvalidRequest(
                    [Problem(field="sendAt", message="this stack cannot send later: no schedule group set")]
                )
            schedule = Schedule(ScheduleStatus.SCHEDULED, iso(timing.at), timing.reason, queue_body(request))
        else:
            suppressed = self._suppressed(request)
        record = BatchRecord(
            request.request_id, digest, len(request.messages), len(chunks), origin, suppressed, schedule
        )
        try:
            stored = self._store.put_batch(record)
            self._store.put_send_part(request.send_part(origin))
        except RequestConflict as error:
            raise Conflict(str(error), details=self._details(request, progress, chunks)) from error
        except RequestTooLarge as error:
            raise InvalidRequest([Problem(field="sendAt", message=f"{error}: send it in parts")]) from error
        return stored

    def _suppressed(self, request: BatchRequest) -> tuple[int, ...]:
        """Positions of the messages to suppressed numbers (none when the request includes them)."""
        found = self._store.suppressions([m.to for m in request.messages])
        positions = tuple(i for i, m in enumerate(request.messages) if m.to in found)
        if positions and request.include_suppressed:
            metrics.add_metric(name="SuppressionOverridden", unit=MetricUnit.Count, value=len(positions))
            logger.warning(
                "request includes suppressed numbers",
                extra={
                    "requestId": request.request_id,
                    "messages": len(positions),
                    "numbers": sorted({mask_phone(request.messages[i].to) for i in positions}),
                },
            )
            return ()
        return positions

    def _start_when_due(self, request: BatchRequest, schedule: Schedule, fired: bool) -> BatchRecord | None:
        """The batch once its sending has started (None: not due yet, and scheduled). Cancelled when it
        was cancelled; the start and a cancel are one conditional write each, so only one wins."""
        if schedule.status is ScheduleStatus.CANCELLED:
            raise Cancelled(f"requestId {request.request_id!r} was cancelled before it was sent")
        at = from_iso(schedule.scheduled_for)
        if at > utc_now() + (FIRE_TOLERANCE if fired else timedelta(0)):
            if fired:  # the queue gives it again after its visibility timeout: never lost
                raise Unavailable(f"the schedule fired before {schedule.scheduled_for}", retry_after=30)
            self._ensure_schedule(request.request_id, at)
            return None
        started = self._store.end_schedule(
            request.request_id, ScheduleStatus.STARTED, self._suppressed(request)
        )
        if started is None or started.schedule is None:
            raise NotFound(f"no batch {request.request_id!r}")
        if started.schedule.status is ScheduleStatus.CANCELLED:
            raise Cancelled(f"requestId {request.request_id!r} was cancelled before it was sent")
        return started

    def _ensure_schedule(self, request_id: str, at: datetime) -> None:
        assert self._schedules is not None  # checked before a schedule is stored
        try:
            made = self._schedules.create(schedule_name(request_id), at, fire_message(request_id))
        except Exception as error:  # the batch stays scheduled: the same request again makes it
            raise Unavailable(
                f"the schedule could not be made ({type(error).__name__}): send the same request again",
                retry_after=SCHEDULE_RETRY_AFTER,
            ) from error
        if made:
            metrics.add_metric(name="BatchesScheduled", unit=MetricUnit.Count, value=1)
            logger.info("batch scheduled", extra={"requestId": request_id, "at": iso(at)})

    def cancel(self, request_id: str) -> dict[str, Any]:
        """Cancel a request scheduled for later: NotFound without such a batch, SendingStarted once
        its sending began (or when it was sent at once). Cancelling again answers the same."""
        ended = self._store.end_schedule(request_id, ScheduleStatus.CANCELLED)
        if ended is None:
            raise NotFound(f"no batch {request_id!r}")
        schedule = ended.schedule
        if schedule is None:
            raise SendingStarted(f"requestId {request_id!r} was sent at once: there is nothing to cancel")
        if schedule.status is ScheduleStatus.STARTED:
            raise SendingStarted(
                f"requestId {request_id!r} is being sent (its time came): too late to cancel"
            )
        removed = False
        if self._schedules is not None:
            try:
                removed = self._schedules.delete(schedule_name(request_id))
            except Exception:  # it may fire: the Sender finds the batch cancelled and sends nothing
                logger.exception("the schedule of a cancelled request could not be deleted")
        if removed:
            metrics.add_metric(name="ScheduledSendsCancelled", unit=MetricUnit.Count, value=1)
            logger.info("scheduled request cancelled", extra={"requestId": request_id})
        return {
            "requestId": request_id,
            "status": DeliveryStatus.CANCELLED.value,
            "scheduledFor": schedule.scheduled_for,
            "scheduleReason": schedule.reason,
        }

    def _attempts(
        self, request: BatchRequest, chunks: Sequence[Chunk], digest: str, suppressed: frozenset[int]
    ) -> Generator[_Attempt]:
        """Each chunk's attempt in request order, as soon as it is known, up to send_concurrency chunks
        being sent at once. Once one fails or runs out of time no chunk after it is started. The ids
        of each accepted chunk are stored beside the sending (`_store_ids`), all before this ends.
        Suppressed messages are left out of each chunk's Ocelot request; a chunk of nothing else is
        not sent at all."""
        failed = _FirstFailure()
        attempt = partial(self._attempt, request, digest, suppressed, failed)
        if self._executor is None or self._storer is None:
            for done in map(attempt, chunks):
                self._store_ids(request, done, suppressed)
                yield done
            return
        futures = [self._executor.submit(attempt, chunk) for chunk in chunks]
        stored: list[Future[None]] = []
        try:
            for future in futures:
                done = future.result()
                stored.append(self._storer.submit(self._store_ids, request, done, suppressed))
                yield done
            for put in stored:
                put.result()
        finally:  # an error: start no more, and let those started end before leaving
            failed.at(-1)
            for sent in futures:
                sent.exception()
            for put in stored:
                put.exception()

    def _attempt(
        self,
        request: BatchRequest,
        digest: str,
        suppressed: frozenset[int],
        failed: _FirstFailure,
        chunk: Chunk,
    ) -> _Attempt:
        """One chunk sent at most once, unless a chunk before it failed. Only its messages to numbers not
        suppressed go to Ocelot; a chunk of suppressed messages only is not sent."""
        if failed.before(chunk.index):
            return _Attempt(chunk)
        kept = chunk.kept(suppressed)
        if not kept:
            return _Attempt(chunk, outcome=_ALL_SUPPRESSED)
        try:
            wire = wire_request(request, [m for _, m in kept], self._settings)
            data = self._chunk_data(request, chunk, digest, suppressed)
            outcome = self._send_chunk_once(chunk=data, wire=wire)
        except _PRECEDENCE as error:
            failed.at(chunk.index)
            return _Attempt(chunk, error=error)
        except Exception:
            failed.at(chunk.index)
            raise
        return _Attempt(chunk, outcome=outcome)

    def _store_ids(self, request: BatchRequest, attempt: _Attempt, suppressed: frozenset[int]) -> None:
        """The correlations of an accepted chunk. Apart from the sending threads, so that the next chunk
        need not wait for them; repeated on a replay on purpose: a put of the same correlation is
        harmless, a missing one is not."""
        if attempt.outcome is not None:
            self._store.put_messages(_message_records(request, attempt.chunk, attempt.outcome, suppressed))

    def submit_queued(self, body: str, queue_message_id: str) -> BatchResult | None:
        """An SQS message: a request, or a schedule's message naming a stored one. Returns normally when
        done, cancelled or permanently rejected (recorded, not retried); raises when a retry can help
        (Ocelot unavailable or refusing, another invocation busy, a schedule early)."""
        try:
            payload = json.loads(body)
            scheduled = fired_request(payload)
            if scheduled is not None:
                return self._send_scheduled(scheduled, body, queue_message_id)
            return self.submit(self.parse(payload), origin="sqs")
        except InvalidRequest as error:
            self._reject_queued(body, queue_message_id, error.problems)
        except (ValueError, RecursionError):  # not JSON
            self._reject_queued(body, queue_message_id, [Problem(field="body", message="not valid JSON")])
        except Conflict as error:
            self._reject_queued(body, queue_message_id, [Problem(field="requestId", message=str(error))])
        except Cancelled as error:
            metrics.add_metric(name="CancelledRequestsNotSent", unit=MetricUnit.Count, value=1)
            logger.info("cancelled request not sent", extra={"reason": str(error)})
        return None

    def _send_scheduled(self, request_id: str, body: str, queue_message_id: str) -> BatchResult | None:
        """The stored request a schedule names, sent now that its time has come."""
        stored = self._store.get_batch(request_id)
        schedule = stored.batch.schedule if stored else None
        if schedule is None or schedule.request is None:
            problem = Problem(field=FIRE_KEY, message=f"no request {request_id!r} is stored to be sent later")
            self._reject_queued(body, queue_message_id, [problem])
            return None
        return self.submit(self.parse(json.loads(schedule.request)), origin="schedule", fired=True)

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

    @staticmethod
    def _chunk_data(
        request: BatchRequest, chunk: Chunk, digest: str, suppressed: frozenset[int]
    ) -> dict[str, Any]:
        """What idempotency keys, validates and copies: the chunk's identity, not its messages (Ocelot's
        request is passed beside it, `wire`, not copied per chunk)."""
        last = chunk.first_index + len(chunk.messages)
        return {
            "requestId": request.request_id,
            "chunkIndex": chunk.index,
            "requestHash": digest,
            "firstIndex": chunk.first_index,
            "size": len(chunk.messages),
            "skipped": sorted(p for p in suppressed if chunk.first_index <= p < last),
        }

    def _send_chunk(self, chunk: dict[str, Any], wire: SendRequest) -> dict[str, Any]:
        """Runs only when no idempotency record exists. Returns (and so records) accepted and unknown
        outcomes; raises when Ocelot certainly did not take the chunk, which deletes the record."""
        # Before the claim: a stall here (Secrets Manager, a shared backoff) must leave no claim behind.
        credentials = self._client.prepare(self._send_by)
        claim = ChunkRecord(
            request_id=chunk["requestId"],
            index=chunk["chunkIndex"],
            status=ChunkStatus.SENDING,
            size=chunk["size"],
            first_index=chunk["firstIndex"],
            skipped=tuple(chunk["skipped"]),
        )
        earlier = self._store.claim_chunk(claim)
        if earlier is not None:
            if earlier.status is ChunkStatus.ACCEPTED:
                return _outcome(earlier)
            reason = earlier.reason or "an earlier attempt was interrupted after it may have sent this chunk"
            return self._finish(claim, ChunkStatus.UNKNOWN, reason=reason, payload=wire.to_wire())
        try:
            response = self._client.send(wire, self._send_by, credentials)
        except OcelotOutcomeUnknown as error:
            logger.warning(
                "chunk outcome unknown",
                extra={"requestId": claim.request_id, "chunk": claim.index, "reason": str(error)},
            )
            # The request as sent is kept: what an operator may decide to resend.
            return self._finish(claim, ChunkStatus.UNKNOWN, reason=str(error), payload=wire.to_wire())
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
                payload=wire.to_wire(),
            )
        return self._finish(claim, ChunkStatus.ACCEPTED, batch_id=response.batch_id, message_ids=ids)

    def _finish(self, claim: ChunkRecord, status: ChunkStatus, **changes: Any) -> dict[str, Any]:
        record = replace(claim, status=status, **changes)
        self._store.finish_chunk(record)
        return _outcome(record)

    # ---- what did not go: an error, or the send queue ------------------------------------------------

    def _fail(
        self, request: BatchRequest, progress: _Progress, chunks: Sequence[Chunk], unsent: Sequence[_Attempt]
    ) -> None:
        """Raise the domain error for chunks that were not sent, every one of them reported not_sent."""
        errors = [a.error for a in unsent if a.error is not None]
        error = next(e for kind in _PRECEDENCE for e in errors if isinstance(e, kind))
        for attempt in unsent:
            reason = str(attempt.error) if attempt.error else "not started: another chunk was not sent"
            self._record_not_sent(attempt.chunk, progress, reason)
        progress.chunks.sort(key=lambda c: c.index)
        ocelot = error if isinstance(error, OcelotRejected | OcelotUnavailable) else None
        details = self._details(request, progress, chunks, ocelot)
        if isinstance(error, IdempotencyValidationError):
            message = f"requestId {request.request_id!r} was already used with a different payload"
            raise Conflict(message, details=details) from error
        if isinstance(error, IdempotencyAlreadyInProgressError):
            message = f"requestId {request.request_id!r} is being sent right now"
            raise InProgress(message, details=details, retry_after=IN_PROGRESS_RETRY_AFTER) from error
        if isinstance(error, OcelotRejected):
            raise Rejected(str(error), details=details) from error
        if isinstance(error, OcelotNotConfigured):
            _report_not_configured(error.not_set)
            raise NotConfigured(f"{error}; nothing was sent", details=details) from error
        waits = [e.retry_after for e in errors if isinstance(e, OcelotUnavailable) and e.retry_after]
        raise Unavailable(str(error), details=details, retry_after=max(waits, default=1.0)) from error

    def _hand_off(
        self, request: BatchRequest, progress: _Progress, chunks: Sequence[Chunk], waiting: Sequence[_Attempt]
    ) -> None:
        """The chunks the API could not start within its budget go to the send queue, as the whole request
        (the queue's Sender skips what was sent); raises Unavailable when the queue does not take it."""
        body = queue_body(request)
        size = len(body.encode())
        if self._queue is None:
            refused = "no send queue is configured"
        elif size > self._settings.send_queue_max_bytes:
            refused = f"the request ({size} bytes) is larger than the send queue takes"
        else:
            try:
                self._queue.put(body)
                refused = ""
            except Exception as error:  # any failure leaves them unsent, which a retry of ours sends
                refused = f"the send queue did not take it: {type(error).__name__}"
        if refused:
            failed = [replace(a, error=OutOfTime(f"not started in time, and {refused}")) for a in waiting]
            self._fail(request, progress, chunks, failed)
        for attempt in waiting:
            progress.chunks.append(
                ChunkOutcome(
                    index=attempt.chunk.index,
                    status=PENDING,
                    size=len(attempt.chunk.messages),
                    reason="handed to the send queue: not started within the API budget",
                )
            )
        metrics.add_metric(name="ChunksHandedOff", unit=MetricUnit.Count, value=len(waiting))
        logger.info(
            "chunks handed to the send queue",
            extra={"requestId": request.request_id, "chunks": [a.chunk.index for a in waiting]},
        )

    # ---- results --------------------------------------------------------------------------------

    def _record(
        self,
        request: BatchRequest,
        chunk: Chunk,
        outcome: dict[str, Any],
        progress: _Progress,
        suppressed: frozenset[int],
    ) -> None:
        status = outcome["status"]
        ids = iter(outcome.get("messageIds") or [])
        progress.chunks.append(
            ChunkOutcome(
                index=chunk.index,
                status=status,
                batch_id=outcome.get("batchId"),
                size=len(chunk.messages),
                reason=outcome.get("reason"),
            )
        )
        left_out = 0
        for offset, message in enumerate(chunk.messages):
            position = chunk.first_index + offset
            message_id = None
            if position in suppressed:
                left_out += 1
                shown = DeliveryStatus.SUPPRESSED
            else:
                message_id = next(ids) if status == ChunkStatus.ACCEPTED.value else None
                shown = DeliveryStatus.ACCEPTED if message_id else DeliveryStatus.UNKNOWN
            progress.messages.append(
                MessageResult(
                    index=position, ref=message.ref, to=message.to, message_id=message_id, status=shown
                )
            )
        _count_chunk(status, len(chunk.messages) - left_out, left_out)

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
        elif PENDING in statuses:
            overall = PENDING
        elif ChunkStatus.UNKNOWN.value in statuses:
            overall = "unknown"
        elif statuses == {SUPPRESSED}:
            overall = SUPPRESSED
        else:
            overall = "accepted"
        return BatchResult(
            request_id=request.request_id,
            status=overall,
            batch_ids=[c.batch_id for c in progress.chunks if c.batch_id],
            chunks=progress.chunks,
            messages=progress.messages,
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


def _message_records(
    request: BatchRequest, chunk: Chunk, outcome: dict[str, Any], suppressed: frozenset[int]
) -> list[MessageRecord]:
    """The correlations of an accepted chunk: Ocelot's id of each message it sent, by position."""
    if outcome["status"] != ChunkStatus.ACCEPTED.value:
        return []
    return [
        MessageRecord(
            message_id=message_id,
            request_id=request.request_id,
            index=position,
            ref=message.ref,
            to=message.to,
            chunk_index=chunk.index,
            batch_id=outcome["batchId"],
        )
        for (position, message), message_id in zip(chunk.kept(suppressed), outcome["messageIds"], strict=True)
    ]


# What an answer says of a chunk whose every recipient is suppressed: nothing was sent.
_ALL_SUPPRESSED = {"status": SUPPRESSED, "reason": "every recipient is suppressed: nothing to send"}


def _count_chunk(status: str, sent: int, left_out: int) -> None:
    if status == ChunkStatus.ACCEPTED.value:
        metrics.add_metric(name="MessagesSent", unit=MetricUnit.Count, value=sent)
    if status == ChunkStatus.UNKNOWN.value:
        metrics.add_metric(name="ChunksUnknown", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="MessagesUnknown", unit=MetricUnit.Count, value=sent)
    if left_out:
        metrics.add_metric(name="MessagesSuppressed", unit=MetricUnit.Count, value=left_out)


def _scheduled(request: BatchRequest, schedule: Schedule) -> BatchResult:
    """The answer to a request to be sent later: when, why, and each message `scheduled`."""
    return BatchResult(
        request_id=request.request_id,
        status=DeliveryStatus.SCHEDULED.value,
        batch_ids=[],
        chunks=[],
        messages=[
            MessageResult(index=i, ref=m.ref, to=m.to, message_id=None, status=DeliveryStatus.SCHEDULED)
            for i, m in enumerate(request.messages)
        ],
        scheduled_for=schedule.scheduled_for,
        schedule_reason=schedule.reason,
    )


def _outcome(record: ChunkRecord) -> dict[str, Any]:
    return {
        "status": record.status.value,
        "batchId": record.batch_id,
        "reason": record.reason,
        "messageIds": list(record.message_ids),
    }
