//! The fast path: a `tools/call` or `prompts/get` for a modern HTTP upstream is passed through
//! without building a JSON tree. A modern client's body was already validated against the
//! headers; the only change made to it is cutting the tool prefix out of `params.name` (a byte
//! splice), and the reply's bytes go back untouched. A legacy session's call is re-addressed
//! as bytes too (`legacy`): the modern `_meta` envelope spliced into its params, the gateway's
//! id for the client's, and back. A JSON reply is read whole first (so a failed attempt can
//! still go to another group member, and the client gets one write), an SSE reply streams.
//!
//! The exchange uses the gateway's own upstream client (`upstream::http`: Pingora's connector
//! for making connections, its own HTTP/1.1 exchange and idle pool) rather than Pingora's proxy
//! pipeline, whose per-request phases cost CPU this path has no use for (README, "Performance").
//!
//! - `mod.rs`: whether a call goes fast, and where ([`destination`], [`route`]).
//! - `run.rs`: the exchange, retries over a group's members, relaying the reply.
//! - `legacy.rs`: what a legacy session's call does besides.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hangar_config::Secret;

use super::checks::Accepts;
use crate::auth::{Item, Principal};
use crate::jsonrpc::parse::{span_in, Envelope, ParamsHead};
use crate::mcp::arguments;
use crate::mcp::session::ClientSession;
use crate::proto::fields::Fields;
use crate::proto::headers::encode_header_value;
use crate::proto::lists::ListKind;
use crate::proto::protocol::{Era, MODERN_VERSION};
use crate::routing::{Backend, Routes};
use crate::state::{AppState, Snapshot};
use crate::telemetry::calls::ToolSeries;
use crate::telemetry::traces::{Propagated, RequestTrace};
use crate::upstream::http::Body;
use crate::upstream::remote::Remote;

mod legacy;
mod run;

pub use run::FastRoute;

/// Where a fast-path call goes, as the snapshot alone decides it (no request state).
#[derive(Debug, Clone)]
pub struct Destination {
    /// The provider or group the call is addressed to.
    pub target: usize,
    /// How many leading bytes of the exposed name are the target's prefix.
    pub prefix_len: usize,
    /// Whether repeating the call is harmless, as far as is known now.
    pub idempotent: bool,
    /// Whether a provider lists the name (else it was routed by its prefix alone, and a tool's
    /// calls count as `other`).
    pub listed: bool,
    /// A tool's call series: its own, or its provider's for unlisted tools.
    pub series: Option<Arc<ToolSeries>>,
}

/// The destination of a `tools/call` or `prompts/get` of `name` by `principal`: the name's
/// provider (by the index of listed names, else by prefix), or `None` when the call must take
/// the slow path — a gateway tool, a name no provider has, a call the caller may not make or of
/// a trimmed tool (the slow path refuses those, and records it). This is the whole routing
/// decision of the fast path, timed as it is by the routing micro-benchmark (`benches/`).
pub fn destination(routes: &Arc<Routes>, method: &str, name: &str, principal: &Principal) -> Option<Destination> {
    let kind = match method {
        "tools/call" => ListKind::Tools,
        "prompts/get" => ListKind::Prompts,
        _ => return None,
    };
    // The gateway's own tools are answered by the slow path, whatever a provider calls its tools.
    if kind == ListKind::Tools && routes.admin_tools && crate::mcp::registry::is_registry_tool(name) {
        return None;
    }
    let (target, own, idempotent, listed, series) = {
        let index = routes.index.load();
        let map = if kind == ListKind::Tools { &index.tools } else { &index.prompts };
        let idempotent = kind == ListKind::Prompts || index.idempotent_tools.contains(name);
        let tool = kind == ListKind::Tools;
        match map.get(name) {
            Some(entry) => (entry.provider, entry.own.len(), idempotent, true, tool.then(|| entry.series.clone())),
            None => {
                let (i, rest) = routes.by_prefix(name)?;
                let series = tool.then(|| routes.providers.get(i).map(|p| p.unlisted.clone())).flatten();
                (i, rest.len(), idempotent, false, series)
            }
        }
    };
    let prefix_len = name.len().checked_sub(own)?;
    let (own_name, provider) = (name.get(prefix_len..)?, routes.providers.get(target)?.name());
    let item = match kind {
        ListKind::Tools => Item::Tool { provider, own: own_name, exposed: name },
        _ => Item::Prompt { provider, own: own_name, exposed: name },
    };
    if !principal.decide(&item).allowed || !routes.providers[target].config.exposes(own_name) {
        return None;
    }
    // Retry safety comes from the provider's own list, which the gateway fetches by itself when
    // it has none (a failure looks again).
    let idempotent = idempotent
        || (kind == ListKind::Tools && {
            let known = crate::mcp::aggregate::tool_is_idempotent(routes, target, own_name);
            if known.is_none() {
                crate::mcp::aggregate::learn_tools(routes, target);
            }
            known == Some(true)
        });
    Some(Destination { target, prefix_len, idempotent, listed, series })
}

/// Whether calls of `method` may take the fast path at all.
pub fn takes(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get")
}

/// A checked request, as either front door read it.
pub struct Call<'a, F> {
    /// The message's envelope.
    pub env: &'a Envelope<'a>,
    /// The fields of `params` routing reads.
    pub head: &'a ParamsHead<'a>,
    /// The whole body the envelope was read from.
    pub body: &'a Bytes,
    /// The request's header fields.
    pub fields: &'a F,
    /// What the client accepts.
    pub accepts: Accepts,
    /// Who calls.
    pub principal: &'a Arc<Principal>,
    /// The legacy session the call is made in; `None` for a modern call.
    pub session: Option<&'a Arc<ClientSession>>,
    /// When the request arrived: the call's time at the gateway counts from then (and the clock
    /// is read once for both).
    pub arrived: Instant,
}

/// The fast route for a validated request, or `None` when it must take the slow path. Only a
/// modern client that takes both JSON and SSE replies goes fast: the reply is relayed in
/// whatever form the upstream chose (a legacy session's reply is written as the slow path
/// writes it, to a client that takes a lone response as JSON).
pub fn route(state: &AppState, snap: &Arc<Snapshot>, call: Call<'_, impl Fields>) -> Option<FastRoute> {
    let Call { env, head, body, fields, accepts, principal, session, arrived } = call;
    if session.is_none() && !(accepts.json && accepts.sse) {
        return None;
    }
    let method = match env.method_str() {
        "tools/call" => "tools/call",
        "prompts/get" => "prompts/get",
        _ => return None,
    };
    let name = head.name.as_ref()?;
    let span = span_in(body, name)?;
    let routes = &snap.routes;
    let Destination { target: idx, prefix_len, idempotent, listed, series } =
        destination(routes, method, name, principal)?;
    let own_name = name.get(prefix_len..)?;
    // Arguments a schema refuses go the slow way too, which answers with the failing path.
    if method == "tools/call" {
        if let Some(checker) = arguments::checker(routes, idx, own_name) {
            if !checker.shape.as_ref().is_some_and(|shape| shape.surely_valid(head.arguments)) {
                let parsed = match head.arguments {
                    Some(text) => Some(crate::jsonrpc::tree::tree(text).ok()?),
                    None => None,
                };
                arguments::check(&checker.validator, name, parsed.as_ref()).ok()?;
            }
        }
    }
    // Decide before choosing: a member chosen here and then handed to the slow path would be
    // chosen twice (skewing the strategy, taking two half-open probe permits).
    match routes.pool(idx) {
        // Hashing needs the parsed caller or arguments: the slow path has them.
        Some(pool) if pool.hash_key.is_some() => return None,
        Some(pool) if pool.members.iter().all(|&m| speaks_modern(snap, m)) => {}
        Some(_) => return None,
        None if speaks_modern(snap, idx) => {}
        None => return None,
    }
    let legacy = match session {
        Some(session) => Some(legacy::Admission::check(state, routes, idx, env, head, session, accepts)?),
        None => None,
    };
    // Choosing is the last step that may still send the call the slow way; nothing before it
    // leaves a trace, so the slow path (or Pingora's reader, for the express path) starts clean.
    // (A legacy admission dropped on the way gives the call's place back.)
    let (member, _) = routes.choose(idx, &[], &[]).ok()?;
    if let Some(pool) = routes.pool(idx) {
        pool.budget.earn();
    }
    let remote = modern_remote(snap, member)?;
    let forwards_token = match routes.pool(idx) {
        Some(pool) => pool.members.iter().any(|&m| forwards_client_token(snap, m)),
        None => remote.forwards_client_token(),
    };
    let credential = forwards_token.then(|| fields.text("authorization").map(Secret::new)).flatten();
    let (upstream_body, id, legacy) = match legacy {
        None => {
            // The prefix cut out where the body lies: the pieces around it are sent as they are.
            let body = Body::without(body, span.start..span.start + prefix_len);
            let id = env.id.map(|i| i.to_owned()).unwrap_or_else(|| crate::jsonrpc::null_id().to_owned());
            (body, id, None)
        }
        Some(admitted) => {
            let (body, id, call) = admitted.address(&remote, method, body, span.start..span.start + prefix_len)?;
            (body.into(), id, Some(Box::new(call)))
        }
    };
    let audit = &state.audit;
    let era = if legacy.is_some() { Era::Legacy } else { Era::Modern };
    Some(FastRoute {
        snap: snap.clone(),
        target: idx,
        member,
        remote,
        tried: Vec::new(),
        idempotent,
        method,
        listed,
        series,
        encoded_name: match encode_header_value(&name[prefix_len..]) {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(encoded) => Some(encoded),
        },
        name: name.to_string(),
        own_at: prefix_len,
        body: upstream_body,
        id,
        caller: audit.enabled().then(|| match &legacy {
            Some(l) => format!("session:{}", l.session.audit_id),
            None => {
                let client = head.meta.as_ref().and_then(|m| m.client_info.as_ref()).and_then(|c| c.name.as_deref());
                client.map_or_else(|| "anonymous".to_owned(), |n| format!("client:{n}"))
            }
        }),
        arguments: (method == "tools/call" && audit.records_arguments())
            .then(|| serde_json::from_slice::<serde_json::Value>(body).ok()?.pointer("/params/arguments").cloned())
            .flatten(),
        trace: state.traces.enabled().then(|| trace(state, method, name, head, fields)).flatten(),
        principal: principal.clone(),
        credential,
        started: arrived,
        era,
        legacy,
    })
}

/// The span of a fast-path request: a child of the context in `_meta`, else in the headers.
fn trace(
    state: &AppState,
    method: &str,
    name: &str,
    head: &ParamsHead<'_>,
    fields: &impl Fields,
) -> Option<RequestTrace> {
    let meta = head.meta.as_ref();
    let from_meta = Propagated::new(
        meta.and_then(|m| m.traceparent.as_deref()),
        meta.and_then(|m| m.tracestate.as_deref()),
        meta.and_then(|m| m.baggage.as_deref()),
    );
    let parent = Propagated::pick(from_meta, Propagated::from_headers(fields));
    let attrs = vec![
        opentelemetry::KeyValue::new("mcp_hangar.era", "modern"),
        opentelemetry::KeyValue::new("mcp.protocol.version", MODERN_VERSION),
        opentelemetry::KeyValue::new("mcp_hangar.fast_path", true),
    ];
    state.traces.request(method, Some(name), &parent, attrs)
}

/// Whether provider `idx` is a remote upstream known to speak 2026-07-28.
fn speaks_modern(snap: &Snapshot, idx: usize) -> bool {
    matches!(&snap.routes.providers[idx].backend, Backend::Remote(r) if r.known_era() == Some(Era::Modern))
}

/// Whether provider `idx` is a remote upstream sent its clients' own tokens.
fn forwards_client_token(snap: &Snapshot, idx: usize) -> bool {
    matches!(&snap.routes.providers[idx].backend, Backend::Remote(r) if r.forwards_client_token())
}

fn modern_remote(snap: &Snapshot, idx: usize) -> Option<Arc<Remote>> {
    match &snap.routes.providers[idx].backend {
        Backend::Remote(r) if r.known_era() == Some(Era::Modern) => Some(r.clone()),
        _ => None,
    }
}
