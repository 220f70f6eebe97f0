//! Indexes from exposed names and resource URIs to providers, rebuilt from each merged list.

// foldhash, not SipHash: a call looks names up here on its way (keys come from the providers'
// lists, which no client writes).
use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use crate::telemetry::calls::ToolSeries;

/// A listed tool or prompt, under its exposed name.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The provider (or group) listing it.
    pub provider: usize,
    /// Its name there.
    pub own: String,
    /// Its call series (a tool's), found with the entry instead of by label.
    pub series: Arc<ToolSeries>,
}

impl Listed {
    /// The entry of a tool or prompt `provider` lists as `own`.
    pub fn new(provider: usize, own: String) -> Self {
        Self { provider, own, series: Arc::default() }
    }
}

/// Exposed names and URIs → provider index (and the provider's own name for prefixed kinds).
#[derive(Debug, Default, Clone)]
pub struct NameIndex {
    /// Exposed tool name → who lists it.
    pub tools: HashMap<String, Listed>,
    /// Exposed prompt name → who lists it.
    pub prompts: HashMap<String, Listed>,
    /// Resource URI → provider.
    pub resources: HashMap<String, usize>,
    /// Resource templates, in declaration order of their providers (shared between indexes, so
    /// an unchanged template is compiled once).
    pub templates: Vec<(Arc<UriTemplate>, usize)>,
    /// Exposed names of tools marked `readOnlyHint` or `idempotentHint`: safe to retry.
    pub idempotent_tools: HashSet<String>,
}

impl NameIndex {
    /// The provider whose template matches `uri` (first in declaration order).
    pub fn template_for(&self, uri: &str) -> Option<usize> {
        self.templates.iter().find(|(t, _)| t.matches(uri)).map(|(_, p)| *p)
    }
}

/// Longest URI template compiled; a longer one never matches (it is a provider's mistake, and its
/// regex would cost memory per snapshot).
const MAX_TEMPLATE_LEN: usize = 4096;
/// Memory one compiled template may use.
const REGEX_SIZE_LIMIT: usize = 256 << 10;

/// An RFC 6570 URI template (levels 1–3, and level 4's explode and prefix modifiers, which MCP
/// servers use), compiled once into an anchored regular expression for matching, not expansion.
/// The `regex` crate matches in time linear in the URI, whatever the template: no backtracking,
/// no byte index that could fall inside a character.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    source: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for UriTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl UriTemplate {
    /// Compiles `template`. An unbalanced `{` is taken literally; a template that cannot be
    /// compiled (too long or too large) matches nothing.
    pub fn parse(template: &str) -> Self {
        let regex = (template.len() <= MAX_TEMPLATE_LEN)
            .then(|| {
                regex::RegexBuilder::new(&pattern(template))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .ok()
            })
            .flatten();
        if regex.is_none() {
            tracing::warn!(template = %template.chars().take(200).collect::<String>(), "URI template cannot be compiled; it matches nothing");
        }
        Self { source: template.to_owned(), regex }
    }

    /// The template as the provider listed it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `uri` is an expansion of the template.
    pub fn matches(&self, uri: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(uri))
    }
}

/// The regular expression an RFC 6570 template's expansions match. Each expression becomes what
/// its operator can expand to: a simple `{x}` stays within one path segment, `{+x}` and `{#x}`
/// may span anything, `{/x}`, `{.x}`, `{;x}` add prefixed parts, `{?x}` and `{&x}` a query.
fn pattern(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    out.push_str("(?s)^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push_str(&regex::escape(&rest[..open]));
        let expr = &after[..close];
        out.push_str(match expr.chars().next() {
            Some('+') => ".*",
            Some('#') => "(?:#.*)?",
            Some('/') => "(?:/[^?#]*)?",
            Some('.') => r"(?:\.[^/?#]*)*",
            Some(';') => "(?:;[^/?#]*)*",
            Some('?') => r"(?:\?[^#]*)?",
            Some('&') => "(?:&[^#]*)?",
            _ => "[^/?#]*",
        });
        rest = &after[close + 1..];
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    out
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
        let t = UriTemplate::parse("a.b://{x}?(");
        assert!(t.matches("a.b://1?(") && !t.matches("aXb://1?("), "literal parts are not regex syntax");
        let t = UriTemplate::parse("x://{/path*}{.ext}{#frag}");
        assert!(t.matches("x:///a/b.txt#top") && t.matches("x://"));
        let t = UriTemplate::parse("x://{unclosed");
        assert!(t.matches("x://{unclosed") && !t.matches("x://other"));
    }

    #[test]
    fn multi_byte_characters_never_panic() {
        let t = UriTemplate::parse("x://{id}/data");
        assert!(!t.matches("x://é/nope"));
        assert!(t.matches("x://é/data"));
        let t = UriTemplate::parse("ü://{+a}é{b}");
        assert!(t.matches("ü://xéy") && !t.matches("ü://xy"));
    }

    #[test]
    fn matching_is_linear_in_many_reserved_expressions() {
        // The recursive matcher took exponential time here: every {+x} tried every split point.
        let template = format!("x://{}end", "{+a}/".repeat(40));
        let t = UriTemplate::parse(&template);
        let uri = format!("x://{}", "a/".repeat(5000));
        let started = std::time::Instant::now();
        assert!(!t.matches(&uri));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn oversized_templates_match_nothing() {
        let t = UriTemplate::parse(&"{a}".repeat(MAX_TEMPLATE_LEN));
        assert!(!t.matches("anything"));
    }
}
