"""The official conformance suite (@modelcontextprotocol/conformance, server scenarios) against the
conformance fixture directly and through the gateway (tool_prefix ""): every scenario that passes
directly must pass through the gateway, with at least as many passing checks and no failure."""

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


@pytest.fixture(scope="module")
def conformance_fixture():
    if not CONFORMANCE.exists():
        pytest.fail(f"the conformance suite is not installed under {PEERS}; run .ci/run")
    # ES modules resolve packages next to the script: run it from the peers directory.
    script = PEERS / FIXTURE_SRC.name
    shutil.copyfile(FIXTURE_SRC, script)
    port = free_port()
    proc = Proc(f"conformance-fixture-{port}", [str(NODE), str(script), str(port)])
    wait_port(port, proc.proc, "conformance fixture")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.stop()


def test_gateway_passes_what_the_fixture_passes(conformance_fixture, gateway_factory):
    direct = run_suite(conformance_fixture, LOGS / "conformance-direct")
    gw = gateway_factory(f"providers:\n  conf:\n    mode: remote\n    endpoint: {conformance_fixture}\n    tool_prefix: \"\"\n", "gateway-conformance")
    through = run_suite(gw.url, LOGS / "conformance-gateway")

    assert len(direct) >= 30, f"the suite ran: {sorted(direct)}"
    assert not [s for s, c in direct.items() if c["FAILURE"]], f"fixture must pass directly: {direct}"
    assert set(through) == set(direct)
    failures = {s: c for s, c in through.items() if c["FAILURE"]}
    assert not failures, f"failures through the gateway (logs in {LOGS}): {failures}"
    worse = {s: (direct[s], through[s]) for s in direct if through[s]["SUCCESS"] < direct[s]["SUCCESS"]}
    assert not worse, f"fewer passing checks through the gateway: {worse}"
