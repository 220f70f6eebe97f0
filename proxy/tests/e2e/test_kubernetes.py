"""Kubernetes discovery with the real `kube` client in the gateway against a fake API server
(peers/fake_kube_api.py: list and watch with resourceVersion, bookmarks and 410 Gone, pod
create/delete, status patches; no API server can be installed here). Pods annotated
`mcp.hangar.io/*` become providers and go away with them; readiness, label selectors and namespace
rules are honoured; a group follows its pods; a watch the server expired is listed again.
`MCPProvider`/`MCPProviderGroup` resources become providers and groups, container ones get a pod
the gateway runs, and their status is written back."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from conftest import free_port, text, tools_within

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from fake_kube_api import FakeKubeApi, group, pod, provider  # noqa: E402

pytestmark = pytest.mark.anyio

SELECTED = {"app.kubernetes.io/component": "mcp-provider"}


async def test_annotated_pods_are_providers(gateway_factory, fixture_url, tmp_path):
    port = fixture_url.split(":")[2].split("/")[0]
    # A cluster without the MCP Hangar CRDs: pods are followed all the same.
    api = FakeKubeApi(free_port(), crds=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())

    def marked(ns: str, name: str, ready: bool = True, labels: dict | None = SELECTED, **annotations) -> dict:
        # mcp_name="x" is the annotation mcp.hangar.io/name: "x".
        notes = {"mcp.hangar.io/enabled": "true", "mcp.hangar.io/port": port}
        notes.update({f"mcp.hangar.io/{k.removeprefix('mcp_')}": v for k, v in annotations.items()})
        return pod(ns, name, "127.0.0.1", notes, labels, ready)

    api.put(marked("mcp", "search-0", mcp_name="search"))
    api.put(marked("mcp", "warming-up", ready=False, mcp_name="warming"))
    api.put(marked("kube-system", "sneaky", mcp_name="sneaky"))
    api.put(marked("mcp", "unselected", labels={}, mcp_name="unselected"))
    api.put(marked("mcp", "pool-a", mcp_group="pool"))
    api.put(marked("mcp", "pool-b", mcp_group="pool"))
    try:
        gw = gateway_factory(
            "discovery:\n  enabled: true\n  refresh_interval_s: 30\n"
            "  security: {allowed_namespaces: [mcp, kube-system], denied_namespaces: [kube-system]}\n"
            "  sources:\n"
            f"    - {{type: kubernetes, mode: authoritative, namespaces: [mcp, kube-system], label_selector: \"app.kubernetes.io/component=mcp-provider\", kubeconfig: \"{kubeconfig}\", allow_loopback: true}}\n",
            "gateway-kubernetes",
        )
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:

            await tools_within(c, 15, lambda t: {"search__echo", "pool__echo"} <= t)
            listed = await tools_within(c, 0, lambda t: True)
            for absent in ("warming", "sneaky", "unselected", "pool-a", "pool-b"):
                assert not any(t.startswith(f"{absent}__") for t in listed), (absent, sorted(listed))
            assert text(await c.call_tool("search__echo", {"text": "from a pod"})) == "from a pod"
            assert text(await c.call_tool("pool__echo", {"text": "pooled"})) == "pooled"

            # Ready now: it comes; deleted: it goes.
            api.put(marked("mcp", "warming-up", mcp_name="warming"))
            await tools_within(c, 2, lambda t: "warming__echo" in t)
            api.delete("mcp", "search-0")
            await tools_within(c, 2, lambda t: "search__echo" not in t)

            # A Deployment scaled down: the group keeps the pod that is left.
            api.delete("mcp", "pool-a")
            deadline = time.monotonic() + 2
            while True:
                members = [m["name"] for m in json.loads(text(await c.call_tool("registry_details", {"provider": "pool"})))["members"]]
                if members == ["pool-b"] or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.05)
            assert members == ["pool-b"], members

            # History lost (410 Gone on resuming the watch): the client lists again and sees it.
            lists = api.lists
            api.put_unseen(marked("mcp", "late-0", mcp_name="late"))
            await tools_within(c, 10, lambda t: "late__echo" in t)
            assert api.gone >= 1 and api.lists > lists, (api.gone, api.lists, lists)

            [source] = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
            assert source["type"] == "kubernetes" and source["healthy"], source
            assert sorted(source["providers"]) == ["late", "pool", "pool-b", "warming"], source
            missing = [p for p in source["problems"] if "cannot watch MCPProvider resources" in p]
            assert missing and "are the CRDs installed?" in missing[0], source["problems"]
    finally:
        api.stop()


async def within(seconds: float, probe):
    """`probe()`'s value once it is truthy, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {seconds}s"
        await anyio.sleep(0.05)


def settled(group_status: dict) -> bool:
    """Whether a group's status shows every member Ready and no call in flight."""
    members = group_status.get("providers", [])
    return group_status.get("readyCount") == len(members) > 0 and not any(m.get("activeConnections") for m in members)


def kube_gateway(gateway_factory, api: FakeKubeApi, tmp_path) -> object:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    return gateway_factory(
        "discovery:\n  enabled: true\n"
        "  sources:\n"
        f"    - {{type: kubernetes, mode: authoritative, namespaces: [mcp], kubeconfig: \"{kubeconfig}\", allow_loopback: true}}\n",
        "gateway-kube-crds",
    )


async def test_mcpprovider_resources_are_providers_with_status(gateway_factory, fixture_url, tmp_path):
    api = FakeKubeApi(free_port())
    tier = {"tier": "search"}
    api.put(provider("mcp", "search", {"mode": "remote", "endpoint": fixture_url, "healthCheck": {"interval": "30s"}}, tier))
    api.put(provider("mcp", "search2", {"mode": "remote", "endpoint": fixture_url, "tools": {"denyList": ["crash"]}}, tier))
    api.put(provider("mcp", "typo", {"mode": "remote", "endpoint": fixture_url, "healthCheck": {"intervl": "10s"}, "bogus": 1}))
    api.put(provider("mcp", "metadata", {"mode": "remote", "endpoint": "http://169.254.169.254/mcp"}))
    api.put(group("mcp", "pool", {"selector": {"matchLabels": tier}, "strategy": "Failover", "healthPolicy": {"minHealthyCount": 1}}))
    api.put(provider("other", "elsewhere", {"mode": "remote", "endpoint": fixture_url}))  # a namespace not watched
    try:
        gw = kube_gateway(gateway_factory, api, tmp_path)
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
            names = await tools_within(c, 15, lambda t: {"search__echo", "search2__echo", "pool__echo"} <= t)
            assert not any(n.startswith(("typo__", "metadata__", "elsewhere__")) for n in names), sorted(names)
            assert "search2__crash" not in names and "search__crash" in names, "tools.denyList trims"
            assert text(await c.call_tool("search__echo", {"text": "crd"})) == "crd"
            assert text(await c.call_tool("pool__echo", {"text": "grouped"})) == "grouped"

            # Failover is the priority strategy over the selected members, by name.
            details = json.loads(text(await c.call_tool("registry_details", {"provider": "pool"})))
            assert details["strategy"] == "priority", details
            assert [(m["name"], m["priority"]) for m in details["members"]] == [("search", 0), ("search2", 1)], details

            [source] = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
            problems = "\n".join(source["problems"])
            assert "MCPProvider mcp/typo: spec.healthCheck" in problems and "'intervl' was unexpected" in problems, problems
            assert "'bogus' was unexpected" in problems, problems
            assert "MCPProvider mcp/metadata:" in problems and "link-local" in problems, problems

            # Status written back: state, tools, the Ready condition.
            status = await within(5, lambda: (s := api.status_of("mcpproviders", "mcp", "search")).get("state") == "Ready" and s)
            assert "echo" in status["tools"] and status["toolsCount"] == len(status["tools"]), status
            assert status["endpoint"] == fixture_url and status["observedGeneration"] == 1, status
            [ready] = status["conditions"]
            assert ready["type"] == "Ready" and ready["status"] == "True" and ready["lastTransitionTime"], ready
            bad = await within(5, lambda: api.status_of("mcpproviders", "mcp", "typo").get("conditions"))
            assert bad[0]["status"] == "False" and bad[0]["reason"] == "InvalidSpec", bad
            assert "intervl" in bad[0]["message"] and "bogus" in bad[0]["message"], bad
            pool = await within(5, lambda: (s := api.status_of("mcpprovidergroups", "mcp", "pool")).get("providerCount") == 2 and s)
            assert pool["activeStrategy"] == "priority" and [m["name"] for m in pool["providers"]] == ["search", "search2"], pool
            assert api.status_of("mcpproviders", "other", "elsewhere") == {}, "a namespace not watched is left alone"

            # An unchanged status is not written again (once both members have been called).
            assert text(await c.call_tool("search2__echo", {"text": "warm"})) == "warm"
            # Settled: both Ready and no call in flight (a tick taken while the call ran counts it,
            # and the next tick rightly writes the count going back to 0). The pause lets a write
            # begun during the call land before the status is read.
            await anyio.sleep(0.5)
            await within(5, lambda: settled(api.status_of("mcpprovidergroups", "mcp", "pool")))
            patches = len(api.status_patches)
            await anyio.sleep(4.5)  # two ticks
            assert len(api.status_patches) == patches, api.status_patches[patches:]

            # The spec fixed: the provider comes; a member deleted: the group shrinks.
            api.put(provider("mcp", "typo", {"mode": "remote", "endpoint": fixture_url, "healthCheck": {"interval": "10s"}}))
            await tools_within(c, 3, lambda t: "typo__echo" in t)
            api.delete("mcp", "search2", "mcpproviders")
            await tools_within(c, 3, lambda t: "search2__echo" not in t)
            pool = await within(5, lambda: (s := api.status_of("mcpprovidergroups", "mcp", "pool")).get("providerCount") == 1 and s)
            assert pool["conditions"][0]["status"] == "True", pool
    finally:
        api.stop()


async def test_container_mcpprovider_gets_a_pod(gateway_factory, fixture_url, tmp_path):
    port = int(fixture_url.split(":")[2].split("/")[0])
    api = FakeKubeApi(free_port())
    spec = {"mode": "container", "image": "ghcr.io/acme/math:1", "args": ["--port", str(port)], "port": port, "path": "/mcp"}
    api.put(provider("mcp", "math", spec))
    try:
        gw = kube_gateway(gateway_factory, api, tmp_path)
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
            created = await within(15, lambda: api.created)
            [made] = created
            assert made["metadata"]["name"] == "mcp-provider-math", made
            assert made["metadata"]["ownerReferences"][0]["uid"] == api.get("mcpproviders", "mcp", "math")["metadata"]["uid"]
            container = made["spec"]["containers"][0]
            assert container["image"] == "ghcr.io/acme/math:1" and container["args"] == ["--port", str(port)], container
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container
            status = await within(5, lambda: (s := api.status_of("mcpproviders", "mcp", "math")).get("state") == "Initializing" and s)
            assert status["podName"] == "mcp-provider-math" and status["readyReplicas"] == 0, status
            assert not any(t.startswith("math__") for t in await tools_within(c, 0, lambda t: True)), "not before the pod is Ready"

            # The kubelet runs it: the provider comes at the pod's address.
            api.run_pod("mcp", "mcp-provider-math")
            await tools_within(c, 3, lambda t: "math__echo" in t)
            assert text(await c.call_tool("math__echo", {"text": "in a pod"})) == "in a pod"
            await within(5, lambda: api.status_of("mcpproviders", "mcp", "math").get("readyReplicas") == 1)

            # The container exits: the provider goes, the pod is replaced after a backoff.
            api.end_pod("mcp", "mcp-provider-math", 3)
            await tools_within(c, 3, lambda t: "math__echo" not in t)
            dead = await within(5, lambda: (s := api.status_of("mcpproviders", "mcp", "math")).get("state") == "Dead" and s)
            assert "exit code 3" in dead["conditions"][0]["message"], dead
            await within(3, lambda: ("mcp", "mcp-provider-math") in api.deleted)
            await within(8, lambda: len(api.created) == 2)
            api.run_pod("mcp", "mcp-provider-math")
            await tools_within(c, 3, lambda t: "math__echo" in t)

            # The spec changes: the pod built from the old one is replaced.
            api.put(provider("mcp", "math", {**spec, "env": [{"name": "MODE", "value": "fast"}]}))
            await within(8, lambda: len(api.created) == 3)
            assert api.created[2]["metadata"]["annotations"]["mcp-hangar.io/generation"] == "2", api.created[2]
            assert {"name": "MODE", "value": "fast"} in api.created[2]["spec"]["containers"][0]["env"]

            # replicas: 0 — no pod, the provider Cold.
            api.put(provider("mcp", "math", {**spec, "replicas": 0}))
            await within(5, lambda: api.get("pods", "mcp", "mcp-provider-math") is None)
            cold = await within(5, lambda: (s := api.status_of("mcpproviders", "mcp", "math")).get("state") == "Cold" and s)
            assert cold["replicas"] == 0, cold
            await tools_within(c, 3, lambda t: "math__echo" not in t)
    finally:
        api.stop()


async def test_a_source_added_by_a_reload_starts_and_a_removed_one_stops(fixture_url, tmp_path):
    from test_reload import LiveGateway

    api = FakeKubeApi(free_port())
    api.put(provider("mcp", "added", {"mode": "remote", "endpoint": fixture_url}))
    api.put(provider("team", "teams", {"mode": "remote", "endpoint": fixture_url}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())

    def source(namespace: str) -> str:
        return (
            "discovery:\n  enabled: true\n  sources:\n"
            f"    - {{type: kubernetes, mode: authoritative, namespaces: [{namespace}], kubeconfig: \"{kubeconfig}\", allow_loopback: true}}\n"
        )

    gw = LiveGateway("providers: {}\n", "kube-reload")
    try:
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
            assert not any(t.startswith("added__") for t in await tools_within(c, 0, lambda t: True))
            gw.write(source("mcp"))
            await tools_within(c, 10, lambda t: "added__echo" in t)
            # The source changed (another namespace): the old one stops, its providers go.
            gw.write(source("team"))
            await tools_within(c, 10, lambda t: "teams__echo" in t and "added__echo" not in t)
            # Removed: its providers go, and its task no longer writes statuses.
            gw.write("providers: {}\n")
            await tools_within(c, 10, lambda t: "teams__echo" not in t)
            await anyio.sleep(0.5)
            patches = len(api.status_patches)
            api.put(provider("team", "teams", {"mode": "remote", "endpoint": fixture_url, "idleTTL": "1m"}))
            await anyio.sleep(3)
            assert len(api.status_patches) == patches, "a stopped source is not running"
    finally:
        gw.stop()
        api.stop()
