//! MCP Hangar's configuration: the YAML file format, `${VAR}` expansion, validation, and the
//! runtime model the gateway runs on.
//!
//! This crate has no async runtime and no networking so `check-config` and its tests build in
//! seconds. Loading reports **every** problem with its field path, never just the first:
//!
//! ```
//! let text = "providers:\n  math:\n    mode: subprocess\n    idle_ttl: 5\n";
//! let err = hangar_config::parse(text, "demo.yaml", &|_| None).unwrap_err();
//! let shown = err.to_string();
//! assert!(shown.contains("providers.math.idle_ttl: unknown key (did you mean \"idle_ttl_s\"?)"));
//! assert!(shown.contains("providers.math.command: is required for mode subprocess"));
//! ```

mod auth;
mod changes;
mod decode;
mod discovery;
mod env;
mod error;
mod glob;
pub mod import;
mod model;
mod observability;
mod provider;
mod rate_limits;
mod secret;
mod sections;
pub mod shown;
mod validate;
mod virtual_servers;

use std::path::Path;

use serde_norway::Value;

pub use auth::{
    parse_key_hash, ApiKey, ApiKeys, Auth, Effect, Oidc, RoleAssignment, Rule, ADMIN_PROVIDER, ADMIN_ROLE,
    DEVELOPER_ROLE, JWT_ALGORITHMS,
};
pub use changes::{changed_fields, needs_new_instance, RUNTIME_FIELDS};
pub use discovery::{
    discovered_definition, discovered_group, discovered_remote, file_matches, parse_provider_definition,
    parse_provider_file, provider_files, read_provider_file, with_discovered,
};
pub use env::EnvLookup;
pub use error::{LoadError, Problem};
pub use glob::glob_matches;
pub use model::*;
pub use rate_limits::{Rate, RateLimits};
pub use secret::Secret;
pub use validate::{exposure_problem, is_loopback_host, redact_url};
pub use virtual_servers::VirtualServer;

use decode::{child, Decoder};

/// The configuration used when no `--config` is given: it works on a fresh machine with nothing
/// else installed.
pub const EMBEDDED_DEFAULT: &str = include_str!("../examples/default.yaml");

/// Name under which the embedded default is reported in messages.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default config>";

const TOP_KEYS: &[&str] =
    &["server", "providers", "observability", "config_reload", "discovery", "auth", "rate_limits", "virtual_servers"];

/// What to do with a top-level key of later Python MCP Hangar versions, which this gateway does
/// not read: said instead of the list of valid keys, so a migrating user knows the fix.
fn later_python_key(key: &str) -> Option<String> {
    match key {
        "mcp_servers" => Some("the Python MCP Hangar's later name for \"providers\": rename it".to_owned()),
        "logging" => Some("logging is set on the command line: --log-level and --log-format json".to_owned()),
        _ => None,
    }
}

/// Looks variables up in the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads and validates a configuration file.
pub fn load_file(path: &Path, env: EnvLookup<'_>) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    parse(&text, &path.display().to_string(), env)
}

/// Parses and validates configuration text. `source_name` names the text in messages.
pub fn parse(text: &str, source_name: &str, env: EnvLookup<'_>) -> Result<Config, LoadError> {
    let syntax = |e: serde_norway::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        LoadError::Syntax { source_name: source_name.to_owned(), line, column, message: e.to_string() }
    };
    let mut root: Value = serde_norway::from_str(text).map_err(syntax)?;
    root.apply_merge().map_err(syntax)?;

    let mut d = Decoder::new(env);
    let top = d.fields("", &root);
    let mut declared: Vec<&str> = Vec::new();
    let config = top.map(|top| {
        top.deny_unknown(&mut d, TOP_KEYS, later_python_key);
        let server = sections::decode_server(&mut d, top.get("server"));
        let providers = decode_providers(&mut d, top.get("providers"), &mut declared);
        let observability = observability::decode_observability(&mut d, top.get("observability"));
        let config_reload = top.opt(&mut d, "config_reload", discovery::decode_config_reload).unwrap_or_default();
        let discovery = top.opt(&mut d, "discovery", discovery::decode_discovery).unwrap_or_default();
        let auth = top.opt(&mut d, "auth", auth::decode_auth).unwrap_or_default();
        let rate_limits = rate_limits::decode_rate_limits(&mut d, top.get("rate_limits"));
        let virtual_servers =
            top.opt(&mut d, "virtual_servers", virtual_servers::decode_virtual_servers).unwrap_or_default();
        Config { server, providers, observability, config_reload, discovery, auth, rate_limits, virtual_servers }
    });
    let mut problems = d.into_problems();
    if let Some(config) = &config {
        validate::cross_check(config, &declared, &mut problems);
    }
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(LoadError::Invalid { source_name: source_name.to_owned(), problems }),
    }
}

/// Decodes `providers`, noting in `declared` every name present, valid or not, so that
/// references to a broken provider are not reported a second time as unknown.
fn decode_providers<'v>(
    d: &mut Decoder<'_>,
    v: Option<(String, &'v Value)>,
    declared: &mut Vec<&'v str>,
) -> Vec<Provider> {
    let Some((path, value)) = v else {
        return Vec::new();
    };
    let Some(fields) = d.fields(&path, value) else {
        return Vec::new();
    };
    declared.extend(fields.entries.iter().map(|(name, _)| *name));
    fields.entries.iter().filter_map(|(name, value)| provider::decode(d, &child(&path, name), name, value)).collect()
}

#[cfg(test)]
mod tests;
