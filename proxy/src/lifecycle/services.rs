//! The lifecycle's background service: the start of warm providers, recovery attempts for DEAD
//! providers (with the backoff the state machine schedules), active health checks,
//! circuit-breaker timeouts, idle collection of running processes, forgetting quiet callers'
//! rate-limit buckets and closing upstream connections idle too long. It runs off the request
//! path, acts through the upstreams (which report their own transitions) and stops at shutdown.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Cause, State};
use crate::routing::{Backend, ProviderRuntime};
use crate::state::AppState;
use crate::upstream::Upstream;

/// How often the service looks at the providers (recovery delays are not rounded up by more).
const TICK: Duration = Duration::from_millis(200);
/// Rate-limit buckets of quiet callers are forgotten, and expired idle upstream connections
/// closed, once a minute.
const SWEEP_EVERY_TICKS: u64 = 300;

/// Runs until shutdown.
pub async fn run(state: Arc<AppState>) {
    let mut shutdown = state.shutdown_signal();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Instances of warm providers started once already: one stopped by hand stays stopped.
    let mut warmed: HashSet<u64> = HashSet::new();
    let mut sweeps: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snap = state.snapshot();
        sweeps += 1;
        if sweeps.is_multiple_of(SWEEP_EVERY_TICKS) {
            snap.rate_limits.sweep();
            state.http.close_expired();
        }
        warmed.retain(|id| snap.routes.providers.iter().any(|p| p.instance == *id));
        for p in &snap.routes.providers {
            let Some(upstream) = concrete(p) else { continue };
            if p.config.warm && warmed.insert(p.instance) && p.lifecycle.state() == State::Cold {
                tokio::spawn(warm_up(p.clone(), upstream.clone()));
            }
            let tripped = p.lifecycle.breaker.tick();
            p.lifecycle.note_breaker(tripped);
            if let Some(attempt) = p.lifecycle.take_due_recovery() {
                let (p, upstream, state) = (p.clone(), upstream.clone(), state.clone());
                tokio::spawn(async move {
                    let (_, max) = p.lifecycle.recovery_attempts();
                    tracing::info!(provider = p.name(), attempt, max, "recovery attempt");
                    let ok = health_check(&state, &p, upstream.as_ref()).await;
                    p.lifecycle.finish_recovery(ok);
                });
            } else if check_wanted(p) && p.lifecycle.check_due(p.config.health_check_interval) {
                let (p, upstream, state) = (p.clone(), upstream.clone(), state.clone());
                tokio::spawn(async move { health_check(&state, &p, upstream.as_ref()).await });
            }
            if idle_collectable(p) && !p.lifecycle.stopping.swap(true, Ordering::AcqRel) {
                let (p, upstream) = (p.clone(), upstream.clone());
                tokio::spawn(async move {
                    upstream.stop(Cause::IdleCollected).await;
                    p.lifecycle.stopping.store(false, Ordering::Release);
                });
            }
        }
    }
}

/// Starts a warm provider as its first call would (bounded as that start is, not by the health
/// check timeout: warm providers are those slow to start).
async fn warm_up(p: Arc<ProviderRuntime>, upstream: Arc<dyn Upstream>) {
    tracing::info!(provider = p.name(), "starting a warm provider");
    let started = upstream.check().await;
    if let Err(e) = &started {
        tracing::warn!(provider = p.name(), "the warm provider did not start: {e}");
    }
    p.lifecycle.record(started.as_ref().err().map(ToString::to_string).as_deref());
}

/// Checks a provider within its `health_check_timeout_s` and records the outcome (which moves
/// its state and breaker); returns whether it passed.
async fn health_check(state: &AppState, p: &ProviderRuntime, upstream: &dyn Upstream) -> bool {
    let timeout = p.config.health_check_timeout;
    let started = std::time::Instant::now();
    let failure = match tokio::time::timeout(timeout, upstream.check()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("health check failed: {e}")),
        Err(_) => Some(format!("health check timed out after {timeout:?}")),
    };
    if let Some(why) = &failure {
        tracing::debug!(provider = p.name(), "{why}");
    }
    let elapsed = started.elapsed();
    state.metrics.health_check(p.name(), failure.is_none(), elapsed);
    p.lifecycle.health.push(failure.is_none(), elapsed, failure.as_deref());
    p.lifecycle.record(failure.as_deref());
    failure.is_none()
}

/// Whether active checks apply now: to a provider in service (never to a COLD one: checking
/// would defeat lazy start; a DEAD one gets recovery attempts instead).
fn check_wanted(p: &ProviderRuntime) -> bool {
    matches!(p.lifecycle.state(), State::Ready | State::Degraded)
}

/// The provider's own upstream (groups have none: their members are providers themselves).
fn concrete(p: &ProviderRuntime) -> Option<Arc<dyn Upstream>> {
    p.upstream()
}

/// A running process with no call in flight for `idle_ttl_s` (warm ones stay up).
fn idle_collectable(p: &ProviderRuntime) -> bool {
    matches!(p.backend, Backend::Process(_))
        && !p.config.warm
        && matches!(p.lifecycle.state(), State::Ready | State::Degraded)
        && p.lifecycle.idle_for() >= p.config.idle_ttl
        && p.lifecycle.inflight() == 0
}
