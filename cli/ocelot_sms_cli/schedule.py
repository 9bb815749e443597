"""`ocelot-sms cancel SEND_ID`: a send scheduled for later (`send --at`, or quiet hours) cancelled, part
by part (DELETE /batches/{requestId}), as long as its time has not come."""

from __future__ import annotations

import click
import requests

from ocelot_sms_cli import views
from ocelot_sms_cli.api import Api, NotFoundError, error_message, quoted
from ocelot_sms_cli.context import pass_target
from ocelot_sms_cli.exits import EXIT_CODES, Exit, Failure
from ocelot_sms_cli.sending import when
from ocelot_sms_cli.target import Target


def _parts(api: Api, send_id: str) -> list[str]:
    """The request ids of the send's parts, or the id itself when it names a batch."""
    try:
        view = api.get(f"/sends/{quoted(send_id)}", {"limit": 0})
        return [part["requestId"] for part in view.get("parts", [])]
    except NotFoundError:
        pass
    try:
        api.get(f"/batches/{quoted(send_id)}", {"limit": 1})
    except NotFoundError:
        raise Failure(
            f"no send or batch {send_id!r}: check the id; `ocelot-sms sends` lists recent sends", Exit.INVALID
        ) from None
    return [send_id]


@click.command(epilog=EXIT_CODES)
@click.argument("send_id", metavar="SEND_ID")
@pass_target
def cancel(target: Target, send_id: str) -> None:
    """Cancel a send scheduled for later: none of its messages is sent. Too late once its time came."""
    api = Api(target)
    out = views.console()
    cancelled, too_late = 0, []
    for request_id in _parts(api, send_id):
        try:
            response = api.request("DELETE", f"/batches/{quoted(request_id)}")
        except requests.RequestException as error:
            raise Failure(
                f"could not reach the API ({type(error).__name__}): run the same command again",
                Exit.UNAVAILABLE,
            ) from error
        if response.status_code == 200:
            cancelled += 1
            out.print(f"{request_id}: cancelled (it was to be sent at {when(response.json())})")
        elif response.status_code == 409:
            too_late.append(request_id)
            out.print(f"{request_id}: not cancelled: {error_message(response)}")
        else:
            raise Failure(
                f"{request_id}: the API answered {response.status_code}: {error_message(response)}; run the "
                "same command again in a minute",
                Exit.UNAVAILABLE,
            )
    if too_late:
        raise Failure(
            f"{len(too_late)} part(s) of send {send_id} could not be cancelled (sent at once, or their time "
            f"came); {cancelled} cancelled; `ocelot-sms status {send_id}` shows what was sent",
            Exit.CONFLICT,
        )
    out.print(f"send {send_id}: {views.count(cancelled, 'part')} cancelled; nothing of it will be sent")
