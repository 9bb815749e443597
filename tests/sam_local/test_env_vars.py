"""The --env-vars file: only loopback addresses, and only what SAM will pass on (no Docker needed)."""

from __future__ import annotations

import pytest

from tools.sam_local import env_vars

pytestmark = pytest.mark.sam_local

STACK = {
    "aws_endpoint_url": "http://127.0.0.1:4566",
    "sandbox_url": "http://127.0.0.1:4567",
    "tables": {"messages": "m", "idempotency": "i"},
    "secrets": {"ocelot": "arn:ocelot", "webhook": "arn:webhook"},
    "function_env": {
        "OCELOT_BASE_URL": "https://ai.ocelotbot.com",
        "MAX_SEND_ATTEMPTS": "3",
        "TABLE_NAME": "x",
    },
}


def test_the_stack_file_points_every_function_at_loopback() -> None:
    """Given a stack.json, When the variables are made from it,
    Then AWS and Ocelot are the stack's loopback servers, whatever function_env says."""
    values = env_vars.from_stack(STACK)

    assert values["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert values["OCELOT_BASE_URL"] == "http://127.0.0.1:4567"
    assert (values["TABLE_NAME"], values["IDEMPOTENCY_TABLE_NAME"]) == ("m", "i")
    assert env_vars.document(values)["Parameters"]["OCELOT_SECRET_ID"] == "arn:ocelot"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OCELOT_BASE_URL", "https://ai.ocelotbot.com"),
        ("OCELOT_BASE_URL", "http://localhost:4567"),
        ("AWS_ENDPOINT_URL", "http://172.17.0.1:4566"),
        ("AWS_ENDPOINT_URL", "dynamodb.us-east-1.amazonaws.com"),
    ],
)
def test_anything_but_127_0_0_1_is_refused(name: str, value: str) -> None:
    """Given a variable that names another host (even localhost: only 127.0.0.1 is used),
    Then no --env-vars file is written."""
    values = {**env_vars.from_stack(STACK), name: value}

    with pytest.raises(env_vars.EnvVarsError):
        env_vars.document(values)


def test_variables_the_template_does_not_declare_are_left_out_except_the_endpoint() -> None:
    """Given a variable no function declares (SAM would drop it silently),
    Then it is reported and left out; AWS_ENDPOINT_URL stays whatever the template says."""
    kept, dropped = env_vars.for_sam(env_vars.from_stack(STACK))

    assert "MAX_SEND_ATTEMPTS" in dropped
    assert "MAX_SEND_ATTEMPTS" not in kept
    assert "AWS_ENDPOINT_URL" in kept
    assert "AWS_ENDPOINT_URL" not in dropped
