"""A gateway in front of a gateway (both unprefixed, so names pass through): the inner gateway's
admin tools are left out of the outer one's list, and said to be (never silently shadowed);
`server.admin_tools: false` keeps a gateway's own tools out of MCP altogether, so the other
gateway's are listed and callable through it. Legacy clients get no modern-only result fields
through the modern hop."""

from __future__ import annotations

import json
import urllib.request

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import MODES, text

pytestmark = pytest.mark.anyio


def unprefixed(name: str, url: str, extra: str = "") -> str:
    return f"providers:\n  {name}:\n    mode: remote\n    endpoint: {url}\n    tool_prefix: \"\"\n{extra}"


async def test_the_inner_gateways_admin_tools_are_shadowed_and_said_to_be(gateway_factory, fixture_url):
    inner = gateway_factory(unprefixed("fx", fixture_url), "gateway-inner-admin")
    outer = gateway_factory(unprefixed("inner", inner.url), "gateway-outer-admin")
    async with Client(outer.url, mode="2026-07-28") as c:
        listed = await c.list_tools()
        names = [t.name for t in listed.tools]
        assert names.count("registry_list") == 1 and "echo" in names, names
        shadowed = (listed.meta or {}).get("io.mcp-hangar/shadowedTools", [])
        assert {"provider": "inner", "tool": "registry_list"} in shadowed, listed.meta
        # The name is the outer gateway's: its providers are "inner".
        providers = [p["name"] for p in json.loads(text(await c.call_tool("registry_list", {})))["providers"]]
        assert providers == ["inner"], providers


async def test_admin_tools_off_leaves_the_names_to_providers(gateway_factory, fixture_url):
    inner = gateway_factory(unprefixed("fx", fixture_url), "gateway-inner-open")
    outer = gateway_factory(unprefixed("inner", inner.url, "server:\n  admin_tools: false\n"), "gateway-outer-closed")
    async with Client(outer.url, mode="2026-07-28") as c:
        listed = await c.list_tools()
        assert not (listed.meta or {}).get("io.mcp-hangar/shadowedTools"), listed.meta
        assert [t.name for t in listed.tools].count("registry_list") == 1
        # Through the outer gateway, registry_list is the inner one's: its provider is "fx".
        providers = [p["name"] for p in json.loads(text(await c.call_tool("registry_list", {})))["providers"]]
        assert providers == ["fx"], providers


async def test_a_gateway_with_admin_tools_off_offers_none(gateway_factory, fixture_url):
    gw = gateway_factory(unprefixed("fx", fixture_url, "server:\n  admin_tools: false\n"), "gateway-no-admin")
    async with Client(gw.url, mode="2026-07-28") as c:
        assert not [t.name for t in (await c.list_tools()).tools if t.name.startswith("registry_")]
        with pytest.raises(MCPError) as err:
            await c.call_tool("registry_list", {})
        assert "Unknown tool" in str(err.value)


@pytest.mark.parametrize("mode", MODES)
async def test_results_through_a_modern_hop_are_of_the_clients_era(gateway_factory, fixture_url, mode):
    inner = gateway_factory(unprefixed("fx", fixture_url), "gateway-inner-era")
    outer = gateway_factory(unprefixed("inner", inner.url, "server:\n  admin_tools: false\n"), "gateway-outer-era")

    def post(body: dict, headers: dict) -> tuple[dict, dict]:
        """The raw reply, as the client receives it (JSON, or the SSE event carrying it)."""
        req = urllib.request.Request(outer.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            text_ = r.read().decode()
            got = dict(r.headers)
        if not text_.lstrip().startswith("{"):
            text_ = next(line[5:] for line in text_.splitlines() if line.startswith("data:"))
        return json.loads(text_), {k.lower(): v for k, v in got.items()}

    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hop"}}}
    if mode == "legacy":
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        _, got = await anyio.to_thread.run_sync(post, init, headers)
        headers |= {"mcp-session-id": got["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    else:
        headers |= {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}
        call["params"]["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    reply, _ = await anyio.to_thread.run_sync(post, call, headers)
    result = reply["result"]
    assert result["content"][0]["text"] == "hop", reply
    if mode == "legacy":
        modern_only = {"resultType", "ttlMs", "cacheScope"} & set(result)
        assert not modern_only, result
        assert not any(k.startswith("io.modelcontextprotocol/") for k in (result.get("_meta") or {})), result
    else:
        assert result["resultType"] == "complete", result


@pytest.mark.parametrize("mode", MODES)
async def test_a_log_level_crosses_the_modern_hop(gateway_factory, fixture_url, mode):
    """A legacy client's logging/setLevel (a modern client's per-request level) reaches the inner
    gateway as the 2026-07-28 per-request logLevel, so log messages flow as they do directly; a
    modern request with no level gets none."""
    inner = gateway_factory(unprefixed("fx", fixture_url), "gateway-inner-logs")
    outer = gateway_factory(unprefixed("inner", inner.url, "server:\n  admin_tools: false\n"), "gateway-outer-logs")
    got: list[str] = []

    async def on_log(params):
        got.append(str(params.data))

    kw = {"logging_callback": on_log}
    if mode != "legacy":
        kw["log_level"] = "info"
    async with Client(outer.url, mode=mode, read_timeout_seconds=30, **kw) as c:
        if mode == "legacy":
            await c.set_logging_level("info")
        assert text(await c.call_tool("log_messages", {"count": 3})) == "logged 3"
    assert [m for m in got if "log message" in m] == ["log message 0", "log message 1", "log message 2"], got
    if mode != "legacy":
        quiet: list[str] = []

        async def on_quiet(params):
            quiet.append(str(params.data))

        async with Client(outer.url, mode=mode, read_timeout_seconds=30, logging_callback=on_quiet) as c:
            assert text(await c.call_tool("log_messages", {"count": 3})) == "logged 3"
        assert quiet == [], quiet
