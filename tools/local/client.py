"""Driving a running local stack from outside, knowing only its stack.json (demo and integration tests).

Everything goes through the stack's endpoints: the API over HTTP, the queue and the tables through
boto3 at the moto endpoint, the sandbox's admin routes. Nothing here depends on how the functions are
served, so the same driver works when `sam local` serves them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from ocelot_sms.store import ChunkRecord, ChunkStatus, DynamoStore, MessageState
from tools.local.aws import client
from tools.local.stack import StackInfo


class WaitTimeout(TimeoutError):
    pass


def wait_for[T](
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.2,
    on_poll: Callable[[], None] | None = None,
) -> T:
    """Poll `check` until it returns something other than None/False, or raise WaitTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if on_poll is not None:
            on_poll()
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message of one of our requests, as the tables correlate it with Ocelot's ids."""

    request_id: str
    index: int
    ref: str | None
    to: str
    message_id: str
    batch_id: str


@dataclass(slots=True)
class MessageReport:
    request_id: str
    ref: str | None
    to: str
    message_id: str
    expected: str | None  # the sandbox's scripted final status
    final: str | None  # the current status in the messages table
    stored_event_ids: list[str] = field(default_factory=list)
    planned_event_ids: list[str] = field(default_factory=list)  # what the sandbox generated
    sent_event_ids: set[str] = field(default_factory=set)  # what it delivered at least once
    occurrences: int = 0  # event items received by the webhook over all deliveries

    @property
    def events(self) -> int:
        return len(self.stored_event_ids)

    @property
    def duplicates_ignored(self) -> int:
        return max(0, self.occurrences - len(set(self.stored_event_ids)))

    @property
    def lost(self) -> set[str]:
        return set(self.planned_event_ids) - set(self.stored_event_ids)

    @property
    def unexpected(self) -> set[str]:
        return set(self.stored_event_ids) - set(self.planned_event_ids)

    @property
    def ok(self) -> bool:
        return (
            self.expected is not None
            and self.final == self.expected
            and not self.lost
            and not self.unexpected
            and len(self.stored_event_ids) == len(set(self.stored_event_ids))
        )


class StackClient:
    def __init__(self, info: StackInfo, http_timeout: float = 15.0) -> None:
        self.info = info
        self.http = requests.Session()
        self.http_timeout = http_timeout
        self.dynamodb = client("dynamodb", info.aws_endpoint_url, info.region)
        self.sqs = client("sqs", info.aws_endpoint_url, info.region)
        self.store = DynamoStore(self.dynamodb, info.tables["messages"])

    def close(self) -> None:
        self.http.close()
        self.dynamodb.close()
        self.sqs.close()

    def __enter__(self) -> StackClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- the API and the queue --------------------------------------------------------------

    def post_batch(self, body: Mapping[str, Any] | str) -> requests.Response:
        if self.info.api_url is None:
            raise RuntimeError("this stack does not serve the API (functions: none)")
        data = body if isinstance(body, str) else json.dumps(body)
        return self.http.post(
            f"{self.info.api_url}/batches",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=self.http_timeout,
        )

    def post_batch_until_answered(
        self,
        body: Mapping[str, Any],
        timeout: float = 60.0,
        on_retry: Callable[[requests.Response], None] | None = None,
    ) -> requests.Response:
        """POST, repeating the SAME request (same requestId: idempotent) while the answer is 503/409."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.post_batch(body)
            if response.status_code not in (503, 409) or time.monotonic() >= deadline:
                return response
            if on_retry is not None:
                on_retry(response)
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))

    def api_get(self, path: str, **query: Any) -> requests.Response:
        """GET a route of the stack's API (status routes, /inbound)."""
        return self.http.get(f"{self.info.api_url}{path}", params=query, timeout=self.http_timeout)

    def cancel_batch(self, request_id: str) -> requests.Response:
        """DELETE /batches/{requestId}: cancel a request scheduled for later."""
        return self.http.delete(f"{self.info.api_url}/batches/{request_id}", timeout=self.http_timeout)

    def inbound(self, since: str | None = None) -> list[dict[str, Any]]:
        """Every reply GET /inbound lists since `since` (a day ago by default), following its pages."""
        replies: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 500, **({"since": since} if since else {})}
        while True:
            page = self.api_get("/inbound", **query)
            page.raise_for_status()
            body = page.json()
            replies += body["messages"]
            if not body["nextCursor"]:
                return replies
            query["cursor"] = body["nextCursor"]

    def published_events(self) -> list[dict[str, Any]]:
        """The events the stack's bus took since last asked, as its check rule delivered them to the
        local queue (each once: read and deleted)."""
        events: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.info.events_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            if not got:
                return events
            events += [json.loads(m["Body"]) for m in got]
            self.sqs.delete_message_batch(
                QueueUrl=self.info.events_queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )

    def enqueue(self, body: Mapping[str, Any] | str) -> str:
        data = body if isinstance(body, str) else json.dumps(body)
        return str(self.sqs.send_message(QueueUrl=self.info.queue_url, MessageBody=data)["MessageId"])

    def enqueue_many(self, bodies: Sequence[Mapping[str, Any] | str]) -> list[str]:
        """At once (one SendMessageBatch), so the poller can hand them to one invocation."""
        entries = [
            {"Id": str(i), "MessageBody": b if isinstance(b, str) else json.dumps(b)}
            for i, b in enumerate(bodies)
        ]
        response = self.sqs.send_message_batch(QueueUrl=self.info.queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")
        by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        return [by_id[str(i)] for i in range(len(bodies))]

    def queue_depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight) messages."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        """The messages in the DLQ (received with a zero visibility timeout, so they stay there)."""
        response = self.sqs.receive_message(
            QueueUrl=self.info.dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageSystemAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    # ---- the sandbox and the control routes -------------------------------------------------

    def control(self, url: str, body: Any = None, timeout: float | None = None) -> Any:
        """GET a control route of the stack (the sandbox's, the API front's, moto's), or POST `body`."""
        method = "GET" if body is None else "POST"
        response = self.http.request(method, url, json=body, timeout=timeout or self.http_timeout)
        response.raise_for_status()
        return response.json()

    def sandbox_config(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control(f"{self.info.sandbox_url}/_sandbox/config", changes)
        return result

    def sandbox_reset(self, *, config: bool = True, record: bool = False) -> None:
        self.control(f"{self.info.sandbox_url}/_sandbox/reset", {"config": config, "record": record})

    def sandbox_record(self) -> dict[str, Any]:
        record: dict[str, Any] = self.control(f"{self.info.sandbox_url}/_sandbox/record")
        return record

    def webhook_faults(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control(f"{self.info.control_url}/_local/faults", changes)
        return result

    def storage_faults(self, **changes: Any) -> dict[str, Any]:
        """Change the DynamoDB fault injector (tools/local/aws.py StorageFaults); none: its status."""
        url = f"{self.info.aws_endpoint_url}/_local/storage-faults"
        result: dict[str, Any] = self.control(url, changes or None)
        return result

    def table_items(self, table: str, attributes: Sequence[str]) -> list[dict[str, Any]]:
        """Every item of a table (those attributes, wire format), read from moto's memory: moto sorts
        the whole table for every Scan page and Query, so whole-table checks read it this way."""
        query = f"table={table}&attributes={','.join(attributes)}"
        items: list[dict[str, Any]] = self.control(
            f"{self.info.aws_endpoint_url}/_local/dynamodb-items?{query}", timeout=600
        )["items"]
        return items

    def egress(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control(f"{self.info.control_url}/_local/egress")
        return result

    def invocations(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control(f"{self.info.control_url}/_local/invocations")
        return result

    def settle_streams(self, timeout: float = 60.0) -> dict[str, Any]:
        """Until the stream pollers have handed every record written so far to their function (failed
        batches retried or given up on): every delivery stored by now is applied. Their status."""
        url = f"{self.info.control_url}/_local/event-sources/settle"
        answer: dict[str, Any] = self.control(url, {"timeout": timeout}, timeout=timeout + 15)
        if not answer["settled"]:
            raise WaitTimeout(f"the stream pollers did not settle within {timeout:.0f}s: {answer['pollers']}")
        return answer

    def queue_messages(self, logical_id: str) -> list[dict[str, Any]]:
        """What a queue of the template holds (received with a zero visibility timeout: they stay)."""
        messages: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(20):
            response = self.sqs.receive_message(
                QueueUrl=self.info.queues[logical_id], MaxNumberOfMessages=10, VisibilityTimeout=0
            )
            fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update(m["MessageId"] for m in fresh)
            messages += fresh
        return messages

    # ---- what the tables say ----------------------------------------------------------------

    def chunks(self, request_id: str) -> list[ChunkRecord]:
        stored = self.store.get_batch(request_id)
        return list(stored.chunks) if stored else []

    def sent_messages(self, request_id: str) -> list[SentMessage]:
        """Messages of the request that Ocelot accepted, in request order."""
        messages: list[SentMessage] = []
        for chunk in self.chunks(request_id):
            if chunk.status is not ChunkStatus.ACCEPTED:
                continue
            for meta in self.store.batch_messages(request_id, chunk.index):
                messages.append(
                    SentMessage(
                        request_id=request_id,
                        index=meta.index,
                        ref=meta.ref,
                        to=meta.to,
                        message_id=meta.message_id,
                        batch_id=meta.batch_id,
                    )
                )
        return sorted(messages, key=lambda m: m.index)

    def settled(self, request_id: str, expected_messages: int) -> list[SentMessage] | None:
        """The request's messages once every chunk is accepted and every message recorded, else None."""
        chunks = self.chunks(request_id)
        if not chunks or any(c.status is not ChunkStatus.ACCEPTED for c in chunks):
            return None
        messages = self.sent_messages(request_id)
        return messages if len(messages) == expected_messages else None

    def states(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        return self.store.get_states(list(message_ids))

    def stored_event_ids(self, message_id: str) -> list[str]:
        return [e.event_id for e in self.store.get_message(message_id).events]

    def received_event_items(self, days: Iterable[str] | None = None) -> Counter[str]:
        """eventId -> how many times the webhook received it, over every raw delivery kept."""
        today = datetime.now(UTC)
        days = days or [f"{today - timedelta(days=1):%Y-%m-%d}", f"{today:%Y-%m-%d}"]
        counts: Counter[str] = Counter()
        for day in days:
            for raw in self.store.raw_deliveries(day):
                try:
                    payload = json.loads(raw.body)
                except (ValueError, TypeError):
                    continue
                for item in payload if isinstance(payload, list) else [payload]:
                    if isinstance(item, dict) and "eventId" in item:
                        counts[str(item["eventId"])] += 1
        return counts

    def report(
        self, messages: Sequence[SentMessage], record: Mapping[str, Any] | None = None
    ) -> list[MessageReport]:
        """Per message: the sandbox's script and events against what the tables hold."""
        record = record if record is not None else self.sandbox_record()
        sent: dict[str, set[str]] = {}
        for attempt in record["callback_attempts"]:
            for event_id, message_id in zip(attempt["event_ids"], attempt["message_ids"], strict=True):
                if message_id is not None:  # a reply is an event of no message
                    sent.setdefault(message_id, set()).add(event_id)
        states = self.states([m.message_id for m in messages])
        received = self.received_event_items()
        reports = []
        for message in messages:
            planned = record["messages"].get(message.message_id, {})
            stored = self.stored_event_ids(message.message_id)
            reports.append(
                MessageReport(
                    request_id=message.request_id,
                    ref=message.ref,
                    to=message.to,
                    message_id=message.message_id,
                    expected=planned.get("scripted"),
                    final=state.status if (state := states.get(message.message_id)) else None,
                    stored_event_ids=stored,
                    planned_event_ids=list(planned.get("event_ids", [])),
                    sent_event_ids=sent.get(message.message_id, set()),
                    occurrences=sum(received[event_id] for event_id in set(stored)),
                )
            )
        return reports

    def wait_callbacks_sent(self, message_ids: Sequence[str], timeout: float) -> dict[str, Any]:
        """Until the sandbox knows every message and has nothing left to deliver (retries included):
        the webhook answers once a delivery is stored, so by then the table holds every delivery it
        will get. Returns the sandbox's record at that moment."""

        def check() -> dict[str, Any] | None:
            record = self.sandbox_record()
            known = all(m in record["messages"] for m in message_ids)
            return record if known and not record["pending"] else None

        return wait_for(check, timeout, "the sandbox to deliver every callback", interval=0.3)

    def wait_callbacks_done(self, message_ids: Sequence[str], timeout: float) -> dict[str, Any]:
        """wait_callbacks_sent, then until the stack's stream poller has handed every stored delivery
        to the applier: every event of them applied. Returns the sandbox's record."""
        started = time.monotonic()
        record = self.wait_callbacks_sent(message_ids, timeout)
        self.settle_streams(max(5.0, timeout - (time.monotonic() - started)))
        return record
