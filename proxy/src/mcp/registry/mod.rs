//! The gateway's own tools, `registry_*` (names and argument names as in the Python MCP Hangar):
//! the operators' surface over MCP — providers and groups with their states, starting, stopping
//! and warming them, their tools, calling a provider's tool by its own name (with retries and
//! progress if asked), health, the dashboard as text, discovery, quarantine, reloads and the
//! audit trail. Every failure is a tool result with `isError` and the reason.

mod catalog;
mod invoke;
pub mod reload;
pub mod views;
mod warm;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::jsonrpc::RpcError;
use crate::lifecycle::Cause;
use crate::mcp::aggregate;
use crate::mcp::hub::ClientCtx;
use crate::mcp::server::McpServer;
use crate::proto::lists::ListKind;
use crate::routing::{ProviderRuntime, Routes};
use crate::telemetry::audit::Filter;
use crate::upstream::Events;

pub use catalog::tools;
use catalog::RELOAD_ALIAS;

/// Most records `registry_audit` returns.
pub const MAX_AUDIT_RECORDS: usize = 1000;

/// Whether `name` is one of the gateway's own tools.
pub fn is_registry_tool(name: &str) -> bool {
    name == RELOAD_ALIAS || (name.starts_with("registry_") && tools().iter().any(|t| t["name"] == name))
}

/// A registry tool's failure: the reason, for the `isError` result.
pub type Failure = String;

/// A registry tool's answer: its structured content, and the text for those who read it (the
/// structure pretty-printed unless the tool has words of its own).
struct Reply {
    structured: Value,
    text: Option<String>,
}

impl From<Value> for Reply {
    fn from(structured: Value) -> Self {
        Self { structured, text: None }
    }
}

/// Runs registry tool `name` for the `tools/call` with `params`. The caller is authorized for
/// the tool already. Failures are tool results with `isError`; a JSON-RPC error only comes from a
/// provider tool called through `registry_invoke*` that needs the client's input.
pub async fn call(
    server: &Arc<McpServer>,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    name: &str,
    params: &Value,
    events: Events,
) -> Result<Value, RpcError> {
    let empty = json!({});
    let args = params.get("arguments").filter(|a| !a.is_null()).unwrap_or(&empty);
    if !args.is_object() {
        return Ok(error_result("arguments must be an object"));
    }
    let outcome = match name {
        "registry_invoke" | "registry_invoke_ex" | "registry_invoke_stream" => {
            return invoke::run(server, routes, ctx, name, params, args, events).await;
        }
        "registry_warm" => warm::run(routes, params, args, events).await.map(Reply::from),
        "registry_reload" | RELOAD_ALIAS => reload::reload(server, args).await.map(Reply::from),
        "registry_discover" => reload::discover(server, args).await.map(Reply::from),
        "registry_approve" => reload::approve(server, args).await.map(Reply::from),
        _ => answer(server, routes, name, args).await,
    };
    Ok(match outcome {
        Ok(value) => tool_result(value),
        Err(why) => error_result(&why),
    })
}

/// Runs registry tool `name` with `args` for the admin API: one of those that look, start or
/// stop (not the invoke tools, which need an MCP caller, nor those that reload).
pub async fn look(server: &McpServer, routes: &Routes, name: &str, args: &Value) -> Result<Value, Failure> {
    answer(server, routes, name, args).await.map(|reply| reply.structured)
}

/// The tools that look (and start or stop a provider).
async fn answer(server: &McpServer, routes: &Routes, name: &str, args: &Value) -> Result<Reply, Failure> {
    let state = &server.state;
    let value = match name {
        "registry_list" => {
            no_arguments(args)?;
            json!({"providers": views::list(state, routes)})
        }
        "registry_details" => views::details(state, routes, provider(routes, args)?.1),
        "registry_start" => {
            let (_, p) = provider(routes, args)?;
            let upstream = p.upstream().ok_or_else(|| format!("{:?} is a group: start its members", p.name()))?;
            let checked = upstream.check().await;
            p.lifecycle.record(checked.as_ref().err().map(ToString::to_string).as_deref());
            checked.map_err(|e| format!("{:?} did not start: {e}", p.name()))?;
            views::summary(state, routes, p)
        }
        "registry_stop" => {
            let (_, p) = provider(routes, args)?;
            let upstream = p.upstream().ok_or_else(|| format!("{:?} is a group: stop its members", p.name()))?;
            upstream.stop(Cause::Stopped).await;
            views::summary(state, routes, p)
        }
        "registry_tools" => {
            let (idx, p) = provider(routes, args)?;
            let list = aggregate::provider_list(routes, idx, ListKind::Tools)
                .await
                .map_err(|e| format!("the tools of {:?} could not be listed: {}", p.name(), e.message))?;
            let tools: Vec<Value> = list
                .items
                .iter()
                .filter_map(|t| {
                    let own = t.get("name").and_then(Value::as_str)?;
                    p.config.exposes(own).then(|| json!({"name": own, "exposedName": format!("{}{own}", p.config.tool_prefix), "description": t.get("description"), "inputSchema": t.get("inputSchema")}))
                })
                .collect();
            json!({"provider": p.name(), "tools": tools})
        }
        "registry_health" => {
            no_arguments(args)?;
            views::health(server, routes)
        }
        "registry_status" => {
            no_arguments(args)?;
            let status = views::status(server, routes);
            return Ok(Reply { text: Some(views::status_text(&status)), structured: status });
        }
        "registry_sources" => {
            no_arguments(args)?;
            json!({"sources": views::sources(state)})
        }
        "registry_quarantine" => {
            no_arguments(args)?;
            json!({"quarantined": state.reconciler.admission().quarantined()})
        }
        "registry_audit" => {
            let filter = audit_filter(args)?;
            let audit = state.audit.clone();
            let answer = tokio::task::spawn_blocking(move || audit.query(&filter))
                .await
                .map_err(|e| format!("the audit query failed: {e}"))??;
            let mut v = json!({"records": answer.records});
            if answer.truncated {
                v["truncated"] = json!(true);
                v["note"] = json!(format!(
                    "stopped after reading {} MiB of the trail; narrow the query with since_ms/until_ms",
                    crate::telemetry::audit::MAX_SCAN >> 20
                ));
            }
            v
        }
        _ => return Err(format!("Unknown tool: {name:?}")),
    };
    Ok(value.into())
}

/// The provider or group the `provider` argument names.
fn provider<'r>(routes: &'r Routes, args: &Value) -> Result<(usize, &'r Arc<ProviderRuntime>), Failure> {
    only(args, &["provider"])?;
    let name = string_arg(args, "provider")?.ok_or("arguments.provider is required")?;
    routes.provider(name).ok_or_else(|| {
        let known: Vec<&str> = routes.providers.iter().map(|p| p.name()).collect();
        format!("unknown provider {name:?} (known: {})", known.join(", "))
    })
}

/// Argument `key` as a string, if given; another type is an error.
fn string_arg<'a>(args: &'a Value, key: &str) -> Result<Option<&'a str>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("arguments.{key} must be a string")),
    }
}

/// Refuses arguments to a tool that takes none (a misspelt argument must not go unnoticed).
fn no_arguments(args: &Value) -> Result<(), Failure> {
    only(args, &[])
}

/// Refuses arguments other than `known`.
fn only(args: &Value, known: &[&str]) -> Result<(), Failure> {
    let unknown: Vec<&str> =
        args.as_object().into_iter().flatten().map(|(k, _)| k.as_str()).filter(|k| !known.contains(k)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let expected = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
    Err(format!("unknown argument(s): {} (expected: {expected})", unknown.join(", ")))
}

/// The filter of a `registry_audit` call (or an admin API audit query); wrong types are errors,
/// not ignored.
pub fn audit_filter(args: &Value) -> Result<Filter, Failure> {
    only(args, &["since_ms", "until_ms", "provider", "caller", "type", "limit"])?;
    let time = |k: &str| match args.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("arguments.{k} must be a non-negative integer (ms since the epoch)")),
    };
    let text = |k: &str| string_arg(args, k).map(|s| s.map(str::to_owned));
    let limit = match args.get("limit") {
        None | Some(Value::Null) => 100,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_AUDIT_RECORDS as u64).contains(n))
            .ok_or_else(|| format!("arguments.limit must be an integer from 1 to {MAX_AUDIT_RECORDS}"))?
            as usize,
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

/// The tool result of `reply`.
fn tool_result(reply: Reply) -> Value {
    let text = reply.text.unwrap_or_else(|| serde_json::to_string_pretty(&reply.structured).unwrap_or_default());
    json!({"content": [{"type": "text", "text": text}], "structuredContent": reply.structured, "isError": false})
}

fn error_result(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}
