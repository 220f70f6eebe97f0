"""Harness for MCP Hangar's end-to-end tests: real peers only.

Starts the gateway binary (HANGAR_BIN, default target/debug/mcp-hangar), the SDK fixture server
(peers/fixture_server.py) and @modelcontextprotocol/server-everything (from HANGAR_PEERS, default
target/peers, installed by .ci/run) on free loopback ports, and drives them with the official
Python SDK client.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mcp_types import TextContent

REPO = Path(__file__).resolve().parents[3]
HANGAR_BIN = Path(os.environ.get("HANGAR_BIN", REPO / "target" / "debug" / "mcp-hangar"))
PEERS = Path(os.environ.get("HANGAR_PEERS", REPO / "target" / "peers"))
NODE = PEERS / "node_modules" / ".bin" / "node"
EVERYTHING = PEERS / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
FIXTURE = Path(__file__).resolve().parent / "peers" / "fixture_server.py"
LOGS = Path(os.environ.get("HANGAR_TEST_LOGS") or tempfile.mkdtemp(prefix="hangar-e2e-"))
LOGS.mkdir(parents=True, exist_ok=True)

MODES = ["legacy", "2026-07-28"]


def text(result) -> str:
    """The text of a tool result's text content."""
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def anyio_backend():
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {LOGS}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} within {timeout}s; see {LOGS}")


def wait_ready(port: int, proc: subprocess.Popen, scheme: str = "http", context: ssl.SSLContext | None = None,
               timeout: float = 30.0) -> None:
    """Waits until the gateway on `port` says it is ready, as a load balancer would see it: the
    port is bound before the gateway is ready, and `/health/ready` answers 503 until it is."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}; see {LOGS}")
        with contextlib.suppress(OSError):
            ready = f"{scheme}://127.0.0.1:{port}/health/ready"
            with urllib.request.urlopen(ready, timeout=1, context=context) as r:
                if r.status == 200:
                    return
        if time.monotonic() > deadline:
            raise RuntimeError(f"gateway on port {port} not ready within {timeout}s; see {LOGS}")
        time.sleep(0.05)


class Proc:
    """A background process with its output in LOGS/<name>.log, stopped on close."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


async def tools_within(client, seconds: float, predicate) -> set[str]:
    """The client's tool names once `predicate` holds for them, failing after `seconds` (what
    discovery and reloads promise: a change visible within a bound)."""
    import anyio

    deadline = time.monotonic() + seconds
    while True:
        names = {t.name for t in (await client.list_tools()).tools}
        if predicate(names):
            return names
        assert time.monotonic() < deadline, f"not within {seconds}s: {sorted(names)}"
        await anyio.sleep(0.05)


class JsonServer:
    """A loopback HTTP server answering GETs with JSON: `respond(path, query)` gives the body, or
    None for a 404. For the documents the gateway fetches (signing keys, registry listings)."""

    def __init__(self, respond):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path, _, query = self.path.partition("?")
                body = respond(path, query)
                if body is None:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def start_fixture(
    name: str, transport: str = "http", port: int | None = None, env: dict[str, str] | None = None
) -> tuple[Proc, int]:
    """Starts the SDK fixture server (on `port`, or a free one)."""
    port = port or free_port()
    proc = Proc(f"fixture-{name}-{port}", [sys.executable, str(FIXTURE), transport, str(port), name], env=env)
    wait_port(port, proc.proc, f"fixture {name}")
    return proc, port


@pytest.fixture(scope="session")
def fixture_url():
    proc, port = start_fixture("fx")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.stop()


@pytest.fixture(scope="session")
def everything_url():
    if not EVERYTHING.exists():
        pytest.fail(f"server-everything is not installed under {PEERS}; run .ci/run")
    port = free_port()
    proc = Proc(f"everything-{port}", [str(NODE), str(EVERYTHING), "streamableHttp"], env={"PORT": str(port)})
    wait_port(port, proc.proc, "server-everything")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.stop()


# Unauthenticated HTTP callers get the `developer` role by default: provider tools, not the
# registry_* admin tools. Tests that drive the admin tools without credentials say so.
LOCAL_ADMIN = "\nauth:\n  anonymous_roles: [admin]\n"


def with_local_admin(config: str) -> str:
    """`config` with unauthenticated callers made admins, unless it has its own `auth` section."""
    return config if re.search(r"^auth:", config, re.M) else config + LOCAL_ADMIN


class Gateway:
    """A running `mcp-hangar --http` on a free port."""

    def __init__(self, config: str | None, name: str = "gateway", anonymous_admin: bool = True, ca: str | None = None,
                 cores: str | None = None):
        """`config` is YAML text; `None` runs on the embedded default configuration. Unless the
        config has an `auth` section, or `anonymous_admin` is false, unauthenticated callers are
        admins (as on stdio), so tests can use the registry tools. `ca`: the gateway serves HTTPS
        (`server.tls` in the config) with a certificate from this CA (a PEM file). `cores`: the
        CPUs it may run on (`taskset -c`), all by default."""
        self.port = free_port()
        args = [str(HANGAR_BIN), "--http", "--port", str(self.port), "--log-level", "info,mcp_hangar=debug"]
        if cores is not None:
            args = ["taskset", "-c", cores, *args]
        if config is not None and anonymous_admin:
            config = with_local_admin(config)
        self.config_path = None
        if config is not None:
            self.config_path = LOGS / f"{name}-{self.port}.yaml"
            self.config_path.write_text(config)
            args += ["--config", str(self.config_path)]
        self.proc = Proc(f"{name}-{self.port}", args)
        scheme = "https" if ca else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/mcp"
        self.ssl = ssl.create_default_context(cafile=ca) if ca else None
        try:
            wait_ready(self.port, self.proc.proc, scheme, self.ssl)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {self.proc.output()}") from None

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def gateway_factory():
    started: list[Gateway] = []

    def start(config: str | None, name: str = "gateway", anonymous_admin: bool = True, ca: str | None = None,
              cores: str | None = None) -> Gateway:
        gw = Gateway(config, name, anonymous_admin, ca, cores)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def gateway(fixture_url, everything_url):
    """A gateway in front of the fixture (modern-capable) and server-everything (legacy only)."""
    gw = Gateway(
        f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
  ev:
    mode: remote
    endpoint: {everything_url}
""",
        "gateway-main",
    )
    yield gw
    gw.stop()
