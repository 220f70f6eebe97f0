"""A Kubernetes API server's list, watch and write paths for pods and the MCP Hangar custom
resources, enough for a real client (`kube` in the gateway):

- `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods` and, for custom resources,
  `/apis/mcp-hangar.io/v1alpha1/[namespaces/{ns}/]{mcpproviders,mcpprovidergroups}` with
  `labelSelector` (`k=v`, comma-separated) list objects with the server's current
  `metadata.resourceVersion`;
- with `watch=true&resourceVersion=N` they stream the changes after N as JSON lines (`ADDED`,
  `MODIFIED`, `DELETED`), a `BOOKMARK` every second, and end at `timeoutSeconds`;
- a watch from a version older than the last `compact()` gets `ERROR` 410 Gone ("Expired"), so
  the client must list again;
- `POST .../namespaces/{ns}/pods` creates a pod (Pending, 409 when the name is taken),
  `DELETE .../pods/{name}` removes one, `PATCH .../{plural}/{name}/status` applies a JSON merge
  patch to a custom resource's status; objects get uids, generations (bumped when the spec
  changes) and resource versions as the real server gives them, and deleting an object removes
  the pods it owns (the garbage collector's part);
- a custom resource kind can be left uninstalled (`crds=False`): its paths answer 404;
- `/version` and `/api` answer as an API server does.

No API server can be downloaded here (see the README's "Tests"); this is what the Kubernetes
source is tested against. Objects are changed from the test (`put`, `delete`, and the kubelet's
part: `run_pod`, `end_pod`).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

GROUP = "mcp-hangar.io/v1alpha1"
KINDS = {"pods": ("v1", "Pod"), "mcpproviders": (GROUP, "MCPProvider"), "mcpprovidergroups": (GROUP, "MCPProviderGroup")}


def pod(namespace: str, name: str, ip: str, annotations: dict, labels: dict | None = None, ready: bool = True) -> dict:
    """A Pod object as the API server returns it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "annotations": annotations, "labels": labels or {}},
        "spec": {"containers": [{"name": "mcp", "image": "hangar-upstream"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def provider(namespace: str, name: str, spec: dict, labels: dict | None = None) -> dict:
    """An MCPProvider object."""
    return {"apiVersion": GROUP, "kind": "MCPProvider", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}, "spec": spec}


def group(namespace: str, name: str, spec: dict) -> dict:
    """An MCPProviderGroup object."""
    return {"apiVersion": GROUP, "kind": "MCPProviderGroup", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeKubeApi:
    def __init__(self, port: int, crds: bool = True):
        self.lock = threading.Condition()
        self.version = 1
        self.compacted = 0
        self.epoch = 0
        self.crds = crds
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.events: list[tuple[int, str, str, dict]] = []
        self.lists = 0
        self.watches = 0
        self.gone = 0
        self.status_patches: list[tuple[str, str, str, dict]] = []
        self.created: list[dict] = []
        self.deleted: list[tuple[str, str]] = []
        self.uids = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def route(self):
                """(plural, namespace, name, subresource) of the path, or None."""
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if parts[:2] == ["api", "v1"]:
                    rest = parts[2:]
                elif parts[:3] == ["apis", "mcp-hangar.io", "v1alpha1"]:
                    rest = parts[3:]
                    if not api.crds:
                        return None
                else:
                    return None
                namespace = None
                if rest[:1] == ["namespaces"] and len(rest) >= 3:
                    namespace, rest = rest[1], rest[2:]
                if not rest or rest[0] not in KINDS:
                    return None
                return rest[0], namespace, (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/version":
                    return self.json({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake"})
                route = self.route()
                if route is None or route[2] is not None:
                    return self.status(404, "NotFound", "the server could not find the requested resource")
                plural, namespace, _, _ = route
                if query.get("watch") in ("true", "1"):
                    return self.watch(plural, namespace, query)
                return self.json(api.list(plural, namespace, query.get("labelSelector")))

            def do_POST(self):  # noqa: N802
                route = self.route()
                body = self.body()
                if route is None or route[0] != "pods" or route[1] is None or route[2] is not None:
                    return self.status(404, "NotFound", "not found")
                body.setdefault("metadata", {})["namespace"] = route[1]
                created = api.create(body)
                if created is None:
                    return self.status(409, "AlreadyExists", f'pods "{body["metadata"].get("name")}" already exists')
                self.json(created, 201)

            def do_DELETE(self):  # noqa: N802
                route = self.route()
                self.body()
                if route is None or route[1] is None or route[2] is None:
                    return self.status(404, "NotFound", "not found")
                gone = api.remove(route[0], route[1], route[2])
                if gone is None:
                    return self.status(404, "NotFound", f'{route[0]} "{route[2]}" not found')
                self.json(gone)

            def do_PATCH(self):  # noqa: N802
                route = self.route()
                body = self.body()
                if route is None or route[3] != "status" or route[1] is None:
                    return self.status(404, "NotFound", "not found")
                if "merge-patch" not in (self.headers.get("content-type") or ""):
                    return self.status(415, "UnsupportedMediaType", "only merge patches here")
                patched = api.patch_status(route[0], route[1], route[2], body)
                if patched is None:
                    return self.status(404, "NotFound", f'{route[0]} "{route[2]}" not found')
                self.json(patched)

            def body(self) -> dict:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else {}

            def json(self, body: dict, status: int = 200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def status(self, code: int, reason: str, message: str):
                self.json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}, code)

            def watch(self, plural: str, namespace: str | None, query: dict):
                api.watches += 1
                since = int(query.get("resourceVersion") or 0)
                deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 290), 290)
                selector = query.get("labelSelector")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                api_version, kind = KINDS[plural]
                try:
                    if since < api.compacted:
                        api.gone += 1
                        self.line({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                                              "message": f"too old resource version: {since} ({api.compacted})", "reason": "Expired", "code": 410}})
                        return self.end()
                    sent = since
                    epoch = api.epoch
                    while time.monotonic() < deadline and api.epoch == epoch:
                        with api.lock:
                            api.lock.wait_for(lambda: api.version > sent, timeout=1.0)
                            if api.epoch != epoch:
                                break  # the history this watch follows is gone
                            fresh = [(v, p, t, o) for v, p, t, o in api.events if v > sent]
                            current = api.version
                        for v, p, event, obj in fresh:
                            if p == plural and api.matches(obj, namespace, selector):
                                self.line({"type": event, "object": obj})
                            sent = v
                        sent = max(sent, current)
                        if bool(query.get("allowWatchBookmarks")) and not fresh:
                            self.line({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(sent)}}})
                    self.end()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def line(self, event: dict):
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def end(self):
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def plural(obj: dict) -> str:
        return next(p for p, (_, kind) in KINDS.items() if kind == obj.get("kind", "Pod"))

    @staticmethod
    def matches(obj: dict, namespace: str | None, selector: str | None) -> bool:
        meta = obj["metadata"]
        if namespace and meta.get("namespace") != namespace:
            return False
        labels = meta.get("labels") or {}
        for term in filter(None, (selector or "").split(",")):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        return True

    def list(self, plural: str, namespace: str | None, selector: str | None) -> dict:
        api_version, kind = KINDS[plural]
        with self.lock:
            self.lists += 1
            items = [json.loads(json.dumps(o)) for (p, _, _), o in self.objects.items() if p == plural and self.matches(o, namespace, selector)]
            return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def _store(self, plural: str, obj: dict, event: str | None = None) -> dict:
        """Stores `obj` as the next version (the lock is held) and records its event."""
        self.version += 1
        meta = obj["metadata"]
        key = (plural, meta["namespace"], meta["name"])
        before = self.objects.get(key)
        if "uid" not in meta:
            meta["uid"] = before["metadata"]["uid"] if before else self._uid()
        if before is None:
            meta["generation"] = 1
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        else:
            changed = before.get("spec") != obj.get("spec")
            meta["generation"] = before["metadata"].get("generation", 1) + (1 if changed else 0)
            meta.setdefault("creationTimestamp", before["metadata"].get("creationTimestamp"))
        meta["resourceVersion"] = str(self.version)
        self.objects[key] = obj
        self.events.append((self.version, plural, event or ("MODIFIED" if before else "ADDED"), obj))
        self.lock.notify_all()
        return json.loads(json.dumps(obj))

    def _uid(self) -> str:
        self.uids += 1
        return f"00000000-0000-4000-8000-{self.uids:012d}"

    def put(self, obj: dict) -> None:
        """Creates or replaces an object (pod or custom resource), as `kubectl apply` would."""
        with self.lock:
            obj = json.loads(json.dumps(obj))
            plural = self.plural(obj)
            before = self.objects.get((plural, obj["metadata"]["namespace"], obj["metadata"]["name"]))
            if before is not None and "status" in before and plural != "pods":
                obj["status"] = before["status"]  # the spec's writer does not write status
            self._store(plural, obj)

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return json.loads(json.dumps(obj)) if obj else None

    def create(self, obj: dict) -> dict | None:
        with self.lock:
            meta = obj["metadata"]
            if ("pods", meta["namespace"], meta["name"]) in self.objects:
                return None
            obj["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
            self.created.append(json.loads(json.dumps(obj)))
            return self._store("pods", obj, "ADDED")

    def remove(self, plural: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            obj = self.objects.pop((plural, namespace, name), None)
            if obj is None:
                return None
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, plural, "DELETED", obj))
            if plural == "pods":
                self.deleted.append((namespace, name))
            uid = obj["metadata"].get("uid")
            owned = [k for k, o in self.objects.items() if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]
            for k in owned:
                self.remove(*k)
            self.lock.notify_all()
            return obj

    def delete(self, namespace: str, name: str, plural: str = "pods") -> None:
        assert self.remove(plural, namespace, name) is not None, (plural, namespace, name)

    def patch_status(self, plural: str, namespace: str, name: str, patch: dict) -> dict | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            if obj is None:
                return None
            obj = json.loads(json.dumps(obj))
            self.status_patches.append((plural, namespace, name, patch))
            merged = merge_patch({"status": obj.get("status")}, patch)
            if merged.get("status") is None:
                obj.pop("status", None)
            else:
                obj["status"] = merged["status"]
            return self._store(plural, obj, "MODIFIED")

    def status_of(self, plural: str, namespace: str, name: str) -> dict:
        obj = self.get(plural, namespace, name) or {}
        return obj.get("status") or {}

    def run_pod(self, namespace: str, name: str, ip: str = "127.0.0.1") -> None:
        """The kubelet's part: the pod runs and is Ready at `ip`."""
        with self.lock:
            obj = json.loads(json.dumps(self.objects[("pods", namespace, name)]))
            obj["status"] = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}],
                             "containerStatuses": [{"name": "provider", "ready": True, "state": {"running": {}}}]}
            self._store("pods", obj)

    def end_pod(self, namespace: str, name: str, exit_code: int = 1, reason: str = "Error") -> None:
        """The kubelet's part: the pod's container exits."""
        with self.lock:
            obj = json.loads(json.dumps(self.objects[("pods", namespace, name)]))
            obj["status"] = {"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}],
                             "containerStatuses": [{"name": "provider", "ready": False, "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}]}
            self._store("pods", obj)

    def put_unseen(self, obj: dict) -> None:
        """A change the watch history lost: the history is compacted past it and every watch
        ends, so a client resuming its watch gets 410 Gone and must list again to see it."""
        with self.lock:
            obj = json.loads(json.dumps(obj))
            self._store(self.plural(obj), obj)
            self.compacted = self.version
            self.events.clear()
            self.epoch += 1
            self.lock.notify_all()

    def kubeconfig(self) -> str:
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters: [{{name: fake, cluster: {{server: \"{self.url}\"}}}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: default}}]\n"
            "users: [{name: fake, user: {token: not-checked}}]\n"
        )

    def stop(self) -> None:
        self.server.shutdown()
