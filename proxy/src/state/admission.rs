//! Admission of discovered providers (`discovery.security`, the Python MCP Hangar's rules): which
//! of the providers discovery sources found each reload may serve.
//!
//! - `auto_register: false`: every newcomer is quarantined until `registry_approve`.
//! - `require_health_check` / `quarantine_on_failure`: a new remote provider is checked first, in
//!   the background (answering within [`ADMISSION_WINDOW`], retried with backoff), and serves
//!   once it answered; one that never did is quarantined with the reason (with
//!   `quarantine_on_failure`) or checked again at the next reload. Subprocess and container
//!   providers are admitted unchecked: a check would start them, and they start lazily.
//! - `max_registration_rate`: at most that many newcomers a minute; the others wait for the next
//!   minute (a reload is scheduled for them).
//!
//! Quarantined providers are listed nowhere for clients and never routed to. A provider that
//! leaves its source is forgotten (a returning one is checked again); an approved name stays
//! approved until the gateway restarts.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_config::{DiscoverySecurity, ProviderKind};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::AppState;
use crate::discovery::Discovered;
use crate::lifecycle::Cause;
use crate::provider::{ProviderRuntime, RuntimeDeps, RuntimeLimits};
use crate::telemetry::audit::Audit;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::now_ms;

/// How long a new remote provider has to answer its admission check.
pub const ADMISSION_WINDOW: Duration = Duration::from_secs(10);
/// The window of `max_registration_rate`.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A provider held back until an operator approves it.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// Why.
    pub reason: String,
    /// The discovery source that found it (its index).
    pub source: usize,
    /// Since when (ms since the epoch).
    pub since_ms: u64,
}

/// What admission knows; one per gateway, kept across reloads.
#[derive(Debug, Default)]
pub struct Admission {
    inner: Mutex<Book>,
}

#[derive(Debug, Default, Clone)]
struct Book {
    admitted: HashSet<String>,
    approved: HashSet<String>,
    /// Being checked now.
    checking: HashSet<String>,
    quarantined: BTreeMap<String, Quarantined>,
    /// When the last newcomers were admitted (for `max_registration_rate`).
    registrations: VecDeque<Instant>,
    /// Quarantines not yet written to the audit trail: name, source, reason.
    news: Vec<(String, usize, String)>,
}

/// The outcome of sorting one reload's finds.
pub struct Sorted {
    /// The finds that serve.
    pub admitted: Vec<Discovered>,
    /// New remote providers to check before they serve.
    pub to_check: Vec<Discovered>,
    /// When a newcomer held back by the registration rate may come in, if one was.
    pub retry_at: Option<Instant>,
}

impl Admission {
    /// Trusts the providers found at start (the configuration's own files, read before serving).
    pub fn seed<'a>(&self, names: impl Iterator<Item = &'a str>) {
        self.inner.lock().admitted.extend(names.map(str::to_owned));
    }

    /// Sorts what the sources found into what serves now and what must be checked first. A
    /// `dry` run (the reload preview) changes nothing.
    pub fn sort(&self, found: Vec<Discovered>, rules: &DiscoverySecurity, auto_register: bool, dry: bool) -> Sorted {
        let mut guard = self.inner.lock();
        let mut scratch;
        let book: &mut Book = if dry {
            scratch = guard.clone();
            &mut scratch
        } else {
            &mut guard
        };
        let names: HashSet<&str> = found.iter().map(|d| d.provider.name.as_str()).collect();
        book.admitted.retain(|n| names.contains(n.as_str()));
        book.quarantined.retain(|n, _| names.contains(n.as_str()));
        let cutoff = Instant::now().checked_sub(RATE_WINDOW);
        while book.registrations.front().is_some_and(|t| cutoff.is_some_and(|c| *t < c)) {
            book.registrations.pop_front();
        }
        let mut sorted = Sorted { admitted: Vec::new(), to_check: Vec::new(), retry_at: None };
        let mut groups = Vec::new();
        for d in found {
            let name = d.provider.name.clone();
            if matches!(d.provider.kind, ProviderKind::Group(_)) {
                groups.push(d);
                continue;
            }
            if book.quarantined.contains_key(&name) || book.checking.contains(&name) {
                continue;
            }
            if book.admitted.contains(&name) || book.approved.contains(&name) {
                sorted.admitted.push(d);
            } else if !auto_register {
                let reason = "new provider, and discovery.auto_register is off: approve it with registry_approve";
                book.quarantine(&name, d.source, reason.into());
            } else if needs_check(&d, rules) {
                book.checking.insert(name);
                sorted.to_check.push(d);
            } else if let Some(at) = book.over_rate(rules.max_registration_rate) {
                tracing::info!(provider = %name, "discovery: registration rate reached; admitted within a minute");
                sorted.retry_at = Some(sorted.retry_at.map_or(at, |r| r.min(at)));
            } else {
                book.registrations.push_back(Instant::now());
                book.admitted.insert(name);
                sorted.admitted.push(d);
            }
        }
        // A discovered group keeps the members that serve; one with none left waits for them.
        for mut g in groups {
            if let ProviderKind::Group(group) = &mut g.provider.kind {
                group.members.retain(|m| sorted.admitted.iter().any(|d| d.provider.name == m.provider));
                if !group.members.is_empty() {
                    sorted.admitted.push(g);
                }
            }
        }
        sorted
    }

    /// Records the outcome of a newcomer's check: admitted when it answered (and the registration
    /// rate lets it in), else quarantined or left for the next reload. Returns when a reload is
    /// due for it: now when admitted, when the rate allows when held back by it.
    fn checked(&self, d: &Discovered, outcome: Result<(), String>, rules: &DiscoverySecurity) -> Option<Instant> {
        let mut book = self.inner.lock();
        book.checking.remove(&d.provider.name);
        match outcome {
            Ok(()) => match book.over_rate(rules.max_registration_rate) {
                None => {
                    book.registrations.push_back(Instant::now());
                    book.admitted.insert(d.provider.name.clone());
                    Some(Instant::now())
                }
                // It is checked again then.
                Some(at) => Some(at),
            },
            Err(why) if rules.quarantine_on_failure => {
                book.quarantine(&d.provider.name, d.source, format!("failed its admission check: {why}"));
                None
            }
            Err(why) => {
                tracing::warn!(provider = %d.provider.name, "discovery: admission check failed ({why}); checked again at the next reload");
                None
            }
        }
    }

    /// Forgets that `newcomers` are being checked (their checks will not run).
    pub fn release(&self, newcomers: &[Discovered]) {
        let mut book = self.inner.lock();
        for d in newcomers {
            book.checking.remove(&d.provider.name);
        }
    }

    /// Lets a quarantined provider in; `false` when it is not quarantined.
    pub fn approve(&self, name: &str) -> bool {
        let mut book = self.inner.lock();
        if book.quarantined.remove(name).is_none() {
            return false;
        }
        book.approved.insert(name.to_owned());
        true
    }

    /// The quarantined providers, as `registry_quarantine` shows them.
    pub fn quarantined(&self) -> Vec<Value> {
        let book = self.inner.lock();
        book.quarantined
            .iter()
            .map(|(name, q)| json!({"name": name, "source": q.source, "reason": q.reason, "since_ms": q.since_ms}))
            .collect()
    }

    /// Writes the quarantines made since the last call to the audit trail, and counts them.
    pub fn publish(&self, audit: &Audit, metrics: &Metrics) {
        let (news, held) = {
            let mut book = self.inner.lock();
            (std::mem::take(&mut book.news), book.quarantined.len())
        };
        for (name, source, reason) in news {
            audit.discovery("quarantined", &name, Some(source), &reason);
        }
        metrics.discovery_quarantined.set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Why `name` is quarantined, if it is.
    pub fn quarantine_reason(&self, name: &str) -> Option<String> {
        self.inner.lock().quarantined.get(name).map(|q| q.reason.clone())
    }

    /// How many providers are quarantined.
    pub fn quarantined_count(&self) -> usize {
        self.inner.lock().quarantined.len()
    }
}

impl Book {
    fn quarantine(&mut self, name: &str, source: usize, reason: String) {
        tracing::warn!(provider = name, source, "discovery: quarantined: {reason}");
        self.news.push((name.to_owned(), source, reason.clone()));
        self.quarantined.insert(name.to_owned(), Quarantined { reason, source, since_ms: now_ms() });
    }

    /// When the next registration may happen, if the rate allows none now.
    fn over_rate(&self, per_minute: u32) -> Option<Instant> {
        let full = self.registrations.len() >= usize::try_from(per_minute).unwrap_or(usize::MAX);
        full.then(|| self.registrations.front().map_or_else(Instant::now, |t| *t + RATE_WINDOW))
    }
}

/// Whether a newcomer is checked before it serves: a remote one, when the rules ask for checks.
fn needs_check(d: &Discovered, rules: &DiscoverySecurity) -> bool {
    (rules.require_health_check || rules.quarantine_on_failure) && matches!(d.provider.kind, ProviderKind::Remote(_))
}

/// Checks a newcomer on an instance of its own (dropped after), records the outcome and reloads
/// so it serves, or is reported as quarantined.
pub async fn check(state: Arc<AppState>, d: Discovered, limits: RuntimeLimits, deps: RuntimeDeps) {
    let rules = state.snapshot().config.discovery.security.clone();
    let runtime = ProviderRuntime::build(&d.provider, limits, &deps);
    let outcome = match runtime.upstream() {
        Some(upstream) => {
            let deadline = Instant::now() + ADMISSION_WINDOW;
            let mut wait = Duration::from_millis(100);
            let outcome = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let why = match tokio::time::timeout(left.min(d.provider.health_check_timeout), upstream.check()).await
                {
                    Ok(Ok(())) => break Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {:?}", left.min(d.provider.health_check_timeout)),
                };
                if Instant::now() + wait >= deadline {
                    break Err(why);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            };
            upstream.stop(Cause::Stopped).await;
            outcome
        }
        None => Ok(()),
    };
    runtime.lifecycle.retire();
    let admission = state.reconciler.admission();
    let due = admission.checked(&d, outcome, &rules);
    admission.publish(&state.audit, &state.metrics);
    if let Some(at) = due {
        super::reconcile::reload_later(state, "discovery: admission check", Some(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, mode: &str) -> Discovered {
        let text = match mode {
            "remote" => format!("providers:\n  {name}: {{mode: remote, endpoint: \"http://10.0.0.1:8080/mcp\"}}\n"),
            _ => format!("providers:\n  {name}: {{mode: subprocess, command: [\"true\"]}}\n"),
        };
        let config = hangar_config::parse(&text, "test", &|_| None).expect("valid");
        Discovered {
            source: 0,
            mode: hangar_config::DiscoveryMode::Authoritative,
            provider: config.providers[0].clone(),
        }
    }

    fn names(ds: &[Discovered]) -> Vec<&str> {
        ds.iter().map(|d| d.provider.name.as_str()).collect()
    }

    #[test]
    fn remote_newcomers_are_checked_first_and_others_come_in() {
        let admission = Admission::default();
        let rules = DiscoverySecurity::default();
        let sorted = admission.sort(vec![found("web", "remote"), found("local", "subprocess")], &rules, true, false);
        assert_eq!(names(&sorted.admitted), ["local"]);
        assert_eq!(names(&sorted.to_check), ["web"]);
        // While it is checked, it is not checked twice; released, it is checked again.
        let again = admission.sort(vec![found("web", "remote")], &rules, true, false);
        assert!(again.admitted.is_empty() && again.to_check.is_empty());
        admission.release(&sorted.to_check);
        assert_eq!(names(&admission.sort(vec![found("web", "remote")], &rules, true, false).to_check), ["web"]);
        admission.checked(&found("web", "remote"), Ok(()), &rules);
        assert_eq!(names(&admission.sort(vec![found("web", "remote")], &rules, true, false).admitted), ["web"]);
    }

    #[test]
    fn a_failed_check_quarantines_until_approved() {
        let admission = Admission::default();
        let rules = DiscoverySecurity::default();
        admission.sort(vec![found("web", "remote")], &rules, true, false);
        admission.checked(&found("web", "remote"), Err("connection refused".into()), &rules);
        assert_eq!(admission.quarantined_count(), 1);
        assert!(admission.quarantined()[0]["reason"].as_str().is_some_and(|r| r.contains("connection refused")));
        assert!(admission.sort(vec![found("web", "remote")], &rules, true, false).admitted.is_empty());
        assert!(admission.approve("web") && !admission.approve("web"));
        assert_eq!(names(&admission.sort(vec![found("web", "remote")], &rules, true, false).admitted), ["web"]);
    }

    #[test]
    fn without_auto_register_every_newcomer_waits_for_approval() {
        let admission = Admission::default();
        let sorted = admission.sort(vec![found("local", "subprocess")], &DiscoverySecurity::default(), false, false);
        assert!(sorted.admitted.is_empty() && sorted.to_check.is_empty());
        assert_eq!(admission.quarantined_count(), 1);
        // Gone from its source: forgotten.
        admission.sort(Vec::new(), &DiscoverySecurity::default(), false, false);
        assert_eq!(admission.quarantined_count(), 0);
    }

    #[test]
    fn the_registration_rate_holds_back_the_rest() {
        let admission = Admission::default();
        let rules = DiscoverySecurity { max_registration_rate: 2, ..DiscoverySecurity::default() };
        let all: Vec<Discovered> = ["a", "b", "c"].iter().map(|n| found(n, "subprocess")).collect();
        let sorted = admission.sort(all.clone(), &rules, true, false);
        assert_eq!(names(&sorted.admitted), ["a", "b"]);
        assert!(sorted.retry_at.is_some_and(|t| t > Instant::now() + Duration::from_secs(50)));
        // Those in stay in.
        assert_eq!(names(&admission.sort(all, &rules, true, false).admitted), ["a", "b"]);
    }
}
