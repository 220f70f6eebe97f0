//! Docker and Podman discovery (`type: docker`): running containers labelled
//! `mcp.hangar.enabled: "true"` become remote providers at the container's address, with the
//! Python MCP Hangar's labels (see [`super::labels`]).
//!
//! The engine's event stream drives it: any container event relists the labelled containers (a
//! list is the whole truth, so a missed event is mended by the next one, and by the relist every
//! `refresh_interval_s`). The list is taken after the event stream starts, so nothing between the
//! two is lost. An engine that goes away is retried with backoff; an authoritative source's
//! providers are dropped once it has been gone for `grace_period_s` (30 s), an additive source's
//! stay.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::ContainerSummary;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use hangar_config::{DiscoveryMode, DiscoverySource, Provider, SourceKind};

use super::labels::{self, AddressPolicy, Found, Workload};
use crate::state::AppState;

const KIND: &str = "docker";

/// Longest wait between attempts to reach the engine.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Events that arrive together are answered by one relist.
const SETTLE: Duration = Duration::from_millis(50);

/// One `type: docker` source.
struct DockerSource {
    index: usize,
    mode: DiscoveryMode,
    socket_path: Option<String>,
    addresses: AddressPolicy,
    /// How long an authoritative source's providers outlive an engine that went away.
    grace: Duration,
}

/// Follows source `index` (a Docker source) until shutdown.
pub fn spawn(state: &Arc<AppState>, index: usize, source: &DiscoverySource) -> Option<tokio::task::AbortHandle> {
    if let SourceKind::Docker { socket_path, allow_loopback, allow_link_local, grace_period } = &source.kind {
        let source = DockerSource {
            index,
            mode: source.mode,
            socket_path: socket_path.clone(),
            addresses: AddressPolicy { loopback: *allow_loopback, link_local: *allow_link_local },
            grace: *grace_period,
        };
        return Some(tokio::spawn(source.run(state.clone())).abort_handle());
    }
    None
}

impl DockerSource {
    /// Follows the engine until shutdown, reconnecting with backoff.
    async fn run(self, state: Arc<AppState>) {
        let mut shutdown = state.shutdown_signal();
        let mut refresh = state.reconciler.live().refresh_signal();
        let mut backoff = Duration::from_millis(500);
        let mut lost_since: Option<Instant> = None;
        loop {
            let mut synced = false;
            let why = tokio::select! {
                why = self.follow(&state, &mut synced) => why,
                _ = shutdown.changed() => return,
            };
            super::record(&state, self.index, KIND, self.mode, Err(why));
            let live = state.reconciler.live();
            if synced {
                backoff = Duration::from_millis(500);
                lost_since = None;
            }
            let since = *lost_since.get_or_insert_with(Instant::now);
            if self.mode == DiscoveryMode::Authoritative && since.elapsed() >= self.grace && live.forget(self.index) {
                tracing::warn!(
                    source = self.index,
                    "discovery: the container engine stayed away; its providers are removed"
                );
                let _ = state.reconciler.reload(&state, "discovery: docker engine lost", true).await;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = refresh.changed() => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, lists, and relists on every container event until the engine goes away;
    /// returns why it stopped. `synced` says whether a list succeeded meanwhile.
    async fn follow(&self, state: &Arc<AppState>, synced: &mut bool) -> String {
        let docker = match &self.socket_path {
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_defaults(),
        };
        let docker = match docker {
            Ok(d) => d,
            Err(e) => return format!("cannot reach the container engine: {e}"),
        };
        let filters = HashMap::from([("type", vec!["container"])]);
        let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        // The stream's request goes out on its first poll: start it before listing.
        match tokio::time::timeout(SETTLE, events.next()).await {
            Ok(None) => return "the container engine's event stream ended".into(),
            Ok(Some(Err(e))) => return format!("cannot follow the container engine's events: {e}"),
            Ok(Some(Ok(_))) | Err(_) => {}
        }
        let every = state.snapshot().config.discovery.refresh_interval.max(Duration::from_secs(1));
        let mut refresh = state.reconciler.live().refresh_signal();
        let mut relist = tokio::time::interval(every);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = self.sync(&docker, state).await {
                return e;
            }
            *synced = true;
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(_)) => tokio::time::sleep(SETTLE).await,
                    Some(Err(e)) => return format!("the container engine's event stream failed: {e}"),
                    None => return "the container engine's event stream ended".into(),
                },
                _ = relist.tick() => {}
                _ = refresh.changed() => {}
            }
        }
    }

    /// Lists the labelled containers and records what they define; reloads when that changed.
    async fn sync(&self, docker: &Docker, state: &Arc<AppState>) -> Result<(), String> {
        let filters = HashMap::from([("label", vec![format!("{}=true", labels::DOCKER.enabled)])]);
        let options = ListContainersOptionsBuilder::new().all(false).filters(&filters).build();
        let containers =
            docker.list_containers(Some(options)).await.map_err(|e| format!("cannot list containers: {e}"))?;
        let snap = state.snapshot();
        let config = &snap.config;
        let cap = config.discovery.security.max_providers_per_source;
        let configured: HashSet<&str> =
            config.providers.iter().filter(|p| p.source.is_none()).map(|p| p.name.as_str()).collect();
        let mut containers = containers;
        containers.sort_by_key(container_name);
        let mut found: Found = Vec::with_capacity(containers.len());
        for mut c in containers {
            if address(&c).is_err() {
                with_network_details(docker, &mut c).await;
            }
            found.push((format!("container {}", container_name(&c)), provider_of(&c, &self.addresses)));
        }
        let (providers, problems) = labels::assemble(KIND, found, &configured, cap);
        if super::record(state, self.index, KIND, self.mode, Ok((providers, problems))) {
            let _ = state.reconciler.reload(state, "discovery: docker", true).await;
        }
        Ok(())
    }
}

/// Fills in the network mode and networks from the container's details: Podman's list leaves
/// them out (a failed lookup leaves the summary as it was, which is then reported).
async fn with_network_details(docker: &Docker, c: &mut ContainerSummary) {
    let Some(id) = c.id.clone() else { return };
    let Ok(details) = docker.inspect_container(&id, None).await else { return };
    if let Some(mode) = details.host_config.and_then(|h| h.network_mode) {
        c.host_config.get_or_insert_with(Default::default).network_mode = Some(mode);
    }
    if let Some(networks) = details.network_settings.and_then(|n| n.networks) {
        c.network_settings.get_or_insert_with(Default::default).networks = Some(networks);
    }
}

/// A container's name (without the leading `/`), or its short id.
fn container_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
        .unwrap_or_else(|| "(unnamed)".into())
}

/// The provider a labelled container defines and the group it joins, or why it defines none.
fn provider_of(c: &ContainerSummary, addresses: &AddressPolicy) -> Result<(Provider, Option<String>), String> {
    let empty = HashMap::new();
    let labels = c.labels.as_ref().unwrap_or(&empty);
    let get = |k: &str| labels.get(k).map(String::as_str);
    let workload = Workload { source: KIND, name: container_name(c), get: &get, address: address(c) };
    labels::provider_of(&labels::DOCKER, &workload, addresses)
}

/// Where the container is reached: 127.0.0.1 on the host network, else its address on the first
/// network (by name) that gives it one.
fn address(c: &ContainerSummary) -> Result<IpAddr, String> {
    if c.host_config.as_ref().and_then(|h| h.network_mode.as_deref()) == Some("host") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let networks = c.network_settings.as_ref().and_then(|n| n.networks.as_ref());
    let mut names: Vec<&String> = networks.map(|n| n.keys().collect()).unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| networks?.get(name)?.ip_address.as_deref())
        .find(|ip| !ip.is_empty())
        .ok_or_else(|| "has no address on any network (is it on the host network or a bridge?)".to_owned())?
        .parse()
        .map_err(|e| format!("has an address the engine reports badly: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerSummaryHostConfig, ContainerSummaryNetworkSettings, EndpointSettings};

    fn container(ip: &str) -> ContainerSummary {
        ContainerSummary {
            id: Some("0123456789abcdef".into()),
            names: Some(vec!["/weather-1".into()]),
            labels: Some(HashMap::from([("mcp.hangar.enabled".to_owned(), "true".to_owned())])),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([(
                    "bridge".to_owned(),
                    EndpointSettings { ip_address: Some(ip.into()), ..Default::default() },
                )])),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_container_is_reached_on_its_network_or_the_host() {
        let (p, _) = provider_of(&container("10.88.0.5"), &AddressPolicy::default()).expect("accepted");
        assert_eq!(p.name, "weather-1");
        assert!(matches!(&p.kind, hangar_config::ProviderKind::Remote(r) if r.endpoint == "http://10.88.0.5:8080/mcp"));
        let mut host = container("");
        host.network_settings = None;
        assert!(provider_of(&host, &AddressPolicy::default()).expect_err("no address").contains("no address"));
        host.host_config = Some(ContainerSummaryHostConfig { network_mode: Some("host".into()), ..Default::default() });
        assert!(provider_of(&host, &AddressPolicy::default()).expect_err("loopback").contains("loopback"));
        let lenient = AddressPolicy { loopback: true, link_local: false };
        assert!(matches!(&provider_of(&host, &lenient).expect("accepted").0.kind,
            hangar_config::ProviderKind::Remote(r) if r.endpoint == "http://127.0.0.1:8080/mcp"));
    }
}
