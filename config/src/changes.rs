//! What differs between two definitions of a provider, field by field, by the names the file
//! uses: the reload report and the dry run say which fields changed, and the gateway restarts a
//! provider only when a field that shapes its running instance did.

use crate::model::{Provider, ProviderKind};

/// Fields whose change needs a new instance of the provider (process, container, connections,
/// lifecycle); the others apply to the running one.
pub const RUNTIME_FIELDS: &[&str] = &[
    "mode",
    "command",
    "env",
    "cwd",
    "image",
    "volumes",
    "network",
    "read_only",
    "memory",
    "cpus",
    "endpoint",
    "headers",
    "transport",
    "ca_file",
    "insecure_skip_verify",
    "forward_client_token",
    "max_consecutive_failures",
    "recovery",
    "circuit_breaker",
];

/// The fields that differ between `old` and `new` (which have the same name), in file order.
/// Secret values count: a changed credential is a changed definition.
pub fn changed_fields(old: &Provider, new: &Provider) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |field: &'static str, differs: bool| {
        if differs {
            out.push(field);
        }
    };
    match (&old.kind, &new.kind) {
        (ProviderKind::Subprocess(a), ProviderKind::Subprocess(b)) => {
            check("command", a.command != b.command);
            check("env", a.env != b.env);
            check("cwd", a.cwd != b.cwd);
        }
        (ProviderKind::Container(a), ProviderKind::Container(b)) => {
            check("image", a.image != b.image);
            check("command", a.command != b.command);
            check("env", a.env != b.env);
            check("volumes", a.volumes != b.volumes);
            check("network", a.network != b.network);
            check("read_only", a.read_only != b.read_only);
            check("memory", a.memory_bytes != b.memory_bytes);
            check("cpus", a.cpus != b.cpus);
        }
        (ProviderKind::Remote(a), ProviderKind::Remote(b)) => {
            check("endpoint", a.endpoint != b.endpoint);
            check("headers", a.headers != b.headers);
            check("transport", a.transport != b.transport);
            check("ca_file", a.ca_file != b.ca_file);
            check("insecure_skip_verify", a.insecure_skip_verify != b.insecure_skip_verify);
            check("forward_client_token", a.forward_client_token != b.forward_client_token);
        }
        (ProviderKind::Group(a), ProviderKind::Group(b)) => {
            check("strategy", a.strategy != b.strategy);
            check("members", a.members != b.members);
            check("hash_key", a.hash_key != b.hash_key);
        }
        _ => check("mode", true),
    }
    check("tool_prefix", old.tool_prefix != new.tool_prefix);
    check("expose", old.expose != new.expose);
    check("description", old.description != new.description);
    check("idle_ttl_s", old.idle_ttl != new.idle_ttl);
    check("warm", old.warm != new.warm);
    check("tools_include", old.tools_include != new.tools_include);
    check("tools_exclude", old.tools_exclude != new.tools_exclude);
    check("rate_limit", old.rate_limit != new.rate_limit);
    check("validate_arguments", old.validate_arguments != new.validate_arguments);
    check("health_check_interval_s", old.health_check_interval != new.health_check_interval);
    check("health_check_timeout_s", old.health_check_timeout != new.health_check_timeout);
    check("call_timeout_s", old.call_timeout != new.call_timeout);
    check("max_consecutive_failures", old.max_consecutive_failures != new.max_consecutive_failures);
    check("tools", old.tools != new.tools);
    check("recovery", old.recovery != new.recovery);
    check("circuit_breaker", old.circuit_breaker != new.circuit_breaker);
    out
}

/// Whether a change of `fields` needs a new instance of the provider.
pub fn needs_new_instance(fields: &[&str]) -> bool {
    fields.iter().any(|f| RUNTIME_FIELDS.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(yaml: &str) -> Provider {
        let text = format!("providers:\n  p:\n{}", yaml.lines().map(|l| format!("    {l}\n")).collect::<String>());
        crate::parse(&text, "t", &|_| None).expect("valid").providers.remove(0)
    }

    #[test]
    fn fields_that_differ_are_named_and_classified() {
        let a = provider("mode: subprocess\ncommand: [a]\nenv: {K: one}\nidle_ttl_s: 5");
        assert!(changed_fields(&a, &a.clone()).is_empty());
        let b = provider("mode: subprocess\ncommand: [a]\nenv: {K: two}\nidle_ttl_s: 6");
        assert_eq!(changed_fields(&a, &b), vec!["env", "idle_ttl_s"], "a changed secret counts");
        assert!(needs_new_instance(&changed_fields(&a, &b)));
        let c = provider("mode: subprocess\ncommand: [a]\nenv: {K: one}\nidle_ttl_s: 5\ndescription: x");
        assert_eq!(changed_fields(&a, &c), vec!["description"]);
        assert!(!needs_new_instance(&changed_fields(&a, &c)), "a description applies in place");
        let d = provider("mode: remote\nendpoint: http://h/mcp");
        assert_eq!(changed_fields(&a, &d)[0], "mode");
        let e = provider("mode: subprocess\ncommand: [a]\nenv: {K: one}\nidle_ttl_s: 5\nwarm: true");
        assert_eq!(changed_fields(&a, &e), vec!["warm"]);
        assert!(!needs_new_instance(&changed_fields(&a, &e)), "turning warm starts the running instance");
    }
}
