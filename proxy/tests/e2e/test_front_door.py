"""The gateway as one MCP server in front of two real upstreams of different eras, driven by the
official SDK client in both eras. `fx` is the SDK fixture (it speaks 2026-07-28, so the gateway
talks to it statelessly); `ev` is server-everything (legacy only). Every test runs for a legacy
and a modern client, so both bridge directions are covered."""

from __future__ import annotations

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CreateMessageResult,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

from conftest import MODES, text

pytestmark = pytest.mark.anyio


async def accept_ada(ctx, params):
    return ElicitResult(action="accept", content={"name": "Ada"})


async def answer_paris(ctx, params):
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text="Paris"), model="test-model", stop_reason="endTurn"
    )


async def two_roots(ctx):
    return ListRootsResult(roots=[Root(uri="file:///work/a"), Root(uri="file:///work/b")])


def client(gateway, mode, **kw) -> Client:
    return Client(gateway.url, mode=mode, read_timeout_seconds=30, **kw)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_merged_in_declaration_order(gateway, mode):
    async with client(gateway, mode) as c:
        names = [t.name for t in (await c.list_tools()).tools]
    fx = [n for n in names if n.startswith("fx__")]
    ev = [n for n in names if n.startswith("ev__")]
    own = [n for n in names if n.startswith("registry_")]
    assert fx[:5] == ["fx__add", "fx__echo", "fx__whoami", "fx__crash", "fx__fail"]
    assert "ev__echo" in ev and "ev__get-sum" in ev
    assert names == fx + ev + own, "fx (declared first) lists before ev, the gateway's own tools last"
    assert own == ["registry_list", "registry_details", "registry_start", "registry_stop", "registry_tools", "registry_invoke", "registry_invoke_ex", "registry_invoke_stream", "registry_health", "registry_status", "registry_warm", "registry_audit", "registry_reload", "registry_quarantine", "registry_approve", "registry_discover", "registry_sources"]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mode", MODES)
async def test_calls_reach_the_right_provider(gateway, mode):
    async with client(gateway, mode) as c:
        assert text(await c.call_tool("fx__add", {"a": 2, "b": 40})) == "42.0"
        assert text(await c.call_tool("ev__echo", {"message": "hi"})) == "Echo: hi"
        assert "7" in text(await c.call_tool("ev__get-sum", {"a": 3, "b": 4}))
        failed = await c.call_tool("fx__fail", {"message": "kaput"})
        assert failed.is_error and "fail" in text(failed)


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_tool_is_a_clear_error(gateway, mode):
    async with client(gateway, mode) as c:
        with pytest.raises(MCPError) as err:
            await c.call_tool("nope__nothing", {})
    assert "Unknown tool" in str(err.value) and "nope__nothing" in str(err.value)


@pytest.mark.parametrize("mode", MODES)
async def test_fifty_concurrent_calls(gateway, mode):
    results: dict[int, str] = {}
    async with client(gateway, mode) as c:

        async def one(i: int):
            tool = "fx__add" if i % 2 else "ev__get-sum"
            results[i] = text(await c.call_tool(tool, {"a": i, "b": 1000}))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    for i in range(50):
        assert str(i + 1000) in results[i], (i, results[i])


@pytest.mark.parametrize("mode", MODES)
async def test_resources_keep_their_uris(gateway, mode):
    async with client(gateway, mode) as c:
        uris = [str(r.uri) for r in (await c.list_resources()).resources]
        assert "fixture://static" in uris
        assert any(u.startswith("demo://") for u in uris), uris
        static = await c.read_resource("fixture://static")
        assert static.contents[0].text == "static text from fx"
        templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
        assert "fixture://item/{item_id}" in templates
        item = await c.read_resource("fixture://item/42")
        assert item.contents[0].text == "item 42 from fx"
        ev_uri = next(u for u in uris if u.startswith("demo://"))
        assert (await c.read_resource(ev_uri)).contents
        with pytest.raises(MCPError) as err:
            await c.read_resource("fixture://unknown/thing")
    assert "Resource not found" in str(err.value)


@pytest.mark.parametrize("mode", MODES)
async def test_prompts(gateway, mode):
    async with client(gateway, mode) as c:
        names = [p.name for p in (await c.list_prompts()).prompts]
        assert "fx__greeting" in names and "ev__simple-prompt" in names
        got = await c.get_prompt("fx__greeting", {"person": "Grace"})
        assert "Grace" in got.messages[0].content.text
        assert (await c.get_prompt("ev__simple-prompt")).messages


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool,args", [("fx__slow", {"seconds": 0.5}), ("ev__trigger-long-running-operation", {"duration": 1, "steps": 4})])
async def test_progress_is_relayed(gateway, mode, tool, args):
    seen: list[float] = []

    async def progress(p, total, message):
        seen.append(p)

    async with client(gateway, mode) as c:
        result = await c.call_tool(tool, args, progress_callback=progress)
    assert not result.is_error, text(result)
    assert len(seen) >= 4 and seen == sorted(seen), seen


@pytest.mark.parametrize("mode", MODES)
async def test_log_messages_are_relayed(gateway, mode):
    got: list[str] = []

    async def on_log(params):
        got.append(str(params.data))

    kw = {"logging_callback": on_log}
    if mode != "legacy":
        kw["log_level"] = "info"
    async with client(gateway, mode, **kw) as c:
        if mode == "legacy":
            await c.set_logging_level("info")
        result = await c.call_tool("fx__log_messages", {"count": 3})
    assert text(result) == "logged 3"
    assert [m for m in got if "log message" in m] == ["log message 0", "log message 1", "log message 2"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool,args", [("fx__greet_user", {}), ("ev__trigger-elicitation-request", {})])
async def test_elicitation_crosses_eras(gateway, mode, tool, args):
    async with client(gateway, mode, elicitation_callback=accept_ada) as c:
        result = await c.call_tool(tool, args)
    assert not result.is_error, text(result)
    assert "Ada" in text(result)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool,args", [("fx__ask_llm", {}), ("ev__trigger-sampling-request", {"prompt": "Capital of France?"})])
async def test_sampling_crosses_eras(gateway, mode, tool, args):
    async with client(gateway, mode, sampling_callback=answer_paris) as c:
        result = await c.call_tool(tool, args)
    assert not result.is_error, text(result)
    assert "Paris" in text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_roots_requested_within_a_call_cross_eras(gateway, mode):
    async with client(gateway, mode, list_roots_callback=two_roots) as c:
        result = await c.call_tool("fx__show_roots", {})
    assert not result.is_error, text(result)
    assert text(result) == "file:///work/a,file:///work/b"


async def test_session_roots_reach_a_legacy_upstream_from_a_legacy_client(gateway):
    async with client(gateway, "legacy", list_roots_callback=two_roots) as c:
        result = await c.call_tool("ev__get-roots-list", {})
    assert "file:///work/a" in text(result) and "file:///work/b" in text(result)


async def test_session_roots_reach_a_modern_client(gateway):
    # server-everything asks for roots on its session's GET stream, not tied to the call. A
    # modern client's call leases an upstream session of its own, so the question is that call's
    # and becomes an MRTR round the client answers.
    async with client(gateway, "2026-07-28", list_roots_callback=two_roots) as c:
        result = await c.call_tool("ev__get-roots-list", {})
    assert not result.is_error
    assert "file:///work/a" in text(result) and "file:///work/b" in text(result), text(result)


async def test_elicitation_without_the_capability_fails_cleanly(gateway):
    async with client(gateway, "2026-07-28") as c:
        result = await c.call_tool("ev__trigger-elicitation-request", {})
    assert result.is_error or "declined" in text(result).lower() or "capability" in text(result).lower()


async def test_legacy_sessions_are_independent(gateway):
    async with client(gateway, "legacy") as a, client(gateway, "legacy") as b:
        assert text(await a.call_tool("ev__echo", {"message": "a"})) == "Echo: a"
        assert text(await b.call_tool("ev__echo", {"message": "b"})) == "Echo: b"
    # Both sessions were closed with DELETE; a fresh one still works.
    async with client(gateway, "legacy") as c:
        assert text(await c.call_tool("fx__echo", {"text": "again"})) == "again"


@pytest.mark.parametrize("mode", MODES)
async def test_ping_and_completion(gateway, mode):
    async with client(gateway, mode) as c:
        if mode == "legacy":
            await c.send_ping()
        from mcp_types import PromptReference

        done = await c.complete(PromptReference(type="ref/prompt", name="ev__completable-prompt"), {"name": "department", "value": "E"})
        assert "Engineering" in done.completion.values


async def test_session_log_messages_from_a_legacy_upstream_reach_a_legacy_client(gateway):
    got: list[str] = []
    arrived = anyio.Event()

    async def on_log(params):
        got.append(str(params.data))
        arrived.set()

    async with client(gateway, "legacy", logging_callback=on_log) as c:
        await c.set_logging_level("debug")
        await c.call_tool("ev__toggle-simulated-logging", {})
        with anyio.fail_after(8):
            await arrived.wait()
        await c.call_tool("ev__toggle-simulated-logging", {})
    assert any("message" in m for m in got), got
