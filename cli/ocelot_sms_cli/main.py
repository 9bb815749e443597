"""ocelot-sms: send a spreadsheet (now or later), follow a send, look at sends, messages and replies,
cancel, suppress, reconcile, replay, redrive."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ocelot_sms.clock import iso
from ocelot_sms.errors import DomainError, Unavailable
from ocelot_sms.observability import metrics_dropped
from ocelot_sms.settings import SECRET_MAX_AGE_LIMIT
from ocelot_sms_cli import commands
from ocelot_sms_cli.aws_errors import explain
from ocelot_sms_cli.context import OUTPUT_OPTION, Where, pass_target
from ocelot_sms_cli.exits import EXIT_CODES, Exit, Failure
from ocelot_sms_cli.inbound import inbound
from ocelot_sms_cli.schedule import cancel
from ocelot_sms_cli.suppression import suppression
from ocelot_sms_cli.target import Target
from ocelot_sms_cli.times import Instant
from ocelot_sms_cli.views import console


class OcelotGroup(click.Group):
    """Every AWS, network or domain error as one line and its exit code; a traceback only with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with metrics_dropped():
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DomainError as error:
            code = Exit.UNAVAILABLE if isinstance(error, Unavailable) else Exit.INVALID
            raise Failure(str(error), code) from error
        except Exception as error:
            failure = explain(error)
            if failure is not None:
                raise failure from error
            if ctx.params.get("debug"):
                raise
            raise Failure(
                f"unexpected error: {type(error).__name__}: {error} (run again with --debug to see where)",
                Exit.UNEXPECTED,
            ) from error


@click.group(cls=OcelotGroup, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ocelot-sms", prog_name="ocelot-sms")
@click.option(
    "--stack",
    "stack_name",
    envvar="OCELOT_SMS_STACK",
    show_envvar=True,
    metavar="NAME",
    help="The deployed stack to use (its CloudFormation outputs are read).",
)
@click.option(
    "--local",
    "use_local",
    is_flag=True,
    help="Use the local stack: .local/stack.json in this folder or the nearest one above it.",
)
@click.option(
    "--stack-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use the local stack described by this stack.json.",
)
@click.option(
    "--profile", envvar="AWS_PROFILE", show_envvar=True, help="AWS profile (as the AWS CLI's --profile)."
)
@click.option(
    "--region", envvar="AWS_REGION", show_envvar=True, help="AWS region (default: the profile's region)."
)
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.pass_context
def cli(
    ctx: click.Context,
    stack_name: str | None,
    use_local: bool,
    stack_file: Path | None,
    profile: str | None,
    region: str | None,
    debug: bool,
) -> None:
    """Send texts through Ocelot from a spreadsheet and follow what happened to every one of them."""
    from_environment = ctx.get_parameter_source("stack_name") is ParameterSource.ENVIRONMENT
    ctx.obj = Where(stack_name, from_environment, use_local, stack_file, region, profile)


@cli.command()
@click.option("--since", required=True, type=Instant(), help="ISO date or instant (UTC if no offset).")
@click.option(
    "--until",
    default=None,
    type=Instant(end_of_day=True),
    help="ISO date (inclusive) or instant; default now.",
)
@pass_target
def replay(target: Target, since: datetime, until: datetime | None) -> None:
    """Apply stored raw callbacks again, through the current contract (idempotent). Prints a JSON report."""
    from ocelot_sms.applier import replay_deliveries
    from ocelot_sms.runtime import applier_service, store

    report = replay_deliveries(store(), applier_service(), since, until or datetime.now(UTC))
    click.echo(json.dumps(report.to_json(), indent=2))


@cli.command()
@click.option(
    "--max-messages",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Move at most this many messages.",
)
@pass_target
def redrive(target: Target, max_messages: int) -> None:
    """Move messages from the dead-letter queue back to the send queue."""
    from ocelot_sms_cli.redrive import redrive_queue

    moved = redrive_queue(target.client("sqs"), target.dlq_url, target.queue_url, max_messages)
    console().print(f"moved {moved} message(s) from the dead-letter queue to the send queue")


@cli.group("webhook-credentials")
def webhook_credentials() -> None:
    """The credentials Ocelot presents to the webhook."""


@webhook_credentials.command("rotate")
@click.option(
    "--overlap",
    default=24,
    show_default=True,
    type=click.IntRange(min=1),
    help="Hours the current credentials keep working: the time to change Ocelot's configuration.",
)
@OUTPUT_OPTION
@pass_target
def webhook_credentials_rotate(target: Target, overlap: int, output: str) -> None:
    """New webhook credentials; the current ones keep working for --overlap hours."""
    from ocelot_sms_cli.webhook_credentials import rotate

    if not target.webhook_secret_id:
        raise Failure("this stack names no webhook secret (output WebhookSecretId)", Exit.SETUP)
    value = rotate(
        target.client("secretsmanager"), target.webhook_secret_id, timedelta(hours=overlap), datetime.now(UTC)
    )
    until = value.get("previous", {}).get("acceptedUntil")
    # Every container has read the new secret (with both credentials in it) by then.
    ready = iso(datetime.now(UTC) + timedelta(seconds=SECRET_MAX_AGE_LIMIT))
    shown = {k: value[k] for k in ("username", "password", "token") if k in value}
    if output == "json":
        click.echo(json.dumps({**shown, "setInOcelotFrom": ready, "previousAcceptedUntil": until}, indent=2))
        return
    if output == "csv":
        click.echo("username,password,token,set_in_ocelot_from,previous_accepted_until")
        click.echo(f"{shown['username']},{shown['password']},{shown.get('token', '')},{ready},{until or ''}")
        return
    lines = [f"username: {value['username']}", f"password: {value['password']}"]
    if "token" in value:
        lines.append(f"token:    {value['token']}  (the webhook URL's ?token=)")
    if until:
        lines += [
            "Set these in Ocelot's Admin Portal (Integrations > Ocelot API) between",
            f"{ready} and {until}: the functions read the secret again within",
            f"{SECRET_MAX_AGE_LIMIT // 60} minutes, and the previous credentials work until the second time.",
        ]
    out = console()
    for line in lines:
        out.print(line, soft_wrap=True)  # never wrapped: an operator copies these


for command in (
    commands.send,
    commands.status,
    commands.sends,
    commands.reconcile,
    cancel,
    suppression,
    inbound,
):
    cli.add_command(command)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
