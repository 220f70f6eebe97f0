"""Fixture MCP server for MCP Hangar's end-to-end tests, on the official Python SDK.

One server, both protocol eras: legacy (initialize, sessions, server-to-client requests
mid-call) and 2026-07-28 (stateless, MRTR `input_required` results), chosen per request by the
SDK. Usage:

    fixture_server.py http PORT [NAME]          streamable HTTP on 127.0.0.1:PORT/mcp (GET /requests:
                                                the JSON-RPC messages received, counted by method)
    fixture_server.py legacy-http PORT [NAME]   the same, refusing 2026-07-28 requests (a 2025-xx server)
    fixture_server.py sse PORT [NAME]           deprecated HTTP+SSE (GET /sse, POST /messages/)
    fixture_server.py stdio [NAME]              stdio

FIXTURE_DELAY_MS in the environment makes `whoami` that much slower (a slow group member).
"""

import asyncio
import json
import os
import sys
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp_types import CreateMessageResult, ListRootsResult, SamplingMessage, TextContent, ToolAnnotations
from pydantic import BaseModel

transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
port = int(sys.argv[2]) if transport != "stdio" and len(sys.argv) > 2 else 0
name = sys.argv[3] if transport != "stdio" and len(sys.argv) > 3 else (sys.argv[2] if transport == "stdio" and len(sys.argv) > 2 else "fixture")

mcp = MCPServer(name, instructions=f"Fixture server {name}")
delay = float(os.environ.get("FIXTURE_DELAY_MS", "0")) / 1000


@mcp.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def whoami(key: str = "") -> str:
    """Name and process id of this fixture (tells group members apart). Read-only: safe to retry.
    `key` is ignored (groups may hash on it)."""
    if delay:
        await asyncio.sleep(delay)
    return f"{name}:{os.getpid()}"


@mcp.tool()
def crash() -> str:
    """Exit the whole process at once (for crash-recovery tests)."""
    os._exit(3)


@mcp.tool()
def fail(message: str = "boom") -> str:
    """Always fails with a tool error."""
    raise ValueError(message)


@mcp.tool()
def trace_context(ctx: Context) -> str:
    """The W3C trace context this call arrived with, in `_meta` and in the HTTP headers (JSON)."""
    rc = ctx.request_context
    meta = dict((rc.params or {}).get("_meta") or {})
    request = getattr(rc, "request", None)
    headers = getattr(request, "headers", None)
    return json.dumps({
        "meta": {k: meta.get(k) for k in ("traceparent", "tracestate", "baggage")},
        "header": {k: headers.get(k) for k in ("traceparent", "tracestate")} if headers is not None else None,
    })


@mcp.tool()
def request_meta(ctx: Context) -> str:
    """The `_meta` this call arrived with, and the JSON-RPC id it was sent under (JSON)."""
    rc = ctx.request_context
    return json.dumps({"meta": dict((rc.params or {}).get("_meta") or {}), "id": ctx.request_id})


@mcp.tool()
def authorization(ctx: Context) -> str:
    """The Authorization header this call arrived with (empty when none)."""
    request = getattr(ctx.request_context, "request", None)
    headers = getattr(request, "headers", None)
    return (headers.get("authorization") if headers is not None else None) or ""


@mcp.tool()
async def slow(seconds: float, ctx: Context, pad: int = 0) -> str:
    """Sleep, reporting progress ten times; `pad` letters more in the answer make it large."""
    for i in range(10):
        await ctx.report_progress(i + 1, 10, f"step {i + 1}")
        await asyncio.sleep(seconds / 10)
    return f"slept {seconds}" + "".join(chr(ord("a") + i % 26) for i in range(pad))


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def env_var(name: str) -> str:
    """The value of environment variable `name` in this server's process (empty when unset)."""
    return os.environ.get(name, "")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def slow_read(seconds: float) -> str:
    """Sleep, then say who answered. Read-only: safe to retry on another member."""
    await asyncio.sleep(seconds)
    return f"{name}:{os.getpid()}"


@mcp.tool()
async def log_messages(count: int, ctx: Context) -> str:
    """Emit `count` log messages, then return."""
    for i in range(count):
        await ctx.info(f"log message {i}")
    return f"logged {count}"


class Person(BaseModel):
    name: str


async def ask_name() -> Elicit[Person]:
    return Elicit("What is your name?", Person)


@mcp.tool()
async def greet_user(person: Annotated[Person, Resolve(ask_name)]) -> str:
    """Ask the user for their name (elicitation), then greet them."""
    return f"Hello, {person.name}!"


async def ask_capital() -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text="What is the capital of France?"))],
        max_tokens=20,
    )


@mcp.tool()
async def ask_llm(answer: Annotated[CreateMessageResult, Resolve(ask_capital)]) -> str:
    """Ask the client's LLM a question (sampling) and return its answer."""
    content = answer.content
    return f"LLM said: {getattr(content, 'text', content)}"


async def get_roots() -> ListRoots:
    return ListRoots()


@mcp.tool()
async def show_roots(roots: Annotated[ListRootsResult, Resolve(get_roots)]) -> str:
    """List the client's roots."""
    return ",".join(str(r.uri) for r in roots.roots) or "(no roots)"


cancelled: list[str] = []


@mcp.tool()
async def wait_for_cancel(tag: str) -> str:
    """Wait up to 30 s; records `tag` if the call is cancelled meanwhile."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.append(tag)
        raise
    return "finished"


@mcp.tool()
def cancellations() -> str:
    """The tags of cancelled wait_for_cancel calls, comma-separated."""
    return ",".join(cancelled)


dynamic_tools: list[str] = []


@mcp.tool()
async def change_tools(ctx: Context) -> str:
    """Register one more tool and announce that the tool list changed."""
    name_ = f"dynamic_{len(dynamic_tools) + 1}"
    dynamic_tools.append(name_)
    mcp.add_tool(lambda: name_, name=name_, description="Added at run time")
    await ctx.notify_tools_changed()
    try:  # legacy sessions are told on the session itself
        await ctx.session.send_tool_list_changed()
    except Exception:
        pass
    return name_


@mcp.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Announce that a resource changed."""
    await ctx.notify_resource_updated(uri)
    try:
        await ctx.session.send_resource_updated(uri)
    except Exception:
        pass
    return f"touched {uri}"


@mcp.resource("fixture://static")
def static_resource() -> str:
    """A fixed text."""
    return f"static text from {name}"


@mcp.resource("fixture://item/{item_id}")
def item(item_id: str) -> str:
    """An item by id."""
    return f"item {item_id} from {name}"


@mcp.prompt()
def greeting(person: str) -> str:
    """A greeting prompt."""
    return f"Please greet {person} warmly."


def refuse_modern(app):
    """ASGI middleware: answers 2026-07-28 requests as a 2025-xx server does (400, unknown version)."""

    async def wrapped(scope, receive, send):
        headers = dict(scope.get("headers") or [])
        if scope["type"] == "http" and headers.get(b"mcp-protocol-version") == b"2026-07-28":
            body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Unsupported protocol version"}}'
            await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


def count_requests(app):
    """ASGI middleware: counts the JSON-RPC messages POSTed, by method (`response` for answers),
    and serves the counts at GET /requests, so tests can check what reached the server; serves
    the method and Authorization header of the last 500 requests at GET /authorizations
    (`GET` for a GET stream)."""
    counts: dict[str, int] = {}
    authorizations: list[dict] = []

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"] == "/requests":
            body = json.dumps(counts).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["method"] == "GET" and scope["path"] == "/authorizations":
            body = json.dumps(authorizations).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        authorization = dict(scope.get("headers") or []).get(b"authorization", b"").decode()
        del authorizations[:-499]
        if scope["method"] != "POST":
            authorizations.append({"method": scope["method"], "authorization": authorization})
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        msg = json.loads(b"".join(chunks))
                        key = msg.get("method") or "response"
                    except (ValueError, AttributeError):
                        key = "invalid"
                    counts[key] = counts.get(key, 0) + 1
                    authorizations.append({"method": key, "authorization": authorization})
            return message

        await app(scope, counting_receive, send)

    return wrapped


if __name__ == "__main__":
    if transport in ("http", "legacy-http"):
        import uvicorn

        app = count_requests(mcp.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1"))
        if transport == "legacy-http":
            app = refuse_modern(app)
        # HTTPS when the test hands a certificate (FIXTURE_TLS_CERT, FIXTURE_TLS_KEY: PEM files).
        tls = {"ssl_certfile": os.environ["FIXTURE_TLS_CERT"], "ssl_keyfile": os.environ["FIXTURE_TLS_KEY"]} if os.environ.get("FIXTURE_TLS_CERT") else {}
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **tls)
    elif transport == "sse":
        mcp.run("sse", host="127.0.0.1", port=port)
    else:
        mcp.run("stdio")
