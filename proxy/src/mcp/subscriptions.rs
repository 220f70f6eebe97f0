//! Change subscriptions at the gateway: modern clients' `subscriptions/listen` streams and legacy
//! clients' `resources/subscribe`. Upstream notifications reach the matching subscribers; the set
//! of URIs anyone wants decides what the gateway watches on each provider.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::{Item, Principal};
use crate::mcp::aggregate;
use crate::mcp::server::McpServer;

/// What one `subscriptions/listen` stream asked for (and was granted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `toolsListChanged`.
    pub tools: bool,
    /// `promptsListChanged`.
    pub prompts: bool,
    /// `resourcesListChanged`.
    pub resources: bool,
    /// `resourceSubscriptions`.
    pub uris: BTreeSet<String>,
}

impl Filter {
    /// Reads `params.notifications`.
    pub fn from_params(params: &Value) -> Self {
        let n = params.get("notifications");
        let flag = |k: &str| n.and_then(|n| n.get(k)).and_then(Value::as_bool).unwrap_or(false);
        let uris = n
            .and_then(|n| n.get("resourceSubscriptions"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        Self {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        }
    }

    /// The acknowledgment's `notifications` object.
    pub fn to_ack(&self) -> Value {
        let mut n = serde_json::Map::new();
        if self.tools {
            n.insert("toolsListChanged".into(), true.into());
        }
        if self.prompts {
            n.insert("promptsListChanged".into(), true.into());
        }
        if self.resources {
            n.insert("resourcesListChanged".into(), true.into());
        }
        if !self.uris.is_empty() {
            n.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(n)
    }

    fn wants(&self, notification: &Value) -> bool {
        match notification.get("method").and_then(Value::as_str) {
            Some("notifications/tools/list_changed") => self.tools,
            Some("notifications/prompts/list_changed") => self.prompts,
            Some("notifications/resources/list_changed") => self.resources,
            Some("notifications/resources/updated") => {
                notification.pointer("/params/uri").and_then(Value::as_str).is_some_and(|u| self.uris.contains(u))
            }
            _ => false,
        }
    }
}

struct Listener {
    filter: Filter,
    tx: mpsc::Sender<Value>,
}

/// Open `subscriptions/listen` streams.
#[derive(Default)]
pub struct Listeners {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Listener>>,
}

/// Keeps a listener registered; dropping it unregisters.
pub struct ListenerGuard {
    id: u64,
    listeners: Weak<Listeners>,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(l) = self.listeners.upgrade() {
            {
                let mut m = l.map.lock();
                m.remove(&self.id);
            }
        }
    }
}

impl Listeners {
    /// Registers a stream; notifications it wants arrive on `tx`.
    pub fn add(self: &Arc<Self>, filter: Filter, tx: mpsc::Sender<Value>) -> ListenerGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut m = self.map.lock();
            m.insert(id, Listener { filter, tx });
        }
        ListenerGuard { id, listeners: Arc::downgrade(self) }
    }

    /// Delivers `notification` to every stream that wants it. A stream too slow to keep up loses
    /// the notification rather than holding up the others.
    pub fn publish(&self, notification: &Value) {
        let m = self.map.lock();
        for l in m.values().filter(|l| l.filter.wants(notification)) {
            if l.tx.try_send(notification.clone()).is_err() {
                tracing::debug!("a subscriptions/listen stream is not keeping up; dropped a notification");
            }
        }
    }

    fn uris(&self) -> BTreeSet<String> {
        self.map.lock().values().flat_map(|l| l.filter.uris.iter().cloned()).collect()
    }

    /// Open streams.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Brings every provider's watch up to date with what subscribers want: each concrete upstream
/// watches its list changes and the wanted URIs it serves.
pub async fn refresh(server: &McpServer) {
    let snap = server.state.snapshot();
    let routes = &snap.routes;
    let mut wanted: BTreeSet<String> = server.listeners.uris();
    for s in server.sessions.all() {
        wanted.extend(s.resource_subscriptions());
    }
    let mut by_provider: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for uri in wanted {
        if let Some(idx) = aggregate::resolve_resource(routes, &uri).await {
            if let Ok((member, _)) = routes.choose(idx, &[], &[]) {
                by_provider.entry(member).or_default().push(uri);
            }
        }
    }
    for (i, p) in routes.providers.iter().enumerate() {
        let Ok((_, upstream)) = routes.upstream(i) else { continue };
        if p.is_group() {
            continue;
        }
        let uris = by_provider.remove(&i).unwrap_or_default();
        // A provider not started yet has no changes to report: watching it would defeat lazy start.
        if uris.is_empty() && upstream.info().is_none() {
            continue;
        }
        if let Err(e) = upstream.watch(uris).await {
            tracing::debug!(provider = p.name(), "cannot watch for changes: {e}");
        }
    }
}

/// Opens a listener for a `subscriptions/listen` request: grants what can be honoured (list changes
/// always; resource URIs that some provider serves), registers it and brings the watches up to
/// date. Returns the granted filter, the registration and the notification receiver.
pub async fn open(
    server: &McpServer,
    params: &Value,
    principal: &Principal,
) -> (Filter, ListenerGuard, mpsc::Receiver<Value>) {
    let mut granted = Filter::from_params(params);
    let snap = server.state.snapshot();
    let mut known = BTreeSet::new();
    for uri in std::mem::take(&mut granted.uris) {
        // Only resources the caller may read: updates of the others are not granted.
        let Some(idx) = aggregate::resolve_resource(&snap.routes, &uri).await else { continue };
        let item = Item::Resource { provider: snap.routes.providers[idx].name(), uri: &uri };
        if principal.decide(&item).allowed {
            known.insert(uri);
        }
    }
    granted.uris = known;
    let (tx, rx) = mpsc::channel(256);
    let guard = server.listeners.add(granted.clone(), tx);
    refresh(server).await;
    (granted, guard, rx)
}

/// The acknowledgment message for a listen request with id `id`.
pub fn acknowledgment(id: &serde_json::value::RawValue, granted: &Filter) -> Value {
    let sid: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
           "params": {"_meta": {crate::proto::protocol::meta::SUBSCRIPTION_ID: sid}, "notifications": granted.to_ack()}})
}

/// Tags a notification with the subscription it is delivered on.
pub fn tag(mut notification: Value, id: &serde_json::value::RawValue) -> Value {
    let sid: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    if let Some(obj) = notification.as_object_mut() {
        let params = obj.entry("params").or_insert_with(|| json!({}));
        if let Some(p) = params.as_object_mut() {
            let meta = p.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert(crate::proto::protocol::meta::SUBSCRIPTION_ID.into(), sid);
            }
        }
    }
    notification
}

/// The result that ends a subscription gracefully (server-initiated close).
pub fn closing_result(id: &serde_json::value::RawValue) -> Value {
    let sid: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    json!({"resultType": "complete", "_meta": {crate::proto::protocol::meta::SUBSCRIPTION_ID: sid}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_what_was_asked() {
        let f = Filter::from_params(
            &json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["a://1"]}}),
        );
        assert!(f.wants(&json!({"method": "notifications/tools/list_changed"})));
        assert!(!f.wants(&json!({"method": "notifications/prompts/list_changed"})));
        assert!(f.wants(&json!({"method": "notifications/resources/updated", "params": {"uri": "a://1"}})));
        assert!(!f.wants(&json!({"method": "notifications/resources/updated", "params": {"uri": "a://2"}})));
        assert_eq!(f.to_ack(), json!({"toolsListChanged": true, "resourceSubscriptions": ["a://1"]}));
    }

    #[tokio::test]
    async fn listeners_unregister_on_drop() {
        let l = Arc::new(Listeners::default());
        let (tx, mut rx) = mpsc::channel(4);
        let guard = l.add(Filter { tools: true, ..Filter::default() }, tx);
        l.publish(&json!({"method": "notifications/tools/list_changed"}));
        assert!(rx.recv().await.is_some());
        drop(guard);
        assert!(l.is_empty());
    }
}
