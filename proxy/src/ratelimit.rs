//! Rate limits: token buckets per principal (every MCP request), per provider (calls routed to
//! it, from everyone) and per principal × tool. They are checked at the front door before any
//! upstream work, and only for calls the caller may make (a refused call must not drain a
//! provider's bucket for everyone else). A refusal is HTTP 429 with `Retry-After`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use hangar_config::{Config, Rate, RateLimits};

use crate::auth::{Item, Principal};
use crate::jsonrpc::parse::ParamsHead;
use crate::state::Snapshot;

/// Which bucket refused, as the `limit` label of `rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `rate_limits.per_principal`.
    Principal,
    /// `rate_limits.per_principal_tool`.
    PrincipalTool,
    /// `providers.<name>.rate_limit` or `rate_limits.per_provider`.
    Provider,
}

impl Bucket {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::PrincipalTool => "principal_tool",
            Self::Provider => "provider",
        }
    }
}

/// A request over a limit: which, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// The bucket that refused.
    pub bucket: Bucket,
    /// How long until the request would pass.
    pub retry_after: Duration,
}

/// The buckets of one configuration.
pub struct RateLimiter {
    settings: (RateLimits, Vec<(String, Option<Rate>)>),
    per_principal: Option<DefaultKeyedRateLimiter<String>>,
    per_principal_tool: Option<DefaultKeyedRateLimiter<(String, String)>>,
    per_provider: HashMap<String, DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl RateLimiter {
    /// The buckets of `config`; `previous`'s (with the tokens they hold) when no limit changed.
    pub fn build(config: &Config, previous: Option<&Arc<RateLimiter>>) -> Arc<Self> {
        let settings = (
            config.rate_limits.clone(),
            config.providers.iter().map(|p| (p.name.clone(), p.rate_limit)).collect::<Vec<_>>(),
        );
        if let Some(prev) = previous.filter(|p| p.settings == settings) {
            return prev.clone();
        }
        let limits = &config.rate_limits;
        let per_provider = config
            .providers
            .iter()
            .filter_map(|p| {
                Some((p.name.clone(), DefaultDirectRateLimiter::direct(quota(p.rate_limit.or(limits.per_provider)?))))
            })
            .collect();
        Arc::new(Self {
            per_principal: limits.per_principal.map(|r| DefaultKeyedRateLimiter::keyed(quota(r))),
            per_principal_tool: limits.per_principal_tool.map(|r| DefaultKeyedRateLimiter::keyed(quota(r))),
            per_provider,
            settings,
            clock: DefaultClock::default(),
        })
    }

    /// Whether any limit is configured (nothing to check otherwise).
    pub fn active(&self) -> bool {
        self.per_principal.is_some() || self.per_principal_tool.is_some() || !self.per_provider.is_empty()
    }

    /// Takes a token from `who`'s bucket.
    pub fn principal(&self, who: &str) -> Result<(), Exceeded> {
        let Some(limiter) = &self.per_principal else { return Ok(()) };
        limiter
            .check_key(&who.to_owned())
            .map_err(|n| self.exceeded(Bucket::Principal, n.wait_time_from(self.clock.now())))
    }

    /// Takes a token from the buckets of a call of `tool` (if a tool) on `provider` by `who`.
    /// The principal × tool bucket is checked first, so a caller over its own share does not
    /// spend the provider's.
    pub fn call(&self, who: &str, provider: &str, tool: Option<&str>) -> Result<(), Exceeded> {
        if let (Some(limiter), Some(tool)) = (&self.per_principal_tool, tool) {
            limiter
                .check_key(&(who.to_owned(), tool.to_owned()))
                .map_err(|n| self.exceeded(Bucket::PrincipalTool, n.wait_time_from(self.clock.now())))?;
        }
        if let Some(limiter) = self.per_provider.get(provider) {
            limiter.check().map_err(|n| self.exceeded(Bucket::Provider, n.wait_time_from(self.clock.now())))?;
        }
        Ok(())
    }

    fn exceeded(&self, bucket: Bucket, wait: Duration) -> Exceeded {
        Exceeded { bucket, retry_after: wait.max(Duration::from_millis(1)) }
    }

    /// Forgets the buckets of callers quiet long enough to be full again (the keyed stores would
    /// otherwise grow with every client address and tool ever seen).
    pub fn sweep(&self) {
        if let Some(l) = &self.per_principal {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_principal_tool {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn quota(rate: Rate) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate.rps).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map_or_else(|| Quota::per_second(burst), |q| q.allow_burst(burst))
}

/// The key of `principal`'s bucket: anonymous callers are told apart by address.
pub fn principal_key(principal: &Principal, client: Option<std::net::IpAddr>) -> String {
    match (principal.via, client) {
        ("anonymous", Some(ip)) => format!("anonymous@{ip}"),
        _ => principal.id.clone(),
    }
}

/// Checks a request's limits: the principal's, then, for a call the caller may make of a tool,
/// prompt or resource the gateway knows, the tool's and the provider's.
pub fn admit(
    snap: &Snapshot,
    principal: &Principal,
    key: &str,
    method: &str,
    head: &ParamsHead<'_>,
) -> Result<(), Exceeded> {
    let limiter = &snap.rate_limits;
    if !limiter.active() {
        return Ok(());
    }
    limiter.principal(key)?;
    let routes = &snap.routes;
    let (idx, own, is_tool) = match method {
        "tools/call" | "prompts/get" => {
            let Some(name) = head.name.as_deref() else { return Ok(()) };
            let index = routes.index.load();
            let map = if method == "tools/call" { &index.tools } else { &index.prompts };
            let hit = map.get(name).map(|l| (l.provider, l.own.clone()));
            let Some((idx, own)) = hit.or_else(|| routes.by_prefix(name).map(|(i, rest)| (i, rest.to_owned()))) else {
                return Ok(());
            };
            (idx, own, method == "tools/call")
        }
        "resources/read" => {
            let Some(uri) = head.uri.as_deref() else { return Ok(()) };
            let index = routes.index.load();
            let Some(idx) = index.resources.get(uri).copied().or_else(|| index.template_for(uri)) else {
                return Ok(());
            };
            (idx, uri.to_owned(), false)
        }
        _ => return Ok(()),
    };
    if !routes.providers[idx].config.exposes(&own) {
        return Ok(()); // trimmed: unknown to calls
    }
    let provider = routes.providers[idx].name();
    let exposed = head.name.as_deref().unwrap_or_default();
    let item = match method {
        "tools/call" => Item::Tool { provider, own: &own, exposed },
        "prompts/get" => Item::Prompt { provider, own: &own, exposed },
        _ => Item::Resource { provider, uri: &own },
    };
    if !principal.decide(&item).allowed {
        return Ok(()); // refused later, without spending anyone's tokens
    }
    limiter.call(key, provider, is_tool.then_some(exposed))
}
