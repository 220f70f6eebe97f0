"""Upstreams on the deprecated HTTP+SSE transport (2024-11-05), detected automatically or
configured with `transport: sse`, reached by clients of both eras."""

from __future__ import annotations

import pytest
from mcp.client import Client
from mcp_types import ElicitResult

from conftest import MODES, start_fixture, text

pytestmark = pytest.mark.anyio


async def accept_ada(ctx, params):
    return ElicitResult(action="accept", content={"name": "Ada"})


@pytest.fixture(scope="module")
def sse_fixture():
    proc, port = start_fixture("fxsse", "sse")
    yield f"http://127.0.0.1:{port}/sse"
    proc.stop()


@pytest.fixture
def sse_gateway(gateway_factory, sse_fixture):
    return gateway_factory(
        f"""
providers:
  auto:
    mode: remote
    endpoint: {sse_fixture}
  old:
    mode: remote
    endpoint: {sse_fixture}
    transport: sse
""",
        "gateway-http-sse",
    )


@pytest.mark.parametrize("mode", MODES)
async def test_http_sse_upstreams(sse_gateway, mode):
    async with Client(sse_gateway.url, mode=mode, read_timeout_seconds=30, elicitation_callback=accept_ada) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert "auto__add" in names and "old__add" in names
        assert text(await c.call_tool("auto__add", {"a": 2, "b": 3})) == "5.0"
        assert text(await c.call_tool("old__echo", {"text": "hi"})) == "hi"
        progress: list[float] = []

        async def on_progress(p, total, message):
            progress.append(p)

        await c.call_tool("old__slow", {"seconds": 0.2}, progress_callback=on_progress)
        assert progress == [float(i) for i in range(1, 11)]
        assert text(await c.call_tool("auto__greet_user", {})) == "Hello, Ada!"
        assert (await c.read_resource("fixture://static")).contents[0].text == "static text from fxsse"
