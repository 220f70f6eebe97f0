//! Providers from the key/value metadata of running workloads, in the Python MCP Hangar's names:
//! Docker labels (`mcp.hangar.*`) and Kubernetes pod annotations (`mcp.hangar.io/*`):
//!
//! - `enabled: "true"` marks the workload;
//! - `name`: the provider's name (default: the workload's name);
//! - `mode`: `http` (the default: streamable HTTP) or `sse`;
//! - `port`: the port the server listens on (default 8080);
//! - `path`: the endpoint's path (default `/mcp`, `/sse` for `sse`);
//! - `group`: a group the provider is a member of. The workloads naming one group form its pool
//!   (weighted round-robin, each weight 1), which follows them as they come and go; the members
//!   are then reached through the group only (`expose: false`).
//!
//! Values are data, never configuration: `${…}` in them is not expanded from the gateway's
//! environment, and an endpoint on a loopback or link-local address (cloud metadata services) is
//! refused unless the source allows it.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use hangar_config::Provider;

/// The keys of one dialect.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    /// `"true"` marks the workload.
    pub enabled: &'static str,
    /// The provider's name.
    pub name: &'static str,
    /// `http` or `sse`.
    pub mode: &'static str,
    /// The server's port.
    pub port: &'static str,
    /// The endpoint's path.
    pub path: &'static str,
    /// The group the provider joins.
    pub group: &'static str,
}

/// Docker and Podman container labels.
pub const DOCKER: Keys = Keys {
    enabled: "mcp.hangar.enabled",
    name: "mcp.hangar.name",
    mode: "mcp.hangar.mode",
    port: "mcp.hangar.port",
    path: "mcp.hangar.path",
    group: "mcp.hangar.group",
};

/// Kubernetes pod annotations.
pub const KUBERNETES: Keys = Keys {
    enabled: "mcp.hangar.io/enabled",
    name: "mcp.hangar.io/name",
    mode: "mcp.hangar.io/mode",
    port: "mcp.hangar.io/port",
    path: "mcp.hangar.io/path",
    group: "mcp.hangar.io/group",
};

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

    /// Why an endpoint at host `host` (a URL's host: an address, `[v6]`, or a name) may not be a
    /// discovered provider's, if it may not. Names are not resolved here (an answer could change
    /// by the time the gateway connects); the well-known names of loopback and of cloud metadata
    /// services are refused as their addresses are.
    pub fn refuses_host(&self, host: &str) -> Option<String> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.refuses(ip).map(|why| format!("its address {ip} {why}"));
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if matches!(name.as_str(), "metadata" | "metadata.google.internal" | "metadata.azure.internal") {
            return Some(format!("its host {host} is a cloud metadata service's name"));
        }
        if (name == "localhost" || name.ends_with(".localhost")) && !self.loopback {
            return Some(format!("its host {host} is loopback (allow_loopback: true accepts it)"));
        }
        None
    }
}

/// One marked workload as a source sees it.
pub struct Workload<'a> {
    /// `docker` or `kubernetes` (the origin shown in messages).
    pub source: &'static str,
    /// The container's or pod's name.
    pub name: String,
    /// Its labels or annotations.
    pub get: &'a dyn Fn(&str) -> Option<&'a str>,
    /// Where it is reached, or why that is unknown.
    pub address: Result<IpAddr, String>,
}

/// The provider a workload defines and the group it joins, or why it defines none.
pub fn provider_of(
    keys: &Keys,
    w: &Workload<'_>,
    policy: &AddressPolicy,
) -> Result<(Provider, Option<String>), String> {
    let mode = (w.get)(keys.mode).unwrap_or("http");
    let default_path = match mode {
        "http" | "remote" | "streamable_http" => "/mcp",
        "sse" => "/sse",
        other => {
            return Err(format!("{} {other:?} is not a mode a running workload can serve (http or sse)", keys.mode))
        }
    };
    let port = match (w.get)(keys.port) {
        None => 8080,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{} {p:?} is not a port number", keys.port))?,
    };
    let path = (w.get)(keys.path).unwrap_or(default_path);
    if !path.starts_with('/') || path.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(format!("{} {path:?} is not a URL path", keys.path));
    }
    let ip = w.address.clone()?;
    if let Some(why) = policy.refuses(ip) {
        return Err(format!("its address {ip} {why}"));
    }
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let endpoint = format!("http://{host}:{port}{path}");
    let origin = format!("{}:{}", w.source, w.name);
    let provider =
        hangar_config::discovered_remote((w.get)(keys.name), &w.name, &endpoint, mode == "sse", Path::new(&origin))
            .map_err(|e| e.to_string())?;
    Ok((provider, (w.get)(keys.group).map(str::to_owned)))
}

/// What a source's workloads define, in their order: each workload's provider (or why it gives
/// none), under the workload's label in problems (`container web-1`, `pod mcp/web-0`,
/// `MCPProvider mcp/math`).
pub type Found = Vec<(String, Result<(Provider, Option<String>), String>)>;

/// The providers of a source's workloads, and the problems of those it cannot use: a name the
/// configuration file defines (the file wins) or another workload took, one past `cap`; and the
/// groups the workloads name, formed over their members.
pub fn assemble(source: &str, found: Found, configured: &HashSet<&str>, cap: usize) -> (Vec<Provider>, Vec<String>) {
    let mut providers: Vec<Provider> = Vec::new();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (workload, outcome) in found {
        match outcome {
            Ok((p, _)) if configured.contains(p.name.as_str()) => problems.push(format!(
                "{workload}: provider name {:?} is defined in the configuration file, which wins",
                p.name
            )),
            Ok((p, _)) if providers.iter().any(|q| q.name == p.name) => {
                problems.push(format!("{workload}: provider name {:?} is taken by another workload", p.name))
            }
            Ok(_) if providers.len() >= cap => problems.push(format!(
                "{workload}: over the source's limit of {cap} providers (discovery.security.max_providers_per_source)"
            )),
            Ok((p, group)) => {
                if let Some(g) = group {
                    groups.entry(g).or_default().push(providers.len());
                }
                providers.push(p);
            }
            Err(why) => problems.push(format!("{workload}: {why}")),
        }
    }
    for (name, members) in groups {
        if configured.contains(name.as_str()) || providers.iter().any(|p| p.name == name) {
            problems.push(format!("group {name:?}: the name is taken; its members are served on their own"));
            continue;
        }
        let member_names: Vec<&str> = members.iter().map(|&i| providers[i].name.as_str()).collect();
        match group_of(source, &name, &member_names) {
            Ok(group) => {
                for &i in &members {
                    providers[i].expose = false;
                }
                providers.push(group);
            }
            Err(why) => problems.push(format!("group {name:?}: {why}")),
        }
    }
    (providers, problems)
}

/// The group `name` of the providers `members`.
fn group_of(source: &str, name: &str, members: &[&str]) -> Result<Provider, String> {
    let origin = format!("{source}:group {name}");
    hangar_config::discovered_group(name, members, Path::new(&origin)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn workload<'a>(get: &'a dyn Fn(&str) -> Option<&'a str>, ip: &str) -> Workload<'a> {
        Workload {
            source: "docker",
            name: "weather-1".into(),
            get,
            address: ip.parse().map_err(|_| "has no address".into()),
        }
    }

    fn define(labels: &[(&str, &str)], ip: &str, policy: &AddressPolicy) -> Result<(Provider, Option<String>), String> {
        let map: HashMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let get = |k: &str| map.get(k).map(String::as_str);
        provider_of(&DOCKER, &workload(&get, ip), policy)
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
        let (p, group) = define(&[], "10.88.0.5", &open).expect("accepted");
        assert_eq!((p.name.as_str(), endpoint(&p).as_str(), group), ("weather-1", "http://10.88.0.5:8080/mcp", None));
        let labels = [
            ("mcp.hangar.name", "wx"),
            ("mcp.hangar.port", "9000"),
            ("mcp.hangar.path", "/v1/mcp"),
            ("mcp.hangar.group", "pool"),
        ];
        let (p, group) = define(&labels, "10.88.0.5", &open).expect("accepted");
        assert_eq!((p.name.as_str(), endpoint(&p).as_str()), ("wx", "http://10.88.0.5:9000/v1/mcp"));
        assert_eq!(group.as_deref(), Some("pool"));
        let (p, _) = define(&[("mcp.hangar.mode", "sse")], "fd00::5", &open).expect("accepted");
        assert_eq!(endpoint(&p), "http://[fd00::5]:8080/sse");
    }

    #[test]
    fn bad_values_are_reported() {
        let open = AddressPolicy::default();
        let err = |labels: &[(&str, &str)]| define(labels, "10.88.0.5", &open).expect_err("refused");
        assert!(err(&[("mcp.hangar.port", "abc")]).contains("mcp.hangar.port \"abc\" is not a port number"));
        assert!(err(&[("mcp.hangar.port", "0")]).contains("is not a port number"));
        assert!(err(&[("mcp.hangar.mode", "subprocess")]).contains("http or sse"));
        assert!(err(&[("mcp.hangar.path", "mcp")]).contains("is not a URL path"));
        assert!(err(&[("mcp.hangar.name", "bad name!")]).contains("name"));
        // A value is data: nothing is read from the gateway's environment.
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let shown = err(&[("mcp.hangar.name", "${HOME}")]);
        assert!(!shown.contains(&home), "{shown}");
        assert!(define(&[], "", &open).expect_err("refused").contains("no address"));
    }

    #[test]
    fn private_addresses_need_the_source_to_allow_them() {
        let strict = AddressPolicy::default();
        let refused = |ip: &str| define(&[], ip, &strict).expect_err("refused");
        assert!(refused("169.254.169.254").contains("link-local"));
        assert!(refused("fe80::1").contains("link-local"));
        assert!(refused("127.0.0.1").contains("loopback"));
        assert!(refused("100.100.100.200").contains("metadata"));
        assert!(refused("0.0.0.0").contains("not a host address"));
        let lenient = AddressPolicy { loopback: true, link_local: true };
        assert_eq!(endpoint(&define(&[], "127.0.0.1", &lenient).expect("accepted").0), "http://127.0.0.1:8080/mcp");
        assert!(define(&[], "169.254.169.254", &lenient).is_ok(), "allowed explicitly");
    }

    #[test]
    fn clashes_and_groups_are_sorted_out() {
        let open = AddressPolicy::default();
        let one = |name: &str, group: Option<&str>| {
            let mut labels = vec![("mcp.hangar.name", name)];
            labels.extend(group.map(|g| ("mcp.hangar.group", g)));
            define(&labels, "10.0.0.1", &open)
        };
        let found: Found = vec![
            ("container a".into(), one("math", None)),
            ("container b".into(), one("web", Some("pool"))),
            ("container c".into(), one("web", None)),
            ("container d".into(), one("web2", Some("pool"))),
            ("container e".into(), Err("has no address".into())),
        ];
        let (providers, problems) = assemble("docker", found, &HashSet::from(["math"]), 100);
        let names: Vec<(&str, bool)> = providers.iter().map(|p| (p.name.as_str(), p.expose)).collect();
        assert_eq!(names, [("web", false), ("web2", false), ("pool", true)]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("container a") && problems[0].contains("configuration file"));
        assert!(problems[1].contains("container c") && problems[1].contains("taken by another workload"));
        assert!(problems[2].contains("container e: has no address"));
    }
}
