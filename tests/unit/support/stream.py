"""The table's stream as Lambda hands it to the applier: records read from moto's DynamoDB Streams,
filtered as the event source mapping's FilterCriteria says, in Lambda's JSON (binaries in base64)."""

from __future__ import annotations

from typing import Any

import boto3

from tools.local.event_sources import stream_record
from tools.template_resources import Resolver, StreamSource, stream_sources


def _stream_source(function: str) -> StreamSource:
    """A function's mapping as the template declares it (its filter is what matters here)."""
    resolver = Resolver(parameters={}, refs={}, arns={}, region="us-east-1", account_id="123456789012")
    [source] = stream_sources(resolver)[function]
    return source


class TableStream:
    """Reads a moto table's stream from where it was last read, like one Lambda poller of `function`."""

    def __init__(self, table_name: str, function: str = "ApplierFunction") -> None:
        self._client = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self._arn = arn
        self._iterators: dict[str, str] = {}
        self._source = _stream_source(function)

    def next_records(self) -> list[dict[str, Any]]:
        """The records written since the last call that the event source would hand the function."""
        shards = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            iterator = (
                self._iterators.get(shard_id)
                or self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            answer = self._client.get_records(ShardIterator=iterator)
            self._iterators[shard_id] = answer["NextShardIterator"]
            shaped = (stream_record(record, self._arn) for record in answer["Records"])
            records.extend(record for record in shaped if self._source.accepts(record))
        return records

    def event(self) -> dict[str, Any]:
        return {"Records": self.next_records()}
