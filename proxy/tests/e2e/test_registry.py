"""The gateway's registry_* tools through the official SDK client in both eras: every tool's
structuredContent checked against its outputSchema (by the SDK, and here again with jsonschema),
invoke with retries, correlation ids and metadata, progress relayed from the provider, warming,
and the same authorization and exposure rules as a direct call."""

from __future__ import annotations

import json
import sys

import anyio
import jsonschema
import pytest
from mcp.client import Client

from conftest import FIXTURE, MODES, free_port, text

pytestmark = pytest.mark.anyio

LOCAL = f'["{sys.executable}", "{FIXTURE}", "stdio", "local"]'


@pytest.fixture(scope="module")
def gw(fixture_url, tmp_path_factory):
    from conftest import Gateway

    here = tmp_path_factory.mktemp("registry")
    audit_path = here / "audit.jsonl"
    providers_dir = here / "providers"
    providers_dir.mkdir()
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    g = Gateway(
        f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
    health_check_interval_s: 1
  local:
    mode: subprocess
    command: {LOCAL}
  gone:
    mode: remote
    endpoint: {dead}
  hidden:
    mode: remote
    endpoint: {fixture_url}
    expose: false
  trimmed:
    mode: remote
    endpoint: {fixture_url}
    tools_exclude: [add]
  pool:
    mode: group
    strategy: round_robin
    members:
      - {{provider: hidden, weight: 2}}
discovery:
  enabled: true
  auto_register: false
  sources:
    - {{type: filesystem, path: "{providers_dir}"}}
observability:
  audit:
    path: {audit_path}
auth:
  anonymous_roles: [admin]
  rules:
    - {{effect: deny, principals: [anonymous], providers: [fx], tools: [fail]}}
""",
        "gateway-registry",
    )
    g.providers_dir = providers_dir
    yield g
    g.stop()


def client(gw, mode) -> Client:
    return Client(gw.url, mode=mode, read_timeout_seconds=60)


async def schemas(c: Client) -> dict[str, dict]:
    return {t.name: t.output_schema for t in (await c.list_tools()).tools if t.name.startswith("registry_")}


async def call(c: Client, schema: dict, tool: str, progress=None, /, **args) -> dict:
    """Calls `tool`; asserts success and a structuredContent valid against its outputSchema."""
    result = await c.call_tool(tool, args, progress_callback=progress)
    assert not result.is_error, text(result)
    jsonschema.validate(result.structured_content, schema[tool])
    return result.structured_content


async def refused(c: Client, tool: str, /, **args) -> str:
    """Calls `tool`; asserts a tool error (never a protocol error) and returns its text."""
    result = await c.call_tool(tool, args)
    assert result.is_error, result
    return text(result)


SEED_TOOLS = {
    "registry_list", "registry_start", "registry_stop", "registry_invoke", "registry_invoke_ex",
    "registry_invoke_stream", "registry_tools", "registry_details", "registry_health", "registry_status",
    "registry_discover", "registry_sources", "registry_quarantine", "registry_approve", "registry_warm",
}


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_answers_within_its_output_schema(gw, mode):
    async with client(gw, mode) as c:
        listed = {t.name: t for t in (await c.list_tools()).tools if t.name.startswith("registry_")}
        assert SEED_TOOLS | {"registry_audit", "registry_reload"} == set(listed)
        for t in listed.values():
            jsonschema.Draft202012Validator.check_schema(t.output_schema)
            assert t.input_schema["type"] == "object" and t.output_schema["type"] == "object", t.name
        s = {n: t.output_schema for n, t in listed.items()}

        names = [p["name"] for p in (await call(c, s, "registry_list"))["providers"]]
        assert names[:6] == ["fx", "local", "gone", "hidden", "trimmed", "pool"], names
        started = await call(c, s, "registry_start", provider="local")
        assert started["state"] == "READY" and started["pid"]
        tools = await call(c, s, "registry_tools", provider="trimmed")
        own = {t["name"] for t in tools["tools"]}
        assert "echo" in own and "add" not in own, "an excluded tool is not listed"
        assert {t["exposedName"] for t in tools["tools"]} >= {"trimmed__echo"}
        health = await call(c, s, "registry_health")
        assert health["providers"]["READY"] >= 1 and health["config"]["generation"] >= 1
        assert (await call(c, s, "registry_sources"))["sources"][0]["type"] == "filesystem"
        # A provider file found while auto_register is off waits until approved.
        newcomer = f"found_{mode.replace('-', '_')}"
        (gw.providers_dir / f"{newcomer}.yaml").write_text(f"name: {newcomer}\nmode: subprocess\nconnection: {{command: {LOCAL}}}\n")
        await call(c, s, "registry_discover")
        held = (await call(c, s, "registry_quarantine"))["quarantined"]
        assert [q["name"] for q in held] == [newcomer], held
        approved = await call(c, s, "registry_approve", provider=newcomer)
        assert approved["status"] == "success" and approved["added"] == [newcomer], approved
        assert (await call(c, s, "registry_quarantine"))["quarantined"] == []
        assert (await call(c, s, "registry_reload", dry_run=True))["status"] == "dry_run"
        assert (await call(c, s, "registry_discover"))["status"] in ("unchanged", "success")
        assert (await call(c, s, "registry_audit", limit=5))["records"] is not None
        stopped = await call(c, s, "registry_stop", provider="local")
        assert stopped["state"] == "COLD" and stopped["pid"] is None

        group = await call(c, s, "registry_details", provider="pool")
        assert group["strategy"] == "weighted_round_robin"
        assert group["members"] == [{"name": "hidden", "state": group["members"][0]["state"], "circuit": "closed", "inflight": 0, "weight": 2, "priority": 0}]

        await call(c, s, "registry_invoke", provider="fx", tool="echo", arguments={"text": "warm up"})
        with anyio.fail_after(15):
            while not (details := await call(c, s, "registry_details", provider="fx"))["health_history"]:
                await anyio.sleep(0.2)
        check = details["health_history"][-1]
        assert check["ok"] is True and check["duration_ms"] >= 0
        assert [e["to"] for e in details["events"]][-1] == "READY"
        assert details["upstream"]["era"] in ("modern", "legacy")


@pytest.mark.parametrize("mode", MODES)
async def test_errors_are_tool_errors_with_a_reason(gw, mode):
    async with client(gw, mode) as c:
        assert "unknown provider \"nope\"" in await refused(c, "registry_details", provider="nope")
        assert "arguments.provider is required" in await refused(c, "registry_start")
        assert "unknown argument(s): dry_runn" in await refused(c, "registry_reload", dry_runn=True)
        assert "is not quarantined" in await refused(c, "registry_approve", provider="fx")
        assert "limit" in await refused(c, "registry_audit", limit=0)
        assert "did not start" in await refused(c, "registry_start", provider="gone")
        assert "is a group" in await refused(c, "registry_stop", provider="pool")


@pytest.mark.parametrize("mode", MODES)
async def test_invoke_is_a_direct_call_by_the_providers_own_name(gw, mode):
    async with client(gw, mode) as c:
        s = await schemas(c)
        got = await call(c, s, "registry_invoke", provider="fx", tool="add", arguments={"a": 1, "b": 2})
        assert got["provider"] == "fx" and got["result"]["content"][0]["text"] == "3.0"
        result = await c.call_tool("registry_invoke", {"provider": "fx", "tool": "echo", "arguments": {"text": "hi"}})
        assert text(result) == "hi", "the provider's content is the result's content"
        # A group routes as its exposed name would.
        assert (await call(c, s, "registry_invoke", provider="pool", tool="echo", arguments={"text": "g"}))["result"]["content"][0]["text"] == "g"
        # The rules apply: a deny on fx's fail refuses it through the registry too.
        assert "Forbidden" in await refused(c, "registry_invoke", provider="fx", tool="fail")
        # So do exposure and tools_exclude.
        why = await refused(c, "registry_invoke", provider="hidden", tool="echo")
        assert "not exposed" in why and "pool" in why, why
        assert "Unknown tool" in await refused(c, "registry_invoke", provider="trimmed", tool="add")
        # And argument validation against the tool's schema.
        assert "Invalid arguments" in await refused(c, "registry_invoke", provider="fx", tool="add", arguments={"a": "one", "b": 2})
        audit = await call(c, s, "registry_audit", type="tool_call", provider="fx", limit=50)
        assert any(r["tool"] == "fx__add" and r["outcome"] == "ok" for r in audit["records"]), audit


@pytest.mark.parametrize("mode", MODES)
async def test_invoke_ex_retries_transient_failures_and_echoes_what_it_was_given(gw, mode):
    async with client(gw, mode) as c:
        s = await schemas(c)
        ok = await call(c, s, "registry_invoke_ex", provider="fx", tool="echo", arguments={"text": "x"},
                        correlation_id="req-42", metadata={"ticket": "OPS-1"})
        assert ok["retry_metadata"]["correlation_id"] == "req-42"
        assert ok["retry_metadata"]["attempts"] == 1 and ok["retry_metadata"]["retries"] == []
        assert ok["metadata"] == {"ticket": "OPS-1"}

        result = await c.call_tool("registry_invoke_ex", {"provider": "gone", "tool": "echo", "arguments": {}, "max_retries": 3, "timeout": 20})
        assert result.is_error
        meta = result.structured_content["retry_metadata"]
        assert meta["attempts"] == 3 and meta["retries"] == ["unavailable", "unavailable"], meta
        assert meta["final_error_reason"] == "provider_unavailable" and meta["recovery_hints"]
        assert len(meta["correlation_id"]) == 36, "one is made up when none is given"
        jsonschema.validate(result.structured_content, s["registry_invoke_ex"])

        once = await c.call_tool("registry_invoke_ex", {"provider": "gone", "tool": "echo", "retry_on_error": False})
        assert once.structured_content["retry_metadata"]["attempts"] == 1

        # A tool error is the tool's answer: not retried.
        failed = await c.call_tool("registry_invoke_ex", {"provider": "trimmed", "tool": "fail", "arguments": {"message": "no"}})
        assert failed.is_error and failed.structured_content["retry_metadata"]["attempts"] == 1
        assert failed.structured_content["retry_metadata"]["final_error_reason"] == "tool_error"

        # The timeout covers the whole operation.
        slow = await c.call_tool("registry_invoke_ex", {"provider": "fx", "tool": "slow", "arguments": {"seconds": 5}, "timeout": 0.5})
        assert slow.is_error and "no answer within" in text(slow), text(slow)
        assert slow.structured_content["retry_metadata"]["final_error_reason"] == "timeout"


@pytest.mark.parametrize("mode", MODES)
async def test_invoke_stream_relays_progress_under_the_callers_token(gw, mode):
    seen: list[tuple[float, str]] = []

    async def progress(p, total, message):
        seen.append((p, message or ""))

    async with client(gw, mode) as c:
        s = await schemas(c)
        await c.call_tool("registry_stop", {"provider": "local"})
        got = await call(c, s, "registry_invoke_stream", progress, provider="local", tool="slow", arguments={"seconds": 0.5})
    assert got["isError"] is False
    counts = [p for p, _ in seen]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"one increasing count: {seen}"
    messages = [m for _, m in seen]
    assert messages[0].startswith("[cold_start]"), messages
    assert sum(m.startswith("[provider] ") for m in messages) == 10, "the provider's ten steps, renumbered"
    assert "step 10" in next(m for m in reversed(messages) if m.startswith("[provider]"))
    assert messages[-1].startswith("[complete]"), messages
    assert [st["stage"] for st in got["progress"]] == ["cold_start", "complete"]


@pytest.mark.parametrize("mode", MODES)
async def test_warm_starts_the_named_providers_with_progress(gw, mode):
    seen: list[str] = []

    async def progress(p, total, message):
        seen.append(message or "")

    async with client(gw, mode) as c:
        s = await schemas(c)
        await c.call_tool("registry_stop", {"provider": "local"})
        await c.call_tool("registry_start", {"provider": "fx"})
        got = await call(c, s, "registry_warm", progress, providers="local, fx,nope,pool")
        assert got["warmed"] == ["local"]
        assert got["already_warm"] == ["fx"]
        assert got["failed"] == [{"id": "nope", "error": "Provider not found"}]
        assert got["skipped"][0]["id"] == "pool"
        assert got["summary"] == "Warmed 1 providers, 1 already warm, 1 failed"
        assert len(seen) == 4 and any(m.startswith("local: started") for m in seen), seen
        state = next(p for p in (await call(c, s, "registry_list"))["providers"] if p["name"] == "local")
        assert state["state"] == "READY"


@pytest.mark.parametrize("mode", MODES)
async def test_status_is_the_dashboard_as_text(gw, mode):
    async with client(gw, mode) as c:
        s = await schemas(c)
        await c.call_tool("fx__echo", {"text": "counted"})
        result = await c.call_tool("registry_status", {})
        assert not result.is_error
        jsonschema.validate(result.structured_content, s["registry_status"])
        board = text(result)
        assert board.startswith("MCP Hangar "), board
        rows = {line.split()[0]: line for line in board.splitlines()[4:] if line and not line.startswith((" ", "("))}
        assert {"fx", "local", "gone", "hidden", "trimmed", "pool"} <= set(rows), board
        assert "remote" in rows["fx"] and "group" in rows["pool"]
        assert any("└ hidden" in line and "weight 2" in line for line in board.splitlines()), board
        structured = result.structured_content
        assert json.dumps(structured)  # plain JSON
        assert [p["name"] for p in structured["providers"]][:2] == ["fx", "local"]
