"""Kubernetes discovery with the real `kube` client in the gateway against a fake API server
(peers/fake_kube_api.py: pod list and watch with resourceVersion, bookmarks and 410 Gone; no API
server can be installed here). Pods annotated `mcp.hangar.io/*` become providers and go away with
them; readiness, label selectors and namespace rules are honoured; a group follows its pods; a
watch the server expired is listed again."""

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
from fake_kube_api import FakeKubeApi, pod  # noqa: E402

pytestmark = pytest.mark.anyio

SELECTED = {"app.kubernetes.io/component": "mcp-provider"}


async def test_annotated_pods_are_providers(gateway_factory, fixture_url, tmp_path):
    port = fixture_url.split(":")[2].split("/")[0]
    api = FakeKubeApi(free_port())
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
    finally:
        api.stop()
