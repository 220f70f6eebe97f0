//! Domain events of provider lifecycles: every state change, kept in a bounded log for the admin
//! tools and handed to the sinks that consume them (metrics, the audit trail) as it happens.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::{Cause, State};

/// Events kept for the admin tools.
const KEPT: usize = 2000;

/// One state change (or note) of one provider.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProviderEvent {
    /// Increases by one per event, gateway-wide.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Provider name.
    pub provider: String,
    /// State before.
    pub from: &'static str,
    /// State after.
    pub to: &'static str,
    /// What caused it.
    pub cause: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// How long what ended here took (a start, for `ready` and `start_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Something that consumes events as they happen. Called synchronously on the thread that caused
/// the event (events are rare): it must not block.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn event(&self, event: &ProviderEvent);
}

/// The gateway's provider event log.
#[derive(Default)]
pub struct EventLog {
    next: AtomicU64,
    recent: Mutex<VecDeque<ProviderEvent>>,
    sinks: Vec<Arc<dyn EventSink>>,
}

impl EventLog {
    /// A log that also hands every event to `sinks`.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Self {
        Self { sinks, ..Self::default() }
    }

    /// Records a transition; `duration` is how long the step it ends took, if it ends one.
    pub fn emit(&self, provider: &str, from: State, to: State, cause: Cause, detail: &str, duration: Option<Duration>) {
        self.push(provider, from.as_str(), to.as_str(), cause.as_str(), detail, duration);
    }

    /// Records something that happened without a state change (e.g. recovery gave up).
    pub fn note(&self, provider: &str, state: State, cause: &'static str, detail: &str) {
        self.push(provider, state.as_str(), state.as_str(), cause, detail, None);
    }

    /// Records a group's routing change (failover to another tier, failback).
    pub fn note_group(&self, group: &str, cause: &'static str, detail: &str) {
        self.push(group, "GROUP", "GROUP", cause, detail, None);
    }

    fn push(
        &self,
        provider: &str,
        from: &'static str,
        to: &'static str,
        cause: &'static str,
        detail: &str,
        duration: Option<Duration>,
    ) {
        let at_ms = crate::telemetry::now_ms();
        tracing::info!(provider, from, to, cause, detail, "provider state");
        // One event at a time, so every sink sees them in `seq` order.
        let mut recent = self.recent.lock();
        let event = ProviderEvent {
            seq: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            at_ms,
            provider: provider.to_owned(),
            from,
            to,
            cause,
            detail: detail.to_owned(),
            duration_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        for sink in &self.sinks {
            sink.event(&event);
        }
        if recent.len() >= KEPT {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The latest `limit` events, of one provider or all, oldest first.
    pub fn recent(&self, provider: Option<&str>, limit: usize) -> Vec<ProviderEvent> {
        let r = self.recent.lock();
        let mut out: Vec<ProviderEvent> =
            r.iter().rev().filter(|e| provider.is_none_or(|p| e.provider == p)).take(limit).cloned().collect();
        out.reverse();
        out
    }
}
