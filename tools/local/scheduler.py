"""EventBridge Scheduler's firing, which moto leaves out: moto keeps the schedules the Sender makes and
never runs them. This runs each one-time schedule of the stack's groups when its time comes.

Four times a second it lists the schedules (moto's own API); one whose `at(...)` has passed in its
time zone and that is ENABLED has its target called as Scheduler would: an SQS target gets the
schedule's Input as a message (the only kind of target the stack's schedules have). Then it is
deleted when its ActionAfterCompletion says DELETE, or kept and never fired again. Not emulated:
the flexible time window, retries of a failed target, cron and rate expressions, start and end dates.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import ClientError

from tools.local.aws import REGION, client

log = logging.getLogger("local.scheduler")

POLL_SECONDS = 0.25
_AT = re.compile(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)")


def due_at(schedule: dict[str, Any]) -> datetime | None:
    """When a one-time schedule is due (UTC); None for any other expression."""
    found = _AT.fullmatch(str(schedule.get("ScheduleExpression", "")))
    if found is None:
        return None
    zone = ZoneInfo(schedule.get("ScheduleExpressionTimezone") or "UTC")
    return datetime.fromisoformat(found.group(1)).replace(tzinfo=zone).astimezone(UTC)


class ScheduleRunner:
    """Fires the due one-time schedules of `groups` in the moto at `endpoint_url`."""

    def __init__(self, endpoint_url: str, groups: Sequence[str], region: str = REGION) -> None:
        self._scheduler = client("scheduler", endpoint_url, region)
        self._sqs = client("sqs", endpoint_url, region)
        self._groups = list(groups)
        self._fired: set[str] = set()  # kept after firing (ActionAfterCompletion NONE): never again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.counts = {"fired": 0, "deleted": 0, "failed": 0}

    def start(self) -> ScheduleRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._scheduler.close()
        self._sqs.close()

    def status(self) -> dict[str, Any]:
        return {"groups": self._groups, **self.counts}

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.fire_due(datetime.now(UTC))
            except Exception:  # moto stopping, or a schedule we cannot read: tried again next time
                log.exception("could not fire the due schedules")

    def fire_due(self, now: datetime) -> int:
        """Fire every schedule due at `now`; returns how many fired."""
        fired = 0
        for group in self._groups:
            for listed in self._scheduler.list_schedules(GroupName=group).get("Schedules", []):
                if listed.get("Arn") in self._fired:
                    continue
                try:
                    schedule = self._scheduler.get_schedule(GroupName=group, Name=listed["Name"])
                except ClientError:  # deleted since it was listed (a cancel)
                    continue
                at = due_at(schedule)
                if at is None or at > now or schedule.get("State", "ENABLED") != "ENABLED":
                    continue
                fired += self._fire(group, schedule)
        return fired

    def _fire(self, group: str, schedule: dict[str, Any]) -> int:
        target = schedule["Target"]
        if ":sqs:" not in target["Arn"]:
            log.warning("schedule %s: target %s is not emulated", schedule["Name"], target["Arn"])
            self.counts["failed"] += 1
            self._fired.add(schedule["Arn"])
            return 0
        queue_url = self._sqs.get_queue_url(QueueName=target["Arn"].rsplit(":", 1)[1])["QueueUrl"]
        self._sqs.send_message(QueueUrl=queue_url, MessageBody=target.get("Input") or "{}")
        self.counts["fired"] += 1
        log.info("schedule %s fired", schedule["Name"])
        if schedule.get("ActionAfterCompletion") == "DELETE":
            try:
                self._scheduler.delete_schedule(GroupName=group, Name=schedule["Name"])
                self.counts["deleted"] += 1
            except ClientError:  # deleted meanwhile (a cancel that came too late)
                pass
        else:
            self._fired.add(schedule["Arn"])
        return 1
