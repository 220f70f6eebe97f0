//! What a configuration change would do, for people to read before it happens (the dry run of
//! `check-config NEW --diff OLD` and of the reload tool): providers added, removed and changed
//! (which fields, restarted or not), groups rebalanced, exposed tool and prompt names that appear
//! or disappear, and legacy sessions that would end.

use std::collections::BTreeSet;

use hangar_config::{Config, ProviderKind};
use serde_json::{json, Value};

use super::reconcile::Plan;

/// What is known of the running gateway beyond its configuration: the tool and prompt names its
/// providers list now, and the groups and members its legacy sessions are pinned to.
pub trait Live {
    /// The provider's own tool names (`prompts: true`: prompt names), when it has listed them.
    fn listed(&self, provider: &str, prompts: bool) -> Option<Vec<String>>;
    /// The legacy sessions pinned to `member`, in any group.
    fn sessions_pinned_to(&self, member: &str) -> usize;
}

/// The exposed tool and prompt names of `config`: each exposed provider's prefix on its listed
/// names (from `live`) or, before it has listed them, its predefined tools.
fn exposed(
    config: &Config,
    live: Option<&dyn Live>,
    listed_from: &dyn Fn(&str) -> bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut tools = BTreeSet::new();
    let mut prompts = BTreeSet::new();
    for p in config.providers.iter().filter(|p| p.expose) {
        let source = if let ProviderKind::Group(g) = &p.kind {
            g.members.first().map(|m| m.provider.as_str())
        } else {
            Some(p.name.as_str())
        };
        let from_live = |prompts: bool| source.filter(|s| listed_from(s)).and_then(|s| live?.listed(s, prompts));
        let own_tools = from_live(false).unwrap_or_else(|| {
            let defined = source.and_then(|s| config.provider(s)).map(|q| q.tools.clone()).unwrap_or_default();
            defined.into_iter().map(|t| t.name).collect()
        });
        tools.extend(own_tools.into_iter().map(|n| format!("{}{n}", p.tool_prefix)));
        prompts.extend(from_live(true).unwrap_or_default().into_iter().map(|n| format!("{}{n}", p.tool_prefix)));
    }
    (tools, prompts)
}

/// The change from `current` to `candidate` (planned as `plan`), described.
pub fn describe(current: &Config, candidate: &Config, plan: &Plan, live: Option<&dyn Live>) -> Value {
    // A restarted or new provider lists again: only predefined tools are known for it.
    let restarted: Vec<&str> = plan.updated.iter().filter(|c| c.restarted).map(|c| c.name.as_str()).collect();
    let (old_tools, old_prompts) = exposed(current, live, &|_| true);
    let (new_tools, new_prompts) =
        exposed(candidate, live, &|p| !restarted.contains(&p) && !plan.added.iter().any(|a| a == p));
    let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| b.difference(a).cloned().collect::<Vec<_>>();
    let rebalanced: Vec<&str> = plan
        .updated
        .iter()
        .filter(|c| c.fields.iter().any(|f| matches!(*f, "members" | "strategy" | "hash_key")))
        .map(|c| c.name.as_str())
        .collect();
    let sessions_ended = live.map(|l| {
        restarted
            .iter()
            .copied()
            .chain(plan.removed.iter().map(String::as_str))
            .map(|m| l.sessions_pinned_to(m))
            .sum::<usize>()
    });
    let mut out = plan.to_json();
    if let Value::Object(o) = &mut out {
        o.insert("groups_rebalanced".into(), json!(rebalanced));
        o.insert("tools_added".into(), json!(diff(&old_tools, &new_tools)));
        o.insert("tools_removed".into(), json!(diff(&new_tools, &old_tools)));
        o.insert("prompts_added".into(), json!(diff(&old_prompts, &new_prompts)));
        o.insert("prompts_removed".into(), json!(diff(&new_prompts, &old_prompts)));
        o.insert("sessions_ended".into(), json!(sessions_ended));
        o.insert(
            "note".into(),
            json!("tool and prompt names of new or restarted providers are their predefined tools; the rest comes from their lists"),
        );
    }
    out
}

/// The description as lines for a terminal.
pub fn to_text(d: &Value) -> String {
    let list = |k: &str| -> Vec<String> {
        d.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut section = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            out.push(format!("{title}: {}", items.join(", ")));
        }
    };
    section("providers added", list("added"));
    section("providers removed", list("removed"));
    let updated: Vec<String> = d
        .get("updated")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    let fields: Vec<&str> = c["fields"]
                        .as_array()
                        .map(|f| f.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let how = if c["restarted"] == true { "restarted" } else { "applied in place" };
                    format!("{} ({}; {how})", c["name"].as_str().unwrap_or_default(), fields.join(", "))
                })
                .collect()
        })
        .unwrap_or_default();
    section("providers changed", updated);
    section("groups rebalanced", list("groups_rebalanced"));
    section("tools added", list("tools_added"));
    section("tools removed", list("tools_removed"));
    section("prompts added", list("prompts_added"));
    section("prompts removed", list("prompts_removed"));
    section("needs a restart", list("needs_restart"));
    if let Some(n) = d.get("sessions_ended").and_then(Value::as_u64) {
        out.push(format!("legacy sessions ended: {n}"));
    }
    if out.is_empty() {
        out.push("no change".to_owned());
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::reconcile::plan;

    fn config(text: &str) -> Config {
        hangar_config::parse(text, "t", &|_| None).expect("valid")
    }

    #[test]
    fn a_dry_run_names_providers_fields_groups_and_tools() {
        let old = config("providers:\n  a: {mode: remote, endpoint: 'http://h:1/mcp', tools: [{name: x}, {name: y}]}\n  b: {mode: remote, endpoint: 'http://h:2/mcp'}\n  g: {mode: group, members: [a]}\n");
        let mut new = config("providers:\n  a: {mode: remote, endpoint: 'http://h:9/mcp', tools: [{name: x}, {name: z}]}\n  c: {mode: remote, endpoint: 'http://h:3/mcp', tools: [{name: w}]}\n  g: {mode: group, members: [a, c]}\n");
        let p = plan(&old, &mut new);
        let d = describe(&old, &new, &p, None);
        assert_eq!(d["added"], json!(["c"]));
        assert_eq!(d["removed"], json!(["b"]));
        assert_eq!(d["groups_rebalanced"], json!(["g"]));
        assert_eq!(d["tools_added"], json!(["a__z", "c__w", "g__z"]));
        assert_eq!(d["tools_removed"], json!(["a__y", "g__y"]));
        assert_eq!(d["sessions_ended"], Value::Null, "unknown without a running gateway");
        let text = to_text(&d);
        assert!(
            text.contains("providers changed: a (endpoint, tools; restarted), g (members; applied in place)"),
            "{text}"
        );
    }
}
