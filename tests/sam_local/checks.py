"""Checks shared by the sam_local tests: side effects against a declared outcome, and provenance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocelot_sms.store import keys
from tests.sam_local import harness
from tests.sam_local.expect import matches, mismatches

if TYPE_CHECKING:
    from tests.sam_local.conftest import LocalAws


def runs_from_build(invocation: harness.Invocation) -> list[str]:
    """SAM mounted the function's BUILT folder at /var/task, and nothing from the source tree.

    (The layer is not mounted at all: SAM bakes .aws-sam/build/SharedLayer into the image it runs,
    at /opt/python; test_start_api.py looks inside a running container to show it.)
    """
    problems = []
    mount = f"Mounting {harness.BUILD_DIR / invocation.function} as /var/task"
    if mount not in invocation.stderr:
        problems.append(f"SAM did not mount the built function: no {mount!r} in its log")
    for source in (harness.ROOT / "functions", harness.ROOT / "layers"):
        if str(source) in invocation.stderr:
            problems.append(f"SAM's log mentions the source folder {source}")
    return problems


def side_effects(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    """Every difference between what the invocation left behind and what the expectation declares."""
    checks = (_items, _absent, _counts, _sandbox, _recorded, _problem_fields)
    return [problem for check in checks for problem in check(expectation, aws, body)]


def _items(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    problems: list[str] = []
    for spec in expectation.get("items", []):
        pk, sk = spec["key"]
        item = aws.item(pk, sk)
        if item is None:
            problems.append(f"item {pk} / {sk}: missing")
        else:
            problems.extend(mismatches(spec.get("match", {}), item, f"item {pk} / {sk}"))
    return problems


def _absent(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    return [
        f"item {pk} / {sk}: present, expected absent"
        for pk, sk in expectation.get("absent", [])
        if aws.item(pk, sk) is not None
    ]


def _counts(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    if "count" not in expectation:
        return []
    items = aws.scan()
    problems = []
    for spec in expectation["count"]:
        found = sum(1 for item in items if matches(spec["where"], item))
        if found != spec["count"]:
            problems.append(f"items matching {spec['where']}: {found}, expected {spec['count']}")
    return problems


def _sandbox(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    if "sandbox" not in expectation:
        return []
    record, spec = aws.client.sandbox_record(), expectation["sandbox"]
    problems = []
    if "requests" in spec and len(record["requests"]) != spec["requests"]:
        problems.append(f"Ocelot sandbox got {len(record['requests'])} requests, expected {spec['requests']}")
    if "accepted" in spec:
        problems.extend(mismatches(spec["accepted"], record["accepted"], "sandbox.accepted"))
    return problems


def _recorded(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    """Each message of the answer recorded under the id the sandbox gave it."""
    if not expectation.get("recorded"):
        return []
    given = aws.client.sandbox_record()["messages"]
    messages = body.get("messages", [])
    problems = [] if messages else ["body.messages: none, expected the accepted messages"]
    for message in messages:
        message_id = message.get("messageId")
        meta = aws.item(*keys.message_meta(message_id).values()) if message_id else None
        if meta is None or meta.get("requestId") != body.get("requestId"):
            problems.append(f"message {message_id}: not recorded as the meta item of {body.get('requestId')}")
        if message_id not in given:
            problems.append(f"message {message_id}: not an id the Ocelot sandbox gave")
    return problems


def _problem_fields(expectation: Mapping[str, Any], aws: LocalAws, body: Any) -> list[str]:
    if "problem_fields" not in expectation:
        return []
    fields = {problem.get("field") for problem in body.get("problems", [])}
    missing = sorted(set(expectation["problem_fields"]) - fields)
    return [f"body.problems: no problem for {missing} (got {sorted(map(str, fields))})"] if missing else []
