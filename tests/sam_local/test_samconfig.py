"""samconfig.toml's sam local sections: keys SAM CLI reads, and a short command that works."""

from __future__ import annotations

import importlib
import json
import tomllib
from typing import Any

import pytest

from tests.sam_local import harness

pytestmark = pytest.mark.sam_local

SAMCONFIG = harness.ROOT / "samconfig.toml"
# samconfig section -> the module of the click command that reads it.
COMMANDS = {
    "local_invoke": "samcli.commands.local.invoke.cli",
    "local_start_api": "samcli.commands.local.start_api.cli",
    "local_start_lambda": "samcli.commands.local.start_lambda.cli",
}


def local_sections() -> dict[str, dict[str, Any]]:
    default: dict[str, Any] = tomllib.loads(SAMCONFIG.read_text())["default"]
    return {name: default[name]["parameters"] for name in COMMANDS if name in default}


def test_every_local_section_key_is_an_option_of_its_command() -> None:
    """Given samconfig.toml's [default.local_*.parameters] sections,
    Then each exists and each key names an option of that SAM CLI command (SAM ignores unknown keys
    without a word, so a typo would silently fall back to pulling images, bridge networking...)."""
    sections = local_sections()
    assert set(sections) == set(COMMANDS)
    for section, parameters in sections.items():
        options = {param.name for param in importlib.import_module(COMMANDS[section]).cli.params}
        unknown = sorted(set(parameters) - options)
        assert not unknown, f"[default.{section}.parameters]: not options of sam {section}: {unknown}"
        assert parameters["docker_network"] == "host"
        assert parameters["skip_pull_image"] is True
        assert parameters["env_vars"] == ".local/sam-env.json"


def test_a_short_invoke_takes_its_flags_from_samconfig(sam: harness.SamLocal) -> None:
    """Given samconfig.toml's local_invoke section and the image alias it names,
    When `sam local invoke SenderFunction -e events/api_post_batch_dry_run.json` runs with no
    other flag than --env-vars (the file samconfig names is made by `make sam-env`),
    Then SAM reads the image, the pull, host network and loopback settings from samconfig, runs the
    built template, and the function answers the dry run."""
    env_file = sam.write_json("env-vars", {"Parameters": {"TABLE_NAME": "unused"}})
    command = [
        *harness.sam_command(),
        "local",
        "invoke",
        "SenderFunction",
        "-e",
        "events/api_post_batch_dry_run.json",
        "--env-vars",
        str(env_file),
        "--debug",
    ]

    result = harness.run(command, timeout=180, env=sam.env)

    assert result.returncode == 0, result.stderr[-3000:]
    expanded = next(line for line in result.stderr.splitlines() if "--template_file=" in line)
    for flag in (
        f"--template_file={harness.BUILT_TEMPLATE}",
        "--invoke_image=('ocelot-sms/sam-invoke:python3.13',)",
        "--skip_pull_image",
        "--docker_network=host",
        "--container_host=127.0.0.1",
    ):
        assert flag in expanded, f"{flag} not in: {expanded}"
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["statusCode"] == 200
    assert json.loads(payload["body"])["status"] == "dry_run"
