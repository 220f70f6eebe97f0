//! `${VAR}` substitution from the environment.
//!
//! Supported forms: `${NAME}` (an error when unset), `${NAME:-fallback}` (fallback when unset or
//! empty) and `$${` for a literal `${`. A lone `$` is kept as is, so passwords containing `$` need no
//! escaping. Expansion happens once, at load time; the expanded values are held in [`crate::Secret`]
//! wherever they may carry credentials.

/// Looks a variable up; injected so tests and the binary can choose the environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with `NAME` unset.
    Missing(String),
    /// `${` without a closing `}` or with an invalid name.
    Malformed(String),
}

/// Expands every `${...}` in `input`. Returns `Ok(None)` when nothing needed expanding, so callers
/// can keep the original string without copying it.
pub(crate) fn expand(input: &str, env: EnvLookup<'_>) -> Result<Option<String>, ExpandError> {
    if !input.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end =
                after.find('}').ok_or_else(|| ExpandError::Malformed(format!("unterminated \"${{\" in {input:?}")))?;
            let body = &after[..end];
            let (name, fallback) = match body.split_once(":-") {
                Some((n, f)) => (n, Some(f)),
                None => (body, None),
            };
            if !is_var_name(name) {
                return Err(ExpandError::Malformed(format!(
                    "\"${{{body}}}\" is not a valid variable reference (names are letters, digits and _)"
                )));
            }
            match (env(name), fallback) {
                (Some(v), Some(f)) if v.is_empty() => out.push_str(f),
                (Some(v), _) => out.push_str(&v),
                (None, Some(f)) => out.push_str(f),
                (None, None) => return Err(ExpandError::Missing(name.to_owned())),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_known_variables_and_fallbacks() {
        assert_eq!(expand("plain", &env), Ok(None));
        assert_eq!(expand("Bearer ${TOKEN}", &env), Ok(Some("Bearer s3cret".into())));
        assert_eq!(expand("${NOPE:-dflt}", &env), Ok(Some("dflt".into())));
        assert_eq!(expand("${EMPTY:-dflt}", &env), Ok(Some("dflt".into())));
        assert_eq!(expand("a$b $${TOKEN} ${TOKEN}$", &env), Ok(Some("a$b ${TOKEN} s3cret$".into())));
    }

    #[test]
    fn reports_missing_and_malformed_references() {
        assert_eq!(expand("x ${NOPE}", &env), Err(ExpandError::Missing("NOPE".into())));
        assert!(matches!(expand("${TOKEN", &env), Err(ExpandError::Malformed(_))));
        assert!(matches!(expand("${1BAD}", &env), Err(ExpandError::Malformed(_))));
        assert!(matches!(expand("${}", &env), Err(ExpandError::Malformed(_))));
    }
}
