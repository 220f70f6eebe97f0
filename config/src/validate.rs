//! Checks of single values (URLs, paths, names) and of references between providers.

use std::collections::HashMap;

use crate::decode::{child, index};
use crate::error::Problem;
use crate::model::{Config, ProviderKind};

/// Paths the gateway serves itself; the MCP and metrics endpoints must not shadow them.
const RESERVED_PREFIX: &str = "/health";

/// Whether `name` is a tool name per the MCP spec's SHOULD rules (1-128 of `A-Za-z0-9_-.`).
pub(crate) fn is_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// An `http://` or `https://` URL with a host and, if given, a valid port.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let shown = redact_url(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{shown:?} is not an http:// or https:// URL"))?;
    if url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("{shown:?} contains whitespace or control characters"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{shown:?} has credentials in it (user:password@), which are never sent; \
             put them in the provider's headers instead (Authorization: Basic …)"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("{shown:?} has an unclosed IPv6 address"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{shown:?} has no host"));
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(format!("{shown:?} has an invalid port {p:?}"));
        }
    }
    Ok(())
}

/// `url` as it may be shown (errors, logs, admin tools): credentials before the host and the
/// values of query parameters, where tokens usually travel, are replaced by `***`; a fragment is
/// dropped. Anything that is not a URL is shown as `***` whole.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "***".to_owned() };
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) => format!("{k}=***"),
                None => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// An address to bind: an IP address or a host name.
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if host.parse::<std::net::IpAddr>().is_ok() || name_ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not an IP address or host name"))
    }
}

/// An HTTP path the gateway serves: absolute, plain characters, not a reserved path.
pub(crate) fn check_endpoint_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)) {
        return Err(format!("{path:?} may only contain letters, digits, '/', '-', '.', '_' and '~'"));
    }
    if path == "/" || path.starts_with(RESERVED_PREFIX) {
        return Err(format!("{path:?} is reserved (the gateway serves / and {RESERVED_PREFIX}/* itself)"));
    }
    Ok(())
}

/// `*`, or `scheme://host[:port]` without a path.
pub(crate) fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    check_http_url(origin)?;
    let after_scheme = origin.split_once("://").map_or("", |(_, r)| r);
    if after_scheme.contains('/') {
        return Err(format!("{origin:?} is not an origin (scheme://host[:port], no path)"));
    }
    Ok(())
}

/// Whether `host` names only this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The problem with serving `config` as written, when it would let anyone who reaches a
/// non-loopback address in without credentials (checked after command-line overrides of the host).
pub fn exposure_problem(config: &Config) -> Option<Problem> {
    let server = &config.server;
    let closed = |auth: &crate::Auth| auth.enabled && !auth.allow_anonymous;
    let every_door_closed =
        closed(&config.auth) && config.virtual_servers.iter().all(|v| v.auth.as_ref().is_none_or(closed));
    if is_loopback_host(&server.host) || server.allow_unauthenticated || every_door_closed {
        return None;
    }
    let why = match config.virtual_servers.iter().find(|v| v.auth.as_ref().is_some_and(|a| !closed(a))) {
        Some(v) if closed(&config.auth) => format!("virtual server {:?} lets anyone in", v.name),
        _ if config.auth.enabled => "auth.allow_anonymous lets anyone in".to_owned(),
        _ => "auth is not enabled".to_owned(),
    };
    Some(Problem {
        path: "server.host".into(),
        message: format!(
            "{:?} is reachable from other machines and {why}: configure auth (API keys or oidc), or set server.allow_unauthenticated: true to serve without it",
            server.host
        ),
    })
}

/// Checks across providers and sections, after each has been read on its own.
/// `declared` holds every provider name in the file, including those too broken to decode.
pub(crate) fn cross_check(config: &Config, declared: &[&str], problems: &mut Vec<Problem>) {
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });

    if config.observability.metrics.enabled && config.observability.metrics.endpoint == config.server.mcp_path {
        problem(
            "observability.metrics.endpoint".into(),
            format!("{:?} is already the MCP endpoint (server.mcp_path)", config.server.mcp_path),
        );
    }

    for v in &config.virtual_servers {
        for (i, name) in v.providers.iter().enumerate() {
            if name != crate::ADMIN_PROVIDER && config.provider(name).is_none() && !declared.contains(&name.as_str()) {
                problem(format!("virtual_servers.{}.providers[{i}]", v.name), format!("unknown provider {name:?}"));
            }
        }
    }

    if let Some(p) = config.provider(crate::ADMIN_PROVIDER) {
        problem(
            format!("providers.{}", p.name),
            format!("{:?} is reserved: authorization rules use it for the gateway's own registry_* tools", p.name),
        );
    }

    for provider in &config.providers {
        let ProviderKind::Group(group) = &provider.kind else {
            continue;
        };
        let base = format!("providers.{}.members", provider.name);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, member) in group.members.iter().enumerate() {
            let path = child(&index(&base, i), "provider");
            match config.provider(&member.provider) {
                None if declared.contains(&member.provider.as_str()) => {}
                None => problem(path.clone(), format!("unknown provider {:?}", member.provider)),
                Some(p) if p.name == provider.name => problem(path.clone(), "a group cannot contain itself".into()),
                Some(p) if matches!(p.kind, ProviderKind::Group(_)) => {
                    problem(path.clone(), format!("{:?} is a group; groups cannot be nested", p.name))
                }
                Some(_) => {}
            }
            if let Some(first) = seen.insert(&member.provider, i) {
                problem(path, format!("{:?} is already listed as members[{first}]", member.provider));
            }
        }
    }

    let exposed: Vec<_> = config.providers.iter().filter(|p| p.expose).collect();
    let mut prefixes: HashMap<&str, &str> = HashMap::new();
    for p in &exposed {
        if p.tool_prefix.is_empty() {
            continue;
        }
        if let Some(other) = prefixes.insert(&p.tool_prefix, &p.name) {
            problem(
                format!("providers.{}.tool_prefix", p.name),
                format!(
                    "{:?} is also the tool prefix of provider {other:?}; exposed names would collide",
                    p.tool_prefix
                ),
            );
        }
    }
    let mut tool_owner: HashMap<String, (&str, usize)> = HashMap::new();
    for p in &exposed {
        for (i, tool) in p.tools.iter().enumerate() {
            let exposed_name = format!("{}{}", p.tool_prefix, tool.name);
            if let Some((owner, j)) = tool_owner.get(&exposed_name) {
                problem(
                    format!("providers.{}.tools[{i}].name", p.name),
                    format!("exposed tool name {exposed_name:?} is also exposed by providers.{owner}.tools[{j}]"),
                );
            } else {
                tool_owner.insert(exposed_name, (&p.name, i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_http_url("http://localhost:4317").is_ok());
        assert!(check_http_url("https://example.com/mcp?x=1").is_ok());
        assert!(check_http_url("https://user:pw@example.com/mcp").is_err(), "credentials would never be sent");
        assert!(check_http_url("http://[::1]:8080/mcp").is_ok());
        assert!(check_http_url("ftp://example.com").is_err());
        assert!(check_http_url("http://").is_err());
        assert!(check_http_url("http://host:99999/").is_err());
        assert!(check_http_url("http://host:0/").is_err());
        assert!(check_http_url("http://exa mple.com").is_err());
    }

    #[test]
    fn paths_and_origins() {
        assert!(check_endpoint_path("/mcp").is_ok());
        assert!(check_endpoint_path("mcp").is_err());
        assert!(check_endpoint_path("/health/x").is_err());
        assert!(check_endpoint_path("/m cp").is_err());
        assert!(check_origin("*").is_ok());
        assert!(check_origin("https://app.example.com:8443").is_ok());
        assert!(check_origin("https://app.example.com/path").is_err());
    }

    #[test]
    fn tool_names() {
        assert!(is_tool_name("admin.tools.list"));
        assert!(!is_tool_name(""));
        assert!(!is_tool_name("has space"));
        assert!(!is_tool_name(&"x".repeat(129)));
    }
}
