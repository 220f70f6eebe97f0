//! A small typed reader over the YAML value tree that records problems instead of stopping.
//!
//! serde's derived deserializers stop at the first error; users fixing a config want every
//! problem at once, each with its path. So the file is parsed into a [`Value`] and the sections
//! read it through [`Decoder`] and [`Fields`], which note each problem and carry on.

use std::time::Duration;

use serde_norway::Value;

use crate::env::{expand, EnvLookup, ExpandError};
use crate::error::Problem;
use crate::secret::Secret;

/// Longest duration a `*_s` field accepts: anything longer is a typo, not a policy.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// Collects problems while reading the document.
pub(crate) struct Decoder<'e> {
    problems: Vec<Problem>,
    env: EnvLookup<'e>,
}

impl<'e> Decoder<'e> {
    pub(crate) fn new(env: EnvLookup<'e>) -> Self {
        Self { problems: Vec::new(), env }
    }

    /// An environment variable, through the same lookup `${VAR}` expansion uses.
    pub(crate) fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    pub(crate) fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem { path: path.to_owned(), message: message.into() });
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Opens a mapping. `null` reads as an empty mapping, so `server:` with nothing under it is fine.
    pub(crate) fn fields<'v>(&mut self, path: &str, value: &'v Value) -> Option<Fields<'v>> {
        let mapping = match value {
            Value::Mapping(m) => m,
            Value::Null => return Some(Fields { path: path.to_owned(), entries: Vec::new() }),
            other => {
                self.problem(path, format!("expected a mapping, found {}", describe(other)));
                return None;
            }
        };
        let mut entries = Vec::with_capacity(mapping.len());
        for (k, v) in mapping {
            match k.as_str() {
                Some(key) => entries.push((key, v)),
                None => self.problem(path, format!("keys must be strings, found {}", describe(k))),
            }
        }
        Some(Fields { path: path.to_owned(), entries })
    }

    /// Expands `${VAR}` in a string read at `path`; `None` (with a problem noted) when it cannot.
    fn expand(&mut self, path: &str, raw: &str) -> Option<String> {
        match expand(raw, self.env) {
            Ok(None) => Some(raw.to_owned()),
            Ok(Some(s)) => Some(s),
            Err(ExpandError::Missing(name)) => {
                self.problem(path, format!("environment variable \"{name}\" is not set"));
                None
            }
            Err(ExpandError::Malformed(msg)) => {
                self.problem(path, msg);
                None
            }
        }
    }

    /// A string, with `${VAR}` expanded.
    pub(crate) fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => self.expand(path, s),
            other => {
                self.problem(path, format!("expected a string, found {}", describe(other)));
                None
            }
        }
    }

    /// The path of a file that exists now (certificates, keys: a typo is found at load, not at
    /// the first connection).
    pub(crate) fn readable_file(&mut self, path: &str, v: &Value) -> Option<std::path::PathBuf> {
        let file = std::path::PathBuf::from(self.non_empty_string(path, v)?);
        if !file.is_file() {
            self.problem(path, format!("{} is not a readable file", file.display()));
            return None;
        }
        Some(file)
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty_string(&mut self, path: &str, v: &Value) -> Option<String> {
        let s = self.string(path, v)?;
        if s.trim().is_empty() {
            self.problem(path, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A scalar read as text (numbers and booleans too, as in `PORT: 8080`), held as a secret.
    pub(crate) fn secret(&mut self, path: &str, v: &Value) -> Option<Secret> {
        match v {
            Value::String(s) => self.expand(path, s).map(Secret::new),
            Value::Number(n) => Some(Secret::new(n.to_string())),
            Value::Bool(b) => Some(Secret::new(b.to_string())),
            other => {
                self.problem(path, format!("expected a string, found {}", describe(other)));
                None
            }
        }
    }

    /// Text of a scalar that may also be written as `${VAR}` (so numbers can come from the
    /// environment); `None` for non-scalars, with a problem noted.
    fn scalar_text(&mut self, path: &str, v: &Value, expected: &str) -> Option<String> {
        match v {
            Value::String(s) => self.expand(path, s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.problem(path, format!("expected {expected}, found {}", describe(other)));
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, path: &str, v: &Value) -> Option<bool> {
        if let Value::Bool(b) = v {
            return Some(*b);
        }
        let text = self.scalar_text(path, v, "true or false")?;
        match text.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.problem(path, format!("expected true or false, found {}", describe(v)));
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(&mut self, path: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
        let parsed = match v {
            Value::Number(n) => n.as_u64().ok_or(()),
            Value::String(_) => {
                let text = self.scalar_text(path, v, "an integer")?;
                text.trim().parse::<u64>().map_err(|_| ())
            }
            _ => Err(()),
        };
        match parsed {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) => {
                self.problem(path, format!("must be between {min} and {max}, found {n}"));
                None
            }
            Err(()) => {
                self.problem(path, format!("expected an integer between {min} and {max}, found {}", describe(v)));
                None
            }
        }
    }

    /// A positive number of seconds (fractions allowed: `0.5` is half a second).
    pub(crate) fn seconds(&mut self, path: &str, v: &Value) -> Option<Duration> {
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(_) => {
                let text = self.scalar_text(path, v, "a number of seconds")?;
                text.trim().parse::<f64>().ok()
            }
            _ => None,
        };
        match parsed {
            Some(s) if s.is_finite() && s > 0.0 && s <= MAX_SECONDS => Some(Duration::from_secs_f64(s)),
            Some(s) => {
                self.problem(path, format!("must be a positive number of seconds up to one year, found {s}"));
                None
            }
            None => {
                self.problem(path, format!("expected a number of seconds, found {}", describe(v)));
                None
            }
        }
    }

    /// A list of strings (each `${VAR}`-expanded).
    pub(crate) fn string_list(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        let Value::Sequence(items) = v else {
            self.problem(path, format!("expected a list of strings, found {}", describe(v)));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(&index(path, i), item) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A mapping of names to secret values (environment variables, HTTP headers).
    pub(crate) fn secret_map(&mut self, path: &str, v: &Value) -> Option<Vec<(String, Secret)>> {
        let fields = self.fields(path, v)?;
        let mut out = Vec::with_capacity(fields.entries.len());
        for (key, value) in &fields.entries {
            if let Some(s) = self.secret(&child(path, key), value) {
                out.push(((*key).to_owned(), s));
            }
        }
        Some(out)
    }

    /// Arbitrary data carried through as JSON (tool schemas); no `${VAR}` expansion inside.
    pub(crate) fn json(&mut self, path: &str, v: &Value) -> Option<serde_json::Value> {
        match serde_json::to_value(v) {
            Ok(j) => Some(j),
            Err(e) => {
                self.problem(path, format!("cannot be represented as JSON: {e}"));
                None
            }
        }
    }
}

/// The entries of one mapping, read by key.
pub(crate) struct Fields<'v> {
    pub(crate) path: String,
    pub(crate) entries: Vec<(&'v str, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// The value under `key` and its path; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<(String, &'v Value)> {
        self.entries.iter().find(|(k, v)| *k == key && !v.is_null()).map(|(k, v)| (child(&self.path, k), *v))
    }

    /// Reads an optional field with `read`.
    pub(crate) fn opt<'e, T>(
        &self,
        d: &mut Decoder<'e>,
        key: &str,
        read: impl FnOnce(&mut Decoder<'e>, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        let (path, v) = self.get(key)?;
        read(d, &path, v)
    }

    /// Reads a required field with `read`, noting `why` when it is absent.
    pub(crate) fn req<'e, T>(
        &self,
        d: &mut Decoder<'e>,
        key: &str,
        why: &str,
        read: impl FnOnce(&mut Decoder<'e>, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        match self.get(key) {
            Some((path, v)) => read(d, &path, v),
            None => {
                d.problem(&child(&self.path, key), format!("is required{why}"));
                None
            }
        }
    }

    /// Notes every key not in `allowed`. `elsewhere` may explain a key that is valid in another
    /// context (another provider mode); otherwise a close spelling or the full list is suggested.
    pub(crate) fn deny_unknown(
        &self,
        d: &mut Decoder<'_>,
        allowed: &[&str],
        elsewhere: impl Fn(&str) -> Option<String>,
    ) {
        for (key, _) in &self.entries {
            if allowed.contains(key) {
                continue;
            }
            let hint = elsewhere(key).unwrap_or_else(|| match closest(key, allowed) {
                Some(near) => format!("did you mean \"{near}\"?"),
                None => format!("expected one of: {}", allowed.join(", ")),
            });
            d.problem(&child(&self.path, key), format!("unknown key ({hint})"));
        }
    }
}

/// Path of a mapping entry: `a.b`, or `a["odd key"]` when the key is not a plain identifier.
pub(crate) fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

/// Path of a list element: `a[3]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A short description of a value for "expected X, found Y" messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// The allowed key nearest to `key` by edit distance, if it is a plausible typo.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_unusual_keys() {
        assert_eq!(child("", "server"), "server");
        assert_eq!(child("providers", "math"), "providers.math");
        assert_eq!(child("providers", "my.odd"), "providers[\"my.odd\"]");
        assert_eq!(index("providers.s.members", 1), "providers.s.members[1]");
    }

    #[test]
    fn suggests_near_keys_only() {
        assert_eq!(closest("idle_ttl", &["idle_ttl_s", "command"]), Some("idle_ttl_s"));
        assert_eq!(closest("zzz", &["idle_ttl_s", "command"]), None);
    }
}
