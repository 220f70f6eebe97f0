//! One provider at run time: its upstream (a remote server, a process or container), lifecycle
//! and breaker, and list caches. A runtime is built once per provider definition and lives as long
//! as that definition does: routing snapshots refer to runtimes, they never own them, so a reload
//! that leaves a provider unchanged keeps its process, connections, sessions, breaker and caches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hangar_config::{Limits, Provider, ProviderKind};
use http::HeaderName;

use crate::lifecycle::{EventLog, Lifecycle};
use crate::telemetry::metrics::Metrics;
use crate::upstream::http::{HttpClient, Timeouts, TlsTrust};
use crate::upstream::list_cache::ListCache;
use crate::upstream::process::container::ContainerLauncher;
use crate::upstream::process::local::LocalLauncher;
use crate::upstream::process::{ProcessSettings, ProcessUpstream};
use crate::upstream::remote::{Remote, RemoteSettings};
use crate::upstream::{Unsolicited, Upstream};

/// How a provider is reached at run time.
pub enum Backend {
    /// A streamable-HTTP upstream (kept concrete: the proxying fast path needs its endpoint).
    Remote(Arc<Remote>),
    /// A subprocess or container speaking MCP on stdio.
    Process(Arc<ProcessUpstream>),
    /// A pool of other providers (the routing table holds the pool: it refers to members by
    /// their place in that table).
    Group,
    /// Cannot be used; the reason is given to callers.
    Unavailable(String),
}

/// One provider at run time.
pub struct ProviderRuntime {
    /// Unique in the process: a provider reconfigured in place keeps it, a new instance gets a
    /// new one.
    pub instance: u64,
    /// Its configuration.
    pub config: Provider,
    /// How it is reached.
    pub backend: Backend,
    /// Its cached lists.
    pub lists: Arc<ListCache>,
    /// Its tools' compiled input schemas (compiled again after a reconfiguration, whose
    /// predefined tools may differ).
    pub schemas: crate::mcp::arguments::SchemaCache,
    /// Its lifecycle state (groups have one too, though they never start: it stays COLD).
    pub lifecycle: Arc<Lifecycle>,
    /// The call series of its tools that no list names (their label is `other`).
    pub unlisted: Arc<crate::telemetry::calls::ToolSeries>,
}

/// What building runtimes needs from the gateway.
#[derive(Clone)]
pub struct RuntimeDeps {
    /// The shared upstream HTTP client.
    pub http: Arc<HttpClient>,
    /// Where upstreams send what comes outside of calls.
    pub sink: Arc<dyn Unsolicited>,
    /// Where lifecycle events go.
    pub events: Arc<EventLog>,
    /// The metric registry.
    pub metrics: Arc<Metrics>,
}

/// The server limits a runtime is built with: a change to them needs new instances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeLimits {
    timeouts: (std::time::Duration, std::time::Duration, std::time::Duration),
    max_body: usize,
}

impl RuntimeLimits {
    /// The limits that shape runtimes, from the server's.
    pub fn of(limits: &Limits) -> Self {
        Self {
            timeouts: (limits.connect_timeout, limits.first_byte_timeout, limits.idle_timeout),
            max_body: limits.max_body_bytes.max(16 << 20),
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts { connect: self.timeouts.0, first_byte: self.timeouts.1, idle: self.timeouts.2, deadline: None }
    }
}

fn next_instance() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl ProviderRuntime {
    /// A new instance of `config`. Nothing is contacted: upstreams start on first use.
    pub fn build(config: &Provider, limits: RuntimeLimits, deps: &RuntimeDeps) -> Self {
        let p = config;
        let lifecycle =
            Lifecycle::new(&p.name, p.max_consecutive_failures, p.recovery, p.circuit_breaker, deps.events.clone());
        let process_settings = || ProcessSettings {
            name: p.name.as_str().into(),
            request_timeout: limits.timeouts.1,
            max_line: limits.max_body,
        };
        let backend = match &p.kind {
            ProviderKind::Remote(r) => {
                let headers = r
                    .headers
                    .iter()
                    .filter_map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, v.expose().to_owned())))
                    .collect();
                let trust = TlsTrust::load(r.ca_file.as_deref(), r.insecure_skip_verify);
                let settings = trust.map(|trust| RemoteSettings {
                    name: p.name.as_str().into(),
                    url: r.endpoint.clone(),
                    headers,
                    timeouts: limits.timeouts(),
                    max_body: limits.max_body,
                    transport: r.transport,
                    trust,
                    forward_client_token: r.forward_client_token,
                });
                match settings.and_then(|s| Remote::new(s, deps.http.clone(), deps.sink.clone(), lifecycle.clone())) {
                    Ok(remote) => Backend::Remote(Arc::new(remote)),
                    Err(e) => Backend::Unavailable(e.to_string()),
                }
            }
            ProviderKind::Group(_) => Backend::Group,
            ProviderKind::Subprocess(sp) => Backend::Process(Arc::new(ProcessUpstream::new(
                process_settings(),
                Box::new(LocalLauncher {
                    command: sp.command.clone(),
                    env: sp.env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect(),
                    cwd: sp.cwd.clone(),
                }),
                deps.sink.clone(),
                lifecycle.clone(),
            ))),
            ProviderKind::Container(c) => Backend::Process(Arc::new(ProcessUpstream::new(
                process_settings(),
                Box::new(ContainerLauncher { spec: c.clone() }),
                deps.sink.clone(),
                lifecycle.clone(),
            ))),
        };
        Self {
            instance: next_instance(),
            config: p.clone(),
            backend,
            lists: Arc::default(),
            schemas: Default::default(),
            lifecycle,
            unlisted: Arc::default(),
        }
    }

    /// This instance under a changed configuration that needs no new instance (a description, a
    /// tool prefix, predefined tools, intervals): same upstream, lifecycle and caches.
    pub fn reconfigured(&self, config: &Provider) -> Self {
        let backend = match &self.backend {
            Backend::Remote(r) => Backend::Remote(r.clone()),
            Backend::Process(p) => Backend::Process(p.clone()),
            Backend::Group => Backend::Group,
            Backend::Unavailable(why) => Backend::Unavailable(why.clone()),
        };
        Self {
            instance: self.instance,
            config: config.clone(),
            backend,
            lists: self.lists.clone(),
            schemas: Default::default(),
            lifecycle: self.lifecycle.clone(),
            unlisted: self.unlisted.clone(),
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether it is a group.
    pub fn is_group(&self) -> bool {
        matches!(self.backend, Backend::Group)
    }

    /// Its own upstream (`None` for groups and unusable providers).
    pub fn upstream(&self) -> Option<Arc<dyn Upstream>> {
        match &self.backend {
            Backend::Remote(r) => Some(r.clone()),
            Backend::Process(p) => Some(p.clone()),
            Backend::Group | Backend::Unavailable(_) => None,
        }
    }
}
