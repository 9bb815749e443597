"""HTTP client for Ocelot's send endpoint.

The one rule that matters: a request is sent again only when Ocelot certainly did not take it
(no connection was made, or it answered 429/503). Anything that may have reached Ocelot (a read
timeout, a connection reset after the request went out, another 5xx, a 2xx we cannot read) is
reported as an unknown outcome and never re-sent, because a second send texts every student twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, Self

import requests
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from ocelot_sms.contract import (
    RETRYABLE_STATUS_CODES,
    SEND_PATH,
    ErrorBody,
    SendRequest,
    SendResponse,
    parse_error_body,
)
from ocelot_sms.credentials import OcelotCredentials


class OcelotError(Exception):
    def __init__(
        self, message: str, *, status_code: int | None = None, body: ErrorBody | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class OcelotRejected(OcelotError):
    """Ocelot refused the request (4xx): nothing was sent; sending the same again gets the same."""


class OcelotUnavailable(OcelotError):
    """Ocelot certainly did not take the request (no connection, 429, 503): safe to try later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OcelotOutcomeUnknown(OcelotError):
    """The request may have been taken: record it for reconciliation, never send it again."""


class OcelotClient(Protocol):
    def send(self, request: SendRequest, deadline: float) -> SendResponse:
        """Send one chunk. `deadline` is a time.monotonic() value the call must finish by."""
        ...


class DeadlineRetry(Retry):
    """urllib3's Retry, but it gives up rather than sleep past a deadline (the Lambda's time), or
    longer than `backoff_max` (MAX_RETRY_WAIT_SECONDS) when a Retry-After asks for more."""

    def __init__(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kwargs: Any) -> Self:
        kwargs.setdefault("deadline", self.deadline)
        return super().new(**kwargs)

    def get_retry_after(self, response: Any) -> float | None:
        # urllib3 raises InvalidHeader for an unreadable Retry-After, which would turn a certain
        # "not taken" (429/503) into an unknown outcome: back off as if there were none instead.
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Self:
        retry = super().increment(method, url, *args, **kwargs)
        response = kwargs.get("response")
        wait = (retry.get_retry_after(response) if response is not None else None) or retry.get_backoff_time()
        too_long = wait > retry.backoff_max
        if too_long or (retry.deadline is not None and time.monotonic() + wait >= retry.deadline):
            error = kwargs.get("error")
            limit = "the longest wait allowed" if too_long else "the deadline"
            reason = error or ResponseError(f"retry in {wait:.1f}s would pass {limit}")
            raise MaxRetryError(kwargs.get("_pool"), url or "", reason)  # type: ignore[arg-type]
        return retry


class HttpOcelotClient:
    def __init__(
        self,
        base_url: str,
        credentials: Callable[[bool], OcelotCredentials],
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 15.0,
        max_attempts: int = 4,
        max_retry_wait: float = 20.0,
        backoff_factor: float = 0.5,
    ) -> None:
        self._url = base_url.rstrip("/") + SEND_PATH
        self._credentials = credentials
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retry = DeadlineRetry(
            total=max_attempts - 1,
            connect=max_attempts - 1,
            read=False,  # a read error means the request went out: never retried
            other=0,
            status=max_attempts - 1,
            status_forcelist=RETRYABLE_STATUS_CODES,
            allowed_methods=frozenset({"POST"}),
            backoff_factor=backoff_factor,
            backoff_max=max_retry_wait,
            respect_retry_after_header=True,
            raise_on_status=False,  # hand the last 429/503 back so its Retry-After can be reported
        )
        self._adapter = HTTPAdapter(max_retries=self._retry, pool_connections=1, pool_maxsize=4)
        self.session = requests.Session()
        self.session.mount("https://", self._adapter)
        self.session.mount("http://", self._adapter)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "ocelot-sms/0.1"})

    def send(self, request: SendRequest, deadline: float) -> SendResponse:
        try:
            credentials = self._credentials(False)
        except Exception as error:  # CredentialsError, Secrets Manager unreachable: nothing was sent
            raise OcelotUnavailable(f"Ocelot credentials unavailable: {type(error).__name__}") from error
        response = self._post(request, deadline, credentials)
        if response.status_code == 401:
            # Ocelot reissues keys through support; the secret may have changed since we cached it.
            try:
                fresh = self._credentials(True)
            except Exception:  # the 401 stands: report it rather than the failed re-read
                fresh = credentials
            if fresh != credentials:
                response = self._post(request, deadline, fresh)
        return self._interpret(response)

    def _post(
        self, request: SendRequest, deadline: float, credentials: OcelotCredentials
    ) -> requests.Response:
        remaining = deadline - time.monotonic()
        if remaining <= self._connect_timeout:
            raise OcelotUnavailable("not enough time left to send")
        # Sequential use per container, so setting the per-call deadline on the adapter is safe.
        self._adapter.max_retries = self._retry.new(deadline=deadline)
        try:
            return self.session.post(
                self._url,
                json=request.to_wire(),
                auth=(credentials.chatbot_id, credentials.api_key),
                timeout=(self._connect_timeout, min(self._read_timeout, remaining)),
            )
        except (requests.ConnectTimeout, requests.ConnectionError) as error:
            if _never_connected(error):
                raise OcelotUnavailable(f"could not connect to Ocelot: {type(error).__name__}") from error
            raise OcelotOutcomeUnknown(f"connection lost after sending: {type(error).__name__}") from error
        except requests.Timeout as error:
            raise OcelotOutcomeUnknown("no response from Ocelot in time") from error
        except requests.RequestException as error:
            raise OcelotOutcomeUnknown(f"request failed: {type(error).__name__}") from error

    @staticmethod
    def _interpret(response: requests.Response) -> SendResponse:
        status = response.status_code
        payload = _json_or_text(response)
        if 200 <= status < 300:
            try:
                return SendResponse.model_validate(payload)
            except ValidationError as error:
                raise OcelotOutcomeUnknown(
                    f"Ocelot answered {status} with a body we cannot read", status_code=status
                ) from error
        body = parse_error_body(status, payload)
        if status in RETRYABLE_STATUS_CODES:
            raise OcelotUnavailable(
                f"Ocelot answered {status}",
                status_code=status,
                body=body,
                retry_after=_retry_after(response),
            )
        if 400 <= status < 500:
            raise OcelotRejected(f"Ocelot rejected the request ({status})", status_code=status, body=body)
        raise OcelotOutcomeUnknown(f"Ocelot answered {status}", status_code=status, body=body)


def _never_connected(error: requests.RequestException) -> bool:
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = error.args[0] if error.args else None
    # urllib3's NewConnectionError is a ConnectTimeoutError: the TCP connection was never made.
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, ConnectTimeoutError)


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:1000]


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
