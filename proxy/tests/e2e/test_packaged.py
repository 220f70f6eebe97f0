"""Packaged providers. A Python package installed with pip into a venv declares `mcp.providers`
entry points; the gateway's `type: entrypoint` source reads that venv, serves the provider one
entry point defines, reports the one that fails, and drops the provider when the package is
uninstalled (authoritative). MCP Registry `server.json` documents, from a registry listing and a
local directory, become a remote provider and an npm package run through npx."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from conftest import NODE, JsonServer, text, tools_within

pytestmark = pytest.mark.anyio

PACKAGE = "hangar_demo_providers"


def build_wheel(out: Path, endpoint: str) -> Path:
    """A pure-Python wheel whose entry points give one remote provider and one error."""
    dist = f"{PACKAGE}-1.0.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": (
            f"def packaged():\n    return {{'mode': 'remote', 'connection': {{'endpoint': {endpoint!r}}}}}\n\n"
            "def broken():\n    raise RuntimeError('no settings for this one')\n"
        ),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hangar-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[mcp.providers]\npackaged = {PACKAGE}:packaged\nbroken = {PACKAGE}:broken\n",
    }
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = out / f"{PACKAGE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, content in files.items():
            z.writestr(path, content)
    return wheel


async def test_entry_points_of_an_installed_package_are_providers(gateway_factory, fixture_url, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = build_wheel(tmp_path, fixture_url)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], check=True)
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  refresh_interval_s: 1\n  sources:\n"
        f"    - {{type: entrypoint, mode: authoritative, group: mcp.providers, python: {python}}}\n",
        "gateway-entrypoints",
    )
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:

        await tools_within(c, 15, lambda t: "packaged__echo" in t)
        assert text(await c.call_tool("packaged__echo", {"text": "from a package"})) == "from a package"
        [source] = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
        assert source["type"] == "entrypoint" and source["healthy"] and source["providers"] == ["packaged"], source
        assert source["problems"] == ["entry point broken: RuntimeError: no settings for this one"], source

        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", PACKAGE], check=True)
        await tools_within(c, 10, lambda t: "packaged__echo" not in t)


def registry(servers: list[dict]) -> JsonServer:
    """A registry's `/v0/servers` listing of `servers`, in two pages."""
    pages = {None: (servers[:1], "page2"), "page2": (servers[1:], None)}

    def respond(path: str, query: str):
        if path == "/":
            return {"status": "ok"}  # not a server.json: the listing is read
        if path != "/v0/servers":
            return None
        items, following = pages[query.removeprefix("cursor=") or None]
        body = {"servers": [{"server": s, "_meta": {}} for s in items], "metadata": {"count": len(items)}}
        if following:
            body["metadata"]["nextCursor"] = following
        return body

    return JsonServer(respond)


async def test_registry_servers_become_providers(gateway_factory, fixture_url, tmp_path, monkeypatch):
    """server.json documents: a registry listing (two pages) with a remote server, and a local
    directory with an npm package (server-everything, run through npx) and one the gateway cannot
    run; both sources serve their providers and report the unusable one."""
    listing = registry([
        {"name": "io.github.hangar-test/weather", "description": "Remote fixture", "remotes": [{"type": "streamable-http", "url": fixture_url}]},
        {"name": "io.github.hangar-test/dotnet-only", "packages": [{"registryType": "nuget", "identifier": "Acme.Mcp", "version": "1.0.0"}]},
    ])
    docs = tmp_path / "servers"
    docs.mkdir()
    (docs / "everything.json").write_text(json.dumps({
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
        "name": "io.github.modelcontextprotocol/server-everything",
        "version": "2026.8.31",
        "packages": [{"registryType": "npm", "identifier": "@modelcontextprotocol/server-everything", "version": "2026.8.31",
                      "transport": {"type": "stdio"}, "packageArguments": [{"type": "positional", "value": "stdio"}]}],
    }))
    # npx runs the package with the `node` it finds first: the test peers' Node 22, not whatever
    # a clean machine's distribution ships.
    monkeypatch.setenv("PATH", f"{NODE.parent}{os.pathsep}{os.environ['PATH']}")
    try:
        gw = gateway_factory(
            "discovery:\n  enabled: true\n  refresh_interval_s: 30\n  sources:\n"
            f"    - {{type: registry, mode: authoritative, url: \"{listing.url}\"}}\n"
            f"    - {{type: registry, mode: authoritative, path: \"{docs}\"}}\n",
            "gateway-registry",
        )
        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=180) as c:
            deadline = time.monotonic() + 15
            while True:
                sources = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
                if (sources[0]["providers"] and sources[1]["providers"]) or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            assert sources[0]["providers"] == ["weather"], sources
            assert sources[0]["problems"] == ["server io.github.hangar-test/dotnet-only: has a nuget package, which the gateway cannot run (npm, pypi or oci)"], sources
            assert sources[1]["providers"] == ["server-everything"] and sources[1]["problems"] == [], sources
            await tools_within(c, 15, lambda t: "weather__echo" in t)
            assert text(await c.call_tool("weather__echo", {"text": "registry"})) == "registry"
            # The npm package starts on first use, through npx (fetched from the npm registry).
            echoed = text(await c.call_tool("server-everything__echo", {"message": "hi"}))
            assert "hi" in echoed, echoed
    finally:
        listing.stop()


async def test_registry_discover_runs_a_cycle_now(gateway_factory, fixture_url, tmp_path):
    """A directory of server.json read every 300 s: a document added is served as soon as
    registry_discover asks every source to look, and the reply says what was added; one removed
    goes the same way."""
    docs = tmp_path / "servers"
    docs.mkdir()
    gw = gateway_factory(
        "discovery:\n  enabled: true\n  refresh_interval_s: 300\n  sources:\n"
        f"    - {{type: registry, mode: authoritative, path: \"{docs}\"}}\n",
        "gateway-discover",
    )
    async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=60) as c:
        await tools_within(c, 10, lambda t: "registry_discover" in t)
        (docs / "late.json").write_text(json.dumps({"name": "io.github.hangar-test/late", "remotes": [{"type": "streamable-http", "url": fixture_url}]}))
        started = time.monotonic()
        report = json.loads(text(await c.call_tool("registry_discover", {})))
        assert time.monotonic() - started < 5, "a cycle now, not at the next refresh"
        assert report["added"] == ["late"] and "note" not in report, report
        assert report["sources"][0]["providers"] == ["late"], report
        assert text(await c.call_tool("late__echo", {"text": "now"})) == "now"
        (docs / "late.json").unlink()
        report = json.loads(text(await c.call_tool("registry_discover", {})))
        assert report["removed"] == ["late"], report
        assert "late__echo" not in await tools_within(c, 0, lambda t: True)
