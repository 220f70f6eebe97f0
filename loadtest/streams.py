#!/usr/bin/env python3
"""Opens many long-lived streams on a gateway and reports its RSS with them open.

    streams.py GATEWAY_URL GATEWAY_PID [COUNT]

First COUNT modern `subscriptions/listen` streams (each waits for its acknowledgment event), then,
after closing them, COUNT legacy sessions each with its GET stream open. Prints one JSON object.
Raw sockets on asyncio: a client library per stream would measure the client, not the gateway.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
PARALLEL = 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def request(path: str, host: str, method: str, headers: dict, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for h in header_lines:
        if ":" in h:
            k, v = h.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), headers


async def open_listen(url, i: int, held: list) -> None:
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "subscriptions/listen",
                       "params": {"notifications": {"toolsListChanged": True},
                                  "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                            "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
    writer.write(request(url.path, url.netloc, "POST", {
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}, body))
    status, _ = await read_head(reader)
    if status != 200:
        raise RuntimeError(f"listen answered {status}")
    await reader.readuntil(b"\n\n")  # the acknowledgment event
    held.append(writer)


async def open_get(url, held: list) -> None:
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    init = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": LEGACY, "capabilities": {},
                                  "clientInfo": {"name": "streams", "version": "1"}}}).encode()
    writer.write(request(url.path, url.netloc, "POST", {
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        "mcp-protocol-version": LEGACY}, init))
    status, headers = await read_head(reader)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    if status != 200 or "mcp-session-id" not in headers:
        raise RuntimeError(f"initialize answered {status} without a session: {body[:300]!r}")
    sid = headers["mcp-session-id"]
    writer.write(request(url.path, url.netloc, "GET", {
        "accept": "text/event-stream", "mcp-protocol-version": LEGACY, "mcp-session-id": sid}))
    status, _ = await read_head(reader)
    if status != 200:
        raise RuntimeError(f"GET answered {status}")
    held.append(writer)


async def open_many(make, count: int) -> list:
    held: list = []
    sem = asyncio.Semaphore(PARALLEL)

    async def one(i: int) -> None:
        async with sem:
            await make(i, held)

    await asyncio.gather(*(one(i) for i in range(count)))
    return held


async def close_all(held: list) -> None:
    for w in held:
        w.close()
    await asyncio.sleep(1)


async def main() -> None:
    url = urlparse(sys.argv[1])
    pid = int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    out = {}
    t = time.monotonic()
    held = await open_many(lambda i, h: open_listen(url, i, h), count)
    await asyncio.sleep(1)
    out.update(listen_streams=len(held), listen_rss_kib=rss_kib(pid), listen_open_s=round(time.monotonic() - t, 1))
    await close_all(held)
    t = time.monotonic()
    held = await open_many(lambda i, h: open_get(url, h), count)
    await asyncio.sleep(1)
    out.update(get_streams=len(held), get_rss_kib=rss_kib(pid), get_open_s=round(time.monotonic() - t, 1))
    await close_all(held)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
