//! `mcp-hangar import`: a desktop client's server list — the `mcpServers` JSON that Claude
//! Desktop, Cursor and LM Studio share (`command`/`args`/`env` or `url`/`headers` entries), or VS
//! Code's `servers` — as the gateway's `providers`, so servers configured in a client move behind
//! the gateway in one step.
//!
//! Credentials are never copied: an `env` or header value that looks like one (by its name, or
//! by its shape) becomes a `${VAR}` reference, and the variables to set are listed. References the
//! client file already had (`${env:X}`, `${input:x}`, `${X}`) become `${X}`. An entry that cannot
//! be converted is a problem with its JSON path; keys only a client uses (`autoApprove`, `disabled`,
//! …) are noted and left out.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_norway::{Mapping, Value as Yaml};

/// Keys of an entry that only mean something to the client.
const CLIENT_ONLY: &[&str] =
    &["autoApprove", "alwaysAllow", "disabled", "timeout", "envFile", "gallery", "version", "trust", "includeTools"];
/// Name parts that make an `env` key or header a credential.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "pass",
    "pat",
    "credential",
    "auth",
    "cookie",
    "session",
    "private",
];

/// An environment variable the imported configuration refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// Where its value was in the client file (a JSON path), or why it is needed.
    pub from: String,
    /// Whether the client file held the value itself (a secret, left out here), rather than a
    /// reference the client resolved.
    pub had_value: bool,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// The providers, by name, in the file's order.
    pub providers: Vec<(String, Yaml)>,
    /// The variables to set.
    pub variables: Vec<Variable>,
    /// Entries that could not be converted, with their JSON paths.
    pub problems: Vec<String>,
    /// What was changed or left out on the way (a renamed provider, client-only keys).
    pub notes: Vec<String>,
}

/// Converts a client's configuration (`text`, JSON) into providers.
pub fn import_client_config(text: &str) -> Imported {
    let mut out = Imported::default();
    let root: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.problems.push(format!("not JSON: {e}"));
            return out;
        }
    };
    let (key, servers) = match (root.get("mcpServers"), root.get("servers")) {
        (Some(s), _) => ("mcpServers", s),
        (None, Some(s)) => ("servers", s),
        _ => {
            out.problems
                .push("no \"mcpServers\" (Claude Desktop, Cursor, LM Studio) or \"servers\" (VS Code) object".into());
            return out;
        }
    };
    let Some(servers) = servers.as_object() else {
        out.problems.push(format!("{key}: expected an object of servers by name"));
        return out;
    };
    let mut seen_values: BTreeMap<String, String> = BTreeMap::new();
    for (name, entry) in servers {
        let path = format!("{key}.{}", json_key(name));
        let provider = provider_name(name);
        if provider.is_empty() {
            out.problems.push(format!("{path}: no usable provider name can be made from {name:?}"));
            continue;
        }
        if provider != *name {
            out.notes.push(format!("{path}: provider named {provider:?} (names are letters, digits, '_' and '-')"));
        }
        if out.providers.iter().any(|(p, _)| *p == provider) {
            out.problems.push(format!("{path}: provider name {provider:?} is taken by another entry"));
            continue;
        }
        let mut entry_out = Entry { path: &path, server: &provider, out: &mut out, seen: &mut seen_values };
        if let Some(def) = entry_out.convert(entry) {
            out.providers.push((provider, def));
        }
    }
    out
}

/// The YAML text of an import: a header naming the variables to set, then `providers:`.
pub fn render(imported: &Imported, source: &str) -> String {
    let mut text = format!("# Providers imported from {source} by `mcp-hangar import`.\n");
    if !imported.variables.is_empty() {
        text.push_str("# Set these environment variables before starting the gateway:\n");
        let width = imported.variables.iter().map(|v| v.name.len()).max().unwrap_or(0);
        for v in &imported.variables {
            text.push_str(&format!("#   {:width$}  {}\n", v.name, v.from));
        }
    }
    text.push_str(&providers_yaml(imported));
    text
}

/// `providers:` and the imported definitions under it.
fn providers_yaml(imported: &Imported) -> String {
    let mut map = Mapping::new();
    for (name, def) in &imported.providers {
        map.insert(Yaml::String(name.clone()), def.clone());
    }
    let mut root = Mapping::new();
    root.insert(Yaml::String("providers".into()), Yaml::Mapping(map));
    serde_norway::to_string(&Yaml::Mapping(root)).unwrap_or_default()
}

/// `config` (a configuration file's text) with the imported providers added under its
/// `providers:` (made when it has none), its comments and layout kept. A name the file already
/// uses is an error naming both.
pub fn merge_into(config: &str, imported: &Imported, source: &str) -> Result<String, Vec<String>> {
    let existing: Yaml =
        serde_norway::from_str(config).map_err(|e| vec![format!("the configuration is not YAML: {e}")])?;
    let taken: Vec<String> = existing
        .get("providers")
        .and_then(Yaml::as_mapping)
        .map(|m| m.keys().filter_map(Yaml::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let clashes: Vec<String> = imported
        .providers
        .iter()
        .filter(|(n, _)| taken.contains(n))
        .map(|(n, _)| format!("provider {n:?} is already in the configuration (rename one of them)"))
        .collect();
    if !clashes.is_empty() {
        return Err(clashes);
    }
    let body = providers_yaml(imported);
    let entries: String = body.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let mut lines: Vec<&str> = config.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("providers:"));
    let comment = format!("  # imported from {source} by `mcp-hangar import`\n");
    let merged = match header {
        // `providers:` with entries below it (or a flow mapping, which gets replaced when empty).
        Some(i) => {
            let rest = lines[i]["providers:".len()..].trim();
            if !(rest.is_empty() || rest == "{}" || rest.starts_with('#')) {
                return Err(vec![
                    "the file's `providers:` is written inline; write it as a block (one provider per indented key) to merge into it"
                        .into(),
                ]);
            }
            if rest == "{}" {
                lines[i] = "providers:";
            }
            // The block ends at the next line that is neither indented, blank nor a comment.
            let end = (i + 1..lines.len())
                .find(|&j| {
                    let l = lines[j];
                    !(l.is_empty() || l.starts_with(' ') || l.starts_with('\t') || l.starts_with('#'))
                })
                .unwrap_or(lines.len());
            let mut out: String = lines[..end].iter().map(|l| format!("{l}\n")).collect();
            out.push_str(&comment);
            out.push_str(&entries);
            out.extend(lines[end..].iter().map(|l| format!("{l}\n")));
            out
        }
        None => {
            let mut out = config.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("providers:\n");
            out.push_str(&comment);
            out.push_str(&entries);
            out
        }
    };
    Ok(merged)
}

/// One entry being converted.
struct Entry<'a> {
    path: &'a str,
    server: &'a str,
    out: &'a mut Imported,
    /// Values seen per variable name (a name given two values gets server-specific names).
    seen: &'a mut BTreeMap<String, String>,
}

impl Entry<'_> {
    fn convert(&mut self, entry: &Json) -> Option<Yaml> {
        let Some(fields) = entry.as_object() else {
            self.problem("", "expected an object (command/args/env, or url/headers)");
            return None;
        };
        for key in fields.keys() {
            if CLIENT_ONLY.contains(&key.as_str()) {
                self.out.notes.push(format!("{}.{key}: a client setting, left out", self.path));
            } else if ![
                "command",
                "args",
                "env",
                "cwd",
                "url",
                "headers",
                "type",
                "transport",
                "description",
                "serverUrl",
            ]
            .contains(&key.as_str())
            {
                self.out.notes.push(format!("{}.{key}: not a server setting the gateway knows, left out", self.path));
            }
        }
        if fields.get("disabled").and_then(Json::as_bool) == Some(true) {
            self.out.notes.push(format!("{}: disabled in the client, imported anyway", self.path));
        }
        let kind = fields.get("type").or_else(|| fields.get("transport")).and_then(Json::as_str);
        let url = fields.get("url").or_else(|| fields.get("serverUrl"));
        let mut def = Mapping::new();
        match (fields.get("command"), url) {
            (Some(_), Some(_)) => {
                self.problem("", "has both a command and a url: give one");
                return None;
            }
            (None, None) => {
                self.problem("", "has neither a command (a local server) nor a url (a remote one)");
                return None;
            }
            (Some(command), None) => {
                if kind.is_some_and(|k| !k.eq_ignore_ascii_case("stdio")) {
                    self.problem(
                        ".type",
                        &format!("{:?} with a command: only stdio runs a command", kind.unwrap_or("")),
                    );
                    return None;
                }
                let mut argv = vec![self.string(".command", command)?];
                if let Some(args) = fields.get("args") {
                    let Some(list) = args.as_array() else {
                        self.problem(".args", "expected a list of strings");
                        return None;
                    };
                    for (i, a) in list.iter().enumerate() {
                        argv.push(self.string(&format!(".args[{i}]"), a)?);
                    }
                }
                let argv: Vec<Yaml> = argv.into_iter().map(|a| Yaml::String(self.referenced(&a))).collect();
                def.insert("mode".into(), "subprocess".into());
                def.insert("command".into(), Yaml::Sequence(argv));
                if let Some(env) = fields.get("env") {
                    def.insert("env".into(), self.values(".env", env, false)?);
                }
                if let Some(cwd) = fields.get("cwd") {
                    def.insert("cwd".into(), Yaml::String(self.string(".cwd", cwd)?));
                }
            }
            (None, Some(url)) => {
                let transport = match kind.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("http" | "streamable-http" | "streamablehttp" | "streamable_http") => None,
                    Some("sse") => Some("sse"),
                    Some(other) => {
                        self.problem(
                            ".type",
                            &format!("{other:?} is not a transport the gateway speaks (http or sse)"),
                        );
                        return None;
                    }
                };
                let url = self.string(".url", url)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.problem(".url", &format!("{url:?} is not an http:// or https:// URL"));
                    return None;
                }
                def.insert("mode".into(), "remote".into());
                def.insert("endpoint".into(), Yaml::String(self.referenced(&url)));
                if let Some(t) = transport {
                    def.insert("transport".into(), t.into());
                }
                if let Some(headers) = fields.get("headers") {
                    def.insert("headers".into(), self.values(".headers", headers, true)?);
                }
            }
        }
        if let Some(d) = fields.get("description").and_then(Json::as_str) {
            def.insert("description".into(), d.into());
        }
        Some(Yaml::Mapping(def))
    }

    fn problem(&mut self, at: &str, why: &str) {
        self.out.problems.push(format!("{}{at}: {why}", self.path));
    }

    fn string(&mut self, at: &str, v: &Json) -> Option<String> {
        match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.problem(at, "expected a string");
                None
            }
        }
    }

    /// `env` or `headers`: each value copied, made a reference, or (a credential) turned into a
    /// variable.
    fn values(&mut self, at: &str, v: &Json, headers: bool) -> Option<Yaml> {
        let Some(map) = v.as_object() else {
            self.problem(at, "expected an object of names and string values");
            return None;
        };
        let mut out = Mapping::new();
        for (name, value) in map {
            let value_at = format!("{at}.{}", json_key(name));
            let value = self.string(&value_at, value)?;
            let converted = if has_reference(&value) {
                self.referenced(&value)
            } else if is_secret(name, &value) {
                self.secret(name, &value, &format!("{}{value_at}", self.path), headers)
            } else {
                value.replace("${", "$${")
            };
            out.insert(Yaml::String(name.clone()), Yaml::String(converted));
        }
        Some(Yaml::Mapping(out))
    }

    /// A credential as a reference to a variable named after it (`Bearer` kept in the header).
    fn secret(&mut self, name: &str, value: &str, from: &str, header: bool) -> String {
        let (prefix, secret) = match value.split_once(' ') {
            Some((scheme, token))
                if header && ["bearer", "basic", "token"].contains(&scheme.to_ascii_lowercase().as_str()) =>
            {
                (format!("{scheme} "), token)
            }
            _ => (String::new(), value),
        };
        let base = if header {
            let part = if prefix.is_empty() { name } else { "token" };
            format!("{}_{}", env_name(self.server), env_name(part))
        } else {
            env_name(name)
        };
        let var = match self.seen.get(&base) {
            Some(v) if v != secret => format!("{}_{base}", env_name(self.server)),
            _ => base,
        };
        self.seen.insert(var.clone(), secret.to_owned());
        if !self.out.variables.iter().any(|v| v.name == var) {
            self.out.variables.push(Variable { name: var.clone(), from: from.to_owned(), had_value: true });
        }
        format!("{prefix}${{{var}}}")
    }

    /// A value with the client's references (`${env:X}`, `${input:x}`, `${X}`) as the gateway's
    /// `${X}`, each listed as a variable to set; anything else as it is.
    fn referenced(&mut self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str("$${");
                rest = after;
                continue;
            };
            let inner = &after[..end];
            let bare = inner.rsplit(':').next().unwrap_or(inner);
            let var = env_name(bare);
            if !self.out.variables.iter().any(|v| v.name == var) {
                let from = format!("{} (the client's ${{{inner}}})", self.path);
                self.out.variables.push(Variable { name: var.clone(), from, had_value: false });
            }
            out.push_str(&format!("${{{var}}}"));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Whether a value holds a client-side reference.
fn has_reference(value: &str) -> bool {
    value.find("${").is_some_and(|i| value[i..].contains('}'))
}

/// Whether `name = value` is a credential: its name says so, or its value looks like one (a long
/// token of letters and digits, a `Bearer` header).
fn is_secret(name: &str, value: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower == "authorization" || lower == "proxy-authorization" {
        return true;
    }
    let parts: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    if parts.iter().any(|p| SECRET_WORDS.contains(p)) || SECRET_WORDS.iter().any(|w| lower.ends_with(w) && w.len() > 3)
    {
        return true;
    }
    let token = value.len() >= 20
        && !value.contains(['/', ' ', ':'])
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.=+".contains(c))
        && value.chars().any(|c| c.is_ascii_digit())
        && value.chars().any(|c| c.is_ascii_alphabetic());
    token || value.to_ascii_lowercase().starts_with("bearer ")
}

/// `name` as an environment variable name: upper case, `_` for anything else.
fn env_name(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A client's server name as a provider name (letters, digits, `_`, `-`; at most 64).
fn provider_name(name: &str) -> String {
    let mapped: String =
        name.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let trimmed = mapped.trim_matches('_');
    trimmed.chars().take(64).collect()
}

/// A JSON object key in a path: bare when it is a plain word, quoted otherwise.
fn json_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE: &str = r#"{
      "mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123", "LOG_LEVEL": "debug"}},
        "Brave Search": {"command": "npx", "args": ["-y", "brave"], "env": {"BRAVE_API_KEY": "BSAxyz"}, "autoApprove": ["search"]},
        "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer abc.def.ghi", "X-Team": "blue"}},
        "old": {"url": "http://127.0.0.1:9000/sse", "type": "sse"}
      }
    }"#;

    fn get<'a>(imported: &'a Imported, name: &str) -> &'a Yaml {
        &imported.providers.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
    }

    #[test]
    fn a_claude_desktop_config_becomes_providers_without_its_secrets() {
        let i = import_client_config(CLAUDE);
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        let gh = get(&i, "github");
        assert_eq!(gh["mode"], "subprocess");
        assert_eq!(gh["command"][0], "npx");
        assert_eq!(gh["command"][2], "@modelcontextprotocol/server-github");
        assert_eq!(gh["env"]["GITHUB_PERSONAL_ACCESS_TOKEN"], "${GITHUB_PERSONAL_ACCESS_TOKEN}");
        assert_eq!(gh["env"]["LOG_LEVEL"], "debug", "not a secret: copied");
        let brave = get(&i, "Brave_Search");
        assert_eq!(brave["env"]["BRAVE_API_KEY"], "${BRAVE_API_KEY}");
        let remote = get(&i, "remote");
        assert_eq!(remote["endpoint"], "https://mcp.example.com/mcp");
        assert_eq!(remote["headers"]["Authorization"], "Bearer ${REMOTE_TOKEN}");
        assert_eq!(remote["headers"]["X-Team"], "blue");
        assert_eq!(get(&i, "old")["transport"], "sse");
        let names: Vec<&str> = i.variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["BRAVE_API_KEY", "GITHUB_PERSONAL_ACCESS_TOKEN", "REMOTE_TOKEN"]);
        assert!(i.variables[2].from.contains("mcpServers.remote.headers.Authorization"), "{:?}", i.variables);
        assert!(
            i.notes.iter().any(|n| n.contains("\"Brave Search\".autoApprove") && n.contains("client setting")),
            "{:?}",
            i.notes
        );
        let text = render(&i, "claude_desktop_config.json");
        assert!(!text.contains("ghp_abc") && !text.contains("abc.def.ghi") && !text.contains("BSAxyz"), "{text}");
        assert!(text.contains("#   REMOTE_TOKEN"), "{text}");
        let set = |name: &str| i.variables.iter().any(|v| v.name == name).then(|| "set".to_owned());
        let config = crate::parse(&text, "imported.yaml", &set).expect("the output loads");
        assert_eq!(config.providers.len(), 4);
    }

    #[test]
    fn vs_code_servers_and_references_are_understood() {
        let i = import_client_config(
            r#"{"servers": {"db": {"type": "stdio", "command": "uvx", "args": ["mcp-db", "--path", "${workspaceFolder}/db"],
                                    "env": {"DB_PASSWORD": "${input:db-password}", "MODE": "${env:DB_MODE}"}},
                             "api": {"type": "http", "url": "https://api.example.com/mcp"}},
                "inputs": [{"id": "db-password", "type": "promptString"}]}"#,
        );
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        let db = get(&i, "db");
        assert_eq!(db["command"][3], "${WORKSPACEFOLDER}/db");
        assert_eq!(db["env"]["DB_PASSWORD"], "${DB_PASSWORD}");
        assert_eq!(db["env"]["MODE"], "${DB_MODE}");
        assert!(i.variables.iter().all(|v| !v.had_value), "references, not values: {:?}", i.variables);
        assert_eq!(get(&i, "api")["mode"], "remote");
    }

    #[test]
    fn bad_entries_are_reported_with_their_paths() {
        let i = import_client_config(
            r#"{"mcpServers": {"a": {"args": ["x"]}, "b": {"command": "x", "url": "http://h"}, "c": {"command": 7},
                                "d": {"command": "x", "args": "y"}, "e": {"url": "ftp://h"}, "f": {"url": "http://h", "type": "websocket"},
                                "g": "npx thing", "ok": {"command": "true"}}}"#,
        );
        let p = i.problems.join("\n");
        for expected in [
            "mcpServers.a: has neither a command",
            "mcpServers.b: has both a command and a url",
            "mcpServers.c.command: expected a string",
            "mcpServers.d.args: expected a list of strings",
            "mcpServers.e.url: \"ftp://h\" is not an http",
            "mcpServers.f.type: \"websocket\"",
            "mcpServers.g: expected an object",
        ] {
            assert!(p.contains(expected), "{expected} in\n{p}");
        }
        assert_eq!(i.providers.len(), 1, "the good entry still comes");
        assert!(import_client_config("{}").problems[0].contains("no \"mcpServers\""));
        assert!(import_client_config("not json").problems[0].contains("not JSON"));
    }

    #[test]
    fn merging_keeps_the_files_comments_and_refuses_a_taken_name() {
        let i = import_client_config(r#"{"mcpServers": {"memory": {"command": "npx", "args": ["-y", "mem"]}}}"#);
        let config = "# my gateway\nserver:\n  port: 9000   # the team's port\nproviders:\n  # the demo\n  demo:\n    mode: subprocess\n    command: [demo]\nobservability:\n  access_log: true\n";
        let merged = merge_into(config, &i, "x.json").expect("merged");
        assert!(merged.contains("# the team's port") && merged.contains("# the demo"), "{merged}");
        let parsed = crate::parse(&merged, "merged.yaml", &|_| None).expect("valid");
        let names: Vec<&str> = parsed.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["demo", "memory"]);
        assert!(parsed.observability.access_log, "what followed providers is kept");
        let none = merge_into("server:\n  port: 9000\n", &i, "x.json").expect("merged");
        assert_eq!(crate::parse(&none, "m", &|_| None).expect("valid").providers.len(), 1);
        let empty = merge_into("providers: {}\n", &i, "x.json").expect("merged");
        assert_eq!(crate::parse(&empty, "m", &|_| None).expect("valid").providers.len(), 1);
        let clash =
            merge_into("providers:\n  memory: {mode: subprocess, command: [m]}\n", &i, "x.json").expect_err("clash");
        assert!(clash[0].contains("\"memory\" is already in the configuration"), "{clash:?}");
    }
}
