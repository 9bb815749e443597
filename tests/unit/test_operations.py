"""Day-two operations: reconcile unknown chunks, sweep messages that never finished, replay raw
callbacks through a corrected contract, redrive the dead-letter queue.

Everything runs the production path: the Sender with Ocelot on `responses`, the CallbackService,
DynamoDB and SQS in moto.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from pydantic import Field

from ocelot_sms import contract, runtime
from ocelot_sms.operations import (
    attach_ids,
    mark_stale_messages,
    redrive_queue,
    replay_deliveries,
    resend_chunk,
)
from ocelot_sms.status import StatusService
from ocelot_sms.store import INTERRUPTED_REASON, RAW_COMPRESS_ABOVE, ChunkRecord, ChunkStatus, DynamoStore
from tests.unit.conftest import DynamoFaults, EmfReader
from tests.unit.operations_support import callback, deliver, send
from tests.unit.sender_support import FakeOcelot, accept, accepted, guard_network, ocelot_mock, phone
from tools.template_resources import create_queue_pair

pytestmark = pytest.mark.usefixtures("emf", "atomic_dynamodb")

Items = Callable[[], list[dict[str, Any]]]
TIMEOUT = requests.ReadTimeout("read timed out")


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return guard_network(monkeypatch)


@pytest.fixture
def ocelot(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOcelot]:
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")  # 4 messages: 2 chunks
    with ocelot_mock() as mock:
        yield FakeOcelot(mock)


@pytest.fixture
def store(aws: dict[str, Any]) -> DynamoStore:
    return runtime.store()


def state(store: DynamoStore, message_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = store.get_message(message_id)["state"]
    return found


def status_of(store: DynamoStore, message_id: str) -> str | None:
    found = state(store, message_id)
    return found["status"] if found else None


# =================================================================================================
# Reconciliation
# =================================================================================================


@pytest.fixture
def unknown(ocelot: FakeOcelot, store: DynamoStore) -> dict[str, Any]:
    """rec-1: chunk 0 accepted; chunk 1 (messages 2 and 3) sent, then Ocelot's answer timed out."""
    ocelot.then(accept, TIMEOUT)
    result = send("rec-1", 4)
    assert [c.status for c in result.chunks] == ["accepted", "unknown"]
    return {"payload": ocelot.sent[1].payload, "sent": len(ocelot.sent)}


def test_a_chunk_whose_answer_timed_out_is_listed_with_the_payload_to_resend(
    unknown: dict[str, Any], store: DynamoStore
) -> None:
    # Given a chunk whose send timed out; When the unknown chunks are listed
    [chunk] = store.unknown_chunks()
    # Then it is there with the exact request Ocelot got, ready to be resent or matched
    assert (chunk["requestId"], chunk["index"], chunk["size"], chunk["firstIndex"]) == ("rec-1", 1, 2, 2)
    assert chunk["status"] == "unknown"
    assert "no response from Ocelot in time" in chunk["reason"]
    assert chunk["payload"] == unknown["payload"]
    assert [m["to"] for m in chunk["payload"]["messages"]] == [phone(2), phone(3)]


def test_unknown_chunks_are_listed_oldest_first(
    ocelot: FakeOcelot, store: DynamoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = iter([datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 19, tzinfo=UTC)])
    for request_id in ("later", "earlier"):
        moment = next(times)
        monkeypatch.setattr("ocelot_sms.store.utc_now", lambda moment=moment: moment)
        ocelot.then(TIMEOUT)
        send(request_id, 1)
    assert [c["requestId"] for c in store.unknown_chunks()] == ["earlier", "later"]


def test_a_chunk_interrupted_mid_send_is_listed_once_no_sender_can_still_be_running(
    ocelot: FakeOcelot, store: DynamoStore
) -> None:
    # Given a chunk claimed by an invocation that died mid-send, and an API client that gave up
    claimed_at = datetime.now(UTC)
    store.claim_chunk(ChunkRecord("gave-up", 0, ChunkStatus.SENDING, 2, 0))
    # When listed while a Sender could still be sending it; Then not listed
    assert store.unknown_chunks(now=claimed_at + timedelta(minutes=14)) == []
    # When listed after any Sender's time; Then listed, saying what to do
    [chunk] = store.unknown_chunks(now=claimed_at + timedelta(minutes=16))
    assert (chunk["requestId"], chunk["status"], chunk["payload"]) == ("gave-up", "sending", None)
    assert chunk["reason"] == INTERRUPTED_REASON
    # And attaching or resending it is refused with the same advice
    with pytest.raises(ValueError, match="send the same request again"):
        attach_ids(store, "gave-up", 0, "b-1", ["m-1", "m-2"])

    # When the same request is sent again, as the listing advises
    send("gave-up", 2)
    # Then nothing is sent, and the chunk is now unknown with the Ocelot request, listed once
    assert ocelot.sent == []
    [chunk] = store.unknown_chunks(now=claimed_at + timedelta(minutes=16))
    assert (chunk["status"], [m["to"] for m in chunk["payload"]["messages"]]) == (
        "unknown",
        [phone(0), phone(1)],
    )


def test_attaching_ocelots_ids_resolves_the_chunk(
    unknown: dict[str, Any], store: DynamoStore, ocelot: FakeOcelot
) -> None:
    # Given the unknown chunk; When the ids found in Ocelot's Admin Portal are attached
    assert attach_ids(store, "rec-1", 1, "ob-portal", ["om-2", "om-3"]) == 2

    # Then the chunk is accepted with them, and no longer unknown
    chunk = store.get_chunk("rec-1", 1)
    assert chunk is not None
    assert (chunk.status, chunk.batch_id, chunk.message_ids) == (
        ChunkStatus.ACCEPTED,
        "ob-portal",
        ("om-2", "om-3"),
    )
    assert chunk.payload is None
    assert store.unknown_chunks() == []
    # And each message is correlated in the chunk's order (listed through GSI1, found by id)
    metas = store.batch_messages("rec-1", 1)
    assert [(m["messageId"], m["index"], m["ref"], m["to"], m["batchId"]) for m in metas] == [
        ("om-2", 2, "ref-2", phone(2), "ob-portal"),
        ("om-3", 3, "ref-3", phone(3), "ob-portal"),
    ]
    assert store.get_message("om-3")["meta"]["requestId"] == "rec-1"
    # And callbacks for those ids now count in the batch
    deliver(callback("p-1", "om-3", "delivered", "2026-11-26T16:00:00Z"), "d-1")
    batch = StatusService(store).batch("rec-1")
    assert batch is not None
    assert batch["counts"] == {"accepted": 3, "delivered": 1}
    assert batch["unknownChunks"] == []
    # And Ocelot was not called again
    assert len(ocelot.sent) == unknown["sent"]


def test_the_resolved_chunk_is_found_by_ocelots_batch_id(unknown: dict[str, Any], store: DynamoStore) -> None:
    attach_ids(store, "rec-1", 1, "ob-portal", ["om-2", "om-3"])
    found = runtime.dynamodb_client().query(
        TableName="messages",
        IndexName="GSI1",
        KeyConditionExpression="GSI1PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "OBATCH#ob-portal"}},
    )["Items"]
    assert [(i["PK"]["S"], i["SK"]["S"]) for i in found] == [("REQ#rec-1", "CHUNK#00001")]


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        (["om-2"], "chunk has 2 messages, got 1 ids"),
        (["om-2", "om-3", "om-4"], "chunk has 2 messages, got 3 ids"),
        (["om-2", ""], "empty"),
        (["om-2", "  "], "empty"),
        (["om-2", "om-2"], "repeat"),
    ],
)
def test_wrong_ids_are_refused_and_change_nothing(
    unknown: dict[str, Any], store: DynamoStore, table_items: Items, ids: list[str], problem: str
) -> None:
    before = table_items()
    with pytest.raises(ValueError, match=problem):
        attach_ids(store, "rec-1", 1, "ob-portal", ids)
    assert table_items() == before


def test_an_empty_batch_id_is_refused(unknown: dict[str, Any], store: DynamoStore) -> None:
    with pytest.raises(ValueError, match="batch id"):
        attach_ids(store, "rec-1", 1, " ", ["om-2", "om-3"])


def test_an_accepted_chunk_cannot_be_attached_or_resent(
    unknown: dict[str, Any], store: DynamoStore, ocelot: FakeOcelot
) -> None:
    with pytest.raises(ValueError, match="is accepted, not unknown"):
        attach_ids(store, "rec-1", 0, "ob-other", ["a", "b"])
    with pytest.raises(ValueError, match="is accepted, not unknown"):
        resend_chunk(store, runtime.ocelot_client(), "rec-1", 0)
    assert len(ocelot.sent) == unknown["sent"]


def test_a_chunk_that_does_not_exist_is_a_lookup_error(aws: dict[str, Any], store: DynamoStore) -> None:
    with pytest.raises(LookupError, match="no chunk 7"):
        attach_ids(store, "nope", 7, "b", ["x"])


def test_an_unknown_chunk_without_its_payload_cannot_be_resolved(
    aws: dict[str, Any], store: DynamoStore
) -> None:
    # Given an unknown chunk recorded without the request (an interrupted send found later)
    store.finish_chunk(ChunkRecord("lost", 0, ChunkStatus.UNKNOWN, size=1, first_index=0, reason="?"))
    with pytest.raises(ValueError, match="payload was not kept"):
        attach_ids(store, "lost", 0, "b", ["x"])


def test_resend_sends_the_stored_payload_once_and_records_the_ids(
    unknown: dict[str, Any], store: DynamoStore, ocelot: FakeOcelot
) -> None:
    # Given the unknown chunk; When an operator resends it explicitly
    outcome = resend_chunk(store, runtime.ocelot_client(), "rec-1", 1)

    # Then Ocelot got exactly one more request: the stored payload, unchanged
    assert len(ocelot.sent) == unknown["sent"] + 1
    assert ocelot.sent[-1].payload == unknown["payload"]
    # And the chunk is accepted with the ids Ocelot answered
    answer = ocelot.sent[-1].body
    ids = [m["id"] for m in answer["messages"]]
    assert outcome == {"status": "accepted", "batchId": answer["batchId"], "messageIds": ids}
    chunk = store.get_chunk("rec-1", 1)
    assert chunk is not None
    assert (chunk.status, chunk.batch_id, list(chunk.message_ids)) == (
        ChunkStatus.ACCEPTED,
        answer["batchId"],
        ids,
    )
    assert [m["messageId"] for m in store.batch_messages("rec-1", 1)] == ids
    assert store.unknown_chunks() == []


def test_a_resend_whose_answer_times_out_stays_unknown_with_its_payload(
    unknown: dict[str, Any], store: DynamoStore, ocelot: FakeOcelot
) -> None:
    ocelot.then(TIMEOUT)
    outcome = resend_chunk(store, runtime.ocelot_client(), "rec-1", 1)
    assert outcome["status"] == "unknown"
    assert "no response" in outcome["reason"]
    assert len(ocelot.sent) == unknown["sent"] + 1
    [chunk] = store.unknown_chunks()
    assert chunk["reason"].startswith("resend: ")
    assert chunk["payload"] == unknown["payload"]


def test_a_resend_ocelot_refuses_leaves_the_chunk_unknown(
    unknown: dict[str, Any], store: DynamoStore, ocelot: FakeOcelot
) -> None:
    # Given Ocelot refusing the resend (4xx: certainly not taken THIS time; the first send may have been)
    ocelot.then((400, {}, {"statusCode": 400, "message": ["phoneNumber invalid"], "error": "Bad Request"}))
    # When resent; Then the operator is told, and the chunk stays unknown with its payload
    outcome = resend_chunk(store, runtime.ocelot_client(), "rec-1", 1)
    assert outcome["status"] == "not_sent"
    assert "rejected" in outcome["reason"]
    [chunk] = store.unknown_chunks()
    assert chunk["payload"] == unknown["payload"]
    assert "no response from Ocelot in time" in chunk["reason"]


def test_a_resend_accepted_without_an_id_per_message_stays_unknown_with_ocelots_batch_id(
    unknown: dict[str, Any], store: DynamoStore, ocelot: FakeOcelot
) -> None:
    def one_id_short(call: Any) -> Any:
        body = accepted(call.payload)
        body["messages"] = body["messages"][:1]
        return 200, {}, body

    ocelot.then(one_id_short)
    outcome = resend_chunk(store, runtime.ocelot_client(), "rec-1", 1)
    assert outcome["status"] == "unknown"
    [chunk] = store.unknown_chunks()
    assert chunk["batchId"] == ocelot.sent[-1].body["batchId"]
    assert "1 ids for 2 messages" in chunk["reason"]
    assert chunk["payload"] == unknown["payload"]
    # And the operator can still attach the ids found in the portal
    assert attach_ids(store, "rec-1", 1, chunk["batchId"], ["om-2", "om-3"]) == 2


# =================================================================================================
# Messages that never finished
# =================================================================================================

ACCEPTED_AT = datetime(2026, 11, 20, 10, 45, tzinfo=UTC)


@dataclass
class Stale:
    ids: list[str]


@pytest.fixture
def stale(ocelot: FakeOcelot, store: DynamoStore, monkeypatch: pytest.MonkeyPatch) -> Stale:
    """stale-1, accepted at ACCEPTED_AT in 2 chunks: #0 delivered, #1 sent, #2 nothing, #3 failed."""
    with monkeypatch.context() as patched:
        patched.setattr("ocelot_sms.store.utc_now", lambda: ACCEPTED_AT)
        ids = [m.message_id or "" for m in send("stale-1", 4).messages]
    deliver(
        [
            callback("s-0", ids[0], "delivered", "2026-11-20T10:46:00Z"),
            callback("s-1", ids[1], "sent", "2026-11-20T10:46:00Z"),
            callback("s-3", ids[3], "failed", "2026-11-20T10:46:00Z"),
        ],
        "d-stale",
    )
    return Stale(ids)


def statuses(store: DynamoStore, ids: list[str]) -> list[str | None]:
    return [status_of(store, m) for m in ids]


def test_messages_with_no_terminal_status_after_n_hours_become_unknown(
    stale: Stale, store: DynamoStore, emf: EmfReader
) -> None:
    emf.read()
    # When the sweep runs well after 72 hours
    marked = mark_stale_messages(store, 72, now=ACCEPTED_AT + timedelta(hours=74))
    # Then the sent one and the silent one are unknown; delivered and failed are untouched
    assert marked == 2
    assert statuses(store, stale.ids) == ["delivered", "unknown", "unknown", "failed"]
    assert emf.read()["MessagesMarkedUnknown"] == 2
    silent = state(store, stale.ids[2])
    assert silent is not None
    assert (silent["eventId"], silent["eventTime"]) == ("stale-sweep", "2026-11-23T12:45:00.000000Z")
    batch = StatusService(store).batch("stale-1")
    assert batch is not None
    assert batch["counts"] == {"delivered": 1, "failed": 1, "unknown": 2}


@pytest.mark.parametrize("minutes_early", [1, 30, 44])
def test_no_message_is_marked_before_n_hours(stale: Stale, store: DynamoStore, minutes_early: int) -> None:
    # Given messages accepted at 10:45; When the sweep runs shortly before 72 hours have passed
    now = ACCEPTED_AT + timedelta(hours=72) - timedelta(minutes=minutes_early)
    # Then nothing is marked (the hour bucket 10:00 holds messages not yet 72 hours old)
    assert mark_stale_messages(store, 72, now=now) == 0
    assert statuses(store, stale.ids) == ["delivered", "sent", None, "failed"]
    # And they are marked by a later run
    assert mark_stale_messages(store, 72, now=ACCEPTED_AT + timedelta(hours=74)) == 2


def test_a_chunk_is_swept_once(stale: Stale, store: DynamoStore, emf: EmfReader) -> None:
    now = ACCEPTED_AT + timedelta(hours=74)
    assert mark_stale_messages(store, 72, now=now) == 2
    emf.read()
    assert mark_stale_messages(store, 72, now=now + timedelta(hours=1)) == 0
    metrics = emf.read()
    assert "MessagesMarkedUnknown" in metrics  # published as 0: the sweep did run
    assert metrics["MessagesMarkedUnknown"] == 0


def test_a_later_terminal_callback_wins_over_unknown_and_an_older_non_terminal_one_does_not(
    stale: Stale, store: DynamoStore
) -> None:
    mark_stale_messages(store, 72, now=ACCEPTED_AT + timedelta(hours=74))
    # When callbacks arrive after the sweep: #2 delivered (its event time before the sweep, even),
    # #1 queued from long ago
    deliver(
        [
            callback("late-2", stale.ids[2], "delivered", "2026-11-20T11:00:00Z"),
            callback("late-1", stale.ids[1], "queued", "2026-11-20T10:45:30Z"),
        ],
        "d-late",
    )
    # Then #2 is delivered, #1 stays unknown
    assert statuses(store, stale.ids) == ["delivered", "unknown", "delivered", "failed"]


def test_an_interrupted_sweep_is_finished_by_the_next_without_marking_twice(
    stale: Stale, store: DynamoStore, dynamo_faults: DynamoFaults
) -> None:
    # Given a sweep that fails after marking the first chunk, before recording it as swept
    dynamo_faults.fail(
        runtime.dynamodb_client(),
        "UpdateItem",
        code="InternalServerError",
        when=lambda params: "REMOVE" in params.get("UpdateExpression", ""),
    )
    now = ACCEPTED_AT + timedelta(hours=74)
    with pytest.raises(Exception, match="InternalServerError"):
        mark_stale_messages(store, 72, now=now)
    assert statuses(store, stale.ids) == ["delivered", "unknown", None, "failed"]
    # When the next run comes; Then it marks only what was left, and both chunks are done
    assert mark_stale_messages(store, 72, now=now + timedelta(hours=1)) == 1
    assert statuses(store, stale.ids) == ["delivered", "unknown", "unknown", "failed"]
    assert mark_stale_messages(store, 72, now=now + timedelta(hours=2)) == 0


def test_chunks_older_than_the_lookback_are_left_alone(stale: Stale, store: DynamoStore) -> None:
    assert mark_stale_messages(store, 72, lookback_days=14, now=ACCEPTED_AT + timedelta(days=15)) == 0
    assert mark_stale_messages(store, 72, lookback_days=16, now=ACCEPTED_AT + timedelta(days=15)) == 2


def test_a_reconciled_chunk_is_swept_too(
    unknown: dict[str, Any], store: DynamoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr("ocelot_sms.store.utc_now", lambda: ACCEPTED_AT)
        attach_ids(store, "rec-1", 1, "ob-portal", ["om-2", "om-3"])
    assert mark_stale_messages(store, 72, now=ACCEPTED_AT + timedelta(hours=74)) == 2
    assert statuses(store, ["om-2", "om-3"]) == ["unknown", "unknown"]


# =================================================================================================
# Replay
# =================================================================================================


def renamed_status_contract(monkeypatch: pytest.MonkeyPatch, field_name: str) -> None:
    """contract.py corrected the way an engineer would: the status is in `field_name`."""

    class CorrectedCallbackEvent(contract.CallbackEvent):
        status: str | None = Field(default=None, alias=field_name)

    monkeypatch.setattr(contract, "CallbackEvent", CorrectedCallbackEvent)


@dataclass
class Replayed:
    ids: list[str]
    since: datetime
    until: datetime
    bad: list[str]


@pytest.fixture
def misread(ocelot: FakeOcelot, store: DynamoStore) -> Replayed:
    """Ocelot really names the field `deliveryStatus`: deliveries stored, statuses not applied."""
    ids = [m.message_id or "" for m in send("replay-1", 3).messages]
    since = datetime.now(UTC) - timedelta(seconds=1)

    def ev(event_id: str, index: int, status: str, at: str, **extra: Any) -> dict[str, Any]:
        return callback(event_id, ids[index], status, at, status_field="deliveryStatus", **extra)

    replies = [
        deliver(
            [
                ev("r-0d", 0, "Delivered", "2026-11-26T17:00:02+01:00"),
                ev("r-0q", 0, "queued", "2026-11-26T16:00:01Z"),
            ],
            "d-1",
        ),
        deliver(ev("r-1s", 1, "sent", "2026-11-26T11:00:02-05:00"), "d-2"),
        # Large enough to be stored compressed
        deliver(
            ev("r-2f", 2, "FAILED", "2026-11-26T16:00:03Z", errorCode="30008", note="n" * RAW_COMPRESS_ABOVE),
            "d-3",
        ),
        deliver(None, "d-bad-json", raw_body=b'{"eventId": "cut sho'),
        deliver({"name": "OutgoingSms.statusChanged", "deliveryStatus": "sent"}, "d-no-event-id"),
    ]
    assert [r.status_code for r in replies] == [200, 200, 200, 400, 400]
    return Replayed(ids, since, datetime.now(UTC) + timedelta(seconds=1), ["d-bad-json", "d-no-event-id"])


def test_replay_recovers_every_status_once_the_contract_names_the_right_field(
    misread: Replayed, store: DynamoStore, monkeypatch: pytest.MonkeyPatch, table_items: Items
) -> None:
    # Given deliveries whose status field the contract did not know: kept, but no status applied
    assert statuses(store, misread.ids) == [None, None, None]
    batch = StatusService(store).batch("replay-1")
    assert batch is not None
    assert batch["counts"] == {"accepted": 3}

    # When contract.py is corrected and the time range replayed
    renamed_status_contract(monkeypatch, "deliveryStatus")
    report = replay_deliveries(store, runtime.callback_service(), misread.since, misread.until)

    # Then every event is recovered, and each message is in its right state
    assert {**report, "unparseable": sorted(report["unparseable"])} == {
        "deliveries": 5,
        "events": 4,
        "new": 4,
        "duplicates": 0,
        "unparseable": misread.bad,
    }
    assert statuses(store, misread.ids) == ["delivered", "sent", "failed"]
    failed = state(store, misread.ids[2])
    assert failed is not None
    assert failed["errorCode"] == "30008"
    history = StatusService(store).message(misread.ids[0])
    assert history is not None
    assert [e["eventId"] for e in history["history"]] == ["r-0q", "r-0d"]
    assert history["history"][1]["event"]["deliveryStatus"] == "Delivered"
    batch = StatusService(store).batch("replay-1")
    assert batch is not None
    assert batch["counts"] == {"delivered": 1, "failed": 1, "sent": 1}

    # And replaying again changes nothing at all
    before = table_items()
    again = replay_deliveries(store, runtime.callback_service(), misread.since, misread.until)
    assert (again["new"], again["duplicates"], again["events"]) == (0, 4, 4)
    assert table_items() == before


def test_replay_through_the_old_contract_changes_no_status(misread: Replayed, store: DynamoStore) -> None:
    report = replay_deliveries(store, runtime.callback_service(), misread.since, misread.until)
    assert report["events"] == 4
    assert report["new"] == 0
    assert statuses(store, misread.ids) == [None, None, None]


def test_replay_takes_only_deliveries_received_in_the_range(
    misread: Replayed, store: DynamoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed_status_contract(monkeypatch, "deliveryStatus")
    later = misread.until + timedelta(minutes=5)
    assert replay_deliveries(store, runtime.callback_service(), misread.until, later)["deliveries"] == 0
    assert statuses(store, misread.ids) == [None, None, None]


def test_replay_walks_every_day_of_the_range(
    aws: dict[str, Any], store: DynamoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given deliveries on both sides of midnight UTC, one of them from a UTC-5 clock's view
    deliver(
        callback("n-1", "m-night", "sent", "2026-11-25T23:59:58Z", status_field="deliveryStatus"),
        "d-before-midnight",
        datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC),
    )
    deliver(
        callback("n-2", "m-night", "delivered", "2026-11-26T00:00:00Z", status_field="deliveryStatus"),
        "d-after-midnight",
        datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC),
    )
    renamed_status_contract(monkeypatch, "deliveryStatus")
    eastern = timedelta(hours=-5)
    from datetime import timezone

    # When a range starting the evening before (in UTC-5) is replayed
    since = datetime(2026, 11, 25, 18, 59, 59, tzinfo=timezone(eastern))
    report = replay_deliveries(store, runtime.callback_service(), since, since + timedelta(hours=1))
    # Then both days are read, and both deliveries replayed
    assert (report["deliveries"], report["new"]) == (2, 2)
    assert status_of(store, "m-night") == "delivered"


def test_replay_reports_what_it_did_in_the_logs(
    misread: Replayed, store: DynamoStore, emf: EmfReader
) -> None:
    emf.read()
    replay_deliveries(store, runtime.callback_service(), misread.since, misread.until)
    emf.read()
    [line] = [json.loads(x) for x in emf.lines if "replay finished" in x]
    assert (line["deliveries"], line["unparseable"]) == (5, 2)


# =================================================================================================
# Dead-letter queue
# =================================================================================================


@pytest.fixture
def queues(aws: dict[str, Any]) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs")
    queue_url, dlq_url = create_queue_pair(sqs, "SendQueue", "SendDeadLetterQueue", "test")
    return sqs, queue_url, dlq_url


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=300
        ).get("Messages", [])
        if not got:
            return messages
        messages.extend(got)


def fill(sqs: Any, url: str, count: int) -> list[str]:
    bodies = [
        json.dumps({"requestId": f"dead-{i}", "messages": [{"to": phone(i), "text": "é"}]})
        for i in range(count)
    ]
    for i, body in enumerate(bodies):
        attributes = {"origin": {"DataType": "String", "StringValue": f"school-{i}"}} if i % 2 else {}
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    return bodies


def test_redrive_moves_every_message_back_unchanged(queues: tuple[Any, str, str]) -> None:
    sqs, queue_url, dlq_url = queues
    bodies = fill(sqs, dlq_url, 23)
    assert redrive_queue(sqs, dlq_url, queue_url) == 23
    moved = drain(sqs, queue_url)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    origins = {json.loads(m["Body"])["requestId"]: m.get("MessageAttributes", {}) for m in moved}
    assert origins["dead-1"] == {"origin": {"DataType": "String", "StringValue": "school-1"}}
    assert origins["dead-2"] == {}
    assert drain(sqs, dlq_url) == []


@pytest.mark.parametrize("limit", [1, 5, 10, 11])
def test_redrive_moves_at_most_max_messages(queues: tuple[Any, str, str], limit: int) -> None:
    sqs, queue_url, dlq_url = queues
    fill(sqs, dlq_url, 15)
    assert redrive_queue(sqs, dlq_url, queue_url, max_messages=limit) == limit
    assert len(drain(sqs, queue_url)) == limit
    assert len(drain(sqs, dlq_url)) == 15 - limit


def test_redrive_of_an_empty_queue_moves_nothing(queues: tuple[Any, str, str]) -> None:
    sqs, queue_url, dlq_url = queues
    assert redrive_queue(sqs, dlq_url, queue_url) == 0


class RefusingQueue:
    """SQS whose SendMessageBatch refuses the entries whose body contains `refuse`."""

    def __init__(self, sqs: Any, refuse: str) -> None:
        self._sqs = sqs
        self._refuse = refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [e for e in Entries if self._refuse not in e["MessageBody"]]
        result: dict[str, Any] = self._sqs.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        result["Failed"] = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
            for e in Entries
            if self._refuse in e["MessageBody"]
        ]
        return result


def test_a_message_the_queue_refuses_stays_in_the_dlq(queues: tuple[Any, str, str]) -> None:
    sqs, queue_url, dlq_url = queues
    fill(sqs, dlq_url, 3)
    with pytest.raises(RuntimeError, match="refused 1 message"):
        redrive_queue(RefusingQueue(sqs, '"dead-1"'), dlq_url, queue_url)
    assert sorted(json.loads(m["Body"])["requestId"] for m in drain(sqs, queue_url)) == ["dead-0", "dead-2"]
    # The refused one is still in the DLQ (invisible until the redrive's visibility timeout passes)
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "1",
    )
