"""Live configuration under load: the gateway's configuration file is rewritten many times while
clients of both eras call tools without pause, then reloaded a thousand times in a loop.

Phase 1 (--rewrites over --seconds): each rewrite adds, removes or changes providers and the
members of a group. Callers (raw HTTP keep-alive, modern and legacy sessions) call two providers
that exist throughout: a remote one and a subprocess. Reported: calls made and failed (the goal is
none), how long after each write the added tool appeared and the removed one was gone (goal:
within 1 s), and whether the subprocess kept its process id.

Phase 2 (--reloads): the file alternates between two configurations and `registry_reload` is
called each time. Reported: the reload latency (read, validate, swap: the report's duration)
p50/p99, and the gateway's RSS and open descriptors at the start, midway and at the end (goal: back
to their start; no runtime, task or connection leaks).

    python loadtest/reload.py --gateway target/release/mcp-hangar --upstream target/release/hangar-upstream

Everything listens on 127.0.0.1. Results: loadtest/results/reload.md and reload.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, path: str = "/health/ready", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} not ready")


class Caller(threading.Thread):
    """Calls one tool in a loop on one keep-alive connection, in one era."""

    def __init__(self, port: int, tool: str, legacy: bool, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.tool, self.legacy, self.stop = port, tool, legacy, stop
        self.calls = 0
        self.failures: list[str] = []
        self.last = ""

    def post(self, conn: http.client.HTTPConnection, body: dict, headers: dict) -> tuple[int, dict, str]:
        conn.request("POST", "/mcp", body=json.dumps(body), headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers: dict = {}
        if self.legacy:
            init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "reload-load", "version": "1"}}}
            _, h, _ = self.post(conn, init, {})
            headers = {"Mcp-Session-Id": h["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        else:
            headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": self.tool}
        n = 0
        while not self.stop.is_set():
            n += 1
            params = {"name": self.tool, "arguments": {"text": "x"}}
            if not self.legacy:
                params["_meta"] = META
            try:
                status, h, body = self.post(conn, {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}, headers)
                data = next((l[5:].strip() for l in body.splitlines() if l.startswith("data:") and '"result"' in l), body) if h.get("content-type", "").startswith("text/event-stream") else body
                msg = json.loads(data)
                if status != 200 or "result" not in msg or msg["result"].get("isError"):
                    self.failures.append(f"{status} {body[:200]}")
                else:
                    self.last = msg["result"]["content"][0]["text"]
                self.calls += 1
            except Exception as e:  # noqa: BLE001 -- every failure is a finding
                self.failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def tool_call(port: int, name: str, args: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args, "_meta": META}}
    conn.request("POST", "/mcp", body=json.dumps(body), headers={"Content-Type": "application/json", "Accept": "application/json", "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name})
    return json.loads(conn.getresponse().read())


def tool_names(port: int) -> set[str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
    conn.request("POST", "/mcp", body=json.dumps(body), headers={"Content-Type": "application/json", "Accept": "application/json", "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    return {t["name"] for t in json.loads(conn.getresponse().read())["result"]["tools"]}


def config(up: int, upstream_bin: str, churn: list[str], group: list[str], timeout: int = 1) -> str:
    lines = [
        "providers:",
        f"  stable: {{mode: remote, endpoint: 'http://127.0.0.1:{up}/mcp'}}",
        f"  sub: {{mode: subprocess, command: ['{upstream_bin}', stdio], idle_ttl_s: 3600}}",
    ]
    lines += [f"  {c}: {{mode: remote, endpoint: 'http://127.0.0.1:{up}/mcp', health_check_timeout_s: {timeout}}}" for c in churn]
    if group:
        lines.append(f"  pool: {{mode: group, members: [{', '.join(group)}]}}")
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> float:
    tmp = path.with_name(".config.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return time.monotonic()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", default=str(ROOT / "target/release/mcp-hangar"))
    ap.add_argument("--upstream", default=str(ROOT / "target/release/hangar-upstream"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rewrites", type=int, default=50)
    ap.add_argument("--reloads", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "loadtest/results"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hangar-reload-"))
    up, gw = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    try:
        upstream = subprocess.Popen([args.upstream, "http", str(up)], stderr=subprocess.DEVNULL)
        procs.append(upstream)
        wait_ready(up, upstream, "/")
        path = work / "config.yaml"
        path.write_text(config(up, args.upstream, ["c0"], ["stable", "c0"]))
        log = open(work / "gateway.log", "wb")
        gateway = subprocess.Popen([args.gateway, "--http", "--port", str(gw), "--config", str(path), "--log-level", "warn"], stderr=log)
        procs.append(gateway)
        wait_ready(gw, gateway)
        pid_before = tool_call(gw, "sub__whoami", {})["result"]["content"][0]["text"]

        # Phase 1: rewrites under load.
        stop = threading.Event()
        callers = [Caller(gw, tool, legacy, stop) for tool in ["stable__echo", "sub__echo"] for legacy in (False, True) for _ in range(2)]
        for c in callers:
            c.start()
        time.sleep(0.5)
        latencies = []
        started = time.monotonic()
        for i in range(1, args.rewrites + 1):
            churn = [f"c{i}"] + ([f"c{i}b"] if i % 3 == 0 else [])
            group = ["stable", f"c{i}"] if i % 2 else ["stable"]
            written = write(path, config(up, args.upstream, churn, group, timeout=1 + i % 2))
            gone = {f"c{i - 1}__echo", f"c{i - 1}b__echo"}
            while True:
                names = tool_names(gw)
                if f"c{i}__echo" in names and not (gone & names):
                    latencies.append(time.monotonic() - written)
                    break
                if time.monotonic() - written > 10:
                    latencies.append(float("inf"))
                    break
                time.sleep(0.02)
            pause = started + args.seconds * i / args.rewrites - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        stop.set()
        for c in callers:
            c.join(30)
        calls = sum(c.calls for c in callers)
        failures = [f for c in callers for f in c.failures]
        pid_after = tool_call(gw, "sub__whoami", {})["result"]["content"][0]["text"]

        # Phase 2: reloads in a loop.
        configs = [config(up, args.upstream, ["a"], ["stable", "a"]), config(up, args.upstream, ["b"], ["stable"])]
        write(path, configs[1])
        time.sleep(1)
        tool_call(gw, "registry_reload", {})
        time.sleep(1)
        samples = [("start", rss_mib(gateway.pid), fds(gateway.pid))]
        durations = []
        for i in range(args.reloads):
            path.write_text(configs[i % 2])
            r = json.loads(tool_call(gw, "registry_reload", {})["result"]["content"][0]["text"])
            if r.get("status") in ("success", "unchanged"):
                durations.append(r["duration_ms"])
            if i + 1 == args.reloads // 2:
                samples.append(("midway", rss_mib(gateway.pid), fds(gateway.pid)))
        time.sleep(3)  # replaced runtimes drain and stop
        samples.append(("end", rss_mib(gateway.pid), fds(gateway.pid)))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    finite = [x for x in latencies if x != float("inf")]
    result = {
        "rewrites": args.rewrites,
        "seconds": args.seconds,
        "calls": calls,
        "failed_calls": len(failures),
        "failures_sample": failures[:5],
        "change_visible_s": {"p50": pct(finite, 0.5), "p99": pct(finite, 0.99), "max": max(latencies) if latencies else None},
        "subprocess_pid_kept": pid_before == pid_after,
        "reloads": len(durations),
        "reload_ms": {"p50": pct(durations, 0.5), "p99": pct(durations, 0.99), "max": max(durations) if durations else None},
        "rss_mib": {name: round(rss, 1) for name, rss, _ in samples},
        "fds": {name: n for name, _, n in samples},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reload.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Live configuration under load",
        "",
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. `loadtest/reload.py --seconds {args.seconds:g} --rewrites {args.rewrites} --reloads {args.reloads}`.",
        "",
        "| figure | goal | measured |",
        "|---|---|---|",
        f"| calls to providers present throughout, during {args.rewrites} rewrites in {args.seconds:g} s (both eras) | 0 failed | {len(failures)} failed of {calls} |",
        f"| write → added tool listed and removed one gone | ≤ 1 s | p50 {result['change_visible_s']['p50'] * 1000:.0f} ms, p99 {result['change_visible_s']['p99'] * 1000:.0f} ms |",
        f"| unchanged subprocess keeps its process | same pid | {'yes' if result['subprocess_pid_kept'] else 'no'} ({pid_before} → {pid_after}) |",
        f"| reload latency (read, validate, swap), {len(durations)} reloads | report | p50 {result['reload_ms']['p50']:.2f} ms, p99 {result['reload_ms']['p99']:.2f} ms |",
        f"| RSS start / midway / end | back to start | {' / '.join(f'{r:.1f}' for _, r, _ in samples)} MiB |",
        f"| open descriptors start / midway / end | back to start | {' / '.join(str(n) for _, _, n in samples)} |",
        "",
    ]
    (out / "reload.md").write_text("\n".join(md))
    print("\n".join(md))
    if failures:
        print("failures:", failures[:5], file=sys.stderr)
    ok = not failures and finite and max(latencies) < 1.0 and pid_before == pid_after
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
