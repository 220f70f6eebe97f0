"""A Python MCP Hangar configuration file (config/examples/python-hangar.yaml, in its format)
loaded unchanged: `check-config` accepts it, and the gateway serves it, the predefined tools of its
not-yet-started providers listed under the same names, with the same command-line flags."""

from __future__ import annotations

import os
import subprocess

import pytest
from mcp.client import Client

from conftest import HANGAR_BIN, REPO, Proc, free_port, wait_ready

pytestmark = pytest.mark.anyio

PYTHON_CONFIG = REPO / "config" / "examples" / "python-hangar.yaml"


def test_check_config_accepts_it_unchanged():
    r = subprocess.run([str(HANGAR_BIN), "check-config", str(PYTHON_CONFIG)], capture_output=True, text=True,
                       env={**os.environ, "GITHUB_TOKEN": "t"}, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "9 providers" in r.stdout and "docker-provider (container)" in r.stdout and "llm (group)" in r.stdout


def test_without_the_variable_it_names_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    r = subprocess.run([str(HANGAR_BIN), "check-config", str(PYTHON_CONFIG)], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2 and "GITHUB_TOKEN" in r.stdout, r.stdout


async def test_the_gateway_serves_it_with_the_python_hangars_flags():
    port = free_port()
    # The Python Hangar's command line: --config, --http, --port.
    proc = Proc(f"python-config-{port}", [str(HANGAR_BIN), "--config", str(PYTHON_CONFIG), "--http", "--port", str(port)],
                env={"GITHUB_TOKEN": "t"})
    try:
        wait_ready(port, proc.proc)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="2026-07-28", read_timeout_seconds=30) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
        assert "math__add" in tools, sorted(tools)
        assert tools["math__add"].input_schema["required"] == ["a", "b"]
    finally:
        proc.stop()
