"""`ocelot-sms` for sends made later, suppression and replies, in a real terminal against the local
stack: `send --at` then `status` and `cancel`; `suppression add|list|remove`; `inbound`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ocelot_sms_cli.exits import Exit
from tests.integration.support import request_id
from tests.integration.test_cli_terminal import MAPPING, TEMPLATE, checkout, export, in_terminal, recipients
from tools.local.client import StackClient, wait_for

__all__ = ["checkout"]  # the fixture, used by the tests below


@pytest.fixture(autouse=True)
def callbacks_delivered(client: StackClient) -> Iterator[None]:
    """Each test ends once the sandbox has delivered every callback its sends caused: none is left to
    share a delivery with the next test's."""
    yield
    wait_for(lambda: client.sandbox_record()["pending"] == 0, 60, "the callbacks to be delivered")


def test_a_send_at_a_later_time_shows_as_scheduled_and_is_cancelled(
    client: StackClient, checkout: Path
) -> None:
    # Given an export of two students, to be sent in an hour
    csv_file = export(checkout, recipients("0010", "0011"))
    send_id = request_id("later")
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)

    # When the operator sends it with --at
    shown = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE, "--at", at.isoformat()],
        cwd=checkout,
    )

    # Then it says when it will be sent, and exits 0
    assert shown.code == Exit.DONE, shown.screen
    assert "scheduled" in shown.flat
    assert f"{at:%Y-%m-%dT%H:%M:%S}" in shown.flat

    # And its status shows it scheduled
    status = in_terminal(["--local", "status", send_id], cwd=checkout)
    assert status.code == Exit.DONE, status.screen
    assert "scheduled" in status.flat

    # When cancelled; Then it says so, exit 0; and cancelling it again after is the same
    cancelled = in_terminal(["--local", "cancel", send_id], cwd=checkout)
    assert cancelled.code == Exit.DONE, cancelled.screen
    assert f"send {send_id}: 1 part cancelled; nothing of it will be sent" in cancelled.flat
    assert "cancelled" in in_terminal(["--local", "status", send_id], cwd=checkout).flat

    # And a send made at once cannot be cancelled: exit 5, saying why
    now_id = request_id("now")
    sent = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", now_id, *MAPPING, *TEMPLATE], cwd=checkout
    )
    assert sent.code == Exit.DONE, sent.screen
    too_late = in_terminal(["--local", "cancel", now_id], cwd=checkout)
    assert too_late.code == Exit.CONFLICT, too_late.screen
    assert "could not be cancelled" in too_late.flat


def test_suppression_add_list_remove_and_a_send_leaving_the_number_out(
    client: StackClient, checkout: Path
) -> None:
    # Given a number the operator suppresses, written as people type it
    numbers = recipients("0010", "0011")
    local = numbers[1].removeprefix("+1")
    added = in_terminal(
        ["--local", "suppression", "add", f"({local[:3]}) {local[3:6]}-{local[6:]}"], cwd=checkout
    )
    assert added.code == Exit.DONE, added.screen

    # When listed; Then it is there, masked, from an operator
    listed = in_terminal(["--local", "suppression", "list"], cwd=checkout)
    assert listed.code == Exit.DONE, listed.screen
    assert f"****{numbers[1][-4:]}" in listed.flat
    assert numbers[1] not in listed.flat
    assert "operator" in listed.flat

    # When a send includes it; Then the message to it is left out, reported as suppressed, exit 0
    csv_file = export(checkout, numbers)
    send_id = request_id("supp")
    shown = in_terminal(
        ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE], cwd=checkout
    )
    assert shown.code == Exit.DONE, shown.screen
    assert "suppressed" in shown.flat

    # When removed; Then it is no longer listed
    removed = in_terminal(["--local", "suppression", "remove", numbers[1]], cwd=checkout)
    assert removed.code == Exit.DONE, removed.screen
    assert f"****{numbers[1][-4:]}" not in in_terminal(["--local", "suppression", "list"], cwd=checkout).flat


def test_inbound_lists_replies_linked_to_what_they_answer(client: StackClient, checkout: Path) -> None:
    # Given a student who replies to the message sent to them
    numbers = recipients("0010")
    client.sandbox_config(replies={numbers[0][-4:]: "Is it in room 12?"})
    csv_file = export(checkout, numbers)
    send_id = request_id("ask")
    assert (
        in_terminal(
            ["--local", "send", str(csv_file), "--send-id", send_id, *MAPPING, *TEMPLATE], cwd=checkout
        ).code
        == Exit.DONE
    )
    wait_for(lambda: any(r["from"] == numbers[0] for r in client.inbound()), 30, "the reply")

    # When the operator lists replies
    shown = in_terminal(["--local", "inbound"], cwd=checkout)

    # Then the reply's text, the masked number, and the send and ref it answers are shown
    assert shown.code == Exit.DONE, shown.screen
    assert "Is it in room 12?" in shown.flat
    assert f"****{numbers[0][-4:]}" in shown.flat
    assert re.search(rf"{send_id}", shown.flat)
    assert "S0000" in shown.flat
