//! Packaged providers (`type: entrypoint`): the Python MCP Hangar's `mcp.providers` entry points.
//! Each entry point of the group, in the Python environment of the source's `python`, is a
//! provider definition in the provider-file format (a dict, or a callable returning one; its name
//! defaults to the entry point's). The environment is read at start and every
//! `refresh_interval_s` by a short-lived interpreter, bounded in time and output; a change
//! reloads. An entry point that fails to load or gives a bad definition is reported, never a
//! reason to drop the others.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hangar_config::{DiscoverySource, Provider, SourceKind};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::state::AppState;

const KIND: &str = "entrypoint";
/// Longest the interpreter may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest output read from it.
const MAX_OUTPUT: u64 = 4 << 20;

/// Lists the group's entry points as JSON: `[{name, definition} | {name, error}]`.
const LIST_ENTRY_POINTS: &str = r#"
import json, sys
from importlib.metadata import entry_points
group = sys.argv[1]
try:
    found = entry_points(group=group)
except TypeError:  # Python < 3.10
    found = entry_points().get(group, [])
out = []
for ep in sorted(found, key=lambda e: e.name):
    try:
        value = ep.load()
        if callable(value):
            value = value()
        out.append({"name": ep.name, "definition": value})
    except Exception as e:
        out.append({"name": ep.name, "error": f"{type(e).__name__}: {e}"})
json.dump(out, sys.stdout, default=str)
"#;

/// One `type: entrypoint` source.
struct EntrypointSource {
    group: String,
    python: String,
}

/// Reads source `index` (an entry-point source) until shutdown.
pub fn spawn(state: &Arc<AppState>, index: usize, source: &DiscoverySource) -> Option<tokio::task::AbortHandle> {
    let SourceKind::Entrypoint { group, python } = &source.kind else { return None };
    let reader = Arc::new(EntrypointSource { group: group.clone(), python: python.clone() });
    let task = tokio::spawn(super::poll(state.clone(), index, KIND, source.mode, move || {
        let reader = reader.clone();
        async move { reader.read().await }
    }));
    Some(task.abort_handle())
}

impl EntrypointSource {
    /// The definitions the group's entry points give, and the problems of those that give none.
    async fn read(&self) -> Result<(Vec<Provider>, Vec<String>), String> {
        let listed = list_entry_points(&self.python, &self.group).await?;
        let mut providers: Vec<Provider> = Vec::new();
        let mut problems = Vec::new();
        for item in listed {
            let name = item.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
            if let Some(error) = item.get("error").and_then(Value::as_str) {
                problems.push(format!("entry point {name}: {error}"));
                continue;
            }
            match definition_of(name, &self.group, item.get("definition").unwrap_or(&Value::Null)) {
                Ok(Some(p)) if providers.iter().any(|q| q.name == p.name) => {
                    problems.push(format!(
                        "entry point {name}: provider name {:?} is taken by another entry point",
                        p.name
                    ));
                }
                Ok(Some(p)) => providers.push(p),
                Ok(None) => {}
                Err(why) => problems.push(format!("entry point {name}: {why}")),
            }
        }
        Ok((providers, problems))
    }
}

/// The provider an entry point's definition gives (`None` when it says `enabled: false`).
fn definition_of(name: &str, group: &str, definition: &Value) -> Result<Option<Provider>, String> {
    if !definition.is_object() {
        return Err(format!("gave {}, not a provider definition (a mapping)", kind_of(definition)));
    }
    let text = definition.to_string();
    let source = format!("entry point {group}:{name}");
    hangar_config::parse_provider_definition(&text, name, Path::new(&source), &hangar_config::process_env)
        .map_err(|e| e.to_string())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Runs `python` to list the group's entry points.
async fn list_entry_points(python: &str, group: &str) -> Result<Vec<Value>, String> {
    let mut child = tokio::process::Command::new(python)
        .args(["-c", LIST_ENTRY_POINTS, group])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(format!("cannot read the output of {python}"));
    };
    let read = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut stdout, mut stderr) = (stdout.take(MAX_OUTPUT + 1), stderr.take(64 << 10));
        let (o, e) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        o.and(e).map_err(|e| e.to_string())?;
        if out.len() as u64 > MAX_OUTPUT {
            // It may still be writing: it is killed when dropped.
            return Err(format!("the entry points' definitions are larger than {MAX_OUTPUT} bytes"));
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, out, err))
    };
    let (status, out, err) = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| format!("{python} did not list the entry points within {READ_TIMEOUT:?}"))??;
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let last = err.lines().last().unwrap_or_default();
        return Err(format!("{python} failed to list the entry points ({status}): {last}"));
    }
    serde_json::from_slice(&out).map_err(|e| format!("{python} gave unreadable output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_are_provider_files() {
        let def = json!({"mode": "remote", "connection": {"endpoint": "http://10.0.0.1:8080/mcp"}});
        let p = definition_of("weather", "mcp.providers", &def).expect("valid").expect("enabled");
        assert_eq!(p.name, "weather");
        assert!(definition_of("x", "g", &json!({"enabled": false, "mode": "remote"})).expect("valid").is_none());
        let bad = definition_of("x", "g", &json!({"mode": "remote", "connection": {"endpoint": "ftp://x"}}));
        assert!(bad.expect_err("refused").contains("entry point g:x"));
        assert!(definition_of("x", "g", &json!("nope")).expect_err("refused").contains("a string"));
        let unknown =
            definition_of("x", "g", &json!({"mode": "subprocess", "connection": {"command": "x"}, "colour": 1}));
        assert!(unknown.expect_err("refused").contains("colour"));
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_a_clear_error() {
        let err = list_entry_points("/nonexistent/python", "mcp.providers").await.expect_err("no interpreter");
        assert!(err.contains("cannot run /nonexistent/python"), "{err}");
    }

    #[tokio::test]
    async fn an_environment_without_entry_points_gives_none() {
        match list_entry_points("python3", "mcp.hangar.test.none").await {
            Ok(found) => assert!(found.is_empty(), "{found:?}"),
            Err(e) => assert!(e.contains("cannot run python3"), "{e}"),
        }
    }
}
