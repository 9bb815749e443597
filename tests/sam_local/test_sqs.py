"""The SQS trigger under `sam local invoke`: partial batch failures, exactly as Lambda reads them.

The Sender reports ReportBatchItemFailures: a record whose send can succeed later is listed in
`batchItemFailures` (SQS delivers it again), a record that can never succeed is stored as
REJECTED#<messageId> and NOT listed (it would only cycle to the dead-letter queue), and a record
that went through is not listed either.
"""

from __future__ import annotations

from typing import Any

import pytest

from ocelot_sms.settings import Settings
from tests.sam_local import checks, harness
from tests.sam_local.conftest import LocalAws

pytestmark = pytest.mark.sam_local

SEND_FUNCTION = "SenderFunction"
# Settings' default: MAX_SEND_ATTEMPTS is not a template variable, so sam local cannot change it.
ATTEMPTS = Settings(table_name="unused").max_send_attempts


def failures(*message_ids: str) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": m} for m in message_ids]}


def chunk_status(aws: LocalAws, request_id: str) -> str | None:
    item = aws.item(f"REQ#{request_id}", "CHUNK#00000")
    return None if item is None else str(item.get("status"))


def test_a_record_ocelot_refuses_for_now_is_retried_and_invalid_ones_are_rejected(
    sam: harness.SamLocal, aws: LocalAws
) -> None:
    """Given Ocelot answers 503 to any request for +15551230001 (in the only valid record),
    When events/sqs_batch_with_bad_record.json (valid, not JSON, invalid number) is invoked,
    Then exactly the valid record is reported failed, and the two bad ones are rejected, not failed."""
    aws.client.sandbox_config(fail_recipients={"+15551230001": {"status": 503}})

    invocation = sam.invoke(
        SEND_FUNCTION, harness.EVENTS_DIR / "sqs_batch_with_bad_record.json", aws.variables
    )

    assert invocation.payload == failures("sqs-msg-0101"), invocation.log_tail()
    assert checks.runs_from_build(invocation) == []
    assert chunk_status(aws, "demo-sqs-0101") == "not_sent"
    rejected = {item["sourceId"] for item in aws.scan() if item.get("type") == "rejected"}
    assert rejected == {"sqs-msg-0102", "sqs-msg-0103"}
    record = aws.client.sandbox_record()
    assert record["accepted"] == []
    # 503 is "certainly not taken": retried in the invocation, then left to SQS.
    assert [r["fault"] for r in record["requests"]] == ["fail_recipients:503"] * ATTEMPTS


def test_only_the_failing_record_is_retried_and_its_redelivery_sends_nothing_twice(
    sam: harness.SamLocal, aws: LocalAws
) -> None:
    """Given Ocelot answers 503 for +15551230003 (the second record of events/sqs_batch.json),
    When the batch is invoked, and again (SQS redelivers it) once Ocelot answers normally,
    Then the first invocation reports only sqs-msg-0002, and the second reports nothing and
    sends only that record's chunk: the first record's chunk is not sent again."""
    event = harness.EVENTS_DIR / "sqs_batch.json"
    aws.client.sandbox_config(fail_recipients={"+15551230003": {"status": 503}})

    first = sam.invoke(SEND_FUNCTION, event, aws.variables)

    assert first.payload == failures("sqs-msg-0002"), first.log_tail()
    assert (chunk_status(aws, "demo-sqs-0001"), chunk_status(aws, "demo-sqs-0002")) == (
        "accepted",
        "not_sent",
    )
    first_record = aws.client.sandbox_record()
    assert [[m["to"] for m in a["messages"]] for a in first_record["accepted"]] == [
        ["+15551230001", "+15551230002", "+15551230010"]
    ]

    # When SQS delivers the whole batch again, Ocelot now answering
    aws.client.sandbox_reset(config=True, record=True)
    second = sam.invoke(SEND_FUNCTION, event, aws.variables)

    assert second.payload == failures(), second.log_tail()
    assert chunk_status(aws, "demo-sqs-0002") == "accepted"
    second_record = aws.client.sandbox_record()
    assert [[m["to"] for m in a["messages"]] for a in second_record["accepted"]] == [["+15551230003"]]


def test_ocelot_unreachable_fails_the_whole_batch(sam: harness.SamLocal, aws: LocalAws) -> None:
    """Given OCELOT_BASE_URL is a closed port on 127.0.0.1 (nothing listens; no connection is made),
    When events/sqs_batch.json is invoked,
    Then every record failed, so the invocation itself fails (Powertools raises BatchProcessingError
    rather than list every record; SQS retries the whole batch either way), and no chunk counts as sent."""
    variables = {**aws.variables, "OCELOT_BASE_URL": f"http://{harness.LOOPBACK}:{harness.free_port()}"}

    invocation = sam.invoke(SEND_FUNCTION, harness.EVENTS_DIR / "sqs_batch.json", variables)

    payload = invocation.payload
    assert payload.get("errorType") == "BatchProcessingError", invocation.log_tail()
    assert payload["errorMessage"].startswith("All records failed processing. 2 individual errors")
    assert (chunk_status(aws, "demo-sqs-0001"), chunk_status(aws, "demo-sqs-0002")) == (
        "not_sent",
        "not_sent",
    )
    assert aws.client.sandbox_record()["requests"] == []
