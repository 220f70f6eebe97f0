//! `/health/live`, `/health/ready`, `/health/startup`: JSON bodies with a `status`, for Kubernetes
//! probes and load balancers.

use crate::state::{AppState, Phase};

/// Health endpoints' paths, fixed so probes need no configuration.
pub const LIVE: &str = "/health/live";
/// Readiness probe path.
pub const READY: &str = "/health/ready";
/// Startup probe path.
pub const STARTUP: &str = "/health/startup";

/// The status code and JSON body for a health `path`, or `None` when it is not one.
pub fn answer(state: &AppState, path: &str) -> Option<(u16, String)> {
    let phase = state.phase();
    let (ok, status) = match path {
        LIVE => (true, "alive"),
        READY => match phase {
            Phase::Ready => (true, "ready"),
            Phase::Starting => (false, "starting"),
            Phase::Draining => (false, "draining"),
        },
        STARTUP => match phase {
            Phase::Starting => (false, "starting"),
            Phase::Ready | Phase::Draining => (true, "started"),
        },
        _ => return None,
    };
    let snap = state.snapshot();
    let last = state.reconciler.last();
    let body = serde_json::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "config_generation": snap.generation,
        "providers": snap.config.providers.len(),
        "inflight": state.inflight(),
        "last_reload": {"outcome": last.outcome, "error": last.error},
    });
    Some((if ok { 200 } else { 503 }, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_phase() {
        let state = AppState::new(hangar_config::parse("", "t", &|_| None).expect("empty config"));
        assert_eq!(answer(&state, READY).map(|a| a.0), Some(503));
        assert_eq!(answer(&state, STARTUP).map(|a| a.0), Some(503));
        assert_eq!(answer(&state, LIVE).map(|a| a.0), Some(200));
        state.set_phase(Phase::Ready);
        let (code, body) = answer(&state, READY).expect("ready answers");
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"ready\""), "{body}");
        state.set_phase(Phase::Draining);
        assert_eq!(answer(&state, READY).map(|a| a.0), Some(503));
        assert_eq!(answer(&state, STARTUP).map(|a| a.0), Some(200));
        assert_eq!(answer(&state, "/health/other"), None);
    }
}
