"""Provider groups against real upstream processes: members killed and restarted under steady
load (no idempotent call fails, breakers open and close, traffic returns), least-connections
steering away from a slow member, priority failover and failback, consistent hashing, and legacy
sessions pinned to the member that holds their upstream session."""

from __future__ import annotations

import time
from collections import Counter

import json
import urllib.error
import urllib.request

import anyio
import pytest
from mcp.client import Client

from conftest import MODES, start_fixture, text

pytestmark = pytest.mark.anyio

# Fast breaker and recovery timings so a restart cycle takes a couple of seconds.
MEMBER = """
  {name}:
    mode: remote
    endpoint: http://127.0.0.1:{port}/mcp
    expose: false
    health_check_interval_s: 1
    health_check_timeout_s: 1
    max_consecutive_failures: 2
    recovery: {{max_attempts: 1000, backoff_s: 0.2, max_backoff_s: 0.5}}
    circuit_breaker: {{open_s: 1, half_open_probes: 1}}
"""


def config(fixtures: dict, group: str) -> str:
    """Providers for the started `fixtures` (name → (process, port)), then the `group` section."""
    return "providers:" + "".join(MEMBER.format(name=n, port=port) for n, (_, port) in fixtures.items()) + group


@pytest.fixture
def members():
    """`members(*names, **kw)` starts fixture servers and returns every one started so far (name →
    (process, port)); whatever that mapping holds at the end of the test is stopped, so a test
    that restarts a member puts the new process in it."""
    started: dict = {}

    def start(*names: str, **kw):
        started.update({n: start_fixture(n, **kw) for n in names})
        return started

    yield start
    for proc, _ in started.values():
        proc.stop()


async def details(url: str, provider: str) -> dict:
    async with Client(url, mode="2026-07-28", read_timeout_seconds=30) as c:
        return (await c.call_tool("registry_details", {"provider": provider})).structured_content


class Load:
    """Clients of both eras calling `pool__whoami` in a loop; answers counted by member."""

    def __init__(self, url: str, tool: str = "pool__whoami"):
        self.url, self.tool = url, tool
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = anyio.Event()

    async def worker(self, mode: str, lists: bool = True) -> None:
        """`lists`: the client lists the tools first (a modern client with a cached list does
        not; which tools are safe to retry must not depend on it)."""
        async with Client(self.url, mode=mode, read_timeout_seconds=30) as c:
            if lists:
                await c.list_tools()
            while not self.stop.is_set():
                try:
                    r = await c.call_tool(self.tool, {})
                    if r.is_error:
                        self.failures.append(f"{mode}: {text(r)}")
                    else:
                        self.answers[text(r)] += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    self.failures.append(f"{mode}: {e!r}")

    async def until(self, answer: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.answers[answer] == 0:
            assert time.monotonic() < deadline, f"no answer from {answer} within {timeout}s: {self.answers}"
            await anyio.sleep(0.05)


def kill(proc) -> None:
    proc.proc.kill()
    proc.stop()


async def restart(name: str, port: int, **kw):
    return await anyio.to_thread.run_sync(lambda: start_fixture(name, port=port, **kw))


async def test_a_member_killed_and_restarted_under_load_fails_no_idempotent_call(gateway_factory, members):
    fixtures = members("m1", "m2", "m3")
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: weighted_round_robin\n    members: [m1, m2, m3]\n",
        ),
        "gateway-groups-fault",
    )
    load = Load(gw.url)
    async with anyio.create_task_group() as tg:
        for i in range(4):
            # No client lists the tools: the gateway learns which are safe to retry by itself.
            tg.start_soon(load.worker, MODES[i % 2], False)
        m2, port = fixtures["m2"]
        await load.until(f"m2:{m2.proc.pid}")
        for cycle in range(3):
            before = max(e["seq"] for e in (await details(gw.url, "m2"))["events"])
            kill(fixtures["m2"][0])
            await anyio.sleep(1.5)
            fixtures["m2"] = await restart("m2", port)
            await load.until(f"m2:{fixtures['m2'][0].proc.pid}")
            # Traffic is back once the breaker has closed: read what it went through.
            await anyio.sleep(0.5)
            info = await details(gw.url, "m2")
            causes = [e["cause"] for e in info["events"] if e["seq"] > before]
            assert "breaker_open" in causes, f"cycle {cycle}: {causes}"
            assert "breaker_closed" in causes[causes.index("breaker_open") :], f"cycle {cycle}: {causes}"
            assert info["state"] == "READY" and info["circuit"] == "closed", info
        load.stop.set()
    assert load.failures == [], load.failures[:5]
    served = Counter(answer.split(":")[0] for answer in load.answers.elements())
    assert set(served) == {"m1", "m2", "m3"}, served


async def test_least_connections_sends_less_to_a_slow_member(gateway_factory, members):
    members("fast1", "fast2")
    fixtures = members("slow", env={"FIXTURE_DELAY_MS": "200"})
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: least_connections\n    members: [fast1, fast2, slow]\n",
        ),
        "gateway-groups-least",
    )
    load = Load(gw.url)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(load.worker, "2026-07-28")
        await anyio.sleep(4)
        load.stop.set()
    assert load.failures == [], load.failures[:5]
    served = Counter(answer.split(":")[0] for answer in load.answers.elements())
    assert served["slow"] > 0, served
    assert served["slow"] * 3 < min(served["fast1"], served["fast2"]), served


async def test_priority_fails_over_and_back(gateway_factory, members):
    fixtures = members("primary", "backup")
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: priority\n"
            "    members: [{provider: primary, priority: 0}, {provider: backup, priority: 1}]\n",
        ),
        "gateway-groups-priority",
    )
    load = Load(gw.url)
    async with anyio.create_task_group() as tg:
        for mode in MODES:
            tg.start_soon(load.worker, mode)
        primary, port = fixtures["primary"]
        await load.until(f"primary:{primary.proc.pid}")
        await anyio.sleep(0.5)
        assert not any(a.startswith("backup") for a in load.answers), "tier 1 unused while tier 0 is healthy"
        kill(primary)
        await load.until(f"backup:{fixtures['backup'][0].proc.pid}")
        fixtures["primary"] = await restart("primary", port)
        await load.until(f"primary:{fixtures['primary'][0].proc.pid}")
        # Failback is complete: the backup gets nothing any more.
        await anyio.sleep(1)
        load.answers.clear()
        await anyio.sleep(1)
        load.stop.set()
    assert load.failures == [], load.failures[:5]
    assert set(a.split(":")[0] for a in load.answers) == {"primary"}, load.answers
    causes = [e["cause"] for e in (await details(gw.url, "pool"))["events"]]
    assert causes[-2:] == ["failover", "failback"], causes


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_that_reached_a_member_is_not_repeated_but_one_that_did_not_is(gateway_factory, members, mode):
    fixtures = members("primary", "backup")
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: priority\n"
            "    members: [{provider: primary, priority: 0}, {provider: backup, priority: 1}]\n",
        ),
        "gateway-groups-unsafe",
    )
    async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
        await c.list_tools()
        assert text(await c.call_tool("pool__echo", {"text": "warm"})) == "warm"
        failed: list[str] = []

        async def long_call():
            try:
                await c.call_tool("pool__slow", {"seconds": 5})
            except Exception as e:  # noqa: BLE001
                failed.append(str(e))

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            await anyio.sleep(1)
            kill(fixtures["primary"][0])
        # `slow` may have had effects on the member that died: it is not repeated elsewhere.
        assert failed and "primary" in failed[0], failed
        # `echo` (not marked idempotent) never reaches the dead member: it goes to the backup.
        for i in range(6):
            assert text(await c.call_tool("pool__echo", {"text": f"t{i}"})) == f"t{i}"


@pytest.mark.parametrize("mode", MODES)
async def test_retry_safety_does_not_depend_on_the_client_listing(gateway_factory, members, mode):
    """A client that never lists (a modern one with a cached list, or one that reached another
    replica) calls a read-only tool; the member dies mid-call. The gateway learnt the tool's
    annotations itself, so the call is repeated on the backup and succeeds."""
    fixtures = members("primary", "backup")
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: priority\n"
            "    members: [{provider: primary, priority: 0}, {provider: backup, priority: 1}]\n",
        ),
        "gateway-groups-learnt",
    )
    async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
        answers: list[str] = []

        async def long_read():
            answers.append(text(await c.call_tool("pool__slow_read", {"seconds": 3})))

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_read)
            await anyio.sleep(1)
            kill(fixtures["primary"][0])
    assert answers and answers[0].startswith("backup:"), answers


@pytest.mark.parametrize("mode", MODES)
async def test_consistent_hash_keeps_a_key_on_one_member(gateway_factory, members, mode):
    fixtures = members("h1", "h2", "h3")
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: consistent_hash\n    hash_key: arg:key\n"
            "    members: [h1, h2, h3]\n",
        ),
        "gateway-groups-hash",
    )
    async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
        owners = {}
        for key in [f"user-{i}" for i in range(24)]:
            seen = {text(await c.call_tool("pool__whoami", {"key": key})) for _ in range(3)}
            assert len(seen) == 1, f"{key} moved between members: {seen}"
            owners[key] = seen.pop().split(":")[0]
    assert len(set(owners.values())) == 3, owners


def legacy_post(url: str, session: str | None, message: dict) -> tuple[int, dict, dict]:
    """One raw legacy POST (JSON replies): status, headers, body (empty for 202)."""
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
    }
    if session:
        headers["mcp-session-id"] = session
    req = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return r.status, dict(r.headers), json.loads(body) if body else {}
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, dict(e.headers), json.loads(body) if body else {}


def whoami_call(i: int) -> dict:
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "pool__whoami", "arguments": {}}}


async def test_legacy_sessions_stay_on_their_member_and_end_with_it(gateway_factory, members):
    fixtures = members("l1", "l2", transport="legacy-http")
    gw = gateway_factory(
        config(
            fixtures,
            "\n  pool:\n    mode: group\n    strategy: weighted_round_robin\n    members: [l1, l2]\n",
        ),
        "gateway-groups-pinning",
    )
    # Stateless clients spread over both members.
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        spread = {text(await c.call_tool("pool__whoami", {})).split(":")[0] for _ in range(4)}
        assert spread == {"l1", "l2"}, spread
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    _, headers, _ = legacy_post(gw.url, None, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    session = {k.lower(): v for k, v in headers.items()}["mcp-session-id"]
    legacy_post(gw.url, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    answers = {legacy_post(gw.url, session, whoami_call(i))[2]["result"]["content"][0]["text"] for i in range(6)}
    assert len(answers) == 1, f"a legacy session moved between members: {answers}"
    pinned = answers.pop().split(":")[0]

    kill(fixtures[pinned][0])
    status, _, body = legacy_post(gw.url, session, whoami_call(7))
    assert status == 404, body
    assert body["error"]["code"] == -32013 and "initialize a new session" in body["error"]["message"], body
    status, _, _ = legacy_post(gw.url, session, {"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert status == 404, "the session is over"

    async with Client(gw.url, mode="legacy", read_timeout_seconds=30) as c:
        other = text(await c.call_tool("pool__whoami", {})).split(":")[0]
        assert other != pinned
