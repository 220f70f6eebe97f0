//! Unit tests of the state machine: the transition table, failure counting and recovery bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use hangar_config::Recovery;

use super::*;

fn lifecycle(threshold: u32, max_attempts: u32) -> (Arc<Lifecycle>, Arc<EventLog>) {
    let events = Arc::new(EventLog::default());
    let recovery = Recovery { max_attempts, backoff: Duration::ZERO, max_backoff: Duration::ZERO };
    (Lifecycle::new("p", threshold, recovery, hangar_config::CircuitBreaker::default(), events.clone()), events)
}

#[test]
fn table_allows_only_documented_transitions() {
    use Cause as C;
    use State as S;
    let states = [S::Cold, S::Initializing, S::Ready, S::Degraded, S::Dead];
    let causes = [
        C::Start,
        C::Ready,
        C::StartFailed,
        C::FailureThreshold,
        C::Recovered,
        C::GaveUp,
        C::Crashed,
        C::Stopped,
        C::IdleCollected,
    ];
    let allowed: Vec<(S, C, S)> = states
        .iter()
        .flat_map(|s| causes.iter().filter_map(move |c| next_state(*s, *c).map(|t| (*s, *c, t))))
        .collect();
    assert_eq!(allowed.len(), 17, "{allowed:?}");
    assert_eq!(next_state(S::Cold, C::Ready), None, "cannot be ready without starting");
    assert_eq!(next_state(S::Dead, C::IdleCollected), None);
    assert_eq!(next_state(S::Cold, C::Crashed), None);
    assert_eq!(next_state(S::Ready, C::Start), None, "a running provider is not started twice");
}

#[test]
fn start_ready_degrade_recover_die_stop() {
    let (l, events) = lifecycle(2, 3);
    assert_eq!(l.fire(Cause::Start, "first call"), Some(State::Initializing));
    assert_eq!(l.fire(Cause::Ready, "handshake done"), Some(State::Ready));
    l.record(Some("boom"));
    assert_eq!(l.state(), State::Ready, "one failure is below the threshold");
    l.record(Some("boom"));
    assert_eq!(l.state(), State::Degraded);
    assert!(!l.admits(), "the threshold opens the breaker");
    l.record(None);
    assert_eq!(l.state(), State::Ready, "a success recovers");
    for _ in 0..4 {
        l.record(Some("down"));
    }
    assert_eq!(l.state(), State::Dead, "twice the threshold while degraded gives up");
    assert!(l.recovering(), "dying schedules recovery");
    assert_eq!(l.last_error().as_deref(), Some("4 consecutive failures; last: down"));
    assert_eq!(l.fire(Cause::Stopped, "shutdown"), Some(State::Cold));
    let causes: Vec<&str> = events.recent(Some("p"), 100).iter().map(|e| e.cause).collect();
    assert_eq!(
        causes,
        [
            "start",
            "ready",
            "failure_threshold",
            "breaker_open",
            "breaker_half_open",
            "recovered",
            "breaker_open",
            "failure_threshold",
            "gave_up",
            "stopped"
        ]
    );
}

#[test]
fn a_new_instance_closes_the_breaker_and_starts_a_generation() {
    let (l, events) = lifecycle(1, 3);
    l.fire(Cause::Start, "");
    l.fire(Cause::Ready, "");
    let first = l.generation();
    l.record(Some("refused"));
    assert_eq!(l.breaker.state(), BreakerState::Open);
    l.fire(Cause::Crashed, "exited");
    assert_ne!(l.generation(), first, "leaving service ends the generation");
    l.fire(Cause::Start, "recovery");
    l.fire(Cause::Ready, "");
    assert_eq!(l.breaker.state(), BreakerState::Closed);
    assert!(l.admits());
    assert_eq!(events.recent(None, 1)[0].cause, "breaker_closed");
}

#[test]
fn recovery_is_bounded() {
    let (l, events) = lifecycle(1, 2);
    l.fire(Cause::Start, "");
    l.fire(Cause::Crashed, "exited with status 1");
    assert_eq!(l.take_due_recovery(), Some(1));
    assert_eq!(l.take_due_recovery(), None, "one attempt at a time");
    l.finish_recovery(false);
    assert_eq!(l.take_due_recovery(), Some(2));
    l.finish_recovery(false);
    assert_eq!(l.take_due_recovery(), None, "gave up after max_attempts");
    assert!(!l.recovering());
    assert_eq!(events.recent(None, 1)[0].cause, "recovery_exhausted");
    assert_eq!(l.fire(Cause::Start, "registry_start"), Some(State::Initializing), "a manual start is still possible");
}

#[test]
fn backoff_grows_and_is_capped() {
    let r = Recovery { max_attempts: 10, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(8) };
    for attempts in 0..10 {
        let d = backoff(r, attempts);
        let base = Duration::from_secs(1 << attempts.min(3));
        assert!(d >= base.mul_f64(0.5) && d <= base.mul_f64(1.5), "{attempts}: {d:?}");
    }
}

#[test]
fn calls_in_flight_are_counted() {
    let (l, _) = lifecycle(3, 3);
    l.track_idle();
    let g1 = l.begin_call();
    let g2 = l.begin_call();
    assert_eq!(l.inflight(), 2);
    drop(g1);
    drop(g2);
    assert_eq!(l.inflight(), 0);
    assert!(l.idle_for() < Duration::from_secs(1));
}

#[test]
fn only_a_lifecycle_that_tracks_idle_time_marks_the_ends_of_calls() {
    let (tracked, _) = lifecycle(3, 3);
    tracked.track_idle();
    let (untracked, _) = lifecycle(3, 3);
    std::thread::sleep(Duration::from_millis(60));
    drop(tracked.begin_call());
    drop(untracked.begin_call());
    assert!(tracked.idle_for() < Duration::from_millis(50), "{:?}", tracked.idle_for());
    assert!(untracked.idle_for() >= Duration::from_millis(60), "{:?}", untracked.idle_for());
}
