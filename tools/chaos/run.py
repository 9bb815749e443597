"""One chaos run end to end: its own local stack, the chaos, the client, the checks, the report."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.config import Config

from tools.chaos.driver import ChaosRunError, Driver, Outages
from tools.chaos.profile import (
    FIRST_OUTAGE_AFTER_SECONDS,
    OUTAGE_EVERY_SECONDS,
    OUTAGE_SECONDS,
    SANDBOX_CHAOS,
    SENDER_ATTEMPTS,
    STORAGE_FAULTS,
    WEBHOOK_FAULTS,
    Plan,
    plan,
    profile_json,
    stack_args,
)
from tools.chaos.verify import ATTRIBUTES, Verdict, reconcile_and_check, snapshot, verify
from tools.local.aws import client as aws_client
from tools.local.client import StackClient, WaitTimeout
from tools.local.stack import LOG_FILE, PID_FILE, StackProcess, StackStartError, is_stack_process, read_pid
from tools.template_resources import ROOT

DEFAULT_OUT = ROOT / "bench" / "chaos-last.json"
APPLIER_DEAD_LETTER_QUEUE = "ApplierDeadLetterQueue"
# The replay's writes run 16 at a time (the applier's own concurrency): one connection each.
REPLAY_CLIENT = Config(max_pool_connections=16, retries={"mode": "standard", "max_attempts": 4})
CI_MESSAGES = 2000
PROGRESS_EVERY = 5.0


@dataclass(slots=True)
class ChaosResult:
    messages: int
    seed: int
    verdict: Verdict | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)  # the operator's replay, if one was needed

    @property
    def passed(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.passed

    def failures(self) -> list[str]:
        problems = [f"error: {self.error}"] if self.error else []
        if self.verdict is not None:
            problems += [
                f"{c.name}: {c.value} (expected {c.expected}) e.g. {self.verdict.examples.get(c.name, [])}"
                for c in self.verdict.checks
                if not c.ok
            ]
        return problems


class _Progress:
    def __init__(self, driver: Driver, started: float, api_total: int, log: Callable[[str], None]) -> None:
        self._driver = driver
        self._started = started
        self._api_total = api_total
        self._log = log
        self._last = 0.0
        self.outages: Outages | None = None

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY:
            return
        self._last = now
        driver = self._driver
        visible, hidden = driver.client.queue_depth(driver.info.queue_url)
        counts = driver.client.storage_faults()["counts"]
        pollers: list[dict[str, Any]] = driver.client.invocations()["pollers"]
        stream = next((p for p in pollers if p.get("function") == "ApplierFunction"), {})
        self._log(
            f"  [{now - self._started:6.1f}s] API requests answered {len(driver.api)}/{self._api_total}"
            f" | queue {visible} waiting, {hidden} in flight | callbacks pending {driver.sandbox_pending()}"
            f" | deliveries applied {stream.get('records_done', 0)} (retried {stream.get('retries', 0)})"
            f" | writes failed {counts.get('failed', 0)}"
            f" | outages {self.outages.started if self.outages else 0}"
        )


def _wait_idle(driver: Driver, deadline: float, progress: _Progress) -> None:
    quiet = 0
    while quiet < 3:
        if time.monotonic() >= deadline:
            raise ChaosRunError(f"the sandbox still had {driver.sandbox_pending()} callback(s) to deliver")
        progress()
        quiet = quiet + 1 if driver.sandbox_pending() == 0 else 0
        time.sleep(0.3)


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except OSError:
            return ""
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


@dataclass(slots=True)
class _Run:
    """One run's moving parts, for its phases."""

    plan: Plan
    result: ChaosResult
    log: Callable[[str], None]
    deadline: float
    storage_scope: str
    mark: float = field(default_factory=time.monotonic)
    client: StackClient | None = None
    outages: Outages | None = None

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.result.timings[name] = round(now - self.mark, 2)
        self.mark = now


def _start(run: _Run, stack: StackProcess, state_dir: Path) -> tuple[Driver, _Progress, Outages]:
    """The stack, the chaos on it, the client."""
    running = read_pid(state_dir / PID_FILE)
    if running and is_stack_process(running):
        raise ChaosRunError(f"a stack already runs from {state_dir} (pid {running}): another chaos run?")
    (state_dir / LOG_FILE).unlink(missing_ok=True)  # this run's log only
    info = stack.start(timeout=90)
    run.lap("stack_start_seconds")
    if info.function_env.get("MAX_SEND_ATTEMPTS") != str(SENDER_ATTEMPTS):
        raise ChaosRunError(f"the stack's MAX_SEND_ATTEMPTS is not {SENDER_ATTEMPTS}")
    client = run.client = StackClient(info, http_timeout=30)
    driver = Driver(client, run.plan, run.log, run.deadline)
    seed = run.result.seed
    client.sandbox_config(**SANDBOX_CHAOS, seed=seed, fail_recipients=run.plan.forced_failures())
    client.webhook_faults(reset=True, **WEBHOOK_FAULTS)
    client.storage_faults(reset=True, **{**STORAGE_FAULTS, "seed": seed, "scope": run.storage_scope})
    progress = _Progress(driver, time.monotonic(), len(run.plan.route("api")), run.log)
    outages = run.outages = progress.outages = Outages(
        driver, OUTAGE_SECONDS, OUTAGE_EVERY_SECONDS, FIRST_OUTAGE_AFTER_SECONDS
    ).start()
    return driver, progress, outages


def _submit(run: _Run, driver: Driver, progress: _Progress) -> None:
    """The queue's share at once, the API's through two client threads meanwhile."""
    run.log("submitting (API with client retries, SQS with the poller's retries) ...")
    driver.enqueue(run.plan.route("sqs"))
    api = threading.Thread(
        target=driver.submit_all_api, args=(run.plan.route("api"),), name="chaos-api", daemon=True
    )
    api.start()
    while api.is_alive():
        progress()
        api.join(0.5)
        if time.monotonic() >= run.deadline:
            raise ChaosRunError("the API requests did not finish before the deadline")
    driver.drain_queue(progress)
    run.lap("submit_seconds")


def _drain(run: _Run, driver: Driver, progress: _Progress, outages: Outages) -> dict[str, Any]:
    """Every callback delivered (retries included), the faults off, once more idle; then every stored
    delivery applied from the stream. Returns the storage faults' final status."""
    client = driver.client
    run.log("waiting for the sandbox to deliver every callback ...")
    _wait_idle(driver, run.deadline, progress)
    outages.stop()
    client.webhook_faults(reset=True)
    storage = client.storage_faults(rate=0.0)
    while storage["outage_active"]:
        time.sleep(0.2)
        storage = client.storage_faults()
    _wait_idle(driver, run.deadline, progress)
    progress(force=True)
    run.lap("callbacks_drain_seconds")
    run.log("waiting for the applier to apply every stored delivery ...")
    client.settle_streams(max(10.0, run.deadline - time.monotonic()))
    run.lap("apply_drain_seconds")
    run.result.recovery = replay_given_up(client, run.log)
    run.lap("replay_seconds")
    return storage


def replay_given_up(client: StackClient, log: Callable[[str], None]) -> dict[str, Any]:
    """The operator's part when the applier's on-failure queue is not empty (its alarm): replay the
    raw deliveries received since the first batch given up, with the layer's own replay (what
    `ocelot-sms replay --since` runs). The queue's messages are left there, as figures."""
    from ocelot_sms.applier import ApplierService, replay_deliveries
    from ocelot_sms.observability import logger, metrics
    from ocelot_sms.settings import Settings
    from ocelot_sms.store import DynamoStore

    documents = [json.loads(m["Body"]) for m in client.queue_messages(APPLIER_DEAD_LETTER_QUEUE)]
    if not documents:
        return {"on_failure_messages": 0}
    first = min(d["DDBStreamBatchInfo"]["approximateArrivalOfFirstRecord"] for d in documents)
    since = datetime.fromisoformat(first) - timedelta(seconds=1)
    env = client.info.function_env
    settings = Settings.from_env(env)
    dynamodb = aws_client("dynamodb", client.info.aws_endpoint_url, client.info.region, REPLAY_CLIENT)
    store = DynamoStore(dynamodb, settings.table_name, settings.data_retention_days)
    # As in the functions: the template's metrics namespace (the layer flushes every 100 values), and
    # its logs at WARNING here (one line per delivery otherwise).
    metrics.namespace = metrics.namespace or env.get("POWERTOOLS_METRICS_NAMESPACE")
    level = logger.log_level
    logger.setLevel("WARNING")
    try:
        report = replay_deliveries(store, ApplierService(settings, store), since, datetime.now(UTC))
    finally:
        logger.setLevel(level)
        dynamodb.close()
    given_up = sum(d["DDBStreamBatchInfo"]["batchSize"] for d in documents)
    log(
        f"the applier gave up on {given_up} record(s) ({len(documents)} on-failure message(s)): "
        f"replayed {report.deliveries} deliveries since {since:%X}, {report.new} events new"
    )
    return {
        "on_failure_messages": len(documents),
        "records_given_up": given_up,
        "replayed_since": since.isoformat(),
        **{k: v for k, v in report.to_json().items() if isinstance(v, int)},
    }


def _check(run: _Run, driver: Driver, outages: Outages, storage: dict[str, Any]) -> None:
    """The sandbox's record against the whole table, then reconcile what is unknown."""
    client, info = driver.client, driver.client.info
    run.log("checking the sandbox's record against the messages table ...")
    record = client.control(f"{info.sandbox_url}/_sandbox/record", timeout=300)
    webhook_faults = client.control(f"{info.control_url}/_local/faults")
    pollers = client.invocations().get("pollers", [])
    run.lap("record_seconds")
    table_name = info.tables["messages"]
    table = snapshot(client.table_items(table_name, ATTRIBUTES))
    run.lap("read_table_seconds")
    verdict = verify(run.plan, record, table, driver.api, storage, webhook_faults, outages.started, pollers)
    verdict.figures["operator_replay"] = run.result.recovery
    verdict.figures["client"].update(dict(sorted(driver.stats.items())))
    verdict.figures["table_items"] = table.items
    run.result.verdict = verdict
    reconcile_and_check(run.plan, record, table, client.dynamodb, table_name, verdict)
    run.lap("reconcile_seconds")


def run_chaos(
    messages: int,
    seed: int,
    state_dir: Path,
    out: Path | None = DEFAULT_OUT,
    log: Callable[[str], None] = print,
    timeout: float = 1800.0,
    storage_scope: str = "callbacks",
) -> ChaosResult:
    """Run, check, print, write `out` (unless None). Never raises for a failed check or a stuck run:
    the result says what happened. The stack is stopped in every case."""
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    result = ChaosResult(messages=messages, seed=seed)
    the_plan = plan(messages, seed, uuid.uuid4().hex[:8])
    log(
        f"chaos run {the_plan.run_id}: {the_plan.messages} messages in {len(the_plan.requests)} requests "
        f"({len(the_plan.route('api'))} by API, {len(the_plan.route('sqs'))} by SQS), seed {seed}"
    )
    stack = StackProcess(state_dir, stack_args(seed))
    run = _Run(the_plan, result, log, started + timeout, storage_scope, started)
    try:
        driver, progress, outages = _start(run, stack, state_dir)
        _submit(run, driver, progress)
        storage = _drain(run, driver, progress, outages)
        _check(run, driver, outages, storage)
    except (ChaosRunError, StackStartError, OSError, WaitTimeout) as error:
        result.error = f"{type(error).__name__}: {error}"
    except Exception as error:  # a bug in the run itself: reported with its traceback, stack stopped
        result.error = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    finally:
        _stop(run, stack)
    result.timings["total_seconds"] = round(time.monotonic() - started, 2)
    result.report = _report(result, the_plan.run_id, started_at)
    result.report["profile"]["storage_faults"]["scope"] = storage_scope
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.report, indent=2, sort_keys=False) + "\n")
    for line in format_report(result):
        log(line)
    if out is not None:
        log(f"written: {out}")
    return result


def _stop(run: _Run, stack: StackProcess) -> None:
    if run.outages is not None:
        run.outages.stop()
    if run.client is not None:
        run.client.close()
    code = stack.stop()
    result = run.result
    if result.error and stack.process is not None:
        result.error += f"\nstack log ({stack.log_path}):\n{stack.log_tail(30)}"
    if code not in (0, None):
        result.error = (result.error or "") + f"\nthe stack exited with {code}"


def _report(result: ChaosResult, run_id: str, started_at: str) -> dict[str, Any]:
    verdict = result.verdict
    timings = result.timings
    figures = verdict.figures if verdict else {}
    submit = timings.get("submit_seconds") or 0
    events = figures.get("events", {}).get("stored_distinct", 0)
    busy = submit + (timings.get("callbacks_drain_seconds") or 0)
    return {
        "passed": result.passed,
        "error": result.error,
        "run": {
            "id": run_id,
            "started_at": started_at,
            "messages": result.messages,
            "seed": result.seed,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **_git(),
        },
        "timings": timings,
        "throughput": {
            "messages_per_second_submitted": round(result.messages / submit, 1) if submit else None,
            "events_stored_per_second": round(events / busy, 1) if busy else None,
        },
        "checks": [c.to_json() for c in verdict.checks] if verdict else [],
        "failed_examples": verdict.examples if verdict else {},
        "figures": figures,
        "profile": profile_json(),
    }


def format_report(result: ChaosResult) -> list[str]:
    lines = [""]
    verdict = result.verdict
    if verdict is not None:
        width = max(len(c.name) for c in verdict.checks)
        lines.append(f"  {'check':<{width}}  {'value':>10}  {'expected':<10}  ok")
        lines.append("  " + "-" * (width + 28))
        for check in verdict.checks:
            mark = "ok" if check.ok else "FAIL"
            lines.append(f"  {check.name:<{width}}  {check.value!s:>10}  {check.expected:<10}  {mark}")
        lines.append("")
        for section, values in verdict.figures.items():
            if isinstance(values, dict):
                shown = ", ".join(f"{k}={v}" for k, v in values.items())
                lines.append(f"  {section}: {shown}")
            else:
                lines.append(f"  {section}: {values}")
    timings = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}s" for k, v in result.timings.items())
    lines.append(f"  timings: {timings}")
    if result.error:
        lines.append(f"ERROR: {result.error}")
    verdict_line = "PASS" if result.passed else "FAIL"
    lines.append(f"{verdict_line}: chaos run of {result.messages} messages, seed {result.seed}")
    return lines
