//! The runtime model: what the gateway runs on, with defaults filled in and references checked.
//!
//! It is separate from the file's shape on purpose: discovery sources (files, Docker labels,
//! Kubernetes annotations) all produce this model, and the gateway never sees raw YAML.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// A whole, validated configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// Listener and protocol limits.
    pub server: Server,
    /// Providers in declaration order; that order is the order of merged lists.
    pub providers: Vec<Provider>,
    /// Metrics, tracing and Langfuse export.
    pub observability: Observability,
    /// Watching the file for changes.
    pub config_reload: ConfigReload,
    /// Where else provider definitions come from.
    pub discovery: Discovery,
    /// Who may connect and what each caller may use.
    pub auth: crate::Auth,
    /// How fast each caller may go.
    pub rate_limits: crate::RateLimits,
    /// Further MCP endpoints, each a chosen set of providers with its own auth.
    pub virtual_servers: Vec<crate::VirtualServer>,
}

/// `config_reload`: the file is watched and a change is applied live (SIGHUP and the reload
/// tool work whatever this says).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigReload {
    /// Watch the file (and provider directories).
    pub enabled: bool,
    /// Use file-system notifications (inotify); otherwise, or where they are unavailable, poll.
    pub use_watchdog: bool,
    /// Polling interval.
    #[serde(rename = "interval_s", serialize_with = "crate::shown::secs")]
    pub interval: Duration,
}

impl Default for ConfigReload {
    fn default() -> Self {
        Self { enabled: true, use_watchdog: true, interval: Duration::from_secs(5) }
    }
}

/// `discovery`: provider definitions from outside the file, in the Python MCP Hangar's format.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Discovery {
    /// Use the sources at all.
    pub enabled: bool,
    /// How often sources that are not watched are read again.
    #[serde(rename = "refresh_interval_s", serialize_with = "crate::shown::secs")]
    pub refresh_interval: Duration,
    /// Register what is discovered without approval.
    pub auto_register: bool,
    /// The sources, in priority order as written.
    pub sources: Vec<DiscoverySource>,
    /// Bounds on what sources may register.
    pub security: DiscoverySecurity,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            enabled: false,
            refresh_interval: Duration::from_secs(30),
            auto_register: true,
            sources: Vec::new(),
            security: DiscoverySecurity::default(),
        }
    }
}

/// One discovery source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiscoverySource {
    /// Whether providers that disappear from the source are removed.
    pub mode: DiscoveryMode,
    /// What is read.
    pub kind: SourceKind,
}

/// What a discovery source does with providers it no longer finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    /// Only adds and updates: a provider once found stays until the gateway restarts.
    Additive,
    /// Mirrors the source: a provider no longer found is removed.
    Authoritative,
}

/// The kinds of discovery source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    /// Provider files in a directory.
    Filesystem {
        /// The directory.
        path: PathBuf,
        /// File name pattern (`*` and `?`); `*.yaml` also takes `*.yml`.
        pattern: String,
        /// Apply changes to the directory live.
        watch: bool,
    },
    /// Containers with `mcp.hangar.*` labels.
    Docker {
        /// The engine's socket (`DOCKER_HOST` or the default when absent).
        socket_path: Option<String>,
        /// Endpoints on loopback addresses are accepted (containers on the host network).
        allow_loopback: bool,
        /// Endpoints on link-local addresses (cloud metadata services among them) are accepted.
        allow_link_local: bool,
        /// How long an authoritative source keeps its providers while the engine is away.
        #[serde(rename = "grace_period_s", serialize_with = "crate::shown::secs")]
        grace_period: Duration,
    },
    /// Pods with `mcp.hangar.io/*` annotations, and the operator's custom resources.
    Kubernetes {
        /// Namespaces to watch (all allowed ones when empty).
        namespaces: Vec<String>,
        /// Label selector pods must match.
        label_selector: Option<String>,
        /// Use the pod's service account (else the kubeconfig).
        in_cluster: bool,
        /// The kubeconfig to use (else `KUBECONFIG` or `~/.kube/config`).
        kubeconfig: Option<PathBuf>,
        /// Pod addresses on loopback are accepted (tests, host-network pods).
        allow_loopback: bool,
        /// Pod addresses on link-local networks are accepted.
        allow_link_local: bool,
        /// `MCPProvider` and `MCPProviderGroup` resources are followed too (and their status
        /// written back); container-mode `MCPProvider`s get a pod the gateway runs.
        custom_resources: bool,
    },
    /// MCP Registry `server.json` documents: a registry's listing, or local files.
    Registry {
        /// A `server.json` file or a directory of them.
        path: Option<PathBuf>,
        /// A registry (its `/v0/servers` listing is read) or the URL of one `server.json`.
        url: Option<String>,
    },
    /// Python packages' entry points, each giving a provider definition.
    Entrypoint {
        /// The entry-point group.
        group: String,
        /// The interpreter of the Python environment whose packages are read.
        python: String,
    },
}

impl SourceKind {
    /// The `type` as written.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Filesystem { .. } => "filesystem",
            Self::Docker { .. } => "docker",
            Self::Kubernetes { .. } => "kubernetes",
            Self::Entrypoint { .. } => "entrypoint",
            Self::Registry { .. } => "registry",
        }
    }
}

/// `discovery.security`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiscoverySecurity {
    /// Most providers one source may register.
    pub max_providers_per_source: usize,
    /// Most new registrations per minute.
    pub max_registration_rate: u32,
    /// A discovered provider must pass a health check before it is routed to.
    pub require_health_check: bool,
    /// A discovered provider that fails is quarantined until approved.
    pub quarantine_on_failure: bool,
    /// Namespaces sources may register from (all when empty).
    pub allowed_namespaces: Vec<String>,
    /// Namespaces never registered from.
    pub denied_namespaces: Vec<String>,
}

impl Default for DiscoverySecurity {
    fn default() -> Self {
        Self {
            max_providers_per_source: 100,
            max_registration_rate: 10,
            require_health_check: true,
            quarantine_on_failure: true,
            allowed_namespaces: Vec::new(),
            denied_namespaces: Vec::new(),
        }
    }
}

impl Provider {
    /// Whether the gateway exposes the provider's tool or prompt `name` (its own name), resource
    /// URI or URI template: trimmed items are absent from lists and unknown to calls.
    pub fn exposes(&self, name: &str) -> bool {
        let matches = |patterns: &[String]| patterns.iter().any(|p| crate::glob_matches(p, name));
        (self.tools_include.is_empty() || matches(&self.tools_include)) && !matches(&self.tools_exclude)
    }
}

impl Config {
    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// Where and how the HTTP front door listens.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Server {
    /// Address to bind (`127.0.0.1` by default: local MCP servers should not face the network).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path of the MCP endpoint (`/mcp`).
    pub mcp_path: String,
    /// Origins allowed to call the endpoint from a browser; requests with any other `Origin`
    /// get 403 (DNS-rebinding protection). Default: localhost origins on any port.
    pub allowed_origins: Vec<String>,
    /// Size and time bounds.
    pub limits: Limits,
    /// Listen on a non-loopback address with authentication off (refused otherwise: anyone who
    /// reaches the port could use every provider).
    pub allow_unauthenticated: bool,
    /// Serve HTTPS with this certificate (its files are read again when they change).
    pub tls: Option<ServerTls>,
    /// Offer the gateway's own `registry_*` tools over MCP (to admins). Off, they are neither
    /// listed nor callable, and providers may use those names (a gateway behind another).
    pub admin_tools: bool,
    /// Serve the admin API and dashboard under `/admin/` (to admins; the page itself is public).
    pub admin_api: bool,
}

/// `server.tls`: the front door's certificate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerTls {
    /// PEM: the certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Bounds on what one client or upstream may cost the gateway.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Largest total size of request headers accepted (431 beyond).
    pub max_header_bytes: usize,
    /// Time to establish a connection to an upstream.
    #[serde(rename = "connect_timeout_s", serialize_with = "crate::shown::secs")]
    pub connect_timeout: Duration,
    /// Time from sending a request to the first byte of the upstream's answer.
    #[serde(rename = "first_byte_timeout_s", serialize_with = "crate::shown::secs")]
    pub first_byte_timeout: Duration,
    /// Longest silence tolerated on an open stream before it is closed.
    #[serde(rename = "idle_timeout_s", serialize_with = "crate::shown::secs")]
    pub idle_timeout: Duration,
    /// Most long-lived streams (legacy GET, `subscriptions/listen`) open at once.
    pub max_concurrent_streams: usize,
    /// Most legacy client sessions open at once.
    pub max_sessions: usize,
    /// A legacy session with no request and no open stream for this long is ended.
    #[serde(rename = "session_idle_timeout_s", serialize_with = "crate::shown::secs")]
    pub session_idle_timeout: Duration,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(rename = "shutdown_timeout_s", serialize_with = "crate::shown::secs")]
    pub shutdown_timeout: Duration,
    /// Most legacy sessions one client address may hold, so one client cannot take them all.
    pub max_sessions_per_client: usize,
    /// Most legacy requests one session may have in flight.
    pub max_requests_per_session: usize,
    /// Most legacy requests in flight over all sessions (each runs on a task of its own).
    pub max_legacy_requests: usize,
    /// Most bytes of request and reply bodies held in memory at once, over all requests.
    pub max_buffered_bytes: usize,
    /// A write to a client that does not complete in this time drops the client (it stopped
    /// reading).
    #[serde(rename = "client_write_timeout_s", serialize_with = "crate::shown::secs")]
    pub client_write_timeout: Duration,
    /// Time a client has to send a whole request header, from its first byte.
    #[serde(rename = "header_timeout_s", serialize_with = "crate::shown::secs")]
    pub header_timeout: Duration,
    /// Slowest average rate a request body may arrive at (after a few seconds' allowance).
    #[serde(rename = "min_body_rate_bytes_s")]
    pub min_body_rate: usize,
    /// Most client connections open at once; `None`: derived from the open-file limit.
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(600),
            max_concurrent_streams: 20_000,
            max_sessions: 10_000,
            session_idle_timeout: Duration::from_secs(3600),
            shutdown_timeout: Duration::from_secs(10),
            max_sessions_per_client: 1000,
            max_requests_per_session: 64,
            max_legacy_requests: 4096,
            max_buffered_bytes: 256 * 1024 * 1024,
            client_write_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            min_body_rate: 4096,
            max_connections: None,
        }
    }
}

/// One provider (an MCP server, or a group of them).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provider {
    /// Unique name; also the default tool prefix and the metrics label.
    pub name: String,
    /// Prepended to this provider's tool and prompt names (`"<name>__"` unless configured).
    pub tool_prefix: String,
    /// Whether the provider's tools are listed on their own (group members often are not).
    pub expose: bool,
    /// Free text for operators.
    pub description: Option<String>,
    /// A provider with no call in flight for this long is stopped.
    #[serde(rename = "idle_ttl_s", serialize_with = "crate::shown::secs")]
    pub idle_ttl: Duration,
    /// Interval of active health checks.
    #[serde(rename = "health_check_interval_s", serialize_with = "crate::shown::secs")]
    pub health_check_interval: Duration,
    /// Consecutive failures before the provider is marked degraded.
    pub max_consecutive_failures: u32,
    /// Tools listed before the provider has started (as given, un-prefixed).
    pub tools: Vec<PredefinedTool>,
    /// How a DEAD provider is brought back.
    pub recovery: Recovery,
    /// Longest wait for an active health check.
    #[serde(rename = "health_check_timeout_s", serialize_with = "crate::shown::secs")]
    pub health_check_timeout: Duration,
    /// When calls stop going to the provider for a while.
    pub circuit_breaker: CircuitBreaker,
    /// Started as soon as it is configured (at start-up, or when a reload adds or replaces it)
    /// rather than on its first call, and never stopped for being idle: for providers whose
    /// start is too slow for a client's first call.
    pub warm: bool,
    /// Which of its tools, prompts and resources the gateway exposes at all (globs over tool and
    /// prompt names as the provider gives them, and resource URIs and URI templates); empty: all.
    pub tools_include: Vec<String>,
    /// Which it hides, whatever `tools_include` says.
    pub tools_exclude: Vec<String>,
    /// Calls routed to this provider, from everyone (replaces `rate_limits.per_provider`).
    pub rate_limit: Option<crate::Rate>,
    /// Check tool arguments against the tool's `inputSchema` at the gateway, before the
    /// provider is started or called.
    pub validate_arguments: bool,
    /// Longest a call routed to the provider may take, however busy its stream looks (progress,
    /// keep-alives): the client then gets a timeout error and the upstream a cancellation.
    #[serde(rename = "call_timeout_s", serialize_with = "crate::shown::secs")]
    pub call_timeout: Duration,
    /// How the provider is reached.
    #[serde(flatten)]
    pub kind: ProviderKind,
    /// The file it was defined in, when that is not the configuration file (a discovery
    /// source's provider file).
    pub source: Option<PathBuf>,
}

/// Recovery of a DEAD provider: attempts with exponential backoff and jitter, bounded.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Recovery {
    /// Attempts before giving up (the provider then stays DEAD until started by hand).
    pub max_attempts: u32,
    /// Delay before the first attempt; doubled after each failure.
    #[serde(rename = "backoff_s", serialize_with = "crate::shown::secs")]
    pub backoff: Duration,
    /// Longest delay between attempts.
    #[serde(rename = "max_backoff_s", serialize_with = "crate::shown::secs")]
    pub max_backoff: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Self { max_attempts: 5, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) }
    }
}

/// The circuit breaker of a provider: it opens when `max_consecutive_failures` calls fail in a row
/// or the error rate over the last calls reaches `error_rate`; after `open_s` it lets
/// `half_open_probes` calls through, which close it again or re-open it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CircuitBreaker {
    /// How long the breaker stays open before probing.
    #[serde(rename = "open_s", serialize_with = "crate::shown::secs")]
    pub open: Duration,
    /// Calls let through while half-open.
    pub half_open_probes: u32,
    /// Failure share (0..1] of the recent calls that opens the breaker.
    pub error_rate: f64,
    /// Calls needed in the window before the error rate counts.
    pub min_calls: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self { open: Duration::from_secs(30), half_open_probes: 1, error_rate: 0.5, min_calls: 10 }
    }
}

/// A tool definition from the configuration, served while the provider is cold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PredefinedTool {
    /// The provider's own name for the tool.
    #[serde(skip)]
    pub name: String,
    /// The full MCP `Tool` object (name, description, inputSchema, …) as JSON.
    #[serde(flatten)]
    pub definition: serde_json::Value,
}

/// How a provider is reached.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ProviderKind {
    /// A child process speaking MCP over stdio.
    Subprocess(Subprocess),
    /// A container speaking MCP over attached stdio.
    Container(Container),
    /// An MCP server over HTTP.
    Remote(Remote),
    /// A pool of other providers.
    Group(Group),
}

impl ProviderKind {
    /// The mode's name as written in the file.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Subprocess(_) => "subprocess",
            Self::Container(_) => "container",
            Self::Remote(_) => "remote",
            Self::Group(_) => "group",
        }
    }
}

/// `mode: subprocess`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Subprocess {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment variables for the child.
    #[serde(serialize_with = "crate::shown::redacted_pairs")]
    pub env: Vec<(String, Secret)>,
    /// Working directory of the child (the gateway's own when absent).
    pub cwd: Option<PathBuf>,
}

/// `mode: container` (alias `docker`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Container {
    /// Image reference.
    pub image: String,
    /// Overrides the image's command when non-empty.
    pub command: Vec<String>,
    /// Environment of the container.
    #[serde(serialize_with = "crate::shown::redacted_pairs")]
    pub env: Vec<(String, Secret)>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Docker network mode (`none` by default: providers get no network unless asked).
    pub network: String,
    /// Read-only root filesystem (default true).
    pub read_only: bool,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
}

/// One bind mount, `host:container[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Volume {
    /// Path on the host.
    pub host: String,
    /// Path inside the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// `mode: remote`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Remote {
    /// URL of the MCP endpoint (`http://` or `https://`).
    #[serde(serialize_with = "crate::shown::url")]
    pub endpoint: String,
    /// Headers sent with every request (credentials, usually).
    #[serde(serialize_with = "crate::shown::redacted_pairs")]
    pub headers: Vec<(String, Secret)>,
    /// Which HTTP transport the upstream speaks.
    pub transport: RemoteTransport,
    /// PEM file of the certificate authorities an `https` endpoint's certificate must chain to
    /// (instead of the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate and host name on an `https` endpoint (tests and labs only: anyone
    /// on the path can then read and change the traffic).
    pub insecure_skip_verify: bool,
    /// Send the client's own `Authorization` header to this provider on the requests made for
    /// that client (token pass-through), in place of a configured one. Off by default: the MCP
    /// authorization spec forbids it unless the provider is meant to accept the client's token.
    pub forward_client_token: bool,
}

/// The HTTP transport of a remote provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteTransport {
    /// Probe: modern streamable HTTP, then legacy streamable HTTP, then HTTP+SSE.
    Auto,
    /// Streamable HTTP (either era; the era is negotiated).
    StreamableHttp,
    /// The deprecated 2024-11-05 HTTP+SSE transport.
    Sse,
}

/// `mode: group`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Group {
    /// How a member is chosen for each call.
    pub strategy: Strategy,
    /// The pool, in declaration order.
    pub members: Vec<Member>,
    /// For `consistent_hash`: what to hash (`caller`, or `arg:<name>` for a tool argument).
    pub hash_key: Option<String>,
}

/// Member selection strategy of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Smooth weighted round-robin (nginx style).
    WeightedRoundRobin,
    /// Lowest priority tier with a healthy member.
    Priority,
    /// Fewest in-flight calls relative to weight.
    LeastConnections,
    /// Stable member per hash key.
    ConsistentHash,
    /// A member at random, in proportion to its weight.
    Random,
}

impl ProviderKind {
    /// The member called `name`, for a group.
    pub fn group_member(&self, name: &str) -> Option<&Member> {
        match self {
            Self::Group(g) => g.members.iter().find(|m| m.provider == name),
            _ => None,
        }
    }
}

impl Strategy {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::Priority => "priority",
            Self::LeastConnections => "least_connections",
            Self::ConsistentHash => "consistent_hash",
            Self::Random => "random",
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// Name of the member provider.
    pub provider: String,
    /// Relative share of traffic (≥ 1).
    pub weight: u32,
    /// Tier; lower is preferred.
    pub priority: u32,
}

/// Metrics, tracing, Langfuse export and the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Observability {
    /// OpenTelemetry traces over OTLP.
    pub tracing: Tracing,
    /// Prometheus endpoint.
    pub metrics: Metrics,
    /// Traces to Langfuse through its OTLP endpoint.
    pub langfuse: Langfuse,
    /// The audit log.
    pub audit: Audit,
    /// One log line per HTTP request (target `mcp_hangar::access`).
    pub access_log: bool,
}

/// OpenTelemetry tracing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tracing {
    /// Export spans (`MCP_TRACING_ENABLED` overrides).
    pub enabled: bool,
    /// OTLP collector URL (default: `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4317`).
    #[serde(serialize_with = "crate::shown::url")]
    pub otlp_endpoint: String,
    /// OTLP transport.
    pub protocol: OtlpProtocol,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, `/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// The audit log: every domain event and tool call, one JSON object per line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Audit {
    /// Write it.
    pub enabled: bool,
    /// The current file; rotated files get `.1`, `.2`, … appended.
    pub path: std::path::PathBuf,
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// When written records are forced to disk.
    #[serde(serialize_with = "crate::shown::fsync")]
    pub fsync: Fsync,
    /// Record tool-call arguments (values under redacted keys are replaced).
    pub arguments: bool,
    /// Argument keys (case-insensitive substrings) whose values are never recorded.
    pub redact: Vec<String>,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "mcp-hangar-audit.jsonl".into(),
            max_bytes: 64 << 20,
            keep: 5,
            fsync: Fsync::Interval(Duration::from_secs(1)),
            arguments: false,
            redact: ["password", "secret", "token", "api_key", "apikey", "authorization", "credential"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// When the audit writer forces records to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch of records (a crash loses nothing that was written).
    Always,
    /// At most this long after a record was written.
    Interval(Duration),
    /// Never explicitly (the OS decides; a machine crash may lose recent records).
    Never,
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Path of the endpoint.
    pub endpoint: String,
}

/// Langfuse export.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Langfuse {
    /// Export spans to Langfuse.
    pub enabled: bool,
    /// Public key (basic-auth user).
    pub public_key: Secret,
    /// Secret key (basic-auth password).
    pub secret_key: Secret,
    /// Langfuse base URL.
    #[serde(serialize_with = "crate::shown::url")]
    pub host: String,
}
