#!/usr/bin/env python3
"""Scaling out: throughput of one gateway replica against two, behind the same nginx.

The fixed-reply upstream (`hangar-upstream http`), nginx (one worker) with two listeners — one
balancing over one replica, one over two — and two gateway replicas of one configuration. `wrk`
sends modern `tools/call`s (64 connections) to each listener in interleaved rounds. With at least
five cores, wrk, nginx, the upstream and each replica get a core of their own, so the second
replica has a core to use; with fewer, everything shares the machine's cores and the report says
that no scaling can be shown there.

    python loadtest/replicas.py --gateway target/release/mcp-hangar --upstream target/release/hangar-upstream

Everything listens on 127.0.0.1; each round is bounded in time. Results: loadtest/results/replicas.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import bench
from bench import OUT, Procs, Target, free_port, list_tools_call, modern_call, post, wait_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", default=str(bench.RELEASE / "mcp-hangar"))
    ap.add_argument("--upstream", default=str(bench.RELEASE / "hangar-upstream"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    own_cores = len(cores) >= 5
    every = ",".join(map(str, cores))
    core = (lambda i: str(cores[i])) if own_cores else (lambda i: every)
    bench.LOAD_CORE = core(0)
    work = Path(tempfile.mkdtemp(prefix="hangar-replicas-"))
    procs = Procs(work)
    try:
        up = free_port()
        p = procs.start("upstream", [args.upstream, "http", str(up)], core=core(2))
        wait_port(up, p, "upstream")
        config = work / "gateway.yaml"
        config.write_text(f'providers:\n  up: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp"}}\n')
        replicas = []
        for i in range(2):
            port = free_port()
            p = procs.start(f"replica-{i}", [args.gateway, "--http", "--port", str(port), "--config", str(config),
                                             "--log-level", "warn"], core=core(3 + i))
            wait_port(port, p, f"replica {i}")
            replicas.append(port)
        one, two = free_port(), free_port()
        (work / "nginx").mkdir()
        conf = work / "nginx" / "nginx.conf"
        conf.write_text(bench.nginx_head(work) + f"""
    upstream one {{ server 127.0.0.1:{replicas[0]}; {bench.UPSTREAM_KEEPALIVE} }}
    upstream two {{ server 127.0.0.1:{replicas[0]}; server 127.0.0.1:{replicas[1]}; {bench.UPSTREAM_KEEPALIVE} }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    server {{ listen 127.0.0.1:{one}; location / {{ proxy_pass http://one; }} }}
    server {{ listen 127.0.0.1:{two}; location / {{ proxy_pass http://two; }} }}
}}
""")
        nginx = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(work / "nginx")], core=core(1))
        wait_port(two, nginx, "nginx")
        for port in replicas:
            url = f"http://127.0.0.1:{port}/mcp"
            post(url, *list_tools_call())
            post(url, *modern_call("up__echo", "warm"))
        targets = {n: Target(n, f"http://127.0.0.1:{p}/mcp", *modern_call("up__echo", "x" * 16), None)
                   for n, p in (("1 replica", one), ("2 replicas", two))}
        rps: dict[str, list[float]] = {n: [] for n in targets}
        errors = 0
        for r in range(args.rounds):
            for name, target in targets.items():
                res = bench.wrk(target, args.connections, args.seconds, work)
                rps[name].append(res.rps)
                errors += res.errors
                print(f"round {r + 1}: {name}: {res.rps:.0f} req/s, p99 {res.p99_us:.0f} µs, {res.errors} errors", flush=True)
        ratios = [b / a for a, b in zip(rps["1 replica"], rps["2 replicas"])]
        layout = ("wrk, nginx, the upstream and each replica on a core of their own"
                  if own_cores else f"{len(cores)} cores shared by wrk, nginx, the upstream and both replicas: "
                  "the second replica has no core of its own, so no scaling can be shown on this machine")
        lines = [
            "# Scaling out: one replica against two behind nginx",
            "",
            f"Machine: {bench.machine()}; {layout}.",
            f"{args.rounds} interleaved rounds of {args.seconds:g} s, {args.connections} connections, modern `tools/call`.",
            "",
            "| balancer over | req/s (median) |",
            "|---|---|",
            *(f"| {n} | {statistics.median(v):.0f} |" for n, v in rps.items()),
            "",
            f"Two replicas ÷ one: {statistics.median(ratios):.2f}× (per round: {', '.join(f'{x:.2f}' for x in ratios)}); "
            f"errors: {errors}.",
        ]
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "replicas.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
