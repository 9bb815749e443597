"""The stack's HTTP API, signed with SigV4 (every route but the webhook uses IAM auth)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from ocelot_sms_cli.exits import Exit, Failure
from ocelot_sms_cli.target import Target


class NotFoundError(LookupError):
    """The API has no such send, batch or message."""


class Api:
    def __init__(self, target: Target) -> None:
        self._target = target
        self._base = target.api_url.rstrip("/")
        self._http = requests.Session()

    def request(self, method: str, path: str, body: str | None = None) -> requests.Response:
        """A signed request; raises Failure for what no caller can act on (403: not allowed)."""
        url = f"{self._base}{path}"
        signed = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
        session = self._target.session()
        credentials = session.get_credentials()
        if credentials is None:
            raise Failure(
                "no AWS credentials found to sign the request: give --profile NAME (or set AWS_PROFILE), "
                "or configure some with `aws configure` / `aws sso login`",
                Exit.SETUP,
            )
        region = self._target.region or session.region_name or "us-east-1"
        SigV4Auth(credentials, "execute-api", region).add_auth(signed)
        response = self._http.request(method, url, data=body, headers=dict(signed.headers), timeout=(5, 60))
        if response.status_code == 403:
            raise Failure(
                f"access denied to {method} {path.split('?')[0]} (HTTP 403): your AWS identity needs "
                "execute-api:Invoke on this API; use another --profile or ask your AWS administrator",
                Exit.SETUP,
            )
        return response

    def get(self, path: str, query: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """A JSON answer; NotFoundError for a 404, Failure for any other error."""
        suffix = f"?{urlencode(query)}" if query else ""
        response = self.request("GET", path + suffix)
        if response.status_code == 404:
            raise NotFoundError(error_message(response))
        if response.status_code != 200:
            raise Failure(
                f"the API answered {response.status_code} to GET {path}: {error_message(response)}; "
                "run the same command again in a minute",
                Exit.UNAVAILABLE,
            )
        answer: dict[str, Any] = response.json()
        return answer

    def pages(self, path: str, query: Mapping[str, str | int] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a paginated answer, following nextCursor."""
        params = dict(query or {})
        while True:
            page = self.get(path, params)
            yield page
            if not page.get("nextCursor"):
                return
            params["cursor"] = page["nextCursor"]


def quoted(value: str) -> str:
    return quote(value, safe="")


def error_message(response: requests.Response) -> str:
    """The API's `message` (and problems), or the start of the body when it is not our JSON."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    if not isinstance(body, dict):
        return response.text[:300]
    problems = "; ".join(f"{p.get('field')}: {p.get('message')}" for p in body.get("problems") or [])
    message = str(body.get("message") or body)
    return f"{message} ({problems})" if problems else message
