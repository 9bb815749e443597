"""samconfig.toml: keys SAM CLI reads, a [default] config env that works on any machine, the offline
settings in the `local` config env, deploy envs that name real template parameters, and a short
`sam local invoke --config-env local` that works."""

from __future__ import annotations

import importlib
import json
import shlex
import tomllib
from typing import Any

import pytest

from tests.sam_local import harness
from tools.template_resources import load_template

pytestmark = pytest.mark.sam_local

SAMCONFIG = harness.ROOT / "samconfig.toml"
CONFIG = tomllib.loads(SAMCONFIG.read_text())
# samconfig section -> the module of the click command that reads it ("global": every command).
COMMANDS = {
    "build": "samcli.commands.build.command",
    "validate": "samcli.commands.validate.validate",
    "deploy": "samcli.commands.deploy.command",
    "sync": "samcli.commands.sync.command",
    "local_invoke": "samcli.commands.local.invoke.cli",
    "local_start_api": "samcli.commands.local.start_api.cli",
    "local_start_lambda": "samcli.commands.local.start_lambda.cli",
}
LOCAL_COMMANDS = ("local_invoke", "local_start_api", "local_start_lambda")
# What only this repository's offline setup has: an image of its own, no pull, the host's network, an
# env file the local stack writes.
OFFLINE_KEYS = {
    "invoke_image",
    "skip_pull_image",
    "docker_network",
    "container_host",
    "container_host_interface",
    "env_vars",
}


def sections() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (env, command, table["parameters"])
        for env, commands in CONFIG.items()
        if isinstance(commands, dict)
        for command, table in commands.items()
    ]


def overrides(parameters: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(parameters.get("parameter_overrides", "")))


@pytest.mark.parametrize(
    ("env", "command", "parameters"),
    [pytest.param(*s, id=f"{s[0]}.{s[1]}") for s in sections() if s[1] != "global"],
)
def test_every_key_is_an_option_of_its_command(env: str, command: str, parameters: dict[str, Any]) -> None:
    """Given a [<env>.<command>.parameters] section of samconfig.toml,
    Then each key names an option of that SAM CLI command (SAM ignores unknown keys without a word,
    so a typo would silently fall back to pulling images, bridge networking, no cache...)."""
    options = {param.name for param in importlib.import_module(COMMANDS[command]).cli.params}
    unknown = sorted(set(parameters) - options)
    assert not unknown, f"[{env}.{command}.parameters]: not options of sam {command}: {unknown}"


def test_the_default_config_env_holds_only_what_works_on_any_machine() -> None:
    """Given the [default] config env (what plain `sam local invoke SenderFunction -e ...` reads),
    Then none of its sections names an image, skips the pull, changes the network or needs a file the
    local stack writes; its local commands run the functions on x86_64, which every Docker runs."""
    default = CONFIG["default"]
    for command, table in default.items():
        assert not OFFLINE_KEYS & set(table["parameters"]), f"[default.{command}] has offline settings"
    for command in LOCAL_COMMANDS:
        assert overrides(default[command]["parameters"]) == {"Architecture": "x86_64"}


def test_the_local_config_env_holds_the_offline_settings() -> None:
    """Given the `local` config env (make targets, tools/sam_local, CI),
    Then each local command has the offline image, no pull, the host network, loopback and the local
    stack's env file, and the functions on x86_64 (the offline image's architecture)."""
    local = CONFIG["local"]
    for command in LOCAL_COMMANDS:
        parameters = local[command]["parameters"]
        assert parameters["invoke_image"] == ["ocelot-sms/sam-invoke:python3.13"]
        assert parameters["skip_pull_image"] is True
        assert parameters["docker_network"] == "host"
        assert parameters["container_host"] == parameters["container_host_interface"] == harness.LOOPBACK
        assert parameters["env_vars"] == ".local/sam-env.json"
        assert overrides(parameters) == {"Architecture": "x86_64"}
    assert local["local_start_api"]["parameters"]["host"] == harness.LOOPBACK


@pytest.mark.parametrize("env", ["default", "staging", "prod"])
def test_each_deploy_env_is_a_stack_of_its_own_with_valid_parameters(env: str) -> None:
    """Given a config env `sam deploy --config-env <env>` reads,
    Then it names its own stack and S3 prefix, and its parameter overrides are template parameters with
    values the template allows (a wrong one fails only at deploy time otherwise)."""
    declared = load_template()["Parameters"]
    deploy = CONFIG[env]["deploy"]["parameters"]
    stack = CONFIG[env]["global"]["parameters"]["stack_name"]
    assert deploy["s3_prefix"] == stack
    assert [CONFIG[e]["global"]["parameters"]["stack_name"] for e in ("default", "staging", "prod")].count(
        stack
    ) == 1
    given = overrides(deploy)
    assert given["Stage"] == {"default": "dev"}.get(env, env)
    for name, value in given.items():
        assert name in declared, f"[{env}.deploy] overrides {name}, not a template parameter"
        allowed = declared[name].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], (env, name, value)


def test_a_short_invoke_takes_its_flags_from_the_local_config_env(sam: harness.SamLocal) -> None:
    """Given samconfig.toml's `local` config env and the image alias it names,
    When `sam local invoke SenderFunction --config-env local -e events/api_post_batch_dry_run.json`
    runs with no other flag than --env-vars (the file samconfig names is made by `make sam-env`),
    Then SAM reads the image, the pull, host network, loopback and architecture settings from
    samconfig, runs the built template with the x86_64 layer, and the function answers the dry run."""
    env_file = sam.write_json("env-vars", {"Parameters": {"TABLE_NAME": "unused"}})
    command = [
        *harness.sam_command(),
        "local",
        "invoke",
        "SenderFunction",
        "--config-env",
        "local",
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
        "--parameter_overrides=",
    ):
        assert flag in expanded, f"{flag} not in: {expanded}"
    assert "SharedLayer is a local Layer in the template" in result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["statusCode"] == 200
    assert json.loads(payload["body"])["status"] == "dry_run"
