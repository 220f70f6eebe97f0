//! Checking a tool call's arguments against the tool's `inputSchema` (JSON Schema, 2020-12 unless
//! the schema says otherwise) before the provider is started or called: a client's mistake is
//! answered by the gateway with `-32602` naming the failing path, and never costs a provider.
//!
//! Schemas come from the provider's latest tools list (or its predefined tools before it has
//! run), are compiled once per list and cached with the provider's runtime. A tool whose schema is
//! unknown or does not compile is not checked here (the provider checks it). A schema of the
//! usual simple kind is also kept as a [`Shape`], which the fast path checks on the arguments'
//! text before it builds a tree for the validator.

use std::sync::Arc;

use jsonschema::Validator;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::jsonrpc::{code, RpcError};
use crate::proto::lists::ListKind;
use crate::provider::ProviderRuntime;
use crate::routing::Routes;

mod shape;
pub use shape::Shape;

/// Most validation errors reported for one call.
const MAX_ERRORS: usize = 5;

/// A tool's checker (`None`: not checked) and the identity of the list it was compiled from.
type Compiled = (usize, Option<Arc<Checker>>);

/// A tool's compiled schema.
pub struct Checker {
    /// The schema's validator: the judge of every call.
    pub validator: Validator,
    /// The schema's shape, when it is of the simple kind: what surely meets it needs no tree.
    pub shape: Option<Shape>,
}

/// One provider's compiled schemas, by tool (its own name).
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<foldhash::HashMap<String, Compiled>>,
}

impl SchemaCache {
    /// The checker of `tool` in the list whose identity is `version`, compiled on first use.
    fn checker(&self, version: usize, tool: &str, schema: impl FnOnce() -> Option<Value>) -> Option<Arc<Checker>> {
        if let Some((v, checker)) = self.compiled.lock().get(tool) {
            if *v == version {
                return checker.clone();
            }
        }
        let compiled = schema().and_then(|s| compile(&s, tool));
        self.compiled.lock().insert(tool.to_owned(), (version, compiled.clone()));
        compiled
    }
}

/// The checker of `schema` (`tool`'s, for the log when it does not compile). Remote `$ref`s
/// are never fetched: the crate is built without resolvers.
pub fn compile(schema: &Value, tool: &str) -> Option<Arc<Checker>> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => Some(Arc::new(Checker { validator, shape: Shape::of(schema) })),
        Err(e) => {
            tracing::debug!(tool, "the tool's inputSchema does not compile; its arguments are not checked: {e}");
            None
        }
    }
}

/// The checker for `tool` (the provider's own name) of provider or group `idx`, when its
/// arguments are to be checked and its schema is known (for a group: from its members' lists).
pub fn checker(routes: &Routes, idx: usize, tool: &str) -> Option<Arc<Checker>> {
    if !routes.providers[idx].config.validate_arguments {
        return None;
    }
    match routes.pool(idx) {
        Some(pool) => pool.members.iter().find_map(|&m| known(&routes.providers[m], tool)),
        None => known(&routes.providers[idx], tool),
    }
}

/// The checker of `tool` from `p`'s latest tools list, or its predefined tools before it ran.
fn known(p: &ProviderRuntime, tool: &str) -> Option<Arc<Checker>> {
    let find = |items: &[Value]| {
        items
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(tool))
            .and_then(|t| t.get("inputSchema"))
            .cloned()
    };
    match p.lists.latest(ListKind::Tools) {
        Some(list) => p.schemas.checker(Arc::as_ptr(&list) as usize, tool, || find(&list)),
        None => {
            let predefined = p.config.tools.iter().find(|t| t.name == tool)?;
            p.schemas.checker(0, tool, || predefined.definition.get("inputSchema").cloned())
        }
    }
}

/// Checks `arguments` (absent: an empty object) of a call of `exposed` against `validator`.
pub fn check(validator: &Validator, exposed: &str, arguments: Option<&Value>) -> Result<(), RpcError> {
    let empty = json!({});
    let arguments = arguments.unwrap_or(&empty);
    if validator.is_valid(arguments) {
        return Ok(());
    }
    let errors: Vec<Value> = validator
        .iter_errors(arguments)
        .take(MAX_ERRORS)
        .map(|e| {
            let message: String = e.to_string().chars().take(300).collect();
            json!({"path": e.instance_path.to_string(), "message": message})
        })
        .collect();
    let first = errors.first().map_or_else(String::new, |e| {
        let path = e["path"].as_str().filter(|p| !p.is_empty()).unwrap_or("/");
        format!(" at {path}: {}", e["message"].as_str().unwrap_or_default())
    });
    Err(RpcError::new(code::INVALID_PARAMS, format!("Invalid arguments for tool {exposed:?}{first}"))
        .with_data(json!({"errors": errors})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_failing_path() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]});
        let checker = compile(&schema, "add").expect("compiles");
        let v = &checker.validator;
        assert!(check(v, "m__add", Some(&json!({"a": 1, "b": 2}))).is_ok());
        let e = check(v, "m__add", Some(&json!({"a": "one", "b": 2}))).expect_err("a string");
        assert_eq!(e.code, code::INVALID_PARAMS);
        assert!(e.message.contains("m__add") && e.message.contains("/a"), "{}", e.message);
        let e = check(v, "m__add", None).expect_err("missing");
        assert!(e.message.contains("required"), "{}", e.message);
    }

    #[test]
    fn compiled_once_per_list_version() {
        let cache = SchemaCache::default();
        let mut compiles = 0;
        for _ in 0..3 {
            cache.checker(7, "t", || {
                compiles += 1;
                Some(json!({"type": "object"}))
            });
        }
        assert_eq!(compiles, 1);
        assert!(cache.checker(8, "t", || Some(json!({"type": "object"}))).is_some(), "a new list compiles again");
        assert!(cache.checker(8, "u", || Some(json!({"type": 5}))).is_none(), "a broken schema is not checked");
    }
}
