"""The express path (the gateway reading a plain modern `tools/call` itself, without Pingora's
HTTP session) over the wire: raw HTTP/1.1 on kept-alive connections, where the bytes a client
sends arrive in any split, requests follow one another (or are pipelined), and requests the
express path declines are answered by the ordinary path on the same connection, byte-exactly as
if the express path did not exist."""

from __future__ import annotations

import glob
import json
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_hardening import META, MODERN, modern
from test_security import rate_limited

pytestmark = pytest.mark.anyio


def call(name: str, text: str, rid: int, *, header_name: str | None = None, extra: str = "") -> bytes:
    """A raw keep-alive modern `tools/call` of `name` (the Mcp-Name header says `header_name`)."""
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": name, "arguments": {"text": text}, "_meta": META}}).encode()
    head = ("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: {MODERN}\r\nMcp-Method: tools/call\r\nMcp-Name: {header_name or name}\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Reader:
    """Reads HTTP/1.1 responses off one socket, by their framing (length or chunked)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""
        self.head = ""  # the last response's head, as sent

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed with {self.buf[:200]!r} unread")
        self.buf += chunk

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        out, self.buf = self.buf.split(marker, 1)
        return out

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[int, dict[str, str], bytes]:
        head = self._until(b"\r\n\r\n").decode()
        self.head = head
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    return status, headers, body
                body += self._take(size)
                self._take(2)
        return status, headers, self._take(int(headers.get("content-length", "0")))


def answer(body: bytes, headers: dict[str, str]) -> dict:
    """The JSON-RPC message of a JSON or SSE reply."""
    if headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in body.decode().splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return json.loads(body)


@pytest.fixture
def gw(gateway_factory, fixture_url):
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n")
    modern(gw.port, "tools/list")  # the provider's era and tools learnt: calls take the fast path
    return gw


def connect(gw) -> tuple[socket.socket, Reader]:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    return s, Reader(s)


async def test_taken_and_declined_requests_share_one_connection(gw):
    s, r = connect(gw)
    with s:
        steps = [
            (call("fx__echo", "one", 1), 200, lambda m: m["result"]["content"][0]["text"] == "one"),
            # Declined after the body was read: the ordinary path answers from the same bytes.
            (call("fx__echo", "x", 2, header_name="fx__other"), 400, lambda m: m["error"]["code"] == -32020),
            (call("fx__nope", "x", 3), 200, lambda m: "error" in m or m["result"].get("isError")),
            (call("fx__echo", "two", 4), 200, lambda m: m["result"]["content"][0]["text"] == "two"),
            # From a browser: taken too, with the CORS fields.
            (call("fx__echo", "three", 5, extra="Origin: http://localhost\r\n"), 200,
             lambda m: m["result"]["content"][0]["text"] == "three"),
            (call("fx__echo", "four", 6), 200, lambda m: m["result"]["content"][0]["text"] == "four"),
        ]
        for i, (data, want, check) in enumerate(steps):
            s.sendall(data)
            status, headers, body = r.response()
            message = answer(body, headers)
            assert status == want and check(message), (i, status, headers, body)
            assert message["id"] == json.loads(data.split(b"\r\n\r\n", 1)[1])["id"], (i, message)
            assert headers.get("connection", "keep-alive").lower() == "keep-alive", (i, headers)
            if b"Origin:" in data:
                assert headers.get("access-control-allow-origin") == "http://localhost", headers


def by_express(head: str) -> bool:
    """Whether a response came from the express path, which writes its `date` field in lower
    case (Pingora's session writes `Date`)."""
    fields = head.split("\r\n")[1:]
    assert any(f.lower().startswith("date: ") for f in fields), head
    return any(f.startswith("date: ") for f in fields)


async def test_rate_limits_in_force_are_taken_once_on_the_express_path(gateway_factory, fixture_url):
    """With rate limits configured, plain calls still take the express path, and so do their
    refusals, answered as the MCP endpoint answers them (429, `Retry-After`, the JSON-RPC error
    naming the limit). A request the express path declines after taking its limits (a legacy
    call in a session that does not exist) is answered by Pingora's session without being
    charged again: every bucket counts each request once."""
    gw = gateway_factory(rate_limited(fixture_url, [(k, "[developer]") for k in "abw"]), "gateway-express-rates")
    modern(gw.port, "tools/list", headers={"X-API-Key": "w"})  # eras and tools learnt
    s, r = connect(gw)
    with s:
        def send(data: bytes) -> tuple[int, dict, bytes]:
            s.sendall(data)
            return r.response()

        def refused(result: tuple[int, dict, bytes], limit: str, rid: int) -> None:
            status, headers, body = result
            message = json.loads(body)
            assert status == 429 and int(headers["retry-after"]) >= 1, (status, headers)
            assert message["id"] == rid and message["error"]["code"] == -32016, message
            assert message["error"]["data"]["limit"] == limit, message
            assert by_express(r.head), r.head

        a, b = "X-API-Key: a\r\n", "X-API-Key: b\r\n"
        for rid in (1, 2):  # a: principal 1 and 2 of 5, fx__echo 1 and 2 of 2
            status, headers, body = send(call("fx__echo", f"a{rid}", rid, extra=a))
            assert status == 200 and answer(body, headers)["result"]["content"][0]["text"] == f"a{rid}", body
            assert by_express(r.head), r.head
        refused(send(call("fx__echo", "a3", 3, extra=a)), "principal_tool", 3)  # principal 3 of 5
        status, headers, body = send(call("scarce__echo", "a4", 4, extra=a))  # principal 4, scarce 1 of 1
        assert status == 200 and answer(body, headers)["result"]["content"][0]["text"] == "a4", body
        # Principal 5 of 5, taken by the express path, which then finds no such session.
        legacy = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                             "params": {"name": "fx__add", "arguments": {"a": 2, "b": 3}}}).encode()
        status, _, body = send(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n"
            b"Mcp-Session-Id: no-such-session\r\nX-API-Key: a\r\n"
            + f"Content-Length: {len(legacy)}\r\n\r\n".encode() + legacy)
        assert status == 404 and not by_express(r.head), (status, body)
        refused(send(call("fx__echo", "a6", 6, extra=a)), "principal", 6)
        refused(send(call("scarce__echo", "b1", 7, extra=b)), "provider", 7)  # everyone's bucket
        status, headers, body = send(call("fx__echo", "b2", 8, extra=b))
        assert status == 200 and answer(body, headers)["result"]["content"][0]["text"] == "b2", body
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/metrics", timeout=5) as m:
        metrics = m.read().decode()
    for limit in ("principal", "principal_tool", "provider"):
        assert f'mcp_hangar_rate_limited_total{{limit="{limit}"}} 1' in metrics, limit


async def test_a_gateway_on_one_core_runs_one_scheduler_thread(gateway_factory, fixture_url):
    """Allowed a single core, the gateway runs the current-thread scheduler (no worker threads),
    and calls on many connections at once, taken and declined ones, are all answered."""
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n", cores="0")
    modern(gw.port, "tools/list")
    threads = [Path(t, "comm").read_text().strip() for t in glob.glob(f"/proc/{gw.proc.proc.pid}/task/*")]
    assert threads and "hangar-worker" not in threads, threads

    def client(n: int) -> list[str]:
        s, r = connect(gw)
        texts = []
        with s:
            for i in range(5):
                declined = i == 2  # Mcp-Name disagrees with the body: the ordinary path's 400
                s.sendall(call("fx__echo", f"c{n}-{i}", i, header_name="fx__other" if declined else None))
                status, headers, body = r.response()
                message = answer(body, headers)
                texts.append("declined" if status == 400 else message["result"]["content"][0]["text"])
        return texts

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(16)))
    assert results == [[f"c{n}-0", f"c{n}-1", "declined", f"c{n}-3", f"c{n}-4"] for n in range(16)]


async def test_an_idle_gateway_runs_no_ticking_timer_thread(gateway_factory, fixture_url):
    """Requests taken by Pingora's HTTP session (a `tools/list`, a declined call) arm its read
    and write timeouts: those are tokio's timers, which wake only when one is due, not Pingora's
    timer thread, which would wake every 10 ms for the life of the process."""
    gw = gateway_factory(f"providers:\n  fx: {{mode: remote, endpoint: \"{fixture_url}\"}}\n")
    modern(gw.port, "tools/list")
    s, r = connect(gw)
    with s:
        s.sendall(call("fx__echo", "declined", 1, header_name="fx__other"))
        assert r.response()[0] == 400
        s.sendall(call("fx__echo", "express", 2))
        assert r.response()[0] == 200
    threads = [Path(t, "comm").read_text().strip() for t in glob.glob(f"/proc/{gw.proc.proc.pid}/task/*")]
    assert threads and "Timer thread" not in threads, threads


async def test_a_request_in_pieces_is_answered(gw):
    """Every byte in its own write, with pauses: the head and the body are put together."""
    s, r = connect(gw)
    with s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = call("fx__echo", "piecemeal", 9)
        split = data.index(b"\r\n\r\n") + 4
        for part in (data[:7], data[7:40], data[40:split - 1], data[split - 1:split + 3], data[split + 3:]):
            s.sendall(part)
            time.sleep(0.05)
        status, headers, body = r.response()
        assert status == 200 and answer(body, headers)["result"]["content"][0]["text"] == "piecemeal", body
        s.sendall(call("fx__echo", "after", 10))
        status, headers, body = r.response()
        assert answer(body, headers)["result"]["content"][0]["text"] == "after", body


async def test_pipelined_requests_are_answered_in_order(gw):
    """Requests sent back to back in one write (HTTP/1.1 pipelining) are answered one by one,
    in order, including one the express path declines between two it takes."""
    s, r = connect(gw)
    with s:
        s.sendall(call("fx__echo", "p1", 21) + call("fx__echo", "p2", 22, header_name="fx__other")
                  + call("fx__echo", "p3", 23))
        got = []
        for _ in range(3):
            status, headers, body = r.response()
            got.append((status, answer(body, headers)))
        assert [m["id"] for _, m in got] == [21, 22, 23], got
        assert got[0][1]["result"]["content"][0]["text"] == "p1"
        assert got[1][0] == 400 and got[1][1]["error"]["code"] == -32020
        assert got[2][1]["result"]["content"][0]["text"] == "p3"


async def test_a_request_pipelined_during_a_call_waits_its_turn(gw):
    """The next request arriving while a call runs is the client pipelining, not the client
    going away: the call is answered, then the next one (Pingora's session cancelled the call)."""
    s, r = connect(gw)
    with s:
        body = json.dumps({"jsonrpc": "2.0", "id": 41, "method": "tools/call",
                           "params": {"name": "fx__slow", "arguments": {"seconds": 0.5}, "_meta": META}}).encode()
        s.sendall(call("fx__echo", "x", 41).split(b"Content-Length")[0].replace(b"fx__echo", b"fx__slow")
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.15)
        s.sendall(call("fx__echo", "next", 42))
        status, headers, body = r.response()
        assert status == 200 and answer(body, headers)["result"]["content"][0]["text"] == "slept 0.5", body
        status, headers, body = r.response()
        assert answer(body, headers)["result"]["content"][0]["text"] == "next", body


async def test_a_client_that_closes_after_its_head_leaves_the_gateway_serving(gw):
    """A body cut short by a close, and a head cut short: no answer is owed, the gateway goes on."""
    for cut in (call("fx__echo", "x", 31)[:-5], call("fx__echo", "x", 32)[:50]):
        s, _ = connect(gw)
        s.sendall(cut)
        s.close()
    s, r = connect(gw)
    with s:
        s.sendall(call("fx__echo", "alive", 33))
        status, headers, body = r.response()
        assert answer(body, headers)["result"]["content"][0]["text"] == "alive", body


async def test_a_streamed_reply_keeps_every_event_and_the_connection(gw):
    """An SSE reply (progress, then the result) relayed by the express path: each event in
    order, the chunked body properly ended (its end goes out with the last piece), and the
    connection carries the next request."""
    s, r = connect(gw)
    with s:
        body = json.dumps({"jsonrpc": "2.0", "id": 51, "method": "tools/call",
                           "params": {"name": "fx__slow", "arguments": {"seconds": 0.2},
                                      "_meta": {**META, "progressToken": "p51"}}}).encode()
        s.sendall(call("fx__echo", "x", 51).split(b"Content-Length")[0].replace(b"fx__echo", b"fx__slow")
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, headers, raw = r.response()
        assert status == 200 and headers["content-type"].startswith("text/event-stream"), (headers, raw)
        events = [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]
        assert events[0]["method"] == "notifications/progress", events
        assert events[-1]["id"] == 51 and events[-1]["result"]["content"][0]["text"] == "slept 0.2", events
        s.sendall(call("fx__echo", "next", 52))
        status, headers, body = r.response()
        assert answer(body, headers)["result"]["content"][0]["text"] == "next", body


async def test_a_browser_call_takes_the_express_path_with_the_cors_fields(gw):
    """A call from an admitted origin is answered by the express path with the CORS fields the
    MCP endpoint gives every response to that origin (compared with a `tools/list` on the same
    connection, which Pingora's session answers), a JSON reply and a streamed one alike; an
    origin not admitted is refused by the MCP endpoint (403, no CORS field)."""
    origin = "Origin: http://localhost:5173\r\n"
    cors = ("access-control-allow-origin", "vary", "access-control-expose-headers")
    s, r = connect(gw)
    with s:
        listing = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}).encode()
        s.sendall(("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {MODERN}\r\n"
                   f"Mcp-Method: tools/list\r\n{origin}Content-Length: {len(listing)}\r\n\r\n").encode() + listing)
        status, headers, _ = r.response()
        assert status == 200 and not by_express(r.head), r.head
        expected = {name: headers.get(name) for name in cors}
        assert expected["access-control-allow-origin"] == "http://localhost:5173", headers
        assert "Mcp-Session-Id" in expected["access-control-expose-headers"], headers

        s.sendall(call("fx__echo", "from a page", 2, extra=origin))
        status, headers, body = r.response()
        assert status == 200 and answer(body, headers)["result"]["content"][0]["text"] == "from a page", body
        assert by_express(r.head) and {name: headers.get(name) for name in cors} == expected, r.head

        slow = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                           "params": {"name": "fx__slow", "arguments": {"seconds": 0.1},
                                      "_meta": {**META, "progressToken": "p3"}}}).encode()
        s.sendall(call("fx__slow", "x", 3, extra=origin).split(b"Content-Length")[0]
                  + f"Content-Length: {len(slow)}\r\n\r\n".encode() + slow)
        status, headers, body = r.response()
        assert status == 200 and headers["content-type"].startswith("text/event-stream"), (headers, body)
        assert answer(body, headers)["result"]["content"][0]["text"] == "slept 0.1", body
        assert by_express(r.head) and {name: headers.get(name) for name in cors} == expected, r.head

        s.sendall(call("fx__echo", "from elsewhere", 4, extra="Origin: https://evil.example\r\n"))
        status, headers, body = r.response()
        assert status == 403 and not by_express(r.head), (status, body)
        assert not any(name.startswith("access-control-") for name in headers), headers


async def test_replies_larger_than_one_coalesced_write_arrive_whole(gw):
    """Replies past the size the express path copies into one write (16 KiB) go out after their
    head or chunk size line: byte for byte, and the connection carries the next request."""
    s, r = connect(gw)
    with s:
        for rid, size in ((61, 40_000), (62, 16 << 10), (63, 300_000)):
            text = "".join(chr(ord("a") + i % 26) for i in range(size))
            s.sendall(call("fx__echo", text, rid))
            status, headers, body = r.response()
            got = answer(body, headers)
            assert status == 200 and got["id"] == rid, (status, headers, body[:200])
            assert got["result"]["content"][0]["text"] == text, (rid, len(body))
        # A streamed reply: progress, then a large last event.
        pad = 300_000
        body = json.dumps({"jsonrpc": "2.0", "id": 64, "method": "tools/call",
                           "params": {"name": "fx__slow", "arguments": {"seconds": 0.05, "pad": pad},
                                      "_meta": {**META, "progressToken": "p64"}}}).encode()
        s.sendall(call("fx__echo", "x", 64).split(b"Content-Length")[0].replace(b"fx__echo", b"fx__slow")
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, headers, raw = r.response()
        assert status == 200 and headers["content-type"].startswith("text/event-stream"), (headers, raw[:200])
        events = [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]
        assert events[0]["method"] == "notifications/progress", events[0]
        text = events[-1]["result"]["content"][0]["text"]
        assert text == "slept 0.05" + "".join(chr(ord("a") + i % 26) for i in range(pad)), len(text)
        s.sendall(call("fx__echo", "next", 65))
        status, headers, body = r.response()
        assert answer(body, headers)["result"]["content"][0]["text"] == "next", body
