//! Decoding of the `server` section.

use serde_norway::Value;

use crate::decode::{Decoder, Fields};
use crate::model::{Limits, Server, ServerTls};
use crate::validate::{check_endpoint_path, check_host, check_origin};

const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "mcp_path",
    "allowed_origins",
    "limits",
    "allow_unauthenticated",
    "tls",
    "admin_tools",
    "admin_api",
];
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
    "max_sessions_per_client",
    "max_requests_per_session",
    "max_legacy_requests",
    "max_buffered_bytes",
    "client_write_timeout_s",
    "header_timeout_s",
    "min_body_rate_bytes_s",
    "max_connections",
];

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
    let allow_unauthenticated = f.opt(d, "allow_unauthenticated", Decoder::boolean).unwrap_or(false);
    let tls = f.opt(d, "tls", decode_tls);
    let admin_tools = f.opt(d, "admin_tools", Decoder::boolean).unwrap_or(true);
    let admin_api = f.opt(d, "admin_api", Decoder::boolean).unwrap_or(true);
    Server { host, port, mcp_path, allowed_origins, limits, allow_unauthenticated, tls, admin_tools, admin_api }
}

fn decode_tls(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<ServerTls> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, &["cert_file", "key_file"], |_| None);
    let cert_file = f.req(d, "cert_file", " (PEM certificate chain)", Decoder::readable_file);
    let key_file = f.req(d, "key_file", " (PEM private key)", Decoder::readable_file);
    Some(ServerTls { cert_file: cert_file?, key_file: key_file? })
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
        max_sessions_per_client: count(d, &f, "max_sessions_per_client").unwrap_or(dflt.max_sessions_per_client),
        max_requests_per_session: count(d, &f, "max_requests_per_session").unwrap_or(dflt.max_requests_per_session),
        max_legacy_requests: count(d, &f, "max_legacy_requests").unwrap_or(dflt.max_legacy_requests),
        max_buffered_bytes: f
            .opt(d, "max_buffered_bytes", |d, p, v| bytes(d, p, v, 1 << 20))
            .unwrap_or(dflt.max_buffered_bytes),
        client_write_timeout: f.opt(d, "client_write_timeout_s", Decoder::seconds).unwrap_or(dflt.client_write_timeout),
        header_timeout: f.opt(d, "header_timeout_s", Decoder::seconds).unwrap_or(dflt.header_timeout),
        min_body_rate: f
            .opt(d, "min_body_rate_bytes_s", |d, p, v| d.integer(p, v, 1, 1 << 30))
            .map_or(dflt.min_body_rate, |n| n as usize),
        max_connections: count(d, &f, "max_connections").or(dflt.max_connections),
    })
}

/// An optional count between 1 and a million.
fn count(d: &mut Decoder<'_>, f: &Fields, key: &str) -> Option<usize> {
    f.opt(d, key, |d, p, v| d.integer(p, v, 1, 1_000_000)).map(|n| n as usize)
}

/// Reads a string and checks it with `check`, noting the check's message as a problem.
pub(crate) fn checked<'e>(
    check: fn(&str) -> Result<(), String>,
) -> impl Fn(&mut Decoder<'e>, &str, &Value) -> Option<String> {
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
