"""Provider lifecycle with real stdio servers: lazy start, one start for many first calls,
multiplexing, idle collection, crash recovery with backoff, and clear errors for bad providers —
observed through the gateway's own registry_* tools and the processes themselves."""

from __future__ import annotations

import json
import sys
import time

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import EVERYTHING, FIXTURE, NODE, pid_alive, text

pytestmark = pytest.mark.anyio

FX = f'["{sys.executable}", "{FIXTURE}", "stdio", "local"]'


async def registry(c: Client, tool: str, **args):
    result = await c.call_tool(tool, args)
    assert not result.is_error, text(result)
    return json.loads(text(result))


async def state(c: Client, provider: str) -> dict:
    return next(p for p in (await registry(c, "registry_list"))["providers"] if p["name"] == provider)


async def wait_state(c: Client, provider: str, want: str, timeout: float = 20) -> dict:
    with anyio.fail_after(timeout):
        while (s := await state(c, provider))["state"] != want:
            await anyio.sleep(0.1)
    return s


async def test_lazy_start_predefined_tools_and_one_start_for_concurrent_first_calls(gateway_factory):
    gw = gateway_factory(
        f"""
providers:
  local:
    mode: subprocess
    command: {FX}
    tools: [{{name: whoami, description: "predefined"}}, {{name: add, inputSchema: {{type: object}}}}]
""",
        "gateway-lazy",
    )
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        listed = [t.name for t in (await c.list_tools()).tools]
        assert listed[:2] == ["local__whoami", "local__add"], "predefined tools listed while COLD"
        assert (await state(c, "local"))["state"] == "COLD", "listing did not start it"
        answers: list[str] = []

        async def first_call():
            answers.append(text(await c.call_tool("local__whoami", {})))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(first_call)
        assert len(set(answers)) == 1, f"one process served all first calls: {set(answers)}"
        s = await state(c, "local")
        assert s["state"] == "READY" and s["pid"] == int(answers[0].split(":")[1])
        details = await registry(c, "registry_details", provider="local")
        causes = [e["cause"] for e in details["events"]]
        assert causes == ["start", "ready"], causes
        listed = [t.name for t in (await c.list_tools()).tools]
        assert "local__fail" in listed, "once running, the provider's own list is served"


async def test_fifty_concurrent_calls_share_one_process(gateway_factory):
    gw = gateway_factory(f"providers:\n  local:\n    mode: subprocess\n    command: {FX}\n", "gateway-mux")
    async with Client(gw.url, mode="legacy", read_timeout_seconds=30) as c:
        results: dict[int, str] = {}

        async def one(i: int):
            results[i] = text(await c.call_tool("local__add", {"a": i, "b": 0.5}))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        assert all(results[i] == f"{i + 0.5}" for i in range(50)), results
        assert len(await registry(c, "registry_details", provider="local")) > 0
        assert [e["cause"] for e in (await registry(c, "registry_details", provider="local"))["events"]].count("start") == 1


async def test_idle_provider_is_collected_back_to_cold(gateway_factory):
    gw = gateway_factory(f"providers:\n  local:\n    mode: subprocess\n    command: {FX}\n    idle_ttl_s: 1\n", "gateway-gc")
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        pid = int(text(await c.call_tool("local__whoami", {})).split(":")[1])
        s = await wait_state(c, "local", "COLD", timeout=10)
        assert s["pid"] is None
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        assert not pid_alive(pid), "the idle process was stopped"
        events = (await registry(c, "registry_details", provider="local"))["events"]
        assert events[-1]["cause"] == "idle_collected" and events[-1]["to"] == "COLD"
        again = int(text(await c.call_tool("local__whoami", {})).split(":")[1])
        assert again != pid, "the next call started a fresh process"


async def test_a_crash_fails_the_call_and_recovery_brings_the_provider_back(gateway_factory):
    gw = gateway_factory(
        f"providers:\n  local:\n    mode: subprocess\n    command: {FX}\n    recovery: {{max_attempts: 3, backoff_s: 0.3}}\n",
        "gateway-crash",
    )
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        pid = int(text(await c.call_tool("local__whoami", {})).split(":")[1])
        with anyio.fail_after(10):
            with pytest.raises(MCPError) as err:
                await c.call_tool("local__crash", {})
        assert "local" in str(err.value) and "exited" in str(err.value)
        s = await wait_state(c, "local", "READY", timeout=15)
        assert s["pid"] not in (None, pid), "recovery started a new process"
        causes = [e["cause"] for e in (await registry(c, "registry_details", provider="local"))["events"]]
        assert causes[-3:] == ["crashed", "start", "ready"], causes
        assert text(await c.call_tool("local__echo", {"text": "back"})) == "back"


BAD = {
    "missing": '["/nonexistent/mcp-server"]',
    "exits": f'["{sys.executable}", "-c", "import sys; print(\'no config\', file=sys.stderr); sys.exit(3)"]',
    "garbage": f'["{sys.executable}", "-c", "print(\'hello, this is not JSON\', flush=True); import time; time.sleep(60)"]',
    "silent": '["sleep", "60"]',
}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_providers_fail_clearly_and_the_rest_keeps_working(gateway_factory, fixture_url, kind):
    gw = gateway_factory(
        f"""
server:
  limits: {{first_byte_timeout_s: 1.5}}
providers:
  bad:
    mode: subprocess
    command: {BAD[kind]}
    recovery: {{max_attempts: 1, backoff_s: 30}}
  good:
    mode: remote
    endpoint: {fixture_url}
""",
        f"gateway-bad-{kind}",
    )
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        t = time.monotonic()
        with pytest.raises(MCPError) as err:
            await c.call_tool("bad__anything", {})
        assert time.monotonic() - t < 10
        message = str(err.value)
        assert '"bad"' in message, message
        expected = {
            "missing": "cannot start",
            "exits": "exited during start (exit status: 3); stderr: no config",
            "garbage": "did not complete the MCP handshake",
            "silent": "did not complete the MCP handshake",
        }[kind]
        assert expected in message, message
        s = await state(c, "bad")
        assert s["state"] == "DEAD" and s["last_error"], s
        assert text(await c.call_tool("good__echo", {"text": "fine"})) == "fine"
        with pytest.raises(MCPError) as again:
            await c.call_tool("bad__anything", {})
        assert "DEAD" in str(again.value) and "recovering" in str(again.value), "fails fast while recovery is pending"


async def test_server_everything_over_stdio(gateway_factory):
    gw = gateway_factory(
        f'providers:\n  ev:\n    mode: subprocess\n    command: ["{NODE}", "{EVERYTHING}", "stdio"]\n', "gateway-ev-stdio"
    )
    async with Client(gw.url, mode="legacy", read_timeout_seconds=30) as c:
        assert text(await c.call_tool("ev__echo", {"message": "over stdio"})) == "Echo: over stdio"
        seen: list[float] = []

        async def progress(p, total, message):
            seen.append(p)

        await c.call_tool("ev__trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=progress)
        assert len(seen) >= 3
