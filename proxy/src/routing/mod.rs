//! The routing table compiled from a configuration: the provider runtimes it refers to, in
//! declaration order, group pools, exposed-name prefixes, and the name/URI indexes learnt from
//! upstream lists. Immutable except for the indexes, which are swapped whole. The runtimes
//! outlive the table; the table is rebuilt with each configuration.

pub mod index;
pub mod pool;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hangar_config::{Config, ProviderKind};

use crate::jsonrpc::{code, RpcError};
use crate::lifecycle::State;
pub use crate::provider::{Backend, ProviderRuntime};
use crate::telemetry::calls::{ToolSeries, UNLISTED_TOOL};
use crate::upstream::Upstream;
use index::NameIndex;
use pool::Pool;

/// The compiled routing table.
pub struct Routes {
    /// Providers in declaration order.
    pub providers: Vec<Arc<ProviderRuntime>>,
    /// The pool of each group, by provider index. Shared with the next table when the group and
    /// its members' places did not change, so a reload keeps its rotation, budget and tier.
    pools: Vec<Option<Arc<Pool>>>,
    by_name: HashMap<String, usize>,
    /// `(prefix, provider)` for exposed providers with a non-empty prefix, longest prefix first.
    prefixed: Vec<(String, usize)>,
    /// Exposed providers whose prefix is empty.
    unprefixed: Vec<usize>,
    /// Names and URIs learnt from lists.
    pub index: ArcSwap<NameIndex>,
    /// When an unknown resource URI last refreshed the lists (held while refreshing, so
    /// concurrent lookups share one refresh).
    pub uri_refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
    events: Arc<crate::lifecycle::EventLog>,
    /// Where retries are counted.
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// Whether the gateway's own `registry_*` tools are offered over MCP (`server.admin_tools`).
    pub admin_tools: bool,
    /// Provider tools left out because a gateway tool has their name, already logged.
    pub shadowed: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl Routes {
    /// Compiles `config` into a table over `runtimes` (one for each of its providers, by name;
    /// the caller keeps them across snapshots). Group pools refer to members by their place in
    /// this table: a group whose definition and members' places are those it had in `previous`
    /// keeps its pool; others get a new one.
    pub fn build(
        config: &Config,
        runtimes: &HashMap<String, Arc<ProviderRuntime>>,
        previous: Option<&Routes>,
        events: &Arc<crate::lifecycle::EventLog>,
        metrics: &Arc<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        let by_name: HashMap<String, usize> =
            config.providers.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
        let providers: Vec<Arc<ProviderRuntime>> = config
            .providers
            .iter()
            .filter_map(|p| {
                let runtime = runtimes.get(&p.name).cloned();
                if runtime.is_none() {
                    tracing::error!(provider = p.name, "no runtime for a configured provider; it is left out");
                }
                runtime
            })
            .collect();
        let pools = config
            .providers
            .iter()
            .map(|p| match &p.kind {
                ProviderKind::Group(g) => {
                    let pool = Pool::build(g, |m| by_name.get(m).copied());
                    Some(
                        previous
                            .and_then(|old| old.same_pool(&p.name, &p.kind, &pool))
                            .unwrap_or_else(|| Arc::new(pool)),
                    )
                }
                _ => None,
            })
            .collect();
        let mut prefixed: Vec<(String, usize)> = providers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.config.expose && !p.config.tool_prefix.is_empty())
            .map(|(i, p)| (p.config.tool_prefix.clone(), i))
            .collect();
        prefixed.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let unprefixed = providers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.config.expose && p.config.tool_prefix.is_empty())
            .map(|(i, _)| i)
            .collect();
        Self {
            providers,
            pools,
            by_name,
            prefixed,
            unprefixed,
            index: ArcSwap::from_pointee(NameIndex::default()),
            uri_refresh: tokio::sync::Mutex::new(None),
            events: events.clone(),
            metrics: metrics.clone(),
            admin_tools: config.server.admin_tools,
            shadowed: parking_lot::Mutex::default(),
        }
    }

    /// The pool of group `idx` (`None` when it is not a group).
    pub fn pool(&self, idx: usize) -> Option<&Pool> {
        self.pools.get(idx).and_then(|p| p.as_deref())
    }

    /// This table's pool of group `name`, if it was defined as `kind` and has `fresh`'s members
    /// in the same places (its state then still describes them).
    fn same_pool(&self, name: &str, kind: &ProviderKind, fresh: &Pool) -> Option<Arc<Pool>> {
        let (idx, runtime) = self.provider(name)?;
        let pool = self.pools.get(idx)?.as_ref()?;
        (runtime.config.kind == *kind && pool.members == fresh.members).then(|| pool.clone())
    }

    /// The metrics label for a call of exposed tool `name` made to provider or group `idx`, and
    /// its series when they can be counted through it. The label is the name itself if a
    /// provider lists it, else `other` (so a client cannot mint label values). The series is the
    /// tool's index entry's when `idx` lists it, the provider's `other` series when no list has
    /// it, and `None` (count by label) when the entry is another provider's: the index can be
    /// swapped between routing and recording, and a series is bound to the labels of its first
    /// count.
    pub fn tool_series<'n>(&self, idx: usize, name: &'n str) -> (&'n str, Option<Arc<ToolSeries>>) {
        match self.index.load().tools.get(name) {
            Some(entry) if entry.provider == idx => (name, Some(entry.series.clone())),
            Some(_) => (name, None),
            None => (UNLISTED_TOOL, self.providers.get(idx).map(|p| p.unlisted.clone())),
        }
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<(usize, &Arc<ProviderRuntime>)> {
        let i = *self.by_name.get(name)?;
        Some((i, &self.providers[i]))
    }

    /// Exposed providers, in declaration order.
    pub fn exposed(&self) -> impl Iterator<Item = (usize, &Arc<ProviderRuntime>)> {
        self.providers.iter().enumerate().filter(|(_, p)| p.config.expose)
    }

    /// The provider whose prefix `exposed` starts with, and the name without it.
    pub fn by_prefix<'n>(&self, exposed: &'n str) -> Option<(usize, &'n str)> {
        self.prefixed.iter().find_map(|(prefix, i)| {
            exposed.strip_prefix(prefix.as_str()).filter(|rest| !rest.is_empty()).map(|rest| (*i, rest))
        })
    }

    /// Exposed providers without a prefix.
    pub fn unprefixed(&self) -> &[usize] {
        &self.unprefixed
    }

    /// The upstream serving provider `idx` now (a group picks a member) and that member's index.
    pub fn upstream(&self, idx: usize) -> Result<(usize, Arc<dyn Upstream>), RpcError> {
        self.choose(idx, &[], &[])
    }

    /// The upstream to call provider `idx` with: the provider itself, or the member its group's
    /// strategy picks for `key` among members not in `exclude` (already tried). Fails fast, with
    /// the reason, when nothing may be called now (DEAD and recovering, circuit open).
    pub fn choose(&self, idx: usize, key: &[u8], exclude: &[usize]) -> Result<(usize, Arc<dyn Upstream>), RpcError> {
        let member = match self.pool(idx) {
            Some(pool) => self.pick(idx, pool, key, exclude)?,
            None => {
                self.admit(idx)?;
                idx
            }
        };
        self.concrete(member).map(|u| (member, u))
    }

    /// The member of group `idx` to call. Healthy members first; when none is, members that are
    /// DEAD without a recovery pending (calling them starts them again). Taking a half-open
    /// breaker's probe permit can race: a member refused then is skipped.
    fn pick(&self, idx: usize, pool: &Pool, key: &[u8], exclude: &[usize]) -> Result<usize, RpcError> {
        let mut refused: Vec<usize> = Vec::new();
        let callable = |m: usize| {
            let p = &self.providers[m];
            matches!(p.backend, Backend::Remote(_) | Backend::Process(_))
                && !p.lifecycle.retired()
                && p.lifecycle.breaker.admits()
                && !exclude.contains(&m)
        };
        let inflight = |m: usize| self.providers[m].lifecycle.inflight();
        for healthy_only in [true, false] {
            loop {
                let accept = |m: usize| {
                    let state = self.providers[m].lifecycle.state();
                    let alive =
                        if healthy_only { state != State::Dead } else { !self.providers[m].lifecycle.recovering() };
                    alive && callable(m) && !refused.contains(&m)
                };
                let Some(m) = pool.selector.select(key, accept, inflight) else { break };
                if self.providers[m].lifecycle.breaker.allow() {
                    if exclude.is_empty() {
                        self.note_shift(idx, pool, m);
                    }
                    return Ok(m);
                }
                refused.push(m);
            }
        }
        Err(self.no_member(idx, pool, exclude))
    }

    /// Reports a priority group moving to another tier as an event.
    fn note_shift(&self, idx: usize, pool: &Pool, member: usize) {
        pool.note_choice(member, |previous, shift| {
            let (from, to) = (self.providers[previous].name(), self.providers[member].name());
            let (cause, why) = match shift {
                pool::Shift::Failover => ("failover", format!("{from} is unavailable; serving from {to}")),
                pool::Shift::Failback => ("failback", format!("{to} is available again (was serving from {from})")),
            };
            self.events.note_group(self.providers[idx].name(), cause, &why);
        });
    }

    /// Why no member of group `idx` can take a call, member by member.
    fn no_member(&self, idx: usize, pool: &Pool, exclude: &[usize]) -> RpcError {
        let group = self.providers[idx].name();
        if pool.members.is_empty() {
            return RpcError::new(code::PROVIDER_UNAVAILABLE, format!("group {group:?} has no members"));
        }
        let why: Vec<String> = pool
            .members
            .iter()
            .map(|&m| {
                let p = &self.providers[m];
                let status = if exclude.contains(&m) {
                    format!("failed: {}", p.lifecycle.last_error().unwrap_or_else(|| "unknown".into()))
                } else if let Err(e) = self.admit(m) {
                    e.message
                } else {
                    p.lifecycle.state().as_str().to_owned()
                };
                format!("{} ({status})", p.name())
            })
            .collect();
        RpcError::new(
            code::PROVIDER_UNAVAILABLE,
            format!("group {group:?} has no available member: {}", why.join("; ")),
        )
    }

    /// Whether provider `idx` may be called now; the reason when not.
    fn admit(&self, idx: usize) -> Result<(), RpcError> {
        let p = &self.providers[idx];
        let lifecycle = &p.lifecycle;
        if lifecycle.state() == State::Dead && lifecycle.recovering() {
            let (attempt, max) = lifecycle.recovery_attempts();
            let why = lifecycle.last_error().unwrap_or_else(|| "unknown".into());
            return Err(RpcError::new(
                code::PROVIDER_UNAVAILABLE,
                format!("provider {:?} is DEAD ({why}); recovering, attempt {attempt} of {max}", p.name()),
            ));
        }
        if !lifecycle.breaker.allow() {
            let why = lifecycle.last_error().unwrap_or_else(|| "unknown".into());
            return Err(RpcError::new(
                code::PROVIDER_UNAVAILABLE,
                format!(
                    "provider {:?} is unavailable: circuit {} after failures (last: {why})",
                    p.name(),
                    lifecycle.breaker.state().as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Provider `idx`'s own upstream.
    pub fn concrete(&self, idx: usize) -> Result<Arc<dyn Upstream>, RpcError> {
        let p = &self.providers[idx];
        match &p.backend {
            Backend::Unavailable(why) => {
                Err(RpcError::new(code::PROVIDER_UNAVAILABLE, format!("provider {:?} is unavailable: {why}", p.name())))
            }
            Backend::Group => Err(RpcError::new(code::PROVIDER_UNAVAILABLE, "nested groups are not supported")),
            _ => p.upstream().ok_or_else(|| RpcError::new(code::PROVIDER_UNAVAILABLE, "no upstream")),
        }
    }

    /// Every concrete upstream (groups excluded: their members are listed themselves).
    pub fn all_upstreams(&self) -> Vec<Arc<dyn Upstream>> {
        self.providers.iter().filter_map(|p| p.upstream()).collect()
    }
}

#[cfg(test)]
mod tests;
