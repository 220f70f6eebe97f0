"""Packaged providers: a Python package installed with pip into a venv declares `mcp.providers`
entry points; the gateway's `type: entrypoint` source reads that venv, serves the provider one
entry point defines, reports the one that fails, and drops the provider when the package is
uninstalled (authoritative)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from conftest import text

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

        async def tools() -> set[str]:
            return {t.name for t in (await c.list_tools()).tools}

        deadline = time.monotonic() + 15
        while "packaged__echo" not in await tools():
            assert time.monotonic() < deadline, await tools()
            await anyio.sleep(0.1)
        assert text(await c.call_tool("packaged__echo", {"text": "from a package"})) == "from a package"
        [source] = json.loads(text(await c.call_tool("registry_sources", {})))["sources"]
        assert source["type"] == "entrypoint" and source["healthy"] and source["providers"] == ["packaged"], source
        assert source["problems"] == ["entry point broken: RuntimeError: no settings for this one"], source

        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", PACKAGE], check=True)
        deadline = time.monotonic() + 10
        while "packaged__echo" in await tools():
            assert time.monotonic() < deadline, "still served after the package was uninstalled"
            await anyio.sleep(0.1)
