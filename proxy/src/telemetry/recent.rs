//! Recent traffic per provider, for the dashboard's sparklines and `registry_status`: calls,
//! failures and latency over the last few minutes, in fixed intervals.
//!
//! Sampled off the request path from the gateway's own counters (`tool_calls_total` and
//! `tool_call_duration_seconds`): a call costs nothing more than the metrics it already updates,
//! and the figures agree with what Prometheus would show.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::core::Collector;
use serde::Serialize;

use crate::telemetry::metrics::Metrics;

/// The length of one interval.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Intervals kept: six minutes.
pub const KEPT: usize = 72;

/// Outcomes that count as failures: the provider could not serve (a tool error is the tool
/// answering, and counted apart).
const FAILURES: &[&str] = &["error", "unavailable", "timeout", "protocol_error"];

/// One interval of one provider's traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// When the interval ended (ms since the Unix epoch).
    pub at_ms: u64,
    /// Calls that ended in it.
    pub calls: u64,
    /// Of which failed (error, unavailable, timeout, protocol error).
    pub errors: u64,
    /// Of which the tool answered with `isError`.
    pub tool_errors: u64,
    /// Mean latency of its calls; `None` without calls.
    pub mean_ms: Option<f64>,
    /// 95th percentile latency (interpolated within histogram buckets); `None` without calls.
    pub p95_ms: Option<f64>,
}

/// Running totals of one provider, as read from the counters.
#[derive(Debug, Clone, Default)]
struct Totals {
    calls: u64,
    errors: u64,
    tool_errors: u64,
    latency_sum: f64,
    latency_count: u64,
    /// Cumulative bucket counts, by upper bound (seconds), in the histogram's order.
    buckets: Vec<(f64, u64)>,
}

#[derive(Default)]
struct Inner {
    last: HashMap<String, Totals>,
    series: HashMap<String, VecDeque<Sample>>,
}

/// The recent traffic of every provider.
#[derive(Default)]
pub struct RecentStats(Mutex<Inner>);

impl RecentStats {
    /// Closes an interval: what each of `providers` did since the last sample. Others' series
    /// are dropped (a provider removed by a reload).
    pub fn sample(&self, metrics: &Metrics, providers: &[&str]) {
        let now = read_totals(metrics);
        let at_ms = crate::telemetry::now_ms();
        let mut inner = self.0.lock();
        inner.series.retain(|name, _| providers.contains(&name.as_str()));
        for name in providers {
            let current = now.get(*name).cloned().unwrap_or_default();
            let before = inner.last.get(*name).cloned().unwrap_or_default();
            let sample = delta(at_ms, &before, &current);
            let series = inner.series.entry((*name).to_owned()).or_default();
            if series.len() >= KEPT {
                series.pop_front();
            }
            series.push_back(sample);
            inner.last.insert((*name).to_owned(), current);
        }
        inner.last.retain(|name, _| providers.contains(&name.as_str()));
    }

    /// One provider's intervals, oldest first.
    pub fn series(&self, provider: &str) -> Vec<Sample> {
        self.0.lock().series.get(provider).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Totals over the intervals kept: calls, errors, tool errors, and the mean latency.
    pub fn summary(&self, provider: &str) -> serde_json::Value {
        let series = self.series(provider);
        let calls: u64 = series.iter().map(|s| s.calls).sum();
        let weighted: f64 = series.iter().filter_map(|s| s.mean_ms.map(|m| m * s.calls as f64)).sum();
        serde_json::json!({
            "window_s": series.len() as u64 * INTERVAL.as_secs(),
            "calls": calls,
            "errors": series.iter().map(|s| s.errors).sum::<u64>(),
            "tool_errors": series.iter().map(|s| s.tool_errors).sum::<u64>(),
            "mean_ms": (calls > 0).then(|| weighted / calls as f64),
        })
    }
}

/// Samples every [`INTERVAL`] until shutdown.
pub async fn run(state: Arc<crate::state::AppState>) {
    let mut shutdown = state.shutdown_signal();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snap = state.snapshot();
        let names: Vec<&str> = snap.routes.providers.iter().map(|p| p.name()).collect();
        state.stats.sample(&state.metrics, &names);
    }
}

/// The totals of every provider the counters know.
fn read_totals(metrics: &Metrics) -> HashMap<String, Totals> {
    let mut totals: HashMap<String, Totals> = HashMap::new();
    for family in metrics.tool_calls.collect() {
        for m in family.get_metric() {
            let (mut provider, mut outcome) = ("", "");
            for l in m.get_label() {
                match l.name() {
                    "provider" => provider = l.value(),
                    "outcome" => outcome = l.value(),
                    _ => {}
                }
            }
            let n = m.get_counter().get_value() as u64;
            let t = totals.entry(provider.to_owned()).or_default();
            t.calls += n;
            if FAILURES.contains(&outcome) {
                t.errors += n;
            } else if outcome == "tool_error" {
                t.tool_errors += n;
            }
        }
    }
    for family in metrics.tool_call_duration.collect() {
        for m in family.get_metric() {
            let Some(provider) = m.get_label().iter().find(|l| l.name() == "provider").map(|l| l.value()) else {
                continue;
            };
            let h = m.get_histogram();
            let t = totals.entry(provider.to_owned()).or_default();
            t.latency_sum += h.get_sample_sum();
            t.latency_count += h.get_sample_count();
            let buckets = h.get_bucket();
            if t.buckets.is_empty() {
                t.buckets = buckets.iter().map(|b| (b.upper_bound(), 0)).collect();
            }
            for (acc, b) in t.buckets.iter_mut().zip(buckets) {
                acc.1 += b.cumulative_count();
            }
        }
    }
    totals
}

/// What happened between two readings.
fn delta(at_ms: u64, before: &Totals, now: &Totals) -> Sample {
    let count = now.latency_count.saturating_sub(before.latency_count);
    let sum = (now.latency_sum - before.latency_sum).max(0.0);
    let mean_ms = (count > 0).then(|| sum / count as f64 * 1000.0);
    let p95_ms = (count > 0).then(|| percentile(before, now, count, 0.95) * 1000.0);
    Sample {
        at_ms,
        calls: now.calls.saturating_sub(before.calls),
        errors: now.errors.saturating_sub(before.errors),
        tool_errors: now.tool_errors.saturating_sub(before.tool_errors),
        mean_ms,
        p95_ms,
    }
}

/// The `q` quantile (seconds) of the observations between two readings, interpolated linearly
/// within the bucket it falls in (as Prometheus's `histogram_quantile` does).
fn percentile(before: &Totals, now: &Totals, count: u64, q: f64) -> f64 {
    let rank = q * count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for (i, (upper, cumulative)) in now.buckets.iter().enumerate() {
        let earlier = before.buckets.get(i).map_or(0, |b| b.1);
        let here = cumulative.saturating_sub(earlier);
        if here as f64 >= rank {
            let in_bucket = here.saturating_sub(below).max(1) as f64;
            return lower + (upper - lower) * ((rank - below as f64) / in_bucket).clamp(0.0, 1.0);
        }
        (lower, below) = (*upper, here);
    }
    // Beyond the last bucket: its bound is the best that can be said.
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_hold_what_happened_in_them() {
        let metrics = Metrics::new();
        let stats = RecentStats::default();
        for _ in 0..9 {
            metrics.tool_call("fx", "echo", "ok", Duration::from_millis(20));
        }
        metrics.tool_call("fx", "echo", "unavailable", Duration::from_millis(2000));
        metrics.tool_call("fx", "fail", "tool_error", Duration::from_millis(3));
        stats.sample(&metrics, &["fx", "quiet"]);
        let first = &stats.series("fx")[0];
        assert_eq!((first.calls, first.errors, first.tool_errors), (11, 1, 1));
        let mean = first.mean_ms.expect("calls have a mean");
        assert!((mean - (9.0 * 20.0 + 2000.0 + 3.0) / 11.0).abs() < 0.01, "{mean}");
        let p95 = first.p95_ms.expect("and a p95");
        assert!(p95 > 25.0 && p95 <= 2500.0, "the slow call is the 95th percentile's bucket: {p95}");
        assert_eq!(stats.series("quiet")[0].calls, 0);

        metrics.tool_call("fx", "echo", "ok", Duration::from_millis(4));
        stats.sample(&metrics, &["fx"]);
        let second = &stats.series("fx")[1];
        assert_eq!(second.calls, 1, "only what came after the first sample");
        let p95 = second.p95_ms.expect("p95");
        assert!(p95 > 2.5 && p95 <= 5.0, "{p95}");
        assert!(stats.series("quiet").is_empty(), "a provider gone from the configuration is dropped");
        assert_eq!(stats.summary("fx")["calls"], 12);
    }
}
