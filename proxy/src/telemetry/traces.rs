//! OpenTelemetry traces: one server span per client request, one client span per upstream attempt
//! (so retries and failovers show), exported over OTLP (gRPC or HTTP/protobuf) and, when
//! configured, to Langfuse's OTLP endpoint with basic auth — the same spans, no bespoke client.
//!
//! Context comes from the request's `_meta` (`traceparent`, `tracestate`, `baggage`, as the
//! 2026-07-28 spec puts it) or, failing that, its HTTP headers, and goes to upstreams the same
//! two ways. With tracing off nothing here runs: callers hold `None`.
//!
//! Exporting happens on the SDK's batch thread. The OTLP transports need a Tokio reactor, so
//! exports run on a small runtime of their own (never the request path's); a failed export is
//! counted (`mcp_hangar_trace_export_failures_total`) and the batch dropped. A full queue drops
//! spans rather than waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::w3c;
use base64::Engine as _;
use hangar_config::{Observability, OtlpProtocol};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::telemetry::metrics::Metrics;

/// Longest wait for a collector per batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter could not be built (bad endpoint, TLS set-up).
    #[error("cannot set up the {exporter} trace exporter: {reason}")]
    Exporter {
        /// `otlp` or `langfuse`.
        exporter: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The export runtime could not start.
    #[error("cannot start the trace export runtime: {0}")]
    Runtime(std::io::Error),
}

/// The gateway's tracer, when tracing is on.
pub struct Traces {
    tracer: Option<SdkTracer>,
    provider: Option<SdkTracerProvider>,
    /// Runs the exporters' I/O; kept alive as long as the provider.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Traces {
    fn drop(&mut self) {
        // The state holding this may be dropped on an async thread, where a runtime may not
        // block to shut down.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Traces {
    /// No tracing.
    pub fn off() -> Self {
        Self { tracer: None, provider: None, runtime: None }
    }

    /// Tracing as `config` says: OTLP when `tracing.enabled`, Langfuse when `langfuse.enabled`.
    pub fn start(config: &Observability, metrics: &Arc<Metrics>) -> Result<Self, TraceError> {
        if !config.tracing.enabled && !config.langfuse.enabled {
            return Ok(Self::off());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("trace-export")
            .enable_all()
            .build()
            .map_err(TraceError::Runtime)?;
        let resource = Resource::builder()
            .with_service_name(config.tracing.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource).with_sampler(
            opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(opentelemetry_sdk::trace::Sampler::AlwaysOn)),
        );
        let _in_runtime = runtime.enter();
        if config.tracing.enabled {
            let t = &config.tracing;
            let exporter = match t.protocol {
                OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(t.otlp_endpoint.clone())
                    .with_timeout(EXPORT_TIMEOUT)
                    .build(),
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(http_traces_url(&t.otlp_endpoint))
                    .with_timeout(EXPORT_TIMEOUT)
                    .build(),
            }
            .map_err(|e| TraceError::Exporter { exporter: "otlp", reason: e.to_string() })?;
            builder = builder.with_batch_exporter(OnRuntime::new(exporter, runtime.handle(), metrics, "otlp"));
        }
        if config.langfuse.enabled {
            let l = &config.langfuse;
            let credentials = format!("{}:{}", l.public_key.expose(), l.secret_key.expose());
            let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{}/api/public/otel/v1/traces", l.host.trim_end_matches('/')))
                .with_headers(HashMap::from([("Authorization".to_owned(), auth)]))
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| TraceError::Exporter { exporter: "langfuse", reason: e.to_string() })?;
            builder = builder.with_batch_exporter(OnRuntime::new(exporter, runtime.handle(), metrics, "langfuse"));
        }
        drop(_in_runtime);
        let provider = builder.build();
        let tracer = provider.tracer("mcp-hangar");
        Ok(Self { tracer: Some(tracer), provider: Some(provider), runtime: Some(runtime) })
    }

    /// Whether spans are made.
    pub fn enabled(&self) -> bool {
        self.tracer.is_some()
    }

    /// Starts the server span of a request to `method` (`target`: the tool, prompt or URI), as a
    /// child of the caller's context (`_meta` first, then HTTP headers).
    pub fn request(
        &self,
        method: &str,
        target: Option<&str>,
        parent: &Propagated<'_>,
        attrs: Vec<KeyValue>,
    ) -> Option<RequestTrace> {
        let tracer = self.tracer.as_ref()?;
        let parent_cx = parent.context();
        let name = match target {
            Some(t) => format!("{method} {t}"),
            None => method.to_owned(),
        };
        let mut attributes = vec![KeyValue::new("mcp.method.name", method.to_owned())];
        if method == "tools/call" {
            if let Some(t) = target {
                attributes.push(KeyValue::new("gen_ai.tool.name", t.to_owned()));
                attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            }
        }
        attributes.extend(attrs);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent_cx);
        Some(RequestTrace {
            cx: parent_cx.with_span(span),
            tracer: tracer.clone(),
            baggage: parent.baggage.map(str::to_owned),
        })
    }

    /// Exports what is queued and stops the exporters (at shutdown).
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!("trace export shutdown: {e}");
            }
        }
    }
}

/// Where `path`-less OTLP/HTTP endpoints send traces: `<base>/v1/traces` (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` means it), unless the URL already names the path.
fn http_traces_url(endpoint: &str) -> String {
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// Trace context a request carried, each field kept only when it is valid W3C syntax
/// ([`super::w3c`]): what is dropped here can never reach an upstream request header.
#[derive(Debug, Default, Clone, Copy)]
pub struct Propagated<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
    baggage: Option<&'a str>,
}

impl<'a> Propagated<'a> {
    /// The fields as received; invalid ones are dropped (a `tracestate` or `baggage` without a
    /// valid `traceparent` has nothing to belong to and is dropped too).
    pub fn new(traceparent: Option<&'a str>, tracestate: Option<&'a str>, baggage: Option<&'a str>) -> Self {
        let Some(traceparent) = traceparent.filter(|t| w3c::traceparent_ok(t)) else { return Self::default() };
        Self {
            traceparent: Some(traceparent),
            tracestate: tracestate.filter(|t| w3c::tracestate_ok(t)),
            baggage: baggage.filter(|b| w3c::baggage_ok(b)),
        }
    }

    /// `traceparent`, if valid.
    pub fn traceparent(&self) -> Option<&'a str> {
        self.traceparent
    }

    /// `tracestate`, if valid and with a valid `traceparent`.
    pub fn tracestate(&self) -> Option<&'a str> {
        self.tracestate
    }

    /// From `_meta` when it has a valid `traceparent`, else from the HTTP headers.
    pub fn pick(meta: Propagated<'a>, headers: Propagated<'a>) -> Self {
        if meta.traceparent.is_some() {
            meta
        } else {
            headers
        }
    }

    /// From a `_meta` object.
    pub fn from_meta(meta: Option<&'a serde_json::Value>) -> Self {
        let get = |k: &str| meta.and_then(|m| m.get(k)).and_then(serde_json::Value::as_str);
        Self::new(get("traceparent"), get("tracestate"), get("baggage"))
    }

    /// From HTTP headers.
    pub fn from_headers(headers: &'a impl crate::proto::fields::Fields) -> Self {
        Self::new(headers.text("traceparent"), headers.text("tracestate"), headers.text("baggage"))
    }

    fn context(&self) -> Context {
        struct Fields<'f>(&'f Propagated<'f>);
        impl Extractor for Fields<'_> {
            fn get(&self, key: &str) -> Option<&str> {
                match key {
                    "traceparent" => self.0.traceparent,
                    "tracestate" => self.0.tracestate,
                    _ => None,
                }
            }
            fn keys(&self) -> Vec<&str> {
                vec!["traceparent", "tracestate"]
            }
        }
        TraceContextPropagator::new().extract(&Fields(self))
    }
}

/// A request being traced.
#[derive(Clone)]
pub struct RequestTrace {
    cx: Context,
    tracer: SdkTracer,
    baggage: Option<String>,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace").field("span", &self.cx.span().span_context().span_id()).finish()
    }
}

impl RequestTrace {
    /// Adds an attribute to the request span.
    pub fn set(&self, kv: KeyValue) {
        self.cx.span().set_attribute(kv);
    }

    /// Starts the client span of attempt `attempt` (1-based) at `provider`.
    pub fn attempt(&self, provider: &str, attempt: usize) -> AttemptTrace {
        let span = self
            .tracer
            .span_builder(format!("attempt {provider}"))
            .with_kind(SpanKind::Client)
            .with_attributes(vec![
                KeyValue::new("mcp_hangar.provider", provider.to_owned()),
                KeyValue::new("mcp_hangar.attempt", i64::try_from(attempt).unwrap_or(i64::MAX)),
            ])
            .start_with_context(&self.tracer, &self.cx);
        AttemptTrace { cx: self.cx.with_span(span), baggage: self.baggage.clone() }
    }

    /// Ends the request span: `error` marks it failed.
    pub fn end(&self, outcome: &str, error: Option<&str>) {
        finish(&self.cx, outcome, error);
    }
}

/// One upstream attempt being traced.
pub struct AttemptTrace {
    cx: Context,
    baggage: Option<String>,
}

impl AttemptTrace {
    /// The fields to send upstream (`traceparent`, `tracestate`, `baggage`), naming this span as
    /// the parent.
    pub fn propagation(&self) -> Vec<(&'static str, String)> {
        struct Out(Vec<(&'static str, String)>);
        impl Injector for Out {
            fn set(&mut self, key: &str, value: String) {
                match key {
                    "traceparent" => self.0.push(("traceparent", value)),
                    "tracestate" if !value.is_empty() => self.0.push(("tracestate", value)),
                    _ => {}
                }
            }
        }
        let mut out = Out(Vec::with_capacity(3));
        TraceContextPropagator::new().inject_context(&self.cx, &mut out);
        if let Some(b) = &self.baggage {
            out.0.push(("baggage", b.clone()));
        }
        out.0
    }

    /// Writes the propagation fields into `params._meta` (creating it if needed).
    pub fn inject_meta(&self, params: &mut serde_json::Value) {
        let Some(obj) = params.as_object_mut() else { return };
        let meta = obj.entry("_meta").or_insert_with(|| serde_json::json!({}));
        if let Some(meta) = meta.as_object_mut() {
            for (k, v) in self.propagation() {
                meta.insert(k.to_owned(), v.into());
            }
        }
    }

    /// Adds an attribute to the attempt span.
    pub fn set(&self, kv: KeyValue) {
        self.cx.span().set_attribute(kv);
    }

    /// Ends the attempt span: `error` marks it failed.
    pub fn end(&self, outcome: &str, error: Option<&str>) {
        finish(&self.cx, outcome, error);
    }
}

fn finish(cx: &Context, outcome: &str, error: Option<&str>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("mcp_hangar.outcome", outcome.to_owned()));
    if let Some(e) = error {
        span.set_attribute(KeyValue::new("error.type", outcome.to_owned()));
        span.set_status(Status::error(e.to_owned()));
    }
    span.end();
}

/// A span exporter whose exports run on the trace runtime, counting failures.
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    name: &'static str,
}

impl<E: std::fmt::Debug> std::fmt::Debug for OnRuntime<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnRuntime").field("exporter", &self.name).field("inner", &self.inner).finish()
    }
}

impl<E: SpanExporter + 'static> OnRuntime<E> {
    fn new(inner: E, runtime: &tokio::runtime::Handle, metrics: &Arc<Metrics>, name: &'static str) -> Self {
        Self { inner: Arc::new(inner), runtime: runtime.clone(), metrics: metrics.clone(), name }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        let result = match self.runtime.spawn(async move { inner.export(batch).await }).await {
            Ok(r) => r,
            Err(e) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(e.to_string())),
        };
        if let Err(e) = &result {
            self.metrics.trace_export_failures.with_label_values(&[self.name]).inc();
            tracing::debug!(exporter = self.name, "trace export failed: {e}");
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _in_runtime = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
