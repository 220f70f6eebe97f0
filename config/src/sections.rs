//! Decoding of the `server` and `observability` sections.

use serde_norway::Value;

use crate::decode::{Decoder, Fields};
use crate::model::{Langfuse, Limits, Metrics, Observability, Server, Tracing};
use crate::validate::{check_endpoint_path, check_host, check_http_url, check_origin};
use crate::Secret;

const SERVER_KEYS: &[&str] = &["host", "port", "mcp_path", "allowed_origins", "limits"];
const LIMIT_KEYS: &[&str] = &[
    "max_body_bytes",
    "max_header_bytes",
    "connect_timeout_s",
    "first_byte_timeout_s",
    "idle_timeout_s",
    "max_concurrent_streams",
    "max_sessions",
    "session_idle_timeout_s",
    "shutdown_timeout_s",
];
const OBSERVABILITY_KEYS: &[&str] = &["tracing", "metrics", "langfuse"];
const TRACING_KEYS: &[&str] = &["enabled", "otlp_endpoint"];
const METRICS_KEYS: &[&str] = &["enabled", "endpoint"];
const LANGFUSE_KEYS: &[&str] = &["enabled", "public_key", "secret_key", "host"];

/// Origins allowed when the file names none: a browser page served from this machine.
pub(crate) const DEFAULT_ALLOWED_ORIGINS: &[&str] = &[
    "http://localhost",
    "https://localhost",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://[::1]",
    "https://[::1]",
];

pub(crate) fn decode_server(d: &mut Decoder<'_>, v: Option<(String, &Value)>) -> Server {
    let fields = match &v {
        Some((path, value)) => d.fields(path, value),
        None => None,
    };
    let f = fields.unwrap_or(Fields { path: "server".into(), entries: Vec::new() });
    f.deny_unknown(d, SERVER_KEYS, |_| None);
    let host = f.opt(d, "host", checked(check_host)).unwrap_or_else(|| "127.0.0.1".into());
    let port = f.opt(d, "port", |d, p, v| d.integer(p, v, 1, 65535)).map_or(8000, |p| p as u16);
    let mcp_path = f.opt(d, "mcp_path", checked(check_endpoint_path)).unwrap_or_else(|| "/mcp".into());
    let allowed_origins = f
        .opt(d, "allowed_origins", |d, p, v| {
            let list = d.string_list(p, v)?;
            let mut ok = true;
            for (i, origin) in list.iter().enumerate() {
                if let Err(why) = check_origin(origin) {
                    d.problem(&crate::decode::index(p, i), why);
                    ok = false;
                }
            }
            ok.then_some(list)
        })
        .unwrap_or_else(|| DEFAULT_ALLOWED_ORIGINS.iter().map(|s| (*s).to_owned()).collect());
    let limits = f.opt(d, "limits", decode_limits).unwrap_or_default();
    Server { host, port, mcp_path, allowed_origins, limits }
}

fn decode_limits(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Limits> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, LIMIT_KEYS, |_| None);
    let dflt = Limits::default();
    let bytes = |d: &mut Decoder<'_>, p: &str, v: &Value, min: u64| d.integer(p, v, min, 1 << 30).map(|n| n as usize);
    Some(Limits {
        max_body_bytes: f.opt(d, "max_body_bytes", |d, p, v| bytes(d, p, v, 1024)).unwrap_or(dflt.max_body_bytes),
        max_header_bytes: f.opt(d, "max_header_bytes", |d, p, v| bytes(d, p, v, 1024)).unwrap_or(dflt.max_header_bytes),
        connect_timeout: f.opt(d, "connect_timeout_s", Decoder::seconds).unwrap_or(dflt.connect_timeout),
        first_byte_timeout: f.opt(d, "first_byte_timeout_s", Decoder::seconds).unwrap_or(dflt.first_byte_timeout),
        idle_timeout: f.opt(d, "idle_timeout_s", Decoder::seconds).unwrap_or(dflt.idle_timeout),
        max_concurrent_streams: f
            .opt(d, "max_concurrent_streams", |d, p, v| d.integer(p, v, 1, 1_000_000))
            .map_or(dflt.max_concurrent_streams, |n| n as usize),
        max_sessions: f
            .opt(d, "max_sessions", |d, p, v| d.integer(p, v, 1, 1_000_000))
            .map_or(dflt.max_sessions, |n| n as usize),
        session_idle_timeout: f.opt(d, "session_idle_timeout_s", Decoder::seconds).unwrap_or(dflt.session_idle_timeout),
        shutdown_timeout: f.opt(d, "shutdown_timeout_s", Decoder::seconds).unwrap_or(dflt.shutdown_timeout),
    })
}

pub(crate) fn decode_observability(d: &mut Decoder<'_>, v: Option<(String, &Value)>) -> Observability {
    let mut out = Observability {
        tracing: Tracing { enabled: false, otlp_endpoint: "http://localhost:4317".into() },
        metrics: Metrics { enabled: true, endpoint: "/metrics".into() },
        langfuse: Langfuse {
            enabled: false,
            public_key: Secret::default(),
            secret_key: Secret::default(),
            host: "https://cloud.langfuse.com".into(),
        },
    };
    let Some((path, value)) = v else { return out };
    let Some(f) = d.fields(&path, value) else {
        return out;
    };
    f.deny_unknown(d, OBSERVABILITY_KEYS, |_| None);
    if let Some((p, v)) = f.get("tracing") {
        if let Some(t) = d.fields(&p, v) {
            t.deny_unknown(d, TRACING_KEYS, |_| None);
            out.tracing.enabled = t.opt(d, "enabled", Decoder::boolean).unwrap_or(false);
            if let Some(e) = t.opt(d, "otlp_endpoint", checked(check_http_url)) {
                out.tracing.otlp_endpoint = e;
            }
        }
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
        if let Some(l) = d.fields(&p, v) {
            l.deny_unknown(d, LANGFUSE_KEYS, |_| None);
            let enabled = l.opt(d, "enabled", Decoder::boolean).unwrap_or(false);
            out.langfuse.enabled = enabled;
            // Keys of a disabled exporter are not expanded: `${LANGFUSE_SECRET_KEY}` may be unset
            // on machines that do not export to Langfuse.
            if enabled {
                let why = " when langfuse is enabled";
                out.langfuse.public_key = l.req(d, "public_key", why, non_empty_secret).unwrap_or_default();
                out.langfuse.secret_key = l.req(d, "secret_key", why, non_empty_secret).unwrap_or_default();
                if let Some(h) = l.opt(d, "host", checked(check_http_url)) {
                    out.langfuse.host = h;
                }
            }
        }
    }
    out
}

fn non_empty_secret(d: &mut Decoder<'_>, p: &str, v: &Value) -> Option<Secret> {
    let s = d.secret(p, v)?;
    if s.is_empty() {
        d.problem(p, "must not be empty");
        return None;
    }
    Some(s)
}

/// Reads a string and checks it with `check`, noting the check's message as a problem.
fn checked<'e>(check: fn(&str) -> Result<(), String>) -> impl Fn(&mut Decoder<'e>, &str, &Value) -> Option<String> {
    move |d, p, v| {
        let s = d.string(p, v)?;
        match check(&s) {
            Ok(()) => Some(s),
            Err(why) => {
                d.problem(p, why);
                None
            }
        }
    }
}
