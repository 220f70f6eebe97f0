//! Logs, metrics and (later) traces: everything the gateway tells its operators.

pub mod audit;
pub mod calls;
pub mod logging;
pub mod metrics;
pub mod openmetrics;
pub mod traces;
