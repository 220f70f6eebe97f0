//! The latest health checks of one provider (active checks and recovery attempts), for
//! `registry_details`, the admin API and the dashboard: an operator looking at a DEGRADED provider
//! wants to see when it started failing and how slow it was before.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

/// Checks kept per provider.
const KEPT: usize = 50;

/// One health check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthCheck {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took.
    pub duration_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A bounded history of health checks, oldest first.
#[derive(Default)]
pub struct HealthHistory(Mutex<VecDeque<HealthCheck>>);

impl HealthHistory {
    /// Records a check that ended now.
    pub fn push(&self, ok: bool, duration: std::time::Duration, error: Option<&str>) {
        let check = HealthCheck {
            at_ms: crate::telemetry::now_ms(),
            ok,
            duration_ms: duration.as_secs_f64() * 1000.0,
            error: error.map(str::to_owned),
        };
        let mut kept = self.0.lock();
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(check);
    }

    /// The checks kept, oldest first.
    pub fn recent(&self) -> Vec<HealthCheck> {
        self.0.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_checks_in_order() {
        let h = HealthHistory::default();
        for i in 0..(KEPT + 5) {
            h.push(i % 2 == 0, std::time::Duration::from_millis(i as u64), (i % 2 == 1).then_some("down"));
        }
        let kept = h.recent();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].duration_ms, 5.0, "the oldest five went");
        assert!(!kept[0].ok && kept[0].error.as_deref() == Some("down"));
        assert!(kept[KEPT - 1].duration_ms > kept[0].duration_ms);
    }
}
