//! The gateway as one MCP server: answers what it owns (initialize, discover, ping, merged lists,
//! log level) and routes the rest to the provider that serves the named tool, prompt or resource.
//! Front doors (HTTP, stdio) parse and frame; everything MCP-semantic happens here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::auth::{Item, Principal};
use crate::jsonrpc::{code, RpcError};
use crate::mcp::aggregate;
use crate::mcp::arguments;
use crate::mcp::bridge;
use crate::mcp::dispatch::Dispatch;
use crate::mcp::registry;
use crate::mcp::server::McpServer;
use crate::mcp::session::ClientSession;
use crate::proto::lists::ListKind;
use crate::proto::protocol::{meta, supports_input_required, Era, LEGACY_VERSIONS, MODERN_VERSION};
use crate::routing::Routes;
use crate::state::{AppState, Snapshot};
use crate::telemetry::calls::{CallOutcome, CallRecord};
use crate::telemetry::traces::{Propagated, RequestTrace};
use crate::upstream::{Caller, Events, SessionKey, Upstream};
use opentelemetry::KeyValue;

/// How long `initialize`/`server/discover` wait for unknown providers to describe themselves.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Who is asking, as the hub needs to know it.
pub struct ClientCtx {
    /// The request's era.
    pub era: Era,
    /// The legacy session, for legacy clients.
    pub session: Option<Arc<ClientSession>>,
    /// What upstreams are told about the client.
    pub caller: Caller,
    /// The request's span, when tracing is on.
    pub trace: Option<RequestTrace>,
    /// Who is calling (authenticated at the front door).
    pub principal: Arc<Principal>,
}

impl ClientCtx {
    /// Who is calling, for the audit trail and `hash_key: caller`: `session:<id>` for a legacy
    /// session, `client:<name>` for a modern client that names itself, else `anonymous`.
    pub fn identity(&self) -> String {
        match (&self.session, self.caller.client_info.get("name").and_then(Value::as_str)) {
            (Some(s), _) => format!("session:{}", s.audit_id),
            (None, Some(name)) => format!("client:{name}"),
            (None, None) => "anonymous".to_owned(),
        }
    }

    /// A modern client acting as `principal`, described by the request's `_meta`.
    pub fn modern(params: &Value, principal: Arc<Principal>) -> Self {
        let m = params.get("_meta");
        let get = |k: &str| m.and_then(|m| m.get(k)).cloned();
        Self {
            era: Era::Modern,
            session: None,
            caller: Caller {
                session: SessionKey::Shared,
                capabilities: get(meta::CLIENT_CAPABILITIES).unwrap_or_else(|| json!({})),
                client_info: get(meta::CLIENT_INFO).unwrap_or(Value::Null),
                log_level: get(meta::LOG_LEVEL).and_then(|v| v.as_str().map(str::to_owned)),
                credential: None,
                owner: Some(principal.id.as_str().into()),
            },
            trace: None,
            principal,
        }
    }

    /// A legacy client in `session`.
    pub fn legacy(session: Arc<ClientSession>) -> Self {
        Self {
            era: Era::Legacy,
            caller: session.caller(),
            principal: session.principal.clone(),
            session: Some(session),
            trace: None,
        }
    }
}

/// Starts the span of a request the hub will handle, when tracing is on: a child of the trace
/// context in `params._meta`, else in the HTTP `headers`.
pub fn trace_request(
    state: &AppState,
    ctx: &ClientCtx,
    method: &str,
    params: &Value,
    headers: Option<&http::HeaderMap>,
) -> Option<RequestTrace> {
    if !state.traces.enabled() {
        return None;
    }
    let from_meta = Propagated::from_meta(params.get("_meta"));
    let parent = match headers {
        Some(h) => Propagated::pick(from_meta, Propagated::from_headers(h)),
        None => from_meta,
    };
    let target = params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str);
    let mut attrs = vec![KeyValue::new("mcp_hangar.era", ctx.era.as_str())];
    if let Some(s) = &ctx.session {
        attrs.push(KeyValue::new("mcp.session.id", s.audit_id.to_string()));
        attrs.push(KeyValue::new("mcp.protocol.version", s.version.clone()));
    } else {
        attrs.push(KeyValue::new("mcp.protocol.version", MODERN_VERSION));
    }
    state.traces.request(method, target, &parent, attrs)
}

/// Ends a request's span with its outcome.
pub fn end_trace(ctx: &ClientCtx, result: Option<&Result<Value, RpcError>>) {
    let Some(trace) = &ctx.trace else { return };
    match result {
        None => trace.end(CallOutcome::Cancelled.as_str(), None),
        Some(r) => {
            let outcome = CallOutcome::of(r);
            let error = r.as_ref().err().map(|e| e.message.as_str());
            if let Err(e) = r {
                trace.set(KeyValue::new("rpc.jsonrpc.error_code", e.code));
            }
            trace.end(outcome.as_str(), error);
        }
    }
}

/// Ends the upstream sessions opened for a legacy client session that is over (deleted or
/// expired), in the background.
pub fn end_session(state: &AppState, client: &ClientSession) {
    let key = SessionKey::Client(client.audit_id.clone());
    let upstreams = state.snapshot().routes.all_upstreams();
    tokio::spawn(async move {
        for u in upstreams {
            u.close_session(&key).await;
        }
    });
}

/// The gateway's identity.
pub fn server_info() -> Value {
    json!({"name": "mcp-hangar", "version": env!("CARGO_PKG_VERSION")})
}

/// Handles one request (everything but `initialize` and `subscriptions/listen`, which the front
/// doors handle because they create sessions and streams).
pub async fn request(
    server: &Arc<McpServer>,
    snap: &Arc<Snapshot>,
    ctx: &ClientCtx,
    method: &str,
    params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let routes = &snap.routes;
    let result = match method {
        "ping" => Ok(json!({})),
        "server/discover" => Ok(discover(routes).await),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            if params.get("cursor").is_some_and(|c| !c.is_null()) {
                return Err(RpcError::new(code::INVALID_PARAMS, "invalid cursor: the gateway returns complete lists"));
            }
            let kind = ListKind::from_method(method).ok_or_else(|| unknown_method(method))?;
            let viewer = aggregate::Viewer { principal: &ctx.principal };
            Ok(aggregate::merged(routes, kind, ctx.era, Some(viewer)).await)
        }
        "tools/call" => call_named(server, snap, ctx, ListKind::Tools, method, params, events).await,
        "prompts/get" => call_named(server, snap, ctx, ListKind::Prompts, method, params, events).await,
        "resources/read" => call_resource(server, snap, ctx, method, params, events).await,
        "resources/subscribe" | "resources/unsubscribe" => subscribe(server, snap, ctx, method, &params).await,
        "completion/complete" => complete(server, snap, ctx, params, events).await,
        "logging/setLevel" => set_level(routes, ctx, params).await,
        _ => Err(unknown_method(method)),
    }?;
    Ok(finish_result(result, ctx.era))
}

/// Error for a method the gateway does not implement.
pub fn unknown_method(method: &str) -> RpcError {
    RpcError::new(code::METHOD_NOT_FOUND, format!("Method not found: {method}"))
}

/// Modern results carry `resultType` (legacy upstreams omit it); legacy clients get none of the
/// modern-only fields a modern upstream (another gateway, say) put in (`resultType`, `ttlMs`,
/// `cacheScope`, the 2026-07-28 `_meta` keys).
pub fn finish_result(mut result: Value, era: Era) -> Value {
    let Some(obj) = result.as_object_mut() else { return result };
    match era {
        Era::Modern => {
            obj.entry("resultType").or_insert_with(|| "complete".into());
        }
        Era::Legacy => {
            for key in ["resultType", "ttlMs", "cacheScope"] {
                obj.remove(key);
            }
            crate::proto::protocol::meta::strip_modern(obj, crate::proto::protocol::meta::MODERN_ONLY);
        }
    }
    result
}

/// Handles `initialize`: opens a legacy session and describes the gateway.
/// `client_addr` is the HTTP client's address (`None` on stdio), for the per-client session share.
pub async fn initialize(
    server: &Arc<McpServer>,
    snap: &Snapshot,
    params: &Value,
    client_addr: Option<std::net::IpAddr>,
    principal: Arc<Principal>,
) -> Result<(Arc<ClientSession>, Value), RpcError> {
    let requested = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
    let version = if LEGACY_VERSIONS.contains(&requested) { requested } else { LEGACY_VERSIONS[0] };
    let session = server
        .sessions
        .create(
            version.to_owned(),
            params.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            params.get("clientInfo").cloned().unwrap_or(Value::Null),
            client_addr,
            principal,
        )
        .map_err(|e| RpcError::new(code::INTERNAL_ERROR, e.to_string()))?;
    let mut capabilities = capabilities(&snap.routes).await;
    capabilities.insert("logging".into(), json!({}));
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info(),
        "instructions": instructions(&snap.routes),
    });
    Ok((session, result))
}

async fn discover(routes: &Routes) -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": [MODERN_VERSION],
        "capabilities": capabilities(routes).await,
        "instructions": instructions(routes),
        "_meta": {meta::SERVER_INFO: server_info()},
        "ttlMs": 60_000,
        "cacheScope": "public",
    })
}

/// The union of what the providers can do. Providers not yet contacted are asked (briefly);
/// tools are always offered (predefined tools need no contact).
async fn capabilities(routes: &Routes) -> Map<String, Value> {
    // Remote providers are asked; a subprocess provider is never started just to describe it
    // (lazy start): it contributes what it said when it last ran.
    let probes = routes.providers.iter().map(|p| async move {
        match &p.backend {
            crate::routing::Backend::Remote(r) => tokio::time::timeout(PROBE_TIMEOUT, r.probe()).await.ok()?.ok(),
            crate::routing::Backend::Process(u) => u.info(),
            _ => None,
        }
    });
    let infos = join_all(probes).await;
    let mut caps = Map::new();
    caps.insert("tools".into(), json!({"listChanged": true}));
    for info in infos.into_iter().flatten() {
        let c = &info.capabilities;
        if c.get("prompts").is_some() {
            caps.insert("prompts".into(), json!({"listChanged": true}));
        }
        if let Some(r) = c.get("resources") {
            let subscribe = r.get("subscribe") == Some(&json!(true))
                || caps.get("resources").and_then(|x| x.get("subscribe")) == Some(&json!(true));
            caps.insert("resources".into(), json!({"listChanged": true, "subscribe": subscribe}));
        }
        if c.get("completions").is_some() {
            caps.insert("completions".into(), json!({}));
        }
        if c.get("logging").is_some() {
            caps.insert("logging".into(), json!({}));
        }
    }
    caps
}

fn instructions(routes: &Routes) -> String {
    let mut lines = vec!["MCP Hangar gateway. Tools and prompts are named <prefix><name>, by provider:".to_owned()];
    for (_, p) in routes.exposed() {
        let prefix =
            if p.config.tool_prefix.is_empty() { "(no prefix)".to_owned() } else { p.config.tool_prefix.clone() };
        let desc = p.config.description.as_deref().map(|d| format!(" — {d}")).unwrap_or_default();
        lines.push(format!("- {prefix}: {}{desc}", p.name()));
    }
    lines.join("\n")
}

/// Refuses `item` to the caller unless the policy allows it. A refusal is audited and counted; it
/// comes before any upstream work, so a refused call never starts a provider.
pub fn authorize(server: &McpServer, ctx: &ClientCtx, item: Item<'_>) -> Result<(), RpcError> {
    authorize_as(&server.state, &ctx.principal, ctx.era.as_str(), item)
}

/// [`authorize`] for `principal`, reached through `door` (an era, or `admin_api`).
pub fn authorize_as(
    state: &AppState,
    principal: &Principal,
    door: &'static str,
    item: Item<'_>,
) -> Result<(), RpcError> {
    let decision = principal.decide(&item);
    if decision.allowed {
        return Ok(());
    }
    let what = item.describe();
    tracing::info!(principal = %principal.id, rule = %decision.by, "refused {what}");
    state.metrics.authorization_denied.with_label_values(&[item.provider()]).inc();
    state.audit.access_denied(&principal.id, door, item.provider(), &what, &decision.by);
    Err(RpcError::new(code::FORBIDDEN, format!("Forbidden: {} may not use {what}", principal.id))
        .with_data(json!({"principal": principal.id, "rule": decision.by})))
}

/// `tools/call` and `prompts/get`: find the provider by exposed name, call it with its own name.
async fn call_named(
    server: &Arc<McpServer>,
    snap: &Arc<Snapshot>,
    ctx: &ClientCtx,
    kind: ListKind,
    method: &str,
    mut params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let routes = &snap.routes;
    let what = if kind == ListKind::Tools { "tool" } else { "prompt" };
    if kind == ListKind::Tools && routes.admin_tools {
        if let Some(name) = params.get("name").and_then(Value::as_str).filter(|n| registry::is_registry_tool(n)) {
            authorize(server, ctx, Item::AdminTool { name })?;
            return registry::call(server, routes, ctx, name, &params, events).await;
        }
    }
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, format!("params.name (the {what} name) is required")))?
        .to_owned();
    let (idx, own_name) = aggregate::resolve_named(routes, kind, &name)
        .await
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, format!("Unknown {what}: {name:?}")))?;
    if kind == ListKind::Tools {
        return call_tool(server, routes, ctx, idx, own_name, &name, params, events).await;
    }
    authorize(server, ctx, Item::Prompt { provider: routes.providers[idx].name(), own: &own_name, exposed: &name })?;
    params["name"] = Value::String(own_name);
    forward(server, routes, ctx, Target { idx, idempotent: true }, method, params, events).await
}

/// A `tools/call` of provider `idx`'s tool `own_name`, which the client knows as `exposed`:
/// authorized, its arguments checked against the tool's schema, routed (retried where that is
/// safe), and recorded in the metrics and the audit trail. `registry_invoke` calls tools through
/// here too, so it is no way around any of that.
#[allow(clippy::too_many_arguments)]
pub async fn call_tool(
    server: &McpServer,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    idx: usize,
    own_name: String,
    exposed: &str,
    mut params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let provider = routes.providers[idx].name();
    authorize(server, ctx, Item::Tool { provider, own: &own_name, exposed })?;
    if let Some(checker) = arguments::checker(routes, idx, &own_name) {
        arguments::check(&checker.validator, exposed, params.get("arguments"))?;
    }
    let idempotent = routes.index.load().idempotent_tools.contains(exposed) || {
        // Retry safety comes from the provider's own list, which the gateway fetches by itself
        // when it has none (the call goes on meanwhile; a failure looks again).
        let known = aggregate::tool_is_idempotent(routes, idx, &own_name);
        if known.is_none() {
            aggregate::learn_tools(routes, idx);
        }
        known == Some(true)
    };
    params["name"] = Value::String(own_name);
    let arguments = server.state.audit.records_arguments().then(|| params.get("arguments").cloned()).flatten();
    let started = Instant::now();
    let result = forward(server, routes, ctx, Target { idx, idempotent }, "tools/call", params, events).await;
    let caller = if server.state.audit.enabled() { ctx.identity() } else { String::new() };
    let (tool_label, series) = routes.tool_series(idx, exposed);
    let record = CallRecord {
        provider: routes.providers[idx].name(),
        tool: exposed,
        tool_label,
        series: series.as_deref(),
        outcome: CallOutcome::of(&result),
        elapsed: started.elapsed(),
        caller: &caller,
        principal: &ctx.principal.id,
        era: ctx.era,
        error: result.as_ref().err().map(|e| e.message.as_str()),
        arguments,
    };
    record.record(&server.state.metrics, &server.state.audit);
    result
}

/// Resource requests, routed by URI (never rewritten).
async fn call_resource(
    server: &McpServer,
    snap: &Arc<Snapshot>,
    ctx: &ClientCtx,
    method: &str,
    params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let routes = &snap.routes;
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "params.uri is required"))?
        .to_owned();
    let Some(idx) = aggregate::resolve_resource(routes, &uri).await else {
        let c = if ctx.era == Era::Modern { code::INVALID_PARAMS } else { code::RESOURCE_NOT_FOUND_LEGACY };
        return Err(RpcError::new(c, format!("Resource not found: {uri}")).with_data(json!({"uri": uri})));
    };
    authorize(server, ctx, Item::Resource { provider: routes.providers[idx].name(), uri: &uri })?;
    forward(server, routes, ctx, Target { idx, idempotent: true }, method, params, events).await
}

/// Legacy `resources/subscribe`/`unsubscribe`: recorded at the gateway, which watches the
/// provider serving the URI and relays its updates to the session.
async fn subscribe(
    server: &Arc<McpServer>,
    snap: &Arc<Snapshot>,
    ctx: &ClientCtx,
    method: &str,
    params: &Value,
) -> Result<Value, RpcError> {
    let routes = &snap.routes;
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "params.uri is required"))?;
    let Some(session) = &ctx.session else {
        return Err(unknown_method(method));
    };
    let on = method == "resources/subscribe";
    let Some(idx) = aggregate::resolve_resource(routes, uri).await else {
        if !on {
            return Ok(json!({}));
        }
        return Err(RpcError::new(code::RESOURCE_NOT_FOUND_LEGACY, format!("Resource not found: {uri}"))
            .with_data(json!({"uri": uri})));
    };
    if on {
        authorize(server, ctx, Item::Resource { provider: routes.providers[idx].name(), uri })?;
    }
    // A legacy upstream keeps subscriptions per session (and may tie other session state to
    // them): pass the request to the client's own upstream session.
    let (member, upstream) = routes.upstream(idx)?;
    let info = upstream.probe().await.map_err(|e| e.to_rpc(routes.providers[member].name()))?;
    if info.era == Era::Legacy && info.capabilities.pointer("/resources/subscribe") == Some(&json!(true)) {
        return forward(server, routes, ctx, Target { idx, idempotent: false }, method, params.clone(), None).await;
    }
    session.set_subscribed(uri, on);
    crate::mcp::subscriptions::refresh(server).await;
    Ok(json!({}))
}

/// `completion/complete`: by prompt name or resource URI in `params.ref`.
async fn complete(
    server: &McpServer,
    snap: &Arc<Snapshot>,
    ctx: &ClientCtx,
    mut params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let routes = &snap.routes;
    let reference = params.get("ref").cloned().unwrap_or(Value::Null);
    let idx = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
            let (idx, own) = aggregate::resolve_named(routes, ListKind::Prompts, name)
                .await
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, format!("Unknown prompt: {name:?}")))?;
            let provider = routes.providers[idx].name();
            authorize(server, ctx, Item::Prompt { provider, own: &own, exposed: name })?;
            params["ref"]["name"] = Value::String(own);
            idx
        }
        Some("ref/resource") => {
            let uri = reference.get("uri").and_then(Value::as_str).unwrap_or_default();
            let idx = aggregate::resolve_resource(routes, uri)
                .await
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, format!("Resource not found: {uri}")))?;
            authorize(server, ctx, Item::Resource { provider: routes.providers[idx].name(), uri })?;
            idx
        }
        _ => return Err(RpcError::new(code::INVALID_PARAMS, "params.ref must be a ref/prompt or ref/resource")),
    };
    forward(server, routes, ctx, Target { idx, idempotent: true }, "completion/complete", params, events).await
}

/// `logging/setLevel` (legacy): remembered for the session and passed to its upstream sessions.
async fn set_level(routes: &Routes, ctx: &ClientCtx, params: Value) -> Result<Value, RpcError> {
    let level = params
        .get("level")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "params.level is required"))?;
    if !LOG_LEVELS.contains(&level) {
        return Err(RpcError::new(code::INVALID_PARAMS, format!("unknown log level {level:?}")));
    }
    if let Some(session) = &ctx.session {
        session.set_log_level(level);
    }
    let caller = ctx.session.as_ref().map_or_else(|| ctx.caller.clone(), |s| s.caller());
    let calls = routes.all_upstreams().into_iter().map(|upstream| {
        let caller = caller.clone();
        let params = params.clone();
        async move {
            let supports =
                upstream.info().is_some_and(|i| i.era == Era::Legacy && i.capabilities.get("logging").is_some());
            if supports {
                let _ = upstream.call("logging/setLevel", params, &caller, None).await;
            }
        }
    });
    join_all(calls).await;
    Ok(json!({}))
}

/// The log levels, least severe first.
const LOG_LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Whether notification `v` may go to the client: anything but a log message, or a log message
/// at or above the level the client asked for.
fn log_wanted(ctx: &ClientCtx, v: &Value) -> bool {
    if v.get("method").and_then(Value::as_str) != Some("notifications/message") {
        return true;
    }
    let rank = |l: &str| LOG_LEVELS.iter().position(|x| *x == l);
    let level = v.pointer("/params/level").and_then(Value::as_str).and_then(rank);
    match (ctx.caller.log_level.as_deref().and_then(rank), ctx.era) {
        (Some(min), _) => level.is_none_or(|l| l >= min),
        (None, Era::Modern) => false,
        (None, Era::Legacy) => true,
    }
}

/// Where a routed call goes, and whether repeating it is harmless.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// The provider or group.
    idx: usize,
    /// A read, or a tool marked read-only or idempotent.
    idempotent: bool,
}

/// Sends a routed request to its provider (a group picks a member, and may try another),
/// bridging server→client interactions across eras.
async fn forward(
    server: &McpServer,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    target: Target,
    method: &str,
    params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let result = dispatch(server, routes, ctx, target, method, params, events).await;
    if let Err(e) = &result {
        if e.code == code::SESSION_LOST {
            if let Some(client) = ctx.session.as_ref().and_then(|s| server.sessions.remove(&s.id)) {
                tracing::info!(session = %client.audit_id, "{}", e.message);
                end_session(&server.state, &client);
            }
        }
    }
    result
}

/// [`forward`] without the session bookkeeping.
async fn dispatch(
    server: &McpServer,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    target: Target,
    method: &str,
    params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let dispatch = Dispatch::new(routes.clone(), ctx, target.idx, method, &params, target.idempotent)?;
    let mrtr = supports_input_required(method);
    if ctx.era == Era::Modern && mrtr {
        let dispatch = Arc::new(dispatch);
        let (caller, method_owned) = (ctx.caller.clone(), method.to_owned());
        return bridge::modern_call(&server.parked, ctx, method, params, events, move |params, tx| async move {
            dispatch.call(&method_owned, params, &caller, Some(tx)).await.map(|(_, result)| result)
        })
        .await;
    }
    let resend = (ctx.era == Era::Legacy && mrtr).then(|| params.clone());
    let (member, result) = dispatch.call(method, params, &ctx.caller, events.clone()).await?;
    match resend {
        Some(params) if bridge::is_input_required(&result) => {
            let upstream = routes.concrete(member)?;
            bridge::legacy_rounds(&upstream, routes.providers[member].name(), ctx, method, params, result, &events)
                .await
        }
        _ => Ok(result),
    }
}

/// The bytes to send the client for an upstream message relayed during a call. Server→client
/// requests are registered with the legacy session, so the client's answer finds its way back;
/// a client without the needed capability gets none (the upstream gets an error instead). Log
/// messages below the client's level are dropped, and a modern request that set no level gets
/// none at all (2026-07-28: logging is per request), whatever an upstream sends.
pub fn relay_event(ctx: &ClientCtx, ev: crate::upstream::CallEvent) -> Option<Vec<u8>> {
    match ev {
        crate::upstream::CallEvent::Notification(v) if !log_wanted(ctx, &v) => None,
        crate::upstream::CallEvent::Notification(v) => serde_json::to_vec(&v).ok(),
        crate::upstream::CallEvent::Request(req) => {
            let capability = req.method.split('/').next().unwrap_or_default().to_owned();
            match &ctx.session {
                Some(client) if client.has_capability(&capability) => {
                    let (method, params) = (req.method.clone(), req.params.clone());
                    let id = client.register_request(req.respond)?;
                    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).ok()
                }
                _ => {
                    let _ = req.respond.send(Err(RpcError::new(
                        code::METHOD_NOT_FOUND,
                        format!("the client did not declare the {capability} capability"),
                    )));
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_clients_get_no_modern_only_fields() {
        let from_a_modern_upstream = json!({
            "resultType": "complete", "ttlMs": 5000, "cacheScope": "public",
            "content": [{"type": "text", "text": "hi"}],
            "_meta": {meta::SERVER_INFO: {"name": "inner"}, meta::PROTOCOL_VERSION: "2026-07-28", "progressToken": 7},
        });
        let legacy = finish_result(from_a_modern_upstream.clone(), Era::Legacy);
        assert_eq!(legacy, json!({"content": [{"type": "text", "text": "hi"}], "_meta": {"progressToken": 7}}));
        let bare = finish_result(json!({"tools": [], "_meta": {meta::SERVER_INFO: {}}}), Era::Legacy);
        assert_eq!(bare, json!({"tools": []}), "an emptied _meta goes");
        let modern = finish_result(json!({"content": []}), Era::Modern);
        assert_eq!(modern["resultType"], "complete");
        assert_eq!(finish_result(from_a_modern_upstream.clone(), Era::Modern), from_a_modern_upstream);
    }

    fn ctx(era: Era, level: Option<&str>) -> ClientCtx {
        let mut c = ClientCtx::modern(&json!({}), crate::auth::Principal::local());
        c.era = era;
        c.caller.log_level = level.map(str::to_owned);
        c
    }

    #[test]
    fn log_messages_follow_the_clients_level() {
        let log = |level: &str| json!({"method": "notifications/message", "params": {"level": level, "data": "x"}});
        let progress = json!({"method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
        assert!(!log_wanted(&ctx(Era::Modern, None), &log("error")), "a modern request without a level gets none");
        assert!(log_wanted(&ctx(Era::Modern, None), &progress));
        assert!(log_wanted(&ctx(Era::Modern, Some("warning")), &log("error")));
        assert!(!log_wanted(&ctx(Era::Modern, Some("warning")), &log("info")));
        assert!(
            log_wanted(&ctx(Era::Legacy, None), &log("debug")),
            "a legacy session without a level: the server decides"
        );
        assert!(!log_wanted(&ctx(Era::Legacy, Some("error")), &log("notice")));
    }
}
