//! Prometheus metrics. This module owns the registry and the gateway-wide series; other modules
//! register their own series here as they are added.

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The gateway's metric registry and its process-wide series.
pub struct Metrics {
    registry: Registry,
    /// Generation of the configuration snapshot in use.
    pub config_generation: IntGauge,
    /// HTTP requests answered, by endpoint class and status code.
    pub http_responses: IntCounterVec,
}

impl Metrics {
    /// Creates the registry with the build-info series set.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("mcp_hangar".into()), None).unwrap_or_default();
        let build_info = IntGauge::with_opts(
            Opts::new("build_info", "Build information; always 1.").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("literal metric definition");
        build_info.set(1);
        let config_generation = IntGauge::new("config_generation", "Generation of the configuration snapshot in use.")
            .expect("literal metric definition");
        let http_responses = IntCounterVec::new(
            Opts::new("http_responses_total", "HTTP responses sent, by endpoint and status code."),
            &["endpoint", "code"],
        )
        .expect("literal metric definition");
        for c in [
            Box::new(build_info) as Box<dyn prometheus::core::Collector>,
            Box::new(config_generation.clone()),
            Box::new(http_responses.clone()),
        ] {
            // Registration only fails for duplicate or malformed descriptors, which are fixed
            // at compile time above; losing a series is better than refusing to start.
            if let Err(e) = registry.register(c) {
                tracing::warn!("metric registration failed: {e}");
            }
        }
        Self { registry, config_generation, http_responses }
    }

    /// The text exposition of every registered series.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
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
