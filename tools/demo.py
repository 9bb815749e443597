"""`make demo`: the whole job on one machine, no AWS account.

Starts a local stack of its own (or uses a running one with --stack-file), turns on some of the
sandbox's chaos, submits one batch through the API and one through the send queue (20 messages that
cover every scripted outcome), shows the callbacks arriving, prints one line per message and exits
0 only if every message ended in the status the sandbox scripted, with no event lost or stored twice.
Then it shows what the stack does beyond sending (tools/demo_beyond.py): a send scheduled a few
seconds ahead, a STOP reply suppressing its number for the next batch, the events published.
Everything is time-bound, and what it started it stops, also on Ctrl-C.

Callbacks are acknowledged by the webhook as soon as they are stored, then applied by the applier from
the table's stream: the progress shows both.

With --sam (`make demo SAM=1`) the stack serves no functions itself (`--functions none`): `sam local
start-api` serves the API and the webhook, `sam local start-lambda` the functions the queue and the
stream feed (the stack's pollers invoke them there), in containers of the Lambda image; the driver
below is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocelot_sms.observability import mask_phone
from tools.demo_beyond import run_beyond
from tools.local import netguard
from tools.local.client import MessageReport, SentMessage, StackClient, WaitTimeout, wait_for
from tools.local.stack import StackInfo, StackProcess, StackStartError, interrupt_on_signals
from tools.sam_local import serve
from tools.template_resources import ROOT

# The sandbox's script: last four digits -> final status (see tools/local/sandbox.py).
SUFFIXES = ("0001", "0002", "0003", "0010", "0011", "0012", "0013", "0014", "0015", "0016")
APPLIER = "ApplierFunction"  # the stream's other reader, the publisher, applies nothing
CHAOS = {
    "rate_429": 0.1,
    "retry_after_seconds": 1,
    "duplicate_rate": 0.3,
    "out_of_order_rate": 0.3,
    "group_rate": 0.6,
    "lost_response_rate": 0.1,
    # Slow enough to watch the statuses move.
    "step_delay_min": 0.3,
    "step_delay_max": 1.2,
}


class Demo:
    def __init__(self, client: StackClient, run_id: str, timeout: float) -> None:
        self.client = client
        self.run_id = run_id
        self.deadline = time.monotonic() + timeout
        self.started = time.monotonic()
        self.applied_before = self.applied()

    def remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def batch(self, kind: str, area_code: str) -> dict[str, Any]:
        return {
            "requestId": f"demo-{kind}-{self.run_id}",
            "messages": [
                {
                    "to": f"+1555{area_code}{suffix}",
                    "text": f"Demo {kind} message {n}: registration closes Friday.",
                    "ref": f"{kind}-{n:02d}",
                }
                for n, suffix in enumerate(SUFFIXES, start=1)
            ],
        }

    def submit_api(self) -> list[SentMessage]:
        body = self.batch("api", "123")
        count, request_id = len(body["messages"]), body["requestId"]
        step(3, f"POST {self.client.info.api_url}/batches: {count} messages, requestId {request_id}")

        def retried(response: Any) -> None:
            error = response.json().get("error")
            note(
                f"{response.status_code} {error}: sending the same request again (same requestId: idempotent)"
            )

        response = self.client.post_batch_until_answered(body, timeout=self.remaining(), on_retry=retried)
        result = response.json()
        batch_ids = ", ".join(result.get("batchIds", []))
        note(f"{response.status_code} {result.get('status')}: Ocelot batches {batch_ids}")
        if response.status_code not in (200, 201, 202):
            raise RuntimeError(f"the API answered {response.status_code}: {result}")
        return wait_for(
            lambda: self.client.settled(body["requestId"], len(body["messages"])),
            self.remaining(),
            "the API batch to be recorded",
        )

    def submit_queue(self) -> list[SentMessage]:
        body = self.batch("sqs", "234")
        step(
            4, f"SQS: one queue message with {len(body['messages'])} messages, requestId {body['requestId']}"
        )
        message_id = self.client.enqueue(body)
        start = time.monotonic()
        note(f"queued as {message_id}; the poller hands it to the Sender")
        sent = wait_for(
            lambda: self.client.settled(body["requestId"], len(body["messages"])),
            self.remaining(),
            "the queued batch to be sent",
        )
        chunks = self.client.chunks(body["requestId"])
        batch_ids = ", ".join(str(c.batch_id) for c in chunks)
        note(f"accepted after {time.monotonic() - start:.1f}s: Ocelot batches {batch_ids}")
        return sent

    def applied(self) -> int:
        """Stream records the applier took (each a stored delivery), over the stack's life so far."""
        pollers = self.client.invocations()["pollers"]
        return sum(int(p.get("records_done", 0)) for p in pollers if p.get("function") == APPLIER)

    def watch_callbacks(self, messages: Sequence[SentMessage]) -> dict[str, Any]:
        step(5, "Ocelot's callbacks: acknowledged by the webhook once stored, then applied from the stream")
        note("(retried, duplicated, out of order, in arrays)")
        ids = [m.message_id for m in messages]
        start = time.monotonic()
        last: tuple[int, ...] | None = None
        last_print = 0.0

        def progress(force: bool = False) -> dict[str, Any]:
            nonlocal last, last_print
            record = self.client.sandbox_record()
            attempts = [a for a in record["callback_attempts"] if set(a["message_ids"]) & set(ids)]
            states = self.client.states(ids)
            final = sum(1 for s in states.values() if s.status in TERMINAL)
            acknowledged = sum(1 for a in attempts if a["status_code"] == 200)
            resent = sum(1 for a in attempts if a["attempt"] > 1)
            applied = self.applied() - self.applied_before
            shown = (len(attempts), acknowledged, resent, applied, final, record["pending"])
            now = time.monotonic()
            if force or (shown != last and now - last_print >= 0.5):
                print(
                    f"      [{now - start:5.1f}s] callbacks sent {len(attempts):3d} (re-sent {resent}) "
                    f"| acknowledged (200) {acknowledged:3d} | applied {applied:3d} "
                    f"| messages final {final:2d}/{len(ids)} | still to deliver {record['pending']}",
                    flush=True,
                )
                last, last_print = shown, now
            return record

        def done() -> dict[str, Any] | None:
            record = progress()
            return record if not record["pending"] and all(i in record["messages"] for i in ids) else None

        record = wait_for(done, self.remaining(), "the callbacks", interval=0.25)
        self.client.settle_streams(self.remaining())
        progress(force=True)
        return record


TERMINAL = {"delivered", "undelivered", "failed", "opted_out"}


def step(number: int, text: str) -> None:
    print(f"\n[{number}/7] {text}", flush=True)


def note(text: str) -> None:
    print(f"      {text}", flush=True)


def print_table(reports: Sequence[MessageReport]) -> None:
    header = (
        f"  {'ref':<7} {'recipient':<12} {'Ocelot message id':<36} {'final':<11} "
        f"{'scripted':<11} {'events':>6} {'dups ignored':>12}  check"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in reports:
        check = "ok" if r.ok else "MISMATCH"
        if r.lost:
            check += f" ({len(r.lost)} event(s) lost)"
        print(
            f"  {r.ref or '':<7} {mask_phone(r.to):<12} {r.message_id:<36} {r.final or '-':<11} "
            f"{r.expected or '-':<11} {r.events:>6} {r.duplicates_ignored:>12}  {check}"
        )


def run(client: StackClient, timeout: float, seed: int) -> bool:
    demo = Demo(client, run_id=uuid.uuid4().hex[:8], timeout=timeout)
    step(2, f"Sandbox chaos (seed {seed}): " + ", ".join(f"{k}={v}" for k, v in CHAOS.items()))
    client.sandbox_config(seed=seed, **CHAOS)
    sent = demo.submit_api() + demo.submit_queue()
    record = demo.watch_callbacks(sent)

    step(6, "Per message: final status in DynamoDB against the sandbox's script")
    reports = client.report(sent, record)
    print_table(reports)
    matched = sum(1 for r in reports if r.ok)
    lost = sum(len(r.lost) for r in reports)
    duplicates = sum(r.duplicates_ignored for r in reports)
    stored = sum(r.events for r in reports)
    attempts = [
        a for a in record["callback_attempts"] if set(a["message_ids"]) & {m.message_id for m in sent}
    ]
    requests_seen = record["requests"]
    acknowledged = sum(1 for a in attempts if a["status_code"] == 200)
    print(
        f"\n  {matched}/{len(reports)} messages ended as scripted | events stored {stored}, lost {lost}, "
        f"duplicates ignored {duplicates} | callback attempts {len(attempts)} "
        f"({sum(1 for a in attempts if a['outcome'] != 'delivered')} failed and retried), "
        f"{acknowledged} acknowledged, {demo.applied() - demo.applied_before} applied | "
        f"send requests {len(requests_seen)} ({sum(1 for r in requests_seen if r['status'] == 429)} got 429)"
    )
    step(7, "Beyond sending: a send scheduled a few seconds ahead, a STOP reply, the events published")
    beyond = run_beyond(client, demo.run_id, demo.remaining)
    return matched == len(reports) and len(reports) == 2 * len(SUFFIXES) and beyond


def provision_sam(workdir: Path) -> serve.Provisioned:
    """Engine, image and a fresh build, as the sam_local tests have them: without an engine, outside
    CI, serve.EngineMissing (the demo says so and fails); in CI one is started."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old_log in workdir.glob("start-*.log"):  # a log per port: only this run's
        old_log.unlink()
    note("sam local: Docker engine, Lambda image and `sam build` ...")
    return serve.provision(workdir, start_missing_engine=serve.in_ci())


def serve_with_sam(
    info: StackInfo, provisioned: serve.Provisioned, workdir: Path, resources: contextlib.ExitStack
) -> StackInfo:
    """The functions of a `--functions none` stack served by sam local; what is started here,
    `resources` stops. Returns the stack's info with start-api as API and webhook."""
    note(f"sam local: starting start-api and start-lambda (image {provisioned.image}, warm containers) ...")
    served = resources.enter_context(serve.serve_stack(info.to_json(), provisioned, workdir))
    consumers = ", ".join(serve.event_source_functions(info.to_json()))
    note(
        f"functions served by sam local: start-api {served.api.url}, start-lambda {served.lambdas.url} "
        f"(the queue's and the stream's pollers -> {consumers}; logs: {served.api.log_path}, "
        f"{served.lambdas.log_path})"
    )
    return replace(info, api_url=served.api.url, webhook_url=served.webhook_url)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("--stack-file", type=Path, help="use this running stack instead of starting one")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".local" / "demo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds for the whole demo (with --sam: from when sam local serves the functions)",
    )
    parser.add_argument(
        "--sam",
        action="store_true",
        help="serve the functions with `sam local start-api` / `start-lambda` (needs a Docker engine)",
    )
    return parser


def _start(
    args: argparse.Namespace, stack: StackProcess | None, started: float, resources: contextlib.ExitStack
) -> StackInfo:
    """The stack the demo runs against: the one named, or `stack` started (and sam local with --sam)."""
    if stack is None:
        step(1, f"Using the running stack described in {args.stack_file}")
        return StackInfo.load(args.stack_file)
    if args.sam:
        step(1, "Starting a local stack (moto, Ocelot sandbox) and sam local serving the functions")
        workdir = args.state_dir.resolve() / "sam"
        provisioned = provision_sam(workdir)  # before anything starts: no engine, no stack
        info = stack.start(timeout=60.0)
        note(f"stack ready in {time.monotonic() - started:.1f}s (log: {stack.log_path})")
        info = serve_with_sam(info, provisioned, workdir, resources)
        note(f"ready in {time.monotonic() - started:.1f}s")
        return info
    step(1, "Starting a local stack: moto (DynamoDB, SQS, Secrets Manager), Ocelot sandbox, API, poller")
    info = stack.start(timeout=min(60.0, args.timeout))
    note(f"ready in {time.monotonic() - started:.1f}s (log: {stack.log_path})")
    return info


def _stop(
    args: argparse.Namespace, stack: StackProcess | None, resources: contextlib.ExitStack, code: int
) -> int:
    """sam local, then the stack; the demo's exit code, an error here included."""
    if stack is None or stack.process is None:  # never started: nothing to stop
        return code
    if args.sam:  # sam local starts only once the stack runs
        print("\nStopping sam local (start-api, start-lambda, their containers) ...", end=" ", flush=True)
        try:
            resources.close()
            print("stopped.")
        except Exception as error:  # the stack is stopped all the same
            print(f"FAILED: {error}")
            code = code or 2
    print("\nStopping the local stack ...", end=" ", flush=True)
    exit_code = stack.stop()
    print(f"stopped (exit code {exit_code}).")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sam and args.stack_file:
        parser.error("--sam starts a stack of its own: it does not take --stack-file")

    started = time.monotonic()
    print("ocelot-sms demo: the whole job on one machine, no AWS account")
    # This process talks to the stack and to sam local, on 127.0.0.1 only.
    netguard.install()

    received = interrupt_on_signals()
    stack = None
    if not args.stack_file:  # with --sam, sam local serves the functions, not the stack
        stack = StackProcess(args.state_dir.resolve(), ["--functions", "none"] if args.sam else ())
    # What SAM mode starts on top of the stack (sam local servers, their containers, the poller).
    resources = contextlib.ExitStack()
    code = 2
    try:
        info = _start(args, stack, started, resources)
        note(f"API {info.api_url} | webhook {info.webhook_url}")
        note(f"sandbox {info.sandbox_url} | AWS {info.aws_endpoint_url}")
        # Starting sam local takes its own (bounded) time: with --sam the timeout is for the demo proper.
        budget_from = time.monotonic() if args.sam else started
        with StackClient(info) as client:
            passed = run(client, max(10.0, args.timeout - (time.monotonic() - budget_from)), args.seed)
        code = 0 if passed else 1
    except serve.EngineMissing as missing:
        print(
            f"\nERROR: `make demo SAM=1` needs a Docker engine, and none answers ({missing}).\n"
            "`make docker-up` starts one; `make demo` serves the functions without one.",
            file=sys.stderr,
        )
    except (WaitTimeout, StackStartError, RuntimeError, OSError) as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        if stack is not None:
            print(f"stack log: {stack.log_path}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 128 + (received[0] if received else signal.SIGINT)
    except Exception:
        traceback.print_exc()
        print("\nERROR: unexpected failure (above)", file=sys.stderr)
        if stack is not None:
            print(f"stack log: {stack.log_path}", file=sys.stderr)
    finally:
        code = _stop(args, stack, resources, code)
    verdict = {
        0: "PASS",
        1: "FAIL: some messages did not end as scripted, or a step beyond sending did not show",
        130: "INTERRUPTED",
        143: "INTERRUPTED",
    }.get(code, "ERROR")
    print(f"{verdict} (wall time {time.monotonic() - started:.1f}s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
