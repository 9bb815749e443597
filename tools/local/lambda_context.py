"""The Lambda context, as the handlers and Powertools read it; the time left is real. Standard library
only: the bench's Lambda-like processes use it too."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime


class LambdaContext:
    def __init__(self, function_name: str, memory_mb: int, timeout_seconds: float, region: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
