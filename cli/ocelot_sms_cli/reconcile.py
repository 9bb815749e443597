"""Candidate matches for a chunk whose outcome is unknown: the stored callbacks that name one of its
recipients and a message id no message has yet, grouped by Ocelot's batch id. If Ocelot did take the
chunk, its callbacks arrived all the same; their ids are what `reconcile attach` needs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ocelot_sms.clock import from_iso
from ocelot_sms.contract import CallbackError, SendRequest, read_callback
from ocelot_sms.store import ChunkRecord, Store

# Callbacks are looked for from the day the chunk was sent to this many days after (and today).
SEARCH_DAYS = 3


@dataclass(frozen=True)
class Candidate:
    """Ocelot's batch and, in the chunk's order, the message id found for each recipient (None: no
    callback names that recipient in this batch)."""

    batch_id: str
    message_ids: tuple[str | None, ...]
    recipients: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return all(self.message_ids)

    @property
    def matched(self) -> int:
        return sum(1 for m in self.message_ids if m)


def days_to_search(chunk: ChunkRecord, today: date) -> list[str]:
    sent = from_iso(chunk.updated_at).date() if chunk.updated_at else today - timedelta(days=SEARCH_DAYS)
    last = min(today, sent + timedelta(days=SEARCH_DAYS))
    return [(sent + timedelta(days=n)).isoformat() for n in range((last - sent).days + 1)]


def candidates(store: Store, chunk: ChunkRecord, now: datetime) -> list[Candidate]:
    """Every Ocelot batch with callbacks for the chunk's recipients whose message ids are not attached
    to any message yet, the best match first."""
    wire = SendRequest.model_validate(chunk.payload)
    recipients = tuple(m.to for m in wire.messages)
    wanted = set(recipients)
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for day in days_to_search(chunk, now.date()):
        for raw in store.raw_deliveries(day):
            try:
                events = read_callback(raw.body).events
            except CallbackError:
                continue
            for event in events:
                if event.message_id and event.batch_id and event.to in wanted:
                    found[event.batch_id][event.to].add(event.message_id)
    offers = []
    for batch_id, by_recipient in found.items():
        free = {
            to: sorted(m for m in ids if store.get_message(m).meta is None)
            for to, ids in by_recipient.items()
        }
        offers.append(Candidate(batch_id, _in_order(recipients, free), recipients))
    return sorted((o for o in offers if o.matched), key=lambda o: (-o.matched, o.batch_id))


def _in_order(recipients: tuple[str, ...], free: dict[str, list[str]]) -> tuple[str | None, ...]:
    """An id per recipient in the chunk's order; a recipient listed twice takes the ids in turn."""
    taken: dict[str, int] = defaultdict(int)
    ids: list[str | None] = []
    for to in recipients:
        available = free.get(to, [])
        ids.append(available[taken[to]] if taken[to] < len(available) else None)
        taken[to] += 1
    return tuple(ids)
