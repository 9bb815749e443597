"""README's "Calling it": the Python example run as a reader would run it, against a loopback server
that checks each request's SigV4 signature the way API Gateway computes it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tools.template_resources import ROOT

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SIGNATURE = re.compile(
    r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=(\w+)"
)


def calling_it_example() -> str:
    """The first Python block of the README's "Calling it" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Calling it\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def signature_problem(method: str, url: str, headers: dict[str, str], body: bytes) -> str | None:
    """None when the Authorization header is a valid SigV4 signature of the request by KEY/SECRET."""
    found = SIGNATURE.search(headers.get("Authorization", ""))
    if found is None:
        return "no SigV4 Authorization header"
    key, region, service, signed, signature = found.groups()
    if (key, service) != (KEY, "execute-api"):
        return f"signed by {key} for {service}"
    request = AWSRequest(
        method=method,
        url=url,
        data=body or None,
        headers={name: headers[name] for name in headers if name.lower() in signed.split(";")},
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(Credentials(KEY, SECRET), service, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return None if expected == signature else "signature does not match"


class CheckingApi(BaseHTTPRequestHandler):
    checked: ClassVar[list[tuple[str, str, str | None]]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = f"http://{self.headers['Host']}{self.path}"
        problem = signature_problem(self.command, url, dict(self.headers.items()), body)
        self.checked.append((self.command, self.path, problem))
        answer = json.dumps({"requestId": "fall-registration-2026-11-26", "counts": {"accepted": 1}}).encode()
        self.send_response(201 if problem is None else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    server = HTTPServer(("127.0.0.1", 0), CheckingApi)
    CheckingApi.checked = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", CheckingApi.checked
    server.shutdown()
    server.server_close()


def test_the_python_example_signs_each_request_as_api_gateway_checks_it(
    api: tuple[str, list[tuple[str, str, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the README's example with its API_URL pointed at a loopback API that checks signatures,
    # and a caller's credentials in the environment
    url, checked = api
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    source = re.sub(r'^API_URL = ".*"', f'API_URL = "{url}"', calling_it_example(), count=1, flags=re.M)
    assert url in source

    # When it runs
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102

    # Then it posted the batch and read it back, both signed as API Gateway checks them
    assert checked == [
        ("POST", "/batches", None),
        ("GET", "/batches/fall-registration-2026-11-26?limit=100", None),
    ]
    assert printed.getvalue().splitlines()[-1] == "{'accepted': 1}"


def test_a_request_signed_with_another_secret_is_refused_by_the_check() -> None:
    # Given a request signed by the right key id with the wrong secret; Then the check refuses it
    request = AWSRequest(method="GET", url="http://127.0.0.1:1/sends", headers={})
    SigV4Auth(Credentials(KEY, "not-the-secret"), "execute-api", "us-east-1").add_auth(request)
    headers = {name: str(value) for name, value in request.headers.items()} | {"Host": "127.0.0.1:1"}
    assert signature_problem("GET", "http://127.0.0.1:1/sends", headers, b"") == "signature does not match"
