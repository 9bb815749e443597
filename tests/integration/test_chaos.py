"""The chaos run at CI size: 2,000 messages through a local stack of its own, with Ocelot
answering 429/503, taking chunks and answering too late, sending callbacks twice, out of order and
again after lost answers, and DynamoDB throttling and failing the webhook's writes (also for whole
seconds). See tools/chaos and docs/reliability.md; `make chaos N=20000` runs a bigger one by hand.

What must hold (each a check of the run, printed with its figure):
- every event the sandbox sent is stored, once: sent == distinct stored, 0 duplicate records;
- 0 wrong final statuses against the sandbox's script (messages of `unknown` chunks excluded: they
  have no message items of ours; their events are stored all the same);
- 0 chunks accepted twice; every accepted-then-timed-out chunk is `unknown` and never sent again;
- after the operator attaches Ocelot's ids to the unknown chunks, their messages are on script too.
"""

from __future__ import annotations

import pytest

from tests.integration.support import BackgroundChaos, batch, recipients
from tools.chaos.run import format_report
from tools.local.client import StackClient


@pytest.mark.timeout(900)
def test_chaos_run_at_ci_size(chaos_run: BackgroundChaos | None, capsys: pytest.CaptureFixture[str]) -> None:
    assert chaos_run is not None  # started with the first integration test (conftest.py)
    result = chaos_run.wait(timeout=850)
    with capsys.disabled():
        print("\n" + "\n".join(format_report(result)), flush=True)
    assert result.passed, "\n".join([*result.failures(), "", *chaos_run.progress[-40:]])
    assert result.verdict is not None
    figures = result.verdict.figures
    # The size and the mix asked of it: 2,000 messages, both by API and by the queue.
    assert figures["send"]["messages_planned"] >= 2000
    assert figures["send"]["requests_planned"]["api"] > 0
    assert figures["send"]["requests_planned"]["sqs"] > 0
    assert (chaos_run.workdir / "chaos.json").exists()


def test_a_chunk_claim_applied_but_answered_500_still_sends_the_chunk(client: StackClient) -> None:
    """DynamoDB may apply a write and still answer 500 (InternalServerError); botocore then retries it.

    Here the Sender's claim of a chunk (a conditional PutItem) is applied, answered 500 once, and
    retried: the retry's condition fails on the claim itself. The chunk must still be sent, once.
    """
    to = recipients("0010")
    try:
        client.storage_faults(
            reset=True,
            scope="all",
            operations=["PutItem"],
            sk_prefixes=["CHUNK#"],
            errors=["InternalServerError"],
            rate=1.0,
            applied_rate=1.0,
            max_failures=1,
        )
        response = client.post_batch(batch("claim-500", to))
        injected = client.storage_faults()["counts"]
    finally:
        client.storage_faults(reset=True)
    assert injected.get("failed:PutItem:InternalServerError:applied") == 1
    sends = [r["status"] for r in client.sandbox_record()["requests"] if r.get("recipients") == to]
    assert sends == [201], f"the chunk was sent {len(sends)} time(s); API answered {response.text}"
    assert response.status_code == 201, response.text
