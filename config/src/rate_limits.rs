//! `rate_limits` and `providers.<name>.rate_limit`: token buckets that keep one client (or all of
//! them together) from taking more than its share. The Python MCP Hangar's
//! `MCP_RATE_LIMIT_RPS`/`MCP_RATE_LIMIT_BURST` variables set the per-principal limit when the file
//! does not.

use serde_norway::Value;

use crate::decode::{Decoder, Fields};

/// A token bucket: `rps` tokens a second, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rate {
    /// Sustained requests per second.
    pub rps: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// `rate_limits`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RateLimits {
    /// Every MCP request of one principal (anonymous callers: per client address).
    pub per_principal: Option<Rate>,
    /// Calls of one tool by one principal.
    pub per_principal_tool: Option<Rate>,
    /// Calls routed to one provider, from everyone (a provider's own `rate_limit` replaces it).
    pub per_provider: Option<Rate>,
}

const KEYS: &[&str] = &["per_principal", "per_principal_tool", "per_provider"];
const RATE_KEYS: &[&str] = &["rps", "burst"];
/// The Python MCP Hangar's variables for the per-principal limit.
const RPS_VAR: &str = "MCP_RATE_LIMIT_RPS";
const BURST_VAR: &str = "MCP_RATE_LIMIT_BURST";

pub(crate) fn decode_rate_limits(d: &mut Decoder<'_>, v: Option<(String, &Value)>) -> RateLimits {
    let mut out = RateLimits::default();
    if let Some((path, value)) = v {
        if let Some(f) = d.fields(&path, value) {
            f.deny_unknown(d, KEYS, |_| None);
            out.per_principal = f.opt(d, "per_principal", decode_rate);
            out.per_principal_tool = f.opt(d, "per_principal_tool", decode_rate);
            out.per_provider = f.opt(d, "per_provider", decode_rate);
        }
    }
    if out.per_principal.is_none() {
        out.per_principal = rate_from_env(d);
    }
    out
}

/// `{rps, burst}`; `burst` defaults to twice the rate (at least 1).
pub(crate) fn decode_rate(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<Rate> {
    let f: Fields<'_> = d.fields(path, v)?;
    f.deny_unknown(d, RATE_KEYS, |_| None);
    let rps = f.req(d, "rps", " (requests per second)", |d, p, v| positive(d, p, v))?;
    let burst = f.opt(d, "burst", |d, p, v| d.integer(p, v, 1, 1_000_000)).map(|b| b as u32);
    Some(Rate { rps, burst: burst.unwrap_or_else(|| default_burst(rps)) })
}

fn default_burst(rps: f64) -> u32 {
    (rps * 2.0).ceil().clamp(1.0, 1_000_000.0) as u32
}

fn positive(d: &mut Decoder<'_>, path: &str, v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() && n > 0.0 && n <= 1_000_000.0 => Some(n),
        _ => {
            d.problem(path, format!("must be a positive number up to 1000000, found {}", crate::decode::describe(v)));
            None
        }
    }
}

fn rate_from_env(d: &mut Decoder<'_>) -> Option<Rate> {
    let rps = d.env_var(RPS_VAR)?;
    let Some(rps) = rps.trim().parse::<f64>().ok().filter(|n| n.is_finite() && *n > 0.0) else {
        d.problem(RPS_VAR, format!("must be a positive number, found {rps:?}"));
        return None;
    };
    let burst = match d.env_var(BURST_VAR) {
        None => default_burst(rps),
        Some(b) => match b.trim().parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                d.problem(BURST_VAR, format!("must be a positive whole number, found {b:?}"));
                return None;
            }
        },
    };
    Some(Rate { rps, burst })
}
