"""One bad provider never takes the others down: a provider that is down fails its own tools with
a clear error and is skipped (and reported) in merged lists; a slow call holds up no one else."""

from __future__ import annotations

import time

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import MODES, free_port, text

pytestmark = pytest.mark.anyio


@pytest.fixture
def gateway_with_dead_provider(gateway_factory, fixture_url):
    dead = free_port()
    return gateway_factory(
        f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
  down:
    mode: remote
    endpoint: http://127.0.0.1:{dead}/mcp
    tools: [{{name: lookup, description: "predefined", inputSchema: {{type: object}}}}]
  gone:
    mode: remote
    endpoint: http://127.0.0.1:{dead}/other
""",
        "gateway-dead",
    )


@pytest.mark.parametrize("mode", MODES)
async def test_a_down_provider_fails_alone(gateway_with_dead_provider, mode):
    async with Client(gateway_with_dead_provider.url, mode=mode, read_timeout_seconds=30) as c:
        listed = await c.list_tools()
        names = [t.name for t in listed.tools]
        assert "fx__add" in names
        assert "down__lookup" in names, "predefined tools stay listed while the provider is down"
        assert not any(n.startswith("gone__") for n in names)
        unavailable = (listed.meta or {}).get("io.mcp-hangar/unavailableProviders", [])
        assert [u["provider"] for u in unavailable] == ["gone"], unavailable

        with pytest.raises(MCPError) as err:
            await c.call_tool("down__lookup", {})
        assert "down" in str(err.value) and "unavailable" in str(err.value)
        assert text(await c.call_tool("fx__add", {"a": 1, "b": 1})) == "2.0"


def start_session_fixture(port: int):
    """The TypeScript-SDK conformance fixture: a legacy, session-based upstream."""
    import shutil
    from pathlib import Path

    from conftest import NODE, PEERS, Proc, wait_port

    script = PEERS / "conformance_server.mjs"
    shutil.copyfile(Path(__file__).resolve().parent / "peers" / "conformance_server.mjs", script)
    proc = Proc(f"session-fixture-{port}", [str(NODE), str(script), str(port)])
    wait_port(port, proc.proc, "session fixture")
    return proc


@pytest.mark.parametrize("mode", MODES)
async def test_lost_upstream_sessions_are_reopened_transparently(gateway_factory, mode):
    port = free_port()
    upstream = start_session_fixture(port)
    gw = gateway_factory(f"providers:\n  ts:\n    mode: remote\n    endpoint: http://127.0.0.1:{port}/mcp\n", "gateway-reinit")
    try:
        async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
            first = await c.call_tool("ts__test_simple_text", {})
            assert "simple text" in text(first)
            # The upstream restarts and forgets every session: its next answer is a 404.
            upstream.stop()
            upstream = start_session_fixture(port)
            again = await c.call_tool("ts__test_simple_text", {})
            assert "simple text" in text(again)
    finally:
        upstream.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_timeouts_are_clear_errors(gateway_factory, fixture_url, mode):
    gw = gateway_factory(
        f"server:\n  limits: {{first_byte_timeout_s: 1}}\nproviders:\n  fx:\n    mode: remote\n    endpoint: {fixture_url}\n",
        "gateway-timeout",
    )
    async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
        # Warm up: once the upstream is known to be modern, modern calls take the proxying fast path.
        assert text(await c.call_tool("fx__echo", {"text": "warm"})) == "warm"
        t = time.monotonic()
        with pytest.raises(MCPError) as err:
            await c.call_tool("fx__wait_for_cancel", {"tag": f"timeout-{mode}"})
        assert time.monotonic() - t < 5
        assert text(await c.call_tool("fx__echo", {"text": "still fine"})) == "still fine"
    assert "fx" in str(err.value) and ("timed out" in str(err.value) or "did not answer" in str(err.value))


@pytest.mark.parametrize("mode", MODES)
async def test_a_slow_call_blocks_no_one(gateway, mode):
    async with Client(gateway.url, mode=mode, read_timeout_seconds=30) as c:
        quick: list[float] = []

        async def slow():
            await c.call_tool("fx__slow", {"seconds": 3})

        async def quick_calls():
            await anyio.sleep(0.3)
            for _ in range(5):
                t = time.monotonic()
                await c.call_tool("ev__echo", {"message": "x"})
                await c.call_tool("fx__echo", {"text": "x"})
                quick.append(time.monotonic() - t)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            tg.start_soon(quick_calls)
    assert max(quick) < 1.0, quick
