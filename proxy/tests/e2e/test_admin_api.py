"""The admin HTTP API: its OpenAPI document is valid and every answer of every route matches the
document's schema; admins only, with the MCP endpoint's authentication; foreign origins and hosts
refused; the event feed carries state changes, breaker changes, reloads and discovery as they
happen; the dry run of a candidate configuration; a redacted copy of the running one."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from conftest import FIXTURE, REPO, Gateway, start_fixture

DOC_PATH = REPO / "proxy" / "src" / "admin" / "openapi.json"
LOCAL = f'["{sys.executable}", "{FIXTURE}", "stdio", "local"]'
ADMIN_KEY = "mcp_admin_key_for_tests_0123456789"
DEV_KEY = "mcp_dev_key_for_tests_0123456789ab"


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def request(gw: Gateway, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body text) of one request to the gateway."""
    req = urllib.request.Request(f"http://127.0.0.1:{gw.port}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class Document:
    """The OpenAPI document, and validation of answers against its response schemas."""

    def __init__(self, text: str):
        self.doc = json.loads(text)

    def check(self, method: str, pattern: str, status: int, body: str):
        op = self.doc["paths"][pattern][method.lower()]
        assert str(status) in op["responses"], f"{method} {pattern}: {status} is not documented"
        content = op["responses"][str(status)]["content"]
        schema = content["application/json"]["schema"]
        root = {**schema, "components": self.doc["components"]}
        jsonschema.Draft202012Validator(root).validate(json.loads(body))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("admin")
    providers_dir = d / "providers"
    providers_dir.mkdir()
    fx_proc, fx_port = start_fixture("admin-fx")
    gw = Gateway(f"""
providers:
  fx:
    mode: remote
    endpoint: http://127.0.0.1:{fx_port}/mcp?token=query-s3cret
    headers: {{Authorization: "Bearer header-s3cret"}}
    health_check_interval_s: 1
  local:
    mode: subprocess
    command: {LOCAL}
    env: {{PASSWORD: env-s3cret}}
  pool:
    mode: group
    members: [{{provider: fx, weight: 3}}, local]
config_reload: {{enabled: false}}
discovery:
  enabled: true
  auto_register: false
  sources:
    - {{type: filesystem, path: "{providers_dir}"}}
observability:
  audit: {{path: "{d / 'audit.jsonl'}"}}
auth:
  enabled: true
  api_key:
    keys:
      - {{name: admin, key_hash: "{key_hash(ADMIN_KEY)}", principal: "service:ops", roles: [admin]}}
      - {{name: dev, key_hash: "{key_hash(DEV_KEY)}", principal: "service:dev", roles: [developer]}}
""", "gateway-admin-api")
    yield gw, gw.config_path, providers_dir, fx_proc
    gw.stop()
    fx_proc.stop()


ADMIN = {"X-API-Key": ADMIN_KEY}


def test_the_document_is_valid_openapi_and_served_as_checked_in(setup):
    gw, *_ = setup
    status, headers, body = request(gw, "GET", "/admin/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == json.loads(DOC_PATH.read_text()), "served as checked in"
    validate_openapi(json.loads(body))


def test_every_route_answers_as_documented(setup):
    gw, config, providers_dir, _ = setup
    doc = Document(DOC_PATH.read_text())

    def ok(method, pattern, path=None, body=None, headers=None):
        status, _, text = request(gw, method, path or pattern, body, {**ADMIN, **(headers or {})})
        assert status == 200, (method, path or pattern, status, text)
        doc.check(method, pattern, status, text)
        return json.loads(text)

    assert ok("POST", "/admin/api/providers/{name}/start", "/admin/api/providers/local/start")["state"] == "READY"
    overview = ok("GET", "/admin/api/overview")
    assert [p["name"] for p in overview["providers"]] == ["fx", "local", "pool"]
    assert ok("GET", "/admin/api/providers")["providers"][1]["pid"]
    details = ok("GET", "/admin/api/providers/{name}", "/admin/api/providers/local")
    assert details["events"][-1]["to"] == "READY"
    tools = ok("GET", "/admin/api/providers/{name}/tools", "/admin/api/providers/local/tools")
    assert {"name": "echo", "exposedName": "local__echo"}.items() <= next(t for t in tools["tools"] if t["name"] == "echo").items()
    groups = ok("GET", "/admin/api/groups")["groups"]
    assert [(m["name"], m["weight"]) for m in groups[0]["members"]] == [("fx", 3), ("local", 1)]
    assert set(ok("GET", "/admin/api/stats")["providers"]) == {"fx", "local", "pool"}
    assert ok("GET", "/admin/api/sources")["sources"][0]["type"] == "filesystem"
    assert ok("GET", "/admin/api/quarantine")["quarantined"] == []
    shown = ok("GET", "/admin/api/config")
    text = json.dumps(shown)
    assert "s3cret" not in text, "no secret in the copy"
    assert shown["source"] == str(config) and shown["generation"] >= 1
    fx = next(p for p in shown["config"]["providers"] if p["name"] == "fx")
    assert fx["headers"] == {"Authorization": "<redacted>"} and fx["endpoint"].endswith("?token=***"), fx
    assert shown["config"]["auth"]["api_key"]["keys"][0]["key_hash"] == key_hash(ADMIN_KEY)
    dry = ok("POST", "/admin/api/config/dry-run", body=b"")
    assert dry["status"] == "dry_run" and dry["added"] == []
    audit = ok("GET", "/admin/api/audit", "/admin/api/audit?type=provider_event&provider=local&limit=5")
    assert audit["records"] and all(r["provider"] == "local" for r in audit["records"])
    assert ok("POST", "/admin/api/reload", "/admin/api/reload?graceful=true")["status"] == "unchanged"
    assert ok("POST", "/admin/api/providers/{name}/stop", "/admin/api/providers/local/stop")["state"] == "COLD"

    # A provider file found while auto_register is off waits in quarantine; approving it serves it.
    (providers_dir / "newbie.yaml").write_text(f"name: newbie\nmode: subprocess\nconnection: {{command: {LOCAL}}}\n")
    ok("POST", "/admin/api/reload")
    [held] = ok("GET", "/admin/api/quarantine")["quarantined"]
    assert held["name"] == "newbie" and "auto_register" in held["reason"]
    approved = ok("POST", "/admin/api/quarantine/{name}/approve", "/admin/api/quarantine/newbie/approve")
    assert approved["added"] == ["newbie"]


def test_failures_are_documented_json_errors(setup):
    gw, *_ = setup
    doc = Document(DOC_PATH.read_text())
    cases = [
        ("GET", "/admin/api/providers/{name}", "/admin/api/providers/nope", None, 404),
        ("POST", "/admin/api/providers/{name}/stop", "/admin/api/providers/pool/stop", None, 400),
        ("POST", "/admin/api/quarantine/{name}/approve", "/admin/api/quarantine/fx/approve", None, 400),
        ("GET", "/admin/api/audit", "/admin/api/audit?limit=0", None, 400),
        ("GET", "/admin/api/audit", "/admin/api/audit?colour=red", None, 400),
        ("POST", "/admin/api/reload", "/admin/api/reload?graceful=perhaps", None, 400),
        ("POST", "/admin/api/config/dry-run", None, b"providers:\n  x: {mode: remote, endpoint: 'http://127.0.0.1:1/mcp', colour: red}\n  y: {mode: nope}\n", 400),
    ]
    for method, pattern, path, body, want in cases:
        status, headers, text = request(gw, method, path or pattern, body, ADMIN)
        assert status == want, (path, status, text)
        assert headers["content-type"] == "application/json"
        doc.check(method, pattern, status, text)
    _, _, text = request(gw, "POST", "/admin/api/config/dry-run", cases[-1][3], ADMIN)
    why = json.loads(text)["error"]
    assert "providers.x.colour" in why and "providers.y.mode" in why, "every problem, with its path"
    assert request(gw, "DELETE", "/admin/api/overview", None, ADMIN)[0] == 405
    assert request(gw, "GET", "/admin/api/nothing", None, ADMIN)[0] == 404


def test_only_admins_from_here_get_in(setup):
    gw, *_ = setup
    status, headers, _ = request(gw, "GET", "/admin/api/overview")
    assert status == 401 and headers["www-authenticate"].startswith("ApiKey"), headers
    assert request(gw, "GET", "/admin/api/overview", headers={"X-API-Key": "wrong"})[0] == 401
    status, _, text = request(gw, "GET", "/admin/api/overview", headers={"X-API-Key": DEV_KEY})
    assert status == 403 and "service:dev" in json.loads(text)["error"]
    assert request(gw, "POST", "/admin/api/reload", headers={**ADMIN, "Origin": "http://evil.example"})[0] == 403
    assert request(gw, "GET", "/admin/api/overview", headers={**ADMIN, "Host": "evil.example"})[0] == 403
    same = f"http://127.0.0.1:{gw.port}"
    assert request(gw, "GET", "/admin/api/overview", headers={**ADMIN, "Origin": same})[0] == 200
    # The page and the document hold no data: public, with a strict content policy.
    status, headers, page = request(gw, "GET", "/admin/")
    assert status == 200 and "<h1>MCP Hangar</h1>" in page
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    for asset in ("/admin/app.js", "/admin/app.css", "/admin/favicon.svg"):
        assert request(gw, "GET", asset)[0] == 200, asset


def test_the_event_feed_shows_what_happens_as_it_happens(setup):
    gw, *_ = setup
    got: list[dict] = []
    opened = threading.Event()

    def follow():
        req = urllib.request.Request(f"http://127.0.0.1:{gw.port}/admin/api/events", headers=ADMIN)
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.headers["content-type"] == "text/event-stream"
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    opened.set()
                if any(e.get("type") == "config_applied" for e in got):
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert opened.wait(10) and got[0]["type"] == "hello"
    request(gw, "POST", "/admin/api/providers/local/start", headers=ADMIN)
    request(gw, "POST", "/admin/api/providers/local/stop", headers=ADMIN)
    # A change to apply: a provider removed from the candidate file.
    request(gw, "POST", "/admin/api/reload", headers=ADMIN)
    (Path(setup[2]) / "second.yaml").write_text(f"name: second\nmode: subprocess\nconnection: {{command: {LOCAL}}}\n")
    request(gw, "POST", "/admin/api/reload", headers=ADMIN)
    request(gw, "POST", "/admin/api/quarantine/second/approve", headers=ADMIN)
    t.join(20)
    kinds = [(e["type"], e.get("provider"), e.get("to") or e.get("action")) for e in got]
    assert ("provider_event", "local", "READY") in kinds and ("provider_event", "local", "COLD") in kinds, kinds
    assert ("discovery", "second", "quarantined") in kinds and ("discovery", "second", "approved") in kinds, kinds
    assert any(k[0] == "config_applied" for k in kinds), kinds
    doc = Document(DOC_PATH.read_text())
    schema = {**doc.doc["components"]["schemas"]["FeedEvent"], "components": doc.doc["components"]}
    for e in got:
        jsonschema.Draft202012Validator(schema).validate(e)
