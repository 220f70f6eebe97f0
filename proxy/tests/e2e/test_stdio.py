"""The stdio front door (desktop clients) and subprocess providers, with the official SDK."""

from __future__ import annotations

import signal
import sys
import time

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import ElicitResult

from conftest import FIXTURE, HANGAR_BIN, LOGS, MODES, pid_alive, text

pytestmark = pytest.mark.anyio


async def accept_ada(ctx, params):
    return ElicitResult(action="accept", content={"name": "Ada"})


@pytest.fixture
def stdio_config(fixture_url):
    path = LOGS / "stdio-gateway.yaml"
    path.write_text(
        f"""
providers:
  local:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio", "local"]
  remote:
    mode: remote
    endpoint: {fixture_url}
"""
    )
    return path


@pytest.mark.parametrize("mode", ["legacy", "auto", "2026-07-28"])
async def test_sdk_client_drives_the_stdio_front_door(stdio_config, mode):
    params = StdioServerParameters(command=str(HANGAR_BIN), args=["--config", str(stdio_config), "--log-level", "warn"])
    async with Client(params, mode=mode, read_timeout_seconds=30, elicitation_callback=accept_ada) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert "local__add" in names and "remote__add" in names
        assert text(await c.call_tool("local__add", {"a": 1, "b": 2})) == "3.0"
        assert text(await c.call_tool("remote__echo", {"text": "over http"})) == "over http"
        progress: list[float] = []

        async def on_progress(p, total, message):
            progress.append(p)

        await c.call_tool("local__slow", {"seconds": 0.2}, progress_callback=on_progress)
        assert progress == [float(i) for i in range(1, 11)]
        assert text(await c.call_tool("local__greet_user", {})) == "Hello, Ada!"
        assert text(await c.call_tool("remote__greet_user", {})) == "Hello, Ada!"


async def test_embedded_default_config_over_stdio():
    async with Client(StdioServerParameters(command=str(HANGAR_BIN), args=["--log-level", "warn"]), mode="auto") as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert [n for n in names if not n.startswith("registry_")] == ["demo__echo", "demo__add", "demo__time"]
        assert text(await c.call_tool("demo__echo", {"text": "hello"})) == "hello"


@pytest.mark.parametrize("mode", MODES)
async def test_embedded_default_config_over_http(gateway_factory, mode):
    gw = gateway_factory(None, "gateway-embedded")
    async with Client(gw.url, mode=mode) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert [n for n in names if not n.startswith("registry_")] == ["demo__echo", "demo__add", "demo__time"]
        assert text(await c.call_tool("demo__add", {"a": 20, "b": 22})) == "42"
        names = [t.name for t in (await c.list_tools()).tools]
        assert sorted(n for n in names if n.startswith("demo__")) == ["demo__add", "demo__echo", "demo__time"]


async def test_sigterm_leaves_no_provider_process_behind(gateway_factory):
    gw = gateway_factory(
        f"""
providers:
  local:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio", "local"]
""",
        "gateway-orphans",
    )
    async with Client(gw.url, mode="2026-07-28") as c:
        pid = int(text(await c.call_tool("local__whoami", {})).split(":")[1])
    assert pid_alive(pid)
    gw.proc.proc.send_signal(signal.SIGTERM)
    assert gw.proc.proc.wait(15) == 0, gw.proc.output()
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), f"provider process {pid} outlived the gateway"
