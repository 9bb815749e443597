"""AWS cost per 1,000,000 messages from the measured workloads and public us-east-1 prices: the
webhook (API Gateway, Lambda, one write per callback), the table's stream and the applier (Lambda, the
event and state writes), the sender.

Prices are the author's knowledge of the public price pages (see PRICES: each says since when it is
known to apply). Re-check them before quoting; docs/performance.md lists them with their dates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

LAMBDA_MB_PER_VCPU = 1769  # Lambda: 1,769 MB of memory = one full vCPU; CPU scales with memory


@dataclass(frozen=True, slots=True)
class Price:
    usd: float
    unit: str
    source: str


PRICES: dict[str, Price] = {
    "api_http_request": Price(
        1.00 / 1e6,
        "HTTP API request (first 300M/month; metered per 512 KB)",
        "API Gateway pricing, HTTP APIs, us-east-1; unchanged since HTTP APIs went GA (March 2020)",
    ),
    "lambda_gb_s": Price(
        0.0000166667,
        "GB-second, x86_64 (first 6B GB-s/month tier)",
        "AWS Lambda pricing, us-east-1; 1 ms billing granularity since December 2020",
    ),
    "lambda_request": Price(0.20 / 1e6, "request", "AWS Lambda pricing, us-east-1"),
    "sqs_request": Price(
        0.40 / 1e6,
        "standard-queue request per 64 KB chunk (after 1M free/month)",
        "Amazon SQS pricing, us-east-1",
    ),
    "ddb_wru": Price(
        0.625 / 1e6,
        "on-demand write request unit (1 KB)",
        "DynamoDB on-demand pricing, us-east-1, after the 50% cut effective 1 November 2024",
    ),
    "ddb_rru": Price(
        0.125 / 1e6,
        "on-demand read request unit (4 KB strongly consistent)",
        "DynamoDB on-demand pricing, us-east-1, effective 1 November 2024",
    ),
    "logs_gb": Price(
        0.50,
        "GB ingested, CloudWatch Logs Standard (Lambda logs: first 10 TB/month tier)",
        "Amazon CloudWatch pricing, us-east-1 (Lambda log tiers since May 2025)",
    ),
    "xray_trace": Price(
        5.00 / 1e6,
        "trace recorded (first 100,000/month free)",
        "AWS X-Ray pricing, us-east-1",
    ),
    "eventbridge_event": Price(
        1.00 / 1e6,
        "custom event put on an event bus (per 64 KB chunk)",
        "Amazon EventBridge pricing, us-east-1",
    ),
    "ddb_storage_gb_month": Price(0.25, "GB-month, Standard table class", "DynamoDB pricing, us-east-1"),
    "ddb_pitr_gb_month": Price(0.20, "GB-month of continuous backups (PITR)", "DynamoDB pricing, us-east-1"),
}

# Assumptions (docs/performance.md repeats them).
CALLBACKS_PER_MESSAGE = 3  # queued, sent, delivered
PLATFORM_LOG_BYTES = 400  # START/END/REPORT lines Lambda writes per invocation (+ X-Ray trace id)
XRAY_SAMPLED = 0.05  # Lambda active tracing, default rule: 1 request/second + 5% of the rest


@cache
def traced_by_default() -> bool:
    """Whether a stack deployed with the template's defaults has X-Ray traces to pay for."""
    from tools.template_resources import load_template

    return bool(load_template()["Parameters"]["Tracing"]["Default"] == "Active")


OCELOT_LATENCY_S = 0.30  # per send request: the sandbox answers at once, the real API does not
API_BILLING_STEP = 512 * 1024
GB = 1024**3


def lambda_duration_s(wall_s: float, cpu_s: float, memory_mb: int, overlapped: bool) -> float:
    """Duration in Lambda at `memory_mb`: the CPU measured here stretched to the vCPU share Lambda
    gives that memory (this machine's core taken as one Lambda vCPU).

    overlapped: the waits ran concurrently with the CPU work (webhook with its thread pool), so the
    duration is the longer of the two; otherwise (sender, sequential) they add up.
    """
    scale = max(1.0, LAMBDA_MB_PER_VCPU / memory_mb)
    if overlapped:
        return max(wall_s, cpu_s * scale)
    return wall_s + cpu_s * (scale - 1)


def _billed_s(duration_s: float) -> float:
    return math.ceil(duration_s * 1000) / 1000


def _per_million(
    step: Mapping[str, Any],
    memory_mb: int,
    invocations: float,
    duration_s: float,
    api: bool,
    sqs_requests: int = 0,
) -> dict[str, float]:
    """Cost per 1M messages of `invocations` like `step`, each called through the HTTP API (`api`: a
    request, an access log line) or through the queue (`sqs_requests` each)."""
    ddb = step["ddb"]
    api_units = max(1, math.ceil(int(step["request_bytes"]) / API_BILLING_STEP)) if api else 0
    log_bytes = step["log_bytes"] + PLATFORM_LOG_BYTES + (step["access_log_bytes"] if api else 0)
    return {
        "api_gateway": invocations * api_units * _p("api_http_request"),
        "lambda_requests": invocations * _p("lambda_request"),
        "lambda_compute": invocations * _billed_s(duration_s) * memory_mb / 1024 * _p("lambda_gb_s"),
        "dynamodb_writes": invocations * (ddb["write_units"] + ddb["gsi_write_units"]) * _p("ddb_wru"),
        "dynamodb_reads": invocations * ddb["read_units"] * _p("ddb_rru"),
        "logs": invocations * log_bytes / GB * _p("logs_gb"),
        "xray": invocations * XRAY_SAMPLED * _p("xray_trace") if traced_by_default() else 0.0,
        "sqs": invocations * sqs_requests * _p("sqs_request"),
    }


def webhook_per_million(step: Mapping[str, Any], memory_mb: int, access_log_bytes: int) -> dict[str, float]:
    """Webhook cost per 1M messages when each callback carries `step['events']` events: one invocation
    per callback, one write (the raw delivery) each."""
    invocations = 1e6 * CALLBACKS_PER_MESSAGE / int(step["events"])
    duration = lambda_duration_s(step["wall_s"], step["cpu_s"], memory_mb, overlapped=False)
    return _per_million(
        {**step, "access_log_bytes": access_log_bytes}, memory_mb, invocations, duration, api=True
    )


def applier_per_million(
    step: Mapping[str, Any], memory_mb: int, events_per_callback: int
) -> dict[str, float]:
    """Applier cost per 1M messages: one stream record per callback of `events_per_callback` events,
    `step['deliveries']` records per invocation as measured. The stream costs nothing here: a table's
    stream is not billed, and Lambda reading it for a function is not billed either."""
    records = 1e6 * CALLBACKS_PER_MESSAGE / events_per_callback
    invocations = records / int(step.get("deliveries", 1))
    duration = lambda_duration_s(step["wall_s"], step["cpu_s"], memory_mb, overlapped=True)
    return {
        **_per_million({**step, "access_log_bytes": 0}, memory_mb, invocations, duration, api=False),
        "dynamodb_streams": 0.0,
    }


def sender_per_million(
    step: Mapping[str, Any], memory_mb: int, chunk_size: int, access_log_bytes: int, via_queue: bool
) -> dict[str, float]:
    """Sender cost per 1M messages sent in requests of `step['messages']` messages, by API or queue."""
    invocations = 1e6 / int(step["messages"])
    duration = lambda_duration_s(step["wall_s"], step["cpu_s"], memory_mb, overlapped=False)
    duration += math.ceil(int(step["messages"]) / chunk_size) * OCELOT_LATENCY_S
    # Through the queue: SendMessage, ReceiveMessage (each per 64 KB chunk of the body) and DeleteMessage.
    sqs_requests = 2 * max(1, math.ceil(step["request_bytes"] / (64 * 1024))) + 1 if via_queue else 0
    step = {**step, "access_log_bytes": access_log_bytes}
    return _per_million(step, memory_mb, invocations, duration, api=not via_queue, sqs_requests=sqs_requests)


def publisher_per_million(batch_size: int) -> dict[str, float]:
    """Status events out per 1M messages, modelled (the bench does not run the publisher): a message's
    first status (accepted) and one change per callback, each an EventBridge event; the stream's records
    read `batch_size` at a time. Its compute and logs are not measured and not counted."""
    events = 1e6 * (1 + CALLBACKS_PER_MESSAGE)
    return {
        "eventbridge_events": events * _p("eventbridge_event"),
        "lambda_requests": events / batch_size * _p("lambda_request"),
    }


def storage_per_million(
    item_sizes: Mapping[str, Mapping[str, float]], events_per_callback: int
) -> dict[str, float]:
    """GB kept per 1M messages and its monthly price (outside the per-message goal: it accrues monthly)."""

    def mean(kind: str) -> float:
        return float(item_sizes.get(kind, {}).get("mean", 0.0))

    per_message = (
        2 * mean("MSG/META")  # the item and its GSI1 copy (projection ALL)
        + mean("MSG/STATE")
        + CALLBACKS_PER_MESSAGE * mean("MSG/EVT")
        + CALLBACKS_PER_MESSAGE * mean("RAW/*") / events_per_callback
    )
    # A table's stream keeps each change for 24 hours at no charge: nothing to add.
    gigabytes = 1e6 * per_message / GB
    return {
        "bytes_per_message": per_message,
        "gb": gigabytes,
        "usd_per_month": gigabytes * (_p("ddb_storage_gb_month") + _p("ddb_pitr_gb_month")),
    }


def _p(name: str) -> float:
    return PRICES[name].usd


def prices_table() -> list[dict[str, Any]]:
    return [
        {"name": name, "usd": price.usd, "unit": price.unit, "source": price.source}
        for name, price in PRICES.items()
    ]


# ---- the model: each part's measured run, per callback size -------------------------------------------

COST_SIZES = (1, 10, 100)  # events per callback
MEMORY_SIZES = (128, 256, 512, 1024, 1769)


def publisher_batch_size() -> int:
    """Stream records per publisher invocation, as the template's mapping asks."""
    from tools.template_resources import resource

    return int(resource("PublisherStreamMapping")["Properties"]["BatchSize"])


def access_log_bytes() -> int:
    """One API Gateway access log line in the template's format, with typical values."""
    from tools.template_resources import resource

    line = str(resource("HttpApi")["Properties"]["AccessLogSettings"]["Format"])
    for name, value in {
        "$context.requestId": "JqWq7iSxIAMEVbQ=",
        "$context.routeKey": "POST /webhooks/ocelot",
        "$context.status": "200",
        "$context.responseLatency": "42",
        "$context.integrationErrorMessage": "-",
        "$context.identity.sourceIp": "203.0.113.17",
        "$context.identity.userAgent": "Ocelot-Webhook/1.0",
    }.items():
        line = line.replace(name, value)
    return len(line.encode()) + 1


def model(
    webhook: Mapping[str, Any],
    applier: Mapping[str, Any],
    sender: Mapping[str, Any],
    memory: Mapping[str, int],
) -> dict[str, Any]:
    """Cost per 1M messages for callbacks of 1, 10 and 100 events: the webhook's run at that size, the
    applier's (a batch of BatchSize one-event deliveries for 1; one delivery per invocation above, which
    overstates its Lambda requests), the sender's 10,000-message request."""
    access = access_log_bytes()
    middle, chunk = sender["middle"], sender["chunk_size"]
    sender_api = sender_per_million(middle, memory["SenderFunction"], chunk, access, via_queue=False)

    def applier_step(n: int) -> dict[str, Any]:
        step: dict[str, Any] = applier["batch_step"] if n == 1 else applier["size_steps"][str(n)]
        return step

    publisher = publisher_per_million(publisher_batch_size())
    scenarios = {}
    for n in COST_SIZES:
        hook = webhook_per_million(webhook["by_size"][str(n)]["middle"], memory["WebhookFunction"], access)
        apply = applier_per_million(applier_step(n), memory["ApplierFunction"], n)
        parts = {"webhook": hook, "applier": apply, "sender": sender_api, "publisher": publisher}
        scenarios[str(n)] = {**parts, "total": sum(sum(part.values()) for part in parts.values())}
    sizes = dict(webhook["by_size"]["1"]["middle"]["ddb"]["item_sizes"])
    sizes |= dict(applier_step(1)["ddb"]["item_sizes"]) | dict(middle["ddb"]["item_sizes"])
    return {
        "callbacks_per_message": CALLBACKS_PER_MESSAGE,
        "memory_mb": dict(memory),
        "access_log_bytes": access,
        "scenarios": scenarios,
        "per_million_one_event_per_callback": scenarios["1"]["total"],
        # At low traffic each poll finds one record: one invocation per callback.
        "applier_one_record_per_invocation": applier_per_million(
            applier["size_steps"]["1"], memory["ApplierFunction"], 1
        ),
        "sender_via_queue": sender_per_million(
            middle, memory["SenderFunction"], chunk, access, via_queue=True
        ),
        "applier_by_memory": {
            str(mb): {str(n): sum(applier_per_million(applier_step(n), mb, n).values()) for n in COST_SIZES}
            for mb in MEMORY_SIZES
        },
        "storage": storage_per_million(sizes, 1),
        "prices": prices_table(),
        "assumptions": {
            "platform_log_bytes": PLATFORM_LOG_BYTES,
            "xray_sampled": XRAY_SAMPLED if traced_by_default() else 0.0,
            "ocelot_latency_s": OCELOT_LATENCY_S,
            "lambda_mb_per_vcpu": LAMBDA_MB_PER_VCPU,
        },
    }
