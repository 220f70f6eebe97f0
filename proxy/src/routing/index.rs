//! Indexes from exposed names and resource URIs to providers, rebuilt from each merged list.

use std::collections::{HashMap, HashSet};

/// Exposed names and URIs → provider index (and the provider's own name for prefixed kinds).
#[derive(Debug, Default, Clone)]
pub struct NameIndex {
    /// Exposed tool name → (provider, original name).
    pub tools: HashMap<String, (usize, String)>,
    /// Exposed prompt name → (provider, original name).
    pub prompts: HashMap<String, (usize, String)>,
    /// Resource URI → provider.
    pub resources: HashMap<String, usize>,
    /// Resource templates, in declaration order of their providers.
    pub templates: Vec<(UriTemplate, usize)>,
    /// Exposed names of tools marked `readOnlyHint` or `idempotentHint`: safe to retry.
    pub idempotent_tools: HashSet<String>,
}

impl NameIndex {
    /// The provider whose template matches `uri` (first in declaration order).
    pub fn template_for(&self, uri: &str) -> Option<usize> {
        self.templates.iter().find(|(t, _)| t.matches(uri)).map(|(_, p)| *p)
    }
}

/// An RFC 6570 URI template, compiled for matching (not expansion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{x}`: one segment (no `/`, `?`, `#`).
    Simple,
    /// `{+x}`, `{#x}`, `{/x*}`…: anything.
    Any,
    /// `{?x,y}`, `{&x}`: the rest of a query string.
    Query,
}

impl UriTemplate {
    /// Compiles `template`; an unbalanced brace makes it a literal.
    pub fn parse(template: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let expr = &rest[open + 1..open + close];
            parts.push(match expr.chars().next() {
                Some('+' | '#' | '/' | '.' | ';') => Part::Any,
                Some('?' | '&') => Part::Query,
                _ if expr.ends_with('*') => Part::Any,
                _ => Part::Simple,
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Self { parts }
    }

    /// Whether `uri` is an expansion of the template.
    pub fn matches(&self, uri: &str) -> bool {
        match_parts(&self.parts, uri)
    }
}

fn match_parts(parts: &[Part], s: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else { return s.is_empty() };
    match first {
        Part::Literal(l) => s.strip_prefix(l.as_str()).is_some_and(|r| match_parts(rest, r)),
        Part::Simple => {
            let end = s.find(['/', '?', '#']).unwrap_or(s.len());
            (0..=end).rev().any(|i| match_parts(rest, &s[i..]))
        }
        Part::Any => (0..=s.len()).rev().filter(|i| s.is_char_boundary(*i)).any(|i| match_parts(rest, &s[i..])),
        Part::Query => {
            if s.is_empty() {
                return match_parts(rest, s);
            }
            (s.starts_with('?') || s.starts_with('&')) && match_parts(rest, &s[s.find('#').unwrap_or(s.len())..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_expansions() {
        let t = UriTemplate::parse("test://template/{id}/data");
        assert!(t.matches("test://template/123/data"));
        assert!(!t.matches("test://template/1/2/data"));
        assert!(!t.matches("test://other/123/data"));
        let t = UriTemplate::parse("file:///{+path}");
        assert!(t.matches("file:///a/b/c.txt"));
        let t = UriTemplate::parse("users://{user}/profile{?fields}");
        assert!(t.matches("users://ann/profile"));
        assert!(t.matches("users://ann/profile?fields=a,b"));
        let t = UriTemplate::parse("exact://uri");
        assert!(t.matches("exact://uri") && !t.matches("exact://uri2"));
    }
}
