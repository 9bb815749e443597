"""Scheduled: messages accepted long ago that never reached a terminal status become `unknown`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ocelot_sms.observability import logger, metrics
from ocelot_sms.runtime import store
from ocelot_sms.settings import get_settings
from ocelot_sms.sweep import mark_stale_messages


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return {"marked": mark_stale_messages(store(), older_than_hours=get_settings().stale_after_hours)}
