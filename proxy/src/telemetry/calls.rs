//! Finished tool calls, as the operators see them: one record per call, from either path (the
//! hub or the proxying fast path), turned into metrics and audit records.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{Histogram, IntCounter};

use crate::jsonrpc::outcome::Outcome;
use crate::jsonrpc::{code, RpcError};
use crate::proto::protocol::Era;
use crate::telemetry::audit::{Audit, ToolCall};
use crate::telemetry::metrics::Metrics;

/// How a call ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The tool returned a result.
    Ok,
    /// The tool returned a result marked `isError`.
    ToolError,
    /// The call needs the client's input first (a 2026-07-28 `input_required` round).
    InputRequired,
    /// The client went away before the answer (a cancellation).
    Cancelled,
    /// The provider answered with a JSON-RPC error (or the gateway refused the call).
    Error,
    /// The provider could not be reached, or failed at the transport level.
    Unavailable,
    /// The provider did not answer in time.
    Timeout,
    /// The provider answered with something that is not MCP.
    ProtocolError,
}

impl CallOutcome {
    /// How many outcomes there are (checked below against the last one).
    const COUNT: usize = 8;

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::InputRequired => "input_required",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::ProtocolError => "protocol_error",
        }
    }

    /// The outcome of a call that ended with `result`.
    pub fn of(result: &Result<serde_json::Value, RpcError>) -> Self {
        match result {
            Ok(v) if v.get("isError").and_then(serde_json::Value::as_bool) == Some(true) => Self::ToolError,
            Ok(v) if v.get("resultType").and_then(serde_json::Value::as_str) == Some("input_required") => {
                Self::InputRequired
            }
            Ok(_) => Self::Ok,
            Err(e) => Self::of_error(e),
        }
    }

    /// The outcome of a call that failed with `e`.
    pub fn of_error(e: &RpcError) -> Self {
        match e.code {
            code::PROVIDER_UNAVAILABLE | code::SESSION_LOST => Self::Unavailable,
            code::PROVIDER_TIMEOUT => Self::Timeout,
            code::PROVIDER_PROTOCOL_ERROR => Self::ProtocolError,
            _ => Self::Error,
        }
    }
}

const _: () = assert!(CallOutcome::ProtocolError as usize + 1 == CallOutcome::COUNT, "COUNT counts every outcome");

impl From<Outcome> for CallOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Result => Self::Ok,
            Outcome::ToolError => Self::ToolError,
            Outcome::Error => Self::Error,
        }
    }
}

/// The metrics label of a tool no provider lists (a client cannot mint label values).
pub const UNLISTED_TOOL: &str = "other";

/// One tool's call series (or a provider's, for the tools no list names), bound on its first call
/// and kept where routing finds it anyway (the tool's entry in the name index, the provider's
/// runtime): counting a call then hashes no labels (the two `with_label_values` lookups cost about
/// 600 instructions a call, a sixtieth of the fast path). Bound lazily, so the exposition shows
/// only the outcomes that happened, as before.
#[derive(Debug, Default)]
pub struct ToolSeries {
    calls: [OnceLock<IntCounter>; CallOutcome::COUNT],
    duration: OnceLock<Histogram>,
}

impl ToolSeries {
    /// Counts a call of `tool` at `provider`: the labels the series is bound to on its first use,
    /// so every use must name the same tool (the index entry holding the series).
    fn count(&self, metrics: &Metrics, provider: &str, tool: &str, outcome: CallOutcome, elapsed: Duration) {
        let calls = &self.calls[outcome as usize];
        calls.get_or_init(|| metrics.tool_calls.with_label_values(&[provider, tool, outcome.as_str()])).inc();
        let duration = self.duration.get_or_init(|| metrics.tool_call_duration.with_label_values(&[provider, tool]));
        duration.observe(elapsed.as_secs_f64());
    }
}

/// One finished tool call.
pub struct CallRecord<'a> {
    /// The provider or group it was addressed to.
    pub provider: &'a str,
    /// The tool's exposed name, as the client asked for it.
    pub tool: &'a str,
    /// The tool's metrics label: bounded (a name no provider lists is `other`), so a client
    /// cannot mint label values.
    pub tool_label: &'a str,
    /// The series of `tool_label` at `provider`, when the call found it on its way (the tool's
    /// entry in the name index, or the provider's for `other`; see
    /// [`crate::routing::Routes::tool_series`]); `None` looks them up by label.
    pub series: Option<&'a ToolSeries>,
    /// How it ended.
    pub outcome: CallOutcome,
    /// Time at the gateway.
    pub elapsed: Duration,
    /// Who called (see [`crate::mcp::hub::ClientCtx::identity`]).
    pub caller: &'a str,
    /// The authenticated principal.
    pub principal: &'a str,
    /// The request's protocol era.
    pub era: Era,
    /// The error message, for a failed call.
    pub error: Option<&'a str>,
    /// The arguments, when the audit trail records them.
    pub arguments: Option<serde_json::Value>,
}

impl CallRecord<'_> {
    /// Records the call in the metrics (with a bounded tool label) and the audit trail.
    pub fn record(self, metrics: &Metrics, audit: &Audit) {
        match self.series {
            Some(series) => series.count(metrics, self.provider, self.tool_label, self.outcome, self.elapsed),
            None => metrics.tool_call(self.provider, self.tool_label, self.outcome.as_str(), self.elapsed),
        }
        if audit.enabled() {
            audit.tool_call(ToolCall {
                caller: self.caller.to_owned(),
                principal: self.principal.to_owned(),
                era: self.era.as_str(),
                provider: self.provider.to_owned(),
                tool: self.tool.to_owned(),
                outcome: self.outcome.as_str(),
                duration_ms: self.elapsed.as_secs_f64() * 1000.0,
                error: self.error.map(str::to_owned),
                arguments: self.arguments,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;

    use super::*;

    #[test]
    fn a_tools_series_counts_where_its_labels_do() {
        let metrics = Metrics::new();
        let series = ToolSeries::default();
        let elapsed = Duration::from_millis(3);
        for outcome in [CallOutcome::Ok, CallOutcome::Ok, CallOutcome::Timeout] {
            series.count(&metrics, "p", "p_t", outcome, elapsed);
        }
        metrics.tool_call("p", "p_t", "ok", elapsed);
        let calls = |outcome| metrics.tool_calls.with_label_values(&["p", "p_t", outcome]).get();
        assert_eq!((calls("ok"), calls("timeout")), (3, 1), "the series and the labels count alike");
        let observed = metrics.tool_call_duration.with_label_values(&["p", "p_t"]).get_sample_count();
        assert_eq!(observed, 4);
        // Only the outcomes that happened are exposed (the lookups above added none).
        let exposed: usize = metrics.tool_calls.collect().iter().map(|f| f.get_metric().len()).sum();
        assert_eq!(exposed, 2);
    }
}
