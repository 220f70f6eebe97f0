//! The routing table compiled from a configuration: provider runtimes in declaration order,
//! exposed-name prefixes, and the name/URI indexes learnt from upstream lists. Immutable except
//! for the indexes, which are swapped whole.

pub mod index;
pub mod pool;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hangar_config::{Config, Provider, ProviderKind};
use http::HeaderName;

use crate::jsonrpc::{code, RpcError};
use crate::lifecycle::{Lifecycle, State};
use crate::upstream::http::{HttpClient, Timeouts};
use crate::upstream::list_cache::ListCache;
use crate::upstream::process::container::ContainerLauncher;
use crate::upstream::process::local::LocalLauncher;
use crate::upstream::process::{ProcessSettings, ProcessUpstream};
use crate::upstream::remote::{Remote, RemoteSettings};
use crate::upstream::{Unsolicited, Upstream};
use index::NameIndex;
use pool::Pool;

/// How a provider is reached at run time.
pub enum Backend {
    /// A streamable-HTTP upstream (kept concrete: the proxying fast path needs its endpoint).
    Remote(Arc<Remote>),
    /// A subprocess speaking MCP on stdio.
    Process(Arc<ProcessUpstream>),
    /// A pool of other providers.
    Group(Pool),
    /// Cannot be used; the reason is given to callers.
    Unavailable(String),
}

/// One provider at run time.
pub struct ProviderRuntime {
    /// Its configuration.
    pub config: Provider,
    /// How it is reached.
    pub backend: Backend,
    /// Its cached lists.
    pub lists: ListCache,
    /// Its lifecycle state (groups have one too, though they never start: it stays COLD).
    pub lifecycle: Arc<Lifecycle>,
}

impl ProviderRuntime {
    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// The compiled routing table.
pub struct Routes {
    /// Providers in declaration order.
    pub providers: Vec<Arc<ProviderRuntime>>,
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
}

impl Routes {
    /// Compiles `config`. Nothing is contacted: upstreams start on first use.
    pub fn build(
        config: &Config,
        http: &Arc<HttpClient>,
        sink: &Arc<dyn Unsolicited>,
        events: &Arc<crate::lifecycle::EventLog>,
        metrics: &Arc<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        let limits = &config.server.limits;
        let timeouts = Timeouts {
            connect: limits.connect_timeout,
            first_byte: limits.first_byte_timeout,
            idle: limits.idle_timeout,
        };
        let by_name: HashMap<String, usize> =
            config.providers.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let lifecycle =
                    Lifecycle::new(&p.name, p.max_consecutive_failures, p.recovery, p.circuit_breaker, events.clone());
                let process_settings = || ProcessSettings {
                    name: p.name.as_str().into(),
                    request_timeout: limits.first_byte_timeout,
                    max_line: limits.max_body_bytes.max(16 << 20),
                };
                let backend = match &p.kind {
                    ProviderKind::Remote(r) => {
                        let headers = r
                            .headers
                            .iter()
                            .filter_map(|(n, v)| {
                                Some((HeaderName::from_bytes(n.as_bytes()).ok()?, v.expose().to_owned()))
                            })
                            .collect();
                        let settings = RemoteSettings {
                            name: p.name.as_str().into(),
                            url: r.endpoint.clone(),
                            headers,
                            timeouts,
                            max_body: limits.max_body_bytes.max(16 << 20),
                            transport: r.transport,
                        };
                        match Remote::new(settings, http.clone(), sink.clone(), lifecycle.clone()) {
                            Ok(remote) => Backend::Remote(Arc::new(remote)),
                            Err(e) => Backend::Unavailable(e.to_string()),
                        }
                    }
                    ProviderKind::Group(g) => Backend::Group(Pool::build(g, |m| by_name.get(m).copied())),
                    ProviderKind::Subprocess(sp) => Backend::Process(Arc::new(ProcessUpstream::new(
                        process_settings(),
                        Box::new(LocalLauncher {
                            command: sp.command.clone(),
                            env: sp.env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect(),
                            cwd: sp.cwd.clone(),
                        }),
                        sink.clone(),
                        lifecycle.clone(),
                    ))),
                    ProviderKind::Container(c) => Backend::Process(Arc::new(ProcessUpstream::new(
                        process_settings(),
                        Box::new(ContainerLauncher { spec: c.clone() }),
                        sink.clone(),
                        lifecycle.clone(),
                    ))),
                };
                Arc::new(ProviderRuntime { config: p.clone(), backend, lists: ListCache::default(), lifecycle })
            })
            .collect::<Vec<_>>();
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
            by_name,
            prefixed,
            unprefixed,
            index: ArcSwap::from_pointee(NameIndex::default()),
            uri_refresh: tokio::sync::Mutex::new(None),
            events: events.clone(),
            metrics: metrics.clone(),
        }
    }

    /// The metrics label for exposed tool `name`: itself if a provider lists it, else `other`
    /// (so a client cannot mint label values).
    pub fn tool_label<'n>(&self, name: &'n str) -> &'n str {
        if self.index.load().tools.contains_key(name) {
            name
        } else {
            "other"
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
        let member = match &self.providers[idx].backend {
            Backend::Group(pool) => self.pick(idx, pool, key, exclude)?,
            _ => {
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
        let Some((previous, shift)) = pool.note_choice(member) else { return };
        let (from, to) = (self.providers[previous].name(), self.providers[member].name());
        let (cause, why) = match shift {
            pool::Shift::Failover => ("failover", format!("{from} is unavailable; serving from {to}")),
            pool::Shift::Failback => ("failback", format!("{to} is available again (was serving from {from})")),
        };
        self.events.note_group(self.providers[idx].name(), cause, &why);
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
            Backend::Remote(r) => Ok(r.clone()),
            Backend::Process(u) => Ok(u.clone()),
            Backend::Unavailable(why) => {
                Err(RpcError::new(code::PROVIDER_UNAVAILABLE, format!("provider {:?} is unavailable: {why}", p.name())))
            }
            Backend::Group(_) => Err(RpcError::new(code::PROVIDER_UNAVAILABLE, "nested groups are not supported")),
        }
    }

    /// Every concrete upstream (groups excluded: their members are listed themselves).
    pub fn all_upstreams(&self) -> Vec<Arc<dyn Upstream>> {
        self.providers
            .iter()
            .filter_map(|p| match &p.backend {
                Backend::Remote(r) => Some(r.clone() as Arc<dyn Upstream>),
                Backend::Process(u) => Some(u.clone() as Arc<dyn Upstream>),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
