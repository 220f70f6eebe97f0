"""Container providers against a real Docker-compatible engine (podman's API service, started by
.ci/container-engine.sh) with an image built FROM scratch around the static hangar-upstream server.

Without an engine (DOCKER_HOST and HANGAR_CONTAINER_IMAGE unset) these tests are skipped with that
reason shown; .ci/run starts the engine and says loudly if it cannot."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import MODES, free_port, text, tools_within

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not (os.environ.get("DOCKER_HOST") and os.environ.get("HANGAR_CONTAINER_IMAGE")),
        reason="no container engine: DOCKER_HOST/HANGAR_CONTAINER_IMAGE unset (.ci/container-engine.sh sets them)",
    ),
]

IMAGE = os.environ.get("HANGAR_CONTAINER_IMAGE", "")


def containers(provider: str, all_states: bool = True) -> list[dict]:
    args = ["podman", "ps", "--format", "json", "--filter", f"label=io.mcp-hangar.provider={provider}"]
    if all_states:
        args.insert(2, "-a")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def inspect(container_id: str) -> dict:
    out = subprocess.run(["podman", "inspect", container_id], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


async def wait_for(predicate, timeout: float = 15):
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.1)


def config(provider: str, image: str = IMAGE, extra: str = "") -> str:
    return f"providers:\n  {provider}:\n    mode: container\n    image: {image}\n{extra}"


@pytest.mark.parametrize("mode", MODES)
async def test_container_provider_is_started_contained_and_served(gateway_factory, mode):
    provider = f"box{mode.replace('-', '')}"
    gw = gateway_factory(config(provider, extra="    memory: 64m\n    cpus: 0.5\n"), f"gateway-{provider}")
    assert containers(provider) == [], "nothing runs before the first call"
    async with Client(gw.url, mode=mode, read_timeout_seconds=60) as c:
        assert text(await c.call_tool(f"{provider}__add", {"a": 2, "b": 5})) == "7"
        who = text(await c.call_tool(f"{provider}__whoami", {}))
        assert who.endswith(":1"), f"the server is PID 1 of its container: {who}"
    running = containers(provider, all_states=False)
    assert len(running) == 1
    details = inspect(running[0]["Id"])
    host = details["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "none"
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert details["Config"]["Labels"]["io.mcp-hangar.managed"] == "true"
    gw.proc.proc.send_signal(signal.SIGTERM)
    assert gw.proc.proc.wait(20) == 0
    assert containers(provider) == [], "shutdown stops and removes the container"


async def test_idle_container_is_removed(gateway_factory):
    gw = gateway_factory(config("idlebox", extra="    idle_ttl_s: 1\n"), "gateway-idlebox")
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
        assert text(await c.call_tool("idlebox__echo", {"text": "hi"})) == "hi"
        assert len(containers("idlebox")) == 1
        await wait_for(lambda: containers("idlebox") == [])
        t = time.monotonic()
        assert text(await c.call_tool("idlebox__echo", {"text": "again"})) == "again"
        assert time.monotonic() - t < 10


async def test_missing_image_is_a_clear_error(gateway_factory):
    gw = gateway_factory(config("ghost", image="localhost/does-not-exist:never", extra="    recovery: {max_attempts: 0}\n"), "gateway-ghost")
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
        with pytest.raises(MCPError) as err:
            await c.call_tool("ghost__echo", {"text": "x"})
        assert "localhost/does-not-exist:never" in str(err.value) and "cannot be pulled" in str(err.value), str(err.value)
        listing = json.loads(text(await c.call_tool("registry_list", {})))
        ghost = next(p for p in listing["providers"] if p["name"] == "ghost")
        assert ghost["state"] == "DEAD"
    assert containers("ghost") == []


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout.strip()


def serve_in_container(name: str, port: int, labels: dict[str, str]) -> None:
    """A container on the host network running hangar-upstream's HTTP server on 127.0.0.1:port."""
    flags = [f for k, v in labels.items() for f in ("--label", f"{k}={v}")]
    podman("run", "-d", "--name", name, "--network", "host", *flags, "--entrypoint", "/app", IMAGE, "http", str(port))


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


async def test_labelled_containers_come_and_go_as_providers(gateway_factory):
    """Docker discovery against the real engine: a labelled container appears as a provider within
    2 s of serving and goes within 2 s of stopping (event-driven: the periodic relist is 30 s away);
    containers with a bad port or a name already taken are reported by registry_sources, not added,
    and a container waiting for a taken name takes it over when its holder stops."""
    ports = [free_port() for _ in range(3)]
    # Sorted by name, the first container keeps "boxed" and the third is the clash.
    names = [f"hangar-disc-{tag}{p}" for tag, p in zip("abc", ports)]
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  refresh_interval_s: 30\n  sources:\n"
        "    - {type: docker, mode: authoritative, allow_loopback: true}\n",
        "gateway-docker-discovery",
    )
    try:
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:

            async def tools() -> set[str]:
                return {t.name for t in (await c.list_tools()).tools}

            async def within(seconds: float, predicate) -> float:
                started = time.monotonic()
                while not predicate(await tools()):
                    assert time.monotonic() - started < seconds, f"not within {seconds}s: {sorted(await tools())}"
                    await anyio.sleep(0.05)
                return time.monotonic() - started

            serve_in_container(names[0], ports[0], {"mcp.hangar.enabled": "true", "mcp.hangar.name": "boxed", "mcp.hangar.port": str(ports[0])})
            serve_in_container(names[1], ports[1], {"mcp.hangar.enabled": "true", "mcp.hangar.port": "abc"})
            serve_in_container(names[2], ports[2], {"mcp.hangar.enabled": "true", "mcp.hangar.name": "boxed", "mcp.hangar.port": str(ports[2])})
            await wait_for(lambda: port_open(ports[0]))
            await within(2, lambda t: "boxed__add" in t)
            assert text(await c.call_tool("boxed__add", {"a": 2, "b": 5})) == "ok"  # hangar-upstream's HTTP answer

            started = time.monotonic()
            while True:  # every container's start event has been answered within 2 s
                report = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
                if len(report[0]["problems"]) == 2 or time.monotonic() - started > 2:
                    break
                await anyio.sleep(0.05)
            assert len(report) == 1 and report[0]["type"] == "docker" and report[0]["healthy"], report
            assert report[0]["providers"] == ["boxed"], report
            problems = "\n".join(report[0]["problems"])
            assert f'container {names[1]}: mcp.hangar.port "abc" is not a port number' in problems, problems
            assert f'provider name "boxed" is taken by another workload' in problems, problems

            # The holder goes: the container that waited for the name takes it over (its clash
            # is no longer reported) and serves the same tools; when it goes too, so do they.
            podman("rm", "-f", "-t", "0", names[0])
            started = time.monotonic()
            while True:
                report = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
                if len(report[0]["problems"]) == 1 or time.monotonic() - started > 2:
                    break
                await anyio.sleep(0.05)
            assert report[0]["providers"] == ["boxed"] and "taken" not in report[0]["problems"][0], report
            await within(2, lambda t: "boxed__add" in t)
            assert text(await c.call_tool("boxed__add", {"a": 2, "b": 5})) == "ok"
            podman("rm", "-f", "-t", "0", names[2])
            await within(2, lambda t: "boxed__add" not in t)
    finally:
        for name in names:
            subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


async def test_an_engine_that_goes_away(gateway_factory, tmp_path):
    """The engine's API service stops (its containers keep running): both sources report it; an
    authoritative source drops its providers after grace_period_s, an additive one keeps them
    (and they keep serving); the engine back, the authoritative source finds them again."""
    from conftest import Proc

    sock = tmp_path / "engine.sock"

    def engine(run: int) -> Proc:
        proc = Proc(f"podman-service-{port}-{run}", ["podman", "system", "service", "--time=0", f"unix://{sock}"])
        deadline = time.monotonic() + 15
        while subprocess.run(["curl", "-sf", "--unix-socket", str(sock), "http://d/_ping"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and proc.proc.poll() is None, "the engine's API service did not start"
            time.sleep(0.1)
        return proc

    port = free_port()
    name = f"hangar-steady-{port}"
    service = engine(1)

    def source(mode: str, extra: str = "") -> str:
        return (
            "discovery:\n  enabled: true\n  sources:\n"
            f"    - {{type: docker, mode: {mode}, socket_path: \"{sock}\", allow_loopback: true{extra}}}\n"
        )

    try:
        serve_in_container(name, port, {"mcp.hangar.enabled": "true", "mcp.hangar.name": "steady", "mcp.hangar.port": str(port)})
        await wait_for(lambda: port_open(port))
        strict = gateway_factory(source("authoritative", ", grace_period_s: 2"), "gateway-engine-authoritative")
        lenient = gateway_factory(source("additive", ", grace_period_s: 2"), "gateway-engine-additive")
        async with Client(strict.url, mode="2026-07-28", read_timeout_seconds=60) as a, Client(lenient.url, mode="2026-07-28", read_timeout_seconds=60) as b:
            for c in (a, b):
                await tools_within(c, 10, lambda t: "steady__add" in t)

            service.stop()  # the API goes; the container does not
            for c in (a, b):
                with anyio.fail_after(10):
                    while (src := json.loads(text(await c.call_tool("registry_sources", {})))["sources"][0])["healthy"]:
                        await anyio.sleep(0.1)
                assert "engine" in (src["error"] or ""), src
            await tools_within(a, 10, lambda t: "steady__add" not in t)
            await anyio.sleep(3)  # past the grace period: the additive source keeps its provider
            assert "steady__add" in await tools_within(b, 0, lambda t: True)
            assert text(await b.call_tool("steady__add", {"a": 1, "b": 2})) == "ok"

            service = engine(2)
            await tools_within(a, 20, lambda t: "steady__add" in t)
            assert json.loads(text(await a.call_tool("registry_sources", {})))["sources"][0]["healthy"]
    finally:
        service.stop()
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


async def test_containers_naming_a_group_form_its_pool(gateway_factory):
    ports = [free_port() for _ in range(2)]
    names = [f"hangar-pool-{p}" for p in ports]
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  sources:\n    - {type: docker, mode: authoritative, allow_loopback: true}\n",
        "gateway-docker-pool",
    )
    try:
        for name, port in zip(names, ports):
            serve_in_container(name, port, {"mcp.hangar.enabled": "true", "mcp.hangar.group": "pool", "mcp.hangar.port": str(port)})
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:

            async def listed() -> set[str]:
                return {t.name for t in (await c.list_tools()).tools}

            deadline = time.monotonic() + 15
            while "pool__add" not in await listed():
                assert time.monotonic() < deadline, await listed()
                await anyio.sleep(0.1)
            assert not any(t.startswith("hangar-pool-") for t in await listed()), "members are served through the group"
            while True:  # the group may form with the first container before the second has started
                details = json.loads(text(await c.call_tool("registry_details", {"provider": "pool"})))
                if len(details["members"]) == 2 or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            assert sorted(m["name"] for m in details["members"]) == sorted(names), details
            for _ in range(4):
                assert text(await c.call_tool("pool__add", {"a": 2, "b": 2})) == "ok"  # hangar-upstream's HTTP answer
            podman("rm", "-f", "-t", "0", names[0])
            deadline = time.monotonic() + 5
            while True:
                details = json.loads(text(await c.call_tool("registry_details", {"provider": "pool"})))
                if len(details["members"]) == 1 or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            assert [m["name"] for m in details["members"]] == [names[1]], details
            for _ in range(4):
                assert text(await c.call_tool("pool__add", {"a": 1, "b": 1})) == "ok"
    finally:
        for name in names:
            subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


async def test_discovery_refuses_loopback_endpoints_unless_allowed(gateway_factory):
    port = free_port()
    name = f"hangar-disc-loop-{port}"
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  sources:\n    - {type: docker, mode: authoritative}\n", "gateway-docker-strict"
    )
    try:
        serve_in_container(name, port, {"mcp.hangar.enabled": "true", "mcp.hangar.name": "hostnet", "mcp.hangar.port": str(port)})
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
            deadline = time.monotonic() + 10
            while True:
                report = json.loads(text(await c.call_tool("registry_sources", {})))["sources"][0]
                if report["problems"] or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            assert report["providers"] == [] and "loopback" in "\n".join(report["problems"]), report
            assert not any(t.name.startswith("hostnet") for t in (await c.list_tools()).tools)
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


async def test_newcomers_wait_in_quarantine_until_approved(gateway_factory, tmp_path):
    """auto_register off: a labelled container is quarantined (listed nowhere, reason given) until
    registry_approve; one whose server never answers is quarantined after its admission check.
    Both are audited; the source's gauges are exported."""
    ports = [free_port() for _ in range(2)]
    names = [f"hangar-quar-{p}" for p in ports]
    audit = tmp_path / "audit.jsonl"
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  auto_register: false\n  sources:\n"
        "    - {type: docker, mode: authoritative, allow_loopback: true}\n"
        f"observability:\n  audit: {{enabled: true, path: {audit}}}\n",
        "gateway-docker-quarantine",
    )
    try:
        serve_in_container(names[0], ports[0], {"mcp.hangar.enabled": "true", "mcp.hangar.name": "newbie", "mcp.hangar.port": str(ports[0])})
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:

            async def held() -> list[dict]:
                return json.loads(text(await c.call_tool("registry_quarantine", {})))["quarantined"]

            deadline = time.monotonic() + 10
            while not await held():
                assert time.monotonic() < deadline, "never quarantined"
                await anyio.sleep(0.1)
            [q] = await held()
            assert q["name"] == "newbie" and "auto_register" in q["reason"] and q["source"] == 0, q
            assert not any(t.name.startswith("newbie") for t in (await c.list_tools()).tools)
            approved = json.loads(text(await c.call_tool("registry_approve", {"provider": "newbie"})))
            assert approved["status"] == "success" and approved["added"] == ["newbie"], approved
            assert "newbie__echo" in {t.name for t in (await c.list_tools()).tools}
            assert await held() == []
            again = await c.call_tool("registry_approve", {"provider": "newbie"})
            assert again.is_error and "is not quarantined" in text(again), again
            records = json.loads(text(await c.call_tool("registry_audit", {"type": "discovery", "provider": "newbie"})))["records"]
            assert [r["action"] for r in records] == ["quarantined", "approved", "discovered"], records
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'mcp_hangar_discovery_providers{source="docker[0]"} 1' in metrics, metrics
        assert "mcp_hangar_discovery_last_sync_timestamp_seconds{source=\"docker[0]\"}" in metrics
    finally:
        for name in names:
            subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


async def test_a_provider_that_never_answers_is_quarantined(gateway_factory):
    port, silent = free_port(), free_port()
    name = f"hangar-mute-{port}"
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  sources:\n    - {type: docker, mode: authoritative, allow_loopback: true}\n",
        "gateway-docker-mute",
    )
    try:
        # The server listens on `port`; the label sends the gateway to `silent`, where nothing does.
        serve_in_container(name, port, {"mcp.hangar.enabled": "true", "mcp.hangar.name": "mute", "mcp.hangar.port": str(silent)})
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
            deadline = time.monotonic() + 20
            while True:
                held = json.loads(text(await c.call_tool("registry_quarantine", {})))["quarantined"]
                if held or time.monotonic() > deadline:
                    break
                assert not any(t.name.startswith("mute") for t in (await c.list_tools()).tools), "served before it answered"
                await anyio.sleep(0.2)
            assert [q["name"] for q in held] == ["mute"] and "admission check" in held[0]["reason"], held
            assert not any(t.name.startswith("mute") for t in (await c.list_tools()).tools)
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
