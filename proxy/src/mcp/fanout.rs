//! Delivery of what upstreams send outside any call: list changes invalidate caches and reach
//! every legacy session; session-scoped messages reach their session's GET stream.

use std::sync::Weak;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::jsonrpc::{code, RpcError};
use crate::mcp::server::McpServer;
use crate::proto::lists::ListKind;
use crate::upstream::{ServerRequest, SessionKey, Unsolicited};

/// The [`Unsolicited`] sink wired into every upstream.
pub struct Fanout(pub Weak<McpServer>);

impl Unsolicited for Fanout {
    fn notification(&self, provider: &str, session: &SessionKey, message: Value) {
        let Some(server) = self.0.upgrade() else { return };
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
        let kinds = ListKind::from_notification(method);
        if !kinds.is_empty() {
            invalidate(&server, provider, kinds);
            broadcast(&server, method);
            return;
        }
        if method == "notifications/resources/updated" && *session == SessionKey::Shared {
            server.listeners.publish(&message);
            let uri = message.pointer("/params/uri").and_then(Value::as_str).unwrap_or_default();
            let bytes = Bytes::from(serde_json::to_vec(&message).unwrap_or_default());
            for s in server.sessions.all().into_iter().filter(|s| s.is_subscribed(uri)) {
                s.push(bytes.clone());
            }
            return;
        }
        if let SessionKey::Client(id) = session {
            if let Some(s) = server.sessions.by_audit_id(id) {
                s.push(Bytes::from(serde_json::to_vec(&message).unwrap_or_default()));
            }
        }
    }

    fn request(&self, _provider: &str, session: &SessionKey, request: ServerRequest) {
        let client = match (self.0.upgrade(), session) {
            (Some(server), SessionKey::Client(id)) => server.sessions.by_audit_id(id),
            _ => None,
        };
        let Some(client) = client else {
            let reply = if request.method == "roots/list" {
                Ok(json!({"roots": []}))
            } else {
                Err(RpcError::new(code::METHOD_NOT_FOUND, format!("no client can answer {}", request.method)))
            };
            let _ = request.respond.send(reply);
            return;
        };
        let capability = request.method.split('/').next().unwrap_or_default();
        if !client.has_capability(capability) {
            let _ = request.respond.send(Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("the client did not declare the {capability} capability"),
            )));
            return;
        }
        let Some(id) = client.register_request(request.respond) else { return };
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": request.method, "params": request.params});
        client.push(Bytes::from(serde_json::to_vec(&msg).unwrap_or_default()));
    }
}

/// Sends change notification `method` to every listener and legacy session.
fn broadcast(server: &McpServer, method: &str) {
    let change = json!({"jsonrpc": "2.0", "method": method});
    server.listeners.publish(&change);
    let bytes = Bytes::from(serde_json::to_vec(&change).unwrap_or_default());
    for s in server.sessions.all() {
        s.push(bytes.clone());
    }
}

/// Drops cached lists of `provider` and of the groups it belongs to.
fn invalidate(server: &McpServer, provider: &str, kinds: &[ListKind]) {
    let snap = server.state.snapshot();
    let Some((idx, p)) = snap.routes.provider(provider) else { return };
    p.lists.invalidate(kinds);
    for (g, group) in snap.routes.providers.iter().enumerate() {
        if snap.routes.pool(g).is_some_and(|pool| pool.members.contains(&idx)) {
            group.lists.invalidate(kinds);
        }
    }
}
