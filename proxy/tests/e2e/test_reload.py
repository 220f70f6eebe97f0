"""Live configuration: the file rewritten while clients of both eras call tools, bad edits that
must change nothing, SIGHUP and the reload tool, provider directories, and clients told of list
changes. Real gateway, real SDK clients, real upstreams (the SDK fixture over HTTP and stdio)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.shared.subscriptions import ToolsListChanged
from mcp_types import ToolListChangedNotification

from conftest import FIXTURE, LOGS, HANGAR_BIN, Proc, free_port, text, with_local_admin
from test_subscriptions import Inbox, next_event

pytestmark = pytest.mark.anyio


class LiveGateway:
    """A gateway on a configuration file the test rewrites."""

    def __init__(self, yaml: str, name: str = "reload"):
        self.port = free_port()
        self.dir = LOGS / f"{name}-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "config.yaml"
        self.path.write_text(with_local_admin(yaml))
        args = [str(HANGAR_BIN), "--http", "--port", str(self.port), "--config", str(self.path), "--log-level", "info,mcp_hangar=debug"]
        self.proc = Proc(f"{name}-{self.port}", args)
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            assert self.proc.proc.poll() is None, self.proc.output()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, self.proc.output()
            time.sleep(0.05)

    def write(self, yaml: str) -> float:
        """Saves as editors do (a new file renamed over the old one); returns when."""
        tmp = self.path.with_name(".config.yaml.tmp")
        tmp.write_text(with_local_admin(yaml))
        os.replace(tmp, self.path)
        return time.monotonic()

    def stop(self):
        self.proc.stop()


@pytest.fixture
def live_gateway():
    started = []

    def start(yaml: str, name: str = "reload") -> LiveGateway:
        gw = LiveGateway(yaml, name)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


async def tool_names(url: str) -> set[str]:
    async with Client(url, mode="2026-07-28") as c:
        return {t.name for t in (await c.list_tools()).tools}


async def wait_for_tools(url: str, present: set[str], absent: set[str], timeout: float = 5) -> float:
    """Polls the tool list until `present` are all there and `absent` all gone; returns when."""
    deadline = time.monotonic() + timeout
    while True:
        names = await tool_names(url)
        if present <= names and not (absent & names):
            return time.monotonic()
        assert time.monotonic() < deadline, f"wanted {present} and not {absent}, have {sorted(names)}"
        await anyio.sleep(0.05)


async def health(url: str) -> dict:
    async with Client(url, mode="2026-07-28") as c:
        return json.loads(text(await c.call_tool("registry_health", {})))


def config(fixture_url: str, churn: list[str], group: list[str], sub_prefix: str = "sub__") -> str:
    lines = [
        "providers:",
        f"  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}",
        f"  sub: {{mode: subprocess, command: [\"{sys.executable}\", \"{FIXTURE}\", \"stdio\", \"sub\"], tool_prefix: \"{sub_prefix}\", idle_ttl_s: 3600}}",
    ]
    for name in churn:
        lines.append(f"  {name}: {{mode: remote, endpoint: \"{fixture_url}\", expose: true, description: \"{name}\"}}")
    if group:
        lines.append(f"  pool: {{mode: group, members: [{', '.join(group)}]}}")
    return "\n".join(lines) + "\n"


async def test_rewrites_under_traffic_drop_no_call_and_keep_unchanged_providers(live_gateway, fixture_url):
    gw = live_gateway(config(fixture_url, ["c0"], ["fx", "c0"]))
    async with Client(gw.url, mode="2026-07-28") as c:
        pid = text(await c.call_tool("sub__whoami", {}))
    failures: list[str] = []
    calls = {"n": 0}
    stop = anyio.Event()

    async def caller(mode: str, tool: str):
        async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
            while not stop.is_set():
                try:
                    out = text(await c.call_tool(tool, {"text": "x"} if tool.endswith("echo") else {}))
                    if tool.endswith("echo") and out != "x":
                        failures.append(f"{mode} {tool}: {out}")
                    calls["n"] += 1
                except Exception as e:  # noqa: BLE001 -- every failure is the finding
                    failures.append(f"{mode} {tool}: {e!r}")
                await anyio.sleep(0.01)

    latencies = []
    async with anyio.create_task_group() as tg:
        for mode in ["legacy", "2026-07-28"]:
            for tool in ["fx__echo", "sub__echo", "pool__whoami"]:
                tg.start_soon(caller, mode, tool)
        await anyio.sleep(0.5)
        for i in range(1, 21):
            churn = [f"c{i}"] if i % 3 else [f"c{i}", f"c{i}b"]
            group = ["fx", f"c{i}"] if i % 2 else ["fx"]
            written = gw.write(config(fixture_url, churn, group))
            previous = {f"c{i - 1}__echo", f"c{i - 1}b__echo"}
            seen = await wait_for_tools(gw.url, {f"c{i}__echo"}, previous)
            latencies.append(seen - written)
            await anyio.sleep(0.2)
        stop.set()
    assert not failures, f"{len(failures)} failed calls of {calls['n']}: {failures[:5]}"
    assert calls["n"] > 100, calls
    assert max(latencies) < 1.0, f"tools appeared/disappeared after {max(latencies):.2f}s (p50 {sorted(latencies)[len(latencies) // 2]:.2f}s)"
    async with Client(gw.url, mode="2026-07-28") as c:
        assert text(await c.call_tool("sub__whoami", {})) == pid, "the unchanged subprocess kept its process"
    h = await health(gw.url)
    assert h["config"]["generation"] == 21 and h["config"]["last_reload"]["outcome"] == "applied", h


async def test_bad_edits_change_nothing_and_say_why(live_gateway, fixture_url, tmp_path):
    providers_dir = tmp_path / "providers.d"
    providers_dir.mkdir()
    good = config(fixture_url, ["c1"], []) + f"discovery:\n  sources:\n    - {{type: filesystem, path: \"{providers_dir}\", mode: authoritative}}\n"
    gw = live_gateway(good, "bad-edits")

    async def rejected(why: str):
        deadline = time.monotonic() + 5
        while True:
            h = await health(gw.url)
            last = h["config"]["last_reload"]
            if last["outcome"] == "rejected" and why in (last["error"] or ""):
                break
            assert time.monotonic() < deadline, h
            await anyio.sleep(0.05)
        assert "c1__echo" in await tool_names(gw.url), "the last good configuration keeps serving"
        async with Client(gw.url, mode="legacy") as c:
            assert text(await c.call_tool("c1__echo", {"text": "ok"})) == "ok"

    gw.write(good.replace("providers:", "providers: [", 1))
    await rejected("invalid YAML")
    gw.write(good.replace("description: \"c1\"", "descripton: \"c1\""))
    await rejected("did you mean \"description\"?")
    # A half-written file: the first part of a save, as a slow writer leaves it.
    gw.path.write_text(good[: len(good) // 2])
    await rejected(str(gw.path))
    gw.write(good)
    await wait_for_tools(gw.url, {"c1__echo"}, set())
    # A provider directory's file clashing with a name the file uses.
    clash = providers_dir / "clash.yaml"
    clash.write_text(f"name: c1\nmode: remote\nconnection: {{endpoint: \"{fixture_url}\"}}\n")
    await rejected("provider name \"c1\" is already defined")
    clash.unlink()
    (providers_dir / "extra.yaml").write_text(f"name: extra\nmode: http\nconnection: {{endpoint: \"{fixture_url}\"}}\n")
    await wait_for_tools(gw.url, {"extra__echo", "c1__echo"}, set())
    # The configuration file removed (by mistake, or mid-deploy): an error, nothing changes.
    gw.path.unlink()
    await rejected("cannot read file")
    gw.write(good)
    # Authoritative: a provider file removed removes its provider.
    (providers_dir / "extra.yaml").unlink()
    await wait_for_tools(gw.url, {"c1__echo"}, {"extra__echo"})


async def test_sighup_and_the_reload_tool(live_gateway, fixture_url):
    base = config(fixture_url, ["c1"], []) + "config_reload: {enabled: false}\n"
    gw = live_gateway(base, "sighup")
    gw.write(base.replace("c1", "c2"))
    await anyio.sleep(1.5)
    assert "c1__echo" in await tool_names(gw.url), "not watched: nothing changes by itself"
    os.kill(gw.proc.proc.pid, signal.SIGHUP)
    await wait_for_tools(gw.url, {"c2__echo"}, {"c1__echo"})
    gw.write(base.replace("c1", "c3"))
    async with Client(gw.url, mode="2026-07-28") as c:
        dry = json.loads(text(await c.call_tool("registry_reload", {"dry_run": True})))
        assert dry["status"] == "dry_run" and dry["added"] == ["c3"] and dry["removed"] == ["c2"], dry
        assert "c2__echo" in {t.name for t in (await c.list_tools()).tools}, "a dry run changes nothing"
        done = json.loads(text(await c.call_tool("hangar_reload_config", {})))
        assert done["status"] == "success" and done["added"] == ["c3"] and done["removed"] == ["c2"], done
        assert done["unchanged"] == ["fx", "sub"] and done["duration_ms"] >= 0, done
        again = json.loads(text(await c.call_tool("registry_reload", {})))
        assert again["status"] == "unchanged", again
        gw.write(base.replace("c1", "c3").replace("providers:", "providers: ["))
        bad = await c.call_tool("registry_reload", {})
        assert bad.is_error and "rejected" in text(bad), text(bad)


async def test_clients_are_told_when_a_reload_changes_the_lists(live_gateway, fixture_url):
    # Remote providers only: a subprocess starting up may announce list changes of its own.
    only = lambda name: f"providers:\n  {name}: {{mode: remote, endpoint: \"{fixture_url}\"}}\n"
    gw = live_gateway(only("c1"), "told")
    inbox = Inbox()
    async with Client(gw.url, mode="legacy", read_timeout_seconds=30, message_handler=inbox) as legacy:
        assert "c1__echo" in {t.name for t in (await legacy.list_tools()).tools}
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as modern:
            async with modern.listen(tools_list_changed=True) as sub:
                await anyio.sleep(0.3)
                assert not inbox.messages, "nothing changed yet"
                gw.write(only("c2"))
                event = await next_event(sub)
                assert isinstance(event, ToolsListChanged)
        await inbox.wait_for(ToolListChangedNotification)
    async with Client(gw.url, mode="legacy") as fresh:
        assert "c2__echo" in {t.name for t in (await fresh.list_tools()).tools}, "the new lists are served"


async def provider_state(c: Client, name: str) -> dict:
    """The provider's `registry_list` entry (`state: None` while it is not configured)."""
    listed = json.loads(text(await c.call_tool("registry_list", {})))["providers"]
    return next((p for p in listed if p["name"] == name), {"state": None})


async def wait_provider_state(c: Client, name: str, want: str, timeout: float = 20) -> dict:
    with anyio.fail_after(timeout):
        while (s := await provider_state(c, name))["state"] != want:
            await anyio.sleep(0.1)
    return s


async def test_warm_providers_start_without_a_call_and_stay_up(live_gateway, fixture_url):
    # Predefined tools: describing or listing the gateway starts none of them (it would start one
    # without them to learn its tools), so only being warm does.
    sub = lambda name, extra: (
        f"  {name}: {{mode: subprocess, command: [\"{sys.executable}\", \"{FIXTURE}\", \"stdio\", \"{name}\"], tools: [{{name: whoami}}], {extra}}}\n"
    )
    lazy = "idle_ttl_s: 1"
    base = "providers:\n" + sub("early", "warm: true, idle_ttl_s: 1") + sub("lazy", lazy)
    gw = live_gateway(base, "warm")
    async with Client(gw.url, mode="2026-07-28") as c:
        early = await wait_provider_state(c, "early", "READY")
        assert early["pid"], "started with the gateway, before any call"
        assert (await provider_state(c, "lazy"))["state"] == "COLD", "the others still start on first use"
        await anyio.sleep(1.5)
        assert (await provider_state(c, "early"))["pid"] == early["pid"], "never collected for being idle"

        gw.write(base + sub("added", "warm: true"))
        assert (await wait_provider_state(c, "added", "READY"))["pid"], "a reload starts the warm providers it adds"

        stopped = json.loads(text(await c.call_tool("registry_stop", {"provider": "early"})))
        assert stopped["state"] == "COLD", stopped
        await anyio.sleep(1)
        assert (await provider_state(c, "early"))["state"] == "COLD", "stopped by hand: stays stopped"

        # Turned warm in place: the running instance is started, not replaced.
        gw.write("providers:\n" + sub("early", "warm: true, idle_ttl_s: 1") + sub("lazy", lazy + ", warm: true") + sub("added", "warm: true"))
        assert (await wait_provider_state(c, "lazy", "READY"))["pid"]
