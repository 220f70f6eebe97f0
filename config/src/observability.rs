//! Decoding of the `observability` section: tracing (with its environment switches), metrics,
//! Langfuse and the audit log.

use std::time::Duration;

use serde_norway::Value;

use crate::decode::{child, Decoder};
use crate::model::{Audit, Fsync, Langfuse, Metrics, Observability, OtlpProtocol, Tracing};
use crate::sections::checked;
use crate::validate::{check_endpoint_path, check_http_url};
use crate::Secret;

const OBSERVABILITY_KEYS: &[&str] = &["tracing", "metrics", "langfuse", "audit", "access_log"];
const TRACING_KEYS: &[&str] = &["enabled", "otlp_endpoint", "protocol", "service_name"];
const METRICS_KEYS: &[&str] = &["enabled", "endpoint"];
const LANGFUSE_KEYS: &[&str] = &["enabled", "public_key", "secret_key", "host"];
const AUDIT_KEYS: &[&str] =
    &["enabled", "path", "max_bytes", "keep", "fsync", "fsync_interval_s", "arguments", "redact"];

/// The standard OpenTelemetry variable for the collector.
const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Turns tracing on or off whatever the file says (as in the Python MCP Hangar).
const TRACING_SWITCH_VAR: &str = "MCP_TRACING_ENABLED";

pub(crate) fn decode_observability(d: &mut Decoder<'_>, v: Option<(String, &Value)>) -> Observability {
    let mut out = Observability {
        tracing: Tracing {
            enabled: false,
            otlp_endpoint: String::new(),
            protocol: OtlpProtocol::Grpc,
            service_name: "mcp-hangar".into(),
        },
        metrics: Metrics { enabled: true, endpoint: "/metrics".into() },
        langfuse: Langfuse {
            enabled: false,
            public_key: Secret::default(),
            secret_key: Secret::default(),
            host: "https://cloud.langfuse.com".into(),
        },
        audit: Audit::default(),
        access_log: false,
    };
    if let Some((path, value)) = v {
        if let Some(f) = d.fields(&path, value) {
            f.deny_unknown(d, OBSERVABILITY_KEYS, |_| None);
            if let Some((p, v)) = f.get("tracing") {
                decode_tracing(d, &p, v, &mut out.tracing);
            }
            if let Some((p, v)) = f.get("metrics") {
                if let Some(m) = d.fields(&p, v) {
                    m.deny_unknown(d, METRICS_KEYS, |_| None);
                    out.metrics.enabled = m.opt(d, "enabled", Decoder::boolean).unwrap_or(true);
                    if let Some(e) = m.opt(d, "endpoint", checked(check_endpoint_path)) {
                        out.metrics.endpoint = e;
                    }
                }
            }
            if let Some((p, v)) = f.get("langfuse") {
                decode_langfuse(d, &p, v, &mut out.langfuse);
            }
            if let Some((p, v)) = f.get("audit") {
                decode_audit(d, &p, v, &mut out.audit);
            }
            out.access_log = f.opt(d, "access_log", Decoder::boolean).unwrap_or(false);
        }
    }
    apply_tracing_env(d, &mut out.tracing);
    out
}

fn decode_tracing(d: &mut Decoder<'_>, path: &str, v: &Value, out: &mut Tracing) {
    let Some(t) = d.fields(path, v) else { return };
    t.deny_unknown(d, TRACING_KEYS, |_| None);
    out.enabled = t.opt(d, "enabled", Decoder::boolean).unwrap_or(false);
    if let Some(e) = t.opt(d, "otlp_endpoint", checked(check_http_url)) {
        out.otlp_endpoint = e;
    }
    if let Some(p) = t.opt(d, "protocol", |d, p, v| match d.string(p, v)?.as_str() {
        "grpc" => Some(OtlpProtocol::Grpc),
        "http/protobuf" | "http" => Some(OtlpProtocol::HttpProtobuf),
        other => {
            d.problem(p, format!("unknown protocol {other:?} (one of: grpc, http/protobuf)"));
            None
        }
    }) {
        out.protocol = p;
    }
    if let Some(n) = t.opt(d, "service_name", Decoder::non_empty_string) {
        out.service_name = n;
    }
}

/// `MCP_TRACING_ENABLED` switches tracing; `OTEL_EXPORTER_OTLP_ENDPOINT` names the collector
/// when the file does not. Bad values are problems like any other.
fn apply_tracing_env(d: &mut Decoder<'_>, out: &mut Tracing) {
    if let Some(v) = d.env_var(TRACING_SWITCH_VAR) {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => out.enabled = true,
            "0" | "false" | "no" | "off" | "" => out.enabled = false,
            _ => d.problem(&format!("${TRACING_SWITCH_VAR}"), format!("expected true or false, found {v:?}")),
        }
    }
    if out.otlp_endpoint.is_empty() {
        match d.env_var(OTLP_ENDPOINT_VAR).filter(|v| !v.trim().is_empty()) {
            Some(url) => match check_http_url(url.trim()) {
                Ok(()) => out.otlp_endpoint = url.trim().to_owned(),
                Err(why) => d.problem(&format!("${OTLP_ENDPOINT_VAR}"), why),
            },
            None => {
                out.otlp_endpoint = match out.protocol {
                    OtlpProtocol::Grpc => "http://localhost:4317".into(),
                    OtlpProtocol::HttpProtobuf => "http://localhost:4318".into(),
                }
            }
        }
    }
}

fn decode_langfuse(d: &mut Decoder<'_>, path: &str, v: &Value, out: &mut Langfuse) {
    let Some(l) = d.fields(path, v) else { return };
    l.deny_unknown(d, LANGFUSE_KEYS, |_| None);
    let enabled = l.opt(d, "enabled", Decoder::boolean).unwrap_or(false);
    out.enabled = enabled;
    // Keys of a disabled exporter are not expanded: `${LANGFUSE_SECRET_KEY}` may be unset on
    // machines that do not export to Langfuse.
    if enabled {
        let why = " when langfuse is enabled";
        out.public_key = l.req(d, "public_key", why, non_empty_secret).unwrap_or_default();
        out.secret_key = l.req(d, "secret_key", why, non_empty_secret).unwrap_or_default();
        if let Some(h) = l.opt(d, "host", checked(check_http_url)) {
            out.host = h;
        }
    }
}

fn decode_audit(d: &mut Decoder<'_>, path: &str, v: &Value, out: &mut Audit) {
    let Some(a) = d.fields(path, v) else { return };
    a.deny_unknown(d, AUDIT_KEYS, |_| None);
    out.enabled = a.opt(d, "enabled", Decoder::boolean).unwrap_or(true);
    if let Some(p) = a.opt(d, "path", Decoder::non_empty_string) {
        out.path = p.into();
    }
    if let Some(n) = a.opt(d, "max_bytes", |d, p, v| d.integer(p, v, 4096, 1 << 40)) {
        out.max_bytes = n;
    }
    if let Some(n) = a.opt(d, "keep", |d, p, v| d.integer(p, v, 0, 1000)) {
        out.keep = n as u32;
    }
    let interval = a.opt(d, "fsync_interval_s", Decoder::seconds);
    match a.opt(d, "fsync", Decoder::string).as_deref() {
        None | Some("interval") => {
            out.fsync = Fsync::Interval(interval.unwrap_or(Duration::from_secs(1)));
        }
        Some("always") | Some("never") if interval.is_some() => {
            d.problem(&child(path, "fsync_interval_s"), "is only used with fsync: interval");
        }
        Some("always") => out.fsync = Fsync::Always,
        Some("never") => out.fsync = Fsync::Never,
        Some(other) => {
            d.problem(&child(path, "fsync"), format!("unknown policy {other:?} (one of: always, interval, never)"))
        }
    }
    out.arguments = a.opt(d, "arguments", Decoder::boolean).unwrap_or(false);
    if let Some(list) = a.opt(d, "redact", Decoder::string_list) {
        out.redact = list.into_iter().map(|k| k.to_ascii_lowercase()).collect();
    }
}

fn non_empty_secret(d: &mut Decoder<'_>, p: &str, v: &Value) -> Option<Secret> {
    let s = d.secret(p, v)?;
    if s.is_empty() {
        d.problem(p, "must not be empty");
        return None;
    }
    Some(s)
}
