"""The SAM CLI, with `--docker-network host` giving the function containers the host's network.

    python -m tools.sam_local.sam local invoke SenderFunction -e events/sqs_batch.json
    tools/sam_local/sam local start-api              # the same, as a script

Same arguments, same samconfig.toml as `sam`. Why: SAM CLI 1.170 accepts `--docker-network host`
but ignores it (aws/aws-sam-cli#4236, #3609, #7732: it only skips connecting the container to
another network), so the containers stay on Docker's bridge, where 127.0.0.1 is the container
itself and the local stack (moto, the Ocelot sandbox, start-api's own webhook route) cannot be
reached on loopback. With this launcher and `--docker-network host`:

- the container is created with network_mode=host (no port publishing, which Docker refuses there);
- SAM's runtime interface emulator listens on 127.0.0.1:<the port SAM picked for it> instead of
  0.0.0.0:8080 (one fixed port would collide between warm containers, and would listen beyond
  loopback), and its Runtime API on another free 127.0.0.1 port instead of 127.0.0.1:9001.

Without `--docker-network host` the containers are SAM's usual ones. And SAM itself stays off the
network too: no STS GetCallerIdentity before each invocation (SAM then uses its default account id,
123456789012, which is moto's too), no weekly version check against PyPI, no telemetry.

Everything else is SAM's own code. The patches rely on SAM internals, so this refuses any SAM CLI
version it was not checked against (SAMLOCAL_ALLOW_SAM_VERSION=<version> to try another); drop the
host-network part once SAM honours `--docker-network host`.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

CHECKED_VERSIONS = frozenset({"1.170.0"})
RIE = "/var/rapid/aws-lambda-rie"
LOOPBACK = "127.0.0.1"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def patch_sam() -> None:
    # Through importlib: neither package ships type information.
    samcli = importlib.import_module("samcli")
    containers = importlib.import_module("docker.models.containers")
    Container = importlib.import_module("samcli.local.docker.container").Container

    allowed = CHECKED_VERSIONS | {os.environ.get("SAMLOCAL_ALLOW_SAM_VERSION", "")}
    if samcli.__version__ not in allowed:
        raise SystemExit(
            f"tools/sam_local/sam.py was checked against SAM CLI {sorted(CHECKED_VERSIONS)}, not "
            f"{samcli.__version__}: check Container.create still works as it assumes, then add the version"
        )
    if getattr(Container.create, "_ocelot_host_network", False):
        return

    original_create = Container.create

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        entrypoint = list(self._entrypoint or [])
        if self.network_id == "host" and entrypoint[:1] == [RIE]:
            interface = self._container_host_interface or LOOPBACK
            self._entrypoint = [
                *entrypoint,
                "--runtime-interface-emulator-address",
                f"{interface}:{self.rapid_port_host}",
                "--runtime-api-address",
                f"{LOOPBACK}:{_free_loopback_port()}",
            ]
            self._container_opts = {**(self._container_opts or {}), "network_mode": "host"}
        container_id = original_create(self, *args, **kwargs)
        _created.append(str(self.id))
        return container_id

    create._ocelot_host_network = True  # type: ignore[attr-defined]
    Container.create = create

    original_collection_create = containers.ContainerCollection.create

    def collection_create(self: Any, image: Any, command: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("network_mode") == "host":
            # Published ports mean nothing on the host's network, and Docker refuses the pair.
            kwargs.pop("ports", None)
        return original_collection_create(self, image, command, **kwargs)

    containers.ContainerCollection.create = collection_create

    # Local runs need no AWS account: SAM would ask STS (off the machine, and seconds of retries
    # where it cannot) only to fill in AWS::AccountId, which then defaults to 123456789012.
    invoke_context = importlib.import_module("samcli.commands.local.cli_common.invoke_context")
    invoke_context.InvokeContext._add_account_id_to_global = lambda self: None
    version_checker: Any = importlib.import_module("samcli.lib.utils.version_checker")
    version_checker._inform_newer_version = lambda *args, **kwargs: None


_created: list[str] = []


def remove_leftover_containers() -> None:
    """SAM stops its warm containers on SIGTERM, but not always all of them before it exits: remove
    whatever this process created and is still there (quietly: most are gone already)."""
    if _created:
        subprocess.run(
            ["docker", "rm", "--force", *_created],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )


def stop_with_parent() -> None:
    """SAMLOCAL_PARENT_PID=<pid>: SIGTERM ourselves once that process is gone, so a killed test run
    never leaves a start-api (and its warm containers) behind. SAM stops its containers on SIGTERM."""
    raw = os.environ.get("SAMLOCAL_PARENT_PID", "")
    if not raw.isdigit():
        return
    parent = int(raw)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:
                continue

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
    stop_with_parent()
    patch_sam()
    sys.argv[0] = "sam"
    try:
        importlib.import_module("samcli.cli.main").cli()
    finally:
        remove_leftover_containers()


if __name__ == "__main__":
    main()
