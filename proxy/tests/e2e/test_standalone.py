"""A legacy server that asks its client on the session's standalone GET stream, not tied to the
call (peers/standalone_asker.mjs, official TypeScript SDK), behind the gateway. A modern client's
call leases an upstream session of its own, so the question reaches that call (as an MRTR round);
a legacy client has a session of its own and is asked on its GET stream. Several calls at once,
each question answered for the call that caused it; sessions amortised by the pool."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp_types import CreateMessageResult, ElicitResult, ListRootsResult, Root, TextContent

from conftest import MODES, NODE, PEERS, Proc, free_port, text, wait_port

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).resolve().parent / "peers" / "standalone_asker.mjs"


@pytest.fixture(scope="module")
def asker_url():
    script = PEERS / SCRIPT.name  # ES modules resolve packages next to the script
    shutil.copyfile(SCRIPT, script)
    port = free_port()
    proc = Proc(f"standalone-asker-{port}", [str(NODE), str(script), str(port)])
    wait_port(port, proc.proc, "standalone asker")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.stop()


@pytest.fixture(scope="module")
def asker_gateway(asker_url):
    from conftest import Gateway

    gw = Gateway(f"providers:\n  ask:\n    mode: remote\n    endpoint: {asker_url}\n", "gateway-standalone")
    yield gw
    gw.stop()


def last_word(params) -> str:
    """The question's tag: the sampled message's text, or the elicitation's message."""
    messages = getattr(params, "messages", None)
    return messages[-1].content.text if messages else params.message


async def echo_llm(ctx, params):
    await anyio.sleep(0.05)
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=f"sampled {last_word(params)}"), model="m", stop_reason="endTurn")


async def echo_user(ctx, params):
    return ElicitResult(action="accept", content={"answer": f"typed {last_word(params)}"})


async def roots(ctx):
    return ListRootsResult(roots=[Root(uri="file:///work/a"), Root(uri="file:///work/b")])


def client(gw, mode: str, **kw) -> Client:
    return Client(gw.url, mode=mode, read_timeout_seconds=30, sampling_callback=echo_llm, elicitation_callback=echo_user, list_roots_callback=roots, **kw)


@pytest.mark.parametrize("mode", MODES)
async def test_questions_on_the_standalone_stream_reach_the_call(asker_gateway, mode):
    async with client(asker_gateway, mode) as c:
        assert text(await c.call_tool("ask__ask_llm", {"tag": "t1"})) == "t1: sampled t1"
        assert text(await c.call_tool("ask__ask_user", {"tag": "t2"})) == "t2: accept typed t2"
        assert text(await c.call_tool("ask__my_roots", {"tag": "t3"})) == "t3: file:///work/a,file:///work/b"


@pytest.mark.parametrize("mode", MODES)
async def test_several_calls_at_once_each_get_their_own_answers(asker_gateway, mode):
    results: dict[str, str] = {}
    async with client(asker_gateway, mode) as c:

        async def one(i: int):
            tag = f"{mode}-{i}"
            tool = "ask__ask_llm" if i % 2 else "ask__ask_user"
            r = await c.call_tool(tool, {"tag": tag})
            assert not r.is_error, text(r)
            results[tag] = text(r)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
    assert len(results) == 8
    for tag, said in results.items():
        assert said.startswith(f"{tag}: ") and said.endswith(tag), (tag, said)


async def test_the_pool_amortises_sessions(asker_gateway):
    async with client(asker_gateway, "2026-07-28") as c:
        before = int(text(await c.call_tool("ask__sessions", {})))
        for i in range(20):
            assert text(await c.call_tool("ask__ask_llm", {"tag": f"seq{i}"})).endswith(f"seq{i}")
        after = int(text(await c.call_tool("ask__sessions", {})))
    # Twenty calls one after the other reuse one leased session (at most one more is opened).
    assert after - before <= 1, (before, after)


async def test_a_modern_clients_log_level_reaches_the_leased_session(asker_gateway):
    got: list[str] = []

    async def on_log(params):
        got.append(str(params.data))

    async with Client(asker_gateway.url, mode="2026-07-28", read_timeout_seconds=30, sampling_callback=echo_llm, logging_callback=on_log, log_level="warning") as c:
        assert text(await c.call_tool("ask__log", {"tag": "lv"})) == "lv: logged"
    assert sorted(got) == ["lv error", "lv warning"], got


async def test_a_modern_client_that_asked_for_no_logs_gets_none(asker_gateway):
    got: list[str] = []

    async def on_log(params):
        got.append(str(params.data))

    async with Client(asker_gateway.url, mode="2026-07-28", read_timeout_seconds=30, sampling_callback=echo_llm, logging_callback=on_log) as c:
        assert text(await c.call_tool("ask__log", {"tag": "quiet"})) == "quiet: logged"
    assert got == [], "notifications/message only for requests that carry a log level (2026-07-28)"


async def test_without_the_capability_the_question_is_refused_not_hung(asker_gateway):
    async with Client(asker_gateway.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        with anyio.fail_after(15):
            r = await c.call_tool("ask__ask_llm", {"tag": "nocap"})
    assert r.is_error or re.search(r"capab|not found|sampling", text(r), re.I), text(r)
