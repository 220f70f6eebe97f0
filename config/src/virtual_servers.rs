//! `virtual_servers`: more than one MCP endpoint on one gateway. Each `<mcp_path>/<name>` offers
//! a chosen set of providers (and of their tools), with its own authentication and authorization,
//! so one gateway serves several teams or clients with different tool sets. The default endpoint
//! stays as it is.

use serde_norway::Value;

use crate::decode::{child, Decoder};
use crate::Auth;

/// One virtual server.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VirtualServer {
    /// Its name: the last segment of its path.
    pub name: String,
    /// The providers (or groups) it offers; `hangar` offers the admin tools too.
    pub providers: Vec<String>,
    /// Exposed names (tools, prompts) and URIs (resources) it offers (globs); empty: all.
    pub tools_include: Vec<String>,
    /// What it hides, whatever `tools_include` says.
    pub tools_exclude: Vec<String>,
    /// Its own `auth` section (the top-level one when absent).
    pub auth: Option<Auth>,
}

impl VirtualServer {
    /// Whether it offers item `name` (an exposed tool or prompt name, or a URI) of `provider`.
    pub fn offers(&self, provider: &str, name: &str) -> bool {
        let matches = |patterns: &[String]| patterns.iter().any(|p| crate::glob_matches(p, name));
        self.providers.iter().any(|p| p == provider)
            && (self.tools_include.is_empty() || matches(&self.tools_include))
            && !matches(&self.tools_exclude)
    }
}

const KEYS: &[&str] = &["providers", "tools_include", "tools_exclude", "auth"];

pub(crate) fn decode_virtual_servers(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Vec<VirtualServer>> {
    let f = d.fields(path, v)?;
    let mut out = Vec::new();
    for (name, value) in &f.entries {
        let at = child(path, name);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            d.problem(&at, "a virtual server's name is a path segment: letters, digits, '-' and '_'");
            continue;
        }
        let Some(s) = d.fields(&at, value) else { continue };
        s.deny_unknown(d, KEYS, |_| None);
        let providers = s.req(d, "providers", " (the providers it offers)", |d, p, v| {
            let list = d.string_list(p, v)?;
            if list.is_empty() {
                d.problem(p, "must name at least one provider");
                return None;
            }
            Some(list)
        });
        let tools_include = s.opt(d, "tools_include", Decoder::string_list).unwrap_or_default();
        let tools_exclude = s.opt(d, "tools_exclude", Decoder::string_list).unwrap_or_default();
        let auth = s.opt(d, "auth", crate::auth::decode_auth);
        if let Some(providers) = providers {
            out.push(VirtualServer { name: (*name).to_owned(), providers, tools_include, tools_exclude, auth });
        }
    }
    Some(out)
}
