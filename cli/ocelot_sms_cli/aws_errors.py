"""Every AWS and network error an operator can meet, as one line saying what to do (never a traceback)."""

from __future__ import annotations

import requests
from botocore import exceptions as aws

from ocelot_sms_cli.exits import Exit, Failure

ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"})
BAD_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)
THROTTLED = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
NETWORK = (
    aws.EndpointConnectionError,
    aws.ConnectTimeoutError,
    aws.ReadTimeoutError,
    aws.ConnectionClosedError,
)
SSO = (aws.SSOTokenLoadError, aws.UnauthorizedSSOTokenError, aws.TokenRetrievalError)


def explain(error: Exception) -> Failure | None:
    """The failure an AWS or network error means for the operator; None for anything else (a bug)."""
    simple = _simple(error)
    if simple is not None:
        return simple
    if isinstance(error, aws.ClientError):
        return _client_error(error)
    if isinstance(error, requests.RequestException):
        url = error.request.url if error.request is not None else "the API"
        return Failure(
            f"could not reach {url} ({type(error).__name__}): check the network (VPN, proxy), then run "
            "the same command again",
            Exit.UNAVAILABLE,
        )
    return None


def _simple(error: Exception) -> Failure | None:
    if isinstance(error, aws.NoRegionError):
        return Failure(
            "no AWS region: give --region (e.g. us-east-1), set AWS_REGION, or set a region in your "
            "AWS profile",
            Exit.SETUP,
        )
    if isinstance(error, aws.NoCredentialsError | aws.PartialCredentialsError):
        return Failure(
            "no AWS credentials found: give --profile NAME (or set AWS_PROFILE), or configure some "
            "with `aws configure` / `aws sso login`",
            Exit.SETUP,
        )
    if isinstance(error, aws.ProfileNotFound):
        return Failure(
            f"{error}: check --profile / AWS_PROFILE (`aws configure list-profiles` lists them)", Exit.SETUP
        )
    if isinstance(error, SSO):
        return Failure("your AWS sign-in has expired: run `aws sso login` (with your --profile)", Exit.SETUP)
    if isinstance(error, NETWORK):
        return Failure(
            f"could not reach AWS ({error}): check the network (VPN, proxy), then run the same command again",
            Exit.UNAVAILABLE,
        )
    return None


def _client_error(error: aws.ClientError) -> Failure:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    operation = error.operation_name
    if code in ACCESS_DENIED:
        return Failure(
            f"access denied to {operation} ({message}): use a --profile whose role may do it, or ask "
            "your AWS administrator for that permission",
            Exit.SETUP,
        )
    if code in BAD_CREDENTIALS:
        return Failure(
            f"AWS refused your credentials ({code}): refresh them (`aws sso login`, `aws configure`) or "
            "give another --profile",
            Exit.SETUP,
        )
    if code in THROTTLED:
        return Failure(f"AWS is throttling {operation}: wait a minute, then run it again", Exit.UNAVAILABLE)
    if code == "ResourceNotFoundException":
        return Failure(f"{operation}: {message}: is the stack fully deployed?", Exit.SETUP)
    return Failure(f"AWS answered {code} to {operation}: {message}", Exit.UNAVAILABLE)
