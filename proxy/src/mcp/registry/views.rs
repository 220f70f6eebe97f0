//! What the operators' surface shows of the running gateway, as JSON: the same views back the
//! `registry_*` tools, the admin API and the dashboard, so they never disagree.

use serde_json::{json, Value};
use std::fmt::Write as _;

use crate::lifecycle::State;
use crate::mcp::server::McpServer;
use crate::routing::{Backend, ProviderRuntime, Routes};
use crate::state::AppState;

/// Lifecycle events in a provider's details.
const DETAIL_EVENTS: usize = 20;

/// A provider's or group's summary: state, circuit, activity and recent traffic.
pub fn summary(state: &AppState, routes: &Routes, p: &ProviderRuntime) -> Value {
    let mut v = if let Some(pool) = routes.provider(p.name()).and_then(|(idx, _)| routes.pool(idx)) {
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
        json!({
            "name": p.name(),
            "mode": "group",
            "state": "GROUP",
            "strategy": pool.strategy.as_str(),
            "expose": p.config.expose,
            "tool_prefix": p.config.tool_prefix,
            "members": members,
        })
    } else {
        let pid = match &p.backend {
            Backend::Process(u) => u.pid(),
            _ => None,
        };
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
    };
    v["recent"] = state.stats.summary(p.name());
    v
}

/// Every provider's and group's summary, in declaration order.
pub fn list(state: &AppState, routes: &Routes) -> Vec<Value> {
    routes.providers.iter().map(|p| summary(state, routes, p)).collect()
}

/// One provider or group in detail.
pub fn details(state: &AppState, routes: &Routes, p: &ProviderRuntime) -> Value {
    let mut v = summary(state, routes, p);
    v["config"] = json!({
        "description": p.config.description,
        "idle_ttl_s": p.config.idle_ttl.as_secs_f64(),
        "warm": p.config.warm,
        "call_timeout_s": p.config.call_timeout.as_secs_f64(),
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
        "source": p.config.source.as_ref().map(|s| s.display().to_string()),
    });
    if let Some(info) = p.upstream().and_then(|u| u.info()) {
        v["upstream"] = json!({"era": info.era.as_str(), "version": info.version, "serverInfo": info.server_info, "capabilities": info.capabilities});
    }
    v["events"] = json!(state.events.recent(Some(p.name()), DETAIL_EVENTS));
    if !p.is_group() {
        v["health_history"] = json!(p.lifecycle.health.recent());
    }
    v["traffic"] = json!(state.stats.series(p.name()));
    v
}

/// Gateway health: providers by state, sessions, streams, the configuration.
pub fn health(server: &McpServer, routes: &Routes) -> Value {
    let mut by_state = serde_json::Map::new();
    for s in [State::Cold, State::Initializing, State::Ready, State::Degraded, State::Dead] {
        let n = routes.providers.iter().filter(|p| !p.is_group() && p.lifecycle.state() == s).count();
        by_state.insert(s.as_str().into(), n.into());
    }
    let dead = routes.providers.iter().any(|p| !p.is_group() && p.lifecycle.state() == State::Dead);
    json!({
        "status": if dead { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "providers": by_state,
        "sessions": server.sessions.len(),
        "listeners": server.listeners.len(),
        "parked_calls": server.parked.len(),
        "inflight_requests": server.state.inflight(),
        "config": config_status(&server.state),
    })
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

/// Each discovery source: what it is, and what it found.
pub fn sources(state: &AppState) -> Vec<Value> {
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

/// The whole picture (`registry_status`, the dashboard's first load).
pub fn status(server: &McpServer, routes: &Routes) -> Value {
    let state = &server.state;
    json!({
        "gateway": health(server, routes),
        "providers": list(state, routes),
        "sources": sources(state),
        "quarantined": state.reconciler.admission().quarantined(),
        "audit": {"enabled": state.audit.enabled()},
    })
}

/// [`status`] as lines for a terminal or a model: one row per provider, then groups' members,
/// sources and quarantine.
pub fn status_text(status: &Value) -> String {
    let g = &status["gateway"];
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut out = format!(
        "MCP Hangar {} · status {} · configuration generation {} (last reload: {})\n\
         sessions {} · requests in flight {} · open streams {} · parked calls {}\n\n",
        s(&g["version"]),
        s(&g["status"]),
        g["config"]["generation"],
        s(&g["config"]["last_reload"]["outcome"]),
        g["sessions"],
        g["inflight_requests"],
        g["listeners"],
        g["parked_calls"],
    );
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<12} {:<9} {:>8} {:>8} {:>6} {:>9}",
        "PROVIDER", "MODE", "STATE", "CIRCUIT", "INFLIGHT", "CALLS", "ERRORS", "MEAN ms"
    );
    let empty = Vec::new();
    for p in status["providers"].as_array().unwrap_or(&empty) {
        let r = &p["recent"];
        let mean = r["mean_ms"].as_f64().map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"));
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:<12} {:<9} {:>8} {:>8} {:>6} {:>9}",
            s(&p["name"]),
            s(&p["mode"]),
            s(&p["state"]),
            p["circuit"].as_str().unwrap_or("-"),
            p["inflight"].as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string()),
            r["calls"],
            r["errors"],
            mean,
        );
        for m in p["members"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "  └ {:<20} weight {:<3} priority {:<3} {:<12} {}",
                s(&m["name"]),
                m["weight"],
                m["priority"],
                s(&m["state"]),
                s(&m["circuit"]),
            );
        }
    }
    let window = status["providers"].get(0).and_then(|p| p["recent"]["window_s"].as_u64()).unwrap_or(0);
    let _ = writeln!(out, "(calls and errors over the last {window} s)");
    let sources = status["sources"].as_array().unwrap_or(&empty);
    if !sources.is_empty() {
        let _ = writeln!(out, "\nDISCOVERY SOURCES");
        for src in sources {
            let health = if src["healthy"] == true { "healthy" } else { "unhealthy" };
            let found = src["providers"].as_array().map_or(0, Vec::len);
            let _ = writeln!(
                out,
                "  {}[{}] {} {health}: {found} provider(s)",
                s(&src["type"]),
                src["index"],
                s(&src["mode"])
            );
        }
    }
    let held = status["quarantined"].as_array().unwrap_or(&empty);
    if !held.is_empty() {
        let _ = writeln!(out, "\nQUARANTINED (registry_approve lets one in)");
        for q in held {
            let _ = writeln!(out, "  {} (source {}): {}", s(&q["name"]), q["source"], s(&q["reason"]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_status_has_a_row_per_provider_and_its_members() {
        let status = json!({
            "gateway": {"version": "1.0", "status": "ok", "config": {"generation": 4, "last_reload": {"outcome": "applied"}}, "sessions": 2, "inflight_requests": 0, "listeners": 1, "parked_calls": 0},
            "providers": [
                {"name": "fx", "mode": "remote", "state": "READY", "circuit": "closed", "inflight": 0, "recent": {"window_s": 60, "calls": 12, "errors": 1, "mean_ms": 3.25}},
                {"name": "pool", "mode": "group", "state": "GROUP", "members": [{"name": "fx", "weight": 2, "priority": 1, "state": "READY", "circuit": "open"}], "recent": {"window_s": 60, "calls": 0, "errors": 0, "mean_ms": null}},
            ],
            "sources": [{"type": "docker", "index": 0, "mode": "additive", "healthy": true, "providers": ["a"]}],
            "quarantined": [{"name": "newbie", "source": 0, "reason": "health check failed"}],
        });
        let text = status_text(&status);
        assert!(text.contains("generation 4"), "{text}");
        let fx = text.lines().find(|l| l.starts_with("fx ")).expect("a row for fx");
        assert!(fx.contains("READY") && fx.contains("closed") && fx.contains("12") && fx.contains("3.2"), "{fx}");
        assert!(text.lines().any(|l| l.contains("└ fx") && l.contains("weight 2") && l.contains("open")), "{text}");
        assert!(text.contains("docker[0] additive healthy: 1 provider(s)"), "{text}");
        assert!(text.contains("newbie (source 0): health check failed"), "{text}");
    }
}
