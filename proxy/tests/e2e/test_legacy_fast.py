"""A legacy (2025-xx) session's calls on the fast path: re-addressed as bytes for a modern
upstream (the gateway's id for the client's, the modern `_meta` envelope spliced into the params)
and answered exactly as the slow path answers them. The same calls made by a client that prefers
SSE take the slow path (which opens its resumable stream at once), so the two are compared side
by side; the access log says which path each call took."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from mcp.client import Client

from conftest import text
from test_express import Reader, answer
from test_hardening import MODERN, messages, post

pytestmark = pytest.mark.anyio

FAST = "application/json, text/event-stream"  # a lone response as JSON: the fast path's clients
SLOW = "text/event-stream, application/json"  # a stream from the start: the slow path's
CAPABILITIES = {"roots": {"listChanged": True}}
CLIENT_INFO = {"name": "legacy \"raw\" client", "version": "1.2"}


class Session:
    """A raw legacy session that declared `CAPABILITIES` and `CLIENT_INFO`."""

    def __init__(self, port: int):
        self.port = port
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": CAPABILITIES, "clientInfo": CLIENT_INFO}}
        status, headers, _ = post(port, init, {"Accept": "application/json"})
        assert status == 200
        self.sid = headers["mcp-session-id"]
        post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, self.headers(FAST))

    def headers(self, accept: str) -> dict:
        return {"Mcp-Session-Id": self.sid, "MCP-Protocol-Version": "2025-11-25", "Accept": accept}

    def call(self, tool: str, arguments: dict, rid, accept: str = FAST, meta: dict | None = None):
        params = {"name": tool, "arguments": arguments, **({"_meta": meta} if meta else {})}
        status, headers, body = post(self.port, {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params},
                                     self.headers(accept))
        return status, headers, body

    def raw(self, tool: str, arguments: dict, rid) -> bytes:
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                           "params": {"name": tool, "arguments": arguments}}).encode()
        head = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {FAST}\r\n"
                f"MCP-Protocol-Version: 2025-11-25\r\nMcp-Session-Id: {self.sid}\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode() + body


@pytest.fixture
def gw(gateway_factory, fixture_url):
    gw = gateway_factory(f"""
observability: {{access_log: true}}
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
""")
    # The provider's era and tools learnt: calls to it may take the fast path.
    post(gw.port, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}},
         {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    return gw


def access(gw, count: int) -> list[str]:
    """The last `count` tools/call lines of the access log (waiting for them briefly)."""
    for _ in range(50):
        lines = [line for line in Path(gw.proc.log_path).read_text().splitlines()
                 if "mcp_hangar::access" in line and "tools/call" in line]
        if len(lines) >= count:
            return lines[-count:]
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} access lines")


def last_message(status: int, headers: dict, body: str) -> dict:
    assert status == 200, (status, body)
    return messages(body, headers.get("content-type", ""))[-1]


@pytest.mark.parametrize("meta", [None, {"progressToken": "p-1"}], ids=["json reply", "sse reply"])
async def test_the_upstream_hears_and_the_client_gets_what_the_slow_path_says(gw, meta):
    """Without a progress token the provider answers JSON (answered on the spot); with one it
    answers SSE (handed to the slow path's reply buffer). Either way: the envelope the slow path
    adds, the client's own `_meta` kept, the client's id back, no modern-only fields."""
    s = Session(gw.port)
    fast = last_message(*s.call("fx__request_meta", {}, "f\"1", FAST, meta))
    slow = last_message(*s.call("fx__request_meta", {}, "s\"1", SLOW, meta))
    assert [line.split("fast_path=")[1].split()[0] for line in access(gw, 2)] == ["true", "false"]
    assert fast["id"] == "f\"1" and slow["id"] == "s\"1"
    heard_fast = json.loads(fast["result"]["content"][0]["text"])
    heard_slow = json.loads(slow["result"]["content"][0]["text"])
    assert heard_fast["meta"] == heard_slow["meta"], (heard_fast, heard_slow)
    envelope = heard_fast["meta"]
    assert envelope["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert envelope["io.modelcontextprotocol/clientCapabilities"] == CAPABILITIES
    assert envelope["io.modelcontextprotocol/clientInfo"] == CLIENT_INFO
    assert envelope.get("progressToken") == (meta or {}).get("progressToken")
    assert str(heard_fast["id"]).isdigit(), "the upstream hears the gateway's id, not the client's"
    assert set(fast["result"]) == set(slow["result"]), (fast, slow)
    assert not {"resultType", "ttlMs", "cacheScope"} & set(fast["result"]), fast


async def test_ids_of_every_kind_come_back_as_sent(gw):
    s = Session(gw.port)
    for rid in (0, 7, -3, 12345678901234, "", "abc", "é \\u00e9 \" \\", "x" * 200):
        message = last_message(*s.call("fx__echo", {"text": f"id {rid!r}"}, rid))
        assert message["id"] == rid and message["result"]["content"][0]["text"] == f"id {rid!r}", message
    assert all("fast_path=true" in line for line in access(gw, 8))


async def test_tool_errors_and_refused_arguments_are_answered_as_the_slow_path_answers_them(gw):
    s = Session(gw.port)
    answers = {}
    for accept in (FAST, SLOW):
        failed = last_message(*s.call("fx__fail", {"message": "nope"}, 1, accept))
        refused = last_message(*s.call("fx__add", {"a": "not a number"}, 2, accept))
        answers[accept] = (failed, refused)
    # Arguments the tool's schema refuses always go the slow way, which says where they fail.
    assert [line.split("fast_path=")[1].split()[0] for line in access(gw, 4)] == ["true", "false", "false", "false"]
    assert answers[FAST] == answers[SLOW], answers
    failed, refused = answers[FAST]
    assert failed["id"] == 1 and failed["result"]["isError"] is True, failed
    assert refused["id"] == 2 and ("error" in refused or refused["result"].get("isError")), refused


async def test_progress_streams_with_event_ids_and_a_stream_resumes(gw):
    s = Session(gw.port)
    status, headers, body = s.call("fx__slow", {"seconds": 0.3}, 11, FAST, {"progressToken": "p-11"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream"), (headers, body)
    assert "fast_path=true" in access(gw, 1)[0]
    events = [e for e in body.replace("\r\n", "\n").split("\n\n") if e.strip()]
    ids = [line[4:] for e in events for line in e.split("\n") if line.startswith("id: ")]
    assert len(ids) == len(events), f"every event has an id: {events}"
    found = messages(body, headers["content-type"])
    assert [m.get("method") for m in found[:-1]] == ["notifications/progress"] * 10, found
    assert found[-1]["id"] == 11 and found[-1]["result"]["content"][0]["text"] == "slept 0.3", found
    assert "resultType" not in found[-1]["result"]
    # A client that lost the stream after the fifth event picks it up from there.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/mcp", headers={**s.headers("text/event-stream"), "Last-Event-ID": ids[5]})
    resumed = conn.getresponse()
    rest = messages(resumed.read().decode(), resumed.getheader("content-type"))
    conn.close()
    assert rest == found[5:], rest


async def test_a_cancelled_call_ends_upstream_and_gets_no_response(gw):
    s = Session(gw.port)
    tag = f"legacy-fast-{time.monotonic_ns()}"
    reply = {}
    caller = threading.Thread(target=lambda: reply.setdefault("r", s.call("fx__wait_for_cancel", {"tag": tag}, 21)))
    caller.start()
    time.sleep(1.0)
    status, _, _ = post(gw.port, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                  "params": {"requestId": 21, "reason": "test"}}, s.headers(FAST))
    assert status == 202
    caller.join(15)
    status, headers, body = reply["r"]
    assert status == 200 and messages(body, headers.get("content-type", "")) == [], (headers, body)
    assert "fast_path=true" in access(gw, 1)[0]
    async with Client(f"http://127.0.0.1:{gw.port}/mcp", mode=MODERN) as c:
        for _ in range(50):
            if tag in text(await c.call_tool("fx__cancellations", {})):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the upstream call was not cancelled")
    # The id is free again.
    assert last_message(*s.call("fx__echo", {"text": "again"}, 21))["result"]["content"][0]["text"] == "again"


async def test_pipelined_legacy_calls_on_one_connection_are_answered_in_order(gw):
    s = Session(gw.port)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    with sock:
        sock.sendall(b"".join(s.raw("fx__echo", {"text": f"p{i}"}, 30 + i) for i in range(3)))
        reader = Reader(sock)
        got = [answer(body, headers) for _, headers, body in (reader.response() for _ in range(3))]
    assert [(m["id"], m["result"]["content"][0]["text"]) for m in got] == [(30, "p0"), (31, "p1"), (32, "p2")], got
    assert all("fast_path=true" in line for line in access(gw, 3))
