"""Rotating the webhook's credentials while Ocelot's callbacks flow: none refused, every one applied.

The operator runs `ocelot-sms --local webhook-credentials rotate` in a terminal (a pseudo-terminal
here, as a person would), reads the new credentials off the screen and, once every webhook container
has re-read the secret (SECRET_MAX_AGE_SECONDS: 5 s locally, 300 s deployed), puts them in Ocelot's
configuration (the sandbox's); callbacks keep arriving before, during and after. Switching sooner can
be refused: a container that re-read the secret after a refused request less than
SECRET_RECHECK_SECONDS ago does not re-read it again for the new credentials (docs/reliability.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import batch, recipients
from tools.local.aws import client as aws_client
from tools.local.client import SentMessage, StackClient, wait_for
from tools.local.stack import StackInfo

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUFFIXES = ("0001", "0002", "0003", "0010", "0011", "0012")
# Slow enough that each batch's callbacks are still coming while the next step happens (a message's
# events span up to 7.5 s).
SLOW_CALLBACKS = {"step_delay_min": 1.0, "step_delay_max": 2.5}


def run_in_terminal(command: Sequence[str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run `command` on a 120x40 pseudo-terminal; its exit code and the text it showed there."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    process = subprocess.Popen(
        list(command), cwd=cwd, env=env, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True
    )
    os.close(terminal)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal's other side is closed: the command is done
                break
            if not data:
                break
            shown += data
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return code, ANSI.sub("", shown.decode(errors="replace")).replace("\r\n", "\n")


def send(client: StackClient, prefix: str) -> list[SentMessage]:
    body = batch(prefix, recipients(*SUFFIXES))
    response = client.post_batch(body)
    assert response.status_code == 201, response.text
    return wait_for(lambda: client.settled(body["requestId"], len(SUFFIXES)), 15, f"the {prefix} batch")


def attempts_for(client: StackClient, messages: Sequence[SentMessage]) -> list[dict[str, Any]]:
    ids = {m.message_id for m in messages}
    return [a for a in client.sandbox_record()["callback_attempts"] if set(a["message_ids"]) & ids]


@pytest.fixture
def webhook_secret(stack: StackInfo) -> Iterator[None]:
    """The webhook secret as it was, put back afterwards (the webhook re-reads it within 5 s)."""
    secrets = aws_client("secretsmanager", stack.aws_endpoint_url, stack.region)
    original = secrets.get_secret_value(SecretId=stack.secrets["webhook"])["SecretString"]
    yield
    secrets.put_secret_value(SecretId=stack.secrets["webhook"], SecretString=original)
    secrets.close()


def test_rotating_the_credentials_while_callbacks_flow_refuses_none(
    client: StackClient, stack: StackInfo, operator: Path, webhook_secret: None
) -> None:
    """Given callbacks flowing from the sandbox with the current credentials,
    When the operator rotates them in a terminal, more callbacks come with the old ones, and once the
    secret's cache age has passed Ocelot's configuration is switched to the new ones from the screen,
    callbacks going on,
    Then the command shows the new credentials and exits 0, the webhook answered no callback 401,
    callbacks came after the switch, and every message ends as scripted."""
    client.sandbox_config(**SLOW_CALLBACKS)
    before = send(client, "rotate-before")
    wait_for(lambda: attempts_for(client, before) or None, 15, "the first callbacks")

    # When the operator rotates the credentials, callbacks still coming with the current ones
    command = [str(Path(sys.executable).parent / "ocelot-sms"), "--local", "webhook-credentials", "rotate"]
    code, screen = run_in_terminal(command, operator)
    during = send(client, "rotate-during")
    username = re.search(r"^username: (\S+)$", screen, re.MULTILINE)
    password = re.search(r"^password: (\S+)$", screen, re.MULTILINE)
    assert code == 0, screen
    assert username, screen
    assert password, screen
    assert re.search(r"between\s+\S+Z and \S+Z: ", screen), screen  # when to switch Ocelot over
    assert "the previous credentials work until the second time" in screen
    assert password.group(1) != stack.webhook_credentials["password"]

    # ... and, once the webhook's cache of the secret has expired, Ocelot's configuration is switched
    # to what the screen showed, callbacks going on
    time.sleep(float(stack.function_env["SECRET_MAX_AGE_SECONDS"]))
    switched_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    client.sandbox_config(webhook_username=username.group(1), webhook_password=password.group(1))
    after = send(client, "rotate-after")
    messages = before + during + after
    record = client.wait_callbacks_done([m.message_id for m in messages], 90)

    # Then no callback was refused, and every one was applied
    attempts = attempts_for(client, messages)
    assert [a for a in attempts if a["status_code"] == 401] == []
    assert {a["outcome"] for a in attempts} == {"delivered"}
    assert any(a["at"] > switched_at for a in attempts_for(client, during))  # flowing across the switch
    reports = client.report(messages, record)
    assert [r for r in reports if not r.ok] == []
    secrets = aws_client("secretsmanager", stack.aws_endpoint_url, stack.region)
    value = json.loads(secrets.get_secret_value(SecretId=stack.secrets["webhook"])["SecretString"])
    assert value["previous"]["password"] == stack.webhook_credentials["password"]
