"""`sam local start-api` end to end: POST /batches through SAM's API emulation, Ocelot's callbacks
back through the same start-api to the webhook, the stored deliveries applied by the applier under
`sam local start-lambda` (invoked by a stream poller as Lambda's event source mapping would), final
states in DynamoDB as the sandbox scripted.

Not emulated by SAM: the IAM (SigV4) authorizer on POST /batches, so the request is unsigned.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.sam_local import harness
from tests.sam_local.conftest import LocalAws, isolated_aws
from tools.local.client import SentMessage
from tools.local.stack import StackInfo, StackProcess

pytestmark = [pytest.mark.sam_local, pytest.mark.timeout(600)]

# Recipients by the sandbox's script (tools/local/sandbox.py): ...0001 undelivered, ...0002 failed,
# ...0003 opted out, anything else delivered. Six messages: two chunks at the stack's 5 per chunk.
RECIPIENTS = ["+15551230001", "+15551230002", "+15551230003", "+15551230010", "+15551230011", "+15551230012"]
REQUEST: dict[str, Any] = {
    "requestId": "sam-start-api-0001",
    "from": "+15550000000",
    "operatorId": "operator-1",
    "messages": [
        {"to": to, "text": f"start-api message {i}", "ref": f"ref-{i}"} for i, to in enumerate(RECIPIENTS)
    ],
}
WEBHOOK_PATH = "/webhooks/ocelot"
# A file of the layer, compared byte for byte between the build and a running container.
LAYER_FILE = Path("ocelot_sms") / "store" / "codec.py"
LAYER_IN_CONTAINER = f"/opt/python/{LAYER_FILE}"


@pytest.fixture
def own_stack(provisioned: harness.Provisioned, tmp_path: Path) -> Iterator[StackInfo]:
    """A stack of its own: a sandbox with no callbacks pending from other tests."""
    stack = StackProcess(tmp_path / "stack", ["--functions", "none", "--seed", "7"])
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def e2e_aws(own_stack: StackInfo) -> Iterator[LocalAws]:
    yield from isolated_aws(own_stack)


def docker_json(*args: str) -> Any:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def docker_exec(container: str, code: str) -> str:
    result = subprocess.run(
        ["docker", "exec", container, "python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def check_containers(api: harness.SamServer, expected: set[str]) -> dict[str, str]:
    """Every warm container (once those of `expected` are listed: SAM may print one after it already
    serves): the host's network, only its BUILT function mounted (at /var/task), and the BUILT layer
    at /opt/python. Returns function name -> container id."""
    layer_file = harness.BUILD_DIR / "SharedLayer" / "python" / LAYER_FILE
    deadline = time.monotonic() + 60
    while True:
        inspected = {c: docker_json("inspect", c)[0] for c in api.container_ids()}
        functions = {info["Config"]["Labels"]["sam.cli.function.name"]: c for c, info in inspected.items()}
        if expected <= set(functions) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for container, info in inspected.items():
        function = info["Config"]["Labels"]["sam.cli.function.name"]
        assert info["HostConfig"]["NetworkMode"] == "host", f"{function}: {info['HostConfig']['NetworkMode']}"
        # On the host's network, SAM's emulator and the Runtime API listen on loopback only.
        entrypoint = " ".join(info["Config"]["Entrypoint"])
        assert "--runtime-interface-emulator-address 127.0.0.1:" in entrypoint, entrypoint
        assert "--runtime-api-address 127.0.0.1:" in entrypoint, entrypoint
        mounts = [(m["Source"], m["Destination"]) for m in info["Mounts"]]
        assert mounts == [(str(harness.BUILD_DIR / function), "/var/task")], f"{function}: {mounts}"
        # SAM copies the layer into the image it builds; the bootstrap puts /opt/python on the path.
        found = docker_exec(
            container,
            f"import hashlib; print(hashlib.sha256(open('{LAYER_IN_CONTAINER}', 'rb').read()).hexdigest())",
        )
        assert found == hashlib.sha256(layer_file.read_bytes()).hexdigest(), f"{function}: another layer"
    return functions


def test_post_batches_then_callbacks_through_the_same_start_api(
    sam: harness.SamLocal, e2e_aws: LocalAws, tmp_path: Path
) -> None:
    """Given `sam local start-api` (warm containers, host network) on a free 127.0.0.1 port, the
    Ocelot sandbox calling back that start-api's webhook route (with duplicates and reordering), and
    the table's stream read into the applier under `sam local start-lambda`,
    When a batch of six is POSTed to /batches,
    Then Ocelot gets two chunks, every callback is answered 200 through start-api, and each message's
    final state in DynamoDB is the one the sandbox scripted."""
    aws = e2e_aws
    port = harness.free_port()
    webhook_url = f"http://{harness.LOOPBACK}:{port}{WEBHOOK_PATH}"
    aws.client.sandbox_config(webhook_url=webhook_url, duplicate_rate=0.3, out_of_order_rate=0.5)

    with (
        sam.start_api(aws.variables, port) as api,
        sam.start_lambda(aws.variables, harness.free_port(), ["ApplierFunction"]) as lambdas,
        aws.applying(lambdas.url) as stream,
    ):
        expected = {"SenderFunction", "WebhookFunction"}
        functions = check_containers(api, expected)
        assert expected <= set(functions)

        # When
        response = requests.post(f"{api.url}/batches", json=REQUEST, timeout=120)

        # Then: accepted, in two chunks, each message with Ocelot's id
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "accepted"
        assert [(c["status"], c["size"]) for c in body["chunks"]] == [("accepted", 5), ("accepted", 1)]
        sent = [
            SentMessage(REQUEST["requestId"], m["index"], m["ref"], m["to"], m["messageId"], "")
            for m in body["messages"]
        ]
        assert [m.to for m in sent] == RECIPIENTS

        # ... the sandbox called back until it had nothing left, through this start-api, and the
        # applier under start-lambda took every stored delivery from the stream
        record = aws.client.wait_callbacks_sent([m.message_id for m in sent], timeout=120)
        harness.settle(stream, timeout=120)
        assert stream.stats["records_done"] == len(record["callback_attempts"]) > 0
        assert len(record["accepted"]) == 2
        attempts = record["callback_attempts"]
        assert attempts, "the sandbox sent no callbacks"
        assert {(a["status_code"], a["outcome"]) for a in attempts} == {(200, "delivered")}, attempts
        assert api.log().count(f'"POST {WEBHOOK_PATH} HTTP/1.1" 200') == len(attempts)

        # ... and every message ended as scripted, with every planned event stored once
        reports = aws.client.report(sent, record)
        wrong = [r for r in reports if not r.ok]
        assert not wrong, wrong
        assert sorted(r.final or "" for r in reports) == sorted(
            ["undelivered", "failed", "opted_out", "delivered", "delivered", "delivered"]
        )

        # A callback with the wrong password is refused by the function behind the same route.
        refused = requests.post(webhook_url, data=b"{}", auth=("ocelot", "wrong"), timeout=60)
        assert refused.status_code == 401

    # Stopped by SIGTERM, containers gone
    for server in (api, lambdas):
        assert server.stopped_cleanly, server.log()[-3000:]
        assert server.leftover_containers == []
        assert server.process.returncode is not None
