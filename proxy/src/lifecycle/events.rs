//! Domain events of provider lifecycles: every state change, kept in a bounded log for the admin
//! tools and broadcast to whoever consumes them (metrics, audit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

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
}

/// The gateway's provider event log.
pub struct EventLog {
    next: AtomicU64,
    recent: Mutex<VecDeque<ProviderEvent>>,
    tx: broadcast::Sender<ProviderEvent>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self { next: AtomicU64::new(1), recent: Mutex::new(VecDeque::new()), tx: broadcast::channel(1024).0 }
    }
}

impl EventLog {
    /// Records a transition.
    pub fn emit(&self, provider: &str, from: State, to: State, cause: Cause, detail: &str) {
        self.push(provider, from.as_str(), to.as_str(), cause.as_str(), detail);
    }

    /// Records something that happened without a state change (e.g. recovery gave up).
    pub fn note(&self, provider: &str, state: State, cause: &'static str, detail: &str) {
        self.push(provider, state.as_str(), state.as_str(), cause, detail);
    }

    /// Records a group's routing change (failover to another tier, failback).
    pub fn note_group(&self, group: &str, cause: &'static str, detail: &str) {
        self.push(group, "GROUP", "GROUP", cause, detail);
    }

    fn push(&self, provider: &str, from: &'static str, to: &'static str, cause: &'static str, detail: &str) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let event = ProviderEvent {
            seq: self.next.fetch_add(1, Ordering::Relaxed),
            at_ms,
            provider: provider.to_owned(),
            from,
            to,
            cause,
            detail: detail.to_owned(),
        };
        tracing::info!(provider, from, to, cause, detail, "provider state");
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= KEPT {
                r.pop_front();
            }
            r.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Receives every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ProviderEvent> {
        self.tx.subscribe()
    }

    /// The latest `limit` events, of one provider or all, oldest first.
    pub fn recent(&self, provider: Option<&str>, limit: usize) -> Vec<ProviderEvent> {
        let Ok(r) = self.recent.lock() else { return Vec::new() };
        let mut out: Vec<ProviderEvent> =
            r.iter().rev().filter(|e| provider.is_none_or(|p| e.provider == p)).take(limit).cloned().collect();
        out.reverse();
        out
    }
}
