"""A web page on another origin uses the gateway from real headless Chromium (Debian's chromium,
driven by playwright-core): the official TypeScript SDK client, bundled locally from npm by esbuild,
connects over streamable HTTP, lists tools, calls one while receiving its progress, and reads a
resource, in both eras (the SDK's v2 client speaks 2025-11-25 by default and 2026-07-28 pinned).
Against a gateway whose allowed_origins leaves the page out, the browser refuses it the responses
(no CORS header): the client fails cleanly, with an error, in a bounded time."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import LOGS, NODE, PEERS, free_port

NODE, PEERS = NODE.resolve(), PEERS.resolve()  # the scripts run with the peers directory as cwd
HERE = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def page_origin():
    """The page and its bundle, served from an origin of their own."""
    for name in ("mcp_page.mjs", "drive.mjs"):
        shutil.copyfile(HERE / name, PEERS / name)  # ES modules resolve packages next to the script
    site = LOGS / f"browser-site-{free_port()}"
    site.mkdir(parents=True)
    shutil.copyfile(HERE / "index.html", site / "index.html")
    subprocess.run(
        [str(PEERS / "node_modules" / "esbuild" / "bin" / "esbuild"), str(PEERS / "mcp_page.mjs"),
         "--bundle", "--format=esm", "--platform=browser", f"--outfile={site / 'bundle.js'}", "--log-level=warning"],
        check=True, cwd=PEERS,
    )
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def drive(page_origin: str, gateway_url: str, era: str) -> dict:
    out = subprocess.run(
        [str(NODE), str(PEERS / "drive.mjs"), f"{page_origin}/index.html", gateway_url, era],
        capture_output=True, text=True, timeout=90, cwd=PEERS,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def gateway_config(fixture_url: str, origins: list[str]) -> str:
    return f"server:\n  allowed_origins: {json.dumps(origins)}\nproviders:\n  fx:\n    mode: remote\n    endpoint: {fixture_url}\n"


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_a_page_on_another_origin_uses_the_gateway(gateway_factory, fixture_url, page_origin, era):
    gw = gateway_factory(gateway_config(fixture_url, [page_origin]), f"gateway-browser-{era}")
    seen = drive(page_origin, gw.url, era)
    result = seen["result"]
    assert "error" not in result, seen
    assert "fx__slow" in result["tools"] and "fx__echo" in result["tools"], result
    assert result["call"] == "slept 0.3", result
    assert len(result["progress"]) >= 5 and result["progress"] == sorted(result["progress"]), result
    assert result["resource"], result
    if era == "legacy":
        assert result["sessionId"], "the page could read Mcp-Session-Id (exposed)"
    else:
        assert result["protocolVersion"] == "2026-07-28" and not result["sessionId"], result
    errors = [c for c in seen["console"] if c["type"] in ("error", "pageerror")]
    assert not errors, errors


def test_a_page_whose_origin_is_not_allowed_fails_cleanly(gateway_factory, fixture_url, page_origin):
    gw = gateway_factory(gateway_config(fixture_url, ["https://elsewhere.example"]), "gateway-browser-refused")
    seen = drive(page_origin, gw.url, "legacy")
    assert "error" in seen["result"] and "tools" not in seen["result"], seen
    # The browser says why (CORS); the gateway said 403 without a CORS header.
    assert any("CORS" in c["text"] or "Access-Control-Allow-Origin" in c["text"] for c in seen["console"]), seen["console"]
