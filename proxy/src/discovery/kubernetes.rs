//! Kubernetes discovery (`type: kubernetes`): Ready pods annotated `mcp.hangar.io/enabled: "true"`
//! become remote providers at the pod's IP, with the Python MCP Hangar's annotations (see
//! [`super::labels`]); pods naming one `mcp.hangar.io/group` form a pool that follows a
//! Deployment as it scales.
//!
//! Pods are followed with `kube`'s watcher (list, then watch from its resourceVersion with
//! bookmarks; a watch the API server expired with 410 Gone is listed again), one per namespace
//! named (all namespaces when none is), filtered by `label_selector` on the server and by
//! `discovery.security.allowed_namespaces`/`denied_namespaces` here. Only Ready pods that are
//! not being deleted serve. An API server that cannot be reached is retried with backoff (the
//! watcher's own); the source reports it meanwhile.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use hangar_config::{DiscoveryMode, DiscoverySecurity, DiscoverySource, Provider, SourceKind};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::labels::{self, AddressPolicy, Found, Workload};
use crate::state::AppState;

const KIND: &str = "kubernetes";

/// One `type: kubernetes` source.
struct KubernetesSource {
    index: usize,
    mode: DiscoveryMode,
    namespaces: Vec<String>,
    label_selector: Option<String>,
    in_cluster: bool,
    kubeconfig: Option<PathBuf>,
    addresses: AddressPolicy,
}

/// Follows source `index` (a Kubernetes source) until shutdown.
pub fn spawn(state: &Arc<AppState>, index: usize, source: &DiscoverySource) {
    if let SourceKind::Kubernetes {
        namespaces,
        label_selector,
        in_cluster,
        kubeconfig,
        allow_loopback,
        allow_link_local,
    } = &source.kind
    {
        let source = KubernetesSource {
            index,
            mode: source.mode,
            namespaces: namespaces.clone(),
            label_selector: label_selector.clone(),
            in_cluster: *in_cluster,
            kubeconfig: kubeconfig.clone(),
            addresses: AddressPolicy { loopback: *allow_loopback, link_local: *allow_link_local },
        };
        tokio::spawn(source.run(state.clone()));
    }
}

impl KubernetesSource {
    async fn run(self, state: Arc<AppState>) {
        let mut shutdown = state.shutdown_signal();
        let client = loop {
            match self.client().await {
                Ok(c) => break c,
                Err(why) => {
                    super::record(&state, self.index, KIND, self.mode, Err(why));
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &self.label_selector {
            config = config.labels(selector);
        }
        let apis: Vec<Api<Pod>> = if self.namespaces.is_empty() {
            vec![Api::all(client)]
        } else {
            self.namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
        };
        let streams = apis.into_iter().enumerate().map(|(i, api)| {
            watcher::watcher(api, config.clone()).default_backoff().map(move |event| (i, event)).boxed()
        });
        let mut events = futures_util::stream::select_all(streams);
        let mut pods: Vec<BTreeMap<String, Pod>> = vec![BTreeMap::new(); self.namespaces.len().max(1)];
        let mut relisting: Vec<Option<BTreeMap<String, Pod>>> = vec![None; pods.len()];
        loop {
            let (i, event) = tokio::select! {
                next = events.next() => match next {
                    Some(e) => e,
                    None => return,
                },
                _ = shutdown.changed() => return,
            };
            match event {
                Ok(Event::Init) => relisting[i] = Some(BTreeMap::new()),
                Ok(Event::InitApply(pod)) => {
                    if let Some(list) = &mut relisting[i] {
                        list.insert(pod_name(&pod), pod);
                    }
                    continue;
                }
                Ok(Event::InitDone) => pods[i] = relisting[i].take().unwrap_or_default(),
                Ok(Event::Apply(pod)) => {
                    pods[i].insert(pod_name(&pod), pod);
                }
                Ok(Event::Delete(pod)) => {
                    pods[i].remove(&pod_name(&pod));
                }
                Err(e) => {
                    super::record(&state, self.index, KIND, self.mode, Err(format!("watching pods: {e}")));
                    continue;
                }
            }
            if relisting.iter().any(Option::is_some) {
                continue; // a relist in progress: the full picture comes with its InitDone
            }
            let look = self.providers(&state, pods.iter().flat_map(BTreeMap::values));
            if super::record(&state, self.index, KIND, self.mode, Ok(look)) {
                let _ = state.reconciler.reload(&state, "discovery: kubernetes", true).await;
            }
        }
    }

    async fn client(&self) -> Result<Client, String> {
        // kube's TLS needs a process-wide crypto provider; the front door's is the same one.
        pingora_rustls::install_default_crypto_provider();
        let config = if self.in_cluster {
            kube::Config::incluster().map_err(|e| format!("in-cluster configuration: {e}"))?
        } else if let Some(path) = &self.kubeconfig {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        } else {
            kube::Config::infer().await.map_err(|e| format!("no Kubernetes configuration: {e}"))?
        };
        Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
    }

    /// The providers the marked, Ready pods of allowed namespaces define.
    fn providers<'a>(&self, state: &AppState, pods: impl Iterator<Item = &'a Pod>) -> (Vec<Provider>, Vec<String>) {
        let snap = state.snapshot();
        let config = &snap.config;
        let rules = &config.discovery.security;
        let configured: HashSet<&str> =
            config.providers.iter().filter(|p| p.source.is_none()).map(|p| p.name.as_str()).collect();
        let mut found: Found = Vec::new();
        for pod in pods.filter(|p| marked(p) && serving(p) && namespace_allowed(p, rules)) {
            let empty = BTreeMap::new();
            let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
            let get = |k: &str| annotations.get(k).map(String::as_str);
            let name = pod.metadata.name.clone().unwrap_or_default();
            let workload = Workload { source: KIND, name, get: &get, address: address(pod) };
            found.push((pod_name(pod), labels::provider_of(&labels::KUBERNETES, &workload, &self.addresses)));
        }
        labels::assemble("pod", KIND, found, &configured, rules.max_providers_per_source)
    }
}

/// `namespace/name`: the pod's key in the watcher's picture, and how messages name it.
fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether the pod asks to be a provider.
fn marked(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(labels::KUBERNETES.enabled)).is_some_and(|v| v == "true")
}

/// Ready and not being deleted.
fn serving(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn namespace_allowed(pod: &Pod, rules: &DiscoverySecurity) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    (rules.allowed_namespaces.is_empty() || rules.allowed_namespaces.iter().any(|a| a == ns))
        && !rules.denied_namespaces.iter().any(|d| d == ns)
}

fn address(pod: &Pod) -> Result<IpAddr, String> {
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).ok_or("has no pod IP yet")?;
    ip.parse().map_err(|e| format!("has a pod IP the API server reports badly ({ip}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, ready: &str, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-7d4f", "namespace": ns, "annotations": annotations},
            "spec": {"containers": [{"name": "mcp", "image": "x"}]},
            "status": {"podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": ready}]},
        }))
        .expect("a pod")
    }

    #[test]
    fn ready_marked_pods_of_allowed_namespaces_serve() {
        let on = json!({"mcp.hangar.io/enabled": "true"});
        assert!(marked(&pod("a", "True", on.clone())) && serving(&pod("a", "True", on.clone())));
        assert!(!serving(&pod("a", "False", on.clone())));
        assert!(!marked(&pod("a", "True", json!({"mcp.hangar.io/enabled": "false"}))));
        let rules = DiscoverySecurity {
            allowed_namespaces: vec!["mcp".into(), "default".into()],
            denied_namespaces: vec!["default".into()],
            ..DiscoverySecurity::default()
        };
        assert!(namespace_allowed(&pod("mcp", "True", on.clone()), &rules));
        assert!(!namespace_allowed(&pod("default", "True", on.clone()), &rules), "denied wins");
        assert!(!namespace_allowed(&pod("other", "True", on), &rules));
    }

    #[test]
    fn annotations_define_the_provider() {
        let p = pod(
            "mcp",
            "True",
            json!({"mcp.hangar.io/enabled": "true", "mcp.hangar.io/name": "search", "mcp.hangar.io/port": "9000"}),
        );
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        let get = |k: &str| annotations.get(k).map(String::as_str);
        let w = Workload { source: KIND, name: "web-7d4f".into(), get: &get, address: address(&p) };
        let (provider, _) = labels::provider_of(&labels::KUBERNETES, &w, &AddressPolicy::default()).expect("valid");
        assert_eq!(provider.name, "search");
        assert!(
            matches!(&provider.kind, hangar_config::ProviderKind::Remote(r) if r.endpoint == "http://10.1.2.3:9000/mcp")
        );
    }
}
