//! The reconciler against configurations that change under it: what keeps its runtime, what gets
//! a new one, what drains and stops, and that a bad candidate changes nothing.

use std::sync::Arc;

use super::*;

/// A source whose text the test edits, as an operator edits a file.
struct Edited(Mutex<String>);

impl ConfigSource for Edited {
    fn load(&self) -> Result<Desired, LoadError> {
        let config = hangar_config::parse(&self.0.lock(), "edited.yaml", &|_| None)?;
        Ok(Desired { config, discovered: Vec::new() })
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}

const BASE: &str = r#"
server: {port: 8000}
providers:
  keep: {mode: remote, endpoint: "http://127.0.0.1:1/mcp"}
  change: {mode: remote, endpoint: "http://127.0.0.1:2/mcp"}
  drop: {mode: remote, endpoint: "http://127.0.0.1:3/mcp"}
  relabel: {mode: remote, endpoint: "http://127.0.0.1:4/mcp"}
  pool: {mode: group, members: [keep, change]}
"#;

fn state_with(text: &str) -> (Arc<AppState>, Arc<Edited>) {
    let edited = Arc::new(Edited(Mutex::new(text.to_owned())));
    struct Shared(Arc<Edited>);
    impl ConfigSource for Shared {
        fn load(&self) -> Result<Desired, LoadError> {
            self.0.load()
        }
        fn path(&self) -> Option<&Path> {
            None
        }
    }
    let start = Start::load(Box::new(Shared(edited.clone()))).expect("valid start");
    let state = AppState::build(start, crate::state::Observability::off(), Arc::new(crate::upstream::Discard));
    (state, edited)
}

fn instance(state: &AppState, name: &str) -> u64 {
    state.snapshot().routes.provider(name).map(|(_, p)| p.instance).expect("provider")
}

#[tokio::test]
async fn a_reload_keeps_what_did_not_change_and_replaces_what_did() {
    let (state, edited) = state_with(BASE);
    let before: Vec<u64> = ["keep", "change", "drop", "relabel"].iter().map(|n| instance(&state, n)).collect();
    let old = state.snapshot();
    *edited.0.lock() = r#"
server: {port: 8000}
providers:
  keep: {mode: remote, endpoint: "http://127.0.0.1:1/mcp"}
  change: {mode: remote, endpoint: "http://127.0.0.1:22/mcp"}
  relabel: {mode: remote, endpoint: "http://127.0.0.1:4/mcp", description: "now described", tool_prefix: "r_"}
  fresh: {mode: remote, endpoint: "http://127.0.0.1:5/mcp"}
  pool: {mode: group, members: [keep, change, fresh]}
"#
    .to_owned();
    let report = state.reconciler.reload(&state, "test", true).await.expect("applied");
    assert!(report.applied);
    assert_eq!(report.generation, 2);
    assert_eq!(report.plan.added, vec!["fresh"]);
    assert_eq!(report.plan.removed, vec!["drop"]);
    let change = |n: &str| report.plan.updated.iter().find(|c| c.name == n).cloned().expect(n);
    assert_eq!(change("change").fields, vec!["endpoint"]);
    assert!(change("change").restarted);
    assert_eq!(change("relabel").fields, vec!["tool_prefix", "description"]);
    assert!(!change("relabel").restarted, "a description and a prefix apply to the running instance");
    assert_eq!(change("pool").fields, vec!["members"]);
    assert_eq!(report.plan.unchanged, vec!["keep"]);

    assert_eq!(instance(&state, "keep"), before[0], "unchanged: same runtime");
    assert_ne!(instance(&state, "change"), before[1], "changed: a new runtime");
    assert_eq!(instance(&state, "relabel"), before[3], "reconfigured in place: same instance");
    assert_eq!(
        state.snapshot().routes.provider("relabel").map(|(_, p)| p.config.tool_prefix.clone()),
        Some("r_".into())
    );
    assert!(state.snapshot().routes.provider("drop").is_none());
    let (pool, _) = state.snapshot().routes.provider("pool").expect("pool");
    assert_eq!(state.snapshot().routes.pool(pool).map(|p| p.members.len()), Some(3), "the group was rebalanced");

    // The old snapshot still serves whoever holds it; its replaced runtimes stop once nobody does.
    let (_, dropped) = old.routes.provider("drop").expect("in the old snapshot");
    let dropped = dropped.clone();
    assert!(!dropped.lifecycle.retired(), "not while a request holds the old snapshot");
    drop(old);
    for _ in 0..100 {
        if dropped.lifecycle.retired() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dropped.lifecycle.retired(), "retired once the old snapshot was let go");
    assert!(state.reconciler.draining().is_empty(), "and stopped");
    assert_eq!(state.metrics.config_generation.get(), 2);
    assert_eq!(state.metrics.config_reloads.with_label_values(&["applied"]).get(), 1);
}

#[tokio::test]
async fn a_bad_candidate_changes_nothing_and_says_why() {
    let (state, edited) = state_with(BASE);
    let keep = instance(&state, "keep");
    for broken in [
        "providers: {keep: {mode: remote, endpoint: \"http://127.0.0.1:1/mcp\"}",
        "providers:\n  keep: {mode: remote, endpoint: \"http://127.0.0.1:1/mcp\", colour: red}\n",
        "",
    ] {
        *edited.0.lock() = broken.to_owned();
        let result = state.reconciler.reload(&state, "test", true).await;
        if broken.is_empty() {
            // An empty file is a valid (empty) configuration: it removes every provider.
            let report = result.expect("empty is valid");
            assert_eq!(report.plan.removed.len(), 5);
            *edited.0.lock() = BASE.to_owned();
            state.reconciler.reload(&state, "test", true).await.expect("back");
            continue;
        }
        let error = result.expect_err("rejected").to_string();
        assert!(error.contains("edited.yaml"), "{error}");
        assert_eq!(state.reconciler.last().outcome, "rejected");
        assert!(state.snapshot().routes.provider("keep").is_some(), "the last good snapshot keeps serving");
    }
    assert_eq!(state.metrics.config_reloads.with_label_values(&["rejected"]).get(), 2);
    assert_ne!(instance(&state, "keep"), keep, "emptied and restored: a new instance");
}

#[tokio::test]
async fn settings_that_need_a_restart_keep_their_running_values() {
    let (state, edited) = state_with(BASE);
    *edited.0.lock() = BASE.replace("port: 8000", "port: 9000");
    let report = state.reconciler.reload(&state, "test", true).await.expect("applied");
    assert_eq!(report.plan.needs_restart, vec!["server.port"]);
    assert!(!report.applied, "nothing else changed");
    assert_eq!(state.snapshot().config.server.port, 8000);
    let again = state.reconciler.reload(&state, "test", true).await.expect("unchanged");
    assert!(!again.applied && again.generation == 1);
}

/// The member group `pool` sends its next call to.
fn next_member(state: &AppState) -> String {
    let snap = state.snapshot();
    let (idx, _) = snap.routes.provider("pool").expect("pool");
    let (member, _) = snap.routes.choose(idx, &[], &[]).expect("a member");
    snap.routes.providers[member].name().to_owned()
}

#[tokio::test]
async fn a_group_keeps_its_rotation_across_reloads_that_leave_it_alone() {
    let (state, edited) = state_with(BASE);
    let first = next_member(&state);
    *edited.0.lock() = BASE.replace("127.0.0.1:3/", "127.0.0.1:33/");
    state.reconciler.reload(&state, "test", true).await.expect("applied");
    let second = next_member(&state);
    assert_ne!(first, second, "round-robin goes on where it was, not from the start");

    // Reordered members: a new pool, whose rotation starts again.
    *edited.0.lock() = BASE.replace("members: [keep, change]", "members: [change, keep]");
    state.reconciler.reload(&state, "test", true).await.expect("applied");
    assert_eq!(next_member(&state), "change", "a new pool starts from its first member");
}

/// A remote provider definition found by a discovery source.
fn found_remote(name: &str, endpoint: &str) -> hangar_config::Provider {
    hangar_config::discovered_remote(Some(name), name, endpoint, false, Path::new("test")).expect("valid")
}

fn endpoint_of(state: &AppState, name: &str) -> Option<String> {
    state.snapshot().config.provider(name).and_then(|p| match &p.kind {
        ProviderKind::Remote(r) => Some(r.endpoint.clone()),
        _ => None,
    })
}

#[tokio::test]
async fn two_sources_finding_one_name_follow_the_precedence_and_the_file_wins_over_both() {
    // Kubernetes is listed after Docker in one file and before it in the other: it wins either way.
    for sources in ["[{type: docker}, {type: kubernetes}]", "[{type: kubernetes}, {type: docker}]"] {
        let (state, _) = state_with(&format!(
            "providers:\n  fixed: {{mode: remote, endpoint: \"http://10.0.0.9/mcp\"}}\ndiscovery:\n  enabled: true\n  \
             security: {{require_health_check: false, quarantine_on_failure: false}}\n  sources: {sources}\n"
        ));
        let (docker, kubernetes) = if sources.starts_with("[{type: docker") { (0, 1) } else { (1, 0) };
        let live = state.reconciler.live();
        let mode = hangar_config::DiscoveryMode::Authoritative;
        let docker_finds =
            vec![found_remote("web", "http://10.0.0.1/mcp"), found_remote("fixed", "http://10.0.0.3/mcp")];
        live.found(docker, "docker", mode, docker_finds, Vec::new());
        live.found(kubernetes, "kubernetes", mode, vec![found_remote("web", "http://10.0.0.2/mcp")], Vec::new());
        state.reconciler.reload(&state, "test", true).await.expect("applied");
        assert_eq!(endpoint_of(&state, "web").as_deref(), Some("http://10.0.0.2/mcp"), "{sources}");
        assert_eq!(endpoint_of(&state, "fixed").as_deref(), Some("http://10.0.0.9/mcp"), "the file's own");
        let problems = live.report(docker).map(|r| r.problems).unwrap_or_default();
        assert!(problems.iter().any(|p| p.contains("\"fixed\" is defined in the configuration file")), "{problems:?}");
    }
}
