"""A Kubernetes API server's pod list and watch, enough for a real client (`kube` in the gateway):

- `GET /api/v1/pods` and `/api/v1/namespaces/{ns}/pods` with `labelSelector` (`k=v`, comma-separated)
  list pods as a `PodList` whose `metadata.resourceVersion` is the server's current version;
- with `watch=true&resourceVersion=N` they stream the changes after N as JSON lines (`ADDED`,
  `MODIFIED`, `DELETED`), a `BOOKMARK` every second, and end at `timeoutSeconds`;
- a watch from a version older than the last `compact()` gets `ERROR` 410 Gone ("Expired"), so
  the client must list again;
- `/version` and `/api` answer as an API server does.

No API server can be downloaded here (see the README's "Tests"); this is what the Kubernetes
source is tested against. Pods are changed from the test through `put` and `delete`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def pod(namespace: str, name: str, ip: str, annotations: dict, labels: dict | None = None, ready: bool = True) -> dict:
    """A Pod object as the API server returns it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "annotations": annotations, "labels": labels or {}},
        "spec": {"containers": [{"name": "mcp", "image": "hangar-upstream"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeKubeApi:
    def __init__(self, port: int):
        self.lock = threading.Condition()
        self.version = 1
        self.compacted = 0
        self.epoch = 0
        self.pods: dict[tuple[str, str], dict] = {}
        self.events: list[tuple[int, str, dict]] = []
        self.lists = 0
        self.watches = 0
        self.gone = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                parts = url.path.strip("/").split("/")
                if url.path == "/version":
                    return self.json({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake"})
                if parts[:2] == ["api", "v1"] and parts[-1] == "pods" and len(parts) in (3, 5):
                    namespace = parts[3] if len(parts) == 5 else None
                    if query.get("watch") in ("true", "1"):
                        return self.watch(namespace, query)
                    return self.json(api.list(namespace, query.get("labelSelector")))
                self.send_error(404)

            def json(self, body: dict, status: int = 200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def watch(self, namespace: str | None, query: dict):
                api.watches += 1
                since = int(query.get("resourceVersion") or 0)
                deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 290), 290)
                selector = query.get("labelSelector")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
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
                            fresh = [(v, t, o) for v, t, o in api.events if v > sent]
                            current = api.version
                        for v, kind, obj in fresh:
                            if api.matches(obj, namespace, selector):
                                self.line({"type": kind, "object": obj})
                            sent = v
                        sent = max(sent, current)
                        if bool(query.get("allowWatchBookmarks")) and not fresh:
                            self.line({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(sent)}}})
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

    def list(self, namespace: str | None, selector: str | None) -> dict:
        with self.lock:
            self.lists += 1
            items = [json.loads(json.dumps(p)) for p in self.pods.values() if self.matches(p, namespace, selector)]
            return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def put(self, obj: dict) -> None:
        with self.lock:
            self.version += 1
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            kind = "MODIFIED" if key in self.pods else "ADDED"
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.pods[key] = obj
            self.events.append((self.version, kind, obj))
            self.lock.notify_all()

    def delete(self, namespace: str, name: str) -> None:
        with self.lock:
            obj = self.pods.pop((namespace, name))
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, "DELETED", obj))
            self.lock.notify_all()

    def put_unseen(self, obj: dict) -> None:
        """A change the watch history lost: the history is compacted past it and every watch
        ends, so a client resuming its watch gets 410 Gone and must list again to see it."""
        with self.lock:
            self.version += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.pods[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
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
