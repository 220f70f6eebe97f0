"""The README's Quick start, run as a newcomer pastes it, so that the README cannot drift from the code.

The first `cargo run` line of the Quick start is run exactly as written from the repository root (in
CI's own target directory, so its build is shared with the rest of CI), at the URL its comment
names; the gateway must become ready, list its tools to the official SDK client and exit 0 on
SIGTERM. The README's test command must be the command CI runs.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
from mcp.client import Client

from conftest import LOGS, REPO, text

pytestmark = pytest.mark.anyio

README = REPO / "README.md"
# Building in release on 2 cores from nothing takes about 6 minutes; a first build may take longer.
BUILD_AND_START_S = 30 * 60


def quick_start() -> list[tuple[str, str]]:
    """The Quick start block's commands with their comments, in order."""
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the Quick start has a ```sh block"
    lines = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            lines.append((command.strip(), comment.strip()))
    return lines


def test_the_readme_names_two_commands_and_ci_runs_the_second():
    commands = quick_start()
    assert len(commands) == 2, commands
    run, test = commands[0][0], commands[1][0]
    assert run.startswith("cargo run"), run
    # CI's entry point is .ci/run: the README's test command must be exactly that.
    assert test == ".ci/run", test
    assert os.access(REPO / ".ci" / "run", os.X_OK)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def test_the_readme_run_command_serves_and_stops_cleanly():
    command, comment = quick_start()[0]
    url = re.search(r"https?://\S+", comment)
    assert url, f"the run command's comment names the URL it serves: {comment!r}"
    mcp_url = url.group(0)
    parts = urlsplit(mcp_url)
    host, port = parts.hostname or "", parts.port or 80
    if not port_free(host, port):
        pytest.fail(f"{host}:{port} (the README's address) is taken by another process; free it to run this test")
    log_path = LOGS / "readme-quick-start.log"
    with open(log_path, "wb") as log:
        # `cargo run` execs the binary, so the signal below reaches the gateway itself.
        proc = subprocess.Popen(shlex.split(command), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready = f"{parts.scheme}://{parts.netloc}/health/ready"
            deadline = time.monotonic() + BUILD_AND_START_S
            while True:
                assert proc.poll() is None, f"`{command}` exited with {proc.returncode}: {log_path.read_text()[-4000:]}"
                try:
                    with urllib.request.urlopen(ready, timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"`{command}` not ready in {BUILD_AND_START_S}s"
                time.sleep(0.25)

            for mode in ["legacy", "2026-07-28"]:
                async with Client(mcp_url, mode=mode) as client:
                    names = [t.name for t in (await client.list_tools()).tools]
                    assert "demo__echo" in names, (mode, names)
                    # Unauthenticated HTTP callers do not get the admin tools.
                    assert "registry_list" not in names, (mode, names)
                    assert text(await client.call_tool("demo__echo", {"text": "hello"})) == "hello"

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log_path.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = log_path.read_text()
    assert "shutdown complete" in out, out[-4000:]
    assert "panicked" not in out, out[-4000:]
