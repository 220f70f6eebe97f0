//! Discovery sources: provider definitions from outside the configuration file, for the
//! reconciler to merge and validate with the file's. A source only produces definitions; it never
//! touches the routing table or the running providers.
//!
//! `type: filesystem` (a directory of provider files in the Python MCP Hangar's format) is read by
//! each reload; `docker` (containers), `kubernetes` (pods), `entrypoint` (Python packages) and
//! `registry` (MCP Registry `server.json`) are followed by tasks of their own that keep
//! [`LiveFinds`] current and ask for a reload when it changes.

pub mod docker;
pub mod entrypoint;
pub mod kubernetes;
pub mod labels;
pub mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;

use hangar_config::{
    changed_fields, Config, DiscoveryMode, DiscoverySource, EnvLookup, LoadError, Problem, Provider, SourceKind,
};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// A provider definition and the source that produced it.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The source's index in `discovery.sources`.
    pub source: usize,
    /// The source's mode (an additive source's providers stay when they disappear from it).
    pub mode: DiscoveryMode,
    /// The definition.
    pub provider: Provider,
}

/// Reads every filesystem source of `config` (when discovery is enabled). A file that cannot be
/// read, does not parse or is not a valid provider is an error naming the file; the errors of all
/// files are reported together, and a candidate with any of them is not applied.
pub fn read_filesystem_sources(config: &Config, env: EnvLookup<'_>) -> Result<Vec<Discovered>, LoadError> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    if !config.discovery.enabled {
        return Ok(found);
    }
    for (i, source) in config.discovery.sources.iter().enumerate() {
        let SourceKind::Filesystem { path, pattern, .. } = &source.kind else { continue };
        let files = match hangar_config::provider_files(path, pattern) {
            Ok(files) => files,
            Err(e) => {
                problems.push(Problem { path: format!("discovery.sources[{i}]"), message: e.to_string() });
                continue;
            }
        };
        let cap = config.discovery.security.max_providers_per_source;
        for file in files {
            match hangar_config::read_provider_file(&file, env) {
                Ok(Some(provider)) if found.iter().filter(|d: &&Discovered| d.source == i).count() >= cap => {
                    problems.push(Problem {
                        path: file.display().to_string(),
                        message: format!(
                            "provider {:?} is over the source's limit of {cap} (discovery.security.max_providers_per_source)",
                            provider.name
                        ),
                    });
                }
                Ok(Some(provider)) => found.push(Discovered { source: i, mode: source.mode, provider }),
                Ok(None) => {}
                Err(e) => problems.push(Problem { path: String::new(), message: e.to_string() }),
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(LoadError::Invalid { source_name: "discovery sources".into(), problems })
    }
}

/// The directories of filesystem sources that ask to be watched.
pub fn watched_dirs(config: &Config) -> Vec<PathBuf> {
    if !config.discovery.enabled {
        return Vec::new();
    }
    config
        .discovery
        .sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::Filesystem { path, watch: true, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Runs the tasks of the sources that run by themselves (Docker, Kubernetes, entry points,
/// registries) as the running configuration names them: starts those it names and no task
/// follows, stops those it no longer names or names differently (their finds are forgotten).
/// Called at start and after every applied reload, so a source added, changed or removed by a
/// reload takes effect without a restart. Returns whether a stopped source had providers (a
/// reload is then due to drop them).
pub fn sync(state: &std::sync::Arc<crate::state::AppState>) -> bool {
    let snap = state.snapshot();
    let discovery = &snap.config.discovery;
    let wanted = |index: usize| -> Option<&DiscoverySource> {
        let source = discovery.sources.get(index).filter(|_| discovery.enabled)?;
        (!matches!(source.kind, SourceKind::Filesystem { .. })).then_some(source)
    };
    let live = state.reconciler.live();
    let mut tasks = live.tasks.lock();
    let mut dropped = false;
    tasks.retain(|index, (running, task)| {
        if wanted(*index) == Some(&*running) {
            return true;
        }
        task.abort();
        dropped |= live.remove(*index);
        tracing::info!(source = index, kind = running.kind.type_name(), "discovery source stopped");
        false
    });
    for (index, source) in discovery.sources.iter().enumerate() {
        if tasks.contains_key(&index) || wanted(index).is_none() {
            continue;
        }
        let task = match source.kind {
            SourceKind::Docker { .. } => docker::spawn(state, index, source),
            SourceKind::Entrypoint { .. } => entrypoint::spawn(state, index, source),
            SourceKind::Registry { .. } => registry::spawn(state, index, source),
            SourceKind::Kubernetes { .. } => kubernetes::spawn(state, index, source),
            SourceKind::Filesystem { .. } => continue,
        };
        if let Some(task) = task {
            tasks.insert(index, (source.clone(), task));
        }
    }
    dropped
}

/// What one look at a source gave: providers and the problems of what it could not use, or why
/// it could not look.
pub type Look = Result<(Vec<Provider>, Vec<String>), String>;

/// Records a look at source `index` in [`LiveFinds`] and the source's metrics; returns whether
/// its providers changed (a reload is then due).
pub fn record(
    state: &crate::state::AppState,
    index: usize,
    kind: &'static str,
    mode: DiscoveryMode,
    look: Look,
) -> bool {
    let label = format!("{kind}[{index}]");
    let metrics = &state.metrics;
    match look {
        Ok((providers, problems)) => {
            let count = i64::try_from(providers.len()).unwrap_or(i64::MAX);
            metrics.discovery_providers.with_label_values(&[&label]).set(count);
            let now = i64::try_from(crate::telemetry::now_ms() / 1000).unwrap_or(0);
            metrics.discovery_last_sync.with_label_values(&[&label]).set(now);
            state.reconciler.live().found(index, kind, mode, providers, problems)
        }
        Err(why) => {
            metrics.discovery_sync_errors.with_label_values(&[&label]).inc();
            state.reconciler.live().failed(index, kind, mode, why);
            false
        }
    }
}

/// Runs a source that is read whole (entry points, registries): at start and every
/// `refresh_interval_s` until shutdown, reloading when what it defines changed.
pub async fn poll<F, Fut>(
    state: std::sync::Arc<crate::state::AppState>,
    index: usize,
    kind: &'static str,
    mode: DiscoveryMode,
    mut look: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Look>,
{
    let mut shutdown = state.shutdown_signal();
    let mut refresh = state.reconciler.live().refresh_signal();
    loop {
        if record(&state, index, kind, mode, look().await) {
            let _ = state.reconciler.reload(&state, &format!("discovery: {kind}"), true).await;
        }
        let every = state.snapshot().config.discovery.refresh_interval.max(std::time::Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = refresh.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What a source that runs by itself (Docker) found at its last look.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// The source's `type`.
    pub kind: &'static str,
    /// Its mode.
    pub mode: DiscoveryMode,
    /// The valid definitions it found.
    pub providers: Vec<Provider>,
    /// What it found and could not use (a bad label, a name taken), one line each.
    pub problems: Vec<String>,
    /// Why it cannot look now (the engine is unreachable), if so.
    pub error: Option<String>,
    /// When it last looked successfully (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// When it last looked, successfully or not.
    looked_ms: Option<u64>,
}

impl SourceReport {
    /// A source that has not looked yet.
    fn new(kind: &'static str, mode: DiscoveryMode) -> Self {
        Self {
            kind,
            mode,
            providers: Vec::new(),
            problems: Vec::new(),
            error: None,
            last_sync_ms: None,
            looked_ms: None,
        }
    }

    /// The report as `registry_sources` shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "healthy": self.error.is_none() && self.last_sync_ms.is_some(),
            "providers": self.providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            "problems": self.problems,
            "error": self.error,
            "last_sync_ms": self.last_sync_ms,
        })
    }
}

/// The latest finds of the sources that run by themselves, by source index. Each reload merges
/// them with the configuration file's providers, so a find changes the running providers only
/// through the reconciler.
#[derive(Debug)]
pub struct LiveFinds {
    sources: Mutex<BTreeMap<usize, SourceReport>>,
    /// The task following each such source, with the definition it follows.
    tasks: Mutex<BTreeMap<usize, (DiscoverySource, tokio::task::AbortHandle)>>,
    /// Bumped to ask every source to look now (`registry_discover`).
    refresh: tokio::sync::watch::Sender<u64>,
}

impl Default for LiveFinds {
    fn default() -> Self {
        Self { sources: Mutex::default(), tasks: Mutex::default(), refresh: tokio::sync::watch::channel(0).0 }
    }
}

impl LiveFinds {
    /// The providers found by the sources `config` still names (same index, same type).
    /// A name `config` itself defines stays the file's: the find is left out and reported by its
    /// source, never a reason to reject the configuration.
    pub fn discovered(&self, config: &Config) -> Vec<Discovered> {
        if !config.discovery.enabled {
            return Vec::new();
        }
        let mut sources = self.sources.lock();
        let mut out = Vec::new();
        for (i, report) in sources.iter_mut() {
            if config.discovery.sources.get(*i).is_none_or(|s| s.kind.type_name() != report.kind) {
                continue;
            }
            for p in &report.providers {
                if config.provider(&p.name).is_none() {
                    out.push(Discovered { source: *i, mode: report.mode, provider: p.clone() });
                    continue;
                }
                let problem = format!("provider name {:?} is defined in the configuration file, which wins", p.name);
                if !report.problems.contains(&problem) {
                    tracing::warn!(source = i, kind = report.kind, "discovery: {problem}");
                    report.problems.push(problem);
                }
            }
        }
        out
    }

    /// Records what source `index` found; returns whether its providers changed (a reload is
    /// then due). New problems are logged once.
    pub fn found(
        &self,
        index: usize,
        kind: &'static str,
        mode: DiscoveryMode,
        providers: Vec<Provider>,
        problems: Vec<String>,
    ) -> bool {
        let mut sources = self.sources.lock();
        let report = sources.entry(index).or_insert_with(|| SourceReport::new(kind, mode));
        for p in problems.iter().filter(|p| !report.problems.contains(p)) {
            tracing::warn!(source = index, kind, "discovery: {p}");
        }
        let changed = report.providers.len() != providers.len()
            || report
                .providers
                .iter()
                .zip(&providers)
                .any(|(a, b)| a.name != b.name || !changed_fields(a, b).is_empty());
        report.providers = providers;
        report.problems = problems;
        report.error = None;
        report.last_sync_ms = Some(crate::telemetry::now_ms());
        report.looked_ms = report.last_sync_ms;
        changed
    }

    /// Records that source `index` cannot look now, and why.
    pub fn failed(&self, index: usize, kind: &'static str, mode: DiscoveryMode, error: String) {
        let mut sources = self.sources.lock();
        let report = sources.entry(index).or_insert_with(|| SourceReport::new(kind, mode));
        if report.error.as_ref() != Some(&error) {
            tracing::warn!(source = index, kind, "discovery: {error}");
        }
        report.error = Some(error);
        report.looked_ms = Some(crate::telemetry::now_ms());
    }

    fn all_looked_since(&self, asked: u64) -> bool {
        let running: Vec<usize> = self.tasks.lock().keys().copied().collect();
        let sources = self.sources.lock();
        running.iter().all(|i| sources.get(i).and_then(|r| r.looked_ms).is_some_and(|t| t >= asked))
    }

    /// What a source task watches to hear "look now".
    pub fn refresh_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.refresh.subscribe()
    }

    /// Asks every source that runs by itself to look now, and waits (up to `limit`) until each
    /// has looked since; returns whether all did.
    pub async fn look_now(&self, limit: std::time::Duration) -> bool {
        let asked = crate::telemetry::now_ms();
        self.refresh.send_modify(|n| *n += 1);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.all_looked_since(asked) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Forgets source `index` altogether (its task stopped); returns whether it had providers.
    fn remove(&self, index: usize) -> bool {
        self.sources.lock().remove(&index).is_some_and(|r| !r.providers.is_empty())
    }

    /// Forgets source `index`'s providers (an authoritative source whose engine stayed away);
    /// returns whether it had any.
    pub fn forget(&self, index: usize) -> bool {
        self.sources.lock().get_mut(&index).is_some_and(|r| !std::mem::take(&mut r.providers).is_empty())
    }

    /// The report of source `index`, if it ran.
    pub fn report(&self, index: usize) -> Option<SourceReport> {
        self.sources.lock().get(&index).cloned()
    }
}
