"""POST /batches through the local API front to the real Sender, Ocelot being the sandbox."""

from __future__ import annotations

import time

from tests.integration.support import batch, recipients
from tools.local.client import StackClient, wait_for
from tools.local.stack import StackInfo


def test_api_batch_ends_in_the_scripted_outcomes(client: StackClient, stack: StackInfo) -> None:
    # Seven messages: two Ocelot batches with the local OcelotMaxMessages=5.
    body = batch("api", recipients("0001", "0002", "0003", "0010", "0011", "0012", "0013"))
    response = client.post_batch(body)
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["status"] == "accepted"
    assert len(result["batchIds"]) == 2

    sent = wait_for(lambda: client.settled(body["requestId"], 7), 10, "the batch to be recorded")
    record = client.wait_callbacks_done([m.message_id for m in sent], 30)
    accepted = {chunk["batch_id"]: chunk for chunk in record["accepted"]}
    assert set(result["batchIds"]) <= set(accepted)
    # The ids the API returned are the ones the sandbox handed out, message by message.
    returned = {m["ref"]: m["messageId"] for m in result["messages"]}
    assert returned == {m.ref: m.message_id for m in sent}
    sandbox_ids = {m["externalId"]: m["id"] for b in result["batchIds"] for m in accepted[b]["messages"]}
    assert sandbox_ids == returned

    reports = client.report(sent, record)
    assert [(r.ref, r.final) for r in reports] == [(r.ref, r.expected) for r in reports]
    assert all(r.ok for r in reports), [r for r in reports if not r.ok]
    assert stack.function_env["OCELOT_BASE_URL"] == stack.sandbox_url


def test_invalid_request_is_refused_before_anything_is_sent(client: StackClient) -> None:
    before = len(client.sandbox_record()["requests"])
    response = client.post_batch({"requestId": "bad id!", "messages": [{"to": "555", "text": ""}]})
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"requestId", "messages.0.to", "messages.0.text"} <= fields
    assert client.post_batch("{not json").status_code == 400
    assert len(client.sandbox_record()["requests"]) == before


def test_429_is_retried_by_the_sender_after_retry_after(client: StackClient) -> None:
    to = recipients("0010")
    client.sandbox_config(fail_recipients={to[0]: {"status": 429, "times": 1}})
    body = batch("api429", to)
    started = time.monotonic()
    response = client.post_batch(body)
    assert response.status_code == 201, response.text
    attempts = [r for r in client.sandbox_record()["requests"] if r.get("recipients") == to]
    assert [r["status"] for r in attempts] == [429, 201]
    # It waited for Retry-After (1 s) within the same invocation, and no longer than needed.
    assert 1.0 <= time.monotonic() - started < 10


def test_accepted_then_timeout_is_unknown_and_never_sent_again(client: StackClient) -> None:
    client.sandbox_config(accept_timeout_rate=1.0, accept_timeout_seconds=4.0)
    to = recipients("0010", "0002")
    body = batch("apitimeout", to)
    response = client.post_batch(body)
    # The sender's read timeout (2 s locally) passed: the outcome is unknown, reported as such.
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "unknown"
    assert [c.status.value for c in client.chunks(body["requestId"])] == ["unknown"]

    client.sandbox_config(accept_timeout_rate=0.0)
    again = client.post_batch(body)  # same requestId: the stored outcome, no second send
    assert again.status_code == 202
    assert again.json()["status"] == "unknown"
    record = client.sandbox_record()
    sends = [r for r in record["requests"] if r.get("recipients") == to]
    assert len(sends) == 1
    assert sends[0]["fault"] == "accept_timeout"

    # Ocelot did take it: its callbacks arrive and are kept under Ocelot's message ids.
    chunk = next(c for c in record["accepted"] if [m["to"] for m in c["messages"]] == to)
    ids = [m["id"] for m in chunk["messages"]]
    record = client.wait_callbacks_done(ids, 30)
    states = client.states(ids)
    assert {m: states[m].status for m in ids} == {m: record["outcomes"][m] for m in ids}
