//! Provider lifecycle: `COLD → INITIALIZING → READY ⇄ DEGRADED → DEAD`.
//!
//! Every change goes through [`Lifecycle::fire`], which only applies transitions of the table in
//! [`next_state`] and emits one [`ProviderEvent`] per change (for logs, metrics, the audit trail
//! and the `registry_*` tools). The request path reads the state (one atomic load) and reports call
//! outcomes; starting, stopping, idle collection and recovery happen elsewhere ([`services`]).

pub mod events;
pub mod health;
pub mod services;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use hangar_config::{CircuitBreaker, Recovery};

use crate::balance::breaker::{Breaker, BreakerState, Change as BreakerChange};

pub use events::{EventLog, ProviderEvent};
pub use health::{HealthCheck, HealthHistory};

/// Where a provider is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Not running (subprocess/container not started; remote not contacted yet).
    Cold = 0,
    /// Starting: process spawned or upstream being probed, handshake under way.
    Initializing = 1,
    /// Serving.
    Ready = 2,
    /// Serving, but calls have been failing.
    Degraded = 3,
    /// Not serving; recovery may bring it back.
    Dead = 4,
}

impl State {
    /// The name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cold => "COLD",
            Self::Initializing => "INITIALIZING",
            Self::Ready => "READY",
            Self::Degraded => "DEGRADED",
            Self::Dead => "DEAD",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Initializing,
            2 => Self::Ready,
            3 => Self::Degraded,
            4 => Self::Dead,
            _ => Self::Cold,
        }
    }
}

/// Why a transition happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A start was requested (first use, recovery attempt, `registry_start`).
    Start,
    /// The start completed.
    Ready,
    /// The start failed.
    StartFailed,
    /// `max_consecutive_failures` calls failed in a row.
    FailureThreshold,
    /// A call or check succeeded again.
    Recovered,
    /// Failures went on while degraded.
    GaveUp,
    /// The process or connection died.
    Crashed,
    /// Stopped on purpose (shutdown, `registry_stop`).
    Stopped,
    /// Stopped for having been idle for `idle_ttl_s`.
    IdleCollected,
}

impl Cause {
    /// The name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Ready => "ready",
            Self::StartFailed => "start_failed",
            Self::FailureThreshold => "failure_threshold",
            Self::Recovered => "recovered",
            Self::GaveUp => "gave_up",
            Self::Crashed => "crashed",
            Self::Stopped => "stopped",
            Self::IdleCollected => "idle_collected",
        }
    }
}

/// The transition table: the state `cause` leads to from `from`, if it is allowed at all.
pub fn next_state(from: State, cause: Cause) -> Option<State> {
    use Cause as C;
    use State as S;
    Some(match (from, cause) {
        (S::Cold | S::Dead, C::Start) => S::Initializing,
        (S::Initializing, C::Ready) => S::Ready,
        (S::Initializing, C::StartFailed) => S::Dead,
        (S::Ready, C::FailureThreshold) => S::Degraded,
        (S::Degraded | S::Dead, C::Recovered) => S::Ready,
        (S::Degraded, C::GaveUp) => S::Dead,
        (S::Initializing | S::Ready | S::Degraded, C::Crashed) => S::Dead,
        (S::Initializing | S::Ready | S::Degraded | S::Dead, C::Stopped) => S::Cold,
        (S::Ready | S::Degraded, C::IdleCollected) => S::Cold,
        _ => return None,
    })
}

/// The state of one provider and what drives it.
pub struct Lifecycle {
    provider: Arc<str>,
    state: AtomicU8,
    /// Serialises transitions so check-and-set is atomic (never held across an await).
    transition: Mutex<()>,
    consecutive_failures: AtomicU32,
    threshold: u32,
    inflight: AtomicUsize,
    born: Instant,
    /// Whether calls' ends are marked in `last_used_ms`: only for a provider that is stopped
    /// when idle (a process). Marking reads the clock, which a remote provider's every call
    /// would pay for a time nothing reads.
    tracks_idle: std::sync::atomic::AtomicBool,
    last_used_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    recovery: Recovery,
    recovery_state: Mutex<RecoveryState>,
    events: Arc<EventLog>,
    /// Set while an idle collection runs, so the service starts only one.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Whether calls may go to the provider now.
    pub breaker: Breaker,
    last_check_ms: AtomicU64,
    /// The latest health checks.
    pub health: HealthHistory,
    /// Which incarnation of the provider is running: a new value, unique in the process, each
    /// time it goes out of service (to DEAD or COLD) and for each new lifecycle, so state held for
    /// a client by an earlier incarnation (a legacy upstream session) is known to be gone, even
    /// when a reload replaced the provider with a new instance.
    generation: AtomicU64,
    /// Set when a reload replaced or removed this instance: it must not start again.
    retired: std::sync::atomic::AtomicBool,
    /// When the start under way began (for the start's duration).
    started_at: Mutex<Option<Instant>>,
}

/// Progress of recovering a DEAD provider.
#[derive(Debug, Clone, Copy, Default)]
struct RecoveryState {
    attempts: u32,
    next_at: Option<Instant>,
    running: bool,
}

/// A new incarnation number, never handed out before in this process.
fn next_incarnation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Lifecycle {
    /// A COLD provider; transitions are reported to `events`.
    pub fn new(
        provider: &str,
        threshold: u32,
        recovery: Recovery,
        breaker: CircuitBreaker,
        events: Arc<EventLog>,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider: provider.into(),
            state: AtomicU8::new(State::Cold as u8),
            transition: Mutex::new(()),
            consecutive_failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            inflight: AtomicUsize::new(0),
            born: Instant::now(),
            tracks_idle: std::sync::atomic::AtomicBool::new(false),
            last_used_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
            recovery,
            recovery_state: Mutex::new(RecoveryState::default()),
            events,
            stopping: std::sync::atomic::AtomicBool::new(false),
            breaker: Breaker::new(breaker),
            last_check_ms: AtomicU64::new(0),
            health: HealthHistory::default(),
            generation: AtomicU64::new(next_incarnation()),
            retired: std::sync::atomic::AtomicBool::new(false),
            started_at: Mutex::new(None),
        })
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Applies `cause` if the table allows it from the current state; returns the new state.
    pub fn fire(&self, cause: Cause, detail: &str) -> Option<State> {
        let _g = self.transition.lock();
        let from = self.state();
        let to = next_state(from, cause)?;
        self.state.store(to as u8, Ordering::Release);
        if matches!(to, State::Dead | State::Cold) {
            self.generation.store(next_incarnation(), Ordering::Release);
        }
        match cause {
            Cause::Crashed | Cause::StartFailed | Cause::GaveUp => {
                {
                    let mut e = self.last_error.lock();
                    *e = Some(detail.to_owned());
                }
                self.schedule_recovery();
            }
            Cause::Ready | Cause::Recovered => {
                self.consecutive_failures.store(0, Ordering::Release);
                {
                    let mut r = self.recovery_state.lock();
                    *r = RecoveryState::default();
                }
            }
            Cause::Stopped => {
                let mut r = self.recovery_state.lock();
                *r = RecoveryState::default();
            }
            _ => {}
        }
        let duration = match cause {
            Cause::Start => {
                {
                    let mut s = self.started_at.lock();
                    *s = Some(Instant::now());
                }
                None
            }
            Cause::Ready | Cause::StartFailed => self.started_at.lock().take().map(|t| t.elapsed()),
            _ => None,
        };
        self.events.emit(&self.provider, from, to, cause, detail, duration);
        if cause == Cause::Ready {
            // A new instance: the old one's failures say nothing about it.
            let reset = self.breaker.reset();
            self.note_breaker(reset);
        }
        Some(to)
    }

    /// See the `generation` field.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks the instance as replaced or removed by a reload: it is never started again (calls
    /// that still reach it are refused before anything is sent).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether a reload retired the instance.
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Counts a call in flight (for idle collection) until the guard is dropped, which marks
    /// the time. Its start needs no mark (and no clock read): a call in flight keeps the
    /// instance from being collected, so idle time counts from the last call's end.
    pub fn begin_call(self: &Arc<Self>) -> CallGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// Marks the end of each call from now on, for [`Self::idle_for`].
    pub fn track_idle(&self) {
        self.tracks_idle.store(true, Ordering::Relaxed);
    }

    fn touch(&self) {
        if !self.tracks_idle.load(Ordering::Relaxed) {
            return;
        }
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used_ms.store(ms, Ordering::Release);
    }

    /// Calls in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Time since the last call ended (or the instance was made), for a lifecycle that
    /// [tracks idle time](Self::track_idle). Read it before
    /// [`Self::inflight`]: a call that begins between the two reads is then seen in flight
    /// (the acquiring load keeps the later read after it).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Acquire));
        self.born.elapsed().saturating_sub(last)
    }

    /// Records the outcome of a call or check. Only transport-level failures count; a JSON-RPC
    /// error from the provider is a healthy provider saying no.
    pub fn record(&self, failure: Option<&str>) {
        let change = self.breaker.record(failure.is_none());
        self.note_breaker(change);
        match failure {
            None => {
                self.consecutive_failures.store(0, Ordering::Release);
                if matches!(self.state(), State::Degraded | State::Dead) {
                    self.fire(Cause::Recovered, "a call succeeded");
                }
            }
            Some(reason) => {
                let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                {
                    let mut e = self.last_error.lock();
                    *e = Some(reason.to_owned());
                }
                let opened = change.is_some_and(|c| c.to == BreakerState::Open);
                if (n >= self.threshold || opened) && self.state() == State::Ready {
                    let why = if opened && n < self.threshold {
                        format!("error rate {:.0}%; last: {reason}", self.breaker.error_rate() * 100.0)
                    } else {
                        format!("{n} consecutive failures; last: {reason}")
                    };
                    self.fire(Cause::FailureThreshold, &why);
                    let tripped = self.breaker.trip();
                    self.note_breaker(tripped);
                } else if n >= self.threshold * 2 && self.state() == State::Degraded {
                    self.fire(Cause::GaveUp, &format!("{n} consecutive failures; last: {reason}"));
                }
            }
        }
    }

    /// Reports a breaker change as an event.
    pub fn note_breaker(&self, change: Option<BreakerChange>) {
        if let Some(c) = change {
            let cause = match c.to {
                BreakerState::Open => "breaker_open",
                BreakerState::HalfOpen => "breaker_half_open",
                BreakerState::Closed => "breaker_closed",
            };
            self.events.note(
                &self.provider,
                self.state(),
                cause,
                &format!("circuit {} -> {}", c.from.as_str(), c.to.as_str()),
            );
        }
    }

    /// Whether selection may consider the provider: not DEAD, breaker letting calls through.
    pub fn admits(&self) -> bool {
        self.state() != State::Dead && self.breaker.admits()
    }

    /// Whether an active health check is due (`interval` since the last one); marks it started.
    pub fn check_due(&self, interval: Duration) -> bool {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_check_ms.load(Ordering::Acquire);
        let due = last == 0 || Duration::from_millis(now.saturating_sub(last)) >= interval;
        due && self.last_check_ms.compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Consecutive failed calls.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Acquire)
    }

    /// The last failure, for error messages and the admin tools.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn schedule_recovery(&self) {
        let mut r = self.recovery_state.lock();
        if r.attempts >= self.recovery.max_attempts {
            r.next_at = None;
            return;
        }
        r.next_at = Some(Instant::now() + backoff(self.recovery, r.attempts));
    }

    /// Whether a recovery attempt is due now; marks it running so only one runs at a time.
    pub fn take_due_recovery(&self) -> Option<u32> {
        let mut r = self.recovery_state.lock();
        if self.state() != State::Dead || r.running || r.next_at.is_none_or(|t| t > Instant::now()) {
            return None;
        }
        r.running = true;
        r.attempts += 1;
        Some(r.attempts)
    }

    /// Ends a recovery attempt; a failed one schedules the next (or gives up, with an event).
    pub fn finish_recovery(&self, succeeded: bool) {
        let exhausted = {
            let mut r = self.recovery_state.lock();
            r.running = false;
            if succeeded {
                *r = RecoveryState::default();
                return;
            }
            let exhausted = r.attempts >= self.recovery.max_attempts;
            r.next_at = if exhausted { None } else { Some(Instant::now() + backoff(self.recovery, r.attempts)) };
            exhausted
        };
        if exhausted {
            self.events.note(
                &self.provider,
                State::Dead,
                "recovery_exhausted",
                "giving up; start it with registry_start",
            );
        }
    }

    /// Whether a DEAD provider has a recovery attempt pending (calls then fail fast).
    pub fn recovering(&self) -> bool {
        let r = self.recovery_state.lock();
        r.running || r.next_at.is_some()
    }

    /// Recovery attempts made since the provider died, and the configured maximum.
    pub fn recovery_attempts(&self) -> (u32, u32) {
        (self.recovery_state.lock().attempts, self.recovery.max_attempts)
    }
}

/// Delay before recovery attempt `attempts + 1`: exponential, capped, with ±50% jitter so that many
/// providers dying together do not come back in lockstep.
pub fn backoff(r: Recovery, attempts: u32) -> Duration {
    let exp = r.backoff.saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX));
    let base = exp.min(r.max_backoff);
    base.mul_f64(0.5 + rand::random::<f64>())
}

/// One call in flight; ends (and counts as activity) when dropped.
pub struct CallGuard(Arc<Lifecycle>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

#[cfg(test)]
mod tests;
