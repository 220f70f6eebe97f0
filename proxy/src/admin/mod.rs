//! The operators' HTTP surface under `/admin/`: a JSON API over the same views and actions as the
//! `registry_*` tools, a Server-Sent Events feed of what happens, its OpenAPI document, and the
//! dashboard page that uses them.
//!
//! The API authenticates as the MCP endpoint does and authorizes each route as the registry tool
//! it stands for (`GET /admin/api/providers` as `registry_list`, a reload as `registry_reload`),
//! so admins get it all and rules that grant or deny a tool grant or deny its route too. The page
//! and the OpenAPI document hold no data and are public; the page asks for a key or token when the
//! API needs one. Requests from another origin are refused (a page elsewhere must not drive a
//! local gateway), as are requests naming a foreign host to a loopback gateway.

mod api;
mod assets;
mod routes;

use std::sync::Arc;

use pingora_core::protocols::http::ServerSession as Session;
use serde_json::json;

use crate::auth::{Item, Refusal};
use crate::front::checks::{host_allowed, origin_allowed};
use crate::front::http::RequestCtx;
use crate::front::respond;
use crate::mcp::server::McpServer;

pub use routes::{Route, ROUTES};

/// Where the admin surface lives.
pub const PREFIX: &str = "/admin";

/// Whether `path` belongs to the admin surface.
pub fn owns(path: &str) -> bool {
    path == PREFIX || path.strip_prefix(PREFIX).is_some_and(|rest| rest.starts_with('/'))
}

/// Answers a request under [`PREFIX`].
pub async fn handle(server: &Arc<McpServer>, session: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    let snap = ctx.snap.clone();
    let settings = &snap.config.server;
    if !settings.admin_api {
        return error(session, 404, "not found").await;
    }
    let header = |name: &str| session.req_header().headers.get(name).and_then(|v| v.to_str().ok());
    if !host_allowed(header("host"), &settings.host) {
        return error(session, 403, "Forbidden: Host not allowed").await;
    }
    if let Some(origin) = header("origin") {
        if !same_origin(origin, header("host")) && !origin_allowed(origin, &settings.allowed_origins) {
            tracing::info!(origin, "refused an admin request from another origin");
            return error(session, 403, "Forbidden: Origin not allowed").await;
        }
    }
    let method = session.req_header().method.as_str().to_owned();
    let path = session.req_header().uri.path().to_owned();
    if let Some(asset) = assets::find(&path) {
        if method != "GET" && method != "HEAD" {
            return method_not_allowed(session, "GET, HEAD").await;
        }
        return respond::send(session, 200, asset.content_type, assets::HEADERS, asset.body).await;
    }
    let route = match routes::resolve(&method, &path) {
        Ok(route) => route,
        Err(routes::Miss::NotFound) => return error(session, 404, "not found").await,
        Err(routes::Miss::Method(allowed)) => return method_not_allowed(session, allowed).await,
    };
    let security = snap.security.clone();
    let principal = match security.authenticate(&session.req_header().headers).await {
        Ok(p) => p,
        Err(refusal) => return unauthorized(server, session, ctx, &refusal).await,
    };
    ctx.principal = Some(principal.clone());
    let item = Item::AdminTool { name: route.tool() };
    if let Err(e) = crate::mcp::hub::authorize_as(&server.state, &principal, "admin_api", item) {
        return error(session, 403, &e.message).await;
    }
    api::serve(server, session, ctx, &principal, route).await
}

/// Whether `origin` is the gateway itself as the request reached it (the dashboard's own calls).
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// A JSON error: `{"error": message}`.
async fn error(session: &mut Session, status: u16, message: &str) -> pingora_core::Result<()> {
    respond::send(session, status, "application/json", assets::API_HEADERS, json!({"error": message}).to_string()).await
}

async fn method_not_allowed(session: &mut Session, allowed: &str) -> pingora_core::Result<()> {
    let body = json!({"error": "method not allowed"}).to_string();
    respond::send(session, 405, "application/json", &[("allow", allowed)], body).await
}

/// 401 (503 when credentials cannot be checked now) with the challenge saying how to
/// authenticate, as at the MCP endpoint.
async fn unauthorized(
    server: &McpServer,
    session: &mut Session,
    ctx: &RequestCtx,
    refusal: &Refusal,
) -> pingora_core::Result<()> {
    server.state.metrics.auth_failures.with_label_values(&[refusal.label()]).inc();
    let snap = &ctx.snap;
    let resource = crate::front::mcp::resource_url(session, snap, &snap.security);
    let challenge = snap.security.challenge(refusal, &crate::auth::metadata_url(&resource));
    let status = refusal.status();
    let body = json!({"error": format!("Unauthorized: {refusal}")}).to_string();
    respond::send(session, status, "application/json", &[("www-authenticate", challenge.as_str())], body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_surface_is_its_prefix_only() {
        assert!(owns("/admin") && owns("/admin/") && owns("/admin/api/providers"));
        assert!(!owns("/administrator") && !owns("/mcp") && !owns("/"));
    }

    #[test]
    fn only_the_gateways_own_origin_is_same_origin() {
        assert!(same_origin("http://127.0.0.1:8000", Some("127.0.0.1:8000")));
        assert!(same_origin("https://hangar.example.com", Some("hangar.example.com")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:8000")));
        assert!(!same_origin("http://127.0.0.1:8001", Some("127.0.0.1:8000")));
        assert!(!same_origin("null", Some("127.0.0.1:8000")));
        assert!(!same_origin("http://127.0.0.1:8000", None));
    }
}
