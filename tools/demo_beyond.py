"""The demo's last step: what the stack does beyond sending, on the same local stack.

A batch scheduled a few seconds ahead (sendAt), fired by the stack's schedule runner and sent at its
time; a recipient who texts STOP back, whose reply is listed by GET /inbound (linked to the message it
answers) and whose number the next batch leaves out as `suppressed`; and the status events the bus
took, as its rule delivered them to a queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ocelot_sms.observability import mask_phone
from tools.local.client import StackClient, wait_for

SCHEDULE_AHEAD = timedelta(seconds=4)
# The sandbox answers a message to a number ending in these digits with this text.
STOP_SUFFIX, STOP_TEXT = "0004", "STOP"


def _note(text: str) -> None:
    print(f"      {text}", flush=True)


class Beyond:
    def __init__(self, client: StackClient, run_id: str, remaining: Callable[[], float]) -> None:
        self.client = client
        self.run_id = run_id
        self.remaining = remaining
        self.answered: Counter[int] = Counter()  # POST /batches status codes of this step

    def _batch(self, kind: str, numbers: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "requestId": f"demo-{kind}-{self.run_id}",
            "messages": [
                {"to": to, "text": f"Demo {kind}: the library closes at 5 today.", "ref": f"{kind}-{n:02d}"}
                for n, to in enumerate(numbers, start=1)
            ],
            **extra,
        }

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post_batch_until_answered(body, timeout=self.remaining())
        if response.status_code not in (201, 202):
            raise RuntimeError(f"the API answered {response.status_code}: {response.text}")
        self.answered[response.status_code] += 1
        answer: dict[str, Any] = response.json()
        return answer

    def scheduled_send(self) -> bool:
        at = datetime.now(UTC) + SCHEDULE_AHEAD
        body = self._batch("later", ["+15554560010", "+15554560011"], sendAt=at.isoformat(timespec="seconds"))
        answer = self._post(body)
        _note(
            f"sendAt {body['sendAt']}: {answer['status']} for {answer.get('scheduledFor')}, nothing sent yet"
        )
        sent = wait_for(
            lambda: self.client.settled(body["requestId"], 2), self.remaining(), "the scheduled batch"
        )
        late = (datetime.now(UTC) - at).total_seconds()
        _note(f"the schedule fired: {len(sent)} messages accepted by Ocelot {late:.1f}s after sendAt")
        return answer["status"] == "scheduled" and len(sent) == 2

    def stop_reply(self) -> bool:
        stopper, other = f"+1555456{STOP_SUFFIX}", "+15554560012"
        self.client.sandbox_config(replies={STOP_SUFFIX: STOP_TEXT})
        first = self._batch("ask", [stopper, other])
        self._post(first)
        reply = wait_for(
            lambda: next((r for r in self.client.inbound() if r["from"] == stopper), None),
            self.remaining(),
            "the STOP reply",
        )
        linked = reply.get("inReplyTo") or {}
        _note(
            f"GET /inbound: {mask_phone(stopper)} replied {reply['text']!r}, answering "
            f"{linked.get('requestId')} ref {linked.get('ref')}"
        )
        self.client.sandbox_config(replies={})
        answer = self._post(self._batch("next", [stopper, other]))
        statuses = [m["status"] for m in answer["messages"]]
        _note(
            f"the next batch to both: {mask_phone(stopper)} {statuses[0]}, {mask_phone(other)} {statuses[1]}"
        )
        sent_to = [set(r.get("recipients") or ()) for r in self.client.sandbox_record()["requests"]]
        never = not any(stopper in r for r in sent_to[-1:])
        return (
            linked.get("requestId") == first["requestId"] and statuses == ["suppressed", "accepted"] and never
        )

    def events_out(self) -> bool:
        seen: Counter[str] = Counter()

        def enough() -> Counter[str] | None:
            seen.update(e["detail-type"] for e in self.client.published_events())
            return seen if seen["Message Received"] and seen["Message Status Changed"] else None

        wait_for(enough, self.remaining(), "the bus's events")
        _note(
            "EventBridge bus, as its rule delivered them to a queue: "
            + ", ".join(f"{kind} {count}" for kind, count in sorted(seen.items()))
        )
        return True

    def settle(self) -> None:
        """Every callback of the whole demo delivered and applied; what the webhook was sent, in all."""

        def delivered() -> dict[str, Any] | None:
            record = self.client.sandbox_record()
            return record if record["pending"] == 0 else None

        record = wait_for(delivered, self.remaining(), "the last callbacks")
        self.client.settle_streams(self.remaining())
        attempts = record["callback_attempts"]
        acknowledged = sum(1 for a in attempts if a["status_code"] == 200)
        _note(
            f"POST /batches in this step: {self.answered[201]} answered 201, {self.answered[202]} answered "
            f"202 | in the whole demo: callback attempts {len(attempts)}, {acknowledged} acknowledged"
        )


def run_beyond(client: StackClient, run_id: str, remaining: Callable[[], float]) -> bool:
    """Each part in turn; True when every one showed what it should."""
    beyond = Beyond(client, run_id, remaining)
    results = [beyond.scheduled_send(), beyond.stop_reply(), beyond.events_out()]
    beyond.settle()
    return all(results)
