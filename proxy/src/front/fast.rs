//! The fast path: a modern `tools/call` or `prompts/get` for a modern HTTP upstream is proxied by
//! Pingora itself. The body was already validated against the headers; the only change made to it
//! is cutting the tool prefix out of `params.name` (a byte splice, no re-serialisation). The reply
//! streams back untouched.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use serde_json::value::RawValue;

use crate::jsonrpc::parse::{span_in, Envelope, ParamsHead};
use crate::mcp::aggregate::ListKind;
use crate::mcp::headers::encode_header_value;
use crate::mcp::protocol::Era;
use crate::routing::Backend;
use crate::state::Snapshot;
use crate::upstream::remote::Remote;

/// Pingora replays at most this much of a body it buffered while we read it
/// (`BODY_BUF_LIMIT`); larger bodies take the slow path.
const REPLAY_LIMIT: usize = 64 * 1024;

/// A request being proxied on the fast path.
pub struct FastRoute {
    /// The upstream.
    pub remote: Arc<Remote>,
    /// Where to connect.
    pub peer: Arc<HttpPeer>,
    /// Provider index (for metrics).
    pub provider: usize,
    /// The new `Mcp-Name` value when the name changes.
    name_header: Option<String>,
    /// Bytes of the body to cut (the prefix inside `params.name`).
    cut: Option<Range<usize>>,
    body_len: usize,
    seen: usize,
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
    snap: &Snapshot,
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
    let (idx, own) = {
        let index = routes.index.load();
        let map = if kind == ListKind::Tools { &index.tools } else { &index.prompts };
        match map.get(name.as_ref()) {
            Some((i, own)) => (*i, own.len()),
            None => routes.by_prefix(name).map(|(i, rest)| (i, rest.len()))?,
        }
    };
    let member = routes.pick(idx).ok()?;
    let Backend::Remote(remote) = &routes.providers[member].backend else { return None };
    if remote.known_era() != Some(Era::Modern) {
        return None;
    }
    let peer = remote.endpoint().cached_peer()?;
    let prefix_len = name.len().checked_sub(own)?;
    let (cut, name_header) = if prefix_len == 0 {
        (None, None)
    } else {
        (Some(span.start..span.start + prefix_len), Some(encode_header_value(&name[prefix_len..]).into_owned()))
    };
    Some(FastRoute {
        remote: remote.clone(),
        peer,
        provider: member,
        name_header,
        cut,
        body_len: body.len(),
        seen: 0,
        id: env.id.map(|i| i.to_owned()).unwrap_or_else(|| crate::jsonrpc::null_id().to_owned()),
    })
}

impl FastRoute {
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
        let cut = self.cut.as_ref().map_or(0, |c| c.len());
        req.insert_header("content-length", self.body_len - cut)?;
        for (name, value) in self.remote.configured_headers() {
            req.insert_header(name.clone(), value.as_str())?;
        }
        Ok(())
    }

    /// Cuts the prefix out of the body as it passes (in whichever chunk holds it).
    pub fn splice(&mut self, body: &mut Option<Bytes>) {
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

    fn route_with_cut(cut: Option<Range<usize>>, body_len: usize) -> FastRoute {
        let settings = crate::upstream::remote::RemoteSettings {
            name: "p".into(),
            url: "http://127.0.0.1:1/mcp".into(),
            headers: Vec::new(),
            timeouts: crate::upstream::http::Timeouts {
                connect: std::time::Duration::from_secs(1),
                first_byte: std::time::Duration::from_secs(1),
                idle: std::time::Duration::from_secs(1),
            },
            max_body: 1 << 20,
            transport: hangar_config::RemoteTransport::Auto,
        };
        let events = Arc::new(crate::lifecycle::EventLog::default());
        let lifecycle = crate::lifecycle::Lifecycle::new("p", 3, hangar_config::Recovery::default(), events);
        let remote =
            Remote::new(settings, Arc::default(), Arc::new(crate::upstream::Discard), lifecycle).expect("remote");
        FastRoute {
            remote: Arc::new(remote),
            peer: Arc::new(HttpPeer::new("127.0.0.1:1", false, String::new())),
            provider: 0,
            name_header: None,
            cut,
            body_len,
            seen: 0,
            id: crate::jsonrpc::null_id().to_owned(),
        }
    }

    #[test]
    fn splices_across_chunks() {
        let body = br#"{"params":{"name":"math__add"}}"#;
        let start = body.windows(6).position(|w| w == b"math__").expect("prefix");
        for split in 0..body.len() {
            let mut r = route_with_cut(Some(start..start + 6), body.len());
            let mut out = Vec::new();
            for part in [&body[..split], &body[split..]] {
                let mut chunk = Some(Bytes::copy_from_slice(part));
                r.splice(&mut chunk);
                out.extend_from_slice(&chunk.unwrap_or_default());
            }
            assert_eq!(out, br#"{"params":{"name":"add"}}"#, "split at {split}");
        }
    }
}
