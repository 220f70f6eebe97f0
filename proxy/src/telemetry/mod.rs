//! Logs, metrics, traces and the audit trail: everything the gateway tells its operators.

pub mod audit;
pub mod calls;
pub mod logging;
pub mod metrics;
pub mod openmetrics;
pub mod traces;
pub mod w3c;
