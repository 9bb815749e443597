"""Every file in events/ through `sam local invoke`, checked against its declared outcome.

The outcomes live in tests/sam_local/expectations.json (format: tests/sam_local/expect.py): the
function that takes the event, its answer, and what it leaves behind in the tables (the local
stack's moto server) and at Ocelot (the stack's sandbox record); for the webhook's files, also what
the applier makes of the stored delivery once the table's stream hands it over. A file in events/
without an entry fails here, with or without Docker.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sam_local import checks, expect, harness
from tests.sam_local.conftest import LocalAws

pytestmark = pytest.mark.sam_local

EVENT_FILES = sorted(path.name for path in harness.EVENTS_DIR.glob("*.json"))
EXPECTED = expect.load()


def test_every_event_file_has_a_declared_expectation() -> None:
    """Given the files in events/ and the entries of expectations.json,
    Then each file has an entry and each entry a file."""
    undeclared = sorted(set(EVENT_FILES) - set(EXPECTED))
    stale = sorted(set(EXPECTED) - set(EVENT_FILES))
    assert not undeclared, (
        f"declare the outcome of {undeclared} in {expect.EXPECTATIONS.relative_to(harness.ROOT)}"
    )
    assert not stale, f"{stale} in {expect.EXPECTATIONS.relative_to(harness.ROOT)} name no file in events/"


def test_expectations_name_functions_of_the_template() -> None:
    """Given the expectations, Then each names a function template.yaml defines."""
    from tools.sam_local.env_vars import function_ids

    functions = set(function_ids())
    wrong = {name: e.get("function") for name, e in EXPECTED.items() if e.get("function") not in functions}
    assert not wrong, f"unknown functions (template.yaml has {sorted(functions)}): {wrong}"


@pytest.mark.parametrize("name", sorted(set(EVENT_FILES) | set(EXPECTED)))
def test_event_file(name: str, request: pytest.FixtureRequest) -> None:
    """Given a fresh set of tables and the Ocelot sandbox accepting every chunk,
    When `sam local invoke <function> -e events/<name>` runs the built function in a container,
    Then it answers as declared and leaves exactly the declared side effects."""
    expectation = EXPECTED.get(name)
    if expectation is None or not (harness.EVENTS_DIR / name).is_file():
        pytest.fail(f"events/{name} and {expect.EXPECTATIONS.name} disagree: see the test above")
    # Given (fixtures fetched here: an undeclared file fails above even where Docker is missing)
    sam: harness.SamLocal = request.getfixturevalue("sam")
    aws: LocalAws = request.getfixturevalue("aws")

    # When
    invocation = sam.invoke(expectation["function"], harness.EVENTS_DIR / name, aws.variables)

    # Then
    payload = invocation.payload
    problems = checks.runs_from_build(invocation)
    problems += expect.mismatches(expectation.get("response", {}), payload, "response")
    body = invocation.body if isinstance(payload, dict) and "body" in payload else {}
    if "body" in expectation:
        problems += expect.mismatches(expectation["body"], body, "body")
    problems += checks.side_effects(expectation, aws, body)
    if "applied" in expectation:
        problems += applied(expectation["applied"], sam, aws)
    assert not problems, "\n".join(
        [
            f"events/{name}: {expectation['given']}",
            *problems,
            "--- sam local invoke ---",
            invocation.log_tail(),
        ]
    )


def applied(expectation: dict[str, Any], sam: harness.SamLocal, aws: LocalAws) -> list[str]:
    """The table's stream read as the applier's event source mapping reads it (its filter), what it
    passes handed to ApplierFunction by `sam local invoke`; then the declared answer and items."""
    invoker = harness.SamInvoker(sam, aws.variables)
    poller = aws.stream_poller(invoker)
    try:
        poller.poll_once()
    finally:
        poller.stop()
    if not invoker.invocations:
        return ["applied: the stream handed the applier nothing"]
    invocation = invoker.invocations[-1]
    problems = checks.runs_from_build(invocation)
    problems += expect.mismatches(expectation.get("response", {}), invocation.payload, "applied.response")
    problems += [f"applied: {p}" for p in checks.side_effects(expectation, aws, {})]
    if problems:
        problems += ["--- sam local invoke ApplierFunction ---", invocation.log_tail()]
    return problems
