"""What a platform team installs, checked as far as this machine allows: the Helm chart linted,
rendered and its manifests validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors), its configuration loaded by the gateway; the compose file,
the Prometheus configuration and alerts, the Grafana dashboard; and the container image built
from the Dockerfile's real runtime stage and run non-root on a read-only root filesystem.

The tools come from .ci/run: helm (HANGAR_HELM), docker-compose and promtool (Debian), podman
(the container engine). Without one, its test is skipped saying which."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import HANGAR_BIN, LOGS, REPO, free_port, text

CHART = REPO / "deploy" / "helm" / "mcp-hangar"
HELM = os.environ.get("HANGAR_HELM") or shutil.which("helm")
K8S_VERSION = "1.37.0"
KEY_HASH = "sha256:" + "ab" * 32


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if not HELM:
        pytest.skip("no helm binary: HANGAR_HELM unset (.ci/run installs one)")
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check, timeout=60)


def render(*sets: str) -> list[dict]:
    args = ["template", "team", str(CHART), "--namespace", "gateways", "--include-crds"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def kind(docs: list[dict], k: str) -> list[dict]:
    return [d for d in docs if d["kind"] == k]


def check_config(text_: str, name: str, env: dict[str, str] | None = None) -> None:
    path = LOGS / name
    path.write_text(text_)
    r = subprocess.run([str(HANGAR_BIN), "check-config", str(path)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=30)
    assert r.returncode == 0, f"{name} does not load: {r.stdout}{r.stderr}"


VALUE_SETS = [
    [],
    ["rbac.create=true", "metrics.serviceMonitor.enabled=true", "autoscaling.enabled=true", "networkPolicy.enabled=true"],
    ["rbac.create=true", "rbac.namespaces={mcp-a,mcp-b}", "rbac.managePods=true", "apiKey.existingSecret=", "podDisruptionBudget.enabled=false"],
]


def test_the_chart_lints():
    r = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("sets", VALUE_SETS, ids=["defaults", "everything-on", "namespaced"])
def test_the_rendered_manifests_are_valid_kubernetes(sets):
    import kubernetes_validate

    docs = render(*sets)
    for d in docs:
        if d["kind"] == "ServiceMonitor":  # a Prometheus Operator kind: no schema in Kubernetes'
            assert d["apiVersion"] == "monitoring.coreos.com/v1"
            assert set(d["spec"]) == {"selector", "endpoints"}
            assert d["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
            continue
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    (deployment,) = kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")} == {
        "startupProbe": "/health/startup", "livenessProbe": "/health/live", "readinessProbe": "/health/ready"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 65532
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["terminationGracePeriodSeconds"] == 30
    assert re.fullmatch(r"[0-9a-f]{64}", deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
    crds = {d["metadata"]["name"] for d in kind(docs, "CustomResourceDefinition")}
    assert crds == {"mcpproviders.mcp-hangar.io", "mcpprovidergroups.mcp-hangar.io"}
    # The configuration the pods get is one the gateway loads.
    (cm,) = kind(docs, "ConfigMap")
    check_config(cm["data"]["config.yaml"], f"chart-config-{len(sets)}.yaml", {"MCP_HANGAR_API_KEY_HASH": KEY_HASH})


def test_a_changed_configuration_changes_the_checksum_and_so_rolls_the_pods():
    def checksum(*sets):
        (d,) = kind(render(*sets), "Deployment")
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum() == checksum()
    assert checksum() != checksum("config.server.port=9000")


def test_unknown_values_are_refused_with_their_path():
    r = helm("template", "team", str(CHART), "--set", "rbac.creat=true", "--set", "servic.port=1", check=False)
    assert r.returncode != 0
    assert "creat" in r.stderr and "servic" in r.stderr, r.stderr


def test_discovery_rbac_is_read_only_unless_asked():
    docs = render("rbac.create=true")
    (role,) = kind(docs, "ClusterRole")
    verbs = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert verbs[("pods",)] == {"get", "list", "watch"}
    assert verbs[("mcpproviders", "mcpprovidergroups")] == {"get", "list", "watch"}
    assert verbs[("mcpproviders/status", "mcpprovidergroups/status")] == {"get", "patch", "update"}
    assert len(kind(docs, "ClusterRoleBinding")) == 1 and not kind(docs, "RoleBinding")
    docs = render("rbac.create=true", "rbac.writeStatus=false", "rbac.managePods=true", "rbac.namespaces={a,b}")
    (role,) = kind(docs, "ClusterRole")
    verbs = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert verbs[("pods",)] == {"get", "list", "watch", "create", "delete"}
    assert ("mcpproviders/status", "mcpprovidergroups/status") not in verbs
    assert {b["metadata"]["namespace"] for b in kind(docs, "RoleBinding")} == {"a", "b"}
    assert not kind(docs, "ClusterRoleBinding")
    assert all(d["kind"] not in ("ClusterRole", "RoleBinding") for d in render())
    # deploy/rbac.yaml (for kubectl without Helm) grants what the chart does with pod management on.
    (plain,) = [d for d in yaml.safe_load_all((REPO / "deploy/rbac.yaml").read_text()) if d and d["kind"] == "ClusterRole"]
    (chart,) = kind(render("rbac.create=true", "rbac.managePods=true"), "ClusterRole")
    as_set = lambda rules: {(tuple(r["apiGroups"]), tuple(r["resources"]), frozenset(r["verbs"])) for r in rules}  # noqa: E731
    assert as_set(plain["rules"]) == as_set(chart["rules"])


def test_the_compose_file_and_what_it_mounts():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["services"]["hangar"]["build"] == "."
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (REPO / source).exists(), f"{source} is mounted but missing"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port}: published beyond the host's loopback"
    check_config((REPO / "deploy/docker/compose.yaml").read_text(), "compose-gateway.yaml")
    check_config((REPO / "deploy/docker/config.yaml").read_text(), "image-gateway.yaml")
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it); the file was checked by parsing only")
    r = subprocess.run([tool, "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def metric_names() -> set[str]:
    return set(re.findall(r"^\| `(mcp_hangar_\w+)`", (REPO / "docs/metrics.md").read_text(), re.M))


def series_in(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"mcp_hangar_\w+", expr)}


def test_prometheus_config_alerts_and_grafana_dashboard():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/run installs prometheus)")
    work = LOGS / "prometheus-check"
    work.mkdir(exist_ok=True)
    alerts = REPO / "deploy/prometheus/alerts.yml"
    shutil.copy(alerts, work / "alerts.yml")
    conf = (REPO / "deploy/prometheus/prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(work / "alerts.yml"))
    (work / "prometheus.yml").write_text(conf)
    r = subprocess.run([promtool, "check", "config", str(work / "prometheus.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    known = metric_names()
    assert len(known) > 20
    for rule in yaml.safe_load(alerts.read_text())["groups"][0]["rules"]:
        assert series_in(rule["expr"]) <= known, rule["expr"]
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/mcp-hangar.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 20
    for e in exprs:
        assert series_in(e) and series_in(e) <= known, f"unknown series in {e}"
    # Every query is valid PromQL (Grafana's $__rate_interval standing in as 5m).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    (work / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))
    r = subprocess.run([promtool, "check", "rules", str(work / "dashboard-rules.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    provisioning = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/mcp-hangar.yaml").read_text())
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


ENGINE = os.environ.get("DOCKER_HOST") and shutil.which("podman")


@pytest.mark.skipif(not ENGINE, reason="no container engine (.ci/container-engine.sh starts one)")
@pytest.mark.anyio
async def test_the_image_runs_non_root_on_a_read_only_root_and_serves():
    from mcp.client import Client

    subprocess.run([str(REPO / ".ci/runtime-base.sh"), str(HANGAR_BIN), str(REPO / "target" / "runtime-base")], check=True, timeout=600)
    subprocess.run(["podman", "build", "-q", "--format", "docker", "-t", "localhost/mcp-hangar:test",
                    "--build-arg", "RUNTIME_IMAGE=localhost/hangar-runtime-base:test",
                    "--build-arg", "BINARY=localhost/hangar-binary:test", str(REPO)], check=True, timeout=600,
                   capture_output=True)
    inspect = json.loads(subprocess.run(["podman", "image", "inspect", "localhost/mcp-hangar:test"], capture_output=True, text=True, check=True).stdout)[0]
    cfg = inspect["Config"]
    assert cfg["User"] == "65532:65532"
    health = inspect.get("Healthcheck") or {}
    assert "probe" in json.dumps(health) and "/health/live" in json.dumps(health), inspect.keys()
    port = free_port()
    cid = subprocess.run(["podman", "run", "-d", "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
                          "-p", f"127.0.0.1:{port}:8000", "localhost/mcp-hangar:test"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    logs = subprocess.run(["podman", "logs", cid], capture_output=True, text=True).stdout
                    pytest.fail(f"the container never became ready: {logs}")
                time.sleep(0.2)
        hc = subprocess.run(["podman", "healthcheck", "run", cid], capture_output=True, text=True)
        assert hc.returncode == 0, hc.stdout + hc.stderr
        # The subprocess provider runs inside the image (the binary's demo server).
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="2026-07-28", read_timeout_seconds=30) as c:
            assert {"demo__echo", "demo__add", "demo__time"} <= {t.name for t in (await c.list_tools()).tools}
            assert text(await c.call_tool("demo__echo", {"text": "from the image"})) == "from the image"
        top = subprocess.run(["podman", "top", cid, "user"], capture_output=True, text=True).stdout.split()
        assert "root" not in top[1:], top
        started = time.monotonic()
        subprocess.run(["podman", "stop", "-t", "20", cid], check=True, capture_output=True, timeout=60)
        assert time.monotonic() - started < 15, "SIGTERM drained and stopped the gateway, not the kill after the grace period"
        state = json.loads(subprocess.run(["podman", "inspect", cid], capture_output=True, text=True).stdout)[0]["State"]
        assert state["ExitCode"] == 0, state
    finally:
        subprocess.run(["podman", "rm", "-f", cid], capture_output=True)
