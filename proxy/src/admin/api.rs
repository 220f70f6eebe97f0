//! The admin API's answers: each route runs the registry tool it stands for (or reads the same
//! views), so the API, the tools and the dashboard always agree. Failures a caller can fix are
//! 400 or 404 with `{"error": reason}`.

use std::sync::Arc;

use pingora_core::protocols::http::ServerSession as Session;
use serde_json::{json, Map, Value};

use super::routes::{percent_decode, Route};
use super::{assets, error};
use crate::auth::Principal;
use crate::front::detached::{DetachedStream, Feed};
use crate::front::http::RequestCtx;
use crate::front::reply::Reply;
use crate::front::{body, checks::Accepts, respond};
use crate::mcp::registry::{self, reload, views};
use crate::mcp::server::McpServer;

/// Answers an authorized API request.
pub(super) async fn serve(
    server: &Arc<McpServer>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
    route: Route,
) -> pingora_core::Result<()> {
    let snap = ctx.snap.clone();
    let routes = &snap.routes;
    let state = &server.state;
    let by = format!("admin API ({})", principal.id);
    let query = session.req_header().uri.query().unwrap_or_default().to_owned();
    let answer: Result<Value, (u16, String)> = match route {
        Route::Events => return events(server, session, ctx).await,
        Route::Overview => Ok(overview(server, routes)),
        Route::Providers => Ok(json!({"providers": views::list(state, routes)})),
        Route::Groups => Ok(
            json!({"groups": views::list(state, routes).into_iter().filter(|p| p["mode"] == "group").collect::<Vec<_>>()}),
        ),
        Route::Provider(name) => tool(server, routes, "registry_details", &name).await,
        Route::Tools(name) => tool(server, routes, "registry_tools", &name).await,
        Route::Start(name) => tool(server, routes, "registry_start", &name).await,
        Route::Stop(name) => tool(server, routes, "registry_stop", &name).await,
        Route::Stats => Ok(stats(server, routes)),
        Route::Sources => Ok(json!({"sources": views::sources(state)})),
        Route::Quarantine => Ok(json!({"quarantined": state.reconciler.admission().quarantined()})),
        Route::Approve(name) => reload::approve_named(server, &name, &by).await.map_err(bad),
        Route::Config => Ok(config(server)),
        Route::DryRun => {
            let limit = snap.config.server.limits.max_body_bytes;
            let min_rate = snap.config.server.limits.min_body_rate;
            match body::read_body(state, session, limit, min_rate).await {
                Err((status, e)) => Err((status, e.message)),
                Ok((text, _held)) => match std::str::from_utf8(&text) {
                    Err(_) => Err((400, "the candidate configuration is not UTF-8 text".into())),
                    Ok(t) if t.trim().is_empty() => reload::dry_run_of(server, None).await.map_err(bad),
                    Ok(t) => reload::dry_run_of(server, Some(t)).await.map_err(bad),
                },
            }
        }
        Route::Reload => match query_args(&query).and_then(|args| flag(&args, "graceful")) {
            Ok(graceful) => reload::reloaded(server, &by, graceful.unwrap_or(true)).await.map_err(bad),
            Err(e) => Err(e),
        },
        Route::Audit => match query_args(&query) {
            Ok(args) => registry::look(server, routes, "registry_audit", &Value::Object(args)).await.map_err(bad),
            Err(e) => Err(e),
        },
    };
    match answer {
        Ok(v) => respond::send(session, 200, "application/json", assets::API_HEADERS, v.to_string()).await,
        Err((status, why)) => error(session, status, &why).await,
    }
}

/// A registry tool on provider `name`: an unknown provider is 404, any other failure 400.
async fn tool(
    server: &McpServer,
    routes: &crate::routing::Routes,
    name: &str,
    provider: &str,
) -> Result<Value, (u16, String)> {
    if routes.provider(provider).is_none() {
        return Err((404, format!("unknown provider {provider:?}")));
    }
    registry::look(server, routes, name, &json!({"provider": provider})).await.map_err(bad)
}

fn bad(why: String) -> (u16, String) {
    (400, why)
}

/// Most lifecycle events the overview carries.
const OVERVIEW_EVENTS: usize = 40;

/// The status (as `registry_status`) and the latest lifecycle events, kept in memory whether or
/// not the audit trail is written, as the event feed shows them.
fn overview(server: &McpServer, routes: &crate::routing::Routes) -> Value {
    let mut v = views::status(server, routes);
    let events: Vec<Value> = server
        .state
        .events
        .recent(None, OVERVIEW_EVENTS)
        .into_iter()
        .map(|e| {
            json!({"type": "provider_event", "at_ms": e.at_ms, "provider": e.provider, "from": e.from, "to": e.to,
                "cause": e.cause, "detail": e.detail, "event_seq": e.seq})
        })
        .collect();
    v["events"] = json!(events);
    v
}

/// Every provider's recent intervals.
fn stats(server: &McpServer, routes: &crate::routing::Routes) -> Value {
    let state = &server.state;
    let providers: Map<String, Value> =
        routes.providers.iter().map(|p| (p.name().to_owned(), json!(state.stats.series(p.name())))).collect();
    json!({"interval_s": crate::telemetry::recent::INTERVAL.as_secs(), "providers": providers})
}

/// The running configuration: its generation, the last reload, where it came from, and a copy
/// with every secret redacted.
fn config(server: &McpServer) -> Value {
    let state = &server.state;
    let snap = state.snapshot();
    let mut v = views::config_status(state);
    v["source"] = json!(state.reconciler.path().map(|p| p.display().to_string()));
    v["config"] = serde_json::to_value(&*snap.config).unwrap_or_else(|e| json!({"error": e.to_string()}));
    v
}

/// The query string as registry tool arguments: numbers where they parse, text otherwise.
fn query_args(query: &str) -> Result<Map<String, Value>, (u16, String)> {
    let mut args = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err((400, format!("bad query parameter {pair:?}")));
        };
        let value = v.parse::<u64>().map_or_else(|_| Value::String(v.clone()), Value::from);
        if args.insert(k.clone(), value).is_some() {
            return Err((400, format!("query parameter {k:?} given twice")));
        }
    }
    Ok(args)
}

/// Boolean query parameter `key` (`true`/`false`); any other parameter is refused.
fn flag(args: &Map<String, Value>, key: &str) -> Result<Option<bool>, (u16, String)> {
    if let Some(other) = args.keys().find(|k| *k != key) {
        return Err((400, format!("unknown query parameter {other:?} (expected: {key})")));
    }
    match args.get(key).map(|v| v.as_str()) {
        None => Ok(None),
        Some(Some("true")) => Ok(Some(true)),
        Some(Some("false")) => Ok(Some(false)),
        Some(_) => Err((400, format!("{key} must be true or false"))),
    }
}

/// The event feed: an SSE stream of the audit trail as it happens (provider state and breaker
/// changes, reloads, discovery, refusals), opened with a `hello` event carrying the generation.
async fn events(server: &Arc<McpServer>, session: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    let Some(slot) = server.state.open_stream() else {
        return error(session, 503, "too many open streams").await;
    };
    let rx = server.state.audit.subscribe();
    let mut reply = Reply::new(Accepts { json: false, sse: true, prefer_sse: true }, Vec::new());
    let hello =
        json!({"type": "hello", "generation": server.state.snapshot().generation, "at_ms": crate::telemetry::now_ms()});
    reply.event(session, hello.to_string().as_bytes()).await?;
    ctx.detached = Some(DetachedStream::new(server, Feed::Admin { rx }, slot));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_become_arguments() {
        let args = query_args("since_ms=5&provider=my%20fx&type=tool_call").expect("parsed");
        assert_eq!(Value::Object(args), json!({"since_ms": 5, "provider": "my fx", "type": "tool_call"}));
        assert!(query_args("a=1&a=2").is_err(), "twice");
        assert!(query_args("a=%zz").is_err());
        assert_eq!(flag(&query_args("graceful=false").expect("parsed"), "graceful"), Ok(Some(false)));
        assert!(flag(&query_args("gracefull=false").expect("parsed"), "graceful").is_err());
        assert!(flag(&query_args("graceful=maybe").expect("parsed"), "graceful").is_err());
    }
}
