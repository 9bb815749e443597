"""Rotating the webhook's credentials: the new ones and the previous ones both accepted until the
overlap ends, by the webhook's own check."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from click.testing import CliRunner

from ocelot_sms.credentials import WebhookCredentials
from ocelot_sms_cli import main as cli_main
from ocelot_sms_cli.context import Where
from ocelot_sms_cli.exits import Exit
from ocelot_sms_cli.target import Target
from ocelot_sms_cli.webhook_credentials import rotated
from tests.unit.support.aws import WEBHOOK_CREDENTIALS

NOW = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)


def test_a_rotation_keeps_the_current_credentials_as_previous_until_the_overlap_ends() -> None:
    value = rotated(dict(WEBHOOK_CREDENTIALS), timedelta(hours=24), NOW)
    assert value["username"] == WEBHOOK_CREDENTIALS["username"]
    assert value["password"] != WEBHOOK_CREDENTIALS["password"]
    assert value["token"] != WEBHOOK_CREDENTIALS["token"]
    assert len(value["password"]) >= 32
    assert value["previous"] == {**WEBHOOK_CREDENTIALS, "acceptedUntil": "2026-11-27T16:00:00.000000Z"}
    # And the webhook's own check takes both until then, and only the new ones after
    creds = WebhookCredentials.from_value(value)
    old, new = ("ocelot", WEBHOOK_CREDENTIALS["password"]), ("ocelot", value["password"])
    assert creds.accepts(old, None, now=NOW + timedelta(hours=23))
    assert creds.accepts(new, None, now=NOW + timedelta(hours=23))
    assert not creds.accepts(old, None, now=NOW + timedelta(hours=24))
    assert creds.accepts(new, None, now=NOW + timedelta(days=400))


def test_a_second_rotation_forgets_the_oldest_and_a_token_is_made_only_where_there_was_one() -> None:
    first = rotated({"username": "ocelot", "password": "p0"}, timedelta(hours=1), NOW)
    second = rotated(first, timedelta(hours=1), NOW)
    assert "token" not in first
    assert second["previous"] == {
        "username": "ocelot",
        "password": first["password"],
        "acceptedUntil": "2026-11-26T17:00:00.000000Z",
    }


def test_rotate_writes_the_secret_and_prints_what_to_give_ocelot(target: Target) -> None:
    result = CliRunner().invoke(cli_main.cli, ["--local", "webhook-credentials", "rotate", "--overlap", "6"])
    assert result.exit_code == 0, result.output
    stored = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=target.webhook_secret_id or "")[
            "SecretString"
        ]
    )
    assert f"password: {stored['password']}" in result.output
    assert f"token:    {stored['token']}" in result.output
    assert stored["previous"]["password"] == WEBHOOK_CREDENTIALS["password"]
    until = datetime.fromisoformat(stored["previous"]["acceptedUntil"])
    assert timedelta(hours=5, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=6)
    # To be set in Ocelot once every function has read the new secret (cached at most 5 minutes),
    # and before the previous credentials stop working
    window = re.search(r"^(\S+) and (\S+): the functions read the secret", result.output, re.MULTILINE)
    assert window is not None, result.output
    assert window[2] == stored["previous"]["acceptedUntil"]
    ready = datetime.fromisoformat(window[1])
    assert timedelta(minutes=4, seconds=59) < ready - datetime.now(UTC) <= timedelta(minutes=5)


def test_rotate_as_json_for_a_script(target: Target) -> None:
    result = CliRunner().invoke(cli_main.cli, ["--local", "webhook-credentials", "rotate", "-o", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    stored = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId="ocelot-webhook")["SecretString"]
    )
    assert (shown["username"], shown["password"]) == (stored["username"], stored["password"])
    assert shown["previousAcceptedUntil"] == stored["previous"]["acceptedUntil"]
    assert datetime.fromisoformat(shown["setInOcelotFrom"]) < datetime.fromisoformat(
        shown["previousAcceptedUntil"]
    )


def test_rotate_needs_a_webhook_secret(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Where, "target", lambda self: replace(target, webhook_secret_id=None))
    result = CliRunner(mix_stderr=False).invoke(cli_main.cli, ["--local", "webhook-credentials", "rotate"])
    assert result.exit_code == Exit.SETUP
    assert "names no webhook secret" in result.stderr
