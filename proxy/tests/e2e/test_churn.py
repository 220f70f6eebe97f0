"""Discovery churn under load: 200 discovery events in 60 s (pods of the fake Kubernetes API and,
with a container engine, real containers starting and stopping) while clients of both eras keep
calling providers that stay. Every call to a provider that stayed must succeed, every churned
provider must be gone at the end, and the gateway's memory must stay flat.

HANGAR_CHURN_SECONDS shortens or lengthens the run (the event rate stays 200 per 60 s)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from conftest import free_port, text, tools_within

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from fake_kube_api import FakeKubeApi, pod  # noqa: E402

pytestmark = pytest.mark.anyio

SECONDS = float(os.environ.get("HANGAR_CHURN_SECONDS", "60"))
EVENTS = round(200 * SECONDS / 60)
ENGINE = bool(os.environ.get("DOCKER_HOST") and os.environ.get("HANGAR_CONTAINER_IMAGE"))
IMAGE = os.environ.get("HANGAR_CONTAINER_IMAGE", "")


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def applied_reloads(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    m = re.search(r'^mcp_hangar_config_reloads_total\{outcome="applied"\} (\S+)$', body, re.M)
    return float(m.group(1)) if m else 0.0


def podman(*args: str) -> None:
    subprocess.run(["podman", *args], capture_output=True, check=True)


def serve(name: str, port: int, provider: str) -> None:
    labels = {"mcp.hangar.enabled": "true", "mcp.hangar.name": provider, "mcp.hangar.port": str(port)}
    flags = [f for k, v in labels.items() for f in ("--label", f"{k}={v}")]
    podman("run", "-d", "--name", name, "--network", "host", *flags, "--entrypoint", "/app", IMAGE, "http", str(port))


async def test_discovery_churn_under_load(gateway_factory, fixture_url, tmp_path):
    fixture_port = fixture_url.split(":")[2].split("/")[0]
    api = FakeKubeApi(free_port())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    notes = lambda name: {"mcp.hangar.io/enabled": "true", "mcp.hangar.io/port": fixture_port, "mcp.hangar.io/name": name}  # noqa: E731
    api.put(pod("mcp", "stay-0", "127.0.0.1", notes("staypod")))
    sources = [f"    - {{type: kubernetes, mode: authoritative, namespaces: [mcp], kubeconfig: \"{kubeconfig}\", allow_loopback: true}}\n"]
    containers: list[str] = []
    box_port = free_port()
    if ENGINE:
        sources.append("    - {type: docker, mode: authoritative, allow_loopback: true}\n")
        containers.append(f"hangar-churn-stay-{box_port}")
        serve(containers[0], box_port, "staybox")
    gw = gateway_factory(
        f"providers:\n  fx:\n    mode: remote\n    endpoint: {fixture_url}\n"
        # A churning cluster registers more than the default 10 newcomers a minute.
        "discovery:\n  enabled: true\n  refresh_interval_s: 30\n  security: {max_registration_rate: 1000}\n"
        "  sources:\n" + "".join(sources),
        "gateway-churn",
    )
    stayers = {"fx__echo": {"text": "fx"}, "staypod__echo": {"text": "pod"}}
    if ENGINE:
        stayers["staybox__add"] = {"a": 1, "b": 2}
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
        await tools_within(c, 20, lambda t: set(stayers) <= t)

    # Events: containers at their own pace (a podman run takes a while), pods for the rest.
    container_events = min(EVENTS // 5, 40) if ENGINE else 0
    pod_events = EVENTS - container_events
    done = threading.Event()
    counts = {"pods": 0, "containers": 0}

    def churn_pods():
        interval = SECONDS / pod_events
        start = time.monotonic()
        for i in range(pod_events // 2):
            name = f"churn-{i}"
            api.put(pod("mcp", name, "127.0.0.1", notes(f"churnpod{i}")))
            counts["pods"] += 1
            time.sleep(max(0.0, start + (2 * i + 1) * interval - time.monotonic()))
            api.delete("mcp", name)
            counts["pods"] += 1
            time.sleep(max(0.0, start + (2 * i + 2) * interval - time.monotonic()))

    def churn_containers():
        if not container_events:
            return
        interval = SECONDS / container_events
        start = time.monotonic()
        for i in range(container_events // 2):
            port = free_port()
            name = f"hangar-churn-{i}-{port}"
            containers.append(name)
            serve(name, port, f"churnbox{i}")
            counts["containers"] += 1
            time.sleep(max(0.0, start + (2 * i + 1) * interval - time.monotonic()))
            podman("rm", "-f", "-t", "0", name)
            counts["containers"] += 1
            time.sleep(max(0.0, start + (2 * i + 2) * interval - time.monotonic()))

    calls = {"ok": 0, "failed": 0}
    failures: list[str] = []

    async def caller(mode: str):
        async with Client(gw.url, mode=mode, read_timeout_seconds=30) as client:
            while not done.is_set():
                for tool, args in stayers.items():
                    try:
                        result = await client.call_tool(tool, args)
                        assert not result.is_error, text(result)
                        calls["ok"] += 1
                    except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                        calls["failed"] += 1
                        failures.append(f"{mode} {tool}: {e!r}"[:300])

    rss: list[int] = []

    async def sample():
        while not done.is_set():
            rss.append(rss_kib(gw.proc.proc.pid))
            await anyio.sleep(1)

    reloads_before = applied_reloads(gw.port)
    try:
        async with anyio.create_task_group() as tg:
            for mode in ("2026-07-28", "legacy", "2026-07-28", "legacy"):
                tg.start_soon(caller, mode)
            tg.start_soon(sample)
            threads = [threading.Thread(target=churn_pods), threading.Thread(target=churn_containers)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                await anyio.sleep(0.2)
            done.set()
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
            left = await tools_within(c, 10, lambda t: not any(n.startswith("churn") for n in t))
            assert set(stayers) <= left, sorted(left)
    finally:
        done.set()
        for name in containers:
            subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
        api.stop()

    reloads = applied_reloads(gw.port) - reloads_before
    third = max(1, len(rss) // 3)
    early, late = statistics.median(rss[:third]), statistics.median(rss[-third:])
    print(
        f"churn: {counts['pods']} pod and {counts['containers']} container events in {SECONDS:.0f} s, "
        f"{reloads:.0f} reloads applied; {calls['ok']} calls ok, {calls['failed']} failed; "
        f"RSS {early / 1024:.1f} MiB -> {late / 1024:.1f} MiB (peak {max(rss) / 1024:.1f} MiB)"
    )
    assert counts["pods"] + counts["containers"] == EVENTS, counts
    assert calls["failed"] == 0, failures[:5]
    assert calls["ok"] >= 4 * len(stayers) * 5, calls  # the load really ran
    assert reloads >= EVENTS / 2, f"only {reloads} reloads for {EVENTS} events"
    assert late <= early * 1.2 + 8 * 1024, f"RSS grew from {early} KiB to {late} KiB"
