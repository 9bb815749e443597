"""The table's stream as Lambda hands it to the applier: records read from moto's DynamoDB Streams,
filtered as the event source mapping's FilterCriteria says, in Lambda's JSON (binaries in base64)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import boto3

from tools.template_resources import resource


def _filter() -> dict[str, Any]:
    [pattern] = resource("ApplierStreamMapping")["Properties"]["FilterCriteria"]["Filters"]
    parsed: dict[str, Any] = json.loads(pattern["Pattern"])
    return parsed


def _matches(record: dict[str, Any], pattern: dict[str, Any]) -> bool:
    """EventBridge-style matching, as far as the template's pattern uses it (nested keys, values)."""
    for key, wanted in pattern.items():
        value = record.get(key)
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not _matches(value, wanted):
                return False
        elif value not in wanted:
            return False
    return True


def _lambda_json(value: Any) -> Any:
    """boto3 hands binaries over as bytes and times as datetimes; Lambda's event carries them in
    base64 and in epoch seconds, as DynamoDB's JSON does."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _lambda_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lambda_json(v) for v in value]
    return value


class TableStream:
    """Reads a moto table's stream from where it was last read, like one Lambda poller."""

    def __init__(self, table_name: str) -> None:
        self._client = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self._arn = arn
        self._iterators: dict[str, str] = {}
        self._pattern = _filter()

    def next_records(self) -> list[dict[str, Any]]:
        """The records written since the last call that the event source would hand the applier."""
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
            for record in answer["Records"]:
                shaped = _lambda_json(record)
                shaped["eventSourceARN"] = self._arn
                if _matches(shaped, self._pattern):
                    records.append(shaped)
        return records

    def event(self) -> dict[str, Any]:
        return {"Records": self.next_records()}
