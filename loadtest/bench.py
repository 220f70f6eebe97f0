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
# The anchors' versions, as loadtest/run installs them.
PYTHON_HANGAR = "2.34.4"
CONTEXTFORGE = "1.0.7.post20260921"


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


def cpu_seconds(pid: int) -> tuple[float, float]:
    """utime and stime (user and kernel time) of every thread of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


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


def browser(call: tuple[dict, dict]) -> tuple[dict, dict]:
    """`call` as a page's script makes it: with its `Origin` (one the gateway allows by default)."""
    body, headers = call
    return body, headers | {"origin": "http://localhost:5173"}


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
    # The user-space part of cpu_us (the rest is the kernel's).
    user_us: float | None = None


@dataclass
class Run:
    results: dict = field(default_factory=dict)  # (case, target) -> [Result]


def wrk(target: Target, connections: int, seconds: float, scripts: Path) -> Result:
    # One script per target name and request (body and headers: two cases may send one body
    # with different headers).
    request = json.dumps([target.body, target.headers], sort_keys=True)
    lua = scripts / f"{re.sub('[^a-z0-9]+', '-', target.name)}-{abs(hash(request)) % 10**8}.lua"
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

    cpu = user = None
    if before is not None and after is not None and requests:
        user = (after[0] - before[0]) * 1e6 / requests
        cpu = user + (after[1] - before[1]) * 1e6 / requests
    return Result(rps, us("50%"), us("99%"), us("Latency"), cpu, requests, errors, user)


# An nginx upstream block's connection reuse: enough idle connections for every client
# connection, none closed during a run (nginx's defaults close one after 1000 requests).
UPSTREAM_KEEPALIVE = "keepalive 128; keepalive_requests 1000000; keepalive_timeout 300s;"


def nginx_head(work: Path) -> str:
    """The start of an nginx configuration for a load test: one worker in the foreground, its
    files under `work/nginx`, no access log, client connections never closed during a run (the
    reference is a tuned nginx: its defaults close one after 1000 requests or 75 s idle); the
    `http` block is left open."""
    return f"""
daemon off;
master_process off;
worker_processes 1;
error_log {work}/nginx/error.log warn;
pid {work}/nginx/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/nginx/body;
    proxy_temp_path {work}/nginx/proxy;
"""


def write_nginx_conf(work: Path, up: int, up_sse: int, ports: dict[str, int], up2: int | None = None) -> Path:
    """The load test's nginx (`work/nginx/nginx.conf`): a server on `ports["json"]` in front of
    the JSON upstream, one on `ports["sse"]` in front of the SSE upstream (unbuffered), given
    `ports["limited"]` one there in front of the JSON upstream with a rate limit per client
    address that no run reaches (`limit_req`), and, given `up2`, one on `ports["group"]` in
    front of both JSON upstreams."""
    upstreams = [f"upstream json {{ server 127.0.0.1:{up}; {UPSTREAM_KEEPALIVE} }}",
                 f"upstream sse {{ server 127.0.0.1:{up_sse}; {UPSTREAM_KEEPALIVE} }}"]
    servers = [f"server {{ listen 127.0.0.1:{ports['json']}; location / {{ proxy_pass http://json; }} }}",
               f"server {{ listen 127.0.0.1:{ports['sse']}; location / {{ proxy_pass http://sse; proxy_buffering off; }} }}"]
    if "limited" in ports:
        upstreams.append("limit_req_zone $binary_remote_addr zone=per_client:1m rate=1000000r/s;")
        servers.append(f"server {{ listen 127.0.0.1:{ports['limited']}; location / {{ "
                       "limit_req zone=per_client burst=1000000 nodelay; proxy_pass http://json; } }")
    if up2 is not None:
        upstreams.append(f"upstream pair {{ server 127.0.0.1:{up}; server 127.0.0.1:{up2}; {UPSTREAM_KEEPALIVE} }}")
        servers.append(f"server {{ listen 127.0.0.1:{ports['group']}; location / {{ proxy_pass http://pair; }} }}")
    return write_nginx(work, ["client_max_body_size 1m;", "client_body_buffer_size 64k;", *upstreams,
                              "proxy_http_version 1.1;", 'proxy_set_header Connection "";', *servers])


def write_nginx(home: Path, body: list[str]) -> Path:
    """`home/nginx/nginx.conf`: [`nginx_head`] with `body`'s lines in its `http` block."""
    (home / "nginx").mkdir(parents=True, exist_ok=True)
    conf = home / "nginx" / "nginx.conf"
    conf.write_text(nginx_head(home) + "".join(f"    {line}\n" for line in body) + "}\n")
    return conf


def build_relay(work: Path) -> Path | None:
    """loadtest/relay.c, the byte relay that is the floor of any proxy here, built with `cc -O2`
    (present wherever cargo links). None, with a note, without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("note: no C compiler (cc): the byte relay rows are skipped", file=sys.stderr)
        return None
    binary = work / "relay"
    built = subprocess.run([cc, "-O2", "-o", str(binary), str(ROOT / "loadtest" / "relay.c")],
                           capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        raise SystemExit(f"loadtest/relay.c did not build: {built.stderr}")
    return binary


def start_relay(procs: Procs, relay: Path | None, name: str, upstream_port: int,
                core: str = SERVER_CORE) -> tuple[subprocess.Popen, str] | None:
    """A byte relay in front of `upstream_port`, pinned like the proxies (to `core`); its process
    and URL."""
    if relay is None:
        return None
    port = free_port()
    proc = procs.start(name, [str(relay), str(port), str(upstream_port)], core=core)
    wait_port(port, proc, name)
    return proc, f"http://127.0.0.1:{port}/mcp"


def start_everything(procs: Procs, work: Path, gateway_binary: Path, real_server: bool,
                     baseline_binary: Path | None, wanted) -> tuple[list[Case], dict]:
    up, up_sse, up2 = free_port(), free_port(), free_port()
    upstream = str(RELEASE / "hangar-upstream")
    pids = {}
    for port, extra, name in [(up, [], "upstream"), (up_sse, ["sse"], "upstream-sse"), (up2, [], "upstream-2")]:
        p = procs.start(name, [upstream, "http", str(port), *extra])
        wait_port(port, p, name)
        pids[name] = p.pid

    ng = {k: free_port() for k in ("json", "sse", "group", "limited")}
    nginx_conf = write_nginx_conf(work, up, up_sse, ng, up2)
    nginx = procs.start("nginx", ["nginx", "-c", str(nginx_conf), "-p", str(work / "nginx")])
    wait_port(ng["json"], nginx, "nginx")
    relay_binary = build_relay(work)
    relays = {key: start_relay(procs, relay_binary, f"relay-{key}", port) for key, port in (("json", up), ("sse", up_sse))}

    gw_port = free_port()
    gw_conf = work / "gateway.yaml"
    # The 10 000 open streams come from one address and must fit: max_connections under a 20 000
    # descriptor limit (the derived cap is half of what is left after a reserve), and the
    # per-client session cap (1000 by default) raised for the legacy GET streams.
    gw_conf.write_text(f"""
server: {{port: {gw_port}, limits: {{max_sessions: 20000, max_concurrent_streams: 30000, max_connections: 12000,
                 max_sessions_per_client: 20000}}}}
providers:
  up: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp"}}
  raw: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp", tool_prefix: ""}}
  sse: {{mode: remote, endpoint: "http://127.0.0.1:{up_sse}/mcp"}}
  m1: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp", expose: false}}
  m2: {{mode: remote, endpoint: "http://127.0.0.1:{up2}/mcp", expose: false}}
  pool: {{mode: group, strategy: weighted_round_robin, members: [m1, m2]}}
""")
    gateway, gw = start_gateway(procs, "gateway", gateway_binary, gw_conf, gw_port)
    # The A/B: the same configuration on another port, served by the baseline binary.
    baseline = baseline_gw = None
    if baseline_binary:
        base_port = free_port()
        base_conf = work / "baseline.yaml"
        base_conf.write_text(gw_conf.read_text().replace(f"port: {gw_port}", f"port: {base_port}", 1))
        baseline, baseline_gw = start_gateway(procs, "baseline", baseline_binary, base_conf, base_port)

    def direct(port: int) -> str:
        return f"http://127.0.0.1:{port}/mcp"

    def nginx_url(key: str) -> str:
        return f"http://127.0.0.1:{ng[key]}/mcp"

    limited = {"gateway": start_limited(procs, work, "gateway-limited", gateway_binary, up)}
    if baseline_binary:
        limited["baseline"] = start_limited(procs, work, "baseline-limited", baseline_binary, up)

    small = "x" * 16
    kib = "x" * 1000
    kib16 = "x" * 16_000

    def gateways(body: dict, headers: dict, legacy: dict | None = None) -> list[Target]:
        """The gateway under test and, in an A/B run, the baseline, with the same request (a
        legacy request carries each gateway's own session)."""
        out = [Target("gateway", gw, body, headers | (legacy or {}).get("gateway", {}), gateway.pid)]
        if baseline:
            out.append(Target("baseline", baseline_gw, body, headers | (legacy or {}).get("baseline", {}), baseline.pid))
        return out

    def relay(key: str, body: dict, headers: dict) -> list[Target]:
        """The byte relay's target in front of the upstream nginx's `key` server proxies, if built."""
        if not relays[key]:
            return []
        proc, url = relays[key]
        return [Target("relay", url, body, headers, proc.pid)]

    def trio(tool_gw: str, text: str, upstream_port: int, nginx_key: str) -> list[Target]:
        return [
            Target("direct", direct(upstream_port), *modern_call("echo", text), None),
            *relay(nginx_key, *modern_call("echo", text)),
            Target("nginx", nginx_url(nginx_key), *modern_call("echo", text), nginx.pid),
            *gateways(*modern_call(tool_gw, text)),
        ]

    legacy_direct = legacy_session(direct(up))
    legacy_relay = legacy_session(relays["json"][1]) if relays["json"] else ""
    legacy_nginx = legacy_session(nginx_url("json"))
    legacy_gw = {"gateway": {"mcp-session-id": legacy_session(gw)}}
    if baseline:
        legacy_gw["baseline"] = {"mcp-session-id": legacy_session(baseline_gw)}

    def legacy_call(tool: str, sid: str) -> tuple[dict, dict]:
        headers = {"mcp-protocol-version": LEGACY} | ({"mcp-session-id": sid} if sid else {})
        return ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"text": small}}},
                headers)

    cases = [
        Case("modern tools/call, 64 conns", 64, trio("up__echo", small, up, "json"), "fast path, prefix cut from the body"),
        Case("pass-through (no prefix), 64 conns", 64, trio("echo", small, up, "json"), "fast path, body untouched"),
        Case("modern tools/call, 1 conn", 1, trio("up__echo", small, up, "json"), "latency"),
        Case("1 KiB body, 64 conns", 64, trio("up__echo", kib, up, "json")),
        Case("16 KiB body, 64 conns", 64, trio("up__echo", kib16, up, "json")),
        Case("SSE replies, 64 conns", 64, trio("sse__echo", small, up_sse, "sse")),
        Case("legacy session tools/call, 64 conns", 64, [
            Target("direct", direct(up), *legacy_call("echo", legacy_direct), None),
            *relay("json", *legacy_call("echo", legacy_relay)),
            Target("nginx", nginx_url("json"), *legacy_call("echo", legacy_nginx), nginx.pid),
            *gateways(*legacy_call("up__echo", ""), legacy=legacy_gw),
        ], "session lookup, upstream session per client, id remapping"),
        Case("browser calls (Origin), 64 conns", 64, [
            Target("direct", direct(up), *browser(modern_call("echo", small)), None),
            *relay("json", *browser(modern_call("echo", small))),
            Target("nginx", nginx_url("json"), *browser(modern_call("echo", small)), nginx.pid),
            *gateways(*browser(modern_call("up__echo", small))),
        ], "a page's call from an allowed origin: the gateway answers with the CORS fields, nginx passes it on"),
        Case("rate limits in force, 64 conns", 64, [
            Target("direct", direct(up), *modern_call("echo", small), None),
            *relay("json", *modern_call("echo", small)),
            Target("nginx", nginx_url("limited"), *modern_call("echo", small), nginx.pid),
            *(Target(name, url, *modern_call("up__echo", small), proc.pid) for name, (proc, url) in limited.items()),
        ], "a token from the caller's and the caller × tool's buckets; nginx with limit_req per address"),
        Case("2-member group, 64 conns", 64, [
            Target("direct", direct(up), *modern_call("echo", small), None),
            Target("nginx", nginx_url("group"), *modern_call("echo", small), nginx.pid),
            *gateways(*modern_call("pool__echo", small)),
        ], "weighted round-robin over two upstreams"),
    ]
    cases = [c for c in cases if wanted(c.name)]
    info = {"pids": {"nginx": nginx.pid, "gateway": gateway.pid, **pids}, "gateway_url": gw}
    if baseline:
        info["pids"]["baseline"] = baseline.pid
        info["baseline_url"] = baseline_gw
    if real_server and wanted("Python SDK server"):
        cases.extend(real_server_cases(procs, work, gateway_binary, relay_binary))
    anchor_gateways = gateways(*modern_call("up__echo", "x" * 16))
    if wanted("Python anchor") and (anchor := python_anchor_case(procs, work, up, anchor_gateways)):
        cases.append(anchor)
    if wanted("ContextForge") and (anchor := contextforge_case(procs, work, up, anchor_gateways)):
        cases.append(anchor)
    return cases, info


def start_gateway(procs: Procs, name: str, binary: Path, conf: Path, port: int,
                  tools: tuple[str, ...] = ("up__echo", "echo", "sse__echo", "pool__echo", "pool__echo"),
                  ) -> tuple[subprocess.Popen, str]:
    """A gateway on `conf`, warmed up like a client would: the tools listed first (the gateway
    learns its upstreams' protocol and the tool names; the fast path takes known-modern upstreams
    only), then one call of each of `tools` (each case's tool)."""
    gateway = procs.start(name, [str(binary), "--http", "--config", str(conf), "--log-level", "warn"])
    wait_port(port, gateway, name)
    url = f"http://127.0.0.1:{port}/mcp"
    post(url, *list_tools_call())
    for tool in tools:
        post(url, *modern_call(tool, "warm"))
    return gateway, url


# Rate limits in force, none of them reached during a run: what taking a token costs.
RATE_LIMITS = "rate_limits: {per_principal: {rps: 1000000, burst: 1000000}, per_principal_tool: {rps: 1000000, burst: 1000000}}"


def start_limited(procs: Procs, work: Path, name: str, binary: Path, up: int) -> tuple[subprocess.Popen, str]:
    """A gateway in front of upstream `up` with [`RATE_LIMITS`] (rate limits apply to the whole
    gateway, so the other cases' gateway has none)."""
    port = free_port()
    conf = work / f"{name}.yaml"
    conf.write_text(f"server: {{port: {port}}}\n{RATE_LIMITS}\n"
                    f"providers:\n  up: {{mode: remote, endpoint: \"http://127.0.0.1:{up}/mcp\"}}\n")
    return start_gateway(procs, name, binary, conf, port, ("up__echo",))


def real_server_cases(procs: Procs, work: Path, gateway_binary: Path, relay_binary: Path | None) -> list[Case]:
    """The official Python SDK's server, direct and through a second gateway (and nginx, and the
    byte relay): with the proxies on the server's core, as in every case, and again with them on
    the load generator's core (which `wrk` barely uses at this server's pace), where a proxy's
    wake-up does not preempt the server and the server's does not preempt the proxy."""
    python = os.environ.get("HANGAR_BENCH_PYTHON", sys.executable)
    fixture = ROOT / "proxy" / "tests" / "e2e" / "peers" / "fixture_server.py"
    port = free_port()
    server = procs.start("python-sdk-server", [python, str(fixture), "http", str(port), "sdk"])
    wait_port(port, server, "python SDK server")
    return [real_server_case(procs, work, gateway_binary, relay_binary, name, core, server.pid, port)
            for name, core in (("Python SDK server, 16 conns", SERVER_CORE),
                               ("Python SDK server, proxies apart, 16 conns", LOAD_CORE))]


def real_server_case(procs: Procs, work: Path, gateway_binary: Path, relay_binary: Path | None,
                     name: str, core: str, server_pid: int, port: int) -> Case:
    """The case `name`: the SDK server (process `server_pid`, on `port`) direct and through its
    proxies, started on `core`."""
    tag = f"sdk-{core}"
    gw_port = free_port()
    conf = work / f"gateway-{tag}.yaml"
    conf.write_text(f"server: {{port: {gw_port}}}\nproviders:\n  sdk: {{mode: remote, endpoint: \"http://127.0.0.1:{port}/mcp\"}}\n")
    gateway = procs.start(f"gateway-{tag}", [str(gateway_binary), "--http", "--config", str(conf), "--log-level", "warn"],
                          core=core)
    wait_port(gw_port, gateway, "gateway (real server)")
    gw = f"http://127.0.0.1:{gw_port}/mcp"
    post(gw, *list_tools_call())
    post(gw, *modern_call("sdk__echo", "warm"))
    nginx, nginx_port = sdk_nginx(procs, work, port, core)
    relay = start_relay(procs, relay_binary, f"relay-{tag}", port, core)
    return Case(name, 16, [
        # The direct target's CPU is the server's own per call: the yardstick for the gateway's.
        Target("direct", f"http://127.0.0.1:{port}/mcp", *modern_call("echo", "x" * 16), server_pid),
        *([Target("relay", relay[1], *modern_call("echo", "x" * 16), relay[0].pid)] if relay else []),
        Target("nginx", f"http://127.0.0.1:{nginx_port}/mcp", *modern_call("echo", "x" * 16), nginx.pid),
        Target("gateway", gw, *modern_call("sdk__echo", "x" * 16), gateway.pid),
    ], "a real MCP server (~600 µs/call); the direct row's CPU is the server's")


def sdk_nginx(procs: Procs, work: Path, port: int, core: str) -> tuple[subprocess.Popen, int]:
    """nginx tuned as for the other cases, in front of the Python SDK server on `port`: what a
    proxy that reads nothing of MCP costs there, beside the gateway. The client's `Host` is passed
    on (the SDK's DNS-rebinding check takes `127.0.0.1:*` only); replies are not buffered (the
    server may answer with an event stream). Pinned to `core`."""
    home = work / f"sdk-{core}"
    listen = free_port()
    conf = write_nginx(home, [
        "client_max_body_size 1m;", f"upstream sdk {{ server 127.0.0.1:{port}; {UPSTREAM_KEEPALIVE} }}",
        "proxy_http_version 1.1;", 'proxy_set_header Connection "";', "proxy_set_header Host $http_host;",
        f"server {{ listen 127.0.0.1:{listen}; location / {{ proxy_pass http://sdk; proxy_buffering off; }} }}"])
    nginx = procs.start(f"nginx-sdk-{core}", ["nginx", "-c", str(conf), "-p", str(home / "nginx")], core=core)
    wait_port(listen, nginx, "nginx in front of the Python SDK server")
    post(f"http://127.0.0.1:{listen}/mcp", *modern_call("echo", "warm"))
    return nginx, listen


def python_anchor_case(procs: Procs, work: Path, up: int, gateways: list[Target]) -> Case | None:
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
    return Case(f"Python anchor (mcp-hangar {PYTHON_HANGAR}), 16 conns", 16, [
        Target("direct", f"http://127.0.0.1:{up}/mcp", *modern_call("echo", "x" * 16), None),
        Target("python-hangar", url, body, headers, anchor.pid),
        *gateways,
    ], "the Python reference in HTTP mode, same upstream")


def contextforge_case(procs: Procs, work: Path, up: int, gateways: list[Target]) -> Case | None:
    """IBM ContextForge (PyPI `mcp-contextforge-gateway`) in front of the same fixed-reply upstream,
    registered through its admin API as a streamable-HTTP gateway; its tools are named
    `<gateway>-<tool>`. Settings as its documentation gives them for a local run, except two that
    would refuse the load itself: rate limiting (100 tool calls a minute by default) and the SSRF
    guard's refusal of loopback upstreams. Authentication is off, as it is for the gateway here.
    Skipped, with a note, when `HANGAR_BENCH_CONTEXTFORGE` (its `mcpgateway` command, which
    loadtest/run installs in a venv of its own) is not set."""
    cli = os.environ.get("HANGAR_BENCH_CONTEXTFORGE")
    if not cli or not Path(cli).exists():
        print("note: HANGAR_BENCH_CONTEXTFORGE is not set; the ContextForge case is skipped", file=sys.stderr)
        return None
    secret = os.urandom(24).hex()
    env = {
        "JWT_SECRET_KEY": secret, "AUTH_ENCRYPTION_SECRET": os.urandom(24).hex(),
        "PLATFORM_ADMIN_PASSWORD": "Bench-" + os.urandom(8).hex(), "AUTH_REQUIRED": "false",
        "DATABASE_URL": f"sqlite:///{work}/contextforge.db", "MCPGATEWAY_UI_ENABLED": "false",
        "MCPGATEWAY_ADMIN_API_ENABLED": "true", "LOG_LEVEL": "WARNING",
        "RATE_LIMITING_ENABLED": "false", "SSRF_ALLOW_LOCALHOST": "true",
    }
    port = free_port()
    forge = procs.start("contextforge", [cli, "--host", "127.0.0.1", "--port", str(port)], env=env)
    wait_port(port, forge, "ContextForge", timeout=180)
    token = subprocess.run([str(Path(cli).parent / "python"), "-m", "mcpgateway.utils.create_jwt_token",
                            "--username", "admin@example.com", "--admin", "--exp", "600", "--secret", secret],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **env}).stdout.split()[0]
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {token}"}
    registration = json.dumps({"name": "up", "url": f"http://127.0.0.1:{up}/mcp", "transport": "STREAMABLEHTTP"})
    req = urllib.request.Request(f"{base}/gateways", data=registration.encode(), method="POST",
                                 headers={"content-type": "application/json", **auth})
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"ContextForge refused the upstream ({r.status}): {r.read()[:500]!r}")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "up-echo", "arguments": {"text": "x" * 16}}}
    headers = {"mcp-protocol-version": LEGACY, **auth}  # it speaks the 2025 revisions only
    status, _, reply = post(f"{base}/mcp", body, headers)
    if status != 200 or json.loads(reply).get("result", {}).get("isError") is not False:
        raise SystemExit(f"ContextForge did not relay a call ({status}): {reply[:500]!r}")
    return Case(f"ContextForge ({CONTEXTFORGE}), 16 conns", 16, [
        Target("direct", f"http://127.0.0.1:{up}/mcp", *modern_call("echo", "x" * 16), None),
        Target("contextforge", f"{base}/mcp", body, headers, forge.pid),
        *gateways,
    ], "IBM ContextForge, same upstream")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3, help="per case and target (wrk takes whole seconds)")
    ap.add_argument("--no-real-server", action="store_true", help="skip the Python SDK server case")
    ap.add_argument("--gateway", type=Path, default=RELEASE / "mcp-hangar",
                    help="the gateway build under test (default: the release build; loadtest/run passes the "
                    "profile-guided one, target/pgo/release/mcp-hangar)")
    ap.add_argument("--baseline", type=Path, help="an A/B run: another mcp-hangar binary, loaded in the same "
                    "rounds with the same configuration and requests (target 'baseline')")
    ap.add_argument("--only", help="comma-separated parts of case names to run (and 'streams' for the open-stream "
                    "memory); all when not given")
    ap.add_argument("--report", default="results", help="file name (without extension) of the report in "
                    "loadtest/results (default: results)")
    args = ap.parse_args()
    # The processes run in the run's own directory.
    args.gateway = args.gateway.resolve()
    if args.baseline:
        args.baseline = args.baseline.resolve()
    for option, binary in (("--gateway", args.gateway), ("--baseline", args.baseline)):
        if binary and not os.access(binary, os.X_OK):
            raise SystemExit(f"{option} {binary}: not an executable")
    parts = [p.strip() for p in args.only.split(",") if p.strip()] if args.only else []

    def wanted(case: str) -> bool:
        return not parts or any(p in case for p in parts)
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
        cases, info = start_everything(procs, work, args.gateway, not args.no_real_server, args.baseline, wanted)
        if not cases and not wanted("streams"):
            raise SystemExit(f"--only {args.only}: no case matches")
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
        streams = stream_memory(info["gateway_url"], info["pids"]["gateway"]) if wanted("streams") else {}
        if streams and "baseline_url" in info:
            # The same streams held by the baseline build, after the gateway's were closed.
            streams["baseline"] = stream_memory(info["baseline_url"], info["pids"]["baseline"])
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


def display_path(path: Path) -> str:
    """`path` from the checkout's root when it is inside it (the report names no home directory)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(cases: list[Case], runs: dict, rss: dict, streams: dict, args) -> None:
    ab = args.baseline is not None
    lines = [f"Machine: {machine()}", "",
             f"{args.rounds} interleaved rounds of {args.seconds:g} s per case and target; medians. "
             "wrk on core 0, upstreams and the proxy under test on core 1 (the Python SDK server's "
             "\"proxies apart\" case: its proxies on core 0, beside wrk). CPU is the proxy process's "
             "user+system time per request (/proc/<pid>/stat); the user column is its user-space part, "
             "the rest is kernel time.", "",
             f"`gateway` is {display_path(args.gateway)}.", ""]
    if ab:
        lines += [f"A/B: `gateway` is this checkout's build, `baseline` is {args.baseline.name}, same "
                  "configuration and requests, loaded one after the other in every round.", ""]
    extra = " vs baseline: req/s | vs baseline: CPU |" if ab else ""
    lines += ["| case | target | req/s | p50 µs | p99 µs | CPU µs/req | of which user | vs nginx: req/s | vs nginx: CPU | vs direct: req/s | errors | load check |" + extra,
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if ab else "")]
    per_round_lines = ["", "Per-round gateway/nginx throughput ratios:", ""]
    ab_lines = ["", "Per-round gateway/baseline CPU-per-request ratios:", ""]
    summary = {}
    for case in cases:
        med = {}
        for t in case.targets:
            rs = runs[(case.name, t.name)]
            cpu = [r.cpu_us for r in rs if r.cpu_us is not None]
            user = [r.user_us for r in rs if r.user_us is not None]
            med[t.name] = {
                "rps": median([r.rps for r in rs]), "p50": median([r.p50_us for r in rs]),
                "p99": median([r.p99_us for r in rs]), "cpu": median(cpu) if cpu else None,
                "user": median(user) if user else None,
                "errors": sum(r.errors for r in rs),
                # Little's law: throughput × mean latency ≈ connections when the load was real.
                "little": median([r.rps * r.avg_us / 1e6 / case.connections for r in rs]),
            }
        summary[case.name] = med
        for name, m in med.items():
            vs_nginx = vs_cpu = vs_direct = ""
            if name in ("gateway", "baseline") and "nginx" in med:
                vs_nginx = f"{m['rps'] / med['nginx']['rps']:.2f}×"
                if m["cpu"] and med["nginx"]["cpu"]:
                    vs_cpu = f"{m['cpu'] / med['nginx']['cpu']:.2f}×"
            if name != "direct" and "direct" in med:
                vs_direct = f"{m['rps'] / med['direct']['rps']:.2f}×"
            cpu = f"{m['cpu']:.1f}" if m["cpu"] is not None else "–"
            user = f"{m['user']:.1f}" if m["user"] is not None else "–"
            row = (f"| {case.name} | {name} | {m['rps']:,.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {cpu} | {user} | "
                   f"{vs_nginx} | {vs_cpu} | {vs_direct} | {m['errors']} | {m['little']:.2f} |")
            if ab:
                vs_base = vs_base_cpu = ""
                if name == "gateway" and "baseline" in med:
                    vs_base = f"{m['rps'] / med['baseline']['rps']:.2f}×"
                    if m["cpu"] and med["baseline"]["cpu"]:
                        vs_base_cpu = f"{m['cpu'] / med['baseline']['cpu']:.2f}×"
                row += f" {vs_base} | {vs_base_cpu} |"
            lines.append(row)
        if "nginx" in med and "gateway" in med:
            ratios = [g.rps / n.rps for g, n in zip(runs[(case.name, "gateway")], runs[(case.name, "nginx")])]
            per_round_lines.append(f"- {case.name}: " + ", ".join(f"{r:.2f}" for r in ratios))
        if "baseline" in med:
            pairs = zip(runs[(case.name, "gateway")], runs[(case.name, "baseline")])
            ratios = [g.cpu_us / b.cpu_us for g, b in pairs if g.cpu_us and b.cpu_us]
            ab_lines.append(f"- {case.name}: " + ", ".join(f"{r:.2f}" for r in ratios))
    lines += per_round_lines
    if ab:
        lines += ab_lines
    lines += ["", "Peak RSS (KiB): " + ", ".join(f"{k} {v:,}" for k, v in sorted(rss.items()))]
    if streams:
        lines += ["", "Open streams: " + json.dumps(streams)]
    lines += ["", "Goals:", ""] + goals(summary, streams)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (OUT / f"{args.report}.md").write_text(text)
    (OUT / f"{args.report}.json").write_text(json.dumps({
        "machine": machine(), "rounds": args.rounds, "seconds": args.seconds, "summary": summary, "rss_kib": rss,
        "streams": streams, "baseline": str(args.baseline) if ab else None,
        "runs": {f"{c} / {t}": [r.__dict__ for r in rs] for (c, t), rs in runs.items()},
    }, indent=1))
    if args.report == "results":
        chart(summary)


def goals(s: dict, streams: dict) -> list[str]:
    """The goals table, for the cases the run measured."""
    out = ["| goal | target | measured | met |", "|---|---|---:|:-:|"]

    def row(goal: str, target: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}×") -> None:
        shown = fmt.format(value) if value is not None else "–"
        out.append(f"| {goal} | {target} | {shown} | {'yes' if ok else 'no' if ok is not None else '–'} |")

    def cpu_ratio(case: dict, a: str, b: str) -> float | None:
        return case[a]["cpu"] / case[b]["cpu"] if case[a]["cpu"] and case[b]["cpu"] else None

    if m := s.get("modern tools/call, 64 conns"):
        cpu = cpu_ratio(m, "gateway", "nginx")
        row("MCP-aware routing: CPU per request vs nginx", "≤ 1.0×", cpu, cpu is not None and cpu <= 1.0)
        thr = m["gateway"]["rps"] / m["nginx"]["rps"]
        row("MCP-aware routing: throughput vs nginx", "≥ 1.0×", thr, thr >= 1.0)
    if lg := s.get("legacy session tools/call, 64 conns"):
        lcpu = cpu_ratio(lg, "gateway", "nginx")
        row("Legacy-session routing: CPU per request vs nginx", "≤ 1.5×", lcpu, lcpu is not None and lcpu <= 1.5)
    for name, label in (("SSE replies, 64 conns", "SSE replies"), ("16 KiB body, 64 conns", "16 KiB arguments")):
        if c := s.get(name):
            r = cpu_ratio(c, "gateway", "nginx")
            row(f"{label}: CPU per request vs nginx", "≤ 1.3×", r, r is not None and r <= 1.3)
    if one := s.get("modern tools/call, 1 conn"):
        added = one["gateway"]["p50"] - one["direct"]["p50"]
        row("Added p50 latency at 1 connection", "≤ 20 µs", added, added <= 20, "{:.0f} µs")
        for other, label in (("nginx", "nginx"), ("relay", "a byte relay (the floor here)")):
            if other in one:
                row(f"Added p50 latency at 1 connection: {label}", "report",
                    one[other]["p50"] - one["direct"]["p50"], None, "{:.0f} µs")
    if (rl := s.get("rate limits in force, 64 conns")) and (r := cpu_ratio(rl, "gateway", "nginx")):
        row("Rate limits in force: CPU per request vs nginx's with limit_req", "report", r, None)
    if m:
        p99 = m["gateway"]["p99"] / m["nginx"]["p99"]
        row("p99 at 64 connections vs nginx", "≤ 1.0×", p99, p99 <= 1.0)
    sdk = "CPU per call in front of the Python SDK server vs the server's"
    if r := s.get("Python SDK server, 16 conns"):
        # The gateway's CPU per call against the server's own (measured on the direct target).
        share = cpu_ratio(r, "gateway", "direct")
        row(f"Gateway {sdk}", "≤ 5%", share * 100 if share is not None else None,
            share is not None and share <= 0.05, "{:.1f}%")
        # The same share for a proxy that reads nothing of MCP, and for one that reads nothing at
        # all: how low a hop can go here.
        for other, label in (("nginx", "nginx's"), ("relay", "A byte relay's (the floor here)")):
            if other in r and (share := cpu_ratio(r, other, "direct")) is not None:
                row(f"{label} {sdk}", "report", share * 100, None, "{:.1f}%")
        real = r["gateway"]["rps"] / r["direct"]["rps"]
        row("In front of the Python SDK server: throughput vs direct", "report", real, None)
    if r := s.get("Python SDK server, proxies apart, 16 conns"):
        # The same shares with the proxies off the server's core.
        for other, label in (("gateway", "Gateway's"), ("nginx", "nginx's"), ("relay", "A byte relay's")):
            if other in r and (share := cpu_ratio(r, other, "direct")) is not None:
                row(f"{label} {sdk}, proxies on another core", "report", share * 100, None, "{:.1f}%")
    for prefix, other, label in (("Python anchor", "python-hangar", "the Python anchor (mcp-hangar, PyPI)"),
                                 ("ContextForge", "contextforge", "ContextForge")):
        anchor = next((v for k, v in s.items() if k.startswith(prefix)), None)
        if anchor:
            row(f"Gateway throughput vs {label}", "report", anchor["gateway"]["rps"] / anchor[other]["rps"], None)
            if ratio := cpu_ratio(anchor, other, "gateway"):
                row(f"{label[0].upper() + label[1:]}: CPU per request vs the gateway's", "report", ratio, None)
    if "listen_streams" in streams:
        mib = (streams["listen_rss_kib"] - streams["idle_kib"]) / 1024
        row(f"{streams['listen_streams']:,} open subscriptions/listen streams: added RSS", "≤ 64 MiB", mib, mib <= 64, "{:.1f} MiB")
    if "get_streams" in streams:
        mib = (streams["get_rss_kib"] - streams["idle_kib"]) / 1024
        row(f"{streams['get_streams']:,} idle legacy GET streams: added RSS", "≤ 64 MiB", mib, mib <= 64, "{:.1f} MiB")
    base = streams.get("baseline") or {}
    for key, what in (("listen", "open subscriptions/listen streams"), ("get", "idle legacy GET streams")):
        if f"{key}_rss_kib" in base:
            mib = (base[f"{key}_rss_kib"] - base["idle_kib"]) / 1024
            row(f"{base[f'{key}_streams']:,} {what}: added RSS, baseline build", "report", mib, None, "{:.1f} MiB")
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
    targets = [t for t in ("direct", "relay", "nginx", "gateway") if any(t in summary[n] for n in names)]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(targets)
    for i, t in enumerate(targets):
        values = [summary[n][t]["rps"] if t in summary[n] else 0 for n in names]
        ax.bar([x + (i - (len(targets) - 1) / 2) * width for x in range(len(names))], values, width, label=t)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("requests/s (median)")
    ax.set_title("MCP Hangar vs nginx vs a byte relay vs direct, same machine, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "results.png", dpi=110)


if __name__ == "__main__":
    main()
