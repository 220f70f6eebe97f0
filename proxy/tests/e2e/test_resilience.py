"""One bad provider never takes the others down: a provider that is down fails its own tools with
a clear error and is skipped (and reported) in merged lists; a slow call holds up no one else."""

from __future__ import annotations

import time

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

from conftest import MODES, free_port

pytestmark = pytest.mark.anyio


def text(result) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


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
