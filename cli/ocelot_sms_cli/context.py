"""What every command shares: the stack it works on (resolved once, when first needed) and the
options of its output."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate

import click

from ocelot_sms.observability import logger
from ocelot_sms_cli.exits import Exit, Failure
from ocelot_sms_cli.target import Target, TargetError, find_local_stack_file, local_target, stack_target
from ocelot_sms_cli.views import OUTPUTS

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUTS),
    default="table",
    show_default=True,
    help="table for a person; csv for a spreadsheet (one row per message); json as the API answers.",
)
SHOW_NUMBERS_OPTION = click.option(
    "--show-numbers", is_flag=True, help="Show recipients' numbers whole (masked by default: ********0001)."
)


@dataclass(frozen=True)
class Where:
    """The group's options; the target is looked up when a command needs it (so `--help` of any command
    and the checks of a file work without a stack)."""

    stack_name: str | None
    stack_from_environment: bool
    use_local: bool
    stack_file: Path | None
    region: str | None
    profile: str | None

    def target(self) -> Target:
        local = self.use_local or self.stack_file is not None
        if self.stack_name and local and not self.stack_from_environment:
            raise Failure("choose one stack: --stack NAME, or --local / --stack-file", Exit.INVALID)
        try:
            if self.stack_file is not None:
                return local_target(self.stack_file)
            if self.use_local:
                return local_target(find_local_stack_file(Path.cwd()))
            if self.stack_name:
                return stack_target(self.stack_name, self.region, self.profile)
        except TargetError as error:
            raise Failure(str(error), error.code) from error
        raise Failure(
            "no stack chosen: give --stack NAME (or set OCELOT_SMS_STACK=NAME) for a deployed stack, or "
            "--local for the one `make local-up` started",
            Exit.SETUP,
        )


class _StderrNow:
    """The layer's log lines go to whatever stderr is now: stdout is the command's output."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def current_target() -> Target:
    """The chosen stack, resolved once per command, with the layer's code pointed at it."""
    context = click.get_current_context()
    found = context.meta.get("ocelot_sms.target")
    if found is None:
        where = context.find_object(Where)
        assert where is not None  # set by the group
        found = where.target()
        found.apply_to_environment()
        handler = logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            stream: Any = _StderrNow()
            handler.setStream(stream)
        context.meta["ocelot_sms.target"] = found
    target: Target = found
    return target


def pass_target[**P, R](command: Callable[Concatenate[Target, P], R]) -> Callable[P, R]:
    @functools.wraps(command)
    def with_target(*args: P.args, **kwargs: P.kwargs) -> R:
        return command(current_target(), *args, **kwargs)

    return with_target
