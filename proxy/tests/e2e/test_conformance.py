"""The official conformance suite (@modelcontextprotocol/conformance, server scenarios) against the
conformance fixture directly, through the gateway (tool_prefix ""), and through two gateways in a
chain (client → gateway → gateway → fixture; the outer one talks to the inner one in the modern
era): every scenario that passes directly must pass through either, with at least as many passing
checks and no failure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import LOGS, NODE, PEERS, Proc, free_port, wait_port

CONFORMANCE = PEERS / "node_modules" / ".bin" / "conformance"
FIXTURE_SRC = Path(__file__).resolve().parent / "peers" / "conformance_server.mjs"


def run_suite(url: str, out: Path) -> dict[str, Counter]:
    """Runs every server scenario (active and pending) and returns status counts per scenario."""
    results: dict[str, Counter] = {}
    for suite in ("active", "pending"):
        dest = out / suite
        proc = subprocess.run(
            [str(NODE), str(CONFORMANCE), "server", "--url", url, "--suite", suite, "-o", str(dest)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        (out / f"{suite}.log").write_text(proc.stdout + proc.stderr)
        for checks in dest.glob("*/checks.json"):
            scenario = re.sub(r"-\d{4}-\d\d-\d\dT.*$", "", checks.parent.name)
            counts = results.setdefault(scenario, Counter())
            for check in json.loads(checks.read_text()):
                counts[check["status"]] += 1
    return results


@pytest.fixture(scope="module", params=["tied", "standalone"])
def conformance_fixture(request):
    """The fixture asking its client on the call's stream, or (as the suite's reference server
    does) on the session's standalone GET stream."""
    if not CONFORMANCE.exists():
        pytest.fail(f"the conformance suite is not installed under {PEERS}; run .ci/run")
    # ES modules resolve packages next to the script: run it from the peers directory.
    script = PEERS / FIXTURE_SRC.name
    shutil.copyfile(FIXTURE_SRC, script)
    port = free_port()
    proc = Proc(f"conformance-fixture-{request.param}-{port}", [str(NODE), str(script), str(port)], env={"ASK": request.param})
    wait_port(port, proc.proc, "conformance fixture")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.stop()


@pytest.fixture(scope="module")
def direct(conformance_fixture):
    results = run_suite(conformance_fixture, LOGS / f"conformance-direct-{conformance_fixture.split(':')[-1].split('/')[0]}")
    assert len(results) >= 30, f"the suite ran: {sorted(results)}"
    assert not [s for s, c in results.items() if c["FAILURE"]], f"fixture must pass directly: {results}"
    return results


def same_as_direct(direct: dict[str, Counter], through: dict[str, Counter], what: str) -> None:
    assert set(through) == set(direct)
    failures = {s: c for s, c in through.items() if c["FAILURE"]}
    assert not failures, f"failures {what} (logs in {LOGS}): {failures}"
    worse = {s: (direct[s], through[s]) for s in direct if through[s]["SUCCESS"] < direct[s]["SUCCESS"]}
    assert not worse, f"fewer passing checks {what}: {worse}"


def provider(name: str, url: str) -> str:
    return f"providers:\n  {name}:\n    mode: remote\n    endpoint: {url}\n    tool_prefix: \"\"\n"


def test_gateway_passes_what_the_fixture_passes(conformance_fixture, direct, gateway_factory):
    gw = gateway_factory(provider("conf", conformance_fixture), "gateway-conformance")
    same_as_direct(direct, run_suite(gw.url, LOGS / f"conformance-gateway-{gw.port}"), "through the gateway")


def test_two_chained_gateways_pass_what_the_fixture_passes(conformance_fixture, direct, gateway_factory):
    # The inner gateway keeps its admin tools out of MCP, so the outer one's are the only ones.
    inner = gateway_factory(provider("conf", conformance_fixture) + "server:\n  admin_tools: false\n", "gateway-inner")
    outer = gateway_factory(provider("inner", inner.url), "gateway-outer")
    same_as_direct(direct, run_suite(outer.url, LOGS / f"conformance-chained-{outer.port}"), "through two chained gateways")
