"""StreamPoller (tools/local/event_sources.py) reads a shard as Lambda's mapping does: a page of
records the filter leaves out entirely is not the end of the shard.

The DynamoDB Streams API is stubbed (botocore's Stubber): no request leaves the process.
"""

from __future__ import annotations

from typing import Any

from botocore.stub import Stubber

from tools.local.event_sources import GET_RECORDS_LIMIT, StreamPoller
from tools.template_resources import StreamSource

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/messages/stream/2026-11-30T00:00:00.000"
SHARD = "shardId-00000001764460800000-0000000a"

SOURCE = StreamSource(
    mapping="ApplierStreamMapping",
    table="MessagesTable",
    batch_size=10,
    batching_window_seconds=0.0,
    starting_position="TRIM_HORIZON",
    bisect_on_error=True,
    maximum_retry_attempts=5,
    report_batch_item_failures=True,
    parallelization_factor=1,
    filters=({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["raw"]}}}},),
    on_failure=None,
)


FIRST_SEQUENCE = 1100000000017454423009  # stream sequence numbers are 21 to 40 digits


def record(n: int, kind: str) -> dict[str, Any]:
    sequence = FIRST_SEQUENCE + n
    return {
        "eventID": f"e-{n}",
        "eventName": "INSERT",
        "dynamodb": {
            "SequenceNumber": str(sequence),
            "NewImage": {"pk": {"S": f"K#{n}"}, "type": {"S": kind}},
        },
    }


class NoInvoker:
    def invoke(self, *_: Any) -> Any:
        raise AssertionError("not invoked in this test")


def test_a_page_the_filter_empties_is_read_past_to_the_records_behind_it() -> None:
    # Given a shard holding a full page of records the filter leaves out, then one raw delivery
    poller = StreamPoller(
        NoInvoker(),  # type: ignore[arg-type]
        "ApplierFunction",
        SOURCE,
        "http://127.0.0.1:1",
        STREAM_ARN,
        "us-east-1",
        None,
        {},
    )
    stub = Stubber(poller._streams)
    stub.add_response(
        "describe_stream",
        {"StreamDescription": {"StreamArn": STREAM_ARN, "Shards": [{"ShardId": SHARD}]}},
    )
    stub.add_response("get_shard_iterator", {"ShardIterator": "it-0"})
    filler = [record(n, "event") for n in range(GET_RECORDS_LIMIT)]
    stub.add_response("get_records", {"Records": filler, "NextShardIterator": "it-1"})
    raw = record(GET_RECORDS_LIMIT, "raw")
    stub.add_response("get_records", {"Records": [raw], "NextShardIterator": "it-2"})
    # When the poller reads the shard once
    with stub:
        poller._read()
        stub.assert_no_pending_responses()
    # Then the raw delivery is waiting to be handed over, and everything was read
    waiting = [r for shard in poller._shards.values() for r in shard.waiting]
    assert [r["dynamodb"]["SequenceNumber"] for r in waiting] == [str(FIRST_SEQUENCE + GET_RECORDS_LIMIT)]
    assert poller.stats["records_read"] == GET_RECORDS_LIMIT + 1
    assert poller.stats["records_filtered_out"] == GET_RECORDS_LIMIT
