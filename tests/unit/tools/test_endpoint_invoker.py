"""EndpointInvoker (tools/local/functions.py): a Lambda Invoke API's answer as the same `Invocation` the
in-process functions give, so the SqsPoller applies Lambda's partial-failure rules to either.

The Invoke API's answers are stubbed (botocore's Stubber): no request leaves the process.
"""

from __future__ import annotations

import io
import json
from typing import Any

from botocore.response import StreamingBody
from botocore.stub import Stubber

from tools.local.functions import EndpointInvoker, failed_ids

EVENT = {"Records": [{"messageId": "m-1"}, {"messageId": "m-2"}]}


def answer(document: Any, **extra: Any) -> dict[str, Any]:
    raw = json.dumps(document).encode()
    return {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(raw), len(raw)),
        "ResponseMetadata": {
            "RequestId": "request-1",
            "HTTPStatusCode": 200,
            "HTTPHeaders": {},
            "RetryAttempts": 0,
        },
        **extra,
    }


def invoke_with(response: dict[str, Any]) -> Any:
    invoker = EndpointInvoker("http://127.0.0.1:9", "us-east-1")
    with Stubber(invoker._client) as stub:
        stub.add_response(
            "invoke",
            response,
            {
                "FunctionName": "SenderFunction",
                "InvocationType": "RequestResponse",
                "Payload": json.dumps(EVENT).encode(),
            },
        )
        invocation = invoker.invoke("SenderFunction", EVENT, trigger="sqs:SendQueue")
        stub.assert_no_pending_responses()
    invoker.close()
    return invocation


def test_a_result_is_the_payload_and_its_batch_item_failures_stay_on_the_queue() -> None:
    """Given the function returns a partial batch failure for m-2,
    When it is invoked through the Invoke API,
    Then the Invocation carries that result, no error, and only m-2 stays on the queue."""
    invocation = invoke_with(answer({"batchItemFailures": [{"itemIdentifier": "m-2"}]}))

    assert invocation.error is None
    assert invocation.request_id == "request-1"
    assert invocation.payload == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert (invocation.function, invocation.trigger, invocation.records) == (
        "SenderFunction",
        "sqs:SendQueue",
        2,
    )
    assert failed_ids(invocation, {"m-1", "m-2"}, report_failures=True) == {"m-2"}


def test_a_function_error_is_an_error_and_the_whole_batch_stays() -> None:
    """Given the function raises (the Invoke API answers 200 with X-Amz-Function-Error: Unhandled),
    When it is invoked,
    Then the Invocation's error names the error type and message, and every message stays on the queue."""
    document = {"errorType": "BatchProcessingError", "errorMessage": "All records failed processing."}

    invocation = invoke_with(answer(document, FunctionError="Unhandled"))

    assert invocation.error == "BatchProcessingError: All records failed processing."
    assert failed_ids(invocation, {"m-1", "m-2"}, report_failures=True) == {"m-1", "m-2"}
