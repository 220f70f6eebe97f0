"""Observability against real peers: the Prometheus series after a scripted scenario (checked by
`promtool check metrics`), and the audit trail (queried through `registry_audit`, then replayed
from the file after a clean shutdown), including concurrent writers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import FIXTURE, LOGS, free_port, text

pytestmark = pytest.mark.anyio


def metrics(gw) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the series `name{labels}` (labels must match exactly), or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in exposition.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        metric, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == want:
            return float(value)
    return None


def audited_gateway(gateway_factory, fixture_url: str, audit_path) -> object:
    return gateway_factory(
        f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
  sub:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio", "sub"]
    recovery: {{max_attempts: 1, backoff_s: 60}}
observability:
  access_log: true
  audit:
    path: {audit_path}
    fsync: always
    arguments: true
""",
        "gateway-observability",
    )


async def test_metrics_and_audit_after_a_scripted_scenario(gateway_factory, fixture_url):
    audit_path = LOGS / f"audit-{free_port()}.jsonl"
    gw = audited_gateway(gateway_factory, fixture_url, audit_path)
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30, client_info=Implementation(name="scripted", version="1")) as c:
        await c.list_tools()
        assert text(await c.call_tool("fx__add", {"a": 1, "b": 2})) == "3.0"  # the fast path
        failed = await c.call_tool("fx__fail", {"message": "nope"})
        assert failed.is_error
        assert text(await c.call_tool("sub__echo", {"text": "hi", "password": "hunter2"})) == "hi"
        with pytest.raises(MCPError):
            await c.call_tool("sub__crash", {})
    async with Client(gw.url, mode="legacy", read_timeout_seconds=30) as c:
        assert text(await c.call_tool("fx__add", {"a": 2, "b": 2})) == "4.0"

    m = metrics(gw)
    assert sample(m, "mcp_hangar_tool_calls_total", provider="fx", tool="fx__add", outcome="ok") == 2
    assert sample(m, "mcp_hangar_tool_calls_total", provider="fx", tool="fx__fail", outcome="tool_error") == 1
    assert sample(m, "mcp_hangar_tool_calls_total", provider="sub", tool="sub__crash", outcome="unavailable") == 1
    assert sample(m, "mcp_hangar_tool_call_duration_seconds_count", provider="fx", tool="fx__add") == 2
    assert sample(m, "mcp_hangar_requests_total", method="tools/call", era="modern") == 4
    assert sample(m, "mcp_hangar_requests_total", method="tools/call", era="legacy") == 1
    assert sample(m, "mcp_hangar_cold_starts_total", provider="sub", outcome="ok") == 1
    assert sample(m, "mcp_hangar_cold_start_duration_seconds_count", provider="sub") == 1
    assert sample(m, "mcp_hangar_provider_state", provider="sub", state="DEAD") == 1
    assert sample(m, "mcp_hangar_provider_state", provider="sub", state="READY") == 0
    assert sample(m, "mcp_hangar_provider_transitions_total", provider="sub", **{"from": "READY", "to": "DEAD"}) == 1
    assert sample(m, "mcp_hangar_circuit_breaker_state", provider="fx") == 0
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/run installs the prometheus package)")
    check = subprocess.run([promtool, "check", "metrics"], input=m.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

    # The same series in OpenMetrics, for scrapers that ask for it, parsed by the official client.
    req = urllib.request.Request(f"http://127.0.0.1:{gw.port}/metrics", headers={"accept": "application/openmetrics-text"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    family = families["mcp_hangar_tool_calls"]
    assert family.type == "counter"
    ok = [s for s in family.samples if s.labels == {"provider": "fx", "tool": "fx__add", "outcome": "ok"}]
    assert [(s.name, s.value) for s in ok] == [("mcp_hangar_tool_calls_total", 2.0)]
    assert families["mcp_hangar_tool_call_duration_seconds"].type == "histogram"

    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        r = await c.call_tool("registry_audit", {"type": "tool_call", "limit": 10})
        calls = r.structured_content["records"]
        assert [(x["tool"], x["outcome"], x["era"]) for x in calls] == [
            ("fx__add", "ok", "modern"),
            ("fx__fail", "tool_error", "modern"),
            ("sub__echo", "ok", "modern"),
            ("sub__crash", "unavailable", "modern"),
            ("fx__add", "ok", "legacy"),
        ]
        assert calls[0]["caller"] == "client:scripted"
        assert calls[2]["arguments"] == {"text": "hi", "password": "[REDACTED]"}
        assert calls[4]["caller"].startswith("session:")
        refused = await c.call_tool("registry_audit", {"limit": 0})
        assert refused.is_error and "limit" in text(refused), refused

    # A clean shutdown writes everything out: replay the file.
    gw.stop()
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[0]["type"] == "config_applied"
    sub = [(r["from"], r["to"], r["cause"]) for r in records if r["type"] == "provider_event" and r["provider"] == "sub"]
    assert sub == [
        ("COLD", "INITIALIZING", "start"),
        ("INITIALIZING", "READY", "ready"),
        ("READY", "DEAD", "crashed"),
        ("DEAD", "COLD", "stopped"),
    ], sub
    assert [r["tool"] for r in records if r["type"] == "tool_call"] == [c["tool"] for c in calls]
    assert "hunter2" not in audit_path.read_text()


async def test_calls_of_a_tool_no_list_names_count_as_other(gateway_factory, fixture_url):
    """A name routed by its provider's prefix alone is counted under `other`, listed or not
    before (a client cannot mint label values); a listed tool under its name."""
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: {fixture_url}}}\n", "gateway-unlisted")
    outcomes = []
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
        for listed in (False, True):
            try:
                outcomes.append("tool_error" if (await c.call_tool("fx__unlisted", {})).is_error else "ok")
            except MCPError:
                outcomes.append("error")
            assert text(await c.call_tool("fx__add", {"a": 1, "b": 2})) == "3.0"
            if not listed:
                await c.list_tools()
    m = metrics(gw)
    assert outcomes[0] == outcomes[1], outcomes
    assert sample(m, "mcp_hangar_tool_calls_total", provider="fx", tool="other", outcome=outcomes[0]) == 2, m
    assert sample(m, "mcp_hangar_tool_calls_total", provider="fx", tool="other", outcome="ok") == 1, "fx__add unlisted"
    assert sample(m, "mcp_hangar_tool_calls_total", provider="fx", tool="fx__add", outcome="ok") == 1, "fx__add listed"
    assert sample(m, "mcp_hangar_tool_call_duration_seconds_count", provider="fx", tool="other") == 3
    assert "fx__unlisted" not in m


async def test_concurrent_calls_each_leave_one_whole_audit_line(gateway_factory, fixture_url):
    audit_path = LOGS / f"audit-concurrent-{free_port()}.jsonl"
    gw = audited_gateway(gateway_factory, fixture_url, audit_path)

    async def client(n: int) -> None:
        mode = "legacy" if n % 2 else "2026-07-28"
        async with Client(gw.url, mode=mode, read_timeout_seconds=30) as c:
            await c.list_tools()
            for i in range(10):
                assert text(await c.call_tool("fx__echo", {"text": f"{n}-{i}" * 50})) == f"{n}-{i}" * 50

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(client, n)
    gw.stop()
    lines = audit_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one whole object
    echoes = sorted(r["arguments"]["text"] for r in records if r["type"] == "tool_call")
    assert echoes == sorted(f"{n}-{i}" * 50 for n in range(8) for i in range(10))
