//! A provider's circuit breaker: `closed → open → half-open → closed` (or back to open).
//!
//! The request path only calls [`Breaker::allow`] and [`Breaker::record`], both lock-free: the
//! state is an atomic, half-open permits an atomic counter, and the error-rate window the last 64
//! outcomes as bits of an atomic word. The timed move from open to half-open happens in the
//! background service ([`Breaker::tick`]).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hangar_config::CircuitBreaker;

/// Outcomes kept for the error rate (bits of one word).
const WINDOW: u32 = 64;

/// Breaker states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Calls flow.
    Closed = 0,
    /// Calls are refused.
    Open = 1,
    /// A bounded number of probe calls flow.
    HalfOpen = 2,
}

impl BreakerState {
    /// The name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A change the breaker made, for the caller to report as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
}

/// One provider's breaker.
pub struct Breaker {
    config: CircuitBreaker,
    state: AtomicU8,
    opened_at_ms: AtomicU64,
    permits: AtomicU32,
    /// Bit i set = the i-th most recent outcome failed.
    failures: AtomicU64,
    /// Outcomes seen, capped at [`WINDOW`].
    seen: AtomicU32,
    born: Instant,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: CircuitBreaker) -> Self {
        Self {
            config,
            state: AtomicU8::new(BreakerState::Closed as u8),
            opened_at_ms: AtomicU64::new(0),
            permits: AtomicU32::new(0),
            failures: AtomicU64::new(0),
            seen: AtomicU32::new(0),
            born: Instant::now(),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Whether a call may go to the provider now (half-open: takes one of the probe permits).
    pub fn allow(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                self.permits.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1)).is_ok()
            }
        }
    }

    /// Whether a call would be allowed, without taking a permit (for selection filters).
    pub fn admits(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => self.permits.load(Ordering::Acquire) > 0,
        }
    }

    /// Records a call's outcome; returns the change it caused, if any.
    pub fn record(&self, ok: bool) -> Option<Change> {
        let bit = u64::from(!ok);
        let _ = self.failures.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some((w << 1) | bit));
        let _ = self.seen.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some((s + 1).min(WINDOW)));
        match (self.state(), ok) {
            // A success while open (an active check) means it is worth probing.
            (BreakerState::Open, true) => self.go(BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, true) => self.go(BreakerState::HalfOpen, BreakerState::Closed),
            (BreakerState::HalfOpen, false) => self.go(BreakerState::HalfOpen, BreakerState::Open),
            (BreakerState::Closed, false) if self.error_rate_exceeded() => {
                self.go(BreakerState::Closed, BreakerState::Open)
            }
            _ => None,
        }
    }

    /// Opens the breaker (the provider crossed its consecutive-failure threshold).
    pub fn trip(&self) -> Option<Change> {
        self.go(BreakerState::Closed, BreakerState::Open)
            .or_else(|| self.go(BreakerState::HalfOpen, BreakerState::Open))
    }

    /// Closes the breaker (a new instance of the provider started).
    pub fn reset(&self) -> Option<Change> {
        self.go(BreakerState::Open, BreakerState::Closed)
            .or_else(|| self.go(BreakerState::HalfOpen, BreakerState::Closed))
    }

    /// Time-driven transitions, called by the background service: open for `open_s` → half-open.
    pub fn tick(&self) -> Option<Change> {
        if self.state() != BreakerState::Open {
            return None;
        }
        let open_for = self.now_ms().saturating_sub(self.opened_at_ms.load(Ordering::Acquire));
        (Duration::from_millis(open_for) >= self.config.open)
            .then(|| self.go(BreakerState::Open, BreakerState::HalfOpen))
            .flatten()
    }

    /// Share of failures among the recent outcomes (0 with too few outcomes to tell).
    pub fn error_rate(&self) -> f64 {
        let seen = self.seen.load(Ordering::Acquire);
        if seen < self.config.min_calls || seen == 0 {
            return 0.0;
        }
        let mask = if seen >= WINDOW { u64::MAX } else { (1u64 << seen) - 1 };
        f64::from((self.failures.load(Ordering::Acquire) & mask).count_ones()) / f64::from(seen)
    }

    fn error_rate_exceeded(&self) -> bool {
        self.error_rate() >= self.config.error_rate
    }

    fn go(&self, from: BreakerState, to: BreakerState) -> Option<Change> {
        self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).ok()?;
        match to {
            BreakerState::Open => self.opened_at_ms.store(self.now_ms(), Ordering::Release),
            BreakerState::HalfOpen => self.permits.store(self.config.half_open_probes, Ordering::Release),
            BreakerState::Closed => {
                self.failures.store(0, Ordering::Release);
                self.seen.store(0, Ordering::Release);
            }
        }
        Some(Change { from, to })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Breaker {
        Breaker::new(CircuitBreaker {
            open: Duration::from_millis(open_ms),
            half_open_probes: 2,
            error_rate: 0.5,
            min_calls: 4,
        })
    }

    #[test]
    fn opens_on_trip_and_probes_after_the_timeout() {
        let b = breaker(0);
        assert!(b.allow());
        assert_eq!(b.trip(), Some(Change { from: BreakerState::Closed, to: BreakerState::Open }));
        assert!(!b.allow(), "open refuses");
        assert_eq!(b.tick().map(|c| c.to), Some(BreakerState::HalfOpen));
        assert!(b.allow() && b.allow(), "two probes");
        assert!(!b.allow(), "and no more");
        assert_eq!(b.record(true).map(|c| c.to), Some(BreakerState::Closed));
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker(0);
        b.trip();
        b.tick();
        assert!(b.allow());
        assert_eq!(b.record(false).map(|c| c.to), Some(BreakerState::Open));
        assert!(!b.admits());
    }

    #[test]
    fn stays_open_until_the_timeout() {
        let b = breaker(60_000);
        b.trip();
        assert_eq!(b.tick(), None);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn error_rate_opens_only_with_enough_calls() {
        let b = breaker(60_000);
        assert_eq!(b.record(false), None, "1 of 1 failed, but below min_calls");
        b.record(true);
        b.record(true);
        assert_eq!(b.record(false).map(|c| c.to), Some(BreakerState::Open), "2 of 4 failed: 50%");
        assert!((b.error_rate() - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn a_success_while_open_moves_to_half_open() {
        let b = breaker(60_000);
        b.trip();
        assert_eq!(b.record(true).map(|c| c.to), Some(BreakerState::HalfOpen));
    }
}
