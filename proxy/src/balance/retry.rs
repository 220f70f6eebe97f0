//! When a failed call may be tried again on another member, and how much retrying a group allows.
//!
//! Safe to retry: calls that certainly never reached a provider (connection failures), list and
//! read methods, and tools their provider marks `readOnlyHint` or `idempotentHint`. A retry budget
//! bounds the extra load: every call earns a fifth of a retry, so retries add at most ~20%.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::upstream::CallError;

/// Retries earned per call, in thousandths (0.2 retries per call).
const EARN_PER_CALL: i64 = 200;
/// Most retries saved up, in thousandths, so a quiet group cannot bank a burst.
const MAX_SAVED: i64 = 10_000;
/// Cost of one retry, in thousandths.
const RETRY_COST: i64 = 1000;
/// Most attempts one call makes (the first and its retries).
pub const MAX_ATTEMPTS: usize = 3;

/// Methods that only read: retrying them cannot repeat a side effect.
pub fn is_read_only_method(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "prompts/get"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "completion/complete"
            | "ping"
            | "server/discover"
    )
}

/// Whether a tool's definition marks it as safe to call twice.
pub fn is_idempotent_tool(definition: &Value) -> bool {
    // Plain lookups: `Value::pointer` allocates for the path and each of its tokens, and the
    // fast path asks this on every call of a tool not known to be idempotent.
    let Some(annotations) = definition.get("annotations") else { return false };
    let hint = |k: &str| annotations.get(k).and_then(Value::as_bool) == Some(true);
    hint("readOnlyHint") || hint("idempotentHint")
}

/// Whether a call that failed with `error` may be retried elsewhere. `idempotent` says whether
/// the call itself is safe to repeat (a read method or an idempotent tool).
pub fn may_retry(error: &CallError, idempotent: bool) -> bool {
    match error {
        CallError::Rpc(_) | CallError::Rejected(_) => false,
        CallError::Unavailable { never_sent: true, .. } => true,
        CallError::Unavailable { .. } | CallError::Timeout(_) | CallError::Protocol(_) => idempotent,
    }
}

/// A delay before a retry: 10-50 ms, random, so retries from many callers spread out.
pub fn backoff() -> Duration {
    Duration::from_millis(10 + rand::random::<u64>() % 40)
}

/// The retries a group may still make.
pub struct RetryBudget {
    saved: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        // Start with a few so the first failures of a fresh group can be retried.
        Self { saved: AtomicI64::new(3 * RETRY_COST) }
    }
}

impl RetryBudget {
    /// Counts a call (earning part of a retry).
    pub fn earn(&self) {
        let _ =
            self.saved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some((s + EARN_PER_CALL).min(MAX_SAVED)));
    }

    /// Takes one retry if the budget allows.
    pub fn spend(&self) -> bool {
        self.saved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| (s >= RETRY_COST).then_some(s - RETRY_COST))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jsonrpc::RpcError;

    #[test]
    fn retries_only_what_is_safe() {
        let refused = CallError::Unavailable { reason: "refused".into(), never_sent: true };
        let reset = CallError::Unavailable { reason: "reset".into(), never_sent: false };
        assert!(may_retry(&refused, false), "never reached the provider");
        assert!(!may_retry(&reset, false), "may have run: only if idempotent");
        assert!(may_retry(&reset, true));
        assert!(!may_retry(&CallError::Rpc(RpcError::new(-32602, "no")), true), "the provider answered");
        assert!(is_idempotent_tool(&json!({"name": "t", "annotations": {"readOnlyHint": true}})));
        assert!(!is_idempotent_tool(&json!({"name": "t", "annotations": {"destructiveHint": true}})));
        assert!(is_read_only_method("resources/read") && !is_read_only_method("tools/call"));
    }

    #[test]
    fn budget_allows_about_a_fifth_extra() {
        let b = RetryBudget::default();
        let mut retries = 0;
        for _ in 0..1000 {
            b.earn();
            if b.spend() {
                retries += 1;
            }
        }
        assert!((200..=204).contains(&retries), "{retries} retries for 1000 calls");
    }
}
