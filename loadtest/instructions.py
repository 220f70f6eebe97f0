#!/usr/bin/env python3
"""Instructions per request of the gateway, counted by callgrind: a figure that does not move
with the machine's load, for A/B comparisons finer than `bench.py`'s timing can tell apart on a
shared machine (its CPU-per-request figures move by about ±7% between two runs of one binary).

Each build runs under `valgrind --tool=callgrind` in front of the fixed-reply upstream. For
every case, after a warm-up, the counters are zeroed, `--requests` requests are sent one after
the other on one keep-alive connection, and the counters dumped (`callgrind_control`): the
instructions executed in all of the gateway's threads, divided by the requests. Reported as a
table per case and build, and the ratio of each build to the first.

    loadtest/instructions.py target/release/mcp-hangar /tmp/mcp-hangar-before
    loadtest/instructions.py --requests 2000 --only legacy BINARY...

`--nginx` adds nginx (one worker, the load test's configuration) in front of the same
upstreams, counted the same way, as the reference: its instructions are user space only, like
the gateway's, which is where the two differ (their kernel time per request is about the same,
see the "of which user" column of `bench.py`'s report).

Needs valgrind (Debian's `valgrind`) and a release build of `hangar-upstream`; everything
listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (LEGACY, MODERN, RELEASE, Procs, free_port, modern_call, wait_port,  # noqa: E402
                   write_nginx_conf)

CASES = ("modern", "legacy", "16 KiB", "SSE")


def request_bytes(body: dict, headers: dict, rid: int) -> bytes:
    return post_bytes(json.dumps({**body, "id": rid}).encode(), headers)


def post_bytes(data: bytes, headers: dict) -> bytes:
    """A POST of `data` to /mcp with `headers` besides the usual ones, as it goes on the wire."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\n{head}Content-Length: {len(data)}\r\n\r\n").encode() + data


class Connection:
    """One keep-alive connection, reading each response by its framing."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit(f"the gateway closed the connection ({self.buf[:200]!r})")
            self.buf += chunk
        out, self.buf = self.buf.split(marker, 1)
        return out

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def exchange(self, data: bytes) -> tuple[int, dict, bytes]:
        self.sock.sendall(data)
        lines = self._until(b"\r\n\r\n").decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                body += self._take(size)
                self._take(2)
            self._until(b"\r\n")
        else:
            body = self._take(int(headers.get("content-length", "0")))
        return int(lines[0].split()[1]), headers, body


def legacy_session(conn: Connection) -> str:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
    _, headers, _ = conn.exchange(request_bytes(init, {"mcp-protocol-version": LEGACY}, 0))
    return headers["mcp-session-id"]


def cases(conn: Connection, prefix: str = "up__", sse_prefix: str = "sse__") -> dict[str, tuple[dict, dict]]:
    sid = legacy_session(conn)
    legacy = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": f"{prefix}echo", "arguments": {"text": "x" * 16}}}
    return {
        "modern": modern_call(f"{prefix}echo", "x" * 16),
        "legacy": (legacy, {"mcp-protocol-version": LEGACY, "mcp-session-id": sid}),
        "16 KiB": modern_call(f"{prefix}echo", "x" * 16_000),
        "SSE": modern_call(f"{sse_prefix}echo", "x" * 16),
    }


def instructions(dump_dir: Path, pid: int, port: int, label: str) -> int:
    """Dumps the counters of process `pid`: the instructions since they were last zeroed.
    Valgrind carries out the request when one of the process's threads next runs, so an idle
    gateway is woken by a health probe (a few thousand instructions) until the dump is there."""
    before = set(dump_dir.iterdir())
    hint = re.sub(r"\W+", "-", label)
    asked = subprocess.run(["callgrind_control", f"--dump={hint}", str(pid)], check=True,
                           capture_output=True, text=True, timeout=120)
    for attempt in range(600):
        text = "".join(p.read_text(errors="replace") for p in set(dump_dir.iterdir()) - before)
        if totals := re.findall(r"^summary:\s+(\d+)", text, re.M):
            return sum(int(t) for t in totals)
        if attempt % 5 == 4:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as probe:
                probe.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                probe.recv(4096)
        time.sleep(0.2)
    listing = ", ".join(f"{p.name} ({p.stat().st_size} B)" for p in sorted(dump_dir.iterdir()))
    raise SystemExit(f"no callgrind dump appeared for {label} in {dump_dir}: {listing}; {asked.stdout}{asked.stderr}")


def count(proxy: subprocess.Popen, dumps: Path, port: int, conns: dict[str, Connection],
          per_case: dict[str, tuple[dict, dict]], wanted: list[str], requests: int, label: str) -> dict[str, float]:
    """Instructions per request of `proxy` (under callgrind, dumping to `dumps`) in each wanted
    case, sent on that case's connection."""
    out = {}
    for name in wanted:
        conn = conns[name]
        body, headers = per_case[name]
        for rid in range(1, 51):  # warm-up: eras learnt, pools filled, tool lists fetched
            status, _, reply = conn.exchange(request_bytes(body, headers, rid))
            if status != 200:
                raise SystemExit(f"{label}: {name}: HTTP {status}: {reply[:300]!r}")
        time.sleep(1)
        subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, capture_output=True, timeout=120)
        for rid in range(1000, 1000 + requests):
            conn.exchange(request_bytes(body, headers, rid))
        out[name] = instructions(dumps, proxy.pid, port, name) / requests
        print(f"{label}: {name}: {out[name]:,.0f} instructions per request", flush=True)
    return out


def start_upstreams(procs: Procs) -> tuple[int, int]:
    up, up_sse = free_port(), free_port()
    for port, extra in ((up, []), (up_sse, ["sse"])):
        p = procs.start(f"upstream-{port}", [str(RELEASE / "hangar-upstream"), "http", str(port), *extra])
        wait_port(port, p, "upstream")
    return up, up_sse


class Where:
    """How a process is counted: the CPUs it may run on, and whether callgrind keeps costs per
    instruction (for a look at one function's lines) or only per function."""

    def __init__(self, cores: str, by_line: bool):
        self.cores = cores
        self.callgrind = ["valgrind", "--tool=callgrind", f"--dump-instr={'yes' if by_line else 'no'}", "--dump-line=no"]


def measure_nginx(wanted: list[str], requests: int, work: Path, where: Where) -> dict[str, float]:
    """The same cases through nginx configured as in the load test (the SSE upstream on a port
    of its own, tools without the gateway's prefixes)."""
    procs = Procs(work)
    try:
        up, up_sse = start_upstreams(procs)
        json_port, sse_port = free_port(), free_port()
        conf = write_nginx_conf(work, up, up_sse, {"json": json_port, "sse": sse_port})
        dumps = work / "callgrind-nginx"
        dumps.mkdir()
        nginx = procs.start("nginx", [*where.callgrind, f"--callgrind-out-file={dumps}/out.%p", "nginx", "-c",
                                      str(conf), "-p", str(work / "nginx")], core=where.cores)
        wait_port(json_port, nginx, "nginx under callgrind", timeout=300)
        json_conn, sse_conn = Connection(json_port), Connection(sse_port)
        conns = {name: sse_conn if name == "SSE" else json_conn for name in wanted}
        return count(nginx, dumps, json_port, conns, cases(json_conn, "", ""), wanted, requests, "nginx")
    finally:
        procs.stop()


def measure(binary: Path, wanted: list[str], requests: int, work: Path, where: Where) -> dict[str, float]:
    procs = Procs(work)
    try:
        up, up_sse = start_upstreams(procs)
        gw = free_port()
        conf = work / f"gateway-{gw}.yaml"
        conf.write_text(f"""
server: {{port: {gw}}}
providers:
  up: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp"}}
  sse: {{mode: remote, endpoint: "http://127.0.0.1:{up_sse}/mcp"}}
""")
        dumps = work / f"callgrind-{gw}"
        dumps.mkdir()
        gateway = procs.start(f"gateway-{gw}", [
            *where.callgrind, f"--callgrind-out-file={dumps}/out.%p", str(binary), "--http", "--config", str(conf)],
            core=where.cores)
        wait_port(gw, gateway, f"{binary} under callgrind", timeout=300)
        conn = Connection(gw)
        return count(gateway, dumps, gw, {name: conn for name in wanted}, cases(conn), wanted, requests, str(binary))
    finally:
        procs.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", type=Path, help="gateway builds; the first is the one others compare to")
    ap.add_argument("--requests", type=int, default=1000, help="requests counted per case (after 50 of warm-up)")
    ap.add_argument("--only", help="comma-separated cases: " + ", ".join(CASES))
    ap.add_argument("--keep", type=Path, help="copy the callgrind dumps here (for callgrind_report.py)")
    ap.add_argument("--nginx", action="store_true", help="count nginx in front of the same upstreams too, as the reference")
    ap.add_argument("--cores", default="0,1",
                    help="CPUs the gateway (and nginx) may run on; `1` counts a one-core gateway, as the load test runs it")
    ap.add_argument("--by-line", action="store_true", help="dump costs per instruction too (callgrind's --dump-instr)")
    args = ap.parse_args()
    where = Where(args.cores, args.by_line)
    wanted = [c for c in CASES if not args.only or any(w.strip().lower() in c.lower() for w in args.only.split(","))]
    with tempfile.TemporaryDirectory(prefix="hangar-instr-") as tmp:
        results = [measure(b.resolve(), wanted, args.requests, Path(tmp), where) for b in args.binaries]
        reference = measure_nginx(wanted, args.requests, Path(tmp), where) if args.nginx else None
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in Path(tmp).glob("callgrind-*/out.*"):
                shutil.copy(dump, args.keep / f"{dump.parent.name}.{dump.name}")
    print("\n| case | " + " | ".join(str(b) for b in args.binaries) + (" | nginx (first build ÷ nginx)" if reference else "") + " |")
    print("|---|" + "---:|" * (len(args.binaries) + bool(reference)))
    for name in wanted:
        first = results[0][name]
        cells = [f"{r[name]:,.0f}" + ("" if i == 0 else f" ({r[name] / first:.2f}×)") for i, r in enumerate(results)]
        if reference:
            cells.append(f"{reference[name]:,.0f} ({first / reference[name]:.2f}×)")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
