"""HTTP client for Ocelot's send endpoint.

The one rule that matters: a request is sent again only when Ocelot certainly did not take it
(no connection was made, or it answered 429/503). Anything that may have reached Ocelot (a read
timeout, a connection reset after the request went out, another 5xx, a 2xx we cannot read) is
reported as an unknown outcome and never re-sent, because a second send texts every student twice.

Several chunks may be sent at once from one container: a 429 or 503 to any of them holds all of
them for the wait Ocelot asked for (`Pace`), and an attempt starts only when it can run to its read
timeout before the caller's deadline, so no answer is cut short into an unknown outcome.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
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
from ocelot_sms.credentials import CredentialsNotSet, OcelotCredentials

# A Retry-After longer than this (an hour) is read as this: what we wait for, and what we pass on.
RETRY_AFTER_CAP_SECONDS = 3600.0


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


class OutOfTime(OcelotUnavailable):
    """No attempt was started: none could finish before the deadline (nothing was sent)."""


class OcelotNotConfigured(OcelotUnavailable):
    """The Ocelot secret holds a placeholder or is malformed: nothing was sent, nor will be until a
    person puts the credentials in it (`error.not_set` says which secret and what it must hold)."""

    def __init__(self, not_set: CredentialsNotSet) -> None:
        super().__init__(f"the Ocelot credentials are not set: {not_set}")
        self.not_set = not_set


class OcelotOutcomeUnknown(OcelotError):
    """The request may have been taken: record it for reconciliation, never send it again."""


class OcelotClient(Protocol):
    def prepare(self, deadline: float) -> OcelotCredentials:
        """Wait out a shared backoff and read the credentials, before anything is claimed or sent.
        Raises OutOfTime (no attempt could end by `deadline`, a time.monotonic() value) or
        OcelotUnavailable (the credentials cannot be read)."""
        ...

    def send(
        self, request: SendRequest, deadline: float, credentials: OcelotCredentials | None = None
    ) -> SendResponse:
        """Send one chunk; every attempt ends by `deadline`."""
        ...


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date), between 0 and
    RETRY_AFTER_CAP_SECONDS; None when it says nothing usable. Never raises: a header is input."""
    text = value.strip()
    if not text.isascii():
        return None
    seconds: float | None
    try:
        seconds = float(text)  # also "inf", "1e400" and 20 digits: capped below
    except ValueError:
        seconds = _seconds_until(text, now or datetime.now(UTC))
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


class Pace:
    """One backoff for every send of a container: a 429 or 503 holds them all until the wait Ocelot
    asked for has passed (concurrent chunks would otherwise each hit the same rate limit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())


class DeadlineRetry(Retry):
    """urllib3's Retry, but it gives up rather than wait past a deadline (the next attempt must be able
    to run to its read timeout before it), or longer than `backoff_max` (MAX_RETRY_WAIT_SECONDS); it
    shares every 429/503 wait through `pace` and waits for the pace before an attempt."""

    def __init__(
        self,
        *args: Any,
        deadline: float | None = None,
        pace: Pace | None = None,
        attempt_seconds: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.pace = pace or Pace()
        self.attempt_seconds = attempt_seconds

    def new(self, **kwargs: Any) -> Self:
        kwargs.setdefault("deadline", self.deadline)
        kwargs.setdefault("pace", self.pace)
        kwargs.setdefault("attempt_seconds", self.attempt_seconds)
        return super().new(**kwargs)

    def parse_retry_after(self, retry_after: str) -> float:
        seconds = parse_retry_after(retry_after)
        if seconds is None:
            raise InvalidHeader(f"Invalid Retry-After header: {retry_after[:100]}")
        return seconds

    def get_retry_after(self, response: Any) -> float | None:
        # An unreadable Retry-After would turn a certain "not taken" (429/503) into an unknown outcome
        # (urllib3 raises InvalidHeader): back off as if there were none instead.
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def own_wait(self, response: Any = None) -> float:
        return (self.get_retry_after(response) if response is not None else None) or self.get_backoff_time()

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Self:
        response = kwargs.get("response")
        try:
            retry = super().increment(method, url, *args, **kwargs)
        except MaxRetryError:  # attempts used up: the others still wait as Ocelot asked
            self._share(response, self.get_retry_after(response) if response is not None else None)
            raise
        own = retry.own_wait(response)
        retry._share(response, own)
        wait = max(own, retry.pace.remaining())
        too_long = own > retry.backoff_max
        late = retry.deadline is not None and time.monotonic() + wait + retry.attempt_seconds > retry.deadline
        if too_long or late:
            error = kwargs.get("error")
            limit = "the longest wait allowed" if too_long else "the deadline"
            reason = error or ResponseError(f"retry in {wait:.1f}s would pass {limit}")
            raise MaxRetryError(kwargs.get("_pool"), url or "", reason)  # type: ignore[arg-type]
        return retry

    def _share(self, response: Any, wait: float | None) -> None:
        # Only Ocelot's 429/503 are shared (a connection error may be ours alone), never for longer
        # than one retry may wait: a bogus Retry-After cannot stall the container.
        if response is not None and wait:
            self.pace.hold(min(wait, self.backoff_max))

    def sleep(self, response: Any = None) -> None:
        time.sleep(max(self.own_wait(response), self.pace.remaining()))


class _RetriesPerThread(HTTPAdapter):
    """requests takes retries from the adapter, not per request: each sending thread gets the Retry
    (with its deadline) it set for its own call, so concurrent sends share one connection pool."""

    def __init__(self, max_retries: Retry, **kwargs: Any) -> None:
        self._local = threading.local()
        self._default = max_retries
        super().__init__(max_retries=max_retries, **kwargs)

    @property
    def max_retries(self) -> Retry:
        retries: Retry = getattr(self._local, "retries", self._default)
        return retries

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._local.retries = value


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
        concurrency: int = 4,
    ) -> None:
        self._url = base_url.rstrip("/") + SEND_PATH
        self._credentials = credentials
        self._credentials_lock = threading.Lock()
        self._credentials_not_set = False
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self.pace = Pace()
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
            pace=self.pace,
            attempt_seconds=self.attempt_seconds,
        )
        self._adapter = _RetriesPerThread(self._retry, pool_connections=1, pool_maxsize=max(1, concurrency))
        self.session = requests.Session()
        self.session.mount("https://", self._adapter)
        self.session.mount("http://", self._adapter)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "ocelot-sms/0.1"})

    @property
    def attempt_seconds(self) -> float:
        """The longest one attempt may take: connecting, then waiting for the whole answer."""
        return self._connect_timeout + self._read_timeout

    def prepare(self, deadline: float) -> OcelotCredentials:
        wait = self.pace.remaining()
        if time.monotonic() + wait + self.attempt_seconds > deadline:
            reason = f"Ocelot asked to wait {wait:.1f}s" if wait else "not enough time left to send"
            raise OutOfTime(reason, retry_after=wait or None)
        time.sleep(wait)
        try:
            with self._credentials_lock:  # one read for all the chunks starting at once
                credentials = self._credentials(self._credentials_not_set)
                self._credentials_not_set = False
                return credentials
        except CredentialsNotSet as error:
            # Read afresh next time, not from the cache: the send after the fix works at once.
            self._credentials_not_set = True
            raise OcelotNotConfigured(error) from error
        except Exception as error:  # Secrets Manager unreachable, access denied: nothing was sent
            raise OcelotUnavailable(f"Ocelot credentials unavailable: {type(error).__name__}") from error

    def send(
        self, request: SendRequest, deadline: float, credentials: OcelotCredentials | None = None
    ) -> SendResponse:
        credentials = credentials or self.prepare(deadline)
        response = self._post(request, deadline, credentials)
        if response.status_code == 401:
            # Ocelot reissues keys through support; the secret may have changed since we cached it.
            try:
                with self._credentials_lock:
                    fresh = self._credentials(True)
            except Exception:  # the 401 stands: report it rather than the failed re-read
                fresh = credentials
            if fresh != credentials:
                response = self._post(request, deadline, fresh)
        return self._interpret(response)

    def _post(
        self, request: SendRequest, deadline: float, credentials: OcelotCredentials
    ) -> requests.Response:
        if time.monotonic() + self.attempt_seconds > deadline:
            raise OutOfTime("not enough time left to send")
        self._adapter.max_retries = self._retry.new(deadline=deadline)  # this thread's call only
        try:
            return self.session.post(
                self._url,
                json=request.to_wire(),
                auth=(credentials.chatbot_id, credentials.api_key),
                timeout=(self._connect_timeout, self._read_timeout),
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
            header = response.headers.get("Retry-After")
            raise OcelotUnavailable(
                f"Ocelot answered {status}",
                status_code=status,
                body=body,
                retry_after=parse_retry_after(header) if header is not None else None,
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
