//! The gateway's own tools, `registry_*` (names as in the Python MCP Hangar): the admin surface
//! for providers — their states and lifecycle events, starting and stopping them, their tools, and
//! calling a provider's tool by its own name.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::jsonrpc::{code, RpcError};
use crate::lifecycle::{Cause, State};
use crate::mcp::aggregate;
use crate::mcp::hub::ClientCtx;
use crate::mcp::server::McpServer;
use crate::proto::lists::ListKind;
use crate::routing::{Backend, ProviderRuntime, Routes};
use crate::state::AppState;
use crate::telemetry::audit::Filter;
use crate::upstream::{Events, Upstream};

/// Lifecycle events returned by `registry_details`.
const DETAIL_EVENTS: usize = 20;
/// Longest `registry_discover` waits for the sources to look.
const DISCOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most records `registry_audit` returns.
const MAX_AUDIT_RECORDS: usize = 1000;

/// The tool definitions, in listing order.
pub fn tools() -> Vec<Value> {
    let provider = json!({"type": "object", "properties": {"provider": {"type": "string", "description": "Provider name"}}, "required": ["provider"]});
    vec![
        json!({"name": "registry_list", "description": "List every provider with its state (COLD, INITIALIZING, READY, DEGRADED, DEAD), mode and activity.", "inputSchema": {"type": "object", "properties": {}}}),
        json!({"name": "registry_details", "description": "One provider in detail: configuration summary, upstream identity, recent lifecycle events.", "inputSchema": provider}),
        json!({"name": "registry_start", "description": "Start a provider (or retry a DEAD one) and report its state.", "inputSchema": provider}),
        json!({"name": "registry_stop", "description": "Stop a provider: processes exit, sessions close; it returns to COLD.", "inputSchema": provider}),
        json!({"name": "registry_tools", "description": "The tools of one provider, under their own names and their exposed names.", "inputSchema": provider}),
        json!({"name": "registry_invoke", "description": "Call a provider's tool by the provider's own tool name.", "inputSchema": {"type": "object", "properties": {
            "provider": {"type": "string"}, "tool": {"type": "string"}, "arguments": {"type": "object"}}, "required": ["provider", "tool"]}}),
        json!({"name": "registry_health", "description": "Gateway health: providers by state, sessions, open streams.", "inputSchema": {"type": "object", "properties": {}}}),
        json!({"name": "registry_audit", "description": "Query the audit trail (provider events, tool calls, configuration): the latest records matching every filter given, oldest first.", "inputSchema": {"type": "object", "properties": {
            "since_ms": {"type": "integer", "description": "Records at or after this time (ms since the Unix epoch)"},
            "until_ms": {"type": "integer", "description": "Records before this time"},
            "provider": {"type": "string"},
            "caller": {"type": "string", "description": "session:<id>, client:<name>, anonymous, or a principal (service:ci, user:alice)"},
            "type": {"type": "string", "enum": ["provider_event", "tool_call", "config_applied", "config_rejected", "access_denied", "discovery"]},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_RECORDS, "default": 100}}}}),
        json!({"name": "registry_reload", "description": "Reload the configuration (file and discovery sources) now and report what changed: providers added, removed, updated (which fields; restarted or applied in place), unchanged, settings that need a restart, the duration. dry_run: only say what would change (and which exposed tools, prompts and legacy sessions it touches). Also answers to hangar_reload_config.", "inputSchema": {"type": "object", "properties": {
            "graceful": {"type": "boolean", "default": true, "description": "Let replaced providers finish the requests they have (up to shutdown_timeout_s) before they stop"},
            "dry_run": {"type": "boolean", "default": false}}}}),
        json!({"name": "registry_quarantine", "description": "Discovered providers held back (a failed admission check, or discovery.auto_register off): name, source, reason, since when. They are listed nowhere and never routed to until approved.", "inputSchema": {"type": "object", "properties": {}}}),
        json!({"name": "registry_approve", "description": "Let a quarantined provider in: it serves from the reload this starts, which is reported.", "inputSchema": provider.clone()}),
        json!({"name": "registry_discover", "description": "Run a discovery cycle now: every source looks (containers listed, Kubernetes resources looked at, entry points and registries read, provider directories read by the reload), then the configuration is reloaded; reports what changed and each source's report.", "inputSchema": {"type": "object", "properties": {}}}),
        json!({"name": "registry_sources", "description": "The discovery sources: type, mode, whether they are read and healthy, when they last looked, the providers they define and what they found and could not use (bad labels, names taken).", "inputSchema": {"type": "object", "properties": {}}}),
    ]
}

/// The Python MCP Hangar's name for `registry_reload`: callable, not listed.
const RELOAD_ALIAS: &str = "hangar_reload_config";

/// Whether `name` is one of the gateway's own tools.
pub fn is_registry_tool(name: &str) -> bool {
    name == RELOAD_ALIAS || (name.starts_with("registry_") && tools().iter().any(|t| t["name"] == name))
}

/// Runs a registry tool. Failures that concern the request (unknown provider, missing argument)
/// are JSON-RPC errors; a provider failing to start is a tool result with `isError`.
pub async fn call(
    server: &Arc<McpServer>,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    name: &str,
    args: &Value,
    events: Events,
) -> Result<Value, RpcError> {
    let state = &server.state;
    let provider = || -> Result<(usize, &Arc<ProviderRuntime>), RpcError> {
        let n = args
            .get("provider")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "arguments.provider is required"))?;
        routes.provider(n).ok_or_else(|| RpcError::new(code::INVALID_PARAMS, format!("unknown provider {n:?}")))
    };
    let result = match name {
        "registry_list" => {
            json!({"providers": routes.providers.iter().map(|p| summary(routes, p)).collect::<Vec<_>>()})
        }
        "registry_details" => {
            let (_, p) = provider()?;
            let mut v = summary(routes, p);
            v["config"] = json!({
                "idle_ttl_s": p.config.idle_ttl.as_secs_f64(),
                "warm": p.config.warm,
                "health_check_interval_s": p.config.health_check_interval.as_secs_f64(),
                "health_check_timeout_s": p.config.health_check_timeout.as_secs_f64(),
                "max_consecutive_failures": p.config.max_consecutive_failures,
                "circuit_breaker": {
                    "open_s": p.config.circuit_breaker.open.as_secs_f64(),
                    "half_open_probes": p.config.circuit_breaker.half_open_probes,
                    "error_rate": p.config.circuit_breaker.error_rate,
                    "min_calls": p.config.circuit_breaker.min_calls,
                },
                "predefined_tools": p.config.tools.len(),
            });
            if let Some(info) = concrete(p).and_then(|u| u.info()) {
                v["upstream"] = json!({"era": format!("{:?}", info.era), "version": info.version, "serverInfo": info.server_info, "capabilities": info.capabilities});
            }
            v["events"] = json!(state.events.recent(Some(p.name()), DETAIL_EVENTS));
            v
        }
        "registry_start" => {
            let (_, p) = provider()?;
            let Some(upstream) = concrete(p) else {
                return Ok(error_result(&format!("{:?} is a group: start its members", p.name())));
            };
            let checked = upstream.check().await;
            p.lifecycle.record(checked.as_ref().err().map(ToString::to_string).as_deref());
            if let Err(e) = checked {
                return Ok(error_result(&format!("{:?} did not start: {e}", p.name())));
            }
            summary(routes, p)
        }
        "registry_stop" => {
            let (_, p) = provider()?;
            let Some(upstream) = concrete(p) else {
                return Ok(error_result(&format!("{:?} is a group: stop its members", p.name())));
            };
            upstream.stop(Cause::Stopped).await;
            summary(routes, p)
        }
        "registry_tools" => {
            let (idx, p) = provider()?;
            let list = aggregate::provider_list(routes, idx, ListKind::Tools).await?;
            let tools: Vec<Value> = list
                .items
                .iter()
                .map(|t| {
                    let own = t.get("name").and_then(Value::as_str).unwrap_or_default();
                    json!({"name": own, "exposedName": format!("{}{own}", p.config.tool_prefix), "description": t.get("description"), "inputSchema": t.get("inputSchema")})
                })
                .collect();
            json!({"provider": p.name(), "tools": tools})
        }
        "registry_invoke" => {
            let (idx, _) = provider()?;
            let tool = args
                .get("tool")
                .and_then(Value::as_str)
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "arguments.tool is required"))?;
            // A tool trimmed by tools_include/tools_exclude is not offered, by any path.
            if !routes.providers[idx].config.exposes(tool) {
                return Err(RpcError::new(code::INVALID_PARAMS, format!("Unknown tool: {tool:?}")));
            }
            let params =
                json!({"name": tool, "arguments": args.get("arguments").cloned().unwrap_or_else(|| json!({}))});
            return invoke(routes, ctx, idx, params, events).await;
        }
        "registry_health" => health(server, routes),
        "registry_sources" => json!({"sources": sources(state)}),
        "registry_quarantine" => json!({"quarantined": state.reconciler.admission().quarantined()}),
        "registry_approve" => {
            let name = args
                .get("provider")
                .and_then(Value::as_str)
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "arguments.provider is required"))?;
            if !state.reconciler.admission().approve(name) {
                return Err(RpcError::new(code::INVALID_PARAMS, format!("{name:?} is not quarantined")));
            }
            state.audit.discovery("approved", name, None, "by registry_approve");
            return reload_as(server, "registry_approve", true).await;
        }
        "registry_reload" | RELOAD_ALIAS => return reload(server, args).await,
        "registry_discover" => return discover(server).await,
        "registry_audit" => {
            let filter = audit_filter(args)?;
            let audit = state.audit.clone();
            let records = tokio::task::spawn_blocking(move || audit.query(&filter))
                .await
                .map_err(|e| RpcError::new(code::INTERNAL_ERROR, format!("audit query failed: {e}")))?;
            match records {
                Ok(answer) if answer.truncated => json!({
                    "records": answer.records,
                    "truncated": true,
                    "note": format!("stopped after reading {} MiB of the trail; narrow the query with since_ms/until_ms", crate::telemetry::audit::MAX_SCAN >> 20),
                }),
                Ok(answer) => json!({"records": answer.records}),
                Err(why) => return Ok(error_result(&why)),
            }
        }
        _ => return Err(RpcError::new(code::INVALID_PARAMS, format!("Unknown tool: {name:?}"))),
    };
    Ok(tool_result(result))
}

/// The filter of a `registry_audit` call; wrong types are errors, not ignored.
fn audit_filter(args: &Value) -> Result<Filter, RpcError> {
    let bad = |k: &str, what: &str| RpcError::new(code::INVALID_PARAMS, format!("arguments.{k} must be {what}"));
    let time = |k: &str| match args.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(k, "a non-negative integer (ms since the epoch)")),
    };
    let text = |k: &str| match args.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| bad(k, "a string")),
    };
    let limit = match args.get("limit") {
        None | Some(Value::Null) => 100,
        Some(v) => {
            v.as_u64()
                .filter(|n| (1..=MAX_AUDIT_RECORDS as u64).contains(n))
                .ok_or_else(|| bad("limit", &format!("an integer from 1 to {MAX_AUDIT_RECORDS}")))? as usize
        }
    };
    Ok(Filter {
        since_ms: time("since_ms")?,
        until_ms: time("until_ms")?,
        provider: text("provider")?,
        caller: text("caller")?,
        kind: text("type")?,
        limit,
    })
}

async fn invoke(
    routes: &Routes,
    ctx: &ClientCtx,
    idx: usize,
    params: Value,
    events: Events,
) -> Result<Value, RpcError> {
    let (member, upstream) = routes.upstream(idx)?;
    upstream
        .call("tools/call", params, &ctx.caller, events)
        .await
        .map_err(|e| e.to_rpc(routes.providers[member].name()))
}

/// `registry_reload`: a reload (or its dry run) and its report; a rejected candidate is a tool
/// error with the reason.
async fn reload(server: &McpServer, args: &Value) -> Result<Value, RpcError> {
    let state = &server.state;
    let flag = |k: &str, default: bool| match args.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            v.as_bool().ok_or_else(|| RpcError::new(code::INVALID_PARAMS, format!("arguments.{k} must be a boolean")))
        }
    };
    let (graceful, dry_run) = (flag("graceful", true)?, flag("dry_run", false)?);
    let result = if dry_run {
        match state.reconciler.preview(state).await {
            Ok((candidate, plan)) => {
                let snap = state.snapshot();
                let live = LiveGateway { snap: &snap, server };
                let mut d = crate::state::diff::describe(&snap.config, &candidate, &plan, Some(&live));
                d["status"] = json!("dry_run");
                d
            }
            Err(e) => return Ok(error_result(&format!("the configuration would be rejected: {e}"))),
        }
    } else {
        return reload_as(server, "registry_reload", graceful).await;
    };
    Ok(tool_result(result))
}

/// Reloads now and reports what changed, as `registry_reload` does.
async fn reload_as(server: &McpServer, trigger: &str, graceful: bool) -> Result<Value, RpcError> {
    Ok(match reloaded(server, trigger, graceful).await {
        Ok(result) => tool_result(result),
        Err(why) => error_result(&why),
    })
}

/// Reloads now: what changed, or why the configuration was rejected.
async fn reloaded(server: &McpServer, trigger: &str, graceful: bool) -> Result<Value, String> {
    let state = &server.state;
    match state.reconciler.reload(state, trigger, graceful).await {
        Ok(report) => {
            let mut r = report.plan.to_json();
            r["status"] = json!(if report.applied { "success" } else { "unchanged" });
            r["generation"] = json!(report.generation);
            r["duration_ms"] = json!(report.duration.as_secs_f64() * 1000.0);
            Ok(r)
        }
        Err(e) => Err(format!("the configuration was rejected; the running one stays: {e}")),
    }
}

/// `registry_discover`: every source looks now, then a reload applies what they found. The
/// reply says what changed over the whole cycle (a source that found something reloads by
/// itself too, so the final reload alone may have nothing left to do).
async fn discover(server: &McpServer) -> Result<Value, RpcError> {
    let state = &server.state;
    let before = state.snapshot();
    let all = state.reconciler.live().look_now(DISCOVER_WAIT).await;
    if let Err(why) = reloaded(server, "registry_discover", true).await {
        return Ok(error_result(&why));
    }
    let after = state.snapshot();
    let mut now = (*after.config).clone();
    let plan = crate::state::reconcile::plan(&before.config, &mut now);
    let mut result = plan.to_json();
    result["status"] = json!(if after.generation == before.generation { "unchanged" } else { "success" });
    result["generation"] = json!(after.generation);
    result["sources"] = json!(sources(state));
    if !all {
        result["note"] = json!(format!(
            "not every source looked within {} s (see its error); what they last found was used",
            DISCOVER_WAIT.as_secs()
        ));
    }
    Ok(tool_result(result))
}

/// A tool result with `value` as structured content and as text.
fn tool_result(value: Value) -> Value {
    json!({"content": [{"type": "text", "text": serde_json::to_string_pretty(&value).unwrap_or_default()}], "structuredContent": value, "isError": false})
}

/// The running gateway, as the dry run sees it.
struct LiveGateway<'a> {
    snap: &'a crate::state::Snapshot,
    server: &'a McpServer,
}

impl crate::state::diff::Live for LiveGateway<'_> {
    fn listed(&self, provider: &str, prompts: bool) -> Option<Vec<String>> {
        let (_, p) = self.snap.routes.provider(provider)?;
        let list = p.lists.get(if prompts { ListKind::Prompts } else { ListKind::Tools })?;
        Some(list.items.iter().filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
    }

    fn sessions_pinned_to(&self, member: &str) -> usize {
        self.server.sessions.all().iter().filter(|s| s.pinned_to(member)).count()
    }
}

fn health(server: &McpServer, routes: &Routes) -> Value {
    let mut by_state = serde_json::Map::new();
    for s in [State::Cold, State::Initializing, State::Ready, State::Degraded, State::Dead] {
        let n = routes.providers.iter().filter(|p| !is_group(p) && p.lifecycle.state() == s).count();
        by_state.insert(s.as_str().into(), n.into());
    }
    json!({
        "status": if routes.providers.iter().any(|p| p.lifecycle.state() == State::Dead) { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "providers": by_state,
        "sessions": server.sessions.len(),
        "listeners": server.listeners.len(),
        "parked_calls": server.parked.len(),
        "inflight_requests": server.state.inflight(),
        "config": config_status(&server.state),
    })
}

/// Each discovery source: what it is, and what it found.
fn sources(state: &AppState) -> Vec<Value> {
    let snap = state.snapshot();
    let discovery = &snap.config.discovery;
    let live = state.reconciler.live();
    discovery
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mode = match s.mode {
                hangar_config::DiscoveryMode::Additive => "additive",
                hangar_config::DiscoveryMode::Authoritative => "authoritative",
            };
            let mut v = match &s.kind {
                hangar_config::SourceKind::Filesystem { path, .. } => json!({
                    "healthy": true,
                    "path": path,
                    "providers": snap.config.providers.iter()
                        .filter(|p| p.source.as_deref().is_some_and(|f| f.starts_with(path)))
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>(),
                }),
                _ => match live.report(i) {
                    Some(report) => report.to_json(),
                    None => json!({"healthy": false, "providers": [], "error": "not looked yet"}),
                },
            };
            v["index"] = i.into();
            v["type"] = s.kind.type_name().into();
            v["mode"] = mode.into();
            v["enabled"] = discovery.enabled.into();
            v
        })
        .collect()
}

/// The running configuration's generation and the last reload's outcome.
pub fn config_status(state: &AppState) -> Value {
    let last = state.reconciler.last();
    json!({
        "generation": state.snapshot().generation,
        "last_reload": {"trigger": last.trigger, "outcome": last.outcome, "error": last.error, "at_ms": last.at_ms},
        "draining_instances": state.reconciler.draining().len(),
    })
}

fn summary(routes: &Routes, p: &ProviderRuntime) -> Value {
    let pid = match &p.backend {
        Backend::Process(u) => u.pid(),
        _ => None,
    };
    if let Some(pool) = routes.provider(p.name()).and_then(|(idx, _)| routes.pool(idx)) {
        let members: Vec<Value> = pool
            .members
            .iter()
            .map(|&m| {
                let member = &routes.providers[m];
                let weight = p.config.kind.group_member(member.name()).map(|c| (c.weight, c.priority));
                json!({
                    "name": member.name(),
                    "state": member.lifecycle.state().as_str(),
                    "circuit": member.lifecycle.breaker.state().as_str(),
                    "inflight": member.lifecycle.inflight(),
                    "weight": weight.map(|w| w.0),
                    "priority": weight.map(|w| w.1),
                })
            })
            .collect();
        return json!({
            "name": p.name(),
            "mode": "group",
            "state": "GROUP",
            "strategy": pool.strategy.as_str(),
            "expose": p.config.expose,
            "tool_prefix": p.config.tool_prefix,
            "members": members,
        });
    }
    json!({
        "name": p.name(),
        "mode": p.config.kind.mode(),
        "state": p.lifecycle.state().as_str(),
        "circuit": p.lifecycle.breaker.state().as_str(),
        "error_rate": p.lifecycle.breaker.error_rate(),
        "expose": p.config.expose,
        "tool_prefix": p.config.tool_prefix,
        "inflight": p.lifecycle.inflight(),
        "consecutive_failures": p.lifecycle.consecutive_failures(),
        "last_error": p.lifecycle.last_error(),
        "pid": pid,
    })
}

fn is_group(p: &ProviderRuntime) -> bool {
    p.is_group()
}

fn concrete(p: &ProviderRuntime) -> Option<Arc<dyn Upstream>> {
    match &p.backend {
        Backend::Remote(r) => Some(r.clone()),
        Backend::Process(u) => Some(u.clone()),
        _ => None,
    }
}

fn error_result(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}
