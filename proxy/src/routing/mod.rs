//! The routing table compiled from a configuration: provider runtimes in declaration order,
//! exposed-name prefixes, and the name/URI indexes learnt from upstream lists. Immutable except
//! for the indexes, which are swapped whole.

pub mod index;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hangar_config::{Config, Provider, ProviderKind};
use http::HeaderName;

use crate::jsonrpc::{code, RpcError};
use crate::lifecycle::{Lifecycle, State};
use crate::mcp::aggregate::ListCache;
use crate::upstream::http::{HttpClient, Timeouts};
use crate::upstream::process::container::ContainerLauncher;
use crate::upstream::process::local::LocalLauncher;
use crate::upstream::process::{ProcessSettings, ProcessUpstream};
use crate::upstream::remote::{Remote, RemoteSettings};
use crate::upstream::{Unsolicited, Upstream};
use index::NameIndex;

/// How a provider is reached at run time.
pub enum Backend {
    /// A streamable-HTTP upstream (kept concrete: the proxying fast path needs its endpoint).
    Remote(Arc<Remote>),
    /// A subprocess speaking MCP on stdio.
    Process(Arc<ProcessUpstream>),
    /// A pool of other providers, by index.
    Group {
        /// Member indexes in declaration order.
        members: Vec<usize>,
        /// Round-robin cursor.
        next: AtomicUsize,
    },
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
}

impl Routes {
    /// Compiles `config`. Nothing is contacted: upstreams start on first use.
    pub fn build(
        config: &Config,
        http: &Arc<HttpClient>,
        sink: &Arc<dyn Unsolicited>,
        events: &Arc<crate::lifecycle::EventLog>,
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
                let lifecycle = Lifecycle::new(&p.name, p.max_consecutive_failures, p.recovery, events.clone());
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
                    ProviderKind::Group(g) => Backend::Group {
                        members: g.members.iter().filter_map(|m| by_name.get(&m.provider).copied()).collect(),
                        next: AtomicUsize::new(0),
                    },
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
        Self { providers, by_name, prefixed, unprefixed, index: ArcSwap::from_pointee(NameIndex::default()) }
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

    /// The concrete provider serving `idx` now: itself, or the member a group picks.
    pub fn pick(&self, idx: usize) -> Result<usize, RpcError> {
        let p = &self.providers[idx];
        let Backend::Group { members, next } = &p.backend else { return Ok(idx) };
        let usable: Vec<usize> =
            members.iter().copied().filter(|&m| !matches!(self.providers[m].backend, Backend::Group { .. })).collect();
        if usable.is_empty() {
            return Err(RpcError::new(code::PROVIDER_UNAVAILABLE, format!("group {:?} has no members", p.name())));
        }
        let start = next.fetch_add(1, Ordering::Relaxed);
        let available = (0..usable.len()).map(|k| usable[(start + k) % usable.len()]).find(|&m| {
            let p = &self.providers[m];
            !matches!(p.backend, Backend::Unavailable(_)) && p.lifecycle.state() != State::Dead
        });
        Ok(available.unwrap_or(usable[start % usable.len()]))
    }

    /// The upstream serving provider `idx` now (a group picks a member) and that member's index.
    pub fn upstream(&self, idx: usize) -> Result<(usize, Arc<dyn Upstream>), RpcError> {
        let member = self.pick(idx)?;
        let p = &self.providers[member];
        if p.lifecycle.state() == State::Dead && p.lifecycle.recovering() {
            let (attempt, max) = p.lifecycle.recovery_attempts();
            let why = p.lifecycle.last_error().unwrap_or_else(|| "unknown".into());
            return Err(RpcError::new(
                code::PROVIDER_UNAVAILABLE,
                format!("provider {:?} is DEAD ({why}); recovering, attempt {attempt} of {max}", p.name()),
            ));
        }
        match &p.backend {
            Backend::Remote(r) => Ok((member, r.clone() as Arc<dyn Upstream>)),
            Backend::Process(u) => Ok((member, u.clone() as Arc<dyn Upstream>)),
            Backend::Unavailable(why) => {
                Err(RpcError::new(code::PROVIDER_UNAVAILABLE, format!("provider {:?} is unavailable: {why}", p.name())))
            }
            Backend::Group { .. } => Err(RpcError::new(code::PROVIDER_UNAVAILABLE, "nested groups are not supported")),
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
