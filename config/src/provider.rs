//! Decoding of one `providers.<name>` entry into a [`Provider`].

use std::path::PathBuf;
use std::time::Duration;

use serde_norway::Value;

use crate::decode::{child, describe, index, Decoder, Fields};
use crate::model::{
    CircuitBreaker, Container, Group, Member, PredefinedTool, Provider, ProviderKind, Recovery, Remote,
    RemoteTransport, Strategy, Subprocess, Volume,
};
use crate::validate::{check_http_url, is_tool_name};

/// Keys every mode takes.
pub(crate) const COMMON_KEYS: &[&str] = &[
    "mode",
    "description",
    "expose",
    "idle_ttl_s",
    "health_check_interval_s",
    "max_consecutive_failures",
    "tool_prefix",
    "tools",
    "recovery",
    "health_check_timeout_s",
    "circuit_breaker",
    "warm",
    "tools_include",
    "tools_exclude",
    "rate_limit",
    "validate_arguments",
    "call_timeout_s",
];
const BREAKER_KEYS: &[&str] = &["open_s", "half_open_probes", "error_rate", "min_calls"];
const RECOVERY_KEYS: &[&str] = &["max_attempts", "backoff_s", "max_backoff_s"];
const SUBPROCESS_KEYS: &[&str] = &["command", "env", "cwd"];
const CONTAINER_KEYS: &[&str] = &["image", "command", "env", "volumes", "network", "read_only", "memory", "cpus"];
/// The provider keys a discovered provider file may carry besides its own format's (all the
/// common ones but `mode`, which the file format names itself).
pub(crate) fn file_keys() -> impl Iterator<Item = &'static str> {
    COMMON_KEYS.iter().copied().filter(|k| *k != "mode")
}

const REMOTE_KEYS: &[&str] =
    &["endpoint", "headers", "transport", "ca_file", "insecure_skip_verify", "forward_client_token"];
const GROUP_KEYS: &[&str] = &["strategy", "members", "hash_key"];
const MODES: &[(&str, &[&str])] =
    &[("subprocess", SUBPROCESS_KEYS), ("container", CONTAINER_KEYS), ("remote", REMOTE_KEYS), ("group", GROUP_KEYS)];
const TOOL_KEYS: &[&str] =
    &["name", "title", "description", "inputSchema", "outputSchema", "annotations", "icons", "_meta"];
const MEMBER_KEYS: &[&str] = &["provider", "weight", "priority"];

/// Defaults shared by every provider, as in the seed project.
const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(300);
const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONSECUTIVE_FAILURES: u32 = 3;
/// Longest a call may take, progress and keep-alives notwithstanding.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Decodes `providers.<name>`; `None` when it is too broken to use (problems are noted).
pub(crate) fn decode(d: &mut Decoder<'_>, path: &str, name: &str, value: &Value) -> Option<Provider> {
    let name_ok = check_name(d, path, name);
    let f = d.fields(path, value)?;
    let mode = f.req(d, "mode", " (one of: subprocess, container, docker, remote, group)", |d, p, v| {
        let mode = d.string(p, v)?;
        match mode.as_str() {
            "subprocess" | "container" | "remote" | "group" => Some(mode),
            "docker" => Some("container".to_owned()),
            other => {
                d.problem(p, format!("unknown mode {other:?} (one of: subprocess, container, docker, remote, group)"));
                None
            }
        }
    });
    let mode_keys = mode.as_deref().and_then(|m| MODES.iter().find(|(n, _)| *n == m)).map(|(_, k)| *k);
    if let (Some(mode), Some(keys)) = (mode.as_deref(), mode_keys) {
        let allowed: Vec<&str> = COMMON_KEYS.iter().chain(keys.iter()).copied().collect();
        f.deny_unknown(d, &allowed, |key| {
            let owners: Vec<&str> =
                MODES.iter().filter(|(_, keys)| keys.contains(&key)).map(|(name, _)| *name).collect();
            (!owners.is_empty()).then(|| format!("not used by mode {mode}; used by: {}", owners.join(", ")))
        });
    }

    let tool_prefix = f
        .opt(d, "tool_prefix", |d, p, v| {
            let prefix = d.string(p, v)?;
            if !prefix.is_empty() && !is_tool_name(&prefix) {
                d.problem(p, "may only contain letters, digits, '_', '-' and '.' (tool names are built from it)");
                return None;
            }
            Some(prefix)
        })
        .unwrap_or_else(|| format!("{name}__"));
    let expose = f.opt(d, "expose", Decoder::boolean).unwrap_or(true);
    let description = f.opt(d, "description", Decoder::string);
    let idle_ttl = f.opt(d, "idle_ttl_s", Decoder::seconds).unwrap_or(DEFAULT_IDLE_TTL);
    let health_check_interval =
        f.opt(d, "health_check_interval_s", Decoder::seconds).unwrap_or(DEFAULT_HEALTH_CHECK_INTERVAL);
    let max_consecutive_failures = f
        .opt(d, "max_consecutive_failures", |d, p, v| d.integer(p, v, 1, 1000))
        .map_or(DEFAULT_MAX_CONSECUTIVE_FAILURES, |n| n as u32);
    let tools = f.opt(d, "tools", decode_tools).unwrap_or_default();
    let recovery = f.opt(d, "recovery", decode_recovery).unwrap_or_default();
    let health_check_timeout = f.opt(d, "health_check_timeout_s", Decoder::seconds).unwrap_or(Duration::from_secs(5));
    let circuit_breaker = f.opt(d, "circuit_breaker", decode_breaker).unwrap_or_default();
    let warm = f.opt(d, "warm", Decoder::boolean).unwrap_or(false);
    let tools_include = f.opt(d, "tools_include", Decoder::string_list).unwrap_or_default();
    let tools_exclude = f.opt(d, "tools_exclude", Decoder::string_list).unwrap_or_default();
    let rate_limit = f.opt(d, "rate_limit", crate::rate_limits::decode_rate);
    let validate_arguments = f.opt(d, "validate_arguments", Decoder::boolean).unwrap_or(true);
    let call_timeout = f.opt(d, "call_timeout_s", Decoder::seconds).unwrap_or(DEFAULT_CALL_TIMEOUT);

    let kind = match mode.as_deref()? {
        "subprocess" => decode_subprocess(d, &f).map(ProviderKind::Subprocess),
        "container" => decode_container(d, &f).map(ProviderKind::Container),
        "remote" => decode_remote(d, &f).map(ProviderKind::Remote),
        _ => decode_group(d, &f).map(ProviderKind::Group),
    }?;
    if matches!(kind, ProviderKind::Group(_)) && !tools.is_empty() {
        d.problem(&child(path, "tools"), "a group lists its members' tools; declare predefined tools on the members");
    }
    if matches!(kind, ProviderKind::Group(_)) && warm {
        d.problem(&child(path, "warm"), "a group has nothing of its own to start; mark its members warm");
    }
    name_ok.then(|| Provider {
        name: name.to_owned(),
        tool_prefix,
        expose,
        description,
        idle_ttl,
        health_check_interval,
        max_consecutive_failures,
        tools,
        recovery,
        health_check_timeout,
        circuit_breaker,
        warm,
        tools_include,
        tools_exclude,
        rate_limit,
        validate_arguments,
        call_timeout,
        kind,
        source: None,
    })
}

fn decode_breaker(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<CircuitBreaker> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, BREAKER_KEYS, |_| None);
    let dflt = CircuitBreaker::default();
    Some(CircuitBreaker {
        open: f.opt(d, "open_s", Decoder::seconds).unwrap_or(dflt.open),
        half_open_probes: f
            .opt(d, "half_open_probes", |d, p, v| d.integer(p, v, 1, 100))
            .map_or(dflt.half_open_probes, |n| n as u32),
        error_rate: f
            .opt(d, "error_rate", |d, p, v| match v.as_f64() {
                Some(r) if r > 0.0 && r <= 1.0 => Some(r),
                _ => {
                    d.problem(p, format!("expected a share in (0, 1], found {}", describe(v)));
                    None
                }
            })
            .unwrap_or(dflt.error_rate),
        min_calls: f.opt(d, "min_calls", |d, p, v| d.integer(p, v, 1, 64)).map_or(dflt.min_calls, |n| n as u32),
    })
}

fn decode_recovery(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Recovery> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, RECOVERY_KEYS, |_| None);
    let dflt = Recovery::default();
    let r = Recovery {
        max_attempts: f
            .opt(d, "max_attempts", |d, p, v| d.integer(p, v, 0, 1000))
            .map_or(dflt.max_attempts, |n| n as u32),
        backoff: f.opt(d, "backoff_s", Decoder::seconds).unwrap_or(dflt.backoff),
        max_backoff: f.opt(d, "max_backoff_s", Decoder::seconds).unwrap_or(dflt.max_backoff),
    };
    if r.max_backoff < r.backoff {
        d.problem(&child(path, "max_backoff_s"), "must not be shorter than backoff_s");
    }
    Some(r)
}

fn check_name(d: &mut Decoder<'_>, path: &str, name: &str) -> bool {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        d.problem(path, "provider names are 1 to 64 letters, digits, '_' or '-'");
    }
    ok
}

fn decode_subprocess(d: &mut Decoder<'_>, f: &Fields<'_>) -> Option<Subprocess> {
    let command = f.req(d, "command", " for mode subprocess", command_list);
    let env = f.opt(d, "env", Decoder::secret_map).unwrap_or_default();
    let cwd = f.opt(d, "cwd", Decoder::non_empty_string).map(PathBuf::from);
    Some(Subprocess { command: command?, env, cwd })
}

fn command_list(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<String>> {
    let command = d.string_list(path, v)?;
    if command.is_empty() {
        d.problem(path, "must name a program to run");
        return None;
    }
    if let Some(i) = command.iter().position(|a| a.is_empty()) {
        d.problem(&index(path, i), "must not be empty");
        return None;
    }
    Some(command)
}

fn decode_container(d: &mut Decoder<'_>, f: &Fields<'_>) -> Option<Container> {
    let image = f.req(d, "image", " for mode container", Decoder::non_empty_string);
    let command = f.opt(d, "command", command_list).unwrap_or_default();
    let env = f.opt(d, "env", Decoder::secret_map).unwrap_or_default();
    let volumes = f.opt(d, "volumes", decode_volumes).unwrap_or_default();
    let network = f.opt(d, "network", Decoder::non_empty_string).unwrap_or_else(|| "none".to_owned());
    let read_only = f.opt(d, "read_only", Decoder::boolean).unwrap_or(true);
    let memory_bytes = f.opt(d, "memory", decode_memory);
    let cpus = f.opt(d, "cpus", |d, p, v| match v.as_f64() {
        Some(c) if c > 0.0 && c <= 1024.0 => Some(c),
        _ => {
            d.problem(p, format!("expected a positive number of CPUs, found {}", describe(v)));
            None
        }
    });
    Some(Container { image: image?, command, env, volumes, network, read_only, memory_bytes, cpus })
}

fn decode_volumes(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<Volume>> {
    let specs = d.string_list(path, v)?;
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, "rw"),
            [h, c, m] => (*h, *c, *m),
            _ => ("", "", ""),
        };
        let valid_mode = matches!(mode, "ro" | "rw");
        if host.is_empty() || !container.starts_with('/') || !valid_mode {
            d.problem(
                &index(path, i),
                format!(
                    "expected \"HOST_PATH:CONTAINER_PATH[:ro|rw]\" with an absolute container path, found {spec:?}"
                ),
            );
            continue;
        }
        out.push(Volume { host: host.to_owned(), container: container.to_owned(), read_only: mode == "ro" });
    }
    Some(out)
}

/// `512m`, `1g`, `1048576` (bytes).
fn decode_memory(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<u64> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        _ => d.string(path, v)?,
    };
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => 0,
    };
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(multiplier)) {
        Some(bytes) if bytes >= 4 << 20 => Some(bytes),
        Some(_) => {
            d.problem(path, format!("{text:?} is below the 4 MiB a container needs"));
            None
        }
        None => {
            d.problem(path, format!("expected a size such as \"512m\" or \"1g\", found {}", describe(v)));
            None
        }
    }
}

fn decode_remote(d: &mut Decoder<'_>, f: &Fields<'_>) -> Option<Remote> {
    let endpoint = f.req(d, "endpoint", " for mode remote", |d, p, v| {
        let url = d.string(p, v)?;
        match check_http_url(&url) {
            Ok(()) => Some(url),
            Err(why) => {
                d.problem(p, why);
                None
            }
        }
    });
    let headers = f.opt(d, "headers", decode_headers).unwrap_or_default();
    let transport = f
        .opt(d, "transport", |d, p, v| match d.string(p, v)?.as_str() {
            "auto" => Some(RemoteTransport::Auto),
            "streamable_http" | "http" => Some(RemoteTransport::StreamableHttp),
            "sse" => Some(RemoteTransport::Sse),
            other => {
                d.problem(p, format!("unknown transport {other:?} (one of: auto, streamable_http, sse)"));
                None
            }
        })
        .unwrap_or(RemoteTransport::Auto);
    let ca_file = f.opt(d, "ca_file", Decoder::readable_file);
    let insecure_skip_verify = f.opt(d, "insecure_skip_verify", Decoder::boolean).unwrap_or(false);
    if ca_file.is_some() && insecure_skip_verify {
        d.problem(&child(&f.path, "insecure_skip_verify"), "ca_file is pointless when nothing is verified: choose one");
    }
    let forward_client_token = f.opt(d, "forward_client_token", Decoder::boolean).unwrap_or(false);
    Some(Remote { endpoint: endpoint?, headers, transport, ca_file, insecure_skip_verify, forward_client_token })
}

fn decode_headers(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<(String, crate::Secret)>> {
    let headers = d.secret_map(path, v)?;
    let mut ok = true;
    for (name, value) in &headers {
        let token =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            d.problem(&child(path, name), "is not a valid HTTP header name");
            ok = false;
        } else if value.expose().bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            d.problem(&child(path, name), "header values must not contain control characters (line breaks, NUL, DEL)");
            ok = false;
        }
    }
    ok.then_some(headers)
}

fn decode_group(d: &mut Decoder<'_>, f: &Fields<'_>) -> Option<Group> {
    let strategy = f
        .opt(d, "strategy", |d, p, v| match d.string(p, v)?.as_str() {
            "weighted_round_robin" | "round_robin" => Some(Strategy::WeightedRoundRobin),
            "priority" => Some(Strategy::Priority),
            "least_connections" => Some(Strategy::LeastConnections),
            "consistent_hash" => Some(Strategy::ConsistentHash),
            "random" => Some(Strategy::Random),
            other => {
                d.problem(
                    p,
                    format!(
                        "unknown strategy {other:?} (one of: weighted_round_robin, round_robin, priority, least_connections, consistent_hash, random)"
                    ),
                );
                None
            }
        })
        .unwrap_or(Strategy::WeightedRoundRobin);
    let members = f.req(d, "members", " for mode group", decode_members);
    let hash_key = f.opt(d, "hash_key", |d, p, v| {
        let key = d.string(p, v)?;
        let valid = key == "caller" || key.strip_prefix("arg:").is_some_and(|a| !a.is_empty());
        if !valid {
            d.problem(p, format!("expected \"caller\" or \"arg:<argument name>\", found {key:?}"));
            return None;
        }
        Some(key)
    });
    match (strategy, &hash_key, f.get("hash_key")) {
        (Strategy::ConsistentHash, None, None) => {
            d.problem(&child(&f.path, "hash_key"), "is required for strategy consistent_hash")
        }
        (s, Some(_), _) if s != Strategy::ConsistentHash => {
            d.problem(&child(&f.path, "hash_key"), "is only used by strategy consistent_hash")
        }
        _ => {}
    }
    Some(Group { strategy, members: members?, hash_key })
}

fn decode_members(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<Member>> {
    let Value::Sequence(items) = v else {
        d.problem(path, format!("expected a list of members, found {}", describe(v)));
        return None;
    };
    if items.is_empty() {
        d.problem(path, "a group needs at least one member");
        return None;
    }
    let mut members = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        if let Value::String(_) = item {
            if let Some(provider) = d.non_empty_string(&p, item) {
                members.push(Member { provider, weight: 1, priority: 0 });
            }
            continue;
        }
        let Some(mf) = d.fields(&p, item) else {
            continue;
        };
        mf.deny_unknown(d, MEMBER_KEYS, |_| None);
        let provider = mf.req(d, "provider", "", Decoder::non_empty_string);
        let weight = mf.opt(d, "weight", |d, p, v| d.integer(p, v, 1, 10_000)).unwrap_or(1);
        let priority = mf.opt(d, "priority", |d, p, v| d.integer(p, v, 0, 1000)).unwrap_or(0);
        if let Some(provider) = provider {
            members.push(Member { provider, weight: weight as u32, priority: priority as u32 });
        }
    }
    Some(members)
}

fn decode_tools(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<PredefinedTool>> {
    let Value::Sequence(items) = v else {
        d.problem(path, format!("expected a list of tools, found {}", describe(v)));
        return None;
    };
    let mut tools: Vec<PredefinedTool> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(tf) = d.fields(&p, item) else {
            continue;
        };
        tf.deny_unknown(d, TOOL_KEYS, |_| None);
        let name = tf.req(d, "name", "", |d, p, v| {
            let name = d.string(p, v)?;
            if !is_tool_name(&name) {
                d.problem(p, format!("{name:?} is not a valid tool name (1-128 letters, digits, '_', '-', '.')"));
                return None;
            }
            Some(name)
        });
        if let Some(name) = &name {
            if tools.iter().any(|t| &t.name == name) {
                d.problem(&child(&p, "name"), format!("tool {name:?} is declared twice"));
            }
        }
        for key in ["title", "description"] {
            tf.opt(d, key, Decoder::string);
        }
        for key in ["inputSchema", "outputSchema", "annotations"] {
            if let Some((kp, kv)) = tf.get(key) {
                if !kv.is_mapping() {
                    d.problem(&kp, format!("expected a mapping, found {}", describe(kv)));
                }
            }
        }
        let Some(mut definition) = d.json(&p, item) else {
            continue;
        };
        if let Some(obj) = definition.as_object_mut() {
            obj.entry("inputSchema").or_insert_with(|| serde_json::json!({"type": "object"}));
        }
        if let Some(name) = name {
            tools.push(PredefinedTool { name, definition });
        }
    }
    Some(tools)
}
