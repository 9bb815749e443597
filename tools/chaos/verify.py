"""What a chaos run proves: the sandbox's record (what Ocelot took and sent) against the messages table.

Ground truth is the sandbox: every send request it saw, every chunk it accepted (with the ids it gave),
every event it generated and every callback attempt. The table is read whole once the sandbox has
nothing left to deliver, from moto's memory (GET /_local/dynamodb-items: moto sorts the whole table
for every Scan page, which makes a Scan of a 20,000-message run take hours). Each check is a figure
with the value it must have.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer

from ocelot_sms.contract import parse_instant
from tools.chaos.driver import ApiOutcome
from tools.chaos.profile import BULK_SIZE, Plan

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_deserializer = TypeDeserializer()
# What the checks need of each item.
ATTRIBUTES = (
    "PK",
    "SK",
    "eventId",
    "messageId",
    "status",
    "requestId",
    "index",
    "batchId",
    "messageIds",
    "to",
    "chunkIndex",
    "size",
    "reason",
    "type",
    "deliveryId",
    "problemCount",
    "body",
    "bodyEncoding",
    "eventTime",
    "reportedTime",
    "receivedAt",
)
STATUS_VIEW_SAMPLE = 5  # requests shown through StatusService after reconciliation


@dataclass(frozen=True, slots=True)
class RawSnapshot:
    """A raw delivery: its kind (raw, raw_truncated), the problems the applier recorded on it, and the
    items of its body that are not events as the contract reads them (not an object, no eventId)."""

    delivery_id: str
    kind: str
    problems: int
    not_events: int


@dataclass(frozen=True, slots=True)
class EventTimes:
    event_time: str | None  # the instant it is ordered by
    reported_time: str | None  # its own dateTime, when that was not used
    stored_at: str | None


@dataclass(slots=True)
class TableSnapshot:
    items: int = 0
    events: dict[str, list[str]] = field(default_factory=dict)  # eventId -> PK of every item holding it
    event_times: dict[str, EventTimes] = field(default_factory=dict)
    raws: list[RawSnapshot] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # messageId -> current status
    metas: dict[str, dict[str, Any]] = field(default_factory=dict)  # messageId -> #META item
    chunks: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    batches: set[str] = field(default_factory=set)
    raw_deliveries: int = 0
    rejected: int = 0
    # Items counted by their type: each request is a send of one part (its `send` and its
    # `send_part`); a `suppression` per number whose messages ended opted_out.
    typed: Counter[str] = field(default_factory=Counter)
    other: int = 0

    @property
    def send_items(self) -> int:
        return self.typed["send"] + self.typed["send_part"]


def _plain(value: Any) -> Any:
    if type(value).__name__ == "Decimal":
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _not_events(wire: Mapping[str, Any]) -> int:
    """Items of a raw delivery's body (wire format: binaries in base64) that are not events."""
    value = wire.get("body", {})
    body = gzip.decompress(base64.b64decode(value["B"])) if "B" in value else str(value.get("S", ""))
    try:
        payload = json.loads(body)
    except ValueError:
        return 1
    items = payload if isinstance(payload, list) else [payload]
    return sum(1 for i in items if not isinstance(i, dict) or "eventId" not in i)


COUNTED_TYPES = frozenset({"send", "send_part", "suppression"})


def snapshot(items: Sequence[Mapping[str, Any]]) -> TableSnapshot:
    """The items of the messages table (wire format, ATTRIBUTES only), sorted by kind."""
    table = TableSnapshot()
    for wire in items:
        item = {k: _plain(_deserializer.deserialize(v)) for k, v in wire.items() if k != "body"}
        table.items += 1
        pk, sk = str(item["PK"]), str(item["SK"])
        if sk.startswith("EVT#"):
            table.events.setdefault(str(item["eventId"]), []).append(pk)
            table.event_times[str(item["eventId"])] = EventTimes(
                item.get("eventTime"), item.get("reportedTime"), item.get("receivedAt")
            )
        elif sk == "#STATE":
            table.states[pk.removeprefix("MSG#")] = str(item.get("status"))
        elif sk == "#META":
            table.metas[pk.removeprefix("MSG#")] = item
        elif sk.startswith("CHUNK#"):
            table.chunks[(str(item["requestId"]), int(item["index"]))] = item
        elif sk == "#BATCH":
            table.batches.add(pk.removeprefix("REQ#"))
        elif pk.startswith("RAW#"):
            table.raw_deliveries += 1
            kind = str(item.get("type"))
            not_events = _not_events(wire) if kind == "raw" else 0
            table.raws.append(
                RawSnapshot(str(item["deliveryId"]), kind, int(item.get("problemCount", 0)), not_events)
            )
        elif pk.startswith("REJECTED#"):
            table.rejected += 1
        elif item.get("type") in COUNTED_TYPES:
            table.typed[str(item["type"])] += 1
        else:
            table.other += 1
    return table


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: Any
    expected: str  # as printed: "0", "== 12", ">= 20%"
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "expected": self.expected, "ok": self.ok}


@dataclass(slots=True)
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    examples: dict[str, list[Any]] = field(default_factory=dict)  # a few offenders per failed check

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def zero(self, name: str, offenders: Sequence[Any] | int) -> None:
        count = offenders if isinstance(offenders, int) else len(offenders)
        self.checks.append(Check(name, count, "0", count == 0))
        if not isinstance(offenders, int) and offenders:
            self.examples[name] = list(offenders)[:5]

    def equal(self, name: str, value: Any, expected: Any) -> None:
        self.checks.append(Check(name, value, f"== {expected}", value == expected))

    def at_least(self, name: str, value: float, minimum: float, percent: bool = False) -> None:
        shown = round(value * 100, 1) if percent else value
        expected = f">= {minimum * 100:g}%" if percent else f">= {minimum:g}"
        self.checks.append(Check(name, shown, expected, value >= minimum))


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def verify(
    plan: Plan,
    record: Mapping[str, Any],
    table: TableSnapshot,
    api: Mapping[str, ApiOutcome],
    storage: Mapping[str, Any],
    webhook_faults: Mapping[str, Any],
    outages: int,
    pollers: Sequence[Mapping[str, Any]] = (),
) -> Verdict:
    verdict = Verdict()
    figures = verdict.figures
    requests_seen: list[dict[str, Any]] = record["requests"]
    accepted: list[dict[str, Any]] = record["accepted"]
    messages: dict[str, dict[str, Any]] = record["messages"]
    events: dict[str, dict[str, Any]] = record["events"]
    attempts: list[dict[str, Any]] = record["callback_attempts"]

    # ---- sending: every message taken by Ocelot exactly once ------------------------------------
    chunk_of: dict[str, tuple[str, int]] = {
        m.to: (m.request_id, m.chunk_index) for m in plan.by_recipient.values()
    }
    accepted_times = Counter(m["to"] for chunk in accepted for m in chunk["messages"])
    id_of = {m["to"]: m["id"] for chunk in accepted for m in chunk["messages"]}
    chunk_keys = Counter(tuple(sorted(m["to"] for m in chunk["messages"])) for chunk in accepted)
    by_status = Counter(str(r.get("status")) for r in requests_seen)
    faults = Counter(str(r["fault"]) for r in requests_seen if r.get("fault"))
    figures["send"] = {
        "messages_planned": plan.messages,
        "requests_planned": {"api": len(plan.route("api")), "sqs": len(plan.route("sqs"))},
        "chunks_planned": sum(r.chunks for r in plan.requests),
        "sandbox_send_requests": len(requests_seen),
        "sandbox_answers": dict(sorted(by_status.items())),
        "sandbox_faults": dict(sorted(faults.items())),
        "sandbox_chunks_accepted": len(accepted),
        "sandbox_messages_accepted": sum(accepted_times.values()),
    }
    verdict.zero("chunks accepted twice by the sandbox", [k for k, n in chunk_keys.items() if n > 1])
    verdict.zero("messages accepted twice by the sandbox", [to for to, n in accepted_times.items() if n > 1])
    verdict.zero(
        "messages never accepted by the sandbox", sorted(set(plan.by_recipient) - set(accepted_times))
    )
    verdict.zero(
        "messages the sandbox accepted that we did not plan",
        sorted(set(accepted_times) - set(plan.by_recipient)),
    )

    # After the request that Ocelot accepted, nothing with those recipients may come again.
    accepted_at: dict[str, int] = {}
    for entry in sorted(requests_seen, key=lambda r: r["n"]):
        if entry.get("status") == 201:
            for to in entry.get("recipients", []):
                accepted_at.setdefault(to, entry["n"])
    sent_again = [
        entry["n"]
        for entry in requests_seen
        if any(entry["n"] > accepted_at.get(to, entry["n"]) for to in entry.get("recipients", []))
    ]
    verdict.zero("send requests repeating an accepted chunk", sent_again)

    # ---- our chunks ----------------------------------------------------------------------------
    chunk_status = Counter(str(c.get("status")) for c in table.chunks.values())
    planned_chunks = {(r.request_id, i) for r in plan.requests for i in range(r.chunks)}
    figures["chunks"] = dict(sorted(chunk_status.items()))
    verdict.zero("planned chunks without a chunk record", sorted(planned_chunks - set(table.chunks)))
    verdict.zero(
        "chunks left not_sent or sending",
        sorted(k for k, c in table.chunks.items() if c.get("status") not in ("accepted", "unknown")),
    )
    verdict.zero(
        "requests without a batch record", sorted({r.request_id for r in plan.requests} - table.batches)
    )
    # Each request is a send of its own, of one part: a send item and a part item for each.
    verdict.equal("send and part items (two per request)", table.send_items, 2 * len(table.batches))

    timed_out = [r for r in requests_seen if r.get("fault") == "accept_timeout"]
    timeout_chunks = {chunk_of[to] for r in timed_out for to in r.get("recipients", []) if to in chunk_of}
    unknown_chunks = {k for k, c in table.chunks.items() if c.get("status") == "unknown"}
    figures["accept_timeouts"] = {
        "sandbox_accepted_then_timed_out": len(timed_out),
        "recorded_unknown": len(timeout_chunks & unknown_chunks),
        "unknown_chunks_total": len(unknown_chunks),
        # Accepted in time by the sandbox, but its answer came after the Sender's read timeout.
        "unknown_without_a_sandbox_timeout": len(unknown_chunks - timeout_chunks),
    }
    verdict.equal(
        "accepted-then-timed-out chunks recorded unknown",
        len(timeout_chunks & unknown_chunks),
        len(timed_out),
    )
    verdict.zero(
        "accepted-then-timed-out chunks not recorded unknown", sorted(timeout_chunks - unknown_chunks)
    )

    # Unknown chunks: no ids on our side, so no message items; Ocelot's callbacks still come.
    unknown_ids = {id_of[to] for to, key in chunk_of.items() if key in unknown_chunks and to in id_of}
    verdict.zero(
        "messages of unknown chunks with message items (#META)", sorted(unknown_ids & set(table.metas))
    )
    verdict.zero(
        "unknown chunks holding message ids",
        sorted(k for k in unknown_chunks if table.chunks[k].get("messageIds")),
    )

    # Accepted chunks: the ids Ocelot gave, message by message, where the plan put them.
    mismatched = []
    for message_id, meta in table.metas.items():
        sandbox = messages.get(message_id)
        planned = plan.by_recipient.get(str(meta.get("to")))
        if (
            sandbox is None
            or planned is None
            or sandbox["to"] != meta.get("to")
            or sandbox["batch_id"] != meta.get("batchId")
            or (planned.request_id, planned.index) != (meta.get("requestId"), meta.get("index"))
            or planned.chunk_index != meta.get("chunkIndex")
        ):
            mismatched.append(message_id)
    accepted_keys = planned_chunks - unknown_chunks
    expected_metas = sum(
        1 for m in plan.by_recipient.values() if (m.request_id, m.chunk_index) in accepted_keys
    )
    verdict.zero("message items not matching the sandbox's ids", mismatched)
    verdict.equal("message items for the messages of accepted chunks", len(table.metas), expected_metas)

    # ---- callbacks: every event sent is stored once ---------------------------------------------
    sent_events = {e for a in attempts for e in a["event_ids"]}
    stored = set(table.events)
    duplicate_items = sum(len(pks) - 1 for pks in table.events.values())
    misplaced = [
        e for e, pks in table.events.items() if e in events and pks != [f"MSG#{events[e]['message_id']}"]
    ]
    deliveries = Counter(a["delivery_id"] for a in attempts)
    times_sent = Counter(e for a in attempts for e in a["event_ids"])
    answers = Counter(str(a["status_code"] if a["status_code"] is not None else a["error"]) for a in attempts)
    multi_event = [m for m in messages.values() if len(m["event_ids"]) > 1]
    planned_dups = sum(len(m["duplicated_event_ids"]) for m in messages.values())
    out_of_order = sum(1 for m in messages.values() if m["out_of_order"])
    figures["events"] = {
        "generated_by_sandbox": len(events),
        "sent_by_sandbox_distinct": len(sent_events),
        "stored_distinct": len(stored),
        "stored_items": sum(len(p) for p in table.events.values()),
        "event_items_sent": sum(times_sent.values()),
        "events_sent_more_than_once": sum(1 for n in times_sent.values() if n > 1),
        "events_scripted_as_duplicates": planned_dups,
    }
    figures["callbacks"] = {
        "deliveries": len(deliveries),
        "attempts": len(attempts),
        "retried_deliveries": sum(1 for n in deliveries.values() if n > 1),
        "array_deliveries": sum(1 for a in attempts if a["array"] and a["attempt"] == 1),
        "answers_treated_as_lost": sum(1 for a in attempts if a["response_lost"]),
        "webhook_answers": dict(sorted(answers.items())),
        "gave_up": sum(1 for a in attempts if a["outcome"] == "gave_up"),
        "messages_out_of_order": out_of_order,
        "raw_deliveries_stored": table.raw_deliveries,
    }
    verdict.equal("events sent by the sandbox == distinct events stored", len(stored), len(sent_events))
    verdict.zero("events sent but not stored", sorted(sent_events - stored))
    verdict.zero("events stored but never sent", sorted(stored - sent_events))
    verdict.zero("events generated but never sent", sorted(set(events) - sent_events))
    verdict.zero("duplicate event records", duplicate_items)
    verdict.zero("events stored under another message", misplaced)
    verdict.zero("callback deliveries the sandbox gave up on", figures["callbacks"]["gave_up"])
    verdict.zero("items of no known kind in the table", table.other)
    verdict.zero("queue messages rejected as malformed", table.rejected)

    # ---- final statuses ---------------------------------------------------------------------------
    wrong = [
        (m, table.states.get(m), messages.get(m, {}).get("scripted"))
        for m in table.metas
        if table.states.get(m) != messages.get(m, {}).get("scripted")
    ]
    unknown_right = sum(1 for m in unknown_ids if table.states.get(m) == messages[m]["scripted"])
    statuses = Counter(table.states.get(m, "(none)") for m in table.metas)
    figures["statuses"] = {
        "checked": len(table.metas),
        "final": dict(sorted(statuses.items())),
        "excluded_unknown_chunk_messages": len(unknown_ids),
        # Not a check (their chunk is unknown to us), but the webhook converges on them all the same.
        "unknown_chunk_messages_with_scripted_state": unknown_right,
    }
    verdict.zero("wrong final statuses (vs the sandbox's script)", wrong)

    # ---- the client -------------------------------------------------------------------------------
    answers_api = Counter(str(code) for o in api.values() for code in o.answers)
    figures["client"] = {
        "api_requests": len(api),
        "api_posts": sum(len(o.answers) for o in api.values()),
        "api_answers": dict(sorted(answers_api.items())),
        "api_final": dict(sorted(Counter(str(o.final_status) for o in api.values()).items())),
        "api_202_confirmed": sum(1 for o in api.values() if o.confirmed_same is not None),
    }
    verdict.zero("API requests without a final answer", sorted(r for r, o in api.items() if o.error))
    verdict.zero(
        "202 repeats (same requestId) that answered differently",
        sorted(r for r, o in api.items() if o.confirmed_same is False),
    )
    verdict.equal("API requests answered", len(api), len(plan.route("api")))
    queue = next((p for p in pollers if p.get("queue") == "SendQueue"), {})
    figures["queue"] = {k: v for k, v in queue.items() if isinstance(v, int)}
    forced = plan.forced_failures()
    forced_api = [r for r in plan.route("api") if r.messages[0].to in forced]
    forced_sqs = [r for r in plan.route("sqs") if r.messages[0].to in forced]
    figures["client"]["requests_refused_per_invocation"] = {"api": len(forced_api), "sqs": len(forced_sqs)}

    # ---- the chaos did happen -----------------------------------------------------------------------
    storage_counts: Mapping[str, int] = storage.get("counts", {})
    figures["storage_faults"] = {"outages": outages, **dict(sorted(storage_counts.items()))}
    figures["webhook_front_faults"] = len(webhook_faults.get("injected", []))
    if forced_api:
        verdict.at_least("API answers 503 (the client sent the same request again)", answers_api["503"], 1)
    if forced_sqs:
        verdict.at_least("queue messages left for retry (redelivered)", queue.get("left_for_retry", 0), 1)
    verdict.at_least("send requests answered 429", by_status["429"], 1)
    verdict.at_least("send requests answered 503", by_status["503"], 1)
    verdict.at_least("chunks accepted then timed out", len(timed_out), 1)
    verdict.at_least(
        "events delivered a second time (scripted)", _share(planned_dups, len(events)), 0.20, True
    )
    verdict.at_least("messages with callbacks out of order", _share(out_of_order, len(messages)), 0.30, True)
    verdict.at_least("callback deliveries retried", figures["callbacks"]["retried_deliveries"], 1)
    verdict.at_least(
        "callback writes throttled", sum(v for k, v in storage_counts.items() if "Throughput" in k), 1
    )
    verdict.at_least(
        "callback writes failing (500)", sum(v for k, v in storage_counts.items() if "Internal" in k), 1
    )
    verdict.at_least(
        "callback writes applied, then answered 500",
        sum(v for k, v in storage_counts.items() if k.endswith(":applied")),
        1,
    )
    verdict.at_least("storage outages", outages, 1)
    verdict.at_least(
        "webhook answered 5xx (storage unavailable or injected)",
        sum(n for a, n in answers.items() if a.startswith("5")),
        1,
    )
    check_applier(verdict, record, table, pollers)
    figures["shares"] = {
        "events_scripted_twice_pct": round(100 * _share(planned_dups, len(events)), 1),
        "events_sent_more_than_once_pct": round(
            100 * _share(figures["events"]["events_sent_more_than_once"], len(sent_events)), 1
        ),
        "messages_out_of_order_pct": round(100 * _share(out_of_order, len(messages)), 1),
        "multi_event_messages_out_of_order_pct": round(100 * _share(out_of_order, len(multi_event)), 1),
    }
    return verdict


def _ordered_as_received(times: EventTimes, sent_date_time: str) -> bool:
    """A far-future event: ordered at the moment it was received, its own dateTime kept as reported."""
    if times.event_time is None or times.reported_time is None or times.stored_at is None:
        return False
    reported_kept = parse_instant(times.reported_time) == parse_instant(sent_date_time)
    return reported_kept and parse_instant(times.event_time) <= parse_instant(times.stored_at)


def check_applier(
    verdict: Verdict,
    record: Mapping[str, Any],
    table: TableSnapshot,
    pollers: Sequence[Mapping[str, Any]],
) -> None:
    """What the applier had to take in its stride: items that are not events among the others, dates
    far in the future, bulk arrays. (Stream records given up are figures: the operator's replay in
    run.py applies them, and the event checks hold after it.)"""
    events: dict[str, dict[str, Any]] = record["events"]
    firsts = [a for a in record["callback_attempts"] if a["attempt"] == 1]
    bulk = [a for a in firsts if a.get("bulk")]
    future = {e: v for e, v in events.items() if v.get("future")}
    stored_future = [e for e in future if e in table.event_times]
    stream = next((p for p in pollers if p.get("mapping")), {})
    verdict.figures["applier"] = {
        "items_not_events_sent": sum(a.get("malformed_items", 0) for a in firsts),
        "deliveries_with_problems_recorded": sum(1 for r in table.raws if r.problems),
        "far_future_events_sent": len(future),
        "far_future_events_stored": len(stored_future),
        "bulk_arrays": len(bulk),
        "bulk_array_sizes": sorted(len(a["event_ids"]) for a in bulk),
        "events_in_bulk_arrays_only": sum(1 for v in events.values() if v.get("bulk_only")),
        "gzip_deliveries": sum(1 for a in firsts if a.get("gzip")),
    }
    verdict.figures["stream"] = {k: v for k, v in stream.items() if isinstance(v, int)}
    verdict.zero(
        "deliveries whose recorded problems differ from their items that are not events",
        [(r.delivery_id, r.problems, r.not_events) for r in table.raws if r.problems != r.not_events],
    )
    verdict.zero("deliveries too large to keep (413)", [r.delivery_id for r in table.raws if r.kind != "raw"])
    verdict.zero(
        "far-future events not ordered as received",
        [e for e in stored_future if not _ordered_as_received(table.event_times[e], future[e]["date_time"])],
    )
    verdict.at_least("items that are not events, sent in arrays", sum(r.not_events for r in table.raws), 1)
    verdict.at_least("far-future events stored", len(stored_future), 1)
    if len(events) >= BULK_SIZE:
        full = sum(1 for a in bulk if len(a["event_ids"]) == BULK_SIZE)
        verdict.at_least(f"{BULK_SIZE:,}-event arrays delivered", full, 1)


def reconcile_and_check(
    plan: Plan,
    record: Mapping[str, Any],
    table: TableSnapshot,
    dynamodb: DynamoDBClient,
    table_name: str,
    verdict: Verdict,
) -> None:
    """The operator's part: attach Ocelot's ids (here: from the sandbox, standing in for the Admin
    Portal) to every unknown chunk with `reconcile.attach_ids`. Then each message attached must have
    its correlation (#META) where the plan put it and its scripted status (#STATE), read back by key;
    and a few of the requests concerned are read through the status view (`StatusService.batch`).

    Only a few: the status view lists a chunk's messages through GSI1, which moto answers by sorting
    every item of the table, so viewing every request of a 20,000-message run would take hours. The
    other requests' messages were checked from the table already (their #META and #STATE items)."""
    from ocelot_sms.reconcile import attach_ids
    from ocelot_sms.status import StatusService
    from ocelot_sms.store import DynamoStore

    store = DynamoStore(dynamodb, table_name)

    accepted_by_key = {tuple(m["to"] for m in chunk["messages"]): chunk for chunk in record["accepted"]}
    scripted = {m["id"]: m["scripted"] for chunk in record["accepted"] for m in chunk["messages"]}
    by_request = {r.request_id: r for r in plan.requests}
    attached: list[tuple[str, str]] = []  # (message id, recipient)
    attached_chunks = 0
    problems: list[str] = []
    concerned: list[str] = []
    for (request_id, index), chunk in sorted(table.chunks.items()):
        if chunk.get("status") != "unknown":
            continue
        if request_id not in concerned:
            concerned.append(request_id)
        planned = [m for m in by_request[request_id].messages if m.chunk_index == index]
        sandbox_chunk = accepted_by_key.get(tuple(m.to for m in planned))
        if sandbox_chunk is None:
            problems.append(
                f"{request_id}#{index}: not in the sandbox's accepted chunks (reason: {chunk.get('reason')})"
            )
            continue
        ids = [m["id"] for m in sandbox_chunk["messages"]]
        attach_ids(store, request_id, index, sandbox_chunk["batch_id"], ids)
        attached += [(m["id"], m["to"]) for m in sandbox_chunk["messages"]]
        attached_chunks += 1

    wrong: list[Any] = []
    states = store.get_states([message_id for message_id, _ in attached])
    metas = batch_get(dynamodb, table_name, [(f"MSG#{m}", "#META") for m, _ in attached])
    for message_id, to in attached:
        meta = metas.get((f"MSG#{message_id}", "#META"))
        planned_message = plan.by_recipient[to]
        if meta is None or (meta.get("requestId"), meta.get("index")) != (
            planned_message.request_id,
            planned_message.index,
        ):
            wrong.append((message_id, "correlation", meta))
        state = states.get(message_id)
        if state is None or state.status != scripted[message_id]:
            wrong.append((message_id, state.status if state else None, scripted[message_id]))

    service = StatusService(store)
    viewed = concerned[:STATUS_VIEW_SAMPLE]
    by_to = {m["to"]: m["scripted"] for chunk in record["accepted"] for m in chunk["messages"]}
    counts: Counter[str] = Counter()
    for request_id in viewed:
        view = service.batch(request_id, limit=500)
        rows = view["messages"] if view else []
        counts.update(view["counts"] if view else {})
        if len(rows) != len(by_request[request_id].messages):
            wrong.append(
                (request_id, f"{len(rows)} rows for {len(by_request[request_id].messages)} messages")
            )
        wrong.extend(
            (request_id, row["index"], row["status"], by_to.get(row["to"]))
            for row in rows
            if row["messageId"] is None or row["status"] != by_to.get(row["to"])
        )
    verdict.figures["reconciliation"] = {
        "unknown_chunks_attached": attached_chunks,
        "messages_attached": len(attached),
        "requests_in_status_view": len(viewed),
        "status_view_counts": dict(sorted(counts.items())),
    }
    verdict.zero("unknown chunks that could not be reconciled", problems)
    verdict.zero("reconciled messages off script (correlation, status, status view)", wrong)


def batch_get(
    dynamodb: DynamoDBClient, table: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Items by (PK, SK), 100 keys per BatchGetItem (moto answers those by key, not by sorting)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 100):
        request: Any = {
            table: {
                "Keys": [{"PK": {"S": pk}, "SK": {"S": sk}} for pk, sk in unique[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        for _ in range(10):
            response = dynamodb.batch_get_item(RequestItems=request)
            for wire in response["Responses"].get(table, []):
                item = {k: _plain(_deserializer.deserialize(v)) for k, v in wire.items()}
                found[(str(item["PK"]), str(item["SK"]))] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise RuntimeError("BatchGetItem left keys unprocessed")
    return found
