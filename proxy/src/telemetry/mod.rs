//! Logs, metrics, traces and the audit trail: everything the gateway tells its operators.

pub mod audit;
pub mod calls;
pub mod logging;
pub mod metrics;
pub mod openmetrics;
pub mod recent;
pub mod traces;
pub mod w3c;

/// Now, in milliseconds since the Unix epoch (the unit of every timestamp the gateway reports).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
