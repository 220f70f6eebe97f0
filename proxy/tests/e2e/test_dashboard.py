"""The dashboard in real headless Chromium (Debian's chromium through playwright-core): the page
loads with no console error and nothing from outside the gateway; a provider goes COLD → READY on
screen after a scripted call, a breaker opens after its upstream is killed, a quarantined provider
is approved with its button, a reload shows its dry-run diff before it is applied; keyboard use and
labels are checked; screenshots (light and dark) are kept with the test logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import LOGS, NODE, PEERS, Gateway, start_fixture, text, with_local_admin

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed (.ci/run installs it)"),
]

NODE, PEERS = NODE.resolve(), PEERS.resolve()
SESSION = Path(__file__).resolve().parent / "browser" / "session.mjs"
SHOTS = LOGS / "screenshots"


class Browser:
    """A Chromium session driven one command at a time (browser/session.mjs)."""

    def __init__(self):
        shutil.copyfile(SESSION, PEERS / "session.mjs")  # resolves playwright-core next to it
        self.proc = subprocess.Popen(
            [str(NODE), str(PEERS / "session.mjs")], cwd=PEERS, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(LOGS / "dashboard-browser.log", "ab"), text=True,
        )

    def __call__(self, cmd: str, **args) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or '{"ok": false, "error": "the browser session ended"}')
        assert answer.pop("ok"), f"{cmd} {args}: {answer.get('error')}"
        return answer

    def close(self):
        try:
            self("close")
        except (AssertionError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(15)


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


def row(name: str, **attrs) -> str:
    extra = "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())
    return f'#providers tr[data-provider="{name}"]{extra}'


async def test_the_dashboard_follows_the_gateway(tmp_path, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    fx_proc, fx_port = start_fixture("dash-fx")
    flaky_proc, flaky_port = start_fixture("dash-flaky")
    providers_dir = tmp_path / "providers"
    providers_dir.mkdir()
    base = f"""
providers:
  fx:
    mode: remote
    endpoint: http://127.0.0.1:{fx_port}/mcp
    description: The SDK fixture
  flaky:
    mode: remote
    endpoint: http://127.0.0.1:{flaky_port}/mcp
    max_consecutive_failures: 2
    circuit_breaker: {{open_s: 300}}
  pool:
    mode: group
    strategy: priority
    members: [{{provider: fx, priority: 0}}, {{provider: flaky, priority: 1}}]
config_reload: {{enabled: false}}
discovery:
  enabled: true
  auto_register: false
  sources:
    - {{type: filesystem, path: "{providers_dir}"}}
"""
    gw = Gateway(base, "gateway-dashboard")
    try:
        browser("open", url=f"http://127.0.0.1:{gw.port}/admin/")
        browser("wait", selector=row("fx", state="COLD"))
        browser("wait", selector='#live.on')
        assert not browser("audit")["problems"]
        browser("screenshot", path=str(SHOTS / "1-cold.png"))

        async with Client(gw.url, mode="2026-07-28", read_timeout_seconds=30) as c:
            # A scripted call: fx goes COLD → READY on screen, with no reload of the page.
            assert text(await c.call_tool("fx__echo", {"text": "hello"})) == "hello"
            browser("wait", selector=row("fx", state="READY"))
            # flaky serves, then its upstream is killed: two failed calls open its breaker.
            assert text(await c.call_tool("flaky__echo", {"text": "once"})) == "once"
            flaky_proc.stop()
            for _ in range(2):
                with pytest.raises(MCPError):
                    await c.call_tool("flaky__echo", {"text": "again"})
            browser("wait", selector=row("flaky", circuit="open"))
            browser("wait", selector='#events li[data-type="provider_event"]')
            events = browser("text", selector="#events")["text"]
            assert "breaker_open" in events and "READY → DEGRADED" in events, events

        # A provider found by discovery waits in quarantine; the Approve button lets it in.
        (providers_dir / "newbie.yaml").write_text(f"name: newbie\nmode: remote\nconnection: {{endpoint: \"http://127.0.0.1:{fx_port}/mcp\"}}\n")
        gw_reload(gw)
        browser("wait", selector='#quarantine li[data-quarantined="newbie"]')
        browser("screenshot", path=str(SHOTS / "2-quarantine.png"))
        browser("click", selector='button[aria-label="Approve newbie"]')
        browser("wait", selector=row("newbie"))
        browser("wait", selector='#quarantine li[data-quarantined="newbie"]', state="detached")

        # Reload: the dry run's diff first, then Apply.
        extra = f"providers:\n  extra:\n    mode: remote\n    endpoint: http://127.0.0.1:{fx_port}/mcp\n"
        gw.config_path.write_text(with_local_admin(base.replace("providers:\n", extra, 1)))
        browser("click", selector="#reload-button")
        browser("wait", selector="#reload-dialog[open]")
        browser("wait", selector="#reload-apply:not([disabled])")
        diff = browser("text", selector="#reload-diff")["text"]
        assert "extra" in diff, diff
        browser("screenshot", path=str(SHOTS / "3-reload.png"), full=False)
        browser("click", selector="#reload-apply")
        browser("wait", selector="#reload-result:has-text('Applied')")
        browser("press", key="Escape")
        assert browser("open_dialogs")["open"] == []
        browser("wait", selector=row("extra"))

        # Keyboard: the controls are reachable with Tab, a provider's details open with Enter.
        browser("click", selector="h1")  # focus navigation starts from the top
        seen = []
        for _ in range(12):
            browser("press", key="Tab")
            seen.append(browser("focused")["name"])
        assert "Reload configuration…" in seen and "Details of fx" in seen, seen
        while browser("focused")["name"] != "Details of fx":
            browser("press", key="Shift+Tab")
        # The page refreshes its tables every 5 s, replacing their rows: the focus stays.
        time.sleep(5.5)
        assert browser("focused")["name"] == "Details of fx"
        browser("press", key="Enter")
        browser("wait", selector="#details-dialog[open]")
        browser("wait", selector="#details-body h3")
        browser("screenshot", path=str(SHOTS / "4-details.png"), full=False)
        browser("press", key="Escape")
        assert browser("open_dialogs")["open"] == []
        browser("screenshot", path=str(SHOTS / "5-light.png"))

        browser("open", url=f"http://127.0.0.1:{gw.port}/admin/", colorScheme="dark")
        browser("wait", selector=row("flaky", circuit="open"))
        browser("screenshot", path=str(SHOTS / "6-dark.png"))
        assert not browser("audit")["problems"]

        problems = [m for m in browser("console")["messages"] if m["type"] in ("error", "pageerror", "requestfailed", "warning")]
        assert not problems, problems
    finally:
        gw.stop()
        fx_proc.stop()
        flaky_proc.stop()


def gw_reload(gw: Gateway) -> None:
    """Asks the gateway to read its sources now (the admin API's reload)."""
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{gw.port}/admin/api/reload", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
