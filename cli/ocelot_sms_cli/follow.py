"""`--wait`: follow a send until every message is final (or a timeout), with a live view of where its
messages are. Statuses come from callbacks the applier applies a moment after the webhook stored
them, so the view polls the status API rather than expecting them at once."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from time import monotonic, sleep
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ocelot_sms_cli.api import Api, NotFoundError, quoted
from ocelot_sms_cli.views import FINAL, IN_FLIGHT, NO_OUTCOME, NOT_DELIVERED, number

# Seconds between polls: a send of many messages is polled less often (each poll counts them all).
MIN_INTERVAL = 1.0
MAX_INTERVAL = 15.0


@dataclass(frozen=True)
class Followed:
    view: dict[str, Any] | None  # the last answer (None: the send never appeared)
    finished: bool  # every part recorded and every message final
    waited: float


def is_finished(view: Mapping[str, Any]) -> bool:
    counts: Mapping[str, int] = view["counts"]
    return view["partsRecorded"] == view["partCount"] and all(s in FINAL for s, n in counts.items() if n)


def progress_line(view: Mapping[str, Any] | None, waited: float) -> str:
    if view is None:
        return f"waiting for the Sender to take the first part · {waited:.0f}s"
    counts: Mapping[str, int] = view["counts"]
    total = sum(counts.values())
    final = sum(n for s, n in counts.items() if s in FINAL)

    def of(statuses: frozenset[str]) -> str:
        return number(sum(counts.get(s, 0) for s in statuses))

    parts = f"parts {view['partsRecorded']}/{view['partCount']} · " if view["partCount"] > 1 else ""
    later = f"scheduled {number(counts['scheduled'])} · " if counts.get("scheduled") else ""
    return (
        f"{view['sendId']}: {parts}final {number(final)}/{number(total)} · {later}accepted {of(IN_FLIGHT)} · "
        f"delivered {of(frozenset({'delivered'}))} · failed {of(NOT_DELIVERED)} · unknown {of(NO_OUTCOME)} "
        f"· {waited:.0f}s"
    )


def follow(
    api: Api,
    send_id: str,
    timeout: float,
    out: Console,
) -> Followed:
    """Poll the send until it is finished or `timeout` seconds have passed, showing its progress: live
    on a terminal, a line per change when piped."""
    started = monotonic()
    view: dict[str, Any] | None = None
    last_line = ""
    live = (
        Live(Text(f"{send_id}: reading its status"), console=out, auto_refresh=False)
        if out.is_terminal
        else None
    )
    with live or nullcontext():
        while True:
            try:
                view = api.get(f"/sends/{quoted(send_id)}", {"limit": 0})
            except NotFoundError:
                view = None  # queued parts the Sender has not taken yet
            waited = monotonic() - started
            line = progress_line(view, waited)
            if live is not None:
                live.update(Text(line), refresh=True)
            elif line.split(" · ")[:-1] != last_line.split(" · ")[:-1]:
                out.print(line)
            last_line = line
            finished = view is not None and is_finished(view)
            if finished or waited >= timeout:
                return Followed(view, finished, waited)
            messages = view["messageCount"] if view else 0
            sleep(min(MAX_INTERVAL, max(MIN_INTERVAL, messages / 1000), max(0.0, timeout - waited)))
