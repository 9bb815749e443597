"""The one way tests read the files in events/ (the same files `sam local invoke -e` takes)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"


@cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A fresh copy of events/<name>(.json); top-level keys can be overridden."""
    event = copy.deepcopy(_read(name if name.endswith(".json") else f"{name}.json"))
    event.update(overrides)
    return event


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """An API Gateway event carrying another body (a str is sent as it is, anything else as JSON)."""
    event = copy.deepcopy(event)
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event
