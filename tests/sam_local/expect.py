"""The declared outcome of every file in events/ (tests/sam_local/expectations.json) and its checks.

An expectation says which function takes the event and what must follow:

    "function"  logical id in template.yaml
    "given"     the situation, in words (shown when the test fails)
    "response"  a subset of what the function returns (`sam local invoke`'s output)
    "body"      a subset of the JSON body, for API Gateway responses
    "items"     [{"key": [PK, SK], "match": {...}}]: items of the messages table, by key
    "absent"    [[PK, SK], ...]: keys that must not exist
    "count"     [{"where": {...}, "count": N}]: how many items match `where` (scan)
    "sandbox"   {"requests": N, "accepted": [[recipients of chunk 1], ...]}: what Ocelot received
    "recorded"  true: every message id in the body is stored (MSG#id/#META) with this requestId
    "applied"   then the table's stream is read as the applier's event source mapping reads it, and
                what its filter passes goes to ApplierFunction (`sam local invoke`): "response",
                "items", "absent" and "count" as above, checked after that

"Subset" is recursive: every key given must be there with a matching value; lists match item by
item and must have the same length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXPECTATIONS = Path(__file__).with_name("expectations.json")


def load() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(EXPECTATIONS.read_text())["events"]
    return data


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` does not contain `expected` (empty: it does)."""
    where = path or "(top)"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{where}: expected an object, got {actual!r}"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems.extend(mismatches(value, actual[key], f"{path}.{key}"))
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} items like {expected!r}, got {actual!r}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in mismatches(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def matches(where: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    return not mismatches(where, item)
