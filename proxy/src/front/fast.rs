//! The fast path: a modern `tools/call` or `prompts/get` for a modern HTTP upstream is proxied by
//! Pingora itself. The body was already validated against the headers; the only change made to it
//! is cutting the tool prefix out of `params.name` (a byte splice, no re-serialisation). The reply
//! streams back untouched.
//!
//! For a group, the member is chosen here like on the slow path; when connecting fails, Pingora
//! retries and the route moves to another member, within the group's retry budget. Calls that may
//! be repeated after reaching a member (prompts, read-only or idempotent tools) take the slow path
//! when addressed to a group: Pingora forwards a reply's header as soon as it arrives, so a member
//! dying mid-reply could not be retried; the slow path reads the whole reply first.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use serde_json::value::RawValue;

use crate::balance::retry::MAX_ATTEMPTS;
use crate::jsonrpc::parse::{span_in, Envelope, ParamsHead};
use crate::lifecycle::CallGuard;
use crate::mcp::aggregate::ListKind;
use crate::mcp::headers::encode_header_value;
use crate::mcp::protocol::Era;
use crate::routing::Backend;
use crate::state::{AppState, Snapshot};
use crate::telemetry::traces::{AttemptTrace, Propagated, RequestTrace};
use crate::upstream::remote::Remote;

/// Pingora replays at most this much of a body it buffered while we read it
/// (`BODY_BUF_LIMIT`); larger bodies take the slow path.
const REPLAY_LIMIT: usize = 64 * 1024;

/// A request being proxied on the fast path.
pub struct FastRoute {
    /// The configuration the route was chosen in (indexes refer to it).
    pub snap: Arc<Snapshot>,
    /// The upstream.
    pub remote: Arc<Remote>,
    /// Where to connect.
    pub peer: Arc<HttpPeer>,
    /// Provider index of the upstream (a group's member).
    pub provider: usize,
    /// The group the call was addressed to, if any (retries pick another member).
    group: Option<usize>,
    /// Members tried and failed, in order.
    tried: Vec<usize>,
    /// Whether the current member's outcome was already recorded (a failure, by `retarget`).
    pub recorded: bool,
    /// The tool's exposed name (`None` for a prompt).
    pub tool: Option<String>,
    /// Who called, when the audit trail is on.
    pub caller: Option<String>,
    /// The arguments, when the audit trail records them.
    pub arguments: Option<serde_json::Value>,
    /// When the gateway took the call.
    pub started: std::time::Instant,
    /// Reads the reply's outcome as it streams back.
    pub scan: Option<crate::jsonrpc::outcome::ReplyScan>,
    /// The request's span, when tracing is on.
    pub trace: Option<RequestTrace>,
    /// The current attempt's span.
    pub attempt: Option<AttemptTrace>,
    /// Counts the call in flight at the member (least-connections reads it).
    _in_flight: CallGuard,
    /// The new `Mcp-Name` value when the name changes.
    name_header: Option<String>,
    /// Cuts the prefix out of `params.name`.
    splice: Splice,
    body_len: usize,
    /// The request id, for error replies.
    pub id: Box<RawValue>,
}

/// Whether a request may take the fast path, judged from its headers alone (so the body can be
/// buffered for replay before it is read).
pub fn may_take(session: &Session) -> bool {
    matches!(session.req_header().headers.get("mcp-method").map(|v| v.as_bytes()), Some(b"tools/call" | b"prompts/get"))
}

/// The fast route for a validated modern request, or `None` when it must take the slow path.
pub fn route(
    state: &AppState,
    snap: &Arc<Snapshot>,
    env: &Envelope<'_>,
    head: &ParamsHead<'_>,
    body: &[u8],
    session: &Session,
) -> Option<FastRoute> {
    let kind = match env.method_str() {
        "tools/call" => ListKind::Tools,
        "prompts/get" => ListKind::Prompts,
        _ => return None,
    };
    if body.len() > REPLAY_LIMIT || session.retry_buffer_truncated() {
        return None;
    }
    let name = head.name.as_ref()?;
    let span = span_in(body, name)?;
    let routes = &snap.routes;
    let (idx, own, idempotent) = {
        let index = routes.index.load();
        let map = if kind == ListKind::Tools { &index.tools } else { &index.prompts };
        let idempotent = kind == ListKind::Prompts || index.idempotent_tools.contains(name.as_ref());
        match map.get(name.as_ref()) {
            Some((i, own)) => (*i, own.len(), idempotent),
            None => routes.by_prefix(name).map(|(i, rest)| (i, rest.len(), idempotent))?,
        }
    };
    // Decide before choosing: a member chosen here and then handed to the slow path would be
    // chosen twice (skewing the strategy, taking two half-open probe permits).
    let group = match &routes.providers[idx].backend {
        // Hashing needs the parsed caller or arguments; retrying after a reply began needs the
        // whole reply first: the slow path does both.
        Backend::Group(pool) if pool.hash_key.is_some() || idempotent => return None,
        Backend::Group(pool) if pool.members.iter().all(|&m| speaks_modern(snap, m)) => {
            pool.budget.earn();
            Some(idx)
        }
        Backend::Group(_) => return None,
        _ if speaks_modern(snap, idx) => None,
        _ => return None,
    };
    let (member, _) = routes.choose(idx, &[], &[]).ok()?;
    let audit = &state.audit;
    let (remote, peer) = modern_remote(snap, member)?;
    let prefix_len = name.len().checked_sub(own)?;
    let (cut, name_header) = if prefix_len == 0 {
        (None, None)
    } else {
        (Some(span.start..span.start + prefix_len), Some(encode_header_value(&name[prefix_len..]).into_owned()))
    };
    Some(FastRoute {
        _in_flight: routes.providers[member].lifecycle.begin_call(),
        snap: snap.clone(),
        remote,
        peer,
        provider: member,
        group,
        tried: Vec::new(),
        recorded: false,
        tool: (kind == ListKind::Tools).then(|| name.to_string()),
        caller: audit.enabled().then(|| {
            let client = head.meta.as_ref().and_then(|m| m.client_info.as_ref()).and_then(|c| c.name.as_deref());
            client.map_or_else(|| "anonymous".to_owned(), |n| format!("client:{n}"))
        }),
        arguments: (kind == ListKind::Tools && audit.records_arguments())
            .then(|| serde_json::from_slice::<serde_json::Value>(body).ok()?.pointer("/params/arguments").cloned())
            .flatten(),
        started: std::time::Instant::now(),
        scan: None,
        trace: state.traces.enabled().then(|| trace(state, kind, name, head, session)).flatten(),
        attempt: None,
        name_header,
        splice: Splice { cut, seen: 0 },
        body_len: body.len(),
        id: env.id.map(|i| i.to_owned()).unwrap_or_else(|| crate::jsonrpc::null_id().to_owned()),
    })
}

/// The span of a fast-path request: a child of the context in `_meta`, else in the headers.
fn trace(
    state: &AppState,
    kind: ListKind,
    name: &str,
    head: &ParamsHead<'_>,
    session: &Session,
) -> Option<RequestTrace> {
    let meta = head.meta.as_ref();
    let from_meta = Propagated {
        traceparent: meta.and_then(|m| m.traceparent.as_deref()),
        tracestate: meta.and_then(|m| m.tracestate.as_deref()),
        baggage: meta.and_then(|m| m.baggage.as_deref()),
    };
    let parent = Propagated::pick(from_meta, Propagated::from_headers(&session.req_header().headers));
    let method = if kind == ListKind::Tools { "tools/call" } else { "prompts/get" };
    let attrs = vec![
        opentelemetry::KeyValue::new("mcp_hangar.era", "modern"),
        opentelemetry::KeyValue::new("mcp.protocol.version", crate::mcp::protocol::MODERN_VERSION),
        opentelemetry::KeyValue::new("mcp_hangar.fast_path", true),
    ];
    state.traces.request(method, Some(name), &parent, attrs)
}

/// Whether provider `idx` is a remote upstream known to speak 2026-07-28.
fn speaks_modern(snap: &Snapshot, idx: usize) -> bool {
    matches!(&snap.routes.providers[idx].backend, Backend::Remote(r) if r.known_era() == Some(Era::Modern))
}

/// Provider `idx` as a known-modern remote upstream with a resolved address.
fn modern_remote(snap: &Snapshot, idx: usize) -> Option<(Arc<Remote>, Arc<HttpPeer>)> {
    let Backend::Remote(remote) = &snap.routes.providers[idx].backend else { return None };
    if remote.known_era() != Some(Era::Modern) {
        return None;
    }
    Some((remote.clone(), remote.endpoint().cached_peer()?))
}

impl FastRoute {
    /// Starts the span of the next attempt (when tracing is on).
    pub fn begin_attempt(&mut self) {
        if let Some(t) = &self.trace {
            let name = self.snap.routes.providers[self.provider].name();
            self.attempt = Some(t.attempt(name, self.tried.len() + 1));
        }
    }

    /// The provider (or group) the call was addressed to.
    pub fn target(&self) -> usize {
        self.group.unwrap_or(self.provider)
    }

    /// After a failure at the current member (recorded against it): moves the route to another
    /// member of its group, if the call is addressed to one, attempts and the group's retry budget
    /// remain, and another member can take it on the fast path. Returns whether it moved.
    pub fn retarget(&mut self, failure: &str) -> bool {
        if let Some(a) = self.attempt.take() {
            a.end("unavailable", Some(failure));
        }
        let routes = &self.snap.routes;
        routes.providers[self.provider].lifecycle.record(Some(failure));
        self.recorded = true;
        let Some(group) = self.group else { return false };
        self.tried.push(self.provider);
        let Backend::Group(pool) = &routes.providers[group].backend else { return false };
        if self.tried.len() >= MAX_ATTEMPTS || !pool.budget.spend() {
            return false;
        }
        let Ok((member, _)) = routes.choose(group, &[], &self.tried) else { return false };
        let Some((remote, peer)) = modern_remote(&self.snap, member) else { return false };
        tracing::debug!(
            from = routes.providers[self.provider].name(),
            to = routes.providers[member].name(),
            "retrying on another member"
        );
        routes.metrics.retries.with_label_values(&[routes.providers[group].name()]).inc();
        self._in_flight = routes.providers[member].lifecycle.begin_call();
        (self.remote, self.peer, self.provider) = (remote, peer, member);
        // Pingora replays the buffered body through the splice again.
        self.splice.seen = 0;
        self.recorded = false;
        true
    }

    /// Rewrites the request header for the upstream: its path and host, the new name and length,
    /// its configured headers; drops what belongs to the client's hop (Origin, cookies, its own
    /// credentials for the gateway, legacy session ids).
    pub fn rewrite_request(&self, req: &mut RequestHeader) -> pingora_core::Result<()> {
        let endpoint = self.remote.endpoint();
        let uri = http::Uri::try_from(endpoint.path())
            .map_err(|e| pingora_core::Error::because(pingora_core::ErrorType::InternalError, "upstream path", e))?;
        req.set_uri(uri);
        req.insert_header("host", endpoint.authority())?;
        for h in ["origin", "cookie", "authorization", "mcp-session-id", "referer"] {
            req.remove_header(h);
        }
        if let Some(n) = &self.name_header {
            req.insert_header("mcp-name", n.as_str())?;
        }
        let cut = self.splice.cut.as_ref().map_or(0, |c| c.len());
        req.insert_header("content-length", self.body_len - cut)?;
        for (name, value) in self.remote.configured_headers() {
            req.insert_header(name.clone(), value.as_str())?;
        }
        if let Some(a) = &self.attempt {
            for (name, value) in a.propagation() {
                req.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    /// Cuts the prefix out of the body as it passes (in whichever chunk holds it).
    pub fn splice(&mut self, body: &mut Option<Bytes>) {
        self.splice.apply(body);
    }
}

/// A byte range cut out of a body that passes in chunks.
struct Splice {
    cut: Option<Range<usize>>,
    /// Body bytes seen so far.
    seen: usize,
}

impl Splice {
    fn apply(&mut self, body: &mut Option<Bytes>) {
        let Some(chunk) = body.as_mut() else { return };
        let start = self.seen;
        self.seen += chunk.len();
        let Some(cut) = &self.cut else { return };
        let lo = cut.start.max(start);
        let hi = cut.end.min(self.seen);
        if lo >= hi {
            return;
        }
        let mut out = BytesMut::with_capacity(chunk.len() - (hi - lo));
        out.extend_from_slice(&chunk[..lo - start]);
        out.extend_from_slice(&chunk[hi - start..]);
        *chunk = out.freeze();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_across_chunks() {
        let body = br#"{"params":{"name":"math__add"}}"#;
        let start = body.windows(6).position(|w| w == b"math__").expect("prefix");
        for split in 0..body.len() {
            let mut splice = Splice { cut: Some(start..start + 6), seen: 0 };
            let mut out = Vec::new();
            for part in [&body[..split], &body[split..]] {
                let mut chunk = Some(Bytes::copy_from_slice(part));
                splice.apply(&mut chunk);
                out.extend_from_slice(&chunk.unwrap_or_default());
            }
            assert_eq!(out, br#"{"params":{"name":"add"}}"#, "split at {split}");
        }
    }
}
