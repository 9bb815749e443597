"""A local stand-in for Lambda's SQS event source mapping.

Receives up to BatchSize messages (waiting up to MaximumBatchingWindowInSeconds to fill a batch),
invokes the function with an SQS event (the shape of events/sqs_batch.json), then applies Lambda's
partial-failure semantics with ReportBatchItemFailures:
- the function failed, or reported an identifier that is not in the batch: nothing is deleted;
- otherwise every message not in `batchItemFailures` is deleted.
What is left becomes visible again after the visibility timeout; after maxReceiveCount receives moto
moves it to the dead-letter queue (the template's RedrivePolicy), as SQS does.

Locally the visibility timeout is short (given with each ReceiveMessage) instead of the queue's 540 s,
so a retry comes within seconds; the queue itself keeps the template's attributes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from typing import Any

from tools.local.lambdas import Invocation, Invoker
from tools.local.stackinfo import StackInfo
from tools.local.template_env import SqsSource

log = logging.getLogger("local.sqs")
IDLE_POLL_SECONDS = 0.2


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as Lambda hands it to the function."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            name: attributes[name]
            for name in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
                "SequenceNumber",
                "MessageGroupId",
                "MessageDeduplicationId",
            )
            if name in attributes
        },
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


def failed_ids(invocation: Invocation, batch_ids: set[str], report_failures: bool) -> set[str]:
    """The messages that stay on the queue after this invocation."""
    if invocation.error is not None:
        return set(batch_ids)
    if not report_failures:
        return set()
    payload = invocation.payload
    failures = payload.get("batchItemFailures") if isinstance(payload, dict) else None
    if not failures:
        return set()
    reported = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
    # An empty or unknown identifier makes Lambda treat the whole batch as failed.
    return set(batch_ids) if not reported <= batch_ids else reported


class SqsPoller:
    def __init__(
        self,
        invoker: Invoker,
        function: str,
        source: SqsSource,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        visibility_timeout: int,
    ) -> None:
        self._invoker = invoker
        self._function = function
        self._source = source
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._visibility_timeout = visibility_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sqs-{source.queue}", daemon=True)
        self.stats: Counter[str] = Counter()

    def start(self) -> SqsPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "queue": self._source.queue,
            "function": self._function,
            "visibility_timeout_seconds": self._visibility_timeout,
            **self.stats,
        }

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("polling %s failed; retrying in 1s", self._source.queue)
                self.stats["poll_errors"] += 1
                self._stop.wait(1.0)

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            VisibilityTimeout=self._visibility_timeout,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def poll_once(self) -> int:
        """One receive-invoke-delete round. Returns the number of messages handed to the function."""
        # Short polls: each one is atomic in the local moto (see tools/local/aws.py); idle costs 5 calls/s.
        messages = self._receive(self._source.batch_size, wait=0)
        if not messages:
            self._stop.wait(IDLE_POLL_SECONDS)
            return 0
        # Never gathered for longer than half the (short, local) visibility timeout: a message
        # received first would become visible again and come back into the same batch.
        window = min(self._source.batching_window_seconds, self._visibility_timeout / 2)
        window_end = time.monotonic() + window
        while (
            len(messages) < self._source.batch_size
            and time.monotonic() < window_end
            and not self._stop.is_set()
        ):
            more = self._receive(self._source.batch_size - len(messages), wait=0)
            if not more:
                self._stop.wait(0.1)
            seen = {m["MessageId"] for m in messages}
            messages.extend(m for m in more if m["MessageId"] not in seen)
        records = [lambda_record(m, self._queue_arn, self._region) for m in messages]
        invocation = self._invoker.invoke(
            self._function, {"Records": records}, trigger=f"sqs:{self._source.queue}"
        )
        batch_ids = {m["MessageId"] for m in messages}
        failed = failed_ids(invocation, batch_ids, self._source.report_batch_item_failures)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        self.stats["batches"] += 1
        self.stats["messages"] += len(messages)
        self.stats["deleted"] += len(done)
        self.stats["left_for_retry"] += len(failed)
        if invocation.error:
            self.stats["function_errors"] += 1
        log.info(
            "%s: %d message(s) -> %s: %d deleted, %d left for retry",
            self._source.queue,
            len(messages),
            self._function,
            len(done),
            len(failed),
        )
        return len(messages)


def stack_pollers(info: StackInfo, invoker: Invoker) -> list[SqsPoller]:
    """Pollers for a stack's event source mappings (stack.json `sqs.sources`) that invoke through
    `invoker`: what the stack runs itself with in-process functions, for a stack started with
    `--functions none` whose functions something else serves (sam local start-lambda). Not started."""
    from tools.local.aws import sqs_client

    sqs = sqs_client(info.aws_endpoint_url, info.region)
    return [
        SqsPoller(
            invoker,
            entry["function"],
            SqsSource(
                queue=entry["queue"],
                batch_size=int(entry["batch_size"]),
                batching_window_seconds=float(entry["batching_window_seconds"]),
                report_batch_item_failures=bool(entry["report_batch_item_failures"]),
            ),
            sqs,
            entry["queue_url"],
            entry["queue_arn"],
            info.region,
            int(info.sqs["visibility_timeout_seconds"]),
        )
        for entry in info.sqs.get("sources", [])
    ]
