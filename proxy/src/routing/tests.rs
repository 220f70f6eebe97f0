//! Choosing group members: health and breakers filter, exclusions for retries, fail-fast reasons
//! and failover/failback events. Members are remotes that are never contacted.

use std::sync::Arc;

use super::*;
use crate::lifecycle::{Cause, EventLog};

fn routes(strategy: &str) -> (Routes, Arc<EventLog>) {
    let yaml = format!(
        r#"
providers:
  a: {{mode: remote, endpoint: "http://127.0.0.1:1/mcp", expose: false, max_consecutive_failures: 1}}
  b: {{mode: remote, endpoint: "http://127.0.0.1:2/mcp", expose: false, max_consecutive_failures: 1}}
  c: {{mode: remote, endpoint: "http://127.0.0.1:3/mcp", expose: false, max_consecutive_failures: 1}}
  pool:
    mode: group
    strategy: {strategy}
    members: [{{provider: a, priority: 0}}, {{provider: b, priority: 1}}, {{provider: c, priority: 1}}]
"#
    );
    let config = hangar_config::parse(&yaml, "test.yaml", &|_| None).expect("valid config");
    let events = Arc::new(EventLog::default());
    let deps = crate::provider::RuntimeDeps {
        http: Arc::default(),
        sink: Arc::new(crate::upstream::Discard),
        events: events.clone(),
        metrics: Arc::default(),
    };
    let limits = crate::provider::RuntimeLimits::of(&config.server.limits);
    let runtimes =
        config.providers.iter().map(|p| (p.name.clone(), Arc::new(ProviderRuntime::build(p, limits, &deps)))).collect();
    (Routes::build(&config, &runtimes, None, &events, &Arc::default()), events)
}

fn ready(r: &Routes, name: &str) -> usize {
    let (i, p) = r.provider(name).expect("provider");
    p.lifecycle.fire(Cause::Start, "test");
    p.lifecycle.fire(Cause::Ready, "test");
    i
}

fn chosen(r: &Routes, exclude: &[usize]) -> Result<String, RpcError> {
    let (g, _) = r.provider("pool").expect("group");
    r.choose(g, b"", exclude).map(|(m, _)| r.providers[m].name().to_owned())
}

#[test]
fn priority_fails_over_and_back_with_events() {
    let (r, events) = routes("priority");
    let a = ready(&r, "a");
    ready(&r, "b");
    ready(&r, "c");
    assert_eq!(chosen(&r, &[]).expect("a member"), "a");
    r.providers[a].lifecycle.record(Some("refused"));
    assert!(!r.providers[a].lifecycle.admits(), "one failure opens a's breaker (threshold 1)");
    let spill: Vec<String> = (0..4).map(|_| chosen(&r, &[]).expect("a member")).collect();
    assert!(spill.iter().all(|m| m == "b" || m == "c"), "{spill:?}");
    assert!(spill.contains(&"b".to_owned()) && spill.contains(&"c".to_owned()), "tier 1 shares: {spill:?}");
    // The breaker's probe succeeds: a takes the traffic back.
    r.providers[a].lifecycle.breaker.tick();
    r.providers[a].lifecycle.record(None);
    r.providers[a].lifecycle.record(None);
    assert_eq!(chosen(&r, &[]).expect("a member"), "a");
    let causes: Vec<&str> = events.recent(Some("pool"), 10).iter().map(|e| e.cause).collect();
    assert_eq!(causes, ["failover", "failback"]);
}

#[test]
fn retries_exclude_tried_members_and_fail_fast_with_reasons() {
    let (r, _) = routes("weighted_round_robin");
    let a = ready(&r, "a");
    let b = ready(&r, "b");
    let c = ready(&r, "c");
    assert_eq!(chosen(&r, &[a, b]).expect("c is left"), "c");
    r.providers[c].lifecycle.record(Some("connection refused"));
    let err = chosen(&r, &[a, b]).expect_err("nothing left");
    assert_eq!(err.code, code::PROVIDER_UNAVAILABLE);
    assert!(err.message.contains("group \"pool\" has no available member"), "{}", err.message);
    assert!(err.message.contains("c (provider \"c\" is unavailable: circuit open"), "{}", err.message);
}

#[test]
fn a_dead_member_is_skipped_while_it_recovers() {
    let (r, _) = routes("least_connections");
    let a = ready(&r, "a");
    ready(&r, "b");
    ready(&r, "c");
    r.providers[a].lifecycle.fire(Cause::Crashed, "exited");
    assert!(r.providers[a].lifecycle.recovering());
    for _ in 0..10 {
        assert_ne!(chosen(&r, &[]).expect("a member"), "a");
    }
}

#[test]
fn a_single_provider_fails_fast_while_its_circuit_is_open() {
    let (r, _) = routes("priority");
    let a = ready(&r, "a");
    assert!(r.choose(a, b"", &[]).is_ok());
    r.providers[a].lifecycle.record(Some("refused"));
    let err = r.choose(a, b"", &[]).map(|_| ()).expect_err("circuit open");
    assert!(err.message.contains("circuit open"), "{}", err.message);
}

#[test]
fn round_robin_alternates() {
    let (r, _) = routes("weighted_round_robin");
    for n in ["a", "b", "c"] {
        ready(&r, n);
    }
    let picks: Vec<String> = (0..6).map(|_| chosen(&r, &[]).expect("member")).collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn a_tool_calls_series_is_its_entrys_only_when_the_call_went_to_the_entrys_provider() {
    let (r, _) = routes("priority");
    let (a, b) = (ready(&r, "a"), ready(&r, "b"));
    let mut index = NameIndex::default();
    index.tools.insert("a__echo".to_owned(), index::Listed::new(a, "echo".to_owned()));
    r.index.store(Arc::new(index));
    let entry = r.index.load().tools["a__echo"].series.clone();
    let (label, series) = r.tool_series(a, "a__echo");
    assert_eq!(label, "a__echo");
    assert!(series.is_some_and(|s| Arc::ptr_eq(&s, &entry)), "the entry's series");
    // The index says another provider lists it (it was swapped after the call was routed): the
    // entry's series must not be bound to this provider's label.
    let (label, series) = r.tool_series(b, "a__echo");
    assert_eq!((label, series.is_none()), ("a__echo", true));
    let (label, series) = r.tool_series(b, "nobody__lists");
    assert_eq!(label, crate::telemetry::calls::UNLISTED_TOOL);
    assert!(series.is_some_and(|s| Arc::ptr_eq(&s, &r.providers[b].unlisted)), "b's own 'other' series");
}

#[test]
fn racing_tier_shifts_are_reported_in_the_order_they_happen() {
    let (r, events) = routes("priority");
    let (a, b) = (ready(&r, "a"), ready(&r, "b"));
    ready(&r, "c");
    let (g, _) = r.provider("pool").expect("group");
    let pool = r.pool(g).expect("a group");
    // Calls flapping between the tiers on four threads at once.
    std::thread::scope(|s| {
        for t in 0..4 {
            let r = &r;
            s.spawn(move || {
                for i in 0..500 {
                    r.note_shift(g, pool, if (i + t) % 2 == 0 { a } else { b });
                }
            });
        }
    });
    let causes: Vec<&str> = events.recent(Some("pool"), 100_000).iter().map(|e| e.cause).collect();
    assert!(causes.len() > 1, "{causes:?}");
    assert!(causes.windows(2).all(|w| w[0] != w[1]), "a failover and a failback by turns: {causes:?}");
}
