"""The client side of a chaos run: submits like a real integration would, and breaks DynamoDB meanwhile.

- API: POST /batches, repeated with the SAME body (same requestId) on 503, 409, 429, 5xx and
  connection errors, after Retry-After (capped); a 202 (some chunk's outcome unknown) is asked once
  more to confirm that the repeat changes nothing. Two client threads, as two integrations would.
- SQS: every queue request enqueued up front (SendMessageBatch); the stack's poller retries failures;
  anything dead-lettered is redriven by the operator's function (the CLI's redrive_queue).
- Storage outages: every matching DynamoDB write fails for OUTAGE_SECONDS, now and then.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from ocelot_sms_cli.redrive import redrive_queue
from tools.chaos.profile import Plan, PlannedRequest
from tools.local.client import StackClient

API_THREADS = 2
RETRY_ON = frozenset({409, 429, 500, 502, 503, 504})
MAX_CLIENT_WAIT = 2.0  # seconds, whatever Retry-After says
HTTP_TIMEOUT = 180.0  # the Sender runs one invocation at a time: a request may wait behind the queue's


class ChaosRunError(RuntimeError):
    """The run could not finish (not a failed check: those are reported, not raised)."""


@dataclass(slots=True)
class ApiOutcome:
    request_id: str
    answers: list[int] = field(default_factory=list)  # HTTP status of every POST (0: no answer)
    final: dict[str, Any] | None = None  # the body of the final answer
    confirmed_same: bool | None = None  # 202: the repeat answered the same chunks and messages
    error: str | None = None

    @property
    def final_status(self) -> int | None:
        return self.answers[-1] if self.answers else None


def _comparable(body: dict[str, Any]) -> Any:
    return {key: body.get(key) for key in ("status", "batchIds", "chunks", "messages")}


class Driver:
    def __init__(self, client: StackClient, plan: Plan, log: Callable[[str], None], deadline: float) -> None:
        if client.info.api_url is None:
            raise ChaosRunError("the stack does not serve the API")
        self.client = client
        self.info = client.info
        self.plan = plan
        self.log = log
        self.deadline = deadline
        self.stats: Counter[str] = Counter()
        self.api: dict[str, ApiOutcome] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def sandbox_pending(self) -> int:
        return int(self.client.control(f"{self.info.sandbox_url}/_sandbox/health")["pending"])

    # ---- the API --------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, request: PlannedRequest, outcome: ApiOutcome) -> requests.Response | None:
        try:
            response = self._session().post(
                f"{self.info.api_url}/batches",
                data=json.dumps(request.body()),
                headers={"Content-Type": "application/json"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as error:
            outcome.answers.append(0)
            self._count(f"api_no_answer:{type(error).__name__}")
            return None
        outcome.answers.append(response.status_code)
        return response

    def submit_api(self, request: PlannedRequest) -> ApiOutcome:
        outcome = ApiOutcome(request.request_id)
        while True:
            response = self._post(request, outcome)
            if response is not None and response.status_code in (201, 202):
                outcome.final = response.json()
                if response.status_code == 202:
                    # "Accepted, outcome not final": ask again (same requestId) as a client polling
                    # for the result would. Nothing may be sent again; the answer must not change.
                    again = self._post(request, outcome)
                    if again is not None and again.status_code == 202:
                        outcome.confirmed_same = _comparable(again.json()) == _comparable(outcome.final)
                    else:
                        outcome.confirmed_same = False
                break
            if response is not None and response.status_code not in RETRY_ON:
                outcome.error = f"{response.status_code}: {response.text[:300]}"
                break
            if time.monotonic() >= self.deadline:
                outcome.error = f"no final answer before the deadline (answers {outcome.answers})"
                break
            wait = 0.5
            if response is not None:
                try:
                    wait = float(response.headers.get("Retry-After", "1"))
                except ValueError:
                    wait = 1.0
            self._count("api_retries")
            time.sleep(min(max(wait, 0.1), MAX_CLIENT_WAIT))
        with self._lock:
            self.api[request.request_id] = outcome
        return outcome

    def submit_all_api(self, requests_: Sequence[PlannedRequest]) -> None:
        with ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="chaos-api") as pool:
            for _ in pool.map(self.submit_api, requests_):
                pass

    # ---- the queue ------------------------------------------------------------------------------

    def enqueue(self, requests_: Sequence[PlannedRequest]) -> None:
        for start in range(0, len(requests_), 10):
            group = requests_[start : start + 10]
            self.client.enqueue_many([r.body() for r in group])
            self._count("sqs_enqueued", len(group))

    def drain_queue(self, progress: Callable[[], None]) -> None:
        """Until the queue and its DLQ are empty; dead letters are redriven (what an operator does)."""
        quiet = 0
        while quiet < 2:
            if time.monotonic() >= self.deadline:
                raise ChaosRunError(
                    f"the send queue did not drain (depth {self.client.queue_depth(self.info.queue_url)})"
                )
            progress()
            if self.client.queue_depth(self.info.queue_url) != (0, 0):
                quiet = 0
                time.sleep(0.5)
                continue
            if self.client.queue_depth(self.info.dlq_url) != (0, 0):
                moved = redrive_queue(self.client.sqs, self.info.dlq_url, self.info.queue_url)
                self._count("sqs_redriven_from_dlq", moved)
                self.log(f"redrove {moved} dead-lettered queue message(s) (the CLI's redrive_queue)")
                quiet = 0
                continue
            quiet += 1
            time.sleep(0.3)

    def _count(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.stats[name] += value


class Outages:
    """Starts a storage outage (every matching DynamoDB write fails) every `every` seconds."""

    def __init__(self, driver: Driver, seconds: float, every: float, first_after: float) -> None:
        self._driver = driver
        self._seconds = seconds
        self._every = every
        self._first_after = first_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-outages", daemon=True)
        self.started = 0
        self.error: str | None = None

    def start(self) -> Outages:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        wait = self._first_after
        while not self._stop.wait(wait):
            try:
                self._driver.client.storage_faults(outage_seconds=self._seconds)
            except (requests.RequestException, ChaosRunError) as error:
                self.error = f"{type(error).__name__}: {error}"
                return
            self.started += 1
            wait = self._every
