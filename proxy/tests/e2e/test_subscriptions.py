"""Change notifications through the gateway: modern `subscriptions/listen` streams and legacy
`resources/subscribe` + list_changed on the session stream, from upstreams of both eras."""

from __future__ import annotations

import anyio
import pytest
from mcp.client import Client
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types import (
    ResourceUpdatedNotification,
    ServerNotification,
    ToolListChangedNotification,
)

pytestmark = pytest.mark.anyio


async def next_event(sub, timeout: float = 10):
    with anyio.fail_after(timeout):
        return await sub.__anext__()


async def test_modern_listen_gets_tool_list_changes_and_fresh_lists(gateway):
    async with Client(gateway.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        before = {t.name for t in (await c.list_tools()).tools}
        async with c.listen(tools_list_changed=True) as sub:
            assert sub.honored.tools_list_changed
            async with Client(gateway.url, mode="2026-07-28") as other:
                added = (await other.call_tool("fx__change_tools", {})).content[0].text
            event = await next_event(sub)
            assert isinstance(event, ToolsListChanged)
        after = {t.name for t in (await c.list_tools()).tools}
    assert after - before == {f"fx__{added}"}, "the cached list was invalidated by the change"


async def test_modern_listen_gets_resource_updates_from_a_modern_upstream(gateway):
    async with Client(gateway.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        async with c.listen(resource_subscriptions=["fixture://static", "nowhere://x"]) as sub:
            assert list(sub.honored.resource_subscriptions or []) == ["fixture://static"], "unknown URIs are not honoured"
            await c.call_tool("fx__touch", {"uri": "fixture://item/1"})  # not subscribed: must not arrive
            await c.call_tool("fx__touch", {"uri": "fixture://static"})
            event = await next_event(sub)
    assert isinstance(event, ResourceUpdated) and event.uri == "fixture://static"


async def test_modern_listen_gets_resource_updates_from_a_legacy_upstream(gateway):
    async with Client(gateway.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        uri = next(str(r.uri) for r in (await c.list_resources()).resources if str(r.uri).startswith("demo://"))
        async with c.listen(resource_subscriptions=[uri]) as sub:
            await c.call_tool("ev__toggle-subscriber-updates", {})
            event = await next_event(sub, 15)
            await c.call_tool("ev__toggle-subscriber-updates", {})
    assert isinstance(event, ResourceUpdated) and event.uri == uri


class Inbox:
    def __init__(self):
        self.messages: list = []
        self.arrived = anyio.Event()

    async def __call__(self, message):
        if isinstance(message, ServerNotification):
            self.messages.append(message)
            self.arrived.set()
            self.arrived = anyio.Event()

    async def wait_for(self, kind, predicate=lambda m: True, timeout: float = 15):
        with anyio.fail_after(timeout):
            while True:
                for m in self.messages:
                    if isinstance(m, kind) and predicate(m):
                        return m
                await self.arrived.wait()


async def test_legacy_session_gets_list_changes_and_subscribed_updates_from_a_modern_upstream(gateway):
    inbox = Inbox()
    async with Client(gateway.url, mode="legacy", read_timeout_seconds=30, message_handler=inbox) as c:
        await c.subscribe_resource("fixture://static")
        await c.call_tool("fx__touch", {"uri": "fixture://static"})
        got = await inbox.wait_for(ResourceUpdatedNotification)
        assert got.params.uri == "fixture://static"
        await c.call_tool("fx__change_tools", {})
        await inbox.wait_for(ToolListChangedNotification)
        await c.unsubscribe_resource("fixture://static")


async def test_legacy_session_gets_updates_from_a_legacy_upstream(gateway):
    inbox = Inbox()
    async with Client(gateway.url, mode="legacy", read_timeout_seconds=30, message_handler=inbox) as c:
        uri = next(str(r.uri) for r in (await c.list_resources()).resources if str(r.uri).startswith("demo://"))
        await c.subscribe_resource(uri)
        await c.call_tool("ev__toggle-subscriber-updates", {})
        got = await inbox.wait_for(ResourceUpdatedNotification, lambda m: str(m.params.uri) == uri)
        await c.call_tool("ev__toggle-subscriber-updates", {})
    assert str(got.params.uri) == uri
