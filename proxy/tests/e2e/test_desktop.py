"""Desktop clients. A Claude-Desktop-style server list is moved behind the gateway with
`mcp-hangar import --into` (credentials become ${VAR} references, never copied), and every client
snippet in the README's "Desktop and web clients" section is used exactly as written (paths and
the port substituted): `command` forms are started as the client would start them and driven with
the official SDK's stdio client, `url` forms reach a gateway serving that configuration over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from conftest import FIXTURE, HANGAR_BIN, LOGS, REPO, Gateway, free_port, text

pytestmark = pytest.mark.anyio

README = REPO / "README.md"
README_CONFIG = "/home/you/.config/mcp-hangar/gateway.yaml"
README_URL = "http://127.0.0.1:8000/mcp"
LOCAL_SECRET = "tok_3f9a8b7c6d5e4f3a2b1c0d9e"
REMOTE_SECRET = "abc123.def456.ghi789"


def readme_snippets() -> dict[str, dict]:
    """The README's client snippets, by their `<!-- client: NAME -->` marker."""
    found = re.findall(r"<!-- client: ([\w-]+) -->\s*```json\n(.*?)```", README.read_text(), re.S)
    return {name: json.loads(body) for name, body in found}


@pytest.fixture(scope="module")
def imported(fixture_url, tmp_path_factory):
    """A Claude Desktop config with a local server and a remote one, imported into a gateway
    configuration that already has settings and comments."""
    work = tmp_path_factory.mktemp("desktop")
    client_json = work / "claude_desktop_config.json"
    client_json.write_text(json.dumps({"mcpServers": {
        "local": {"command": sys.executable, "args": [str(FIXTURE), "stdio", "local"],
                  "env": {"FIXTURE_TOKEN": LOCAL_SECRET, "MODE": "test"}, "autoApprove": ["echo"]},
        "remote": {"url": fixture_url, "headers": {"Authorization": f"Bearer {REMOTE_SECRET}"}},
    }}))
    config = work / "gateway.yaml"
    config.write_text("# the team's gateway\nserver:\n  limits: {shutdown_timeout_s: 2}   # quick stops\n")
    out = subprocess.run([str(HANGAR_BIN), "import", str(client_json), "--into", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return config, out.stderr


def test_import_moves_the_servers_without_their_secrets(imported):
    config, stderr = imported
    written = config.read_text()
    assert "# the team's gateway" in written and "# quick stops" in written, written
    assert LOCAL_SECRET not in written and REMOTE_SECRET not in written, written
    assert "FIXTURE_TOKEN: ${FIXTURE_TOKEN}" in written and "Bearer ${REMOTE_TOKEN}" in written, written
    assert "MODE: test" in written, "not a credential: copied"
    assert "FIXTURE_TOKEN" in stderr and "REMOTE_TOKEN" in stderr and "autoApprove" in stderr, stderr
    check = subprocess.run([str(HANGAR_BIN), "check-config", str(config)], capture_output=True, text=True,
                           env={"FIXTURE_TOKEN": "x", "REMOTE_TOKEN": "y", "PATH": "/usr/bin:/bin"})
    assert check.returncode == 0, check.stdout


def test_a_bad_client_file_is_reported_with_paths_and_writes_nothing(tmp_path):
    bad = tmp_path / "mcp.json"
    bad.write_text(json.dumps({"mcpServers": {"broken": {"command": "x", "args": "not-a-list"}, "fine": {"command": "true"}}}))
    config = tmp_path / "gateway.yaml"
    out = subprocess.run([str(HANGAR_BIN), "import", str(bad), "--into", str(config)], capture_output=True, text=True)
    assert out.returncode == 2 and "mcpServers.broken.args: expected a list of strings" in out.stderr, out.stderr
    assert not config.exists(), "nothing written"


async def check_through(client: Client) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"local__env_var", "remote__authorization"} <= names, sorted(names)
    # The subprocess got the credential from the gateway's environment, the remote its header.
    assert text(await client.call_tool("local__env_var", {"name": "FIXTURE_TOKEN"})) == LOCAL_SECRET
    assert text(await client.call_tool("remote__authorization", {})) == f"Bearer {REMOTE_SECRET}"


@pytest.mark.parametrize("snippet", sorted(readme_snippets()))
async def test_the_readme_snippet_works(imported, snippet, monkeypatch):
    config, _ = imported
    monkeypatch.setenv("FIXTURE_TOKEN", LOCAL_SECRET)
    monkeypatch.setenv("REMOTE_TOKEN", REMOTE_SECRET)
    servers = readme_snippets()[snippet]
    servers = servers.get("mcpServers") or servers["servers"]
    assert servers, snippet
    for name, entry in servers.items():
        if "command" in entry:
            assert entry["command"] == "mcp-hangar" and README_CONFIG in entry["args"], (snippet, entry)
            args = [str(config) if a == README_CONFIG else a for a in entry["args"]]
            params = StdioServerParameters(command=str(HANGAR_BIN), args=args, env={
                "FIXTURE_TOKEN": LOCAL_SECRET, "REMOTE_TOKEN": REMOTE_SECRET, "PATH": "/usr/bin:/bin",
                "HANGAR_TEST_LOGS": str(LOGS)})
            async with Client(params, read_timeout_seconds=30) as c:
                await check_through(c)
        else:
            assert entry["url"] == README_URL and entry.get("type", "http") == "http", (snippet, entry)
            gw = Gateway(config.read_text(), f"gateway-desktop-{snippet}-{name}")
            try:
                for mode in ("legacy", "2026-07-28"):
                    async with Client(entry["url"].replace("http://127.0.0.1:8000", f"http://127.0.0.1:{gw.port}"), mode=mode, read_timeout_seconds=30) as c:
                        await check_through(c)
            finally:
                gw.stop()


def test_the_readme_has_a_snippet_for_each_client():
    assert {"lmstudio-url", "lmstudio-command", "claude-desktop", "cursor", "vscode"} <= set(readme_snippets())
