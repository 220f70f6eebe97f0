//! The definitions of the `registry_*` tools: names and argument names as in the Python MCP
//! Hangar, an `inputSchema` and an `outputSchema` each (their `structuredContent` is checked
//! against it by clients that validate, and by the tests).

use serde_json::{json, Value};

use super::MAX_AUDIT_RECORDS;

/// The name `registry_reload` also answers to (the Python MCP Hangar's): callable, not listed.
pub(super) const RELOAD_ALIAS: &str = "hangar_reload_config";

/// The tool definitions, in listing order.
pub fn tools() -> Vec<Value> {
    let provider =
        args(json!({"provider": {"type": "string", "description": "Provider or group name"}}), &["provider"]);
    let none = args(json!({}), &[]);
    let call_args = json!({
        "provider": {"type": "string", "description": "Provider or group name"},
        "tool": {"type": "string", "description": "The provider's own name for the tool (no prefix)"},
        "arguments": {"type": "object", "description": "The tool's arguments", "default": {}},
    });
    let mut invoke_ex_args = call_args.clone();
    extend(
        &mut invoke_ex_args,
        json!({
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S, "default": DEFAULT_TIMEOUT_S, "description": "Seconds for the whole operation, retries included"},
            "max_retries": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS, "default": 3, "description": "Attempts at most"},
            "retry_on_error": {"type": "boolean", "default": true, "description": "Try again after a failure the tool may not have seen (provider unavailable; a timeout only for read-only or idempotent tools)"},
            "correlation_id": {"type": "string", "maxLength": 128, "description": "Echoed in _retry_metadata and the audit trail; a new one when absent"},
            "metadata": {"type": "object", "description": "Echoed back unchanged in the result"},
        }),
    );
    let mut invoke_stream_args = call_args.clone();
    extend(
        &mut invoke_stream_args,
        json!({
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S, "default": DEFAULT_TIMEOUT_S},
            "max_retries": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS, "default": 3},
            "correlation_id": {"type": "string", "maxLength": 128},
        }),
    );
    vec![
        tool("registry_list", "List every provider and group with its state (COLD, INITIALIZING, READY, DEGRADED, DEAD), mode, circuit and activity.", none.clone(),
            object(json!({"providers": {"type": "array", "items": summary()}}), &["providers"])),
        tool("registry_details", "One provider or group in detail: configuration summary, upstream identity, health check history, recent traffic and lifecycle events; a group's members with weights, priorities and breakers.", provider.clone(), details()),
        tool("registry_start", "Start a provider (or retry a DEAD one) and report its state.", provider.clone(), summary()),
        tool("registry_stop", "Stop a provider: processes exit, sessions close; it returns to COLD.", provider.clone(), summary()),
        tool("registry_tools", "The tools of one provider, under their own names and their exposed names.", provider.clone(),
            object(json!({"provider": {"type": "string"}, "tools": {"type": "array", "items": object(json!({
                "name": {"type": "string"}, "exposedName": {"type": "string"}, "description": {"type": ["string", "null"]}, "inputSchema": {}}), &["name", "exposedName"])}}), &["provider", "tools"])),
        tool("registry_invoke", "Call a provider's tool by the provider's own tool name, as a direct call would (authorization, exposure, argument checks).", args(call_args, &["provider", "tool"]), invoked(json!({}))),
        tool("registry_invoke_ex", "registry_invoke with retries on transient failures, a correlation id and metadata echoed back; _retry_metadata says how many attempts it took and why.", args(invoke_ex_args, &["provider", "tool"]),
            invoked(json!({"retry_metadata": retry_metadata(), "metadata": {"type": "object"}}))),
        tool("registry_invoke_stream", "registry_invoke_ex with progress notifications while it runs (starting a cold provider, calling, retrying, and the provider's own progress), under the caller's progress token.", args(invoke_stream_args, &["provider", "tool"]),
            invoked(json!({"retry_metadata": retry_metadata(), "progress": {"type": "array", "items": object(json!({"stage": {"type": "string"}, "message": {"type": "string"}, "elapsed_ms": {"type": "number"}}), &["stage", "message", "elapsed_ms"])}}))),
        tool("registry_health", "Gateway health: providers by state, sessions, open streams, the configuration's generation.", none.clone(), health()),
        tool("registry_status", "The dashboard as text: every provider's state, circuit and recent traffic, groups, discovery sources and quarantine.", none.clone(),
            object(json!({"gateway": health(), "providers": {"type": "array", "items": summary()}, "sources": {"type": "array", "items": {"type": "object"}}, "quarantined": {"type": "array", "items": {"type": "object"}}}), &["gateway", "providers", "sources", "quarantined"])),
        tool("registry_warm", "Start providers now so their first call does not wait (comma-separated names; all when empty). Progress per provider while they start.", args(json!({"providers": {"type": "string", "description": "Comma-separated provider names; empty: every provider", "default": ""}}), &[]),
            object(json!({
                "warmed": {"type": "array", "items": {"type": "string"}},
                "already_warm": {"type": "array", "items": {"type": "string"}},
                "failed": {"type": "array", "items": object(json!({"id": {"type": "string"}, "error": {"type": "string"}}), &["id", "error"])},
                "skipped": {"type": "array", "items": object(json!({"id": {"type": "string"}, "reason": {"type": "string"}}), &["id", "reason"])},
                "summary": {"type": "string"}}), &["warmed", "already_warm", "failed", "summary"])),
        tool("registry_audit", "Query the audit trail (provider events, tool calls, configuration): the latest records matching every filter given, oldest first.", args(json!({
            "since_ms": {"type": "integer", "minimum": 0, "description": "Records at or after this time (ms since the Unix epoch)"},
            "until_ms": {"type": "integer", "minimum": 0, "description": "Records before this time"},
            "provider": {"type": "string"},
            "caller": {"type": "string", "description": "session:<id>, client:<name>, anonymous, or a principal (service:ci, user:alice)"},
            "type": {"type": "string", "enum": ["provider_event", "tool_call", "config_applied", "config_rejected", "access_denied", "discovery"]},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_RECORDS, "default": 100}}), &[]),
            object(json!({"records": {"type": "array", "items": {"type": "object"}}, "truncated": {"type": "boolean"}, "note": {"type": "string"}}), &["records"])),
        tool("registry_reload", "Reload the configuration (file and discovery sources) now and report what changed: providers added, removed, updated (which fields; restarted or applied in place), unchanged, settings that need a restart, the duration. dry_run: only say what would change (and which exposed tools, prompts and legacy sessions it touches). Also answers to hangar_reload_config.", args(json!({
            "graceful": {"type": "boolean", "default": true, "description": "Let replaced providers finish the requests they have (up to shutdown_timeout_s) before they stop"},
            "dry_run": {"type": "boolean", "default": false}}), &[]), reload_report()),
        tool("registry_quarantine", "Discovered providers held back (a failed admission check, or discovery.auto_register off): name, source, reason, since when. They are listed nowhere and never routed to until approved.", none.clone(),
            object(json!({"quarantined": {"type": "array", "items": quarantined()}}), &["quarantined"])),
        tool("registry_approve", "Let a quarantined provider in: it serves from the reload this starts, which is reported.", provider, reload_report()),
        tool("registry_discover", "Run a discovery cycle now: every source looks (containers listed, Kubernetes resources looked at, entry points and registries read, provider directories read by the reload), then the configuration is reloaded; reports what changed and each source's report.", none.clone(), reload_report()),
        tool("registry_sources", "The discovery sources: type, mode, whether they are read and healthy, when they last looked, the providers they define and what they found and could not use (bad labels, names taken).", none,
            object(json!({"sources": {"type": "array", "items": source()}}), &["sources"])),
    ]
}

/// Default seconds for an invoke_ex/invoke_stream operation (the Python MCP Hangar's).
pub(super) const DEFAULT_TIMEOUT_S: f64 = 30.0;
/// Longest an invoke_ex/invoke_stream operation may be given.
pub(super) const MAX_TIMEOUT_S: f64 = 3600.0;
/// Most attempts an invoke_ex/invoke_stream operation may make.
pub(super) const MAX_ATTEMPTS: u64 = 10;

fn tool(name: &str, description: &str, input: Value, output: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": input, "outputSchema": output})
}

/// An `inputSchema`: unknown arguments are refused (a misspelt `dry_run` must not reload).
fn args(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn extend(target: &mut Value, more: Value) {
    if let (Value::Object(t), Value::Object(m)) = (target, more) {
        t.extend(m);
    }
}

const STATES: &[&str] = &["COLD", "INITIALIZING", "READY", "DEGRADED", "DEAD", "GROUP"];
const CIRCUITS: &[&str] = &["closed", "open", "half_open"];

/// A provider's or group's summary (`registry_list`, start, stop).
fn summary() -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    object(
        json!({
            "name": {"type": "string"},
            "mode": {"type": "string", "enum": ["subprocess", "container", "remote", "group"]},
            "state": {"type": "string", "enum": STATES},
            "circuit": {"type": "string", "enum": CIRCUITS},
            "error_rate": {"type": "number"},
            "expose": {"type": "boolean"},
            "tool_prefix": {"type": "string"},
            "inflight": {"type": "integer", "minimum": 0},
            "consecutive_failures": {"type": "integer", "minimum": 0},
            "last_error": nullable("string"),
            "pid": nullable("integer"),
            "strategy": {"type": "string"},
            "members": {"type": "array", "items": member()},
            "recent": recent_summary(),
        }),
        &["name", "mode", "state", "expose", "tool_prefix"],
    )
}

fn member() -> Value {
    object(
        json!({
            "name": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "circuit": {"type": "string", "enum": CIRCUITS},
            "inflight": {"type": "integer"},
            "weight": {"type": ["integer", "null"]},
            "priority": {"type": ["integer", "null"]},
        }),
        &["name", "state", "circuit"],
    )
}

/// Calls over the intervals kept.
fn recent_summary() -> Value {
    object(
        json!({"window_s": {"type": "integer"}, "calls": {"type": "integer"}, "errors": {"type": "integer"}, "tool_errors": {"type": "integer"}, "mean_ms": {"type": ["number", "null"]}}),
        &["window_s", "calls", "errors", "tool_errors"],
    )
}

fn details() -> Value {
    let mut d = summary();
    extend(
        &mut d["properties"],
        json!({
            "config": {"type": "object"},
            "upstream": object(json!({"era": {"type": "string"}, "version": {"type": "string"}, "serverInfo": {}, "capabilities": {}}), &["era", "version"]),
            "events": {"type": "array", "items": object(json!({"seq": {"type": "integer"}, "at_ms": {"type": "integer"}, "provider": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"}, "cause": {"type": "string"}, "detail": {"type": "string"}}), &["seq", "at_ms", "from", "to", "cause"])},
            "health_history": {"type": "array", "items": object(json!({"at_ms": {"type": "integer"}, "ok": {"type": "boolean"}, "duration_ms": {"type": "number"}, "error": {"type": "string"}}), &["at_ms", "ok", "duration_ms"])},
            "traffic": {"type": "array", "items": object(json!({"at_ms": {"type": "integer"}, "calls": {"type": "integer"}, "errors": {"type": "integer"}, "tool_errors": {"type": "integer"}, "mean_ms": {"type": ["number", "null"]}, "p95_ms": {"type": ["number", "null"]}}), &["at_ms", "calls", "errors"])},
        }),
    );
    if let Some(Value::Array(required)) = d.get_mut("required") {
        required.extend([json!("events")]);
    }
    d
}

/// A tool call's outcome through the registry: the provider's result and where it ran.
fn invoked(more: Value) -> Value {
    let mut v = object(
        json!({
            "provider": {"type": "string"},
            "tool": {"type": "string"},
            "isError": {"type": "boolean"},
            "result": {"type": "object", "description": "The provider's tools/call result as it answered"},
        }),
        &["provider", "tool", "isError", "result"],
    );
    extend(&mut v["properties"], more);
    v
}

fn retry_metadata() -> Value {
    object(
        json!({
            "correlation_id": {"type": "string"},
            "attempts": {"type": "integer", "minimum": 1},
            "total_time_ms": {"type": "number"},
            "retries": {"type": "array", "items": {"type": "string"}},
            "final_error_reason": {"type": "string"},
            "recovery_hints": {"type": "array", "items": {"type": "string"}},
        }),
        &["correlation_id", "attempts", "total_time_ms", "retries"],
    )
}

fn health() -> Value {
    object(
        json!({
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "version": {"type": "string"},
            "providers": {"type": "object", "additionalProperties": {"type": "integer"}},
            "sessions": {"type": "integer"},
            "listeners": {"type": "integer"},
            "parked_calls": {"type": "integer"},
            "inflight_requests": {"type": "integer"},
            "config": object(json!({"generation": {"type": "integer"}, "last_reload": {"type": "object"}, "draining_instances": {"type": "integer"}}), &["generation", "last_reload"]),
        }),
        &["status", "version", "providers", "sessions", "config"],
    )
}

fn quarantined() -> Value {
    object(
        json!({"name": {"type": "string"}, "source": {"type": "integer"}, "reason": {"type": "string"}, "since_ms": {"type": "integer"}}),
        &["name", "source", "reason", "since_ms"],
    )
}

fn source() -> Value {
    object(
        json!({"index": {"type": "integer"}, "type": {"type": "string"}, "mode": {"type": "string"}, "enabled": {"type": "boolean"}, "healthy": {"type": "boolean"}, "providers": {"type": "array", "items": {"type": "string"}}}),
        &["index", "type", "mode", "healthy", "providers"],
    )
}

/// What a reload (or its dry run, or a discovery cycle) changed.
fn reload_report() -> Value {
    let names = json!({"type": "array", "items": {"type": "string"}});
    object(
        json!({
            "status": {"type": "string", "enum": ["success", "unchanged", "dry_run"]},
            "added": names, "removed": names, "unchanged": names,
            "updated": {"type": "array", "items": object(json!({"name": {"type": "string"}, "fields": names, "restarted": {"type": "boolean"}}), &["name", "fields", "restarted"])},
            "needs_restart": names,
            "generation": {"type": "integer"},
            "duration_ms": {"type": "number"},
            "sources": {"type": "array", "items": source()},
        }),
        &["status", "added", "removed", "updated", "unchanged"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_both_schemas_and_refuses_unknown_arguments() {
        let all = tools();
        assert_eq!(all.len(), 17, "the seed's 15, the audit and the reload");
        for t in &all {
            let name = t["name"].as_str().unwrap_or_default();
            assert_eq!(t["inputSchema"]["type"], "object", "{name}");
            assert_eq!(t["inputSchema"]["additionalProperties"], false, "{name}");
            assert_eq!(t["outputSchema"]["type"], "object", "{name}");
            assert!(t["outputSchema"]["required"].as_array().is_some_and(|r| !r.is_empty()), "{name}");
        }
    }
}
