"""What leasing legacy upstream sessions to modern callers costs: the same modern tools/call to a
legacy upstream (proxy/tests/e2e/peers/standalone_asker.mjs, official TypeScript SDK) from a
client that declares sampling (its calls lease a session of their own) and from one that declares
nothing (its calls share the provider's session), one after the other and N at once, with the
upstream's count of sessions initialized.

    target/ci-venv/bin/python loadtest/lease_cost.py [--calls 300] [--concurrency 8]

Needs the test peers (.ci/run installs them) and target/debug/mcp-hangar (or HANGAR_BIN)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp.client import Client
from mcp_types import CreateMessageResult, TextContent

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "proxy" / "tests" / "e2e"))
from conftest import NODE, PEERS, Gateway, Proc, free_port, text, wait_port  # noqa: E402


async def never(ctx, params):  # declared, not used by the measured tool
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="-"), model="m", stop_reason="endTurn")


async def run(url: str, calls: int, concurrency: int, leased: bool) -> tuple[list[float], float]:
    kw = {"sampling_callback": never} if leased else {}
    times: list[float] = []
    async with Client(url, mode="2026-07-28", read_timeout_seconds=30, **kw) as c:
        await c.call_tool("ask__sessions", {})  # warm: era learnt, first session open
        started = time.perf_counter()

        async def worker(n: int):
            for _ in range(n):
                t = time.perf_counter()
                await c.call_tool("ask__sessions", {})
                times.append(time.perf_counter() - t)

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker, calls // concurrency)
        return times, time.perf_counter() - started


async def sessions(url: str) -> int:
    async with Client(url, mode="2026-07-28", read_timeout_seconds=30) as c:
        return int(text(await c.call_tool("ask__sessions", {})))


async def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--calls", type=int, default=300)
    args.add_argument("--concurrency", type=int, default=8)
    a = args.parse_args()
    script = PEERS / "standalone_asker.mjs"
    shutil.copyfile(ROOT / "proxy" / "tests" / "e2e" / "peers" / "standalone_asker.mjs", script)
    port = free_port()
    fixture = Proc(f"lease-cost-asker-{port}", [str(NODE), str(script), str(port)])
    wait_port(port, fixture.proc, "standalone asker")
    gw = Gateway(f"providers:\n  ask:\n    mode: remote\n    endpoint: http://127.0.0.1:{port}/mcp\n", "lease-cost")
    try:
        print(f"{a.calls} modern tools/call to a legacy upstream (TypeScript SDK), gateway {os.environ.get('HANGAR_BIN', 'debug build')}")
        print("| caller | at once | p50 ms | mean ms | calls/s | sessions opened |")
        print("|---|---|---|---|---|---|")
        for concurrency in (1, a.concurrency):
            for leased in (False, True):
                before = await sessions(gw.url)
                times, wall = await run(gw.url, a.calls, concurrency, leased)
                opened = await sessions(gw.url) - before
                who = "declares sampling (leased sessions)" if leased else "declares nothing (shared session)"
                print(f"| {who} | {concurrency} | {statistics.median(times) * 1000:.2f} | {statistics.mean(times) * 1000:.2f} | {len(times) / wall:.0f} | {opened} |")
    finally:
        gw.stop()
        fixture.stop()


if __name__ == "__main__":
    anyio.run(main)
