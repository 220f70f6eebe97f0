//! MCP Registry sources (`type: registry`): servers described in the official registry's
//! `server.json` format, from a registry's `/v0/servers` listing (`url`), one `server.json` URL,
//! or a local file or directory of them (`path`). Read at start and every `refresh_interval_s`.
//!
//! - `remotes` become remote providers (streamable HTTP preferred, else SSE), with the headers
//!   that carry a value;
//! - else the first `packages` entry served over stdio becomes a subprocess (`npm` through `npx`,
//!   `pypi` through `uvx`, or `pipx run` when its `runtimeHint` says so) or a container (`oci`),
//!   with its runtime and package arguments and its environment variables. A variable without a
//!   value comes from the gateway's environment (`${NAME}`, or its `default`); a required one the
//!   gateway does not have is reported. Values are never inlined from the gateway's environment
//!   otherwise: `${` in a document's values is kept literally.
//!
//! The provider is named after the server's name (the part after `/`, e.g. `weather-mcp` for
//! `io.github.acme/weather-mcp`). A server that cannot be used is reported, never a reason to
//! drop the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hangar_config::{DiscoverySource, Provider, SourceKind};
use serde_json::{json, Map, Value};

use crate::state::AppState;

const KIND: &str = "registry";
/// Largest document read (a file, or one page of a listing).
const MAX_DOCUMENT: usize = 4 << 20;
/// Most pages of a listing followed.
const MAX_PAGES: usize = 20;
/// Most files read from a directory.
const MAX_FILES: usize = 1000;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a registry source reads.
#[derive(Debug, Clone)]
enum Origin {
    Path(PathBuf),
    Url(String),
}

/// One `type: registry` source.
struct RegistrySource {
    origin: Origin,
    client: reqwest::Client,
}

/// Reads source `index` (a registry source) until shutdown.
pub fn spawn(state: &Arc<AppState>, index: usize, source: &DiscoverySource) -> Option<tokio::task::AbortHandle> {
    let origin = match &source.kind {
        SourceKind::Registry { path: Some(p), .. } => Origin::Path(p.clone()),
        SourceKind::Registry { url: Some(u), .. } => Origin::Url(u.clone()),
        _ => return None,
    };
    let reader = Arc::new(RegistrySource { origin, client: crate::fetch::client(FETCH_TIMEOUT) });
    let task = tokio::spawn(super::poll(state.clone(), index, KIND, source.mode, move || {
        let reader = reader.clone();
        async move { reader.look().await }
    }));
    Some(task.abort_handle())
}

impl RegistrySource {
    /// What the origin defines now.
    async fn look(&self) -> super::Look {
        Ok(providers_of(&self.servers().await?))
    }

    /// Every server document the origin holds.
    async fn servers(&self) -> Result<Vec<Value>, String> {
        match &self.origin {
            Origin::Path(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_path(&path)).await.map_err(|e| e.to_string())?
            }
            Origin::Url(url) => self.fetch(url).await,
        }
    }

    /// A `server.json` at `url`, or a registry's listing there (followed page by page).
    async fn fetch(&self, url: &str) -> Result<Vec<Value>, String> {
        let first = self.get_json(url).await?;
        if first.get("name").is_some() {
            return Ok(vec![first]);
        }
        let listing = format!("{}/v0/servers", url.trim_end_matches('/'));
        let mut servers = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page_url = match &cursor {
                Some(c) => format!("{listing}?cursor={}", percent_encode(c)),
                None => listing.clone(),
            };
            let page = self.get_json(&page_url).await?;
            cursor = page.pointer("/metadata/nextCursor").and_then(Value::as_str).map(str::to_owned);
            servers.extend(servers_in(page));
            if cursor.is_none() {
                break;
            }
        }
        Ok(servers)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let body = crate::fetch::get(&self.client, url, MAX_DOCUMENT).await?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The server documents of a file or a directory's `*.json` files.
fn read_path(path: &Path) -> Result<Vec<Value>, String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        files.sort();
        files.truncate(MAX_FILES);
        files
    } else {
        vec![path.to_owned()]
    };
    let mut servers = Vec::new();
    for file in files {
        let size = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?.len();
        if size > MAX_DOCUMENT as u64 {
            return Err(format!("{}: larger than {MAX_DOCUMENT} bytes", file.display()));
        }
        let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let doc: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
        servers.extend(servers_in(doc));
    }
    Ok(servers)
}

/// The servers of a document: one `server.json`, a list of them, or a listing
/// (`{servers: [{server: {...}}]}`).
fn servers_in(doc: Value) -> Vec<Value> {
    let unwrap = |v: Value| match v {
        Value::Object(mut o) if o.get("server").is_some_and(Value::is_object) => o.remove("server").unwrap_or_default(),
        other => other,
    };
    match doc {
        Value::Array(items) => items.into_iter().map(unwrap).collect(),
        Value::Object(mut o) if o.contains_key("servers") => match o.remove("servers") {
            Some(Value::Array(items)) => items.into_iter().map(unwrap).collect(),
            _ => Vec::new(),
        },
        other => vec![unwrap(other)],
    }
}

/// The providers of `servers`, and the problems of those that give none.
fn providers_of(servers: &[Value]) -> (Vec<Provider>, Vec<String>) {
    let mut providers: Vec<Provider> = Vec::new();
    let mut problems = Vec::new();
    for server in servers {
        let shown = server.get("name").and_then(Value::as_str).unwrap_or("(unnamed)").to_owned();
        match provider_of(server) {
            Ok(p) if providers.iter().any(|q| q.name == p.name) => {
                problems.push(format!("server {shown}: provider name {:?} is taken by another server", p.name));
            }
            Ok(p) => providers.push(p),
            Err(why) => problems.push(format!("server {shown}: {why}")),
        }
    }
    (providers, problems)
}

/// The provider one `server.json` describes.
fn provider_of(server: &Value) -> Result<Provider, String> {
    let full = server.get("name").and_then(Value::as_str).ok_or("has no name")?;
    let name = provider_name(full)?;
    let mut definition = Map::new();
    definition.insert("name".into(), name.clone().into());
    if let Some(d) = server.get("description").and_then(Value::as_str) {
        definition.insert("description".into(), literal(d).into());
    }
    let remotes = server.get("remotes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let remote = ["streamable-http", "sse"]
        .iter()
        .find_map(|kind| remotes.iter().find(|r| r.get("type").and_then(Value::as_str) == Some(kind)));
    if let Some(remote) = remote {
        remote_definition(remote, &mut definition)?;
    } else {
        let packages = server.get("packages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let package = packages
            .iter()
            .find(|p| p.pointer("/transport/type").and_then(Value::as_str).unwrap_or("stdio") == "stdio")
            .ok_or("has no remote and no package served over stdio")?;
        package_definition(package, &mut definition)?;
    }
    let text = Value::Object(definition).to_string();
    let source = format!("registry server {full}");
    match hangar_config::parse_provider_definition(&text, &name, Path::new(&source), &hangar_config::process_env) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err("disabled".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `io.github.acme/weather-mcp` → `weather-mcp` (characters a provider name cannot hold become
/// `-`).
fn provider_name(full: &str) -> Result<String, String> {
    let short = full.rsplit('/').next().unwrap_or(full);
    let name: String = short
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(64)
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        return Err(format!("name {full:?} gives no provider name"));
    }
    Ok(name)
}

/// A value from the document, kept literally (`${` is not expanded from the environment).
fn literal(s: &str) -> String {
    s.replace("${", "$${")
}

fn remote_definition(remote: &Value, definition: &mut Map<String, Value>) -> Result<(), String> {
    let url = remote.get("url").and_then(Value::as_str).ok_or("has a remote without a url")?;
    let sse = remote.get("type").and_then(Value::as_str) == Some("sse");
    let mut headers = Map::new();
    for h in remote.get("headers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let Some(name) = h.get("name").and_then(Value::as_str) else { continue };
        match h.get("value").and_then(Value::as_str) {
            Some(v) => {
                headers.insert(name.to_owned(), literal(v).into());
            }
            None if h.get("isRequired").and_then(Value::as_bool) == Some(true) => {
                return Err(format!("needs a value for header {name} (define the provider in a file instead)"));
            }
            None => {}
        }
    }
    definition.insert("mode".into(), if sse { "sse" } else { "http" }.into());
    let mut connection = json!({"endpoint": literal(url)});
    if !headers.is_empty() {
        connection["headers"] = Value::Object(headers);
    }
    definition.insert("connection".into(), connection);
    Ok(())
}

fn package_definition(package: &Value, definition: &mut Map<String, Value>) -> Result<(), String> {
    let kind = package.get("registryType").and_then(Value::as_str).ok_or("has a package without a registryType")?;
    let id = package.get("identifier").and_then(Value::as_str).ok_or("has a package without an identifier")?;
    let version = package.get("version").and_then(Value::as_str);
    let runtime_args = arguments(package.get("runtimeArguments"))?;
    let package_args = arguments(package.get("packageArguments"))?;
    let env = environment(package.get("environmentVariables"))?;
    let hint = package.get("runtimeHint").and_then(Value::as_str);
    let pinned = |sep: &str| version.map_or_else(|| id.to_owned(), |v| format!("{id}{sep}{v}"));
    let (mode, command): (&str, Vec<String>) = match kind {
        "npm" => {
            ("subprocess", [vec!["npx".into(), "-y".into()], runtime_args, vec![pinned("@")], package_args].concat())
        }
        "pypi" if hint == Some("pipx") => {
            ("subprocess", [vec!["pipx".into(), "run".into()], runtime_args, vec![pinned("==")], package_args].concat())
        }
        "pypi" => ("subprocess", [vec!["uvx".into()], runtime_args, vec![pinned("==")], package_args].concat()),
        "oci" => {
            let image = if id.contains(':') || id.contains('@') { id.to_owned() } else { pinned(":") };
            definition.insert("mode".into(), "container".into());
            let mut connection = json!({"image": literal(&image)});
            if !package_args.is_empty() {
                connection["args"] = package_args.iter().map(|a| literal(a)).collect();
            }
            if !env.is_empty() {
                connection["env"] = Value::Object(env);
            }
            definition.insert("connection".into(), connection);
            return Ok(());
        }
        other => return Err(format!("has a {other} package, which the gateway cannot run (npm, pypi or oci)")),
    };
    definition.insert("mode".into(), mode.into());
    let mut connection = json!({"command": command.iter().map(|a| literal(a)).collect::<Vec<_>>()});
    if !env.is_empty() {
        connection["env"] = Value::Object(env);
    }
    definition.insert("connection".into(), connection);
    Ok(())
}

/// Command-line arguments: positional ones by value (or default), named ones as `name value`.
fn arguments(list: Option<&Value>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for a in list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let value = a.get("value").or_else(|| a.get("default")).and_then(Value::as_str);
        match a.get("type").and_then(Value::as_str) {
            Some("named") => {
                let name = a.get("name").and_then(Value::as_str).ok_or("has a named argument without a name")?;
                out.push(name.to_owned());
                out.extend(value.map(str::to_owned));
            }
            _ => match value {
                Some(v) => out.push(v.to_owned()),
                None if a.get("isRequired").and_then(Value::as_bool) == Some(true) => {
                    let hint = a.get("valueHint").and_then(Value::as_str).unwrap_or("a value");
                    return Err(format!("needs {hint} as an argument (define the provider in a file instead)"));
                }
                None => {}
            },
        }
    }
    Ok(out)
}

/// Environment variables: a literal value when the document gives one (secrets never do), else
/// the gateway's own variable of that name, else the default; a required one with none of these
/// is an error (reported when the provider is read).
fn environment(list: Option<&Value>) -> Result<Map<String, Value>, String> {
    let mut env = Map::new();
    for v in list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let name = v.get("name").and_then(Value::as_str).ok_or("has an environment variable without a name")?;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            return Err(format!("environment variable {name:?} is not a valid name"));
        }
        let value = match (v.get("value").and_then(Value::as_str), v.get("default").and_then(Value::as_str)) {
            (Some(literal_value), _) => literal(literal_value),
            (None, Some(default)) if !default.contains('}') => format!("${{{name}:-{default}}}"),
            (None, Some(default)) => literal(default),
            (None, _) if v.get("isRequired").and_then(Value::as_bool) == Some(true) => format!("${{{name}}}"),
            (None, _) => continue,
        };
        env.insert(name.to_owned(), value.into());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_config::ProviderKind;

    fn command(p: &Provider) -> Vec<String> {
        match &p.kind {
            ProviderKind::Subprocess(s) => s.command.clone(),
            other => panic!("not a subprocess: {other:?}"),
        }
    }

    #[test]
    fn remotes_become_remote_providers() {
        let server = json!({"name": "io.github.acme/weather-mcp", "description": "Weather ${HOME}",
            "remotes": [{"type": "sse", "url": "https://w.example/sse"}, {"type": "streamable-http", "url": "https://w.example/mcp",
                "headers": [{"name": "X-Plan", "value": "${HOME}"}]}]});
        let p = provider_of(&server).expect("valid");
        assert_eq!(p.name, "weather-mcp");
        let ProviderKind::Remote(r) = &p.kind else { panic!("not remote") };
        assert_eq!(r.endpoint, "https://w.example/mcp", "streamable HTTP is preferred");
        assert_eq!(r.headers[0].1.expose(), "${HOME}", "a document's values are not expanded");
        assert_eq!(p.description.as_deref(), Some("Weather ${HOME}"));
    }

    #[test]
    fn packages_become_commands() {
        let server = json!({"name": "io.github.acme/files", "packages": [{"registryType": "npm", "identifier": "@acme/files",
            "version": "1.2.3", "transport": {"type": "stdio"},
            "runtimeArguments": [{"type": "positional", "value": "--quiet"}],
            "packageArguments": [{"type": "positional", "value": "serve"}, {"type": "named", "name": "--root", "default": "/tmp"}],
            "environmentVariables": [{"name": "HANGAR_REGISTRY_TEST_UNSET", "default": "x"}, {"name": "MODE", "value": "ro"}]}]});
        let p = provider_of(&server).expect("valid");
        assert_eq!(command(&p), ["npx", "-y", "--quiet", "@acme/files@1.2.3", "serve", "--root", "/tmp"]);
        let ProviderKind::Subprocess(s) = &p.kind else { panic!() };
        let env: Vec<(&str, &str)> = s.env.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert!(env.contains(&("HANGAR_REGISTRY_TEST_UNSET", "x")) && env.contains(&("MODE", "ro")), "{env:?}");
        let py =
            json!({"name": "x/py", "packages": [{"registryType": "pypi", "identifier": "mcp-py", "version": "2.0"}]});
        assert_eq!(command(&provider_of(&py).expect("valid")), ["uvx", "mcp-py==2.0"]);
        let oci =
            json!({"name": "x/box", "packages": [{"registryType": "oci", "identifier": "docker.io/acme/box:1.0"}]});
        assert!(matches!(provider_of(&oci).expect("valid").kind, ProviderKind::Container(_)));
    }

    #[test]
    fn unusable_servers_are_reported() {
        let (providers, problems) = providers_of(&[
            json!({"name": "a/ok", "remotes": [{"type": "streamable-http", "url": "http://10.0.0.1/mcp"}]}),
            json!({"name": "b/ok", "remotes": [{"type": "streamable-http", "url": "http://10.0.0.2/mcp"}]}),
            json!({"name": "c/nuget", "packages": [{"registryType": "nuget", "identifier": "X"}]}),
            json!({"name": "d/secret", "packages": [{"registryType": "npm", "identifier": "d",
                "environmentVariables": [{"name": "HANGAR_REGISTRY_TEST_NEVER_SET", "isRequired": true, "isSecret": true}]}]}),
            json!({"description": "no name"}),
        ]);
        assert_eq!(providers.len(), 1, "{problems:?}");
        assert!(problems[0].contains("provider name \"ok\" is taken"), "{problems:?}");
        assert!(problems[1].contains("nuget package"), "{problems:?}");
        assert!(problems[2].contains("HANGAR_REGISTRY_TEST_NEVER_SET"), "{problems:?}");
        assert!(problems[3].contains("has no name"), "{problems:?}");
    }

    #[test]
    fn listings_and_lists_hold_servers() {
        let listing = json!({"servers": [{"server": {"name": "a/x"}, "_meta": {}}], "metadata": {"count": 1}});
        assert_eq!(servers_in(listing), vec![json!({"name": "a/x"})]);
        assert_eq!(servers_in(json!([{"name": "a/y"}])).len(), 1);
        assert_eq!(provider_name("io.github.acme/My Server!").expect("valid"), "My-Server");
    }
}
