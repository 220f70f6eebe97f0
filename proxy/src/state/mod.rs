//! Gateway-wide state: the configuration snapshot (one `ArcSwap`, replaced whole by the
//! reconciler and by nothing else), the lifecycle phase the health endpoints report, and the
//! in-flight request count shutdown drains.

pub mod admission;
pub mod diff;
pub mod reconcile;
pub mod watcher;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hangar_config::Config;
use tokio::sync::{watch, Notify};

use crate::lifecycle::EventLog;
use crate::memory::MemoryBudget;
use crate::provider::RuntimeDeps;
use crate::routing::Routes;
use crate::telemetry::audit::{Audit, AuditError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::{TraceError, Traces};
use crate::upstream::http::HttpClient;
use crate::upstream::Unsolicited;
use reconcile::{Reconciler, Start};

/// An immutable view of the configuration and everything compiled from it. Requests load it once
/// and use that one view throughout, so a reload never mixes two configurations in one request.
pub struct Snapshot {
    /// Increases by one with every applied configuration.
    pub generation: u64,
    /// The configuration this snapshot was built from.
    pub config: Arc<Config>,
    /// Providers and routes compiled from it.
    pub routes: Arc<Routes>,
    /// Authentication and authorization under it (the default endpoint).
    pub security: Arc<crate::auth::Security>,
    /// Those of its virtual servers, by name.
    pub virtual_servers: std::collections::HashMap<String, Arc<crate::auth::Security>>,
    /// Its rate limits (the buckets carry over reloads that leave the limits alone).
    pub rate_limits: Arc<crate::ratelimit::RateLimiter>,
}

/// Where the gateway is in its life, as the health endpoints report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Configuration loaded, listeners not yet up.
    Starting = 0,
    /// Serving.
    Ready = 1,
    /// Shutting down: no new connections, in-flight requests finishing.
    Draining = 2,
}

/// Why the gateway's state could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The audit log cannot be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Trace export cannot be set up.
    #[error(transparent)]
    Traces(#[from] TraceError),
}

/// Starts the per-provider series of every provider that is not a group.
fn init_providers(metrics: &Metrics, config: &Config) {
    for p in config.providers.iter().filter(|p| !matches!(p.kind, hangar_config::ProviderKind::Group(_))) {
        metrics.init_provider(&p.name);
    }
}

/// State shared by every request and background task.
pub struct AppState {
    snapshot: ArcSwap<Snapshot>,
    phase: AtomicU8,
    inflight: AtomicUsize,
    streams: Arc<AtomicUsize>,
    idle: Notify,
    shutdown: watch::Sender<bool>,
    /// The metric registry.
    pub metrics: Arc<Metrics>,
    /// The audit trail.
    pub audit: Arc<Audit>,
    /// Trace export.
    pub traces: Traces,
    /// Provider lifecycle events.
    pub events: Arc<EventLog>,
    /// Recent traffic per provider (the dashboard's sparklines).
    pub stats: crate::telemetry::recent::RecentStats,
    /// The upstream HTTP client (one connection pool for all providers).
    pub http: Arc<HttpClient>,
    /// Bytes of bodies held in memory, over all requests.
    pub memory: Arc<MemoryBudget>,
    /// The one writer of the snapshot: reloads.
    pub reconciler: Reconciler,
}

/// The process's telemetry sinks, set up before the state that reports to them.
pub struct Observability {
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    traces: Traces,
}

impl Observability {
    /// The audit trail and trace export as `config` sets them up.
    pub fn open(config: &Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let audit = Arc::new(Audit::open(&config.observability.audit, metrics.clone())?);
        let traces = Traces::start(&config.observability, &metrics)?;
        Ok(Self { metrics, audit, traces })
    }

    /// Metrics only: no audit trail, no trace export (tests).
    pub fn off() -> Self {
        let metrics = Arc::new(Metrics::new());
        let audit = Arc::new(Audit::disabled(metrics.clone()));
        Self { metrics, audit, traces: Traces::off() }
    }
}

impl AppState {
    /// State for `config`, in phase [`Phase::Starting`], snapshot generation 1, without an audit
    /// trail or anyone to hear upstreams' unsolicited messages; reloads read `config` again
    /// (tests; the gateway is built by the MCP server).
    pub fn new(config: Config) -> Arc<Self> {
        Self::build(Start::fixed(config), Observability::off(), Arc::new(crate::upstream::Discard))
    }

    /// State for `start` (whose source reloads read again), reporting to `observability`;
    /// `sink` receives what upstreams send outside calls (the MCP server's fan-out to clients).
    pub fn build(start: Start, observability: Observability, sink: Arc<dyn Unsolicited>) -> Arc<Self> {
        let Observability { metrics, audit, traces } = observability;
        let config = start.config();
        metrics.config_generation.set(1);
        init_providers(&metrics, config);
        audit.config_applied(1, config.providers.len(), serde_json::Value::Null);
        let (shutdown, _) = watch::channel(false);
        let memory = MemoryBudget::new(config.server.limits.max_buffered_bytes, metrics.clone());
        let http = Arc::new(HttpClient::new(memory.clone()));
        let events = Arc::new(EventLog::new(vec![metrics.clone(), audit.clone()]));
        let deps = RuntimeDeps { http: http.clone(), sink, events: events.clone(), metrics: metrics.clone() };
        let (reconciler, first) = Reconciler::start(start, deps);
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(first),
            reconciler,
            phase: AtomicU8::new(Phase::Starting as u8),
            inflight: AtomicUsize::new(0),
            streams: Arc::new(AtomicUsize::new(0)),
            idle: Notify::new(),
            shutdown,
            metrics,
            audit,
            traces,
            events,
            stats: crate::telemetry::recent::RecentStats::default(),
            http,
            memory,
        })
    }

    /// The current snapshot. Load it once per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Moves to `phase`. Entering [`Phase::Draining`] also tells long-lived streams to end.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        if phase == Phase::Draining {
            self.shutdown.send_replace(true);
        }
    }

    /// A receiver that turns `true` when shutdown begins; long-lived streams select on it.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Completes once shutdown has begun, even when it began before `signal` (from
    /// [`Self::shutdown_signal`]) was made: a receiver made after the change counts it as seen,
    /// so waiting for the next change would wait for ever. A stream that subscribes after its
    /// first bytes went out (a listen stream's acknowledgment) needs exactly that.
    pub async fn shutdown_begun(signal: &mut watch::Receiver<bool>) {
        // An error means the state is gone, which ends everything too.
        let _ = signal.wait_for(|stop| *stop).await;
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    /// Reserves one long-lived stream slot, `None` when `max_concurrent_streams` are open.
    pub fn open_stream(&self) -> Option<StreamSlot> {
        let max = self.snapshot.load().config.server.limits.max_concurrent_streams;
        let prev = self.streams.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.streams.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(StreamSlot(self.streams.clone()))
    }

    /// Requests currently in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight or `limit` has passed; returns how many remain.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inflight();
            }
        }
    }
}

/// One open long-lived stream; dropping it frees the slot.
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks one request in flight; dropping it (whatever way the request ends) un-marks it.
pub struct InflightGuard(Arc<AppState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<AppState> {
        AppState::new(hangar_config::parse("", "t", &|_| None).expect("empty config"))
    }

    #[tokio::test]
    async fn drain_waits_for_inflight_requests() {
        let s = state();
        let guard = s.begin_request();
        assert_eq!(s.drain(Duration::from_millis(20)).await, 1, "times out while a request is open");
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.drain(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert_eq!(waiter.await.expect("join"), 0);
    }

    #[tokio::test]
    async fn a_signal_made_after_shutdown_began_still_sees_it() {
        let s = state();
        s.set_phase(Phase::Draining);
        let mut late = s.shutdown_signal();
        let seen = tokio::time::timeout(Duration::from_secs(5), AppState::shutdown_begun(&mut late)).await;
        assert!(seen.is_ok(), "a stream that subscribed after the drain began must still end");
    }

    #[test]
    fn draining_signals_streams() {
        let s = state();
        let rx = s.shutdown_signal();
        assert!(!*rx.borrow());
        s.set_phase(Phase::Draining);
        assert!(*rx.borrow());
        assert_eq!(s.phase(), Phase::Draining);
    }
}
