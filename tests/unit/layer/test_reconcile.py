"""Reconciliation of chunks whose send outcome is unknown: list them, attach the ids an operator
found in Ocelot's Admin Portal, or resend on an operator's explicit decision.

The chunks are made by the real Sender (Ocelot on `responses`), over the in-memory store.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from ocelot_sms import runtime
from ocelot_sms.errors import BadRequest, Conflict, NotFound
from ocelot_sms.reconcile import attach_ids, resend_chunk
from ocelot_sms.status import StatusService
from ocelot_sms.store import INTERRUPTED_REASON, ChunkRecord, ChunkStatus
from tests.unit.layer.conftest import Wired
from tests.unit.support.flows import callback, deliver, send
from tests.unit.support.ocelot import FakeOcelot, accepted, phone

pytestmark = pytest.mark.usefixtures("emf")

TIMEOUT = requests.ReadTimeout("read timed out")


@pytest.fixture
def unknown(ocelot: FakeOcelot, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """rec-1: chunk 0 accepted; chunk 1 (messages 2 and 3) sent, then Ocelot's answer timed out."""
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "2")
    ocelot.then_for("ref-2", TIMEOUT)
    result = send("rec-1", 4)
    assert [c.status for c in result.chunks] == ["accepted", "unknown"]
    [payload] = [call.payload for call in ocelot.sent if call.payload["messages"][0]["externalId"] == "ref-2"]
    return {"payload": payload, "sent": len(ocelot.sent)}


def the_chunk(wired: Wired, index: int = 1) -> ChunkRecord:
    found = wired.store.get_chunk("rec-1", index)
    assert found is not None
    return found


def test_a_chunk_whose_answer_timed_out_is_listed_with_the_payload_to_resend(
    unknown: dict[str, Any], wired: Wired
) -> None:
    # Given a chunk whose send timed out; When the unknown chunks are listed
    [chunk] = wired.store.unknown_chunks()
    # Then it is there with the exact request Ocelot got, ready to be resent or matched
    assert (chunk.request_id, chunk.index, chunk.size, chunk.first_index) == ("rec-1", 1, 2, 2)
    assert chunk.status is ChunkStatus.UNKNOWN
    assert "no response from Ocelot in time" in (chunk.reason or "")
    assert chunk.payload == unknown["payload"]
    assert [m["to"] for m in unknown["payload"]["messages"]] == [phone(2), phone(3)]


def test_unknown_chunks_are_listed_oldest_first(ocelot: FakeOcelot, wired: Wired) -> None:
    for request_id, day in (("later", 20), ("earlier", 19)):
        wired.store.clock = functools.partial(datetime, 2026, 11, day, tzinfo=UTC)
        ocelot.then(TIMEOUT)
        send(request_id, 1)
    assert [c.request_id for c in wired.store.unknown_chunks()] == ["earlier", "later"]


def test_a_chunk_interrupted_mid_send_is_listed_once_no_sender_can_still_be_running(
    ocelot: FakeOcelot, wired: Wired
) -> None:
    # Given a chunk claimed by an invocation that died mid-send, and an API client that gave up
    claimed_at = datetime.now(UTC)
    wired.store.claim_chunk(ChunkRecord("gave-up", 0, ChunkStatus.SENDING, 2, 0))
    # When listed while a Sender could still be sending it; Then not listed
    assert wired.store.unknown_chunks(now=claimed_at + timedelta(minutes=14)) == []
    # When listed after any Sender's time; Then listed, saying what to do
    [chunk] = wired.store.unknown_chunks(now=claimed_at + timedelta(minutes=16))
    assert (chunk.request_id, chunk.status, chunk.payload) == ("gave-up", ChunkStatus.SENDING, None)
    assert chunk.reason == INTERRUPTED_REASON
    # And attaching or resending it is refused with the same advice
    with pytest.raises(Conflict, match="send the same request again"):
        attach_ids(wired.store, "gave-up", 0, "b-1", ["m-1", "m-2"])

    # When the same request is sent again, as the listing advises
    send("gave-up", 2)
    # Then nothing is sent, and the chunk is now unknown with the Ocelot request, listed once
    assert ocelot.sent == []
    [chunk] = wired.store.unknown_chunks(now=claimed_at + timedelta(minutes=16))
    assert chunk.status is ChunkStatus.UNKNOWN
    assert chunk.payload is not None
    assert [m["to"] for m in chunk.payload["messages"]] == [phone(0), phone(1)]


def test_attaching_ocelots_ids_resolves_the_chunk(
    unknown: dict[str, Any], wired: Wired, ocelot: FakeOcelot
) -> None:
    # Given the unknown chunk; When the ids found in Ocelot's Admin Portal are attached
    assert attach_ids(wired.store, "rec-1", 1, "ob-portal", ["om-2", "om-3"]) == 2

    # Then the chunk is accepted with them, and no longer unknown
    chunk = the_chunk(wired)
    assert (chunk.status, chunk.batch_id, chunk.message_ids) == (
        ChunkStatus.ACCEPTED,
        "ob-portal",
        ("om-2", "om-3"),
    )
    assert chunk.payload is None
    assert wired.store.unknown_chunks() == []
    # And each message is correlated in the chunk's order
    metas = wired.store.batch_messages("rec-1", 1)
    assert [(m.message_id, m.index, m.ref, m.to, m.batch_id) for m in metas] == [
        ("om-2", 2, "ref-2", phone(2), "ob-portal"),
        ("om-3", 3, "ref-3", phone(3), "ob-portal"),
    ]
    # And callbacks for those ids now count in the batch
    deliver(callback("p-1", "om-3", "delivered", "2026-11-26T16:00:00Z"), "d-1")
    batch = StatusService(wired.store).batch("rec-1")
    assert batch["counts"] == {"accepted": 3, "delivered": 1}
    assert batch["unknownChunks"] == []
    # And Ocelot was not called again
    assert len(ocelot.sent) == unknown["sent"]


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
    unknown: dict[str, Any], wired: Wired, ids: list[str], problem: str
) -> None:
    before = (the_chunk(wired), dict(wired.store.messages))
    with pytest.raises(BadRequest, match=problem):
        attach_ids(wired.store, "rec-1", 1, "ob-portal", ids)
    assert (the_chunk(wired), wired.store.messages) == before


def test_an_empty_batch_id_is_refused(unknown: dict[str, Any], wired: Wired) -> None:
    with pytest.raises(BadRequest, match="batch id"):
        attach_ids(wired.store, "rec-1", 1, " ", ["om-2", "om-3"])


def test_an_accepted_chunk_cannot_be_attached_or_resent(
    unknown: dict[str, Any], wired: Wired, ocelot: FakeOcelot
) -> None:
    with pytest.raises(Conflict, match="is accepted, not unknown"):
        attach_ids(wired.store, "rec-1", 0, "ob-other", ["a", "b"])
    with pytest.raises(Conflict, match="is accepted, not unknown"):
        resend_chunk(wired.store, runtime.ocelot_client(), "rec-1", 0)
    assert len(ocelot.sent) == unknown["sent"]


def test_a_chunk_that_does_not_exist_is_not_found(wired: Wired) -> None:
    with pytest.raises(NotFound, match="no chunk 7"):
        attach_ids(wired.store, "nope", 7, "b", ["x"])


def test_an_unknown_chunk_without_its_payload_cannot_be_resolved(wired: Wired) -> None:
    # Given an unknown chunk recorded without the request (an interrupted send found later)
    wired.store.finish_chunk(ChunkRecord("lost", 0, ChunkStatus.UNKNOWN, size=1, first_index=0, reason="?"))
    with pytest.raises(Conflict, match="payload was not kept"):
        attach_ids(wired.store, "lost", 0, "b", ["x"])


def test_resend_sends_the_stored_payload_once_and_records_the_ids(
    unknown: dict[str, Any], wired: Wired, ocelot: FakeOcelot
) -> None:
    # Given the unknown chunk; When an operator resends it explicitly
    outcome = resend_chunk(wired.store, runtime.ocelot_client(), "rec-1", 1)

    # Then Ocelot got exactly one more request: the stored payload, unchanged
    assert len(ocelot.sent) == unknown["sent"] + 1
    assert ocelot.sent[-1].payload == unknown["payload"]
    # And the chunk is accepted with the ids Ocelot answered
    answer = ocelot.sent[-1].body
    ids = [m["id"] for m in answer["messages"]]
    assert outcome == {"status": "accepted", "batchId": answer["batchId"], "messageIds": ids}
    chunk = the_chunk(wired)
    assert (chunk.status, chunk.batch_id, list(chunk.message_ids)) == (
        ChunkStatus.ACCEPTED,
        answer["batchId"],
        ids,
    )
    assert [m.message_id for m in wired.store.batch_messages("rec-1", 1)] == ids
    assert wired.store.unknown_chunks() == []


def test_a_resend_whose_answer_times_out_stays_unknown_with_its_payload(
    unknown: dict[str, Any], wired: Wired, ocelot: FakeOcelot
) -> None:
    ocelot.then(TIMEOUT)
    outcome = resend_chunk(wired.store, runtime.ocelot_client(), "rec-1", 1)
    assert outcome["status"] == "unknown"
    assert "no response" in outcome["reason"]
    assert len(ocelot.sent) == unknown["sent"] + 1
    [chunk] = wired.store.unknown_chunks()
    assert (chunk.reason or "").startswith("resend: ")
    assert chunk.payload == unknown["payload"]


def test_a_resend_ocelot_refuses_leaves_the_chunk_unknown(
    unknown: dict[str, Any], wired: Wired, ocelot: FakeOcelot
) -> None:
    # Given Ocelot refusing the resend (4xx: certainly not taken THIS time; the first send may have been)
    ocelot.then((400, {}, {"statusCode": 400, "message": ["phoneNumber invalid"], "error": "Bad Request"}))
    # When resent; Then the operator is told, and the chunk stays unknown with its payload
    outcome = resend_chunk(wired.store, runtime.ocelot_client(), "rec-1", 1)
    assert outcome["status"] == "not_sent"
    assert "rejected" in outcome["reason"]
    [chunk] = wired.store.unknown_chunks()
    assert chunk.payload == unknown["payload"]
    assert "no response from Ocelot in time" in (chunk.reason or "")


def test_a_resend_accepted_without_an_id_per_message_stays_unknown_with_ocelots_batch_id(
    unknown: dict[str, Any], wired: Wired, ocelot: FakeOcelot
) -> None:
    def one_id_short(call: Any) -> Any:
        body = accepted(call.payload)
        body["messages"] = body["messages"][:1]
        return 200, {}, body

    ocelot.then(one_id_short)
    outcome = resend_chunk(wired.store, runtime.ocelot_client(), "rec-1", 1)
    assert outcome["status"] == "unknown"
    [chunk] = wired.store.unknown_chunks()
    assert chunk.batch_id == ocelot.sent[-1].body["batchId"]
    assert "1 ids for 2 messages" in (chunk.reason or "")
    assert chunk.payload == unknown["payload"]
    # And the operator can still attach the ids found in the portal
    assert attach_ids(wired.store, "rec-1", 1, chunk.batch_id or "", ["om-2", "om-3"]) == 2
