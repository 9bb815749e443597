"""Rotating the credentials Ocelot presents to the webhook, without refusing a single callback.

The new credentials go into the secret with the ones they replace, as `previous` with an
`acceptedUntil`: the webhook takes both until then (ocelot_sms.credentials.WebhookCredentials),
which is the time an operator has to change Ocelot's configuration.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from ocelot_sms.clock import iso


def rotated(current: dict[str, Any], overlap: timedelta, now: datetime) -> dict[str, Any]:
    """The secret's next value: fresh password (and token, when it had one), the current ones kept
    as `previous` until `now + overlap`. An older `previous` is dropped: one rotation at a time."""
    kept = {k: current[k] for k in ("username", "password", "token") if isinstance(current.get(k), str)}
    fresh: dict[str, Any] = {
        "username": kept.get("username") or "ocelot",
        "password": secrets.token_urlsafe(30),
    }
    if "token" in kept:
        fresh["token"] = secrets.token_urlsafe(30)
    if kept:
        fresh["previous"] = {**kept, "acceptedUntil": iso(now + overlap)}
    return fresh


def rotate(client: Any, secret_id: str, overlap: timedelta, now: datetime) -> dict[str, Any]:
    """Write the rotated value as the secret's new version; returns it."""
    current = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    value = rotated(current if isinstance(current, dict) else {}, overlap, now)
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
    return value
