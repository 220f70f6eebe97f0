"""Traces on the real wire: an in-test OTLP/gRPC collector (and an OTLP/HTTP receiver shaped like
Langfuse's endpoint) receive the spans of a call that retried once; the trace context from the
client's `_meta` is continued, and handed to the upstream in `_meta` and headers."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import free_port

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
ERROR = trace_pb2.Status.STATUS_CODE_ERROR


def attr_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def flatten(request: trace_service_pb2.ExportTraceServiceRequest) -> list[dict]:
    out = []
    for rs in request.resource_spans:
        resource = {a.key: attr_value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "name": s.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent": s.parent_span_id.hex(),
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "status": s.status.code,
                    "attrs": {a.key: attr_value(a.value) for a in s.attributes},
                    "resource": resource,
                })
    return out


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP/gRPC trace receiver."""

    def __init__(self):
        self.spans: list[dict] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        with self.lock:
            self.spans.extend(flatten(request))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def otlp():
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    collector.port = port
    yield collector
    server.stop(0)


@pytest.fixture
def langfuse():
    """OTLP/HTTP (protobuf) receiver at Langfuse's path, recording the Authorization header."""
    received: dict = {"spans": [], "auth": set(), "paths": set()}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(body)
            received["spans"].extend(flatten(req))
            received["auth"].add(self.headers.get("authorization"))
            received["paths"].add(self.path)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    received["port"] = server.server_address[1]
    yield received
    server.shutdown()


def modern_call(url: str, tool: str, meta: dict, arguments: dict | None = None) -> dict:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments or {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                **meta,
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_spans_of_a_call_that_retried_once_reach_otlp_and_langfuse(gateway_factory, fixture_url, otlp, langfuse):
    dead = free_port()
    gw = gateway_factory(
        f"""
providers:
  dead: {{mode: remote, endpoint: "http://127.0.0.1:{dead}/mcp", expose: false}}
  fx: {{mode: remote, endpoint: "{fixture_url}", expose: false}}
  pool: {{mode: group, strategy: weighted_round_robin, members: [dead, fx]}}
observability:
  tracing: {{enabled: true, otlp_endpoint: "http://127.0.0.1:{otlp.port}", protocol: grpc, service_name: hangar-e2e}}
  langfuse: {{enabled: true, host: "http://127.0.0.1:{langfuse['port']}", public_key: pk-test, secret_key: sk-test}}
""",
        "gateway-tracing",
    )
    trace_id, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    meta = {"traceparent": f"00-{trace_id}-{client_span}-01", "tracestate": "vendor=x", "baggage": "user=alice"}
    reply = modern_call(gw.url, "pool__trace_context", meta)
    seen = json.loads(reply["result"]["content"][0]["text"])
    gw.stop()  # a clean shutdown exports what is queued

    server = [s for s in otlp.spans if s["kind"] == SERVER]
    assert [s["name"] for s in server] == ["tools/call pool__trace_context"], otlp.spans
    request = server[0]
    assert (request["trace_id"], request["parent"]) == (trace_id, client_span), "continues the client's trace"
    assert request["attrs"]["mcp.method.name"] == "tools/call"
    assert request["attrs"]["gen_ai.tool.name"] == "pool__trace_context"
    assert request["attrs"]["mcp_hangar.outcome"] == "ok"
    assert request["resource"]["service.name"] == "hangar-e2e"

    attempts = sorted((s for s in otlp.spans if s["parent"] == request["span_id"]), key=lambda s: s["start"])
    assert [(a["kind"], a["attrs"]["mcp_hangar.provider"], a["attrs"]["mcp_hangar.outcome"]) for a in attempts] == [
        (CLIENT, "dead", "unavailable"),
        (CLIENT, "fx", "ok"),
    ]
    assert attempts[0]["status"] == ERROR and attempts[1]["status"] != ERROR
    assert all(a["trace_id"] == trace_id for a in attempts)

    # The upstream was told that the successful attempt is its parent, in _meta and in headers.
    expected = f"00-{trace_id}-{attempts[1]['span_id']}-01"
    assert seen["meta"] == {"traceparent": expected, "tracestate": "vendor=x", "baggage": "user=alice"}, seen
    assert seen["header"]["traceparent"] == expected and seen["header"]["tracestate"] == "vendor=x", seen

    # Langfuse got the same spans over OTLP/HTTP with basic auth from its keys.
    assert langfuse["paths"] == {"/api/public/otel/v1/traces"}
    assert langfuse["auth"] == {"Basic " + base64.b64encode(b"pk-test:sk-test").decode()}
    assert sorted(s["span_id"] for s in langfuse["spans"]) == sorted(s["span_id"] for s in otlp.spans)


def test_the_fast_path_is_traced_and_propagates_in_headers(gateway_factory, fixture_url, otlp):
    gw = gateway_factory(
        f"""
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
observability:
  tracing: {{enabled: true, otlp_endpoint: "http://127.0.0.1:{otlp.port}"}}
""",
        "gateway-tracing-fast",
    )
    modern_call(gw.url, "fx__echo", {}, {"text": "x"})  # learns that fx is modern: later calls take the fast path
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = f"00-{trace_id}-b7ad6b7169203331-01"
    seen = json.loads(modern_call(gw.url, "fx__trace_context", {"traceparent": parent})["result"]["content"][0]["text"])
    gw.stop()
    request = next(s for s in otlp.spans if s["name"] == "tools/call fx__trace_context")
    assert request["attrs"]["mcp_hangar.fast_path"] is True
    assert request["trace_id"] == trace_id and request["parent"] == "b7ad6b7169203331"
    (attempt,) = [s for s in otlp.spans if s["parent"] == request["span_id"]]
    # The body passes untouched on the fast path; the header names the attempt.
    assert seen["header"]["traceparent"] == f"00-{trace_id}-{attempt['span_id']}-01", seen
    assert seen["meta"]["traceparent"] == parent


def test_a_dead_collector_costs_nothing_but_a_counter(gateway_factory, fixture_url):
    nowhere = free_port()
    gw = gateway_factory(
        f"""
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
observability:
  tracing: {{enabled: true, otlp_endpoint: "http://127.0.0.1:{nowhere}", protocol: http/protobuf}}
""",
        "gateway-tracing-dead",
    )
    started = time.monotonic()
    for _ in range(20):
        assert modern_call(gw.url, "fx__echo", {}, {"text": "hi"})["result"]["content"][0]["text"] == "hi"
    assert time.monotonic() - started < 10, "calls are not held up by the exporter"
    deadline = time.monotonic() + 15
    while 'mcp_hangar_trace_export_failures_total{exporter="otlp"}' not in metrics(gw):
        assert time.monotonic() < deadline, "the failed export was not counted"
        time.sleep(0.5)


def metrics(gw) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/metrics", timeout=5) as r:
        return r.read().decode()
