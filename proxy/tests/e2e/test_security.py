"""Authentication and authorization end to end: API keys and JWTs signed by a test JWKS server,
checked through the official SDK in both eras, against the fixture server behind the gateway.

The authorization matrix: principals × (provider tools, prompts, resources, every admin tool) ×
(legacy, 2026-07-28) → allowed or denied exactly as configured, lists showing exactly what is
allowed; and every malformed credential refused with 401 and a challenge.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
import urllib.error
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import MODES, JsonServer, free_port, text

pytestmark = pytest.mark.anyio

FORBIDDEN = -32015
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
AUDIENCE = "hangar-test"
ADMIN_TOOLS = [
    "registry_list",
    "registry_details",
    "registry_start",
    "registry_stop",
    "registry_tools",
    "registry_invoke",
    "registry_invoke_ex",
    "registry_invoke_stream",
    "registry_health",
    "registry_status",
    "registry_warm",
    "registry_audit",
    "registry_reload",
    "registry_quarantine",
    "registry_approve",
    "registry_discover",
    "registry_sources",
    "hangar_reload_config",
]
KEYS = {name: f"mcp_test_{name}_key_0123456789abcdef" for name in ["root", "dev", "reader", "ci"]}


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def b64(n: int | bytes) -> str:
    raw = n if isinstance(n, bytes) else n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Issuer:
    """An authorization server's key publishing: OpenID discovery and a JWKS with an RSA, an EC
    and an Ed25519 key, on a free loopback port; signs tokens with them."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.fetches = 0
        rsa_pub = self.rsa.public_key().public_numbers()
        ec_pub = self.ec.public_key().public_numbers()
        ed_pub = self.ed.public_key().public_bytes_raw()
        self.jwks = {
            "keys": [
                {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": b64(rsa_pub.n), "e": b64(rsa_pub.e)},
                {"kty": "EC", "kid": "ec1", "use": "sig", "crv": "P-256", "x": b64(ec_pub.x.to_bytes(32, "big")), "y": b64(ec_pub.y.to_bytes(32, "big"))},
                {"kty": "OKP", "kid": "ed1", "use": "sig", "crv": "Ed25519", "x": b64(ed_pub)},
            ]
        }
        self.server = JsonServer(self.respond)
        self.port, self.url = self.server.port, self.server.url

    def respond(self, path: str, _query: str):
        if path == "/.well-known/openid-configuration":
            return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks.json"}
        if path == "/jwks.json":
            self.fetches += 1
            return self.jwks
        return None

    def token(self, sub: str, alg: str = "RS256", **claims) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key, kid = {"RS256": (self.rsa, "rsa1"), "ES256": (self.ec, "ec1"), "EdDSA": (self.ed, "ed1")}[alg]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def issuer():
    i = Issuer()
    yield i
    i.stop()


def config(fixture_url: str, issuer: Issuer) -> str:
    keys = "\n".join(
        f"      - {{name: {n}, key_hash: \"{key_hash(k)}\", principal: \"{p}\", roles: {r}}}"
        for n, k, p, r in [
            ("root", KEYS["root"], "user:root", "[admin]"),
            ("dev", KEYS["dev"], "service:dev", "[developer]"),
            ("reader", KEYS["reader"], "service:reader", "[]"),
            ("ci", KEYS["ci"], "service:ci", "[]"),
        ]
    )
    return f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
observability:
  audit: {{enabled: true, path: AUDIT_PATH}}
auth:
  enabled: true
  api_key:
    header_name: X-API-Key
    keys:
{keys}
  oidc:
    issuer: {issuer.url}
    audience: {AUDIENCE}
    algorithms: [RS256, ES256, EdDSA]
    clock_skew_s: 5
  role_assignments:
    - {{principal: "group:ops", role: developer}}
  rules:
    - {{effect: allow, principals: [service:reader], providers: [fx], tools: [echo], prompts: [greeting], resources: ["fixture://static"]}}
    - {{effect: deny, principals: ["group:contractors"], providers: [fx], tools: [add]}}
    - {{effect: allow, principals: [service:ci], providers: [hangar], tools: [registry_list, registry_health]}}
"""


@pytest.fixture(scope="module")
def secured(fixture_url, issuer, tmp_path_factory):
    from conftest import Gateway

    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    gw = Gateway(config(fixture_url, issuer).replace("AUDIT_PATH", str(audit)), "gateway-secured")
    gw.audit = audit
    yield gw
    gw.stop()


def client(gw, mode: str, headers: dict[str, str]) -> Client:
    http = create_mcp_http_client(headers=headers)
    return Client(streamable_http_client(gw.url, http_client=http), mode=mode)


def raw(gw, body: dict | None, headers: dict[str, str], method: str = "POST") -> tuple[int, dict, dict]:
    """One raw HTTP request: status, headers (lower-case names), JSON body."""
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream", **headers}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(gw.url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            payload = r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(payload) if payload else {}
    except urllib.error.HTTPError as e:
        payload = e.read()
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(payload) if payload else {}


async def allowed(c: Client, kind: str, name: str) -> bool:
    """Whether the call goes through (False only for the gateway's authorization refusal)."""
    try:
        if kind == "tool":
            args = {"echo": {"text": "hi"}, "add": {"a": 1, "b": 2}}.get(name.removeprefix("fx__"), {})
            if name == "registry_details" or name == "registry_tools":
                args = {"provider": "fx"}
            await c.call_tool(name, args)
        elif kind == "prompt":
            await c.get_prompt(name, {"person": "Ada"})
        else:
            await c.read_resource(name)
        return True
    except MCPError as e:
        if e.code == FORBIDDEN:
            assert "Forbidden" in e.message, e.message
            return False
        return True  # another error (bad arguments to an admin tool) means it got past authorization


# principal → (credential headers, what they may use among the probed items)
PROBED = [("tool", "fx__echo"), ("tool", "fx__add"), ("prompt", "fx__greeting"), ("resource", "fixture://static"), ("resource", "fixture://item/7")]


def matrix(issuer: Issuer) -> dict[str, tuple[dict[str, str], set[str], set[str]]]:
    everything = {name for _, name in PROBED}
    return {
        "root (key, admin)": ({"X-API-Key": KEYS["root"]}, everything, set(ADMIN_TOOLS)),
        "dev (key, developer)": ({"X-API-Key": KEYS["dev"]}, everything, set()),
        "reader (key, rules)": ({"X-API-Key": KEYS["reader"]}, {"fx__echo", "fx__greeting", "fixture://static"}, set()),
        "ci (key, admin rule)": ({"X-API-Key": KEYS["ci"]}, set(), {"registry_list", "registry_health"}),
        "ops (JWT RS256, group→developer)": (
            {"Authorization": f"Bearer {issuer.token('alice', groups=['ops'])}"},
            everything,
            set(),
        ),
        "contractor (JWT ES256, deny rule)": (
            {"Authorization": f"Bearer {issuer.token('bob', alg='ES256', groups=['ops', 'contractors'])}"},
            everything - {"fx__add"},
            set(),
        ),
        "token admin (JWT EdDSA, roles claim)": (
            {"Authorization": f"Bearer {issuer.token('carol', alg='EdDSA', roles=['admin'])}"},
            everything,
            set(ADMIN_TOOLS),
        ),
    }


@pytest.mark.parametrize("mode", MODES)
async def test_the_authorization_matrix(secured, issuer, mode):
    for who, (headers, may, admin) in matrix(issuer).items():
        async with client(secured, mode, headers) as c:
            tools = {t.name for t in (await c.list_tools()).tools}
            prompts = {p.name for p in (await c.list_prompts()).prompts}
            resources = {r.uri for r in (await c.list_resources()).resources}
            templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
            listed = tools | prompts | {str(r) for r in resources}
            for kind, name in PROBED:
                ok = await allowed(c, kind, name)
                assert ok == (name in may), f"{who} {mode}: {kind} {name} allowed={ok}"
                if name != "fixture://item/7":
                    assert (name in listed) == (name in may), f"{who} {mode}: {name} listed={name in listed}"
            assert ("fixture://item/{item_id}" in templates) == ("fixture://item/7" in may), (who, templates)
            assert {t for t in tools if t.startswith("registry_")} == admin - {"hangar_reload_config"}, (who, tools)
            for name in ADMIN_TOOLS:
                if name in admin and name not in ("registry_list", "registry_health"):
                    continue  # start/stop/reload have effects; listing proves the grant
                ok = await allowed(c, "tool", name)
                assert ok == (name in admin), f"{who} {mode}: {name} allowed={ok}"


@pytest.mark.parametrize(
    "case",
    ["missing", "unknown key", "two keys", "expired", "wrong audience", "wrong issuer", "alg none", "hmac", "unknown kid", "garbage", "basic"],
)
def test_bad_credentials_are_refused_with_a_challenge(secured, issuer, case):
    now = int(time.time())
    token = {
        "expired": lambda: issuer.token("x", exp=now - 3600, iat=now - 7200),
        "wrong audience": lambda: issuer.token("x", aud="someone-else"),
        "wrong issuer": lambda: issuer.token("x", iss="https://evil.example.com"),
        "alg none": lambda: jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 60}, None, algorithm="none"),
        "hmac": lambda: jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 60}, "secret-secret-secret-secret-32b!", algorithm="HS256", headers={"kid": "rsa1"}),
        "unknown kid": lambda: jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 60}, issuer.rsa, algorithm="RS256", headers={"kid": "nope"}),
        "garbage": lambda: "not.a.token",
    }
    headers: dict[str, str] = {"mcp-protocol-version": "2025-11-25"}
    if case in token:
        headers["Authorization"] = f"Bearer {token[case]()}"
    elif case == "unknown key":
        headers["X-API-Key"] = "mcp_wrong"
    elif case == "basic":
        headers["Authorization"] = "Basic dXNlcjpwYXNz"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    if case == "two keys":
        # urllib cannot repeat a header: send the raw request.
        import socket

        body = json.dumps(init).encode()
        with socket.create_connection(("127.0.0.1", secured.port)) as s:
            s.sendall(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Accept: application/json, text/event-stream\r\n"
                + f"X-API-Key: {KEYS['reader']}\r\nX-API-Key: {KEYS['root']}\r\n".encode()
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
        return
    status, h, body = raw(secured, init, headers)
    assert status == 401, (case, status, body)
    assert "Unauthorized" in body["error"]["message"], body
    challenge = h["www-authenticate"]
    assert challenge.startswith("Bearer resource_metadata=") and "/.well-known/oauth-protected-resource/mcp" in challenge, challenge
    assert ('error="invalid_token"' in challenge) == (case != "missing"), challenge


def test_protected_resource_metadata_names_the_issuer(secured, issuer):
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]:
        with urllib.request.urlopen(f"http://127.0.0.1:{secured.port}{path}", timeout=5) as r:
            doc = json.loads(r.read())
        assert doc["resource"] == f"http://127.0.0.1:{secured.port}/mcp", doc
        assert doc["authorization_servers"] == [issuer.url], doc
        assert doc["bearer_methods_supported"] == ["header"], doc


def test_a_legacy_session_belongs_to_whoever_opened_it(secured):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    status, h, _ = raw(secured, init, {"X-API-Key": KEYS["root"], "mcp-protocol-version": "2025-11-25"})
    assert status == 200
    sid = h["mcp-session-id"]
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "registry_list", "arguments": {}}}
    status, _, body = raw(secured, call, {"X-API-Key": KEYS["reader"], "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"})
    assert status == 404 and "Session not found" in body["error"]["message"], (status, body)
    status, _, _ = raw(secured, None, {"X-API-Key": KEYS["reader"], "mcp-session-id": sid}, method="DELETE")
    assert status == 404, "another principal cannot end the session either"
    status, _, body = raw(secured, call, {"X-API-Key": KEYS["root"], "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"})
    assert status == 200 and "providers" in text_of(body), body


def text_of(body: dict) -> str:
    return "".join(c.get("text", "") for c in body.get("result", {}).get("content", []))


def test_a_header_naming_another_tool_does_not_dodge_a_rule(secured):
    """The reader may call fx__echo, not fx__add: a body naming fx__add under headers naming
    fx__echo is refused before anything is routed."""
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fx__add", "arguments": {"a": 1, "b": 2}}}
    headers = {"X-API-Key": KEYS["reader"], "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "fx__echo"}
    status, _, body = raw(secured, call, headers)
    assert status == 400 and "result" not in body, (status, body)
    headers["mcp-name"] = "fx__add"
    status, _, body = raw(secured, call, headers)
    assert "result" not in body and body["error"]["code"] == FORBIDDEN, (status, body)


def test_refusals_are_audited_and_counted(secured):
    call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "registry_stop", "arguments": {"provider": "fx"}}}
    headers = {"X-API-Key": KEYS["dev"], "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "registry_stop"}
    status, _, body = raw(secured, call, headers)
    assert body["error"]["code"] == FORBIDDEN and body["error"]["data"]["rule"] == "default", body
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in secured.audit.read_text().splitlines() if line.strip()] if secured.audit.exists() else []
        denied = [r for r in records if r["type"] == "access_denied" and r["item"] == 'tool "registry_stop"' and r["principal"] == "service:dev"]
        if denied:
            break
        assert time.monotonic() < deadline, records[-5:]
        time.sleep(0.1)
    assert denied[-1]["provider"] == "hangar" and denied[-1]["rule"] == "default", denied[-1]
    with urllib.request.urlopen(f"http://127.0.0.1:{secured.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'mcp_hangar_authorization_denied_total{provider="hangar"}' in metrics
    assert 'mcp_hangar_auth_failures_total{reason="invalid"}' in metrics or 'mcp_hangar_auth_failures_total{reason="missing"}' in metrics


def test_a_refused_call_never_starts_a_provider(gateway_factory):
    """A subprocess provider stays COLD when a call to it is refused."""
    import sys

    from conftest import FIXTURE

    gw = gateway_factory(
        f"""
providers:
  lazy:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio"]
auth:
  enabled: true
  api_key:
    keys:
      - {{name: nobody, key_hash: "{key_hash('nobody-key')}", principal: "service:nobody"}}
      - {{name: root, key_hash: "{key_hash('root-key')}", principal: "user:root", roles: [admin]}}
""",
        "gateway-lazy",
    )
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "lazy__echo", "arguments": {"text": "x"}}}
    status, _, body = raw(gw, call, {"X-API-Key": "nobody-key", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "lazy__echo"})
    assert body["error"]["code"] == FORBIDDEN, body
    listing = {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "registry_list", "arguments": {}}}
    status, _, body = raw(gw, listing, {"X-API-Key": "root-key", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "registry_list"})
    providers = json.loads(text_of(body))["providers"]
    assert [p["state"] for p in providers if p["name"] == "lazy"] == ["COLD"], providers


def test_unauthenticated_http_callers_do_not_get_the_admin_tools(gateway_factory, fixture_url):
    gw = gateway_factory(f"providers:\n  fx:\n    mode: remote\n    endpoint: {fixture_url}\n", "gateway-open", anonymous_admin=False)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "registry_list", "arguments": {}}}
    for version in ["2025-11-25", "2026-07-28"]:
        headers = {"mcp-protocol-version": version, "mcp-method": "tools/call", "mcp-name": "registry_list"}
        if version == "2025-11-25":
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
            _, h, _ = raw(gw, init, {"mcp-protocol-version": version})
            headers = {"mcp-protocol-version": version, "mcp-session-id": h["mcp-session-id"]}
        status, _, body = raw(gw, call, headers)
        assert body["error"]["code"] == FORBIDDEN and "anonymous" in body["error"]["message"], (version, body)
        echo = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "fx__echo", "arguments": {"text": "ok"}}}
        if version == "2026-07-28":
            echo["params"]["_meta"] = META
        headers_echo = dict(headers, **({"mcp-name": "fx__echo"} if "mcp-name" in headers else {}))
        status, _, body = raw(gw, echo, headers_echo)
        assert text_of(body) == "ok", body


def test_a_public_address_without_authentication_is_refused(tmp_path):
    import subprocess

    from conftest import HANGAR_BIN

    cfg = tmp_path / "open.yaml"
    cfg.write_text("providers: {}\n")
    out = subprocess.run(
        [str(HANGAR_BIN), "--http", "--host", "0.0.0.0", "--port", str(free_port()), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out
    assert "server.allow_unauthenticated" in out.stdout + out.stderr, out
    hashed = subprocess.run([str(HANGAR_BIN), "hash-key"], input="abc\n", capture_output=True, text=True, timeout=30)
    assert hashed.stdout.strip() == key_hash("abc"), hashed


def test_keys_and_rules_reload_with_the_configuration(fixture_url):
    """A rule added by a reload applies to the next request; a key removed stops working at once."""
    from test_reload import LiveGateway

    def cfg(rules: str, keys: list[str]) -> str:
        listed = "\n".join(f"      - {{name: {k}, key_hash: \"{key_hash(k)}\", principal: \"service:{k}\", roles: [developer]}}" for k in keys)
        return f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
auth:
  enabled: true
  api_key:
    keys:
{listed}
  rules: {rules}
"""

    gw = LiveGateway(cfg("[]", ["k1", "k2"]), "reload-security")
    try:
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fx__echo", "arguments": {"text": "x"}, "_meta": META}}
        headers = lambda key: {"X-API-Key": key, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "fx__echo"}  # noqa: E731
        assert text_of(raw(gw, call, headers("k1"))[2]) == "x"
        gw.write(cfg('[{effect: deny, principals: ["service:k1"], providers: [fx], tools: [echo]}]', ["k1", "k2"]))
        deadline = time.monotonic() + 15
        while "error" not in (body := raw(gw, call, headers("k1"))[2]):
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert body["error"]["code"] == FORBIDDEN and body["error"]["data"]["rule"] == "rules[0]", body
        assert text_of(raw(gw, call, headers("k2"))[2]) == "x", "the rule is for k1 only"
        gw.write(cfg("[]", ["k1"]))
        deadline = time.monotonic() + 15
        while (status := raw(gw, call, headers("k2"))[0]) != 401:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert text_of(raw(gw, call, headers("k1"))[2]) == "x", "the deny rule is gone with the reload"
    finally:
        gw.stop()


def modern_call(name: str, args: dict, i: int = 1) -> tuple[dict, dict]:
    body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args, "_meta": META}}
    return body, {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name}


def rate_limited(fixture_url: str, keys: list[tuple[str, str]]) -> str:
    """A configuration with scarce rate limits (5 requests per principal, 2 calls of a tool per
    principal, 1 call of provider `scarce` for everyone; a token back every 10 s) and API keys
    given as (name, roles), each the principal `service:<name>`."""
    listed = "\n".join(f"      - {{name: {k}, key_hash: \"{key_hash(k)}\", principal: \"service:{k}\", roles: {r}}}"
                       for k, r in keys)
    return f"""
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
  scarce: {{mode: remote, endpoint: "{fixture_url}", rate_limit: {{rps: 0.1, burst: 1}}}}
rate_limits:
  per_principal: {{rps: 0.1, burst: 5}}
  per_principal_tool: {{rps: 0.1, burst: 2}}
auth:
  enabled: true
  api_key:
    keys:
{listed}
"""


def test_rate_limits_refuse_with_429_and_retry_after(gateway_factory, fixture_url):
    gw = gateway_factory(rate_limited(fixture_url, [("a", "[developer]"), ("b", "[developer]"), ("c", "[]")]),
                         "gateway-rates")

    def call(key: str, name: str) -> tuple[int, dict, dict]:
        body, headers = modern_call(name, {"text": "x"} if name.endswith("echo") else {"a": 1, "b": 2})
        return raw(gw, body, {"X-API-Key": key, **headers})

    def refused(result: tuple[int, dict, dict], limit: str) -> None:
        status, h, body = result
        assert status == 429, result
        assert int(h["retry-after"]) >= 1, h
        assert body["error"]["code"] == -32016 and body["error"]["data"]["limit"] == limit, body
        assert "result" not in body

    assert call("a", "fx__echo")[0] == 200 and call("a", "fx__echo")[0] == 200
    refused(call("a", "fx__echo"), "principal_tool")
    assert text_of(call("a", "fx__add")[2]) == "3.0"
    assert text_of(call("a", "scarce__echo")[2]) == "x"
    refused(call("a", "fx__add"), "principal")
    refused(call("b", "scarce__echo"), "provider")  # the provider's bucket is everyone's
    assert text_of(call("b", "fx__echo")[2]) == "x", "b has buckets of its own"
    status, _, body = call("c", "scarce__echo")
    assert body["error"]["code"] == FORBIDDEN, "a call the caller may not make is refused, not counted"
    # The legacy era is limited the same way, before its reply stream starts.
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    status, h, _ = raw(gw, init, {"X-API-Key": "b", "mcp-protocol-version": "2025-11-25"})
    sid = h["mcp-session-id"]
    legacy = {"X-API-Key": "b", "mcp-protocol-version": "2025-11-25", "mcp-session-id": sid}
    echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "fx__echo", "arguments": {"text": "y"}}}
    assert text_of(raw(gw, echo, legacy)[2]) == "y"
    refused(raw(gw, dict(echo, id=3), legacy), "principal_tool")
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    for limit in ["principal", "principal_tool", "provider"]:
        assert f'mcp_hangar_rate_limited_total{{limit="{limit}"}}' in metrics, limit


@pytest.mark.parametrize("mode", MODES)
async def test_tools_include_and_exclude_trim_what_a_provider_offers(gateway_factory, fixture_url, mode):
    gw = gateway_factory(
        f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
    tools_include: [echo, add, greeting, "fixture://static"]
    tools_exclude: [add]
""",
        "gateway-trimmed",
    )
    async with Client(gw.url, mode=mode) as c:
        tools = {t.name for t in (await c.list_tools()).tools if not t.name.startswith("registry_")}
        assert tools == {"fx__echo"}, tools
        assert {p.name for p in (await c.list_prompts()).prompts} == {"fx__greeting"}
        assert {str(r.uri) for r in (await c.list_resources()).resources} == {"fixture://static"}
        assert not (await c.list_resource_templates()).resource_templates
        assert text(await c.call_tool("fx__echo", {"text": "kept"})) == "kept"
        for name in ["fx__add", "fx__whoami"]:
            with pytest.raises(MCPError) as err:
                await c.call_tool(name, {"a": 1, "b": 2})
            assert f'Unknown tool: "{name}"' in err.value.message, err.value.message
        with pytest.raises(MCPError) as err:
            await c.read_resource("fixture://item/1")
        assert "Resource not found" in err.value.message


@pytest.mark.parametrize("mode", MODES)
async def test_arguments_are_checked_against_the_tool_schema_before_the_provider(gateway_factory, fixture_url, mode):
    import sys

    from conftest import FIXTURE

    gw = gateway_factory(
        f"""
providers:
  fx:
    mode: remote
    endpoint: {fixture_url}
  unchecked:
    mode: remote
    endpoint: {fixture_url}
    validate_arguments: false
  lazy:
    mode: subprocess
    command: ["{sys.executable}", "{FIXTURE}", "stdio"]
    tools:
      - name: add
        inputSchema: {{type: object, properties: {{a: {{type: number}}, b: {{type: number}}}}, required: [a, b]}}
""",
        "gateway-validate",
    )
    async with Client(gw.url, mode=mode) as c:
        await c.list_tools()  # the schemas come from the lists
        with pytest.raises(MCPError) as err:
            await c.call_tool("fx__add", {"a": "one", "b": 2})
        assert err.value.code == -32602 and 'Invalid arguments for tool "fx__add" at /a' in err.value.message, err.value
        assert err.value.data["errors"][0]["path"] == "/a", err.value.data
        with pytest.raises(MCPError) as err:
            await c.call_tool("fx__add", {"a": 1})
        assert "required" in err.value.message, err.value.message
        assert text(await c.call_tool("fx__add", {"a": 1, "b": 2})) == "3.0"
        # Unchecked at the gateway: the provider answers (the SDK server reports its own error).
        try:
            result = await c.call_tool("unchecked__add", {"a": "one", "b": 2})
            outcome = text(result)
        except MCPError as e:
            outcome = e.message
        assert "Invalid arguments for tool" not in outcome, outcome
        # A COLD subprocess is checked against its predefined schema and not started.
        with pytest.raises(MCPError) as err:
            await c.call_tool("lazy__add", {"a": "one", "b": 2})
        assert "Invalid arguments" in err.value.message
        listed = json.loads(text(await c.call_tool("registry_list", {})))["providers"]
        assert [p["state"] for p in listed if p["name"] == "lazy"] == ["COLD"], listed


def test_signing_keys_are_cached_and_a_rotated_key_is_fetched(secured, issuer):
    """Many tokens signed with a known key cost no fetch; a token naming a new key (a rotation at
    the authorization server) makes the gateway fetch the key set again and accept it."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fx__echo", "arguments": {"text": "k"}, "_meta": META}}
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "fx__echo"}

    def with_token(token: str) -> tuple[int, dict, dict]:
        return raw(secured, call, {**headers, "Authorization": f"Bearer {token}"})

    assert text_of(with_token(issuer.token("dora", groups=["ops"]))[2]) == "k"
    fetches = issuer.fetches
    for i in range(20):
        assert text_of(with_token(issuer.token(f"user{i}", groups=["ops"]))[2]) == "k"
    assert issuer.fetches == fetches, "known keys are served from the cache"
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = rotated.public_key().public_numbers()
    issuer.jwks["keys"].append({"kty": "RSA", "kid": "rsa2", "use": "sig", "alg": "RS256", "n": b64(numbers.n), "e": b64(numbers.e)})
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "erin", "exp": now + 300, "groups": ["ops"]}
    token = jwt.encode(claims, rotated, algorithm="RS256", headers={"kid": "rsa2"})
    # Unknown keys are fetched at most every 10 s, so the first try may come too soon after the
    # last fetch; within that bound the rotated key is accepted.
    deadline = time.monotonic() + 15
    while (status := with_token(token)[0]) != 200:
        assert status == 401 and time.monotonic() < deadline, status
        time.sleep(0.5)
    assert issuer.fetches > fetches


@pytest.mark.parametrize("mode", MODES)
async def test_virtual_servers_offer_their_own_tools_behind_their_own_keys(gateway_factory, fixture_url, mode):
    gw = gateway_factory(
        f"""
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
  fx2: {{mode: remote, endpoint: "{fixture_url}"}}
auth:
  enabled: true
  api_key:
    keys:
      - {{name: main, key_hash: "{key_hash('main-key')}", principal: "service:main", roles: [developer]}}
virtual_servers:
  team-a:
    providers: [fx]
    tools_exclude: [fx__add]
    auth:
      enabled: true
      api_key:
        keys:
          - {{name: a, key_hash: "{key_hash('team-a-key')}", principal: "service:team-a", roles: [developer]}}
  shared:
    providers: [fx2]
""",
        "gateway-virtual",
    )
    team_a = type("Door", (), {"url": gw.url + "/team-a", "port": gw.port})()
    shared = type("Door", (), {"url": gw.url + "/shared", "port": gw.port})()
    async with client(team_a, mode, {"X-API-Key": "team-a-key"}) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "fx__echo" in tools and "fx__add" not in tools, tools
        assert not any(t.startswith("fx2__") or t.startswith("registry_") for t in tools), tools
        assert text(await c.call_tool("fx__echo", {"text": "a"})) == "a"
        for name in ["fx__add", "fx2__echo"]:
            with pytest.raises(MCPError) as err:
                await c.call_tool(name, {"text": "x", "a": 1, "b": 2})
            assert err.value.code == FORBIDDEN and err.value.data["rule"] == "virtual_servers.team-a", err.value
    async with client(shared, mode, {"X-API-Key": "main-key"}) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "fx2__echo" in tools and not any(t.startswith("fx__") for t in tools), tools
        assert text(await c.call_tool("fx2__echo", {"text": "s"})) == "s"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    legacy = {"mcp-protocol-version": "2025-11-25"}
    # Each door has its own keys.
    assert raw(team_a, init, {**legacy, "X-API-Key": "main-key"})[0] == 401
    assert raw(gw, init, {**legacy, "X-API-Key": "team-a-key"})[0] == 401
    # A session opened at one door is unknown at another, even to the same principal.
    status, h, _ = raw(shared, init, {**legacy, "X-API-Key": "main-key"})
    assert status == 200
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    assert raw(gw, call, {**legacy, "X-API-Key": "main-key", "mcp-session-id": h["mcp-session-id"]})[0] == 404
    assert raw(shared, call, {**legacy, "X-API-Key": "main-key", "mcp-session-id": h["mcp-session-id"]})[0] == 200
    nowhere = type("Door", (), {"url": gw.url + "/nowhere", "port": gw.port})()
    assert raw(nowhere, init, {**legacy, "X-API-Key": "main-key"})[0] == 404


def seen_authorizations(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/authorizations", timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("mode", MODES)
async def test_client_tokens_reach_only_the_providers_that_take_them(gateway_factory, mode):
    """`forward_client_token: true` sends a client's own Authorization header to that provider,
    in place of the configured one, on everything done for the client (a legacy client's upstream
    session included); the gateway's own requests and every other provider get the configured
    header only; a client that sent no token leaves the configured header in place."""
    from conftest import start_fixture

    modern, modern_port = start_fixture("pass-modern")
    legacy, legacy_port = start_fixture("pass-legacy", "legacy-http")
    key = KEYS["dev"]
    own = "Bearer gateway-own"
    try:
        gw = gateway_factory(
            f"""
providers:
  fwd: {{mode: remote, endpoint: "http://127.0.0.1:{modern_port}/mcp", forward_client_token: true, headers: {{Authorization: "{own}"}}}}
  old: {{mode: remote, endpoint: "http://127.0.0.1:{legacy_port}/mcp", forward_client_token: true, headers: {{Authorization: "{own}"}}}}
  plain: {{mode: remote, endpoint: "http://127.0.0.1:{modern_port}/mcp", headers: {{Authorization: "{own}"}}}}
auth:
  enabled: true
  allow_anonymous: true
  anonymous_roles: [developer]
  api_key:
    header_name: Authorization
    keys:
      - {{name: dev, key_hash: "{key_hash(key)}", principal: "service:dev", roles: [developer]}}
""",
            f"gateway-pass-{mode}",
        )
        async with client(gw, mode, {"Authorization": f"Bearer {key}"}) as c:
            for _ in range(2):  # the second modern call takes the fast path
                assert text(await c.call_tool("fwd__authorization", {})) == f"Bearer {key}"
                assert text(await c.call_tool("old__authorization", {})) == f"Bearer {key}"
                assert text(await c.call_tool("plain__authorization", {})) == own
        async with client(gw, mode, {}) as c:
            assert text(await c.call_tool("fwd__authorization", {})) == own, "no token: the configured header"
        # A client that takes JSON only goes the slow way; the token goes along there too.
        body, headers = modern_call("fwd__authorization", {})
        status, _, reply = raw(gw, body, {**headers, "Authorization": f"Bearer {key}", "accept": "application/json"})
        assert status == 200 and text_of(reply) == f"Bearer {key}", reply

        for port in (modern_port, legacy_port):
            seen = seen_authorizations(port)
            assert {s["authorization"] for s in seen} == {own, f"Bearer {key}"}, seen
            gateway_own = {s["method"] for s in seen if s["authorization"] == own}
            assert gateway_own & {"server/discover", "initialize", "tools/list"}, seen
        if mode == "legacy":
            # The legacy client's own upstream session was opened with its token; the shared one
            # (the gateway's) with the configured header.
            opened = [s["authorization"] for s in seen_authorizations(legacy_port) if s["method"] == "initialize"]
            assert f"Bearer {key}" in opened and own in opened, opened
    finally:
        modern.stop()
        legacy.stop()
