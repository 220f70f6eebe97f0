//! Authorization: what a principal may use. Built-in roles grant broadly (`admin`: everything;
//! `developer`: every provider's tools, prompts and resources), rules allow or deny more finely,
//! a deny wins over everything, and what nothing grants is refused.

use std::borrow::Cow;

use hangar_config::{glob_matches, Effect, Rule, ADMIN_PROVIDER, ADMIN_ROLE, DEVELOPER_ROLE};

use super::Principal;

/// Something a caller may be allowed to use.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// A provider's tool.
    Tool {
        /// The provider (or group).
        provider: &'a str,
        /// The provider's own name for it.
        own: &'a str,
        /// The name clients see (with the provider's prefix).
        exposed: &'a str,
    },
    /// A provider's prompt.
    Prompt {
        /// The provider (or group).
        provider: &'a str,
        /// The provider's own name for it.
        own: &'a str,
        /// The name clients see.
        exposed: &'a str,
    },
    /// A provider's resource (or resource template) by URI.
    Resource {
        /// The provider (or group).
        provider: &'a str,
        /// The URI (or URI template).
        uri: &'a str,
    },
    /// One of the gateway's own `registry_*` tools.
    AdminTool {
        /// The tool's name.
        name: &'a str,
    },
}

impl Item<'_> {
    /// The provider the item belongs to (`hangar` for the admin tools).
    pub fn provider(&self) -> &str {
        match self {
            Self::Tool { provider, .. } | Self::Prompt { provider, .. } | Self::Resource { provider, .. } => provider,
            Self::AdminTool { .. } => ADMIN_PROVIDER,
        }
    }

    /// The name a virtual server's `tools_include`/`tools_exclude` match: the exposed name, the
    /// URI, or the admin tool's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Tool { exposed, .. } | Self::Prompt { exposed, .. } | Self::AdminTool { name: exposed } => exposed,
            Self::Resource { uri, .. } => uri,
        }
    }

    /// The kind and name, for the audit trail and error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Tool { exposed, .. } | Self::AdminTool { name: exposed } => format!("tool {exposed:?}"),
            Self::Prompt { exposed, .. } => format!("prompt {exposed:?}"),
            Self::Resource { uri, .. } => format!("resource {uri:?}"),
        }
    }
}

/// An authorization decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the item may be used.
    pub allowed: bool,
    /// What decided: `rules[2]`, `role:admin`, `role:developer`, or `default`.
    pub by: Cow<'static, str>,
}

impl Decision {
    fn allow(by: impl Into<Cow<'static, str>>) -> Self {
        Self { allowed: true, by: by.into() }
    }

    fn deny(by: impl Into<Cow<'static, str>>) -> Self {
        Self { allowed: false, by: by.into() }
    }
}

/// The rules of one configuration.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// The policy of `rules`, in the order written (for the `rules[i]` a decision names).
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// Whether `who` may use `item`.
    pub fn decide(&self, who: &Principal, item: &Item<'_>) -> Decision {
        let applies = |r: &&Rule| is_for(r, who) && covers(r, item);
        if let Some(i) = self.rules.iter().position(|r| r.effect == Effect::Deny && applies(&r)) {
            return Decision::deny(format!("rules[{i}]"));
        }
        if who.has_role(ADMIN_ROLE) {
            return Decision::allow("role:admin");
        }
        if let Some(i) = self.rules.iter().position(|r| r.effect == Effect::Allow && applies(&r)) {
            return Decision::allow(format!("rules[{i}]"));
        }
        if who.has_role(DEVELOPER_ROLE) && !matches!(item, Item::AdminTool { .. }) {
            return Decision::allow("role:developer");
        }
        Decision::deny("default")
    }
}

/// Whether rule `r` is for principal `who`.
fn is_for(r: &Rule, who: &Principal) -> bool {
    if r.principals.is_empty() && r.roles.is_empty() {
        return true;
    }
    r.principals.iter().any(|p| who.is(p)) || r.roles.iter().any(|role| who.has_role(role))
}

/// Whether rule `r` is about `item`.
fn covers(r: &Rule, item: &Item<'_>) -> bool {
    let provider = item.provider();
    let provider_matches = r.providers.iter().any(|pattern| {
        if provider == ADMIN_PROVIDER {
            pattern == ADMIN_PROVIDER
        } else {
            glob_matches(pattern, provider)
        }
    });
    if !provider_matches {
        return false;
    }
    let any_kind = r.tools.is_none() && r.prompts.is_none() && r.resources.is_none();
    let named = |patterns: &Option<Vec<String>>, names: &[&str]| match patterns {
        None => any_kind,
        Some(list) => list.iter().any(|p| names.iter().any(|n| glob_matches(p, n))),
    };
    match item {
        Item::Tool { own, exposed, .. } => named(&r.tools, &[own, exposed]),
        Item::AdminTool { name } => named(&r.tools, &[name]),
        Item::Prompt { own, exposed, .. } => named(&r.prompts, &[own, exposed]),
        Item::Resource { uri, .. } => named(&r.resources, &[uri]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str, roles: &[&str], groups: &[&str]) -> Principal {
        Principal::new(
            id,
            roles.iter().map(|r| (*r).to_owned()).collect(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
            "test",
        )
    }

    fn rule(effect: Effect, principals: &[&str], roles: &[&str], providers: &[&str], tools: Option<&[&str]>) -> Rule {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Rule {
            effect,
            principals: list(principals),
            roles: list(roles),
            providers: list(providers),
            tools: tools.map(list),
            prompts: None,
            resources: None,
        }
    }

    const TOOL: Item<'static> = Item::Tool { provider: "github", own: "create_issue", exposed: "gh_create_issue" };
    const ADMIN: Item<'static> = Item::AdminTool { name: "registry_stop" };

    #[test]
    fn roles_grant_by_default_and_only_admin_reaches_the_admin_tools() {
        let policy = Policy::default();
        assert!(policy.decide(&who("u", &["developer"], &[]), &TOOL).allowed);
        assert!(!policy.decide(&who("u", &["developer"], &[]), &ADMIN).allowed);
        assert!(policy.decide(&who("u", &["admin"], &[]), &ADMIN).allowed);
        assert_eq!(policy.decide(&who("u", &[], &[]), &TOOL), Decision::deny("default"));
    }

    #[test]
    fn a_deny_wins_and_star_never_reaches_the_admin_tools() {
        let policy = Policy::new(vec![
            rule(Effect::Allow, &[], &["ops"], &["*"], None),
            rule(Effect::Deny, &["group:contractors"], &[], &["github"], Some(&["create_*"])),
            rule(Effect::Allow, &["service:ci"], &[], &["hangar"], Some(&["registry_reload"])),
        ]);
        let ops = who("user:a", &["ops"], &[]);
        assert_eq!(policy.decide(&ops, &TOOL), Decision::allow("rules[0]"));
        assert!(!policy.decide(&ops, &ADMIN).allowed, "`*` does not name hangar");
        let contractor = who("user:b", &["admin"], &["contractors"]);
        assert_eq!(policy.decide(&contractor, &TOOL), Decision::deny("rules[1]"));
        let ci = who("service:ci", &[], &[]);
        assert!(policy.decide(&ci, &Item::AdminTool { name: "registry_reload" }).allowed);
        assert!(!policy.decide(&ci, &ADMIN).allowed);
    }

    #[test]
    fn kinds_a_rule_does_not_name_are_not_its_business() {
        let policy = Policy::new(vec![rule(Effect::Allow, &[], &["reader"], &["docs"], Some(&["search"]))]);
        let reader = who("u", &["reader"], &[]);
        assert!(
            policy.decide(&reader, &Item::Tool { provider: "docs", own: "search", exposed: "docs_search" }).allowed
        );
        assert!(
            !policy.decide(&reader, &Item::Prompt { provider: "docs", own: "search", exposed: "docs_search" }).allowed
        );
        assert!(!policy.decide(&reader, &Item::Resource { provider: "docs", uri: "file:///a" }).allowed);
    }
}
