//! The admin API's routes: method, path pattern, and the registry tool each stands for (its
//! authorization). The OpenAPI document lists the same routes; a test holds the two together.

/// `(method, path pattern, registry tool)`, `{name}` a provider (or group) name.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/admin/api/overview", "registry_status"),
    ("GET", "/admin/api/providers", "registry_list"),
    ("GET", "/admin/api/providers/{name}", "registry_details"),
    ("GET", "/admin/api/providers/{name}/tools", "registry_tools"),
    ("POST", "/admin/api/providers/{name}/start", "registry_start"),
    ("POST", "/admin/api/providers/{name}/stop", "registry_stop"),
    ("GET", "/admin/api/groups", "registry_list"),
    ("GET", "/admin/api/stats", "registry_status"),
    ("GET", "/admin/api/sources", "registry_sources"),
    ("GET", "/admin/api/quarantine", "registry_quarantine"),
    ("POST", "/admin/api/quarantine/{name}/approve", "registry_approve"),
    ("GET", "/admin/api/config", "registry_reload"),
    ("POST", "/admin/api/config/dry-run", "registry_reload"),
    ("POST", "/admin/api/reload", "registry_reload"),
    ("GET", "/admin/api/audit", "registry_audit"),
    ("GET", "/admin/api/events", "registry_audit"),
];

/// A resolved route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /admin/api/overview`.
    Overview,
    /// `GET /admin/api/providers`.
    Providers,
    /// `GET /admin/api/providers/{name}`.
    Provider(String),
    /// `GET /admin/api/providers/{name}/tools`.
    Tools(String),
    /// `POST /admin/api/providers/{name}/start`.
    Start(String),
    /// `POST /admin/api/providers/{name}/stop`.
    Stop(String),
    /// `GET /admin/api/groups`.
    Groups,
    /// `GET /admin/api/stats`.
    Stats,
    /// `GET /admin/api/sources`.
    Sources,
    /// `GET /admin/api/quarantine`.
    Quarantine,
    /// `POST /admin/api/quarantine/{name}/approve`.
    Approve(String),
    /// `GET /admin/api/config`.
    Config,
    /// `POST /admin/api/config/dry-run`.
    DryRun,
    /// `POST /admin/api/reload`.
    Reload,
    /// `GET /admin/api/audit`.
    Audit,
    /// `GET /admin/api/events`.
    Events,
}

/// Why a path did not resolve.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Miss {
    /// No such route.
    NotFound,
    /// The route exists with other methods (the `Allow` header's value).
    Method(&'static str),
}

impl Route {
    /// The registry tool whose authorization the route takes.
    pub fn tool(&self) -> &'static str {
        let pattern = self.pattern();
        ROUTES.iter().find(|(_, p, _)| *p == pattern).map_or("registry_status", |(_, _, tool)| tool)
    }

    fn pattern(&self) -> &'static str {
        match self {
            Self::Overview => "/admin/api/overview",
            Self::Providers => "/admin/api/providers",
            Self::Provider(_) => "/admin/api/providers/{name}",
            Self::Tools(_) => "/admin/api/providers/{name}/tools",
            Self::Start(_) => "/admin/api/providers/{name}/start",
            Self::Stop(_) => "/admin/api/providers/{name}/stop",
            Self::Groups => "/admin/api/groups",
            Self::Stats => "/admin/api/stats",
            Self::Sources => "/admin/api/sources",
            Self::Quarantine => "/admin/api/quarantine",
            Self::Approve(_) => "/admin/api/quarantine/{name}/approve",
            Self::Config => "/admin/api/config",
            Self::DryRun => "/admin/api/config/dry-run",
            Self::Reload => "/admin/api/reload",
            Self::Audit => "/admin/api/audit",
            Self::Events => "/admin/api/events",
        }
    }
}

/// The route of `method path`.
pub(super) fn resolve(method: &str, path: &str) -> Result<Route, Miss> {
    let rest = path.strip_prefix("/admin/api/").ok_or(Miss::NotFound)?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let name = |i: usize| percent_decode(parts[i]);
    let (get, post) = ("GET", "POST");
    let (route, wants) = match parts.as_slice() {
        ["overview"] => (Route::Overview, get),
        ["providers"] => (Route::Providers, get),
        ["providers", n] if !n.is_empty() => (Route::Provider(name(1).ok_or(Miss::NotFound)?), get),
        ["providers", _, "tools"] => (Route::Tools(name(1).ok_or(Miss::NotFound)?), get),
        ["providers", _, "start"] => (Route::Start(name(1).ok_or(Miss::NotFound)?), post),
        ["providers", _, "stop"] => (Route::Stop(name(1).ok_or(Miss::NotFound)?), post),
        ["groups"] => (Route::Groups, get),
        ["stats"] => (Route::Stats, get),
        ["sources"] => (Route::Sources, get),
        ["quarantine"] => (Route::Quarantine, get),
        ["quarantine", _, "approve"] => (Route::Approve(name(1).ok_or(Miss::NotFound)?), post),
        ["config"] => (Route::Config, get),
        ["config", "dry-run"] => (Route::DryRun, post),
        ["reload"] => (Route::Reload, post),
        ["audit"] => (Route::Audit, get),
        ["events"] => (Route::Events, get),
        _ => return Err(Miss::NotFound),
    };
    let allowed = if wants == get { "GET, HEAD" } else { "POST" };
    match method {
        m if m == wants => Ok(route),
        "HEAD" if wants == get => Ok(route),
        _ => Err(Miss::Method(allowed)),
    }
}

/// `%XX` decoded; `None` for a bad escape or a result that is not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_routes_and_methods_are_checked() {
        assert_eq!(resolve("GET", "/admin/api/providers"), Ok(Route::Providers));
        assert_eq!(resolve("GET", "/admin/api/providers/fx"), Ok(Route::Provider("fx".into())));
        assert_eq!(resolve("GET", "/admin/api/providers/my%20p"), Ok(Route::Provider("my p".into())));
        assert_eq!(resolve("POST", "/admin/api/providers/fx/start"), Ok(Route::Start("fx".into())));
        assert_eq!(resolve("GET", "/admin/api/providers/fx/start"), Err(Miss::Method("POST")));
        assert_eq!(resolve("POST", "/admin/api/overview"), Err(Miss::Method("GET, HEAD")));
        assert_eq!(resolve("GET", "/admin/api/nothing"), Err(Miss::NotFound));
        assert_eq!(resolve("GET", "/admin/api/providers/%zz"), Err(Miss::NotFound));
        assert_eq!(resolve("POST", "/admin/api/quarantine/new/approve"), Ok(Route::Approve("new".into())));
    }

    #[test]
    fn every_route_is_in_the_table_with_its_tool() {
        let all = [
            Route::Overview,
            Route::Providers,
            Route::Provider("x".into()),
            Route::Tools("x".into()),
            Route::Start("x".into()),
            Route::Stop("x".into()),
            Route::Groups,
            Route::Stats,
            Route::Sources,
            Route::Quarantine,
            Route::Approve("x".into()),
            Route::Config,
            Route::DryRun,
            Route::Reload,
            Route::Audit,
            Route::Events,
        ];
        assert_eq!(all.len(), ROUTES.len());
        for r in &all {
            assert!(ROUTES.iter().any(|(_, p, t)| *p == r.pattern() && *t == r.tool()), "{r:?}");
            assert!(crate::mcp::registry::is_registry_tool(r.tool()), "{r:?}");
        }
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::super::assets::OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys().filter(|k| *k != "parameters") {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> =
            ROUTES.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
