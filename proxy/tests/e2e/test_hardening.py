"""Hostile clients and broken servers, over the wire: each defect the hardening review found has a
test here that failed before its fix. Raw HTTP where a well-behaved client (the SDK) cannot send
the bad input; the official SDK client where a real client is meant.

The bad-input corpus at the end sends every class of malformed request in both eras and checks a
clean 4xx or JSON-RPC error for each, no call reaching the provider, no panic in the gateway's log,
and bounded memory.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from conftest import LOGS, Proc, free_port, start_fixture, text, wait_port

pytestmark = pytest.mark.anyio

HOSTILE = Path(__file__).resolve().parent / "peers" / "hostile_server.py"
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def post(port, body, headers=None, timeout=30):
    """POSTs `body` (a dict is sent as JSON) to /mcp; returns (status, headers, text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    conn.request("POST", "/mcp", body=data, headers={"Content-Type": "application/json",
                                                     "Accept": "application/json, text/event-stream",
                                                     **(headers or {})})
    r = conn.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace"))
    conn.close()
    return out


def modern(port, method, params=None, name=None, rid=1, headers=None, accept=None):
    h = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    if accept:
        h["Accept"] = accept
    h.update(headers or {})
    params = {**(params or {}), "_meta": {**META, **((params or {}).get("_meta") or {})}}
    return post(port, {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}, h)


def messages(body: str, content_type: str):
    """The JSON-RPC messages of a reply, JSON or SSE."""
    if content_type.startswith("text/event-stream"):
        out = []
        for event in body.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(l[5:].lstrip() for l in event.split("\n") if l.startswith("data:"))
            if data.strip():
                try:
                    out.append(json.loads(data))
                except json.JSONDecodeError:
                    out.append({"unparsable": data})
        return out
    return [json.loads(body)] if body.strip() else []


class LegacySession:
    """A raw legacy (2025-11-25) session."""

    def __init__(self, port):
        self.port = port
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
        status, headers, _ = post(port, init, {"Accept": "application/json"})
        assert status == 200
        self.sid = headers["mcp-session-id"]
        post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, self.headers())

    def headers(self, accept="application/json"):
        return {"Mcp-Session-Id": self.sid, "MCP-Protocol-Version": "2025-11-25", "Accept": accept}

    def request(self, method, params, rid=1, accept="application/json"):
        return post(self.port, {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}, self.headers(accept))


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.fixture
def counted_fixture():
    """A fixture server of its own, so its request counts belong to one test."""
    proc, port = start_fixture("fxcount")
    yield port
    proc.stop()


def fixture_counts(port) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/requests", timeout=5) as r:
        return json.loads(r.read())


async def test_an_invalid_trace_context_never_counts_against_the_provider(gateway_factory, counted_fixture):
    gw = gateway_factory(f"""
providers:
  fx:
    mode: remote
    endpoint: http://127.0.0.1:{counted_fixture}/mcp
    max_consecutive_failures: 3
""")
    bad = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nx-evil: 1",
           "tracestate": "a=b\u007f", "baggage": "k=v\u0000"}
    legacy = LegacySession(gw.port)
    for i in range(8):
        status, h, body = modern(gw.port, "tools/call", {"name": "fx__echo", "arguments": {"text": f"m{i}"}, "_meta": bad},
                                 name="fx__echo", rid=i, headers={"traceparent": "00-not-a-trace-context", "tracestate": "==="})
        assert status == 200 and messages(body, h["content-type"])[-1]["result"]["content"][0]["text"] == f"m{i}", body
        status, h, body = legacy.request("tools/call", {"name": "fx__echo", "arguments": {"text": f"l{i}"}, "_meta": bad}, rid=i + 100)
        assert status == 200, body
        assert messages(body, h["content-type"])[-1]["result"]["content"][0]["text"] == f"l{i}", body
    async with Client(gw.url, mode=MODERN) as c:
        details = json.loads(text(await c.call_tool("registry_details", {"provider": "fx"})))
    assert details["state"] == "READY", details
    assert details["circuit"] == "closed" and details["consecutive_failures"] == 0, details


async def test_the_audit_trail_never_shows_a_session_id(gateway_factory, fixture_url):
    audit = LOGS / f"audit-hardening-{free_port()}.jsonl"
    gw = gateway_factory(f"""
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
observability:
  audit: {{path: "{audit}"}}
""")
    legacy = LegacySession(gw.port)
    status, _, body = legacy.request("tools/call", {"name": "fx__echo", "arguments": {"text": "hi"}})
    assert status == 200, body
    status, _, body = legacy.request("tools/call", {"name": "registry_audit", "arguments": {"type": "tool_call"}}, rid=2)
    records = json.loads(json.loads(body)["result"]["content"][0]["text"])["records"]
    callers = {r["caller"] for r in records}
    assert any(c.startswith("session:") for c in callers), records
    assert legacy.sid not in body, "the session id is the session's credential"
    assert legacy.sid not in audit.read_text()


@pytest.fixture
def hostile_port():
    port = free_port()
    proc = Proc(f"hostile-{port}", [sys.executable, str(HOSTILE), "http", str(port)])
    wait_port(port, proc.proc, "hostile server")
    yield port
    proc.stop()


@pytest.mark.parametrize("tool,why", [
    ("wrong_id", "answers id 999999"),
    ("bad_json", "not valid JSON-RPC"),
    ("not_rpc", "not valid JSON-RPC"),
    ("sse_no_response", "ended before the response"),
    ("silent_sse", ""),
])
async def test_the_fast_path_never_relays_a_broken_reply_as_an_answer(gateway_factory, hostile_port, tool, why):
    gw = gateway_factory(f"""
server:
  limits: {{idle_timeout_s: 1}}
providers:
  bad:
    mode: remote
    endpoint: http://127.0.0.1:{hostile_port}/mcp
    max_consecutive_failures: 100
""")
    status, h, body = modern(gw.port, "tools/list")
    assert status == 200 and "bad__good" in body, body
    status, h, body = modern(gw.port, "tools/call", {"name": "bad__good", "arguments": {}}, name="bad__good", rid=6)
    assert messages(body, h["content-type"])[-1]["result"]["content"][0]["text"] == "fine", body
    status, h, body = modern(gw.port, "tools/call", {"name": f"bad__{tool}", "arguments": {}}, name=f"bad__{tool}", rid=7)
    last = messages(body, h.get("content-type", ""))[-1]
    assert last.get("id") == 7, body
    assert last["error"]["code"] in (-32012, -32011, -32010), body
    assert why in last["error"]["message"], body
    log = Path(gw.proc.log_path).read_text()
    assert "fast_path" not in log or "panicked" not in log


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_a_stream_of_keepalives_does_not_hold_a_call_past_its_deadline(gateway_factory, hostile_port, era):
    """Keep-alives and progress count as activity for the idle bound; call_timeout_s bounds the
    call itself: the client gets a timeout error with its id, and the upstream stream is closed."""
    hostile_log = LOGS / f"hostile-{hostile_port}.log"
    gw = gateway_factory(f"""
providers:
  bad:
    mode: remote
    endpoint: http://127.0.0.1:{hostile_port}/mcp
    call_timeout_s: 2
""")
    modern(gw.port, "tools/list")
    started = time.monotonic()
    if era == "modern":  # the fast path
        status, h, body = modern(gw.port, "tools/call", {"name": "bad__keepalive_sse", "arguments": {}}, name="bad__keepalive_sse", rid=9)
        last = messages(body, h.get("content-type", ""))[-1]
    else:  # the slow path, for a legacy session
        status, h, body = LegacySession(gw.port).request("tools/call", {"name": "bad__keepalive_sse", "arguments": {}}, rid=9)
        last = messages(body, h.get("content-type", ""))[-1]
    took = time.monotonic() - started
    assert last.get("id") == 9 and "call_timeout_s" in last["error"]["message"], last
    assert 1.9 < took < 6, took
    deadline = time.monotonic() + 5
    while "keepalive stream closed" not in hostile_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "keepalive stream closed" in hostile_log.read_text(), "the upstream stream was closed (a 2026-07-28 cancellation)"


async def test_an_http_sse_endpoint_event_cannot_send_credentials_elsewhere(gateway_factory):
    thief_port, sse_port = free_port(), free_port()
    loot = LOGS / f"thief-{thief_port}.jsonl"
    thief = Proc(f"thief-{thief_port}", [sys.executable, str(HOSTILE), "thief", str(thief_port), str(loot)])
    sse = Proc(f"hostile-sse-{sse_port}", [sys.executable, str(HOSTILE), "sse", str(sse_port), str(thief_port)])
    try:
        wait_port(thief_port, thief.proc, "thief")
        wait_port(sse_port, sse.proc, "hostile sse")
        gw = gateway_factory(f"""
providers:
  leaky:
    mode: remote
    transport: sse
    endpoint: http://127.0.0.1:{sse_port}/sse
    headers: {{Authorization: "Bearer s3cret"}}
""")
        async with Client(gw.url, mode=MODERN) as c:
            listed = await c.list_tools()
        unavailable = json.dumps((listed.meta or {}).get("io.mcp-hangar/unavailableProviders"))
        assert "origin" in unavailable, unavailable
        assert not loot.exists() or loot.read_text() == "", loot.read_text()
    finally:
        sse.stop()
        thief.stop()


async def test_unknown_uris_refresh_the_lists_at_most_once_a_second(gateway_factory, counted_fixture):
    gw = gateway_factory(f"""
providers:
  fx: {{mode: remote, endpoint: "http://127.0.0.1:{counted_fixture}/mcp"}}
""")
    before = fixture_counts(counted_fixture).get("resources/list", 0)
    started = time.monotonic()
    for i in range(30):
        status, _, body = modern(gw.port, "resources/read", {"uri": f"nothing://{i}"}, name=f"nothing://{i}", rid=i)
        assert json.loads(body)["error"]["code"] == -32602, body
    elapsed = time.monotonic() - started
    lists = fixture_counts(counted_fixture).get("resources/list", 0) - before
    assert lists <= int(elapsed) + 2, f"{lists} list refreshes in {elapsed:.1f}s for 30 unknown URIs"


async def test_a_draining_gateway_answers_503_until_its_listener_closes(gateway_factory, counted_fixture):
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"http://127.0.0.1:{counted_fixture}/mcp\"}}\n")
    port, proc = gw.port, gw.proc.proc
    modern(port, "tools/list")
    result = {}

    def slow_call():
        result["reply"] = modern(port, "tools/call", {"name": "fx__slow", "arguments": {"seconds": 3}}, name="fx__slow", rid=9)

    caller = threading.Thread(target=slow_call)
    caller.start()
    # The drain starts once the call is in flight: it has reached the upstream.
    deadline = time.monotonic() + 10
    while fixture_counts(counted_fixture).get("tools/call", 0) == 0:
        assert time.monotonic() < deadline, "the slow call never reached the upstream"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 2
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5).close()
        except urllib.error.HTTPError as ready:
            assert ready.code == 503, "a load balancer sees the drain, not a refused connection"
            break
        assert time.monotonic() < deadline, "readiness still says ready 2 s after SIGTERM"
        time.sleep(0.02)
    status, headers, body = modern(port, "tools/list", rid=10)
    assert status == 503 and headers.get("retry-after") == "1", body
    caller.join(20)
    status, h, body = result["reply"]
    assert status == 200 and "slept 3" in body, body
    assert proc.wait(15) == 0


async def test_legacy_request_ids_null_ids_and_unreadable_params(gateway_factory, fixture_url):
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n")
    legacy = LegacySession(gw.port)
    first = {}
    caller = threading.Thread(target=lambda: first.setdefault("r", legacy.request("tools/call", {"name": "fx__slow", "arguments": {"seconds": 1.5}}, rid=5)))
    caller.start()
    time.sleep(0.4)
    status, _, body = legacy.request("tools/call", {"name": "fx__echo", "arguments": {"text": "x"}}, rid=5)
    assert status == 400 and "already in use" in body, body
    caller.join(20)
    status, h, body = first["r"]
    assert status == 200 and "slept 1.5" in body, "the first request is kept"
    for era_headers in (legacy.headers(), {"MCP-Protocol-Version": MODERN, "Mcp-Method": "ping"}):
        status, _, body = post(gw.port, '{"jsonrpc":"2.0","id":null,"method":"ping"}', era_headers)
        assert status == 400 and json.loads(body)["error"]["code"] == -32600, body
    status, _, body = post(gw.port, '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fx__echo","arguments":{"text":"\\ud800"}}}', legacy.headers())
    error = json.loads(body)["error"]
    assert error["code"] == -32602 and "params cannot be read" in error["message"], body
    deep = "[" * 200 + "]" * 200
    status, _, body = post(gw.port, '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"fx__echo","arguments":{"text":' + deep + "}}}", legacy.headers())
    assert "params cannot be read" in json.loads(body)["error"]["message"], body


async def test_a_legacy_request_nobody_comes_back_for_is_cancelled(gateway_factory, fixture_url):
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n")
    legacy = LegacySession(gw.port)
    tag = f"orphan-{os.getpid()}-{free_port()}"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fx__wait_for_cancel", "arguments": {"tag": tag}}})
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/event-stream, application/json\r\n"
               f"Mcp-Session-Id: {legacy.sid}\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    s.settimeout(5)
    assert s.recv(4096).startswith(b"HTTP/1.1 200"), "the reply stream opened"
    s.close()  # gone, and never back with Last-Event-ID
    started = time.monotonic()
    seen = ""
    async with Client(gw.url, mode=MODERN) as c:
        with anyio.fail_after(30):
            while tag not in seen:
                await anyio.sleep(0.5)
                seen = text(await c.call_tool("fx__cancellations", {}))
    waited = time.monotonic() - started
    assert waited >= 8, f"cancelled after {waited:.1f}s: a client gets time to resume first"


async def test_a_json_only_client_gets_json(gateway_factory, fixture_url):
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n")
    modern(gw.port, "tools/list")
    # A progress token makes the provider answer with an SSE stream (progress, then the result).
    params = {"name": "fx__slow", "arguments": {"seconds": 0.2}, "_meta": {"progressToken": "p1"}}
    status, h, body = modern(gw.port, "tools/call", params, name="fx__slow", accept="application/json")
    assert status == 200 and h["content-type"].startswith("application/json"), (h, body)
    assert json.loads(body)["result"]["content"][0]["text"] == "slept 0.2"


def corpus(port: int, sid: str):
    """(what, raw request bytes, accepted statuses) for every class of bad input, both eras."""
    def req(body, headers, method="POST", path="/mcp"):
        if isinstance(body, str):
            body = body.encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        if method == "POST" and not any(k.lower() == "content-length" for k, _ in headers):
            head += f"Content-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + body

    json_ct = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
    m = lambda method, name=None: json_ct + [("MCP-Protocol-Version", MODERN), ("Mcp-Method", method)] + ([("Mcp-Name", name)] if name else [])
    legacy = json_ct + [("Mcp-Session-Id", sid), ("MCP-Protocol-Version", "2025-11-25")]
    call = lambda name, extra="": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{}%s}}' % (name, extra)
    meta = ',"_meta":' + json.dumps(META)
    deep = "[" * 5000 + "]" * 5000
    out = []
    for era, h in (("modern", m("tools/call", "fx__echo")), ("legacy", legacy)):
        out += [
            (f"{era}: malformed JSON", req('{"jsonrpc":"2.0","id":1,', h), {400}),
            (f"{era}: not UTF-8", req(b"\xff\xfe{}", h), {400}),
            (f"{era}: a batch", req('[{"jsonrpc":"2.0","id":1,"method":"ping"}]', h), {400}),
            (f"{era}: jsonrpc 1.0", req('{"jsonrpc":"1.0","id":1,"method":"tools/call"}', h), {400}),
            (f"{era}: id null", req('{"jsonrpc":"2.0","id":null,"method":"tools/call"}', h), {400}),
            (f"{era}: id object", req('{"jsonrpc":"2.0","id":{},"method":"tools/call"}', h), {400}),
            (f"{era}: method a number", req('{"jsonrpc":"2.0","id":1,"method":7}', h), {400}),
            (f"{era}: params an array", req('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}', h), {400}),
            (f"{era}: params null", req('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}', h), {400}),
            (f"{era}: nested 5000 deep", req('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope__x","arguments":{"a":' + deep + "}}}", h if era == "legacy" else m("tools/call", "nope__x")), {200, 400}),
            (f"{era}: lone surrogate", req(call("nope__x", ',"x":"\\ud800"' + (meta if era == "modern" else "")), h if era == "legacy" else m("tools/call", "nope__x")), {200, 400}),
            (f"{era}: unknown tool", req(call("nope__nope", meta if era == "modern" else ""), h if era == "legacy" else m("tools/call", "nope__nope")), {200, 400}),
            (f"{era}: traceparent with a control character (dropped; the call works)", req(call("registry_health", ',"_meta":{"traceparent":"00-\\u0000\\r\\n"}'), h if era == "legacy" else m("tools/call", "registry_health")), {200}),
            (f"{era}: unknown URI with a multi-byte character", req('{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"fixture://item/\u00e9/nope"%s}}' % (meta if era == "modern" else ""), h if era == "legacy" else m("resources/read", "=?base64?Zml4dHVyZTovL2l0ZW0vw6kvbm9wZQ==?=")), {200, 400}),
            (f"{era}: body over the limit", req(call("fx__echo", ',"pad":"%s"' % ("x" * (5 << 20))), h), {413}),
            (f"{era}: wrong content type", req(call("fx__echo"), [("Content-Type", "text/plain")] + h[1:]), {415}),
            (f"{era}: unacceptable Accept", req(call("fx__echo"), [h[0], ("Accept", "text/html")] + h[2:]), {406}),
            (f"{era}: bad Origin", req(call("fx__echo"), h + [("Origin", "http://evil.example")]), {403}),
            (f"{era}: conflicting duplicate headers", req(call("fx__echo"), h + [("MCP-Protocol-Version", "2025-06-18")]), {400}),
            (f"{era}: a header block over the limit", req(call("fx__echo"), h + [("X-Pad", "y" * (70 << 10))]), {400, 431}),
        ]
    out += [
        ("modern: Mcp-Name does not match the body", req(call("fx__echo", meta), m("tools/call", "fx__other")), {400}),
        ("modern: Mcp-Method does not match the body", req(call("fx__echo", meta), m("tools/list")), {400}),
        ("modern: unsupported version", req(call("fx__echo", meta), json_ct + [("MCP-Protocol-Version", "1999-01-01"), ("Mcp-Method", "tools/call")]), {400}),
        ("modern: a response from the client", req('{"jsonrpc":"2.0","id":1,"result":{}}', m("tools/call")), {400}),
        ("legacy: no session", req(call("fx__echo"), json_ct), {400}),
        ("legacy: unknown session", req(call("fx__echo"), json_ct + [("Mcp-Session-Id", "nope")]), {404}),
        ("legacy: GET without SSE", req(b"", [("Mcp-Session-Id", sid), ("Accept", "application/json")], "GET"), {406}),
        ("legacy: DELETE of an unknown session", req(b"", [("Mcp-Session-Id", "nope")], "DELETE"), {404}),
        ("a method the endpoint does not take", req(b"", [], "PUT"), {405}),
        ("garbage instead of HTTP", b"NOT HTTP AT ALL\r\n\r\n", {400}),
    ]
    return out


def send_raw(port: int, data: bytes) -> tuple[int, str]:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the gateway may answer (413, 431) and close before the whole request was sent
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks).decode("utf-8", "replace")
    status = int(raw.split(" ", 2)[1]) if raw.startswith("HTTP/1.1 ") else 0
    return status, raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in raw else ""


async def test_the_bad_input_corpus(gateway_factory, counted_fixture):
    gw = gateway_factory(f"""
providers:
  fx: {{mode: remote, endpoint: "http://127.0.0.1:{counted_fixture}/mcp"}}
""")
    legacy = LegacySession(gw.port)
    modern(gw.port, "tools/list")
    calls_before = fixture_counts(counted_fixture).get("tools/call", 0)
    rss_before = rss_mib(gw.proc.proc.pid)
    problems = []
    for _round in range(3):
        for what, data, statuses in corpus(gw.port, legacy.sid):
            status, body = send_raw(gw.port, data)
            if status not in statuses:
                problems.append(f"{what}: HTTP {status} (wanted {sorted(statuses)}): {body[:200]}")
                continue
            if status == 200 and "(dropped; the call works)" not in what:
                found = messages(body, "text/event-stream" if body.startswith(("event:", "id:", ":", "data:")) else "application/json")
                if not any("error" in m for m in found):
                    problems.append(f"{what}: HTTP 200 without a JSON-RPC error: {body[:200]}")
    assert not problems, "\n".join(problems)
    assert fixture_counts(counted_fixture).get("tools/call", 0) == calls_before, "bad input reached the provider"
    status, h, body = modern(gw.port, "tools/call", {"name": "fx__echo", "arguments": {"text": "still fine"}}, name="fx__echo")
    assert "still fine" in body, body
    assert rss_mib(gw.proc.proc.pid) < rss_before + 64, "memory stays bounded"
    log = Path(gw.proc.log_path).read_text()
    assert "panicked" not in log, log[-3000:]


async def test_a_json_only_legacy_client_gets_the_response_alone(gateway_factory, fixture_url):
    """Progress before the answer has no way to a client that takes JSON only: it gets the
    response, as JSON (it used to get an empty 200)."""
    gw = gateway_factory(f"providers:\n  fx:\n    mode: remote\n    endpoint: {fixture_url}\n")
    session = LegacySession(gw.port)
    status, h, body = session.request("tools/call", {"name": "fx__slow", "arguments": {"seconds": 0.3}, "_meta": {"progressToken": 4}}, rid=21)
    assert status == 200 and h["content-type"].startswith("application/json"), (status, h, body)
    reply = json.loads(body)
    assert reply["id"] == 21 and "result" in reply, body


async def test_a_sessions_get_stream_ends_with_the_session(gateway_factory, fixture_url):
    """A session's GET stream carries its messages (a tool list change here) and ends when the
    session does (a DELETE): it used to stay open until the client closed it."""
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n")
    legacy = LegacySession(gw.port)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall((f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
               f"Mcp-Session-Id: {legacy.sid}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n").encode())
    seen = s.recv(65536)
    assert seen.startswith(b"HTTP/1.1 200"), seen
    # Watching the provider (a subscription) brings its list changes to the gateway.
    status, _, body = legacy.request("resources/subscribe", {"uri": "fixture://static"}, rid=2)
    assert status == 200 and "error" not in json.loads(body), body
    status, _, body = legacy.request("tools/call", {"name": "fx__change_tools", "arguments": {}}, rid=3)
    assert status == 200 and "error" not in json.loads(body), body
    while b"notifications/tools/list_changed" not in seen:
        chunk = s.recv(65536)
        assert chunk, f"the stream ended before the message: {seen!r}"
        seen += chunk
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("DELETE", "/mcp", headers={"Mcp-Session-Id": legacy.sid, "MCP-Protocol-Version": "2025-11-25"})
    assert conn.getresponse().status == 200
    conn.close()
    ended = time.monotonic() + 5
    while not seen.endswith(b"0\r\n\r\n"):
        assert time.monotonic() < ended, f"the stream outlived its session: {seen[-200:]!r}"
        chunk = s.recv(65536)
        if not chunk:
            break
        seen += chunk
    s.close()
