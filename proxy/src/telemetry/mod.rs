//! Logs, metrics and (later) traces: everything the gateway tells its operators.

pub mod logging;
pub mod metrics;
