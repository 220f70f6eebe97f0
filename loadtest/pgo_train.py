#!/usr/bin/env python3
"""The training run of a profile-guided build (`loadtest/pgo-build`): an instrumented gateway in
front of the fixed-reply upstreams (JSON and SSE), given a mix of what clients send, then
stopped so that it writes its profile.

The mix is wider than the load test's cases, so that the profile is of the gateway's work and
not of one benchmark: modern calls of several sizes, with and without `_meta`, a browser's
call (`Origin`), tool lists, legacy sessions (initialize, calls, lists), SSE replies, and the
errors a client can cause (unknown tools, bodies that are not JSON, a method header that the
body contradicts), from several connections at once, two of them over TLS (to a second gateway,
which has rate limits in force); the upstreams remote (JSON and SSE replies) and a subprocess.

    loadtest/pgo_train.py BINARY    # BINARY: the instrumented build; its profile goes to the
                                    # directory its -Cprofile-generate named
"""

from __future__ import annotations

import argparse
import itertools
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (LEGACY, MODERN, RATE_LIMITS, RELEASE, Procs, browser, free_port, list_tools_call,  # noqa: E402
                   modern_call, wait_port)
from instructions import Connection, post_bytes, request_bytes, start_upstreams  # noqa: E402

CONNECTIONS = 8
# Of them, to a second gateway whose listener is TLS.
TLS_CONNECTIONS = 2


def legacy_requests(conn: Connection, prefix: str) -> list[tuple[dict, dict]]:
    """A legacy session's requests (the session opened on `conn`)."""
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "train", "version": "1"}}}
    _, headers, _ = conn.exchange(request_bytes(init, {"mcp-protocol-version": LEGACY}, 0))
    session = {"mcp-protocol-version": LEGACY, "mcp-session-id": headers["mcp-session-id"]}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": f"{prefix}echo", "arguments": {"text": "legacy"}}}
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return [(call, session), (call, session), (listing, session)]


def mix(conn: Connection) -> list[tuple[dict, dict]]:
    """What one connection sends, round after round."""
    sized = [modern_call("up__echo", "x" * n) for n in (1, 16, 200, 2_000, 16_000)]
    bare = ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "up__echo", "arguments": {"text": "bare"}}},
            {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "up__echo"})
    unknown = modern_call("up__nothing", "x")
    contradicted = (modern_call("up__echo", "x")[0], {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"})
    return [*sized, *sized[:3], bare, browser(modern_call("up__echo", "x" * 16)),
            modern_call("sse__echo", "x" * 16), modern_call("sse__echo", "x" * 300),
            modern_call("local__echo", "x" * 16), modern_call("local__echo", "x" * 2_000),
            list_tools_call(), unknown, contradicted, *legacy_requests(conn, "up__"), *legacy_requests(conn, "local__")]


def not_json(conn: Connection) -> int:
    """Sends a body that is not JSON; its answer's HTTP status."""
    return conn.exchange(post_bytes(b"{not json", {"mcp-protocol-version": MODERN}))[0]


class TlsConnection(Connection):
    """A keep-alive connection over TLS (the gateway's certificate is not checked: it is the
    training's own)."""

    def __init__(self, port: int):
        super().__init__(port)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")


def client(conn: Connection, seconds: float, statuses: Counter) -> None:
    requests = mix(conn)
    deadline = time.monotonic() + seconds
    for rid in itertools.count(1):
        if time.monotonic() > deadline:
            break
        body, headers = requests[rid % len(requests)]
        status, _, _ = conn.exchange(request_bytes(body, headers, rid))
        statuses[status] += 1
        if rid % 97 == 0:
            statuses[not_json(conn)] += 1
    statuses["clients"] += 1


def self_signed(tmp: Path) -> str:
    """The TLS gateway's `server.tls`: a fresh self-signed certificate for 127.0.0.1."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return f'tls: {{cert_file: "{cert}", key_file: "{key}"}}'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", type=Path, help="the instrumented gateway")
    ap.add_argument("--seconds", type=float, default=20, help="how long the clients send")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hangar-pgo-") as tmp:
        work = Path(tmp)
        procs = Procs(work)
        try:
            up, up_sse = start_upstreams(procs)
            gateways = {}
            # The TLS gateway has rate limits in force (none reached): their path is trained too.
            for name, tls, limits in (("plain", "", ""), ("tls", self_signed(work), RATE_LIMITS)):
                port = free_port()
                conf = work / f"gateway-{name}.yaml"
                conf.write_text(f"""
server: {{port: {port}, {tls}}}
{limits}
providers:
  up: {{mode: remote, endpoint: "http://127.0.0.1:{up}/mcp"}}
  sse: {{mode: remote, endpoint: "http://127.0.0.1:{up_sse}/mcp"}}
  local: {{mode: subprocess, command: ["{RELEASE / 'hangar-upstream'}", "stdio"]}}
""")
                gateway = procs.start(f"gateway-{name}", [str(args.binary.resolve()), "--http", "--config", str(conf)],
                                      core="0,1")
                wait_port(port, gateway, f"the instrumented gateway ({name})", timeout=60)
                gateways[name] = (gateway, port)
            conns = [Connection(gateways["plain"][1]) for _ in range(CONNECTIONS - TLS_CONNECTIONS)]
            conns += [TlsConnection(gateways["tls"][1]) for _ in range(TLS_CONNECTIONS)]
            each = [Counter() for _ in conns]  # one per thread: `+=` on a shared one could lose counts
            threads = [threading.Thread(target=client, args=(conn, args.seconds, counts)) for conn, counts in zip(conns, each)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sum(each, Counter())
            if statuses.pop("clients", 0) != CONNECTIONS:
                raise SystemExit("a training client failed (see above)")
            # The mix is mostly calls that succeed; errors are a few of its kinds.
            if statuses[200] < 0.7 * sum(statuses.values()):
                raise SystemExit(f"the training mix did not get the answers it should: {dict(statuses)}")
            for name, (gateway, _) in gateways.items():
                gateway.send_signal(signal.SIGTERM)
                if (code := gateway.wait(60)) != 0:
                    raise SystemExit(f"the {name} gateway exited with {code}: "
                                     + (work / f"gateway-{name}.log").read_text()[-2000:])
            print(f"training: {sum(statuses.values()):,} requests from {CONNECTIONS} connections "
                  f"({TLS_CONNECTIONS} over TLS; HTTP statuses: {dict(sorted(statuses.items()))})")
        finally:
            procs.stop()


if __name__ == "__main__":
    main()
