"""Two gateway replicas behind a plain round-robin balancer (nginx, two upstream servers), with
the nginx configuration docs/deployment.md gives. Modern (2026-07-28) clients need no affinity:
the official SDK's whole session (lists, calls, MRTR rounds, `subscriptions/listen`) works with
its requests spread over both replicas, and a replica stopped with SIGTERM under load costs no
call. Legacy sessions live in one replica: through a balancer that keeps legacy traffic (requests
without `Mcp-Method`, or with `Mcp-Session-Id`) on one replica per client they work; a session id that reaches another replica gets HTTP 404 (the client initialises again),
never a half-working session."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
import urllib.error
import urllib.request

import anyio
import pytest
from mcp.client import Client
from mcp_types import CreateMessageResult, ElicitResult, TextContent

from conftest import LOGS, Gateway, Proc, free_port, text, wait_port

# /usr/sbin is not on every user's PATH.
NGINX_BIN = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(NGINX_BIN is None, reason="nginx is not installed (.ci/run installs nginx-light)"),
]

# What docs/deployment.md tells operators to use, with the two replicas' addresses filled in.
NGINX = """
daemon off;
master_process off;
worker_processes 1;
error_log {work}/error.log info;
pid {work}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    # Modern clients: any replica will do.
    upstream hangar {{
        server 127.0.0.1:{a} max_fails=0;
        server 127.0.0.1:{b} max_fails=0;
        keepalive 32;
    }}
    # Legacy sessions live in the replica that created them, and the initialize request that
    # creates one carries no session id yet: legacy traffic sticks by client address.
    upstream hangar_sticky {{
        hash $remote_addr consistent;
        server 127.0.0.1:{a} max_fails=0;
        server 127.0.0.1:{b} max_fails=0;
        keepalive 32;
    }}
    # A modern request names its method in `Mcp-Method` and has no session; anything else is
    # legacy (an initialize, or a request of a session).
    map "$http_mcp_session_id:$http_mcp_method" $hangar_pool {{
        default hangar_sticky;
        "~^:.+" hangar;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$hangar_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            # A draining replica answers 503 before doing any work, and a stopped one refuses
            # connections: both are safe to send to the other replica, POSTs included (the
            # request body stays buffered, the default, so that it can be sent again).
            proxy_next_upstream error http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def config(fixture_url: str) -> str:
    return f"""
server:
  limits: {{shutdown_timeout_s: 10}}
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
"""


class Pair:
    """Two replicas of the same configuration and nginx in front of them."""

    def __init__(self, fixture_url: str):
        self.replicas = [Gateway(config(fixture_url), f"replica-{i}") for i in range(2)]
        self.port = free_port()
        work = LOGS / f"nginx-{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        conf = work / "nginx.conf"
        a, b = (r.port for r in self.replicas)
        conf.write_text(NGINX.format(work=work, a=a, b=b, port=self.port))
        self.nginx = Proc(f"nginx-{self.port}", [NGINX_BIN, "-c", str(conf), "-p", str(work)])
        wait_port(self.port, self.nginx.proc, "nginx")
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def served(self) -> list[int]:
        """Requests each replica has received (its requests_total)."""
        counts = []
        for r in self.replicas:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{r.port}/metrics", timeout=5) as resp:
                    body = resp.read().decode()
            except OSError:
                counts.append(-1)
                continue
            counts.append(sum(int(float(v)) for v in re.findall(r"^mcp_hangar_requests_total\{[^}]*\} (\S+)$", body, re.M)))
        return counts

    def stop(self) -> None:
        self.nginx.stop()
        for r in self.replicas:
            r.stop()


@pytest.fixture
def pair(fixture_url):
    p = Pair(fixture_url)
    yield p
    p.stop()


async def accept_ada(ctx, params):
    return ElicitResult(action="accept", content={"name": "Ada"})


async def answer_paris(ctx, params):
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="Paris"), model="test")


async def test_a_modern_sdk_session_works_across_both_replicas(pair):
    before = pair.served()
    async with Client(pair.url, mode="2026-07-28", read_timeout_seconds=30,
                      elicitation_callback=accept_ada, sampling_callback=answer_paris) as c:
        for _ in range(3):
            tools = {t.name for t in (await c.list_tools()).tools}
            assert {"fx__echo", "fx__greet_user"} <= tools
            assert text(await c.call_tool("fx__echo", {"text": "hi"})) == "hi"
        # MRTR: the question and the retried call carrying its answer are separate requests.
        for _ in range(2):
            greeted = await c.call_tool("fx__greet_user", {})
            assert not greeted.is_error and "Ada" in text(greeted), text(greeted)
            asked = await c.call_tool("fx__ask_llm", {})
            assert not asked.is_error and "Paris" in text(asked), text(asked)
        assert (await c.list_resources()).resources is not None
        # A change made through one replica reaches a listener on either: each replica follows
        # the upstream itself, nothing is shared between them.
        async with c.listen(tools_list_changed=True) as sub:
            assert sub.honored.tools_list_changed
            async with Client(pair.url, mode="2026-07-28") as other:
                added = text(await other.call_tool("fx__change_tools", {}))
            with anyio.fail_after(15):
                event = await sub.__anext__()
            assert type(event).__name__ == "ToolsListChanged"
        assert f"fx__{added}" in {t.name for t in (await c.list_tools()).tools}
    after = pair.served()
    grew = [b - a for a, b in zip(before, after)]
    assert all(g >= 3 for g in grew), f"both replicas served the session's requests: {grew}"


def legacy_initialize(url: str) -> str:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Mcp-Session-Id"]


def legacy_post(url: str, sid: str, payload: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_a_legacy_session_on_the_wrong_replica_is_404_and_the_client_starts_again(pair):
    a, b = (f"http://127.0.0.1:{r.port}/mcp" for r in pair.replicas)
    sid = legacy_initialize(a)
    assert legacy_post(a, sid, {"jsonrpc": "2.0", "method": "notifications/initialized"})[0] == 202
    status, body = legacy_post(a, sid, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert status == 200 and "fx__echo" in body
    for payload in ({"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                    {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "fx__echo", "arguments": {"text": "x"}}},
                    {"jsonrpc": "2.0", "method": "notifications/initialized"}):
        status, body = legacy_post(b, sid, payload)
        assert status == 404, f"{payload['method']} on the wrong replica: {status} {body}"
    # The official SDK's legacy client through the balancer: its session sticks to one replica,
    # however many requests it makes, while modern requests still spread over both.
    async with Client(pair.url, mode="legacy", read_timeout_seconds=30, elicitation_callback=accept_ada) as c:
        for i in range(6):
            assert text(await c.call_tool("fx__echo", {"text": str(i)})) == str(i)
        greeted = await c.call_tool("fx__greet_user", {})
        assert "Ada" in text(greeted), text(greeted)


async def test_a_replica_stopped_with_sigterm_under_load_costs_no_call(pair):
    failures: list[str] = []
    done = [0]
    stop_at = time.monotonic() + 6

    async def caller(n: int):
        async with Client(pair.url, mode="2026-07-28", read_timeout_seconds=30) as c:
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                args = {"seconds": 0.3} if i % 5 == 0 else None
                try:
                    if args:
                        r = await c.call_tool("fx__slow", args)
                        ok = not r.is_error and "slept" in text(r)
                    else:
                        r = await c.call_tool("fx__echo", {"text": f"{n}-{i}"})
                        ok = text(r) == f"{n}-{i}"
                except Exception as e:  # noqa: BLE001 - every failure is the finding
                    failures.append(f"caller {n} call {i}: {type(e).__name__}: {e}")
                    continue
                if not ok:
                    failures.append(f"caller {n} call {i}: {text(r)}")
                done[0] += 1

    async def stop_one():
        await anyio.sleep(2)
        pair.replicas[0].proc.proc.send_signal(signal.SIGTERM)

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(caller, n)
        tg.start_soon(stop_one)
    assert pair.replicas[0].proc.proc.wait(15) == 0, "the stopped replica drained and exited cleanly"
    assert not failures, f"{len(failures)} failed of {done[0] + len(failures)}: {failures[:5]}"
    assert done[0] > 100, f"only {done[0]} calls in 6 s"
