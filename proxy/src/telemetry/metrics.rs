//! Prometheus metrics: the registry and every series the gateway exports, under the
//! `mcp_hangar_` prefix.
//!
//! Label values are bounded: providers and groups come from the configuration, tools from the
//! providers' lists (anything else is `other`), methods from the MCP method set, states and
//! outcomes from fixed sets. Nothing from raw input becomes a label.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::lifecycle::events::{EventSink, ProviderEvent};

/// Buckets for call latencies, in seconds: 1 ms to 2 minutes.
const CALL_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];
/// Buckets for starts and health checks, in seconds.
const START_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Provider states, as the `state` label of `provider_state`.
const STATES: [&str; 5] = ["COLD", "INITIALIZING", "READY", "DEGRADED", "DEAD"];

/// JSON-RPC methods counted under their own name; the rest count as `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Protocol eras, as the `era` label of `requests_total`.
const ERAS: [&str; 2] = ["modern", "legacy"];

/// Endpoint classes, as the `endpoint` label of `http_responses_total`.
const ENDPOINTS: [&str; 7] = ["mcp", "health", "metrics", "admin", "oauth_metadata", "not_found", "other"];

/// Status codes counted under their own label, then `none` (nothing written) and `other`.
const CODES: [&str; 18] = [
    "200", "202", "400", "401", "403", "404", "405", "406", "413", "415", "429", "431", "500", "502", "503", "504",
    "none", "other",
];

/// The prefix of every series name.
const NAMESPACE: &str = "mcp_hangar";

/// One registered series as the metrics reference lists it.
struct SeriesInfo {
    name: String,
    kind: String,
    labels: Vec<String>,
    help: String,
}

/// Counters of a family whose two labels take their values from fixed lists, each bound on its
/// first count (so the exposition shows the combinations that happened, as `with_label_values`
/// alone would) and from then on found by position: counting hashes no labels.
struct Cells<const A: usize, const B: usize>([[OnceLock<IntCounter>; B]; A]);

impl<const A: usize, const B: usize> Cells<A, B> {
    fn new() -> Self {
        Self(std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())))
    }

    /// The counter of labels `(a, b)` of `family`: `labels[0]` is the `a`th value of its list,
    /// `labels[1]` the `b`th; `None` for a position past a list.
    fn get(&self, family: &IntCounterVec, (a, b): (usize, usize), labels: [&str; 2]) -> Option<&IntCounter> {
        Some(self.0.get(a)?.get(b)?.get_or_init(|| family.with_label_values(&labels)))
    }
}

/// The gateway's metric registry and its series.
pub struct Metrics {
    registry: Registry,
    /// `requests_total`'s counters by method and era position.
    request_cells: Cells<{ METHODS.len() + 1 }, { ERAS.len() }>,
    /// `http_responses_total`'s counters by endpoint and code position.
    response_cells: Cells<{ ENDPOINTS.len() }, { CODES.len() }>,
    /// Name, type, labels and help of every registered series, for the metrics reference.
    catalogue: Vec<SeriesInfo>,
    /// Generation of the configuration snapshot in use.
    pub config_generation: IntGauge,
    /// HTTP responses, by endpoint class and status code.
    pub http_responses: IntCounterVec,
    /// JSON-RPC requests received, by method and protocol era.
    pub requests: IntCounterVec,
    /// Requests being handled now (set when scraped).
    pub requests_in_flight: IntGauge,
    /// Tool calls, by provider, tool and outcome.
    pub tool_calls: IntCounterVec,
    /// Tool call latency, by provider and tool.
    pub tool_call_duration: HistogramVec,
    /// 1 for each provider's current state, 0 for the others.
    pub provider_state: IntGaugeVec,
    /// Provider state transitions, by provider, old and new state.
    pub provider_transitions: IntCounterVec,
    /// Completed starts of a provider (process spawned or upstream contacted, handshake done).
    pub cold_starts: IntCounterVec,
    /// How long starts took, successful or not.
    pub cold_start_duration: HistogramVec,
    /// Breaker state per provider: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// Times a provider's breaker opened.
    pub breaker_trips: IntCounterVec,
    /// Active health checks, by provider and outcome.
    pub health_checks: IntCounterVec,
    /// Health check latency.
    pub health_check_duration: HistogramVec,
    /// Calls retried on another member, by group.
    pub retries: IntCounterVec,
    /// Priority groups moving to another tier, by group and direction (`failover`, `failback`).
    pub failovers: IntCounterVec,
    /// Audit records that could not be written (the writer fell behind or the disk failed).
    pub audit_dropped: IntCounterVec,
    /// Trace export batches the collector did not take.
    pub trace_export_failures: IntCounterVec,
    /// Work refused or cut short by a bound, by [`Limit`].
    pub limit_hits: IntCounterVec,
    /// Configuration reloads, by outcome (`applied`, `unchanged`, `rejected`).
    pub config_reloads: IntCounterVec,
    /// How long reloads took (read, validate, swap), applied or not.
    pub config_reload_duration: HistogramVec,
    /// Requests refused authentication, by reason (`missing`, `invalid`, `unavailable`).
    pub auth_failures: IntCounterVec,
    /// Tools, prompts and resources refused by authorization, by provider (`hangar`: admin tools).
    pub authorization_denied: IntCounterVec,
    /// Requests refused by a rate limit (HTTP 429), by bucket (`principal`, `principal_tool`,
    /// `provider`).
    pub rate_limited: IntCounterVec,
    /// Providers a discovery source defines now, by source (`<type>[<index>]`).
    pub discovery_providers: IntGaugeVec,
    /// Looks at a discovery source that failed (engine unreachable, list refused), by source.
    pub discovery_sync_errors: IntCounterVec,
    /// When a discovery source last looked successfully (seconds since the epoch), by source.
    pub discovery_last_sync: IntGaugeVec,
    /// Discovered providers held in quarantine.
    pub discovery_quarantined: IntGauge,
}

/// The bounds that protect the gateway from one client (or upstream), as the `limit` label of
/// `limit_hits_total`: each says which bound refused or cut something short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `server.limits.max_connections`: a connection refused with 503.
    Connections,
    /// A client took longer than the header deadline to send a request header.
    HeaderTimeout,
    /// A request body arrived slower than the minimum rate.
    BodyTooSlow,
    /// A client stopped reading: a write to it missed its deadline.
    SlowReader,
    /// `server.limits.max_buffered_bytes`: bodies held in memory across all requests.
    BufferBudget,
    /// Legacy sessions: all `max_sessions`, or the per-client share, are taken.
    Sessions,
    /// Legacy requests running at once, per session or in total.
    LegacyRequests,
    /// Messages kept for replay on one legacy reply stream.
    ReplayBuffer,
    /// Server→client requests awaiting one legacy client's answers.
    PendingServerRequests,
    /// An unknown resource URI did not refresh the lists (one refresh a second).
    UriRefresh,
    /// `registry_audit` stopped reading the trail at its scan limit.
    AuditScan,
}

impl Limit {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::HeaderTimeout => "header_timeout",
            Self::BodyTooSlow => "body_too_slow",
            Self::SlowReader => "slow_reader",
            Self::BufferBudget => "buffer_budget",
            Self::Sessions => "sessions",
            Self::LegacyRequests => "legacy_requests",
            Self::ReplayBuffer => "replay_buffer",
            Self::PendingServerRequests => "pending_server_requests",
            Self::UriRefresh => "uri_refresh",
            Self::AuditScan => "audit_scan",
        }
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("literal metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("literal metric definition")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("literal metric definition")
}

impl Metrics {
    /// Creates the registry with every series registered.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some(NAMESPACE.into()), None).unwrap_or_default();
        let build_info = IntGauge::with_opts(
            Opts::new("build_info", "Build information; always 1.").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("literal metric definition");
        build_info.set(1);
        let mut m = Self {
            request_cells: Cells::new(),
            response_cells: Cells::new(),
            catalogue: Vec::new(),
            config_generation: IntGauge::new("config_generation", "Generation of the configuration snapshot in use.")
                .expect("literal metric definition"),
            http_responses: counter(
                "http_responses_total",
                "HTTP responses sent, by endpoint and status code.",
                &["endpoint", "code"],
            ),
            requests: counter(
                "requests_total",
                "JSON-RPC requests received, by method and protocol era.",
                &["method", "era"],
            ),
            requests_in_flight: IntGauge::new("requests_in_flight", "Requests being handled.")
                .expect("literal metric definition"),
            tool_calls: counter(
                "tool_calls_total",
                "Tool calls, by provider, tool and outcome.",
                &["provider", "tool", "outcome"],
            ),
            tool_call_duration: histogram(
                "tool_call_duration_seconds",
                "Tool call latency at the gateway, by provider and tool.",
                &["provider", "tool"],
                CALL_BUCKETS,
            ),
            provider_state: gauge(
                "provider_state",
                "1 for the provider's current lifecycle state.",
                &["provider", "state"],
            ),
            provider_transitions: counter(
                "provider_transitions_total",
                "Provider lifecycle transitions, by provider and states.",
                &["provider", "from", "to"],
            ),
            cold_starts: counter(
                "cold_starts_total",
                "Provider starts, by provider and outcome.",
                &["provider", "outcome"],
            ),
            cold_start_duration: histogram(
                "cold_start_duration_seconds",
                "How long provider starts took, by provider.",
                &["provider"],
                START_BUCKETS,
            ),
            breaker_state: gauge(
                "circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                &["provider"],
            ),
            breaker_trips: counter(
                "circuit_breaker_trips_total",
                "Times the provider's circuit breaker opened.",
                &["provider"],
            ),
            health_checks: counter(
                "health_checks_total",
                "Active health checks, by provider and outcome.",
                &["provider", "outcome"],
            ),
            health_check_duration: histogram(
                "health_check_duration_seconds",
                "Active health check latency, by provider.",
                &["provider"],
                START_BUCKETS,
            ),
            retries: counter("retries_total", "Calls retried on another group member, by group.", &["group"]),
            failovers: counter(
                "failovers_total",
                "Priority groups moving to another tier, by group and direction.",
                &["group", "direction"],
            ),
            audit_dropped: counter(
                "audit_dropped_total",
                "Audit records that could not be written, by reason.",
                &["reason"],
            ),
            trace_export_failures: counter(
                "trace_export_failures_total",
                "Span batches the trace collector did not accept, by exporter.",
                &["exporter"],
            ),
            limit_hits: counter("limit_hits_total", "Work refused or cut short by a bound, by limit.", &["limit"]),
            config_reloads: counter(
                "config_reloads_total",
                "Configuration reloads, by outcome (applied, unchanged, rejected).",
                &["outcome"],
            ),
            config_reload_duration: histogram(
                "config_reload_duration_seconds",
                "How long configuration reloads took.",
                &["outcome"],
                CALL_BUCKETS,
            ),
            auth_failures: counter(
                "auth_failures_total",
                "Requests refused authentication (HTTP 401/503), by reason.",
                &["reason"],
            ),
            authorization_denied: counter(
                "authorization_denied_total",
                "Tools, prompts and resources refused by authorization, by provider.",
                &["provider"],
            ),
            rate_limited: counter(
                "rate_limited_total",
                "Requests refused by a rate limit (HTTP 429), by bucket.",
                &["limit"],
            ),
            discovery_providers: gauge(
                "discovery_providers",
                "Providers a discovery source defines now, by source.",
                &["source"],
            ),
            discovery_sync_errors: counter(
                "discovery_sync_errors_total",
                "Looks at a discovery source that failed, by source.",
                &["source"],
            ),
            discovery_last_sync: gauge(
                "discovery_last_sync_timestamp_seconds",
                "When a discovery source last looked successfully (Unix time), by source.",
                &["source"],
            ),
            discovery_quarantined: IntGauge::new("discovery_quarantined", "Discovered providers held in quarantine.")
                .expect("literal metric definition"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build_info),
            Box::new(m.config_generation.clone()),
            Box::new(m.http_responses.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.requests_in_flight.clone()),
            Box::new(m.tool_calls.clone()),
            Box::new(m.tool_call_duration.clone()),
            Box::new(m.provider_state.clone()),
            Box::new(m.provider_transitions.clone()),
            Box::new(m.cold_starts.clone()),
            Box::new(m.cold_start_duration.clone()),
            Box::new(m.breaker_state.clone()),
            Box::new(m.breaker_trips.clone()),
            Box::new(m.health_checks.clone()),
            Box::new(m.health_check_duration.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.failovers.clone()),
            Box::new(m.audit_dropped.clone()),
            Box::new(m.trace_export_failures.clone()),
            Box::new(m.limit_hits.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.config_reload_duration.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.authorization_denied.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.discovery_providers.clone()),
            Box::new(m.discovery_sync_errors.clone()),
            Box::new(m.discovery_last_sync.clone()),
            Box::new(m.discovery_quarantined.clone()),
        ];
        for c in collectors {
            // Each collector here is one series: one descriptor, one family.
            let labels: Vec<String> = c.desc().iter().flat_map(|d| d.variable_labels.iter().cloned()).collect();
            for family in c.collect() {
                m.catalogue.push(SeriesInfo {
                    name: format!("{NAMESPACE}_{}", family.name()),
                    kind: format!("{:?}", family.get_field_type()).to_lowercase(),
                    labels: labels.clone(),
                    help: family.help().to_owned(),
                });
            }
            // Registration only fails for duplicate or malformed descriptors, which are fixed
            // at compile time above; losing a series is better than refusing to start.
            if let Err(e) = m.registry.register(c) {
                tracing::warn!("metric registration failed: {e}");
            }
        }
        m
    }

    /// Starts the per-provider series at their initial values, so they exist before anything
    /// happens (a provider that never started still shows as COLD with a closed breaker).
    pub fn init_provider(&self, provider: &str) {
        for state in STATES {
            self.provider_state.with_label_values(&[provider, state]).set(i64::from(state == "COLD"));
        }
        self.breaker_state.with_label_values(&[provider]).set(0);
    }

    /// Counts a JSON-RPC request; returns the label it was counted under (`method` if it is an
    /// MCP method, else `other`), which the access log uses too.
    pub fn request(&self, method: &str, era: &'static str) -> &'static str {
        let at = METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len());
        let label = METHODS.get(at).copied().unwrap_or("other");
        let labels = [label, era];
        match ERAS.iter().position(|e| *e == era).and_then(|e| self.request_cells.get(&self.requests, (at, e), labels))
        {
            Some(counter) => counter.inc(),
            None => self.requests.with_label_values(&labels).inc(),
        }
        label
    }

    /// Counts an HTTP response of `code` (0: none was written) from endpoint class `endpoint`.
    pub fn response(&self, endpoint: &'static str, code: u16) {
        let at = code_index(code);
        let labels = [endpoint, CODES[at]];
        let cell = ENDPOINTS.iter().position(|e| *e == endpoint);
        match cell.and_then(|e| self.response_cells.get(&self.http_responses, (e, at), labels)) {
            Some(counter) => counter.inc(),
            None => self.http_responses.with_label_values(&labels).inc(),
        }
    }

    /// Records one tool call; `tool` must be a bounded name (see the module docs).
    pub fn tool_call(&self, provider: &str, tool: &str, outcome: &'static str, elapsed: Duration) {
        self.tool_calls.with_label_values(&[provider, tool, outcome]).inc();
        self.tool_call_duration.with_label_values(&[provider, tool]).observe(elapsed.as_secs_f64());
    }

    /// Counts a bound that refused or cut short some work.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits.with_label_values(&[limit.as_str()]).inc();
    }

    /// Records one active health check.
    pub fn health_check(&self, provider: &str, ok: bool, elapsed: Duration) {
        self.health_checks.with_label_values(&[provider, if ok { "ok" } else { "failed" }]).inc();
        self.health_check_duration.with_label_values(&[provider]).observe(elapsed.as_secs_f64());
    }

    /// The metrics reference (`docs/metrics.md`'s table): one Markdown row per series, so the
    /// document is generated from what is registered and a test keeps the two equal.
    pub fn reference(&self) -> String {
        let mut out = String::from("| series | type | labels | meaning |\n|---|---|---|---|\n");
        for s in &self.catalogue {
            let labels = s.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
            out.push_str(&format!("| `{}` | {} | {} | {} |\n", s.name, s.kind, labels, s.help));
        }
        out
    }

    /// Every registered series in the OpenMetrics text format.
    pub fn render_openmetrics(&self) -> String {
        crate::telemetry::openmetrics::encode(&self.registry.gather())
    }

    /// The text exposition of every registered series.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The position in [`CODES`] of status `code`'s label.
fn code_index(code: u16) -> usize {
    match code {
        200 => 0,
        202 => 1,
        400 => 2,
        401 => 3,
        403 => 4,
        404 => 5,
        405 => 6,
        406 => 7,
        413 => 8,
        415 => 9,
        429 => 10,
        431 => 11,
        500 => 12,
        502 => 13,
        503 => 14,
        504 => 15,
        0 => 16,
        _ => 17,
    }
}

impl EventSink for Metrics {
    fn event(&self, e: &ProviderEvent) {
        let p = e.provider.as_str();
        if e.from == "GROUP" {
            if matches!(e.cause, "failover" | "failback") {
                self.failovers.with_label_values(&[p, e.cause]).inc();
            }
            return;
        }
        if e.from != e.to {
            self.provider_transitions.with_label_values(&[p, e.from, e.to]).inc();
            self.provider_state.with_label_values(&[p, e.from]).set(0);
            self.provider_state.with_label_values(&[p, e.to]).set(1);
        }
        match e.cause {
            "ready" | "start_failed" => {
                let outcome = if e.cause == "ready" { "ok" } else { "failed" };
                self.cold_starts.with_label_values(&[p, outcome]).inc();
                if let Some(ms) = e.duration_ms {
                    self.cold_start_duration.with_label_values(&[p]).observe(ms as f64 / 1000.0);
                }
            }
            "breaker_open" => {
                self.breaker_trips.with_label_values(&[p]).inc();
                self.breaker_state.with_label_values(&[p]).set(1);
            }
            "breaker_half_open" => self.breaker_state.with_label_values(&[p]).set(2),
            "breaker_closed" => self.breaker_state.with_label_values(&[p]).set(0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample of `family` whose labels are exactly `labels`.
    fn sample(m: &Metrics, family: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let family = m.registry.gather().into_iter().find(|f| f.name() == format!("{NAMESPACE}_{family}"))?;
        let metric = family.get_metric().iter().find(|s| {
            let got: Vec<(&str, &str)> = s.get_label().iter().map(|l| (l.name(), l.value())).collect();
            labels.iter().all(|want| got.contains(want)) && got.len() == labels.len()
        })?;
        Some(metric.get_counter().get_value() as u64)
    }

    #[test]
    fn counts_by_position_land_on_their_labelled_series() {
        let m = Metrics::new();
        assert_eq!(m.request("tools/call", "modern"), "tools/call");
        m.request("tools/call", "modern");
        m.request("tools/call", "legacy");
        assert_eq!(m.request("x/unknown", "legacy"), "other");
        m.request("ping", "neither");
        let requests = |method, era| sample(&m, "requests_total", &[("method", method), ("era", era)]);
        assert_eq!(requests("tools/call", "modern"), Some(2));
        assert_eq!(requests("tools/call", "legacy"), Some(1));
        assert_eq!(requests("other", "legacy"), Some(1), "an unknown method counts as other");
        assert_eq!(requests("ping", "neither"), Some(1), "a label off the lists is still counted");
        assert_eq!(requests("ping", "modern"), None, "only combinations that happened are shown");
        m.response("mcp", 200);
        m.response("mcp", 299);
        m.response("health", 0);
        m.response("elsewhere", 404);
        let responses = |endpoint, code| sample(&m, "http_responses_total", &[("endpoint", endpoint), ("code", code)]);
        assert_eq!(responses("mcp", "200"), Some(1));
        assert_eq!(responses("mcp", "other"), Some(1));
        assert_eq!(responses("health", "none"), Some(1));
        assert_eq!(responses("elsewhere", "404"), Some(1));
        for outcome in ["ok", "ok", "tool_error"] {
            m.tool_call("p", "t", outcome, Duration::from_millis(3));
        }
        m.tool_call("p", "u", "ok", Duration::from_millis(3));
        let calls =
            |tool, outcome| sample(&m, "tool_calls_total", &[("provider", "p"), ("tool", tool), ("outcome", outcome)]);
        assert_eq!((calls("t", "ok"), calls("t", "tool_error"), calls("u", "ok")), (Some(2), Some(1), Some(1)));
        let family = m.registry.gather().into_iter().find(|f| f.name() == "mcp_hangar_tool_call_duration_seconds");
        let observed: u64 =
            family.map_or(0, |f| f.get_metric().iter().map(|s| s.get_histogram().get_sample_count()).sum());
        assert_eq!(observed, 4, "every call's duration");
        for (i, code) in CODES.iter().enumerate().take(16) {
            assert_eq!(code_index(code.parse().expect("a number")), i, "{code}");
        }
    }
}
