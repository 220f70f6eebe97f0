//! The `config_reload` and `discovery` sections (the Python MCP Hangar's keys), and reading the
//! provider files of a `type: filesystem` source in that project's format:
//!
//! ```yaml
//! name: custom-tool            # default: the file's name without extension
//! enabled: true                # false: the file is skipped
//! mode: subprocess             # subprocess | stdio | http | remote | sse | container | docker
//! connection:
//!   command: python            # or a list; `args` are appended to a string command
//!   args: [-m, my_mcp_server]
//!   env: {LOG_LEVEL: INFO}
//!   # remote: endpoint, or host + port (http://host:port/mcp; /sse for sse), headers
//! metadata: {owner: platform-team}
//! ```
//!
//! A provider file may also carry this gateway's own provider keys (`tool_prefix`, `tools`,
//! `idle_ttl_s`, …). A file that does not parse or has unknown keys is an error, never a
//! silently empty provider.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use crate::decode::{child, Decoder, Fields};
use crate::env::EnvLookup;
use crate::error::{LoadError, Problem};
use crate::model::{
    Config, ConfigReload, Discovery, DiscoveryMode, DiscoverySecurity, DiscoverySource, Provider, SourceKind,
};

const RELOAD_KEYS: &[&str] = &["enabled", "use_watchdog", "interval_s"];
const DISCOVERY_KEYS: &[&str] = &["enabled", "refresh_interval_s", "auto_register", "sources", "security"];
const SECURITY_KEYS: &[&str] = &[
    "max_providers_per_source",
    "max_registration_rate",
    "require_health_check",
    "quarantine_on_failure",
    "allowed_namespaces",
    "denied_namespaces",
];
const FILE_KEYS: &[&str] = &["name", "enabled", "mode", "connection", "metadata", "ttl"];
const COMMAND_KEYS: &[&str] = &["command", "args", "env", "cwd", "timeout", "retry_count", "retry_delay"];
const REMOTE_KEYS: &[&str] =
    &["endpoint", "host", "port", "health_path", "headers", "transport", "timeout", "retry_count", "retry_delay"];
const CONTAINER_KEYS: &[&str] =
    &["image", "command", "args", "env", "volumes", "network", "read_only", "memory", "cpus"];
/// Largest provider file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most files read from one directory.
const MAX_FILES: usize = 1000;

pub(crate) fn decode_config_reload(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<ConfigReload> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, RELOAD_KEYS, |_| None);
    let dflt = ConfigReload::default();
    Some(ConfigReload {
        enabled: f.opt(d, "enabled", Decoder::boolean).unwrap_or(dflt.enabled),
        use_watchdog: f.opt(d, "use_watchdog", Decoder::boolean).unwrap_or(dflt.use_watchdog),
        interval: f.opt(d, "interval_s", Decoder::seconds).unwrap_or(dflt.interval),
    })
}

pub(crate) fn decode_discovery(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Discovery> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, DISCOVERY_KEYS, |_| None);
    let dflt = Discovery::default();
    let sources = f.opt(d, "sources", decode_sources).unwrap_or_default();
    Some(Discovery {
        // A section that lists sources means to use them unless it says otherwise.
        enabled: f.opt(d, "enabled", Decoder::boolean).unwrap_or(true),
        refresh_interval: f.opt(d, "refresh_interval_s", Decoder::seconds).unwrap_or(dflt.refresh_interval),
        auto_register: f.opt(d, "auto_register", Decoder::boolean).unwrap_or(dflt.auto_register),
        sources,
        security: f.opt(d, "security", decode_security).unwrap_or_default(),
    })
}

fn decode_sources(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<DiscoverySource>> {
    let Value::Sequence(items) = v else {
        d.problem(path, "expected a list of sources");
        return None;
    };
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| decode_source(d, &crate::decode::index(path, i), item))
            .collect(),
    )
}

fn decode_source(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<DiscoverySource> {
    let f = d.fields(path, v)?;
    let kind = f.req(d, "type", " (filesystem, docker, kubernetes, entrypoint or registry)", Decoder::string)?;
    let keys: &[&str] = match kind.as_str() {
        "filesystem" => &["type", "mode", "path", "pattern", "watch"],
        "docker" => &["type", "mode", "socket_path", "allow_loopback", "allow_link_local", "grace_period_s"],
        "kubernetes" => &[
            "type",
            "mode",
            "namespaces",
            "label_selector",
            "in_cluster",
            "kubeconfig",
            "allow_loopback",
            "allow_link_local",
            "custom_resources",
        ],
        "entrypoint" => &["type", "mode", "group", "python"],
        "registry" => &["type", "mode", "path", "url"],
        other => {
            d.problem(
                &child(path, "type"),
                format!("unknown source type {other:?} (filesystem, docker, kubernetes, entrypoint or registry)"),
            );
            return None;
        }
    };
    f.deny_unknown(d, keys, |_| None);
    let mode = f
        .opt(d, "mode", |d, p, v| match d.string(p, v)?.as_str() {
            "additive" => Some(DiscoveryMode::Additive),
            "authoritative" => Some(DiscoveryMode::Authoritative),
            other => {
                d.problem(p, format!("unknown mode {other:?} (additive or authoritative)"));
                None
            }
        })
        .unwrap_or(DiscoveryMode::Additive);
    let kind = match kind.as_str() {
        "filesystem" => SourceKind::Filesystem {
            path: f.req(d, "path", " for a filesystem source", Decoder::non_empty_string).map(PathBuf::from)?,
            pattern: f.opt(d, "pattern", Decoder::non_empty_string).unwrap_or_else(|| "*.yaml".into()),
            watch: f.opt(d, "watch", Decoder::boolean).unwrap_or(true),
        },
        "docker" => SourceKind::Docker {
            socket_path: f.opt(d, "socket_path", Decoder::non_empty_string),
            allow_loopback: f.opt(d, "allow_loopback", Decoder::boolean).unwrap_or(false),
            allow_link_local: f.opt(d, "allow_link_local", Decoder::boolean).unwrap_or(false),
            grace_period: f.opt(d, "grace_period_s", Decoder::seconds).unwrap_or(Duration::from_secs(30)),
        },
        "kubernetes" => SourceKind::Kubernetes {
            namespaces: f.opt(d, "namespaces", Decoder::string_list).unwrap_or_default(),
            label_selector: f.opt(d, "label_selector", Decoder::string),
            in_cluster: f.opt(d, "in_cluster", Decoder::boolean).unwrap_or(false),
            kubeconfig: f.opt(d, "kubeconfig", Decoder::readable_file),
            allow_loopback: f.opt(d, "allow_loopback", Decoder::boolean).unwrap_or(false),
            allow_link_local: f.opt(d, "allow_link_local", Decoder::boolean).unwrap_or(false),
            custom_resources: f.opt(d, "custom_resources", Decoder::boolean).unwrap_or(true),
        },
        "registry" => {
            let file = f.opt(d, "path", Decoder::non_empty_string).map(PathBuf::from);
            let url = f.opt(d, "url", |d, p, v| {
                let url = d.string(p, v)?;
                match crate::validate::check_http_url(&url) {
                    Ok(()) => Some(url),
                    Err(why) => {
                        d.problem(p, why);
                        None
                    }
                }
            });
            if file.is_some() == url.is_some() {
                d.problem(path, "a registry source reads a path or a url: give exactly one");
            }
            SourceKind::Registry { path: file, url }
        }
        _ => SourceKind::Entrypoint {
            group: f.opt(d, "group", Decoder::non_empty_string).unwrap_or_else(|| "mcp.providers".into()),
            python: f.opt(d, "python", Decoder::non_empty_string).unwrap_or_else(|| "python3".into()),
        },
    };
    Some(DiscoverySource { mode, kind })
}

fn decode_security(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<DiscoverySecurity> {
    let f = d.fields(path, v)?;
    f.deny_unknown(d, SECURITY_KEYS, |_| None);
    let dflt = DiscoverySecurity::default();
    Some(DiscoverySecurity {
        max_providers_per_source: f
            .opt(d, "max_providers_per_source", |d, p, v| d.integer(p, v, 1, 100_000))
            .map_or(dflt.max_providers_per_source, |n| n as usize),
        max_registration_rate: f
            .opt(d, "max_registration_rate", |d, p, v| d.integer(p, v, 1, 1_000_000))
            .map_or(dflt.max_registration_rate, |n| n as u32),
        require_health_check: f.opt(d, "require_health_check", Decoder::boolean).unwrap_or(dflt.require_health_check),
        quarantine_on_failure: f
            .opt(d, "quarantine_on_failure", Decoder::boolean)
            .unwrap_or(dflt.quarantine_on_failure),
        allowed_namespaces: f.opt(d, "allowed_namespaces", Decoder::string_list).unwrap_or_default(),
        denied_namespaces: f.opt(d, "denied_namespaces", Decoder::string_list).unwrap_or_default(),
    })
}

/// Whether `name` matches a shell-style `pattern` (`*` any run, `?` one character). `*.yaml` also
/// takes `*.yml`, as in the Python MCP Hangar.
pub fn file_matches(pattern: &str, name: &str) -> bool {
    crate::glob::glob_matches(pattern, name) || (pattern == "*.yaml" && crate::glob::glob_matches("*.yml", name))
}

/// The provider files of a filesystem source, in name order. A missing directory holds none (it
/// may be created later); one that cannot be read is an error.
pub fn provider_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, LoadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LoadError::Read { path: dir.to_owned(), source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.') && file_matches(pattern, n))
        })
        .collect();
    files.sort();
    files.truncate(MAX_FILES);
    Ok(files)
}

/// Reads one provider file; `Ok(None)` when it says `enabled: false`.
pub fn read_provider_file(path: &Path, env: EnvLookup<'_>) -> Result<Option<Provider>, LoadError> {
    let read_error = |source| LoadError::Read { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        let too_big =
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {MAX_FILE_BYTES} bytes"));
        return Err(read_error(too_big));
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse_provider_file(&text, path, env)
}

/// Parses provider-file text (`path` names it in messages and gives the default name).
pub fn parse_provider_file(text: &str, path: &Path, env: EnvLookup<'_>) -> Result<Option<Provider>, LoadError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("provider");
    parse_provider_definition(text, stem, path, env)
}

/// Parses a provider definition in the provider-file format (YAML or JSON) from anywhere (a
/// package's entry point): `default_name` is its name when it names none, `source` names it in
/// messages and in the provider's `source`. `Ok(None)` when it says `enabled: false`.
pub fn parse_provider_definition(
    text: &str,
    default_name: &str,
    source: &Path,
    env: EnvLookup<'_>,
) -> Result<Option<Provider>, LoadError> {
    let source_name = source.display().to_string();
    let syntax = |e: serde_norway::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        LoadError::Syntax { source_name: source_name.clone(), line, column, message: e.to_string() }
    };
    let root: Value = serde_norway::from_str(text).map_err(syntax)?;
    if root.is_null() {
        let empty = Problem { path: String::new(), message: "the file is empty (a half-written file?)".into() };
        return Err(LoadError::Invalid { source_name, problems: vec![empty] });
    }
    provider_from_value(&root, source, default_name, env)
}

/// A remote provider found by a discovery source (a container's labels), checked as a provider
/// file's would be: named `name` (else `default_name`), at `endpoint`, over HTTP+SSE when `sse`.
/// `source` names it in messages and in the provider's `source`. Nothing in the values is
/// expanded from the environment: they are data, not configuration.
pub fn discovered_remote(
    name: Option<&str>,
    default_name: &str,
    endpoint: &str,
    sse: bool,
    source: &Path,
) -> Result<Provider, LoadError> {
    let mut connection = Mapping::new();
    set(&mut connection, "endpoint", endpoint.into());
    let mut definition = Mapping::new();
    if let Some(name) = name {
        set(&mut definition, "name", name.into());
    }
    set(&mut definition, "mode", if sse { "sse" } else { "http" }.into());
    set(&mut definition, "connection", Value::Mapping(connection));
    let no_environment = |_: &str| None;
    // The definition says nothing of `enabled`, so there is always a provider or a problem.
    provider_from_value(&Value::Mapping(definition), source, default_name, &no_environment)?.ok_or_else(|| {
        let problem = Problem { path: String::new(), message: "disabled".into() };
        LoadError::Invalid { source_name: source.display().to_string(), problems: vec![problem] }
    })
}

/// A group found by a discovery source (containers naming one group): `members` in order,
/// weighted round-robin. `source` names it in messages and in the provider's `source`.
pub fn discovered_group(name: &str, members: &[&str], source: &Path) -> Result<Provider, LoadError> {
    let mut definition = Mapping::new();
    set(&mut definition, "mode", "group".into());
    set(&mut definition, "members", Value::Sequence(members.iter().map(|m| Value::from(*m)).collect()));
    discovered_definition(name, &Value::Mapping(definition), source)
}

/// A provider a discovery source defines in the configuration file's own format (what
/// `providers.<name>` holds), decoded and checked as the file's providers are, so a source that
/// translates another format (a Kubernetes resource) gets the same rules and messages. `source`
/// names it in messages and in the provider's `source`. Nothing in the values is expanded from the
/// environment: they are data, not configuration.
pub fn discovered_definition(name: &str, definition: &Value, source: &Path) -> Result<Provider, LoadError> {
    let mut d = Decoder::new(&|_| None);
    let provider = crate::provider::decode(&mut d, "", name, definition);
    let problems = d.into_problems();
    match provider {
        Some(mut p) if problems.is_empty() => {
            p.source = Some(source.to_owned());
            Ok(p)
        }
        _ => Err(LoadError::Invalid { source_name: source.display().to_string(), problems }),
    }
}

/// A provider definition in the provider-file format: `source` names it in messages and in the
/// provider's `source`, `default_name` is its name when it names none. `Ok(None)` when it says
/// `enabled: false`.
fn provider_from_value(
    root: &Value,
    source: &Path,
    default_name: &str,
    env: EnvLookup<'_>,
) -> Result<Option<Provider>, LoadError> {
    let invalid = |problems: Vec<Problem>| LoadError::Invalid { source_name: source.display().to_string(), problems };
    let mut d = Decoder::new(env);
    let Some(f) = d.fields("", root) else { return Err(invalid(d.into_problems())) };
    let allowed: Vec<&str> = FILE_KEYS.iter().copied().chain(crate::provider::file_keys()).collect();
    f.deny_unknown(&mut d, &allowed, |_| None);
    if !f.opt(&mut d, "enabled", Decoder::boolean).unwrap_or(true) {
        let problems = d.into_problems();
        return if problems.is_empty() { Ok(None) } else { Err(invalid(problems)) };
    }
    let name = f.opt(&mut d, "name", Decoder::non_empty_string).unwrap_or_else(|| default_name.to_owned());
    let _ = f.opt(&mut d, "metadata", |d, p, v| d.fields(p, v).map(drop));
    let _ = f.opt(&mut d, "ttl", Decoder::seconds);
    let mode = f.opt(&mut d, "mode", Decoder::string).unwrap_or_else(|| "subprocess".into());
    let mut own = Mapping::new();
    for key in crate::provider::file_keys() {
        if let Some((_, v)) = f.get(key) {
            own.insert(Value::String(key.to_owned()), v.clone());
        }
    }
    let connection = f.get("connection");
    let converted = match mode.as_str() {
        "subprocess" | "stdio" => command_provider(&mut d, connection, &mut own),
        "http" | "remote" | "sse" => remote_provider(&mut d, connection, &mode, &mut own),
        "container" | "docker" => container_provider(&mut d, connection, &mut own),
        other => {
            d.problem(
                "mode",
                format!("unknown mode {other:?} (subprocess, stdio, http, remote, sse, container, docker)"),
            );
            false
        }
    };
    let provider = converted.then(|| crate::provider::decode(&mut d, "", &name, &Value::Mapping(own))).flatten();
    let problems = d.into_problems();
    match provider {
        Some(mut p) if problems.is_empty() => {
            p.source = Some(source.to_owned());
            Ok(Some(p))
        }
        _ => Err(invalid(problems)),
    }
}

fn set(map: &mut Mapping, key: &str, v: Value) {
    map.insert(Value::String(key.to_owned()), v);
}

/// The `connection` mapping, checked against the keys its mode allows.
fn connection_fields<'v>(
    d: &mut Decoder<'_>,
    connection: Option<(String, &'v Value)>,
    keys: &[&str],
) -> Option<Fields<'v>> {
    let (path, v) = connection?;
    let f = d.fields(&path, v)?;
    f.deny_unknown(d, keys, |_| None);
    Some(f)
}

/// `command` as a list: a list as it is, or a string with `args` appended.
fn command_value(d: &mut Decoder<'_>, f: &Fields<'_>) -> Option<Value> {
    let (path, command) = f.get("command")?;
    let mut list = match command {
        Value::Sequence(items) => items.clone(),
        Value::String(s) => vec![Value::String(s.clone())],
        _ => {
            d.problem(&path, "expected a command (a string or a list of strings)");
            return None;
        }
    };
    if let Some((args_path, args)) = f.get("args") {
        match args {
            Value::Sequence(items) => list.extend(items.iter().cloned()),
            _ => d.problem(&args_path, "expected a list of arguments"),
        }
    }
    Some(Value::Sequence(list))
}

fn command_provider(d: &mut Decoder<'_>, connection: Option<(String, &Value)>, own: &mut Mapping) -> bool {
    set(own, "mode", Value::String("subprocess".into()));
    let Some(f) = connection_fields(d, connection, COMMAND_KEYS) else {
        d.problem("connection.command", "is required for mode subprocess");
        return false;
    };
    match command_value(d, &f) {
        Some(c) => set(own, "command", c),
        None if f.get("command").is_none() => d.problem("connection.command", "is required for mode subprocess"),
        None => {}
    }
    for key in ["env", "cwd"] {
        if let Some((_, v)) = f.get(key) {
            set(own, key, v.clone());
        }
    }
    true
}

fn remote_provider(d: &mut Decoder<'_>, connection: Option<(String, &Value)>, mode: &str, own: &mut Mapping) -> bool {
    set(own, "mode", Value::String("remote".into()));
    let f = connection_fields(d, connection, REMOTE_KEYS);
    let get = |key: &str| f.as_ref().and_then(|f| f.get(key));
    let endpoint = match get("endpoint") {
        Some((_, v)) => v.clone(),
        None => {
            let host =
                get("host").and_then(|(_, v)| v.as_str().map(str::to_owned)).unwrap_or_else(|| "localhost".into());
            let port = match get("port") {
                None => 8080,
                Some((p, v)) => match v.as_u64().filter(|n| (1..=65535).contains(n)) {
                    Some(n) => n,
                    None => {
                        d.problem(&p, "expected a port number");
                        return false;
                    }
                },
            };
            let path = if mode == "sse" { "/sse" } else { "/mcp" };
            Value::String(format!("http://{host}:{port}{path}"))
        }
    };
    set(own, "endpoint", endpoint);
    if mode == "sse" {
        set(own, "transport", Value::String("sse".into()));
    }
    for key in ["headers", "transport"] {
        if let Some((_, v)) = get(key) {
            set(own, key, v.clone());
        }
    }
    true
}

fn container_provider(d: &mut Decoder<'_>, connection: Option<(String, &Value)>, own: &mut Mapping) -> bool {
    set(own, "mode", Value::String("container".into()));
    let Some(f) = connection_fields(d, connection, CONTAINER_KEYS) else {
        d.problem("connection.image", "is required for mode container");
        return false;
    };
    if let Some(c) = command_value(d, &f) {
        set(own, "command", c);
    }
    for key in ["image", "env", "volumes", "network", "read_only", "memory", "cpus"] {
        if let Some((_, v)) = f.get(key) {
            set(own, key, v.clone());
        }
    }
    true
}

/// Adds providers from discovery sources to `config` and validates the whole again. A name the
/// configuration file (or another source's file) uses already is an error naming both places:
/// nothing is applied from a candidate with a clash.
pub fn with_discovered(mut config: Config, discovered: Vec<Provider>, source_name: &str) -> Result<Config, LoadError> {
    let mut problems = Vec::new();
    for p in discovered {
        match config.providers.iter().find(|q| q.name == p.name) {
            Some(existing) => {
                let here =
                    p.source.as_deref().map_or_else(|| "a discovery source".to_owned(), |s| s.display().to_string());
                let there = existing
                    .source
                    .as_deref()
                    .map_or_else(|| format!("providers.{}", existing.name), |s| s.display().to_string());
                problems.push(Problem {
                    path: here,
                    message: format!("provider name {:?} is already defined in {there}", p.name),
                });
            }
            None => config.providers.push(p),
        }
    }
    let declared: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    crate::validate::cross_check(&config, &declared, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(LoadError::Invalid { source_name: source_name.to_owned(), problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Provider>, LoadError> {
        parse_provider_file(text, Path::new("/etc/mcp-hangar/providers.d/custom.yaml"), &|_| None)
    }

    #[test]
    fn python_provider_files_load_unchanged() {
        let p = parse("name: custom-tool\nenabled: true\nmode: subprocess\nconnection:\n  command: python\n  args: [-m, my_server]\n  env: {LOG_LEVEL: INFO}\nmetadata: {owner: team}\n")
            .expect("valid")
            .expect("enabled");
        assert_eq!(p.name, "custom-tool");
        match &p.kind {
            crate::ProviderKind::Subprocess(s) => {
                assert_eq!(s.command, ["python", "-m", "my_server"]);
                assert_eq!(s.env[0].0, "LOG_LEVEL");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.source.as_deref(), Some(Path::new("/etc/mcp-hangar/providers.d/custom.yaml")));
        let p = parse("mode: http\nconnection: {host: 127.0.0.1, port: 9001}\ntool_prefix: \"\"\n")
            .expect("valid")
            .expect("on");
        assert_eq!(p.name, "custom", "the file's stem when no name is given");
        match &p.kind {
            crate::ProviderKind::Remote(r) => assert_eq!(r.endpoint, "http://127.0.0.1:9001/mcp"),
            other => panic!("{other:?}"),
        }
        assert!(parse("enabled: false\nmode: subprocess\n").expect("valid").is_none());
    }

    #[test]
    fn broken_provider_files_are_errors_with_paths() {
        let err = parse("name: x\nmode: subprocess\nconnection: {command: [a], colour: red}\nsize: 3\n")
            .expect_err("unknown keys");
        let shown = err.to_string();
        assert!(shown.contains("custom.yaml") && shown.contains("connection.colour: unknown key"), "{shown}");
        assert!(shown.contains("size: unknown key"), "{shown}");
        assert!(parse("").expect_err("empty").to_string().contains("empty"));
        assert!(parse("name: x\nmode: subprocess\nconnection: {command: [a]\n")
            .expect_err("half written")
            .to_string()
            .contains("invalid YAML"));
        assert!(parse("mode: warp\n").expect_err("mode").to_string().contains("unknown mode"));
    }

    #[test]
    fn patterns_match_like_the_shell() {
        assert!(file_matches("*.yaml", "a.yaml") && file_matches("*.yaml", "a.yml"));
        assert!(!file_matches("*.yaml", "a.yaml.swp") && !file_matches("*.yaml", "yaml"));
        assert!(file_matches("p-?.y*l", "p-1.yaml") && !file_matches("p-?.yaml", "p-12.yaml"));
        assert!(file_matches(&"*a".repeat(30), &"a".repeat(60)), "no exponential blow-up");
    }

    #[test]
    fn the_sections_load_in_the_python_format() {
        let text = "config_reload: {enabled: true, use_watchdog: true, interval_s: 5}\ndiscovery:\n  enabled: true\n  refresh_interval_s: 30\n  auto_register: true\n  sources:\n    - {type: docker, mode: additive, socket_path: /var/run/docker.sock}\n    - {type: kubernetes, mode: authoritative, namespaces: [mcp-providers], label_selector: \"app.kubernetes.io/component=mcp-provider\", in_cluster: true}\n    - {type: filesystem, mode: additive, path: /etc/mcp-hangar/providers.d/, pattern: \"*.yaml\", watch: true}\n    - {type: entrypoint, mode: additive, group: mcp.providers}\n  security:\n    max_providers_per_source: 100\n    max_registration_rate: 10\n    require_health_check: true\n    quarantine_on_failure: true\n    allowed_namespaces: [mcp-providers]\n    denied_namespaces: [kube-system, default]\n";
        let config = crate::parse(text, "t", &|_| None).expect("the Python project's example loads");
        assert_eq!(config.discovery.sources.len(), 4);
        assert_eq!(config.discovery.sources[2].kind.type_name(), "filesystem");
        assert_eq!(config.config_reload.interval, std::time::Duration::from_secs(5));
        let crs = |c: &crate::Config| match &c.discovery.sources[1].kind {
            crate::SourceKind::Kubernetes { custom_resources, .. } => *custom_resources,
            other => panic!("{other:?}"),
        };
        assert!(crs(&config), "custom resources are followed by default");
        let off = text.replace("in_cluster: true}", "in_cluster: true, custom_resources: false}");
        assert!(!crs(&crate::parse(&off, "t", &|_| None).expect("valid")));
        let err =
            crate::parse("discovery:\n  sources:\n    - {type: filesystem, path: /x, recursive: true}\n", "t", &|_| {
                None
            })
            .expect_err("unknown key");
        assert!(err.to_string().contains("discovery.sources[0].recursive: unknown key"), "{err}");
    }

    #[test]
    fn registry_sources_read_a_path_or_a_url() {
        let load = |source: &str| crate::parse(&format!("discovery:\n  sources:\n    - {source}\n"), "t", &|_| None);
        let config = load("{type: registry, url: \"https://registry.example.com\"}").expect("a url");
        assert_eq!(config.discovery.sources[0].kind.type_name(), "registry");
        assert!(load("{type: registry, path: /etc/servers.d}").is_ok());
        for (bad, says) in [
            ("{type: registry}", "give exactly one"),
            ("{type: registry, path: /x, url: \"https://r.example\"}", "give exactly one"),
            ("{type: registry, url: \"ftp://r.example\"}", "discovery.sources[0].url"),
            ("{type: registry, path: /x, colour: red}", "discovery.sources[0].colour: unknown key"),
        ] {
            let err = load(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_discovered_name_that_is_taken_is_an_error_naming_both_places() {
        let config = crate::parse("providers:\n  math: {mode: subprocess, command: [m]}\n", "main.yaml", &|_| None)
            .expect("valid");
        let file = parse("name: math\nmode: subprocess\nconnection: {command: [x]}\n").expect("valid").expect("on");
        let err = with_discovered(config, vec![file], "main.yaml").expect_err("clash");
        let shown = err.to_string();
        assert!(shown.contains("custom.yaml: provider name \"math\" is already defined in providers.math"), "{shown}");
    }
}
