"""Receiving Ocelot's callbacks: authenticate, keep the raw delivery with one write, answer.

Nothing is parsed here: the webhook answers as soon as the delivery is stored, however many events
it holds, and the applier (applier.py) turns it into state from the table's stream. A delivery that
is not what our contract assumes is therefore never lost, and can be replayed once contract.py is
fixed. Kept free of pydantic, so the webhook's cold start stays that of boto3.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from botocore.exceptions import BotoCoreError, ClientError

from ocelot_sms.credentials import WebhookCredentials
from ocelot_sms.errors import PayloadTooLarge, StorageUnavailable, Unauthorized
from ocelot_sms.observability import MetricUnit, logger, metrics
from ocelot_sms.settings import Settings
from ocelot_sms.store import RawDelivery, StorageError, Store

# Never stored or logged: they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-amz-security-token"}
)
TOKEN_PARAMETER = "token"  # noqa: S105 - the name of the query parameter, not a secret
STORAGE_ERRORS = (ClientError, BotoCoreError, StorageError)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery kept: the id it is stored under and its size."""

    delivery_id: str
    bytes: int


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


class WebhookService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        credentials: Callable[[bool], WebhookCredentials],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._store = store
        self._credentials = credentials
        self._clock = clock
        self._rechecked_at: float | None = None

    def authenticate(self, basic: tuple[str, str] | None, token: str | None) -> None:
        """The secret's credentials (or, during a rotation, the previous ones), else Unauthorized.

        A refusal re-reads the secret first, at most once per SECRET_RECHECK_SECONDS: a container that
        cached the secret before a rotation must not refuse Ocelot's new credentials for minutes."""
        if self._credentials(False).accepts(basic, token):
            return
        now = self._clock()
        if self._rechecked_at is None or now - self._rechecked_at >= self._settings.secret_recheck_seconds:
            self._rechecked_at = now
            if self._credentials(True).accepts(basic, token):
                return
        metrics.add_metric(name="WebhookAuthFailures", unit=MetricUnit.Count, value=1)
        raise Unauthorized("unauthorized")

    def receive(self, delivery: RawDelivery) -> Receipt:
        """Keep the delivery raw with one write. Raises PayloadTooLarge (its start is recorded all the
        same) or StorageUnavailable (a retry stores it: the write is idempotent)."""
        limit = self._settings.webhook_max_body_bytes
        body, too_large = _decoded(delivery.body, delivery.headers, limit)
        raw = replace(
            delivery,
            body=body,
            headers=safe_headers(delivery.headers),
            truncated_from=too_large,
        )
        try:
            whole = self._store.put_raw(raw, self._settings.raw_retention_days)
        except STORAGE_ERRORS as error:
            metrics.add_metric(name="WebhookStorageFailures", unit=MetricUnit.Count, value=1)
            logger.error("could not store callback", extra={"error": type(error).__name__})
            raise StorageUnavailable("try again") from error
        if not whole:
            # Permanent: a retry would fail the same way, so not a 5xx. Its start is kept, and counted.
            metrics.add_metric(name="WebhookBodiesTooLarge", unit=MetricUnit.Count, value=1)
            logger.warning(
                "callback too large: its start is kept",
                extra={"deliveryId": delivery.delivery_id, "bytes": too_large or len(body)},
            )
            raise PayloadTooLarge(
                f"at most {limit} bytes can be kept", details={"deliveryId": delivery.delivery_id}
            )
        metrics.add_metric(name="WebhookDeliveries", unit=MetricUnit.Count, value=1)
        return Receipt(delivery.delivery_id, len(body))


def _decoded(body: bytes, headers: Mapping[str, str], limit: int) -> tuple[bytes, int | None]:
    """The body as sent, or decompressed when it says `Content-Encoding: gzip`; and its size when
    that is over `limit` (None when not). A body that does not decompress is kept as it came."""
    encoding = next((v for k, v in headers.items() if k.lower() == "content-encoding"), "")
    if encoding.strip().lower() == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            # Bounded: a small body may inflate to gigabytes.
            decoded = inflater.decompress(body, limit + 1)
        except zlib.error:
            decoded = None
        if decoded is not None:
            if len(decoded) > limit:
                # Its real size is unknown without inflating it all: "more than the limit".
                return decoded, limit + 1
            body = decoded
    return body, (len(body) if len(body) > limit else None)
