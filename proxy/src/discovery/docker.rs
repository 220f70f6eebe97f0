//! Docker and Podman discovery (`type: docker`): running containers labelled
//! `mcp.hangar.enabled: "true"` become remote providers at the container's address, with the
//! Python MCP Hangar's labels:
//!
//! - `mcp.hangar.name`: the provider's name (default: the container's name);
//! - `mcp.hangar.mode`: `http` (the default: streamable HTTP) or `sse`;
//! - `mcp.hangar.port`: the port the server listens on (default 8080);
//! - `mcp.hangar.path`: the endpoint's path (default `/mcp`, `/sse` for `sse`);
//! - `mcp.hangar.group`: a group the provider is a member of. The containers naming one group form
//!   its pool (weighted round-robin, each weight 1), which follows them as they come and go; the
//!   members are then reached through the group only (`expose: false`).
//!
//! The engine's event stream drives it: any container event relists the labelled containers (a
//! list is the whole truth, so a missed event is mended by the next one, and by the relist every
//! `refresh_interval_s`). The list is taken after the event stream starts, so nothing between the
//! two is lost. An engine that goes away is retried with backoff; an authoritative source's
//! providers are dropped once it has been gone for [`GRACE`], an additive source's stay.
//!
//! Label values are data, never configuration: `${…}` in them is not expanded from the gateway's
//! environment, and an endpoint on a loopback or link-local address (cloud metadata services) is
//! refused unless the source says `allow_loopback` / `allow_link_local`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::ContainerSummary;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use hangar_config::{DiscoveryMode, DiscoverySource, Provider, SourceKind};

use crate::state::AppState;

const ENABLED: &str = "mcp.hangar.enabled";
const NAME: &str = "mcp.hangar.name";
const MODE: &str = "mcp.hangar.mode";
const PORT: &str = "mcp.hangar.port";
const PATH: &str = "mcp.hangar.path";
const GROUP: &str = "mcp.hangar.group";
const KIND: &str = "docker";

/// How long an authoritative source's providers outlive an engine that went away.
pub const GRACE: Duration = Duration::from_secs(30);
/// Longest wait between attempts to reach the engine.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Events that arrive together are answered by one relist.
const SETTLE: Duration = Duration::from_millis(50);

/// Which endpoint addresses a source accepts besides ordinary ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddressPolicy {
    /// 127.0.0.0/8 and ::1 (containers on the host network).
    pub loopback: bool,
    /// 169.254.0.0/16 and fe80::/10, where cloud metadata services answer.
    pub link_local: bool,
}

impl AddressPolicy {
    /// Why `ip` may not be a discovered provider's address, if it may not.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        let metadata = [
            IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        ];
        if ip.is_unspecified() || ip.is_multicast() {
            return Some("is not a host address");
        }
        if metadata.contains(&ip) {
            return Some("is a cloud metadata service's address");
        }
        if ip.is_loopback() && !self.loopback {
            return Some("is a loopback address (allow_loopback: true accepts it)");
        }
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
        if link_local && !self.link_local {
            return Some(
                "is a link-local address, where cloud metadata services answer (allow_link_local: true accepts it)",
            );
        }
        None
    }
}

/// One `type: docker` source.
struct DockerSource {
    index: usize,
    mode: DiscoveryMode,
    socket_path: Option<String>,
    addresses: AddressPolicy,
}

/// Follows source `index` (a Docker source) until shutdown.
pub fn spawn(state: &Arc<AppState>, index: usize, source: &DiscoverySource) {
    if let SourceKind::Docker { socket_path, allow_loopback, allow_link_local } = &source.kind {
        let source = DockerSource {
            index,
            mode: source.mode,
            socket_path: socket_path.clone(),
            addresses: AddressPolicy { loopback: *allow_loopback, link_local: *allow_link_local },
        };
        tokio::spawn(source.run(state.clone()));
    }
}

impl DockerSource {
    /// Follows the engine until shutdown, reconnecting with backoff.
    async fn run(self, state: Arc<AppState>) {
        let mut shutdown = state.shutdown_signal();
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
            if self.mode == DiscoveryMode::Authoritative && since.elapsed() >= GRACE && live.forget(self.index) {
                tracing::warn!(
                    source = self.index,
                    "discovery: the container engine stayed away; its providers are removed"
                );
                let _ = state.reconciler.reload(&state, "discovery: docker engine lost", true).await;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
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
        let refresh = state.snapshot().config.discovery.refresh_interval.max(Duration::from_secs(1));
        let mut relist = tokio::time::interval(refresh);
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
            }
        }
    }

    /// Lists the labelled containers and records what they define; reloads when that changed.
    async fn sync(&self, docker: &Docker, state: &Arc<AppState>) -> Result<(), String> {
        let filters = HashMap::from([("label", vec![format!("{ENABLED}=true")])]);
        let options = ListContainersOptionsBuilder::new().all(false).filters(&filters).build();
        let containers =
            docker.list_containers(Some(options)).await.map_err(|e| format!("cannot list containers: {e}"))?;
        let snap = state.snapshot();
        let config = &snap.config;
        let cap = config.discovery.security.max_providers_per_source;
        let configured: HashSet<&str> =
            config.providers.iter().filter(|p| p.source.is_none()).map(|p| p.name.as_str()).collect();
        let mut providers: Vec<Provider> = Vec::new();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut problems = Vec::new();
        let mut containers = containers;
        containers.sort_by_key(container_name);
        for mut c in containers {
            if address(&c).is_err() {
                with_network_details(docker, &mut c).await;
            }
            let container = container_name(&c);
            match provider_of(&c, &self.addresses) {
                Ok((p, _)) if configured.contains(p.name.as_str()) => problems.push(format!(
                    "container {container}: provider name {:?} is defined in the configuration file, which wins",
                    p.name
                )),
                Ok((p, _)) if providers.iter().any(|q| q.name == p.name) => problems.push(format!(
                    "container {container}: provider name {:?} is taken by another container",
                    p.name
                )),
                Ok(_) if providers.len() >= cap => problems.push(format!(
                    "container {container}: over the source's limit of {cap} providers (discovery.security.max_providers_per_source)"
                )),
                Ok((p, group)) => {
                    if let Some(g) = group {
                        groups.entry(g).or_default().push(providers.len());
                    }
                    providers.push(p);
                }
                Err(why) => problems.push(format!("container {container}: {why}")),
            }
        }
        for (name, members) in groups {
            if configured.contains(name.as_str()) || providers.iter().any(|p| p.name == name) {
                problems.push(format!("group {name:?}: the name is taken; its members are served on their own"));
                continue;
            }
            let member_names: Vec<&str> = members.iter().map(|&i| providers[i].name.as_str()).collect();
            match group_of(&name, &member_names) {
                Ok(group) => {
                    for &i in &members {
                        providers[i].expose = false;
                    }
                    providers.push(group);
                }
                Err(why) => problems.push(format!("group {name:?}: {why}")),
            }
        }
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

/// The group `name` of the providers `members`.
fn group_of(name: &str, members: &[&str]) -> Result<Provider, String> {
    let origin = format!("docker:group {name}");
    hangar_config::discovered_group(name, members, Path::new(&origin)).map_err(|e| e.to_string())
}

/// The provider a labelled container defines and the group it joins, or why it defines none.
fn provider_of(c: &ContainerSummary, addresses: &AddressPolicy) -> Result<(Provider, Option<String>), String> {
    let empty = HashMap::new();
    let labels = c.labels.as_ref().unwrap_or(&empty);
    let container = container_name(c);
    let mode = labels.get(MODE).map_or("http", String::as_str);
    let default_path = match mode {
        "http" | "remote" | "streamable_http" => "/mcp",
        "sse" => "/sse",
        other => return Err(format!("{MODE} {other:?} is not a mode a running container can serve (http or sse)")),
    };
    let port = match labels.get(PORT) {
        None => 8080,
        Some(p) => {
            p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{PORT} {p:?} is not a port number"))?
        }
    };
    let path = labels.get(PATH).map_or(default_path, String::as_str);
    if !path.starts_with('/') || path.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(format!("{PATH} {path:?} is not a URL path"));
    }
    let ip = address(c)?;
    if let Some(why) = addresses.refuses(ip) {
        return Err(format!("its address {ip} {why}"));
    }
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let endpoint = format!("http://{host}:{port}{path}");
    let origin = format!("docker:{container}");
    let name = labels.get(NAME).map(String::as_str);
    let provider = hangar_config::discovered_remote(name, &container, &endpoint, mode == "sse", Path::new(&origin))
        .map_err(|e| e.to_string())?;
    Ok((provider, labels.get(GROUP).cloned()))
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

    fn container(labels: &[(&str, &str)], ip: &str) -> ContainerSummary {
        ContainerSummary {
            id: Some("0123456789abcdef".into()),
            names: Some(vec!["/weather-1".into()]),
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([(
                    "bridge".to_owned(),
                    EndpointSettings { ip_address: Some(ip.into()), ..Default::default() },
                )])),
            }),
            ..Default::default()
        }
    }

    fn endpoint(p: &Provider) -> String {
        match &p.kind {
            hangar_config::ProviderKind::Remote(r) => r.endpoint.clone(),
            other => panic!("not remote: {other:?}"),
        }
    }

    #[test]
    fn labels_define_a_remote_provider() {
        let open = AddressPolicy::default();
        let p = provider_of(&container(&[(ENABLED, "true")], "10.88.0.5"), &open).expect("accepted").0;
        assert_eq!(p.name, "weather-1");
        assert_eq!(endpoint(&p), "http://10.88.0.5:8080/mcp");
        let labels = [(ENABLED, "true"), (NAME, "wx"), (PORT, "9000"), (PATH, "/v1/mcp")];
        let p = provider_of(&container(&labels, "10.88.0.5"), &open).expect("accepted").0;
        assert_eq!((p.name.as_str(), endpoint(&p).as_str()), ("wx", "http://10.88.0.5:9000/v1/mcp"));
        let p = provider_of(&container(&[(MODE, "sse")], "fd00::5"), &open).expect("accepted").0;
        assert_eq!(endpoint(&p), "http://[fd00::5]:8080/sse");
        assert!(
            matches!(&p.kind, hangar_config::ProviderKind::Remote(r) if r.transport == hangar_config::RemoteTransport::Sse)
        );
    }

    #[test]
    fn bad_labels_are_reported() {
        let open = AddressPolicy::default();
        let err = |labels: &[(&str, &str)]| provider_of(&container(labels, "10.88.0.5"), &open).expect_err("refused");
        assert!(err(&[(PORT, "abc")]).contains("\"abc\" is not a port number"));
        assert!(err(&[(PORT, "0")]).contains("is not a port number"));
        assert!(err(&[(MODE, "subprocess")]).contains("http or sse"));
        assert!(err(&[(PATH, "mcp")]).contains("is not a URL path"));
        assert!(err(&[(NAME, "bad name!")]).contains("name"), "{}", err(&[(NAME, "bad name!")]));
        // A label is data: nothing is read from the gateway's environment.
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let shown = err(&[(NAME, "${HOME}")]);
        assert!(!shown.contains(&home), "{shown}");
        let mut no_net = container(&[], "");
        no_net.network_settings = None;
        assert!(provider_of(&no_net, &open).expect_err("refused").contains("no address"));
    }

    #[test]
    fn a_group_label_names_the_pool() {
        let (_, group) =
            provider_of(&container(&[(GROUP, "pool")], "10.88.0.5"), &AddressPolicy::default()).expect("accepted");
        assert_eq!(group.as_deref(), Some("pool"));
        let pool = group_of("pool", &["a", "b"]).expect("accepted");
        let hangar_config::ProviderKind::Group(g) = &pool.kind else { panic!("not a group: {pool:?}") };
        assert_eq!(g.members.iter().map(|m| m.provider.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(group_of("bad name!", &["a"]).is_err());
    }

    #[test]
    fn private_addresses_need_the_source_to_allow_them() {
        let strict = AddressPolicy::default();
        let refused = |ip: &str| provider_of(&container(&[], ip), &strict).expect_err("refused");
        assert!(refused("169.254.169.254").contains("link-local"));
        assert!(refused("fe80::1").contains("link-local"));
        assert!(refused("127.0.0.1").contains("loopback"));
        assert!(refused("100.100.100.200").contains("metadata"));
        assert!(refused("0.0.0.0").contains("not a host address"));
        let mut host = container(&[], "");
        host.host_config = Some(ContainerSummaryHostConfig { network_mode: Some("host".into()), ..Default::default() });
        assert!(provider_of(&host, &strict).expect_err("refused").contains("loopback"));
        let lenient = AddressPolicy { loopback: true, link_local: true };
        assert_eq!(endpoint(&provider_of(&host, &lenient).expect("accepted").0), "http://127.0.0.1:8080/mcp");
        assert!(provider_of(&container(&[], "169.254.10.1"), &lenient).is_ok());
        assert!(provider_of(&container(&[], "169.254.169.254"), &lenient).is_ok(), "allowed explicitly");
    }
}
