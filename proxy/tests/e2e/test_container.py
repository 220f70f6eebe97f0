"""Container providers against a real Docker-compatible engine (podman's API service, started by
.ci/container-engine.sh) with an image built FROM scratch around the static hangar-upstream server.

Without an engine (DOCKER_HOST and HANGAR_CONTAINER_IMAGE unset) these tests are skipped with that
reason shown; .ci/run starts the engine and says loudly if it cannot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import MODES, text

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not (os.environ.get("DOCKER_HOST") and os.environ.get("HANGAR_CONTAINER_IMAGE")),
        reason="no container engine: DOCKER_HOST/HANGAR_CONTAINER_IMAGE unset (.ci/container-engine.sh sets them)",
    ),
]

IMAGE = os.environ.get("HANGAR_CONTAINER_IMAGE", "")


def containers(provider: str, all_states: bool = True) -> list[dict]:
    args = ["podman", "ps", "--format", "json", "--filter", f"label=io.mcp-hangar.provider={provider}"]
    if all_states:
        args.insert(2, "-a")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def inspect(container_id: str) -> dict:
    out = subprocess.run(["podman", "inspect", container_id], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


async def wait_for(predicate, timeout: float = 15):
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.1)


def config(provider: str, image: str = IMAGE, extra: str = "") -> str:
    return f"providers:\n  {provider}:\n    mode: container\n    image: {image}\n{extra}"


@pytest.mark.parametrize("mode", MODES)
async def test_container_provider_is_started_contained_and_served(gateway_factory, mode):
    provider = f"box{mode.replace('-', '')}"
    gw = gateway_factory(config(provider, extra="    memory: 64m\n    cpus: 0.5\n"), f"gateway-{provider}")
    assert containers(provider) == [], "nothing runs before the first call"
    async with Client(gw.url, mode=mode, read_timeout_seconds=60) as c:
        assert text(await c.call_tool(f"{provider}__add", {"a": 2, "b": 5})) == "7"
        who = text(await c.call_tool(f"{provider}__whoami", {}))
        assert who.endswith(":1"), f"the server is PID 1 of its container: {who}"
    running = containers(provider, all_states=False)
    assert len(running) == 1
    details = inspect(running[0]["Id"])
    host = details["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "none"
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert details["Config"]["Labels"]["io.mcp-hangar.managed"] == "true"
    gw.proc.proc.send_signal(signal.SIGTERM)
    assert gw.proc.proc.wait(20) == 0
    assert containers(provider) == [], "shutdown stops and removes the container"


async def test_idle_container_is_removed(gateway_factory):
    gw = gateway_factory(config("idlebox", extra="    idle_ttl_s: 1\n"), "gateway-idlebox")
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
        assert text(await c.call_tool("idlebox__echo", {"text": "hi"})) == "hi"
        assert len(containers("idlebox")) == 1
        await wait_for(lambda: containers("idlebox") == [])
        t = time.monotonic()
        assert text(await c.call_tool("idlebox__echo", {"text": "again"})) == "again"
        assert time.monotonic() - t < 10


async def test_missing_image_is_a_clear_error(gateway_factory):
    gw = gateway_factory(config("ghost", image="localhost/does-not-exist:never", extra="    recovery: {max_attempts: 0}\n"), "gateway-ghost")
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
        with pytest.raises(MCPError) as err:
            await c.call_tool("ghost__echo", {"text": "x"})
        assert "localhost/does-not-exist:never" in str(err.value) and "cannot be pulled" in str(err.value), str(err.value)
        listing = json.loads(text(await c.call_tool("registry_list", {})))
        ghost = next(p for p in listing["providers"] if p["name"] == "ghost")
        assert ghost["state"] == "DEAD"
    assert containers("ghost") == []
