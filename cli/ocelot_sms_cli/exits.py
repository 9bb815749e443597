"""The one table of exit codes, and the exception that ends a command with one of them."""

from __future__ import annotations

from enum import IntEnum
from typing import IO, Any

import click


class Exit(IntEnum):
    DONE = 0
    UNEXPECTED = 1
    INVALID = 2
    UNKNOWN = 3
    REJECTED = 4
    CONFLICT = 5
    UNAVAILABLE = 6
    SETUP = 7


# Shown by --help (click keeps a paragraph after \b as it is) and in the README.
EXIT_CODES = """\b
Exit codes:
  0  done: every message accepted by Ocelot or left out as suppressed (with
     --wait: every message final); --at: scheduled; --dry-run: every part
     validated; status, sends, inbound, suppression: shown; cancel: cancelled
  1  unexpected error (run again with --debug to see where)
  2  invalid input: an option, the file, a row, the template, an unknown id;
     nothing was sent
  3  some outcomes unknown: a chunk Ocelot may or may not have taken, messages
     only queued (--via sqs without --wait), or not final when --wait ended
  4  rejected: Ocelot refused a part; the parts after it were not sent
  5  conflict: the send id was used before for other messages, or was
     cancelled; cancel: a part's sending already began
  6  unavailable, retry later: Ocelot, the API or the network; run the same
     command again: nothing accepted is sent twice
  7  not set up: no stack chosen, no AWS region or credentials, access denied,
     stack not found"""


class Failure(click.ClickException):
    """Ends the command with `code` and one line saying what happened and what to do next."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.exit_code = int(code)
        self.code = code

    def show(self, file: IO[Any] | None = None) -> None:
        """On stderr: wrapped between words on a terminal, one line when redirected."""
        from ocelot_sms_cli.views import console

        if file is not None:
            click.echo(self.format_message(), file=file)
            return
        console(stderr=True).print(self.format_message())
