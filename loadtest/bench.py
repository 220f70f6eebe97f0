#!/usr/bin/env python3
"""MCP Hangar load test: the gateway against nginx and a direct connection, side by side.

Starts a fixed-reply MCP upstream (`hangar-upstream http`), nginx as a plain reverse proxy (one
worker, keep-alive upstream pool) and the gateway, pinned to one core, and drives each with `wrk`
pinned to the other, in interleaved rounds. Reports medians and per-round ratios as a markdown
table (stdout and loadtest/results/results.md), the raw numbers (results.json) and a chart
(results.png). Run it through `loadtest/run`, which builds and installs what it needs.

Everything listens on 127.0.0.1; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"
OUT = ROOT / "loadtest" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_CORE, SERVER_CORE = "0", "1"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not open port {port} within {timeout}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Procs:
    """Background processes, stopped together."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], core: str = SERVER_CORE, env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        # In the run's temporary directory: what a process writes there (the Python anchor keeps
        # an event store in ./data) goes away with the run instead of landing in the checkout.
        p = subprocess.Popen(["taskset", "-c", core, *args], stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})}, start_new_session=True, cwd=self.logs)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def post(url: str, body: dict, headers: dict) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json",
                                          "accept": "application/json, text/event-stream", **headers})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def list_tools_call() -> tuple[dict, dict]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}
    return body, {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}


def modern_call(tool: str, text: str) -> tuple[dict, dict]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": text},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool}
    return body, headers


def legacy_session(url: str) -> str:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
    _, headers, _ = post(url, init, {"mcp-protocol-version": LEGACY})
    sid = headers["mcp-session-id"]
    post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
         {"mcp-protocol-version": LEGACY, "mcp-session-id": sid})
    return sid


@dataclass
class Target:
    """One thing to load: a URL with a request, and the process whose CPU counts."""

    name: str
    url: str
    body: dict
    headers: dict
    pid: int | None


@dataclass
class Case:
    name: str
    connections: int
    targets: list[Target]
    note: str = ""


@dataclass
class Result:
    rps: float
    p50_us: float
    p99_us: float
    avg_us: float
    cpu_us: float | None
    requests: int
    errors: int


@dataclass
class Run:
    results: dict = field(default_factory=dict)  # (case, target) -> [Result]


def wrk(target: Target, connections: int, seconds: float, scripts: Path) -> Result:
    lua = scripts / f"{re.sub('[^a-z0-9]+', '-', target.name)}-{abs(hash(json.dumps(target.body))) % 10**8}.lua"
    if not lua.exists():
        # Every request gets its own JSON-RPC id, as real clients' requests do (a legacy session
        # tracks requests in flight by id).
        head, tail = json.dumps(target.body).split('"id": 1', 1)
        headers = "".join(f'wrk.headers["{k}"] = {json.dumps(v)}\n' for k, v in target.headers.items())
        lua.write_text('wrk.method = "POST"\n'
                       'wrk.headers["content-type"] = "application/json"\n'
                       'wrk.headers["accept"] = "application/json, text/event-stream"\n' + headers +
                       f"local head, tail = {json.dumps(head)}, {json.dumps(tail)}\n"
                       "local n = 0\n"
                       "request = function()\n"
                       "  n = n + 1\n"
                       '  return wrk.format(nil, nil, nil, head .. \'"id": \' .. n .. tail)\n'
                       "end\n")
    before = cpu_seconds(target.pid) if target.pid else None
    done = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                           "--latency", "-s", str(lua), target.url],
                          capture_output=True, text=True, timeout=seconds + 30)
    after = cpu_seconds(target.pid) if target.pid else None
    out = done.stdout
    if not (m := re.search(r"(\d+) requests in", out)):
        raise SystemExit(f"wrk failed against {target.name} ({target.url}): {out}{done.stderr}")
    requests = int(m.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())

    def us(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    cpu = (after - before) * 1e6 / requests if before is not None and requests else None
    return Result(rps, us("50%"), us("99%"), us("Latency"), cpu, requests, errors)


def nginx_head(work: Path) -> str:
    """The start of an nginx configuration for a load test: one worker in the foreground, its
    files under `work/nginx`, no access log; the `http` block is left open."""
    return f"""
daemon off;
master_process off;
worker_processes 1;
error_log {work}/nginx/error.log warn;
pid {work}/nginx/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx/body;
    proxy_temp_path {work}/nginx/proxy;
"""


def start_everything(procs: Procs, work: Path, real_server: bool) -> tuple[list[Case], dict]:
    up, up_sse, up2 = free_port(), free_port(), free_port()
    upstream = str(RELEASE / "hangar-upstream")
    pids = {}
    for port, extra, name in [(up, [], "upstream"), (up_sse, ["sse"], "upstream-sse"), (up2, [], "upstream-2")]:
        p = procs.start(name, [upstream, "http", str(port), *extra])
        wait_port(port, p, name)
        pids[name] = p.pid

    ng = {k: free_port() for k in ("json", "sse", "group")}
    (work / "nginx").mkdir(exist_ok=True)
    nginx_conf = work / "nginx" / "nginx.conf"
    nginx_conf.write_text(nginx_head(work) + f"""
    client_max_body_size 1m;
    client_body_buffer_size 64k;
    upstream json {{ server 127.0.0.1:{up}; keepalive 128; }}
    upstream sse {{ server 127.0.0.1:{up_sse}; keepalive 128; }}
    upstream pair {{ server 127.0.0.1:{up}; server 127.0.0.1:{up2}; keepalive 128; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {{ listen 127.0.0.1:{ng['json']}; location / {{ proxy_pass http://json; }} }}
    server {{ listen 127.0.0.1:{ng['sse']}; location / {{ proxy_pass http://sse; proxy_buffering off; }} }}
    server {{ listen 127.0.0.1:{ng['group']}; location / {{ proxy_pass http://pair; }} }}
}}
""")
    nginx = procs.start("nginx", ["nginx", "-c", str(nginx_conf), "-p", str(work / "nginx")])
    wait_port(ng["json"], nginx, "nginx")

    gw_port = free_port()
    gw_conf = work / "gateway.yaml"
    gw_conf.write_text(f"""
server: {{port: {gw_port}, limits: {{max_sessions: 20000, max_concurrent_streams: 30000}}}}
providers:
  up: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp"}}
  raw: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp", tool_prefix: ""}}
  sse: {{mode: remote, endpoint: "http://127.0.0.1:{up_sse}/mcp"}}
  m1: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp", expose: false}}
  m2: {{mode: remote, endpoint: "http://127.0.0.1:{up2}/mcp", expose: false}}
  pool: {{mode: group, strategy: weighted_round_robin, members: [m1, m2]}}
""")
    gateway = procs.start("gateway", [str(RELEASE / "mcp-hangar"), "--http", "--config", str(gw_conf),
                                      "--log-level", "warn"])
    wait_port(gw_port, gateway, "gateway")
    gw = f"http://127.0.0.1:{gw_port}/mcp"
    # Like a client: list the tools first (the gateway learns its upstreams' protocol and the tool
    # names; the fast path takes known-modern upstreams only).
    post(gw, *list_tools_call())
    for tool in ("up__echo", "echo", "sse__echo", "pool__echo", "pool__echo"):
        post(gw, *modern_call(tool, "warm"))

    def direct(port: int) -> str:
        return f"http://127.0.0.1:{port}/mcp"

    def nginx_url(key: str) -> str:
        return f"http://127.0.0.1:{ng[key]}/mcp"

    small = "x" * 16
    kib = "x" * 1000
    kib16 = "x" * 16_000

    def trio(tool_gw: str, text: str, upstream_port: int, nginx_key: str) -> list[Target]:
        return [
            Target("direct", direct(upstream_port), *modern_call("echo", text), None),
            Target("nginx", nginx_url(nginx_key), *modern_call("echo", text), nginx.pid),
            Target("gateway", gw, *modern_call(tool_gw, text), gateway.pid),
        ]

    legacy_direct = legacy_session(direct(up))
    legacy_nginx = legacy_session(nginx_url("json"))
    legacy_gw = legacy_session(gw)

    def legacy_call(tool: str, sid: str) -> tuple[dict, dict]:
        return ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"text": small}}},
                {"mcp-protocol-version": LEGACY, "mcp-session-id": sid})

    cases = [
        Case("modern tools/call, 64 conns", 64, trio("up__echo", small, up, "json"), "fast path, prefix cut from the body"),
        Case("pass-through (no prefix), 64 conns", 64, trio("echo", small, up, "json"), "fast path, body untouched"),
        Case("modern tools/call, 1 conn", 1, trio("up__echo", small, up, "json"), "latency"),
        Case("1 KiB body, 64 conns", 64, trio("up__echo", kib, up, "json")),
        Case("16 KiB body, 64 conns", 64, trio("up__echo", kib16, up, "json")),
        Case("SSE replies, 64 conns", 64, trio("sse__echo", small, up_sse, "sse")),
        Case("legacy session tools/call, 64 conns", 64, [
            Target("direct", direct(up), *legacy_call("echo", legacy_direct), None),
            Target("nginx", nginx_url("json"), *legacy_call("echo", legacy_nginx), nginx.pid),
            Target("gateway", gw, *legacy_call("up__echo", legacy_gw), gateway.pid),
        ], "session lookup, upstream session per client, id remapping"),
        Case("2-member group, 64 conns", 64, [
            Target("direct", direct(up), *modern_call("echo", small), None),
            Target("nginx", nginx_url("group"), *modern_call("echo", small), nginx.pid),
            Target("gateway", gw, *modern_call("pool__echo", small), gateway.pid),
        ], "weighted round-robin over two upstreams"),
    ]
    info = {"pids": {"nginx": nginx.pid, "gateway": gateway.pid, **pids}, "gateway_url": gw}
    if real_server:
        cases.append(real_server_case(procs, work))
    if anchor := python_anchor_case(procs, work, up, gw, gateway.pid):
        cases.append(anchor)
    return cases, info


def real_server_case(procs: Procs, work: Path) -> Case:
    """The official Python SDK's server, direct and through a second gateway."""
    python = os.environ.get("HANGAR_BENCH_PYTHON", sys.executable)
    fixture = ROOT / "proxy" / "tests" / "e2e" / "peers" / "fixture_server.py"
    port = free_port()
    server = procs.start("python-sdk-server", [python, str(fixture), "http", str(port), "sdk"])
    wait_port(port, server, "python SDK server")
    gw_port = free_port()
    conf = work / "gateway-real.yaml"
    conf.write_text(f"server: {{port: {gw_port}}}\nproviders:\n  sdk: {{mode: remote, endpoint: \"http://127.0.0.1:{port}/mcp\"}}\n")
    gateway = procs.start("gateway-real", [str(RELEASE / "mcp-hangar"), "--http", "--config", str(conf), "--log-level", "warn"])
    wait_port(gw_port, gateway, "gateway (real server)")
    gw = f"http://127.0.0.1:{gw_port}/mcp"
    post(gw, *list_tools_call())
    post(gw, *modern_call("sdk__echo", "warm"))
    return Case("Python SDK server, 16 conns", 16, [
        Target("direct", f"http://127.0.0.1:{port}/mcp", *modern_call("echo", "x" * 16), None),
        Target("gateway", gw, *modern_call("sdk__echo", "x" * 16), gateway.pid),
    ], "a real MCP server (~600 µs/call)")


def python_anchor_case(procs: Procs, work: Path, up: int, gw: str, gw_pid: int) -> Case | None:
    """The Python MCP Hangar (PyPI `mcp-hangar`, the design's reference) in HTTP mode in front of the
    same fixed-reply upstream. It exposes upstream tools through its `hangar_call` tool, so its
    request differs; the work per call (route, forward, answer) is the same. Skipped, with a note,
    when the package is not installed (loadtest/run installs it)."""
    python = Path(os.environ.get("HANGAR_BENCH_PYTHON", sys.executable))
    cli = python.parent / "mcp-hangar"
    if not cli.exists():
        print(f"note: {cli} not found; the Python anchor case is skipped", file=sys.stderr)
        return None
    port = free_port()
    conf = work / "python-hangar.yaml"
    conf.write_text(f"mcp_servers:\n  up: {{mode: remote, endpoint: \"http://127.0.0.1:{up}/mcp\"}}\n")
    anchor = procs.start("python-hangar", [str(cli), "--config", str(conf), "serve", "--http", "--port", str(port),
                                           "--log-level", "WARNING"])
    wait_port(port, anchor, "Python mcp-hangar", timeout=120)
    url = f"http://127.0.0.1:{port}/mcp"
    body, headers = modern_call("hangar_call", "")
    body["params"]["arguments"] = {"calls": [{"mcp_server": "up", "tool": "echo", "arguments": {"text": "x" * 16}}]}
    status, _, reply = post(url, body, headers)
    relayed = status == 200 and json.loads(reply).get("result", {}).get("structuredContent", {}).get("succeeded") == 1
    if not relayed:
        raise SystemExit(f"the Python anchor did not relay a call ({status}): {reply[:500]!r}")
    return Case("Python anchor (mcp-hangar 2.34.4), 16 conns", 16, [
        Target("direct", f"http://127.0.0.1:{up}/mcp", *modern_call("echo", "x" * 16), None),
        Target("python-hangar", url, body, headers, anchor.pid),
        Target("gateway", gw, *modern_call("up__echo", "x" * 16), gw_pid),
    ], "the Python reference in HTTP mode, same upstream")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3, help="per case and target (wrk takes whole seconds)")
    ap.add_argument("--no-real-server", action="store_true", help="skip the Python SDK server case")
    args = ap.parse_args()
    if args.rounds < 1 or args.seconds < 1:
        raise SystemExit("--rounds and --seconds must be at least 1")
    if os.cpu_count() is None or os.cpu_count() < 2:
        raise SystemExit("needs 2 cores: load on one, servers on the other")
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (loadtest/run installs it)")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hangar-loadtest-"))
    scripts = work / "lua"
    scripts.mkdir()
    procs = Procs(work)
    try:
        cases, info = start_everything(procs, work, not args.no_real_server)
        runs: dict[tuple[str, str], list[Result]] = {}
        total = args.rounds * sum(len(c.targets) for c in cases)
        done = 0
        for rnd in range(args.rounds):
            for case in cases:
                for t in case.targets:
                    done += 1
                    r = wrk(t, case.connections, args.seconds, scripts)
                    runs.setdefault((case.name, t.name), []).append(r)
                    print(f"[{done}/{total}] round {rnd + 1} {case.name} / {t.name}: {r.rps:,.0f} req/s, "
                          f"p50 {r.p50_us:.0f} µs, p99 {r.p99_us:.0f} µs"
                          + (f", {r.cpu_us:.1f} µs CPU/req" if r.cpu_us is not None else "")
                          + (f", {r.errors} errors" if r.errors else ""), flush=True)
        rss = {name: peak_rss_kib(pid) for name, pid in info["pids"].items() if Path(f"/proc/{pid}").exists()}
        streams = stream_memory(info["gateway_url"], info["pids"]["gateway"])
    except BaseException:
        print(f"the processes' logs are kept in {work}", file=sys.stderr)
        raise
    finally:
        procs.stop()
    report(cases, runs, rss, streams, args)
    shutil.rmtree(work, ignore_errors=True)


def stream_memory(gw: str, pid: int) -> dict:
    """RSS of the gateway holding many open `subscriptions/listen` streams (and legacy GET streams)."""
    helper = ROOT / "loadtest" / "streams.py"
    base = rss_kib(pid)
    out = subprocess.run([sys.executable, str(helper), gw, str(pid)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:], "idle_kib": base}
    return {"idle_kib": base, **json.loads(out.stdout)}


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(cases: list[Case], runs: dict, rss: dict, streams: dict, args) -> None:
    lines = [f"Machine: {machine()}", "",
             f"{args.rounds} interleaved rounds of {args.seconds:g} s per case and target; medians. "
             "wrk on core 0, upstreams and the proxy under test on core 1. CPU is the proxy process's "
             "user+system time per request (/proc/<pid>/stat).", "",
             "| case | target | req/s | p50 µs | p99 µs | CPU µs/req | vs nginx: req/s | vs nginx: CPU | vs direct: req/s | errors | load check |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    per_round_lines = ["", "Per-round gateway/nginx throughput ratios:", ""]
    summary = {}
    for case in cases:
        med = {}
        for t in case.targets:
            rs = runs[(case.name, t.name)]
            cpu = [r.cpu_us for r in rs if r.cpu_us is not None]
            med[t.name] = {
                "rps": median([r.rps for r in rs]), "p50": median([r.p50_us for r in rs]),
                "p99": median([r.p99_us for r in rs]), "cpu": median(cpu) if cpu else None,
                "errors": sum(r.errors for r in rs),
                # Little's law: throughput × mean latency ≈ connections when the load was real.
                "little": median([r.rps * r.avg_us / 1e6 / case.connections for r in rs]),
            }
        summary[case.name] = med
        for name, m in med.items():
            vs_nginx = vs_cpu = vs_direct = ""
            if name == "gateway" and "nginx" in med:
                vs_nginx = f"{m['rps'] / med['nginx']['rps']:.2f}×"
                if m["cpu"] and med["nginx"]["cpu"]:
                    vs_cpu = f"{m['cpu'] / med['nginx']['cpu']:.2f}×"
            if name != "direct" and "direct" in med:
                vs_direct = f"{m['rps'] / med['direct']['rps']:.2f}×"
            cpu = f"{m['cpu']:.1f}" if m["cpu"] is not None else "–"
            lines.append(f"| {case.name} | {name} | {m['rps']:,.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {cpu} | "
                         f"{vs_nginx} | {vs_cpu} | {vs_direct} | {m['errors']} | {m['little']:.2f} |")
        if "nginx" in med:
            ratios = [g.rps / n.rps for g, n in zip(runs[(case.name, "gateway")], runs[(case.name, "nginx")])]
            per_round_lines.append(f"- {case.name}: " + ", ".join(f"{r:.2f}" for r in ratios))
    lines += per_round_lines
    lines += ["", "Peak RSS (KiB): " + ", ".join(f"{k} {v:,}" for k, v in sorted(rss.items()))]
    lines += ["", "Open streams: " + json.dumps(streams)]
    lines += ["", "Goals:", ""] + goals(summary, streams)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (OUT / "results.md").write_text(text)
    (OUT / "results.json").write_text(json.dumps({
        "machine": machine(), "rounds": args.rounds, "seconds": args.seconds, "summary": summary, "rss_kib": rss,
        "streams": streams,
        "runs": {f"{c} / {t}": [r.__dict__ for r in rs] for (c, t), rs in runs.items()},
    }, indent=1))
    chart(summary)


def goals(s: dict, streams: dict) -> list[str]:
    out = ["| goal | target | measured | met |", "|---|---|---:|:-:|"]

    def row(goal: str, target: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}×") -> None:
        shown = fmt.format(value) if value is not None else "–"
        out.append(f"| {goal} | {target} | {shown} | {'yes' if ok else 'no' if ok is not None else '–'} |")

    m = s["modern tools/call, 64 conns"]
    cpu = m["gateway"]["cpu"] / m["nginx"]["cpu"] if m["gateway"]["cpu"] and m["nginx"]["cpu"] else None
    row("MCP-aware routing: CPU per request vs nginx", "≤ 1.0×", cpu, cpu is not None and cpu <= 1.0)
    thr = m["gateway"]["rps"] / m["nginx"]["rps"]
    row("MCP-aware routing: throughput vs nginx", "≥ 1.0×", thr, thr >= 1.0)
    lg = s["legacy session tools/call, 64 conns"]
    lcpu = lg["gateway"]["cpu"] / lg["nginx"]["cpu"] if lg["gateway"]["cpu"] and lg["nginx"]["cpu"] else None
    row("Legacy-session routing: CPU per request vs nginx", "≤ 1.5×", lcpu, lcpu is not None and lcpu <= 1.5)
    one = s["modern tools/call, 1 conn"]
    added = one["gateway"]["p50"] - one["direct"]["p50"]
    row("Added p50 latency at 1 connection", "≤ 20 µs", added, added <= 20, "{:.0f} µs")
    p99 = m["gateway"]["p99"] / m["nginx"]["p99"]
    row("p99 at 64 connections vs nginx", "≤ 1.0×", p99, p99 <= 1.0)
    if "Python SDK server, 16 conns" in s:
        r = s["Python SDK server, 16 conns"]
        real = r["gateway"]["rps"] / r["direct"]["rps"]
        row("In front of a real MCP server vs direct", "≥ 0.97×", real, real >= 0.97)
    anchor = next((v for k, v in s.items() if k.startswith("Python anchor")), None)
    if anchor:
        ratio = anchor["gateway"]["rps"] / anchor["python-hangar"]["rps"]
        row("Gateway throughput vs the Python anchor (mcp-hangar, PyPI)", "report", ratio, None)
        if anchor["gateway"]["cpu"] and anchor["python-hangar"]["cpu"]:
            ratio = anchor["python-hangar"]["cpu"] / anchor["gateway"]["cpu"]
            row("Python anchor CPU per request vs the gateway's", "report", ratio, None)
    if "listen_streams" in streams:
        mib = (streams["listen_rss_kib"] - streams["idle_kib"]) / 1024
        row(f"{streams['listen_streams']:,} open subscriptions/listen streams: added RSS", "≤ 64 MiB", mib, mib <= 64, "{:.1f} MiB")
    if "get_streams" in streams:
        mib = (streams["get_rss_kib"] - streams["idle_kib"]) / 1024
        row(f"{streams['get_streams']:,} idle legacy GET streams: added RSS", "≤ 64 MiB", mib, mib <= 64, "{:.1f} MiB")
    return out


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown CPU")
    mem = next((l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), "0")
    return f"{os.cpu_count()} × {cpu}, {int(mem) // 1024 // 1024} GiB, Linux {os.uname().release}"


def chart(summary: dict) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart")
        return
    names = list(summary)
    targets = ["direct", "nginx", "gateway"]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.27
    for i, t in enumerate(targets):
        values = [summary[n][t]["rps"] if t in summary[n] else 0 for n in names]
        ax.bar([x + (i - 1) * width for x in range(len(names))], values, width, label=t)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("requests/s (median)")
    ax.set_title("MCP Hangar vs nginx vs direct, same machine, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "results.png", dpi=110)


if __name__ == "__main__":
    main()
