"""Lambda's event source mappings on loopback: a poller per mapping of the template, handing batches to
a function through an `Invoker` (in process, or a Lambda Invoke API such as `sam local start-lambda`).

- `SqsPoller`: the send queue. Receive up to BatchSize messages (waiting up to the batching window),
  invoke, delete what did not fail; the rest comes back after the (short, local) visibility timeout,
  and moto moves it to the dead-letter queue after maxReceiveCount receives, as SQS does.
- `StreamPoller`: a table's DynamoDB stream (moto keeps the records; it never invokes anything).
  Records in order per shard, only those the mapping's filter criteria pass; one batch at a time.
  A batch that fails is retried from its first failed record (ReportBatchItemFailures), halved when
  the function itself failed (BisectBatchOnFunctionError, which uses no retry); after
  MaximumRetryAttempts its metadata goes to the on-failure queue and the shard moves on.

Both keep `stats` and the moment they last found nothing to hand over (`settled_since`), so a
driver can wait until everything written before a given moment has been handed to the function.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tools.local.aws import ACCOUNT_ID, client
from tools.local.functions import Invocation, Invoker, failed_ids
from tools.template_resources import SqsSource, StreamSource

log = logging.getLogger("local.event_sources")

SQS_IDLE_SECONDS = 0.2
# Lambda polls each shard of a DynamoDB stream four times a second.
STREAM_POLL_SECONDS = 0.25
# Between two attempts at a failed stream batch: doubling from the first, up to the last.
RETRY_WAIT_SECONDS = (0.25, 4.0)
SHARDS_REFRESH_SECONDS = 10.0
GET_RECORDS_LIMIT = 1000  # the most records one GetRecords call returns


class Poller:
    """One mapping: a thread handing batches to `function`, one batch at a time."""

    def __init__(self, invoker: Invoker, function: str, name: str) -> None:
        self._invoker, self._function, self.name = invoker, function, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._settled_from = -1.0  # monotonic start of the last poll that found nothing to hand over

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._close()

    def settled_since(self, moment: float) -> bool:
        """A poll that started at or after `moment` (time.monotonic) found nothing to hand over."""
        return self._settled_from >= moment

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"function": self._function, **self._source_json(), **self._stats}

    @property
    def stats(self) -> Counter[str]:
        with self._lock:
            return Counter(self._stats)

    def poll_once(self) -> int:
        """One round; the number of records handed to the function."""
        raise NotImplementedError

    def _source_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _count(self, **counts: int) -> None:
        with self._lock:
            self._stats.update(counts)

    def _invoke(self, records: Sequence[dict[str, Any]]) -> Invocation:
        invocation = self._invoker.invoke(self._function, {"Records": list(records)}, trigger=self.name)
        self._count(invocations=1, function_errors=int(invocation.error is not None))
        return invocation

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s: polling failed; again in 1s", self.name)
                self._count(poll_errors=1)
                self._stop.wait(1.0)


# ---- SQS -----------------------------------------------------------------------------------------

_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as Lambda hands it to the function (the shape of events/sqs_batch.json)."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: attributes[name] for name in _RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value.get("DataType"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsPoller(Poller):
    """Lambda's SQS event source mapping. The visibility timeout is given with each ReceiveMessage."""

    def __init__(
        self,
        invoker: Invoker,
        function: str,
        source: SqsSource,
        aws_endpoint_url: str,
        queue: tuple[str, str],  # URL, ARN
        region: str,
        visibility_timeout: int,
    ) -> None:
        super().__init__(invoker, function, f"sqs:{source.queue}")
        self._source = source
        self._sqs = client("sqs", aws_endpoint_url, region)
        (self._queue_url, self._queue_arn), self._region = queue, region
        self._visibility_timeout = visibility_timeout

    def _source_json(self) -> dict[str, Any]:
        return {"queue": self._source.queue}

    def _close(self) -> None:
        self._sqs.close()

    def _receive(self, count: int) -> list[dict[str, Any]]:
        # Short polls: each one is atomic in the local moto; idle costs 5 calls/s.
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=0,
            VisibilityTimeout=self._visibility_timeout,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def poll_once(self) -> int:
        started = time.monotonic()
        batch_size = self._source.batch_size
        messages = self._receive(batch_size)
        if not messages:
            self._settled_from = started
            self._stop.wait(SQS_IDLE_SECONDS)
            return 0
        # Never gathered for longer than half the visibility timeout: a message received first would
        # become visible again and come back into the same batch.
        window_end = time.monotonic() + min(
            self._source.batching_window_seconds, self._visibility_timeout / 2
        )
        while len(messages) < batch_size and time.monotonic() < window_end and not self._stop.is_set():
            more = self._receive(batch_size - len(messages))
            if not more:
                self._stop.wait(0.1)
            seen = {m["MessageId"] for m in messages}
            messages.extend(m for m in more if m["MessageId"] not in seen)
        invocation = self._invoke([lambda_record(m, self._queue_arn, self._region) for m in messages])
        failed = failed_ids(
            invocation, {m["MessageId"] for m in messages}, self._source.report_batch_item_failures
        )
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        self._count(batches=1, messages=len(messages), deleted=len(done), left_for_retry=len(failed))
        log.info(
            "%s: %d message(s) -> %s: %d deleted, %d left for retry",
            self._source.queue,
            len(messages),
            self._function,
            len(done),
            len(failed),
        )
        return len(messages)


# ---- DynamoDB Streams ----------------------------------------------------------------------------


def _lambda_json(value: Any) -> Any:
    """boto3 hands binaries over as bytes and times as datetimes; Lambda's event carries them as
    DynamoDB's JSON does: base64 text, epoch seconds."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {k: _lambda_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lambda_json(v) for v in value]
    return value


def stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One record of GetRecords (as boto3 returns it) as Lambda hands it to the function."""
    shaped: dict[str, Any] = _lambda_json(dict(record))
    shaped["eventSourceARN"] = stream_arn
    return shaped


def _sequence(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def _at(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def on_failure_record(
    function: str,
    shard_id: str,
    stream_arn: str,
    records: Sequence[Mapping[str, Any]],
    invocation: Invocation,
    invokes: int,
    region: str,
) -> dict[str, Any]:
    """What Lambda sends to a stream mapping's on-failure destination: where the batch is in the
    stream, not the records themselves (they stay in the table)."""
    arrivals = [float(r["dynamodb"].get("ApproximateCreationDateTime", 0)) for r in records]
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if invocation.error is not None:
        response["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invokes,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": _sequence(records[0]),
            "endSequenceNumber": _sequence(records[-1]),
            "approximateArrivalOfFirstRecord": _at(min(arrivals)),
            "approximateArrivalOfLastRecord": _at(max(arrivals)),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


class _Stopping(Exception):
    """The poller was stopped while a batch was waiting for its next attempt."""


@dataclass(slots=True)
class _Shard:
    shard_id: str
    iterator: str | None = None
    waiting: deque[dict[str, Any]] = field(default_factory=deque)  # read, filtered, not yet handed over


class StreamPoller(Poller):
    """Lambda's event source mapping on a DynamoDB stream (ParallelizationFactor 1: one batch at a time
    per shard; a local function runs one invocation at a time anyway).

    `checkpoints` (shard id -> sequence number of the last record done) belongs to the caller: a
    poller started again with it resumes where the previous one stopped, as Lambda's mapping does."""

    def __init__(
        self,
        invoker: Invoker,
        function: str,
        source: StreamSource,
        aws_endpoint_url: str,
        stream_arn: str,
        region: str,
        on_failure: tuple[str, str] | None,  # URL, logical id of the destination queue
        checkpoints: dict[str, str],
    ) -> None:
        super().__init__(invoker, function, f"stream:{source.table}")
        self._source, self._stream_arn, self._region = source, stream_arn, region
        self._streams = client("dynamodbstreams", aws_endpoint_url, region)
        self._sqs = client("sqs", aws_endpoint_url, region) if on_failure else None
        self._on_failure = on_failure
        self._checkpoints = checkpoints
        self._shards: dict[str, _Shard] = {}
        self._shards_read_at = -SHARDS_REFRESH_SECONDS

    def _source_json(self) -> dict[str, Any]:
        return {
            "mapping": self._source.mapping,
            "table": self._source.table,
            "waiting": sum(len(s.waiting) for s in self._shards.values()),
            "checkpoints": dict(self._checkpoints),
        }

    def _close(self) -> None:
        self._streams.close()
        if self._sqs is not None:
            self._sqs.close()

    def poll_once(self) -> int:
        started = time.monotonic()
        self._read()
        shard = next((s for s in self._shards.values() if s.waiting), None)
        if shard is None:
            self._settled_from = started
            self._stop.wait(STREAM_POLL_SECONDS)
            return 0
        window_end = started + self._source.batching_window_seconds
        while len(shard.waiting) < self._source.batch_size and time.monotonic() < window_end:
            if self._stop.wait(0.1):
                return 0
            self._read()
        batch = [shard.waiting.popleft() for _ in range(min(self._source.batch_size, len(shard.waiting)))]
        try:
            self._deliver(shard.shard_id, batch)
        except _Stopping:
            return 0  # not checkpointed: a poller started later hands this batch over again
        self._checkpoints[shard.shard_id] = _sequence(batch[-1])
        return len(batch)

    def _read(self) -> None:
        """What each shard holds past what was read, the records the filter criteria pass kept."""
        if time.monotonic() - self._shards_read_at >= SHARDS_REFRESH_SECONDS:
            description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
            for shard in description["Shards"]:
                self._shards.setdefault(shard["ShardId"], _Shard(shard["ShardId"]))
            self._shards_read_at = time.monotonic()
        for shard in self._shards.values():
            # A full page may hide more behind it: reading stops at a short page, not at a page the
            # filter emptied, or a poll could find "nothing" with records still unread.
            page_full = True
            while page_full and len(shard.waiting) < self._source.batch_size:
                iterator = shard.iterator or self._first_iterator(shard.shard_id)
                answer = self._streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                shard.iterator = answer.get("NextShardIterator")
                records = [stream_record(r, self._stream_arn) for r in answer["Records"]]
                passed = [r for r in records if self._source.accepts(r)]
                shard.waiting.extend(passed)
                self._count(records_read=len(records), records_filtered_out=len(records) - len(passed))
                page_full = len(records) == GET_RECORDS_LIMIT

    def _first_iterator(self, shard_id: str) -> str:
        after = self._checkpoints.get(shard_id)
        position: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": self._source.starting_position}
        )
        answer = self._streams.get_shard_iterator(StreamArn=self._stream_arn, ShardId=shard_id, **position)
        return str(answer["ShardIterator"])

    def _deliver(self, shard_id: str, batch: list[dict[str, Any]]) -> None:
        """Until every record of the batch succeeded or was given up on."""
        pending: deque[tuple[list[dict[str, Any]], int]] = deque([(batch, 0)])  # records, retries so far
        while pending:
            records, retries = pending.popleft()
            invocation = self._invoke(records)
            first = self._first_failed(invocation, records)
            if first is None:
                self._count(batches=1, records_done=len(records))
                continue
            if invocation.error is not None and self._source.bisect_on_error and len(records) > 1:
                half = len(records) // 2
                pending.extendleft([(records[half:], retries), (records[:half], retries)])
                self._count(bisected=1)
                continue
            # Lambda checkpoints before the first failed record and retries from there.
            self._count(records_done=first)
            remaining = records[first:]
            if 0 <= self._source.maximum_retry_attempts <= retries:
                self._give_up(shard_id, remaining, invocation, retries + 1)
                continue
            low, high = RETRY_WAIT_SECONDS
            if self._stop.wait(min(high, low * 2**retries)):
                raise _Stopping
            self._count(retries=1)
            pending.appendleft((remaining, retries + 1))

    def _first_failed(self, invocation: Invocation, records: Sequence[dict[str, Any]]) -> int | None:
        sequences = [_sequence(r) for r in records]
        failed = failed_ids(invocation, set(sequences), self._source.report_batch_item_failures)
        return min((sequences.index(s) for s in failed), default=None)

    def _give_up(
        self, shard_id: str, records: Sequence[dict[str, Any]], invocation: Invocation, invokes: int
    ) -> None:
        self._count(batches=1, records_given_up=len(records))
        log.warning(
            "%s: %d record(s) from %s failed %d time(s): %s",
            self.name,
            len(records),
            _sequence(records[0]),
            invokes,
            f"metadata sent to {self._on_failure[1]}" if self._on_failure else "discarded",
        )
        if self._on_failure is None or self._sqs is None:
            return
        document = on_failure_record(
            self._function, shard_id, self._stream_arn, records, invocation, invokes, self._region
        )
        self._sqs.send_message(QueueUrl=self._on_failure[0], MessageBody=json.dumps(document))
