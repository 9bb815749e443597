"""POST /batches at a slow Ocelot: the API answers within its budget, hands the rest to the send queue,
and the queue's Sender sends it, every chunk once.

A stack of its own (the package's stack keeps the default API budget): the Sender's API budget is 4 s
(`API_BUDGET_SECONDS`), an attempt may take 3 s (the local stack's 1 s to connect, 2 s to answer),
so chunks start within the first second; the sandbox answers each send after 0.8 s (its latency
knob), four chunks at a time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.support import STACK_ARGS, batch, recipients
from tools.local.client import StackClient, wait_for
from tools.local.stack import StackProcess

API_BUDGET_S, OCELOT_S = 4.0, 0.8
CHUNK = 5  # the local stack's OcelotMaxMessages


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClient]:
    process = StackProcess(
        Path(tmp_path_factory.mktemp("paced")), [*STACK_ARGS, "--env", f"API_BUDGET_SECONDS={API_BUDGET_S:g}"]
    )
    try:
        info = process.start(timeout=60)
        with StackClient(info) as client:
            client.sandbox_config(slow_rate=1.0, slow_seconds=OCELOT_S)
            yield client
    finally:
        process.stop()


def test_what_the_api_cannot_start_in_time_is_pending_then_sent_from_the_queue(paced: StackClient) -> None:
    # Given 12 chunks of 5, and an Ocelot that takes 0.8 s each
    to = recipients(*(f"{n:04d}" for n in range(10, 70)))
    body = batch("paced", to)

    # When posted
    started = time.monotonic()
    response = paced.post_batch(body)
    elapsed = time.monotonic() - started

    # Then 202 within the API budget: the first chunks accepted, the others pending on the queue
    assert response.status_code == 202, response.text
    assert elapsed < API_BUDGET_S + 2.0
    answer = response.json()
    assert answer["status"] == "pending"
    states = [c["status"] for c in answer["chunks"]]
    accepted, pending = states.count("accepted"), states.count("pending")
    assert (accepted + pending, accepted > 0, pending > 0) == (12, True, True)
    assert states == ["accepted"] * accepted + ["pending"] * pending
    assert answer["statusUrl"].endswith(f"/batches/{body['requestId']}")
    assert response.headers["Location"] == answer["statusUrl"]
    assert len(answer["messages"]) == accepted * CHUNK

    # And the queue's Sender sends the rest: every message once, with the ids the sandbox handed out
    sent = wait_for(lambda: paced.settled(body["requestId"], 60), 60, "the queue's Sender to send the rest")
    assert [m.ref for m in sent] == [m["ref"] for m in body["messages"]]
    sends = Counter(
        tuple(r["recipients"]) for r in paced.sandbox_record()["requests"] if r.get("status") == 201
    )
    chunks = [tuple(to[i : i + CHUNK]) for i in range(0, 60, CHUNK)]
    assert [sends[c] for c in chunks] == [1] * 12
    answered = {m["ref"]: m["messageId"] for m in answer["messages"]}
    assert {m.ref: m.message_id for m in sent if m.ref in answered} == answered


def test_the_same_request_again_answers_what_is_known_and_sends_nothing_twice(paced: StackClient) -> None:
    # Given a request the API half sent and the queue finished
    to = recipients(*(f"{n:04d}" for n in range(10, 70)))
    body = batch("paced-again", to)
    assert paced.post_batch(body).status_code == 202
    wait_for(lambda: paced.settled(body["requestId"], 60), 60, "the queue's Sender to send the rest")

    # When the caller sends the same request again
    again = paced.post_batch(body)

    # Then every chunk is accepted, with no new send to Ocelot
    assert again.status_code == 201, again.text
    assert [c["status"] for c in again.json()["chunks"]] == ["accepted"] * 12
    sends = Counter(
        tuple(r["recipients"]) for r in paced.sandbox_record()["requests"] if r.get("status") == 201
    )
    assert [sends[tuple(to[i : i + CHUNK])] for i in range(0, 60, CHUNK)] == [1] * 12
