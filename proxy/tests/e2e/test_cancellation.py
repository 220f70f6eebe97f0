"""Cancellation reaches the upstream: a legacy client's notifications/cancelled, and a modern
client closing its stream, stop the call at the provider, whatever transport the provider uses."""

from __future__ import annotations

import sys
import uuid

import anyio
import pytest
from mcp.client import Client
from mcp_types import TextContent

from conftest import FIXTURE, MODES, start_fixture

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cancel_gateway(fixture_url):
    from conftest import Gateway

    sse, sse_port = start_fixture("fxsse-cancel", "sse")
    gw = Gateway(
        f"""
providers:
  http:
    mode: remote
    endpoint: {fixture_url}
  stdio:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio", "stdio"]
  sse:
    mode: remote
    endpoint: http://127.0.0.1:{sse_port}/sse
""",
        "gateway-cancel",
    )
    yield gw
    gw.stop()
    sse.stop()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["http", "stdio", "sse"])
async def test_cancellation_reaches_the_provider(cancel_gateway, mode, provider):
    tag = f"{mode}-{uuid.uuid4().hex[:8]}"
    async with Client(cancel_gateway.url, mode=mode, read_timeout_seconds=30) as c:
        with anyio.move_on_after(1.0) as scope:
            await c.call_tool(f"{provider}__wait_for_cancel", {"tag": tag})
        assert scope.cancelled_caught, "the call should still have been running"
        seen = ""
        with anyio.fail_after(10):
            while tag not in seen:
                await anyio.sleep(0.1)
                result = await c.call_tool(f"{provider}__cancellations", {})
                seen = "".join(x.text for x in result.content if isinstance(x, TextContent))
    assert tag in seen.split(",")


@pytest.fixture(scope="module")
def deadline_gateway(fixture_url):
    from conftest import Gateway

    sse, sse_port = start_fixture("fxsse-deadline", "sse")
    gw = Gateway(
        f"""
providers:
  http:
    mode: remote
    endpoint: {fixture_url}
    call_timeout_s: 1.5
  stdio:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio", "stdio"]
    call_timeout_s: 1.5
  sse:
    mode: remote
    endpoint: http://127.0.0.1:{sse_port}/sse
    call_timeout_s: 1.5
""",
        "gateway-deadline",
    )
    yield gw
    gw.stop()
    sse.stop()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["http", "stdio", "sse"])
async def test_a_call_past_its_deadline_times_out_and_is_cancelled_upstream(deadline_gateway, mode, provider):
    from mcp.shared.exceptions import MCPError

    tag = f"deadline-{mode}-{uuid.uuid4().hex[:8]}"
    async with Client(deadline_gateway.url, mode=mode, read_timeout_seconds=30) as c:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(MCPError) as err:
            await c.call_tool(f"{provider}__wait_for_cancel", {"tag": tag})
        took = anyio.current_time() - started
        assert "call_timeout_s" in str(err.value) and 1.4 < took < 6, (str(err.value), took)
        seen = ""
        with anyio.fail_after(10):
            while tag not in seen:
                await anyio.sleep(0.1)
                result = await c.call_tool(f"{provider}__cancellations", {})
                seen = "".join(x.text for x in result.content if isinstance(x, TextContent))
    assert tag in seen.split(","), "the upstream learnt the call was cancelled"
