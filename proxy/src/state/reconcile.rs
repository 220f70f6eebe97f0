//! The reconciler: the one path by which configuration changes. It reads the desired state (the
//! configuration file and the provider files of discovery sources), validates it as a whole,
//! compares it with what is running, builds runtimes for new and changed providers, and publishes
//! one new snapshot with a single store. Nothing else writes the snapshot.
//!
//! What a reload keeps, replaces and drains:
//! - an **unchanged** provider keeps its runtime: process or container, connections, sessions,
//!   lifecycle state, breaker, list caches, calls in flight;
//! - a provider whose change needs no new instance (description, tool prefix, predefined tools,
//!   intervals) keeps its runtime under the new definition;
//! - a **changed** provider gets a new runtime, an **added** one starts COLD, and the runtimes
//!   of changed and **removed** providers drain: the old snapshot serves the requests that hold
//!   it, and once none does (or `shutdown_timeout_s` passed) the old runtimes are stopped;
//! - groups are rebuilt over their members' runtimes (members are not restarted);
//! - settings that cannot change live (listen address, connection and memory bounds, trace and
//!   audit export) keep their running values and are reported as needing a restart.
//!
//! A candidate that fails validation changes nothing: the last good snapshot keeps serving.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_config::{changed_fields, needs_new_instance, Config, LoadError, Provider, ProviderKind};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::admission::{self, Admission};
use super::{AppState, Snapshot};
use crate::auth::Security;
use crate::discovery::{Discovered, LiveFinds};
use crate::provider::{ProviderRuntime, RuntimeDeps, RuntimeLimits};
use crate::ratelimit::RateLimiter;
use crate::routing::Routes;
use crate::telemetry::now_ms;
use crate::upstream::SessionKey;

/// The notifications a reload that changed providers sends every client.
const LIST_CHANGES: [&str; 3] =
    ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"];

/// What the reconciler reads the desired state from.
pub trait ConfigSource: Send + Sync {
    /// The configuration and the providers its discovery sources define now.
    fn load(&self) -> Result<Desired, LoadError>;
    /// The desired state with `text` (YAML) in place of the configuration file: a candidate to
    /// preview, read as the file would be.
    fn load_text(&self, text: &str) -> Result<Desired, LoadError> {
        let config = hangar_config::parse(text, CANDIDATE_NAME, &hangar_config::process_env)?;
        Ok(Desired { config, discovered: Vec::new() })
    }
    /// The configuration file, when there is one (the embedded default has none).
    fn path(&self) -> Option<&Path>;
}

/// How a candidate configuration given as text is named in messages.
pub const CANDIDATE_NAME: &str = "<candidate configuration>";

/// The desired state, as read.
pub struct Desired {
    /// The configuration file's configuration.
    pub config: Config,
    /// Providers from discovery sources.
    pub discovered: Vec<Discovered>,
}

/// A source that always gives the same configuration (the embedded default, tests).
pub struct FixedSource(pub Config);

impl ConfigSource for FixedSource {
    fn load(&self) -> Result<Desired, LoadError> {
        Ok(Desired { config: self.0.clone(), discovered: Vec::new() })
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The candidate could not be read or is not valid.
    #[error(transparent)]
    Invalid(#[from] LoadError),
}

/// One provider whose definition changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The provider.
    pub name: String,
    /// The fields that changed (`server.limits` when the upstream timeouts or body limit did).
    pub fields: Vec<&'static str>,
    /// Whether it gets a new instance (the old one drains and stops).
    pub restarted: bool,
}

/// What a candidate does to the running configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Providers new in the candidate.
    pub added: Vec<String>,
    /// Providers not in the candidate any more.
    pub removed: Vec<String>,
    /// Providers whose definition changed.
    pub updated: Vec<Change>,
    /// Providers whose definition did not change.
    pub unchanged: Vec<String>,
    /// Settings that changed but take effect only after a restart (they keep their values).
    pub needs_restart: Vec<&'static str>,
    /// Whether settings other than providers changed (and apply live).
    pub settings_changed: bool,
}

impl Plan {
    /// Whether applying the candidate changes anything.
    pub fn changes_anything(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()) || self.settings_changed
    }

    /// The plan as the reload tool and the audit trail show it.
    pub fn to_json(&self) -> Value {
        json!({
            "added": self.added,
            "removed": self.removed,
            "updated": self.updated.iter().map(|c| json!({"name": c.name, "fields": c.fields, "restarted": c.restarted})).collect::<Vec<_>>(),
            "unchanged": self.unchanged,
            "needs_restart": self.needs_restart,
        })
    }
}

/// How a reload ended.
#[derive(Debug, Clone)]
pub struct Report {
    /// What it did.
    pub plan: Plan,
    /// The generation serving now.
    pub generation: u64,
    /// Whether a new snapshot was published.
    pub applied: bool,
    /// Time from reading the files to the new snapshot serving.
    pub duration: Duration,
}

/// The last reload, for health output.
#[derive(Debug, Clone, Default)]
pub struct LastReload {
    /// What triggered it.
    pub trigger: String,
    /// `applied`, `unchanged` or `rejected`.
    pub outcome: &'static str,
    /// Why it was rejected.
    pub error: Option<String>,
    /// When it ended (ms since the epoch).
    pub at_ms: u64,
}

/// What is running: the runtimes by provider name, and what discovery sources found.
struct Running {
    runtimes: HashMap<String, Arc<ProviderRuntime>>,
    /// Providers from discovery sources, by name; an additive source's stay after they disappear.
    discovered: HashMap<String, Discovered>,
}

/// The reconciler. Reloads run one at a time.
pub struct Reconciler {
    deps: RuntimeDeps,
    source: Box<dyn ConfigSource>,
    running: tokio::sync::Mutex<Running>,
    last: Mutex<LastReload>,
    /// Runtimes retired by a reload and not stopped yet (shutdown stops them too).
    draining: Arc<Mutex<Vec<Arc<ProviderRuntime>>>>,
    /// What the discovery sources that run by themselves found last (merged by each reload).
    live: LiveFinds,
    /// Which discovered providers may serve.
    admission: Admission,
}

impl Reconciler {
    /// The reconciler and the first snapshot (generation 1) of `start`, whose runtimes are all
    /// new and COLD.
    pub(super) fn start(start: Start, deps: RuntimeDeps) -> (Self, Snapshot) {
        let Start { config, discovered, source } = start;
        let limits = RuntimeLimits::of(&config.server.limits);
        let runtimes: HashMap<String, Arc<ProviderRuntime>> = config
            .providers
            .iter()
            .map(|p| (p.name.clone(), Arc::new(ProviderRuntime::build(p, limits, &deps))))
            .collect();
        let routes = Arc::new(Routes::build(&config, &runtimes, None, &deps.events, &deps.metrics));
        let security = Arc::new(Security::build(&config, None));
        let virtual_servers = Security::virtual_servers(&config, &HashMap::new());
        let rate_limits = RateLimiter::build(&config, None);
        let snapshot =
            Snapshot { generation: 1, config: Arc::new(config), routes, security, virtual_servers, rate_limits };
        let admission = Admission::default();
        admission.seed(discovered.keys().map(String::as_str));
        let me = Self {
            deps,
            source,
            running: tokio::sync::Mutex::new(Running { runtimes, discovered }),
            last: Mutex::new(LastReload { trigger: "start".into(), outcome: "applied", error: None, at_ms: now_ms() }),
            draining: Arc::default(),
            live: LiveFinds::default(),
            admission,
        };
        (me, snapshot)
    }

    /// The configuration file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.source.path()
    }

    /// The finds of the discovery sources that run by themselves: they record here, then reload.
    pub fn live(&self) -> &LiveFinds {
        &self.live
    }

    /// Which discovered providers may serve (quarantine, approvals).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Runtimes retired by a reload that are still draining.
    pub fn draining(&self) -> Vec<Arc<ProviderRuntime>> {
        self.draining.lock().clone()
    }

    /// The last reload's outcome.
    pub fn last(&self) -> LastReload {
        self.last.lock().clone()
    }

    /// Reads the desired state and applies it. `graceful: false` stops replaced runtimes at once
    /// instead of draining them.
    pub async fn reload(&self, state: &Arc<AppState>, trigger: &str, graceful: bool) -> Result<Report, ReloadError> {
        let started = Instant::now();
        let mut running = self.running.lock().await;
        let result = self.apply(state, &mut running, graceful).await;
        let elapsed = started.elapsed();
        let (outcome, error) = match &result {
            Ok(r) if r.applied => ("applied", None),
            Ok(_) => ("unchanged", None),
            Err(e) => ("rejected", Some(e.to_string())),
        };
        state.metrics.config_reloads.with_label_values(&[outcome]).inc();
        state.metrics.config_reload_duration.with_label_values(&[outcome]).observe(elapsed.as_secs_f64());
        match &result {
            Ok(r) if r.applied => {
                tracing::info!(trigger, generation = r.generation, change = %r.plan.to_json(), "configuration reloaded in {elapsed:?}");
                if crate::discovery::sync(state) {
                    reload_later(state.clone(), "discovery: a source stopped", None);
                }
            }
            Ok(_) => tracing::debug!(trigger, "configuration reloaded: nothing changed"),
            Err(e) => {
                tracing::error!(trigger, "configuration rejected; the running one stays: {e}");
                state.audit.config_rejected(trigger, &e.to_string());
            }
        }
        *self.last.lock() = LastReload { trigger: trigger.to_owned(), outcome, error, at_ms: now_ms() };
        result.map(|mut r| {
            r.duration = elapsed;
            r
        })
    }

    /// What applying the desired state would do, without doing it (the dry run); with `text`,
    /// the desired state with that configuration (YAML) in place of the file's.
    pub async fn preview(&self, state: &AppState, text: Option<&str>) -> Result<(Config, Plan), ReloadError> {
        let desired = match text {
            Some(text) => self.source.load_text(text)?,
            None => self.source.load()?,
        };
        let running = self.running.lock().await;
        let (candidate, _, _) = self.candidate(&running, desired, true)?;
        let current = state.snapshot();
        let mut candidate = candidate;
        let plan = plan(&current.config, &mut candidate);
        Ok((candidate, plan))
    }

    /// The candidate configuration: the file's, with the providers discovery found and admission
    /// lets in (an additive source's earlier finds kept), validated as a whole; and the
    /// newcomers to check before they serve. A `dry` run (the preview) changes nothing.
    fn candidate(
        &self,
        running: &Running,
        mut desired: Desired,
        dry: bool,
    ) -> Result<(Config, HashMap<String, Discovered>, admission::Sorted), LoadError> {
        desired.discovered.extend(self.live.discovered(&desired.config));
        let discovery = &desired.config.discovery;
        let mut found = std::mem::take(&mut desired.discovered);
        // Lowest precedence first, so that the later, stronger find of a name wins in `merge`.
        found.sort_by_key(|d| precedence(discovery.sources.get(d.source).map(|s| &s.kind)));
        let mut sorted = self.admission.sort(found, &discovery.security, discovery.auto_register, dry);
        desired.discovered = std::mem::take(&mut sorted.admitted);
        match merge(self.source.as_ref(), desired, &running.discovered) {
            Ok((config, discovered)) => Ok((config, discovered, sorted)),
            Err(e) => {
                // No check runs for a rejected candidate: its newcomers are checked next time.
                if !dry {
                    self.admission.release(&sorted.to_check);
                }
                Err(e)
            }
        }
    }

    async fn apply(&self, state: &Arc<AppState>, running: &mut Running, graceful: bool) -> Result<Report, ReloadError> {
        let (mut candidate, discovered, admission) = self.candidate(running, self.source.load()?, false)?;
        self.admission.publish(&state.audit, &state.metrics);
        let limits = RuntimeLimits::of(&candidate.server.limits);
        for d in admission.to_check {
            tokio::spawn(admission::check(state.clone(), d, limits, self.deps.clone()));
        }
        if let Some(at) = admission.retry_at {
            reload_later(state.clone(), "discovery: registration rate", Some(at));
        }
        let current = state.snapshot();
        let plan = plan(&current.config, &mut candidate);
        audit_discovery(state, &plan, &running.discovered, &discovered);
        running.discovered = discovered;
        if !plan.changes_anything() {
            return Ok(Report { plan, generation: current.generation, applied: false, duration: Duration::ZERO });
        }
        let mut runtimes = HashMap::with_capacity(candidate.providers.len());
        for p in &candidate.providers {
            let existing = running.runtimes.get(&p.name);
            let change = plan.updated.iter().find(|c| c.name == p.name);
            let runtime = match (existing, change) {
                // Groups are rebuilt over their members; the routing table keeps an unchanged group's pool.
                (Some(_), _) if matches!(p.kind, ProviderKind::Group(_)) => {
                    Arc::new(ProviderRuntime::build(p, limits, &self.deps))
                }
                (Some(old), None) => old.clone(),
                (Some(old), Some(c)) if !c.restarted => Arc::new(old.reconfigured(p)),
                _ => Arc::new(ProviderRuntime::build(p, limits, &self.deps)),
            };
            if existing.is_none_or(|old| old.instance != runtime.instance) && !runtime.is_group() {
                state.metrics.init_provider(&p.name);
            }
            runtimes.insert(p.name.clone(), runtime);
        }
        let retired: Vec<Arc<ProviderRuntime>> = running
            .runtimes
            .values()
            .filter(|old| !old.is_group() && runtimes.get(old.name()).is_none_or(|new| new.instance != old.instance))
            .cloned()
            .collect();
        let routes = Arc::new(Routes::build(
            &candidate,
            &runtimes,
            Some(&current.routes),
            &self.deps.events,
            &self.deps.metrics,
        ));
        let generation = current.generation + 1;
        let providers = candidate.providers.len();
        let security = Arc::new(Security::build(&candidate, Some(&current.security)));
        let virtual_servers = Security::virtual_servers(&candidate, &current.virtual_servers);
        let rate_limits = RateLimiter::build(&candidate, Some(&current.rate_limits));
        let config = Arc::new(candidate);
        let snapshot = Arc::new(Snapshot { generation, config, routes, security, virtual_servers, rate_limits });
        state.snapshot.store(snapshot);
        running.runtimes = runtimes;
        state.metrics.config_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
        state.audit.config_applied(generation, providers, plan.to_json());
        if !(plan.added.is_empty() && plan.removed.is_empty() && plan.updated.is_empty()) {
            // Clients hear of it as of any list change (through the same sink upstreams use).
            for method in LIST_CHANGES {
                self.deps.sink.notification("", &SessionKey::Shared, json!({"jsonrpc": "2.0", "method": method}));
            }
        }
        if !retired.is_empty() {
            let limit = if graceful { current.config.server.limits.shutdown_timeout } else { Duration::ZERO };
            self.draining.lock().extend(retired.iter().cloned());
            tokio::spawn(drain_and_stop(current, retired, limit, self.draining.clone()));
        }
        Ok(Report { plan, generation, applied: true, duration: Duration::ZERO })
    }
}

/// How strongly a source's find of a name wins over another's (the Python MCP Hangar's order,
/// below the configuration file itself): Kubernetes, Docker, provider files, then packages and
/// registries.
fn precedence(kind: Option<&hangar_config::SourceKind>) -> u8 {
    match kind {
        Some(hangar_config::SourceKind::Kubernetes { .. }) => 3,
        Some(hangar_config::SourceKind::Docker { .. }) => 2,
        Some(hangar_config::SourceKind::Filesystem { .. }) => 1,
        _ => 0,
    }
}

/// Writes what a reload does to discovered providers to the audit trail (before it is applied:
/// a rejected candidate never gets here).
fn audit_discovery(
    state: &AppState,
    plan: &Plan,
    before: &HashMap<String, Discovered>,
    after: &HashMap<String, Discovered>,
) {
    for (names, action, from) in [(&plan.added, "discovered", after), (&plan.removed, "removed", before)] {
        for name in names {
            if let Some(d) = from.get(name) {
                state.audit.discovery(action, name, Some(d.source), "");
            }
        }
    }
    for change in &plan.updated {
        if let Some(d) = after.get(&change.name) {
            state.audit.discovery("changed", &change.name, Some(d.source), &change.fields.join(", "));
        }
    }
}

/// Reloads in a task of its own, at `at` or now: for what a reload itself sets going (admission
/// checks, the registration rate's wait). The boxed future keeps the reload's type out of the
/// reload's own.
pub fn reload_later(state: Arc<AppState>, trigger: &'static str, at: Option<Instant>) {
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(async move {
        if let Some(at) = at {
            tokio::time::sleep_until(at.into()).await;
        }
        let _ = state.reconciler.reload(&state, trigger, true).await;
    });
    tokio::spawn(task);
}

/// The configuration to start with: the source's, merged and validated as every reload does.
pub struct Start {
    config: Config,
    discovered: HashMap<String, Discovered>,
    source: Box<dyn ConfigSource>,
}

impl Start {
    /// Reads `source` for the first time.
    pub fn load(source: Box<dyn ConfigSource>) -> Result<Self, LoadError> {
        let (config, discovered) = merge(source.as_ref(), source.load()?, &HashMap::new())?;
        Ok(Self { config, discovered, source })
    }

    /// A start on `config` alone, which reloads read again (tests, the embedded default).
    pub fn fixed(config: Config) -> Self {
        Self { config: config.clone(), discovered: HashMap::new(), source: Box::new(FixedSource(config)) }
    }

    /// The configuration to start with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the configuration to start with (command-line overrides).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// The file's configuration with the providers discovery found (an additive source's earlier
/// finds in `known` kept), validated as a whole; and the finds to remember.
fn merge(
    source: &dyn ConfigSource,
    desired: Desired,
    known: &HashMap<String, Discovered>,
) -> Result<(Config, HashMap<String, Discovered>), LoadError> {
    let mut discovered: HashMap<String, Discovered> = known
        .iter()
        .filter(|(_, d)| d.mode == hangar_config::DiscoveryMode::Additive)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Finds come weakest first (see `precedence`), so the stronger source wins a name; the loser
    // is reported.
    let mut found_now: HashMap<String, usize> = HashMap::new();
    for d in desired.discovered {
        if let Some(earlier) = found_now.insert(d.provider.name.clone(), d.source) {
            tracing::warn!(
                provider = %d.provider.name,
                "discovery: sources {earlier} and {} both define this provider; the second wins",
                d.source
            );
        }
        discovered.insert(d.provider.name.clone(), d);
    }
    let mut providers: Vec<Provider> = discovered.values().map(|d| d.provider.clone()).collect();
    providers.sort_by(|a, b| (a.source.as_deref(), &a.name).cmp(&(b.source.as_deref(), &b.name)));
    let source_name = source.path().map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
    let config = hangar_config::with_discovered(desired.config, providers, &source_name)?;
    Ok((config, discovered))
}

/// Stops the runtimes a reload replaced or removed, once no request holds the snapshot that
/// refers to them (or after `limit`). Until then, requests already in flight finish on them.
async fn drain_and_stop(
    old: Arc<Snapshot>,
    retired: Vec<Arc<ProviderRuntime>>,
    limit: Duration,
    draining: Arc<Mutex<Vec<Arc<ProviderRuntime>>>>,
) {
    let deadline = tokio::time::Instant::now() + limit;
    // This task holds one reference to each; the old snapshot holds the other to its routes.
    while (Arc::strong_count(&old) > 1 || Arc::strong_count(&old.routes) > 1) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(old);
    for r in &retired {
        r.lifecycle.retire();
    }
    let stops = retired
        .iter()
        .filter_map(|r| r.upstream())
        .map(|u| async move { u.stop(crate::lifecycle::Cause::Stopped).await });
    futures_util::future::join_all(stops).await;
    draining.lock().retain(|d| !retired.iter().any(|r| Arc::ptr_eq(r, d)));
    for r in &retired {
        tracing::info!(provider = r.name(), instance = r.instance, "retired provider instance stopped");
    }
}

/// Compares the running configuration with a candidate, provider by provider and field by field.
/// Settings that cannot change live are set back to their running values in the candidate and
/// listed.
pub fn plan(current: &Config, candidate: &mut Config) -> Plan {
    let mut plan = Plan { needs_restart: keep_restart_only(current, candidate), ..Plan::default() };
    let limits_changed = RuntimeLimits::of(&current.server.limits) != RuntimeLimits::of(&candidate.server.limits);
    for p in &candidate.providers {
        let Some(old) = current.provider(&p.name) else {
            plan.added.push(p.name.clone());
            continue;
        };
        let mut fields = changed_fields(old, p);
        let concrete = !matches!(p.kind, ProviderKind::Group(_));
        if limits_changed && concrete {
            fields.push("server.limits");
        }
        if fields.is_empty() {
            plan.unchanged.push(p.name.clone());
        } else {
            let restarted = concrete && (needs_new_instance(&fields) || fields.contains(&"server.limits"));
            plan.updated.push(Change { name: p.name.clone(), fields, restarted });
        }
    }
    plan.removed =
        current.providers.iter().filter(|p| candidate.provider(&p.name).is_none()).map(|p| p.name.clone()).collect();
    plan.settings_changed = current.server != candidate.server
        || current.observability != candidate.observability
        || current.config_reload != candidate.config_reload
        || current.discovery != candidate.discovery
        || current.auth != candidate.auth
        || current.rate_limits != candidate.rate_limits
        || current.virtual_servers != candidate.virtual_servers;
    plan
}

/// Sets the settings that cannot change while running back to their running values; returns the
/// names of those that differed.
fn keep_restart_only(current: &Config, candidate: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if current.$($field)+ != candidate.$($field)+ {
                changed.push($name);
                candidate.$($field)+ = current.$($field)+.clone();
            }
        };
    }
    keep!("server.host", server.host);
    keep!("server.port", server.port);
    keep!("server.tls", server.tls);
    keep!("server.limits.max_connections", server.limits.max_connections);
    keep!("server.limits.max_buffered_bytes", server.limits.max_buffered_bytes);
    keep!("server.limits.max_sessions", server.limits.max_sessions);
    keep!("server.limits.max_sessions_per_client", server.limits.max_sessions_per_client);
    keep!("server.limits.max_requests_per_session", server.limits.max_requests_per_session);
    keep!("server.limits.max_legacy_requests", server.limits.max_legacy_requests);
    keep!("observability.tracing", observability.tracing);
    keep!("observability.langfuse", observability.langfuse);
    keep!("observability.audit", observability.audit);
    changed
}

#[cfg(test)]
mod tests;
