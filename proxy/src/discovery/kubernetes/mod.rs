//! Kubernetes discovery (`type: kubernetes`): Ready pods annotated `mcp.hangar.io/enabled: "true"`
//! become remote providers at the pod's IP, with the Python MCP Hangar's annotations (see
//! [`super::labels`]); pods naming one `mcp.hangar.io/group` form a pool that follows a
//! Deployment as it scales. With `custom_resources` (the default), the Python operator's
//! `MCPProvider` and `MCPProviderGroup` resources are followed too, and the gateway does the
//! operator's work itself ([`operator`]): pods for container providers, status written back.
//!
//! Everything is followed with `kube`'s watcher (list, then watch from its resourceVersion with
//! bookmarks; a watch the API server expired with 410 Gone is listed again), one per kind and
//! namespace named (all namespaces when none is), pods filtered by `label_selector` on the server,
//! everything by `discovery.security.allowed_namespaces`/`denied_namespaces` here. Only Ready pods
//! that are not being deleted serve. An API server that cannot be reached is retried with backoff
//! (the watcher's own); the source reports it meanwhile. A cluster without the CRDs installed is a
//! problem line of the source, and its pods are still followed.

mod operator;
mod pod_spec;
pub mod resources;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use hangar_config::{DiscoveryMode, DiscoverySecurity, DiscoverySource, SourceKind};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::labels::{self, AddressPolicy, Found, Workload};
use crate::state::AppState;
use operator::Operator;
use resources::{MCPProvider, MCPProviderGroup};

const KIND: &str = "kubernetes";
/// How often statuses, pod timers (startup timeouts, backoff) and provider states are looked at
/// when nothing in the cluster changed.
const TICK: Duration = Duration::from_secs(2);

/// One `type: kubernetes` source.
struct KubernetesSource {
    index: usize,
    mode: DiscoveryMode,
    namespaces: Vec<String>,
    label_selector: Option<String>,
    in_cluster: bool,
    kubeconfig: Option<PathBuf>,
    addresses: AddressPolicy,
    custom_resources: bool,
}

/// Follows source `index` (a Kubernetes source) until shutdown.
pub fn spawn(state: &Arc<AppState>, index: usize, source: &DiscoverySource) -> Option<tokio::task::AbortHandle> {
    if let SourceKind::Kubernetes {
        namespaces,
        label_selector,
        in_cluster,
        kubeconfig,
        allow_loopback,
        allow_link_local,
        custom_resources,
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
            custom_resources: *custom_resources,
        };
        return Some(tokio::spawn(source.run(state.clone())).abort_handle());
    }
    None
}

/// What a watch follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Followed {
    /// Pods selected by `label_selector` (annotated ones become providers).
    Pods,
    /// The pods the gateway runs for container `MCPProvider`s.
    Managed,
    /// `MCPProvider`s.
    Providers,
    /// `MCPProviderGroup`s.
    Groups,
}

impl Followed {
    fn what(self) -> &'static str {
        match self {
            Self::Pods => "pods",
            Self::Managed => "the pods the gateway runs",
            Self::Providers => "MCPProvider resources",
            Self::Groups => "MCPProviderGroup resources",
        }
    }
}

/// One watch event: of a pod or of a custom resource.
enum Change {
    Pod(Box<Event<Pod>>),
    Object(Box<Event<DynamicObject>>),
}

type Item = (Followed, usize, Result<Change, watcher::Error>);

/// The objects of one kind, per namespace watched, kept current from the watcher's events; while
/// a (re)list is in progress the previous picture stands, so a relist never shows a partial one.
struct Picture<K> {
    items: Vec<BTreeMap<String, K>>,
    relisting: Vec<Option<BTreeMap<String, K>>>,
}

impl<K> Picture<K> {
    fn new(namespaces: usize) -> Self {
        Self {
            items: (0..namespaces).map(|_| BTreeMap::new()).collect(),
            relisting: (0..namespaces).map(|_| None).collect(),
        }
    }

    fn apply(&mut self, i: usize, event: Event<K>, key: impl Fn(&K) -> String) {
        match event {
            Event::Init => self.relisting[i] = Some(BTreeMap::new()),
            Event::InitApply(obj) => {
                if let Some(list) = &mut self.relisting[i] {
                    list.insert(key(&obj), obj);
                }
            }
            Event::InitDone => self.items[i] = self.relisting[i].take().unwrap_or_default(),
            Event::Apply(obj) => {
                self.items[i].insert(key(&obj), obj);
            }
            Event::Delete(obj) => {
                self.items[i].remove(&key(&obj));
            }
        }
    }

    /// A (re)list of namespace `i` failed: the watcher starts a new one (with a new `Init`), and
    /// the previous picture stands meanwhile.
    fn abandon(&mut self, i: usize) {
        self.relisting[i] = None;
    }

    fn settled(&self) -> bool {
        self.relisting.iter().all(Option::is_none)
    }

    fn all(&self) -> impl Iterator<Item = &K> {
        self.items.iter().flat_map(BTreeMap::values)
    }
}

/// Everything the source follows.
struct Pictures {
    pods: Picture<Pod>,
    managed: Picture<Pod>,
    providers: Picture<DynamicObject>,
    groups: Picture<DynamicObject>,
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
                        () = tokio::time::sleep(Duration::from_secs(10)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        let mut events = futures_util::stream::select_all(self.watches(&client));
        let n = self.namespaces.len().max(1);
        let mut pictures = Pictures {
            pods: Picture::new(n),
            managed: Picture::new(n),
            providers: Picture::new(n),
            groups: Picture::new(n),
        };
        let mut watch_errors: BTreeMap<Followed, String> = BTreeMap::new();
        let mut operator = Operator::default();
        let mut refresh = state.reconciler.live().refresh_signal();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                next = events.next() => match next {
                    Some((followed, i, Ok(change))) => {
                        watch_errors.remove(&followed);
                        match (followed, change) {
                            (Followed::Pods, Change::Pod(e)) => pictures.pods.apply(i, *e, pod_name),
                            (Followed::Managed, Change::Pod(e)) => pictures.managed.apply(i, *e, pod_name),
                            (Followed::Providers, Change::Object(e)) => pictures.providers.apply(i, *e, object_name),
                            (Followed::Groups, Change::Object(e)) => pictures.groups.apply(i, *e, object_name),
                            _ => {}
                        }
                    }
                    Some((Followed::Pods, i, Err(e))) => {
                        pictures.pods.abandon(i);
                        super::record(&state, self.index, KIND, self.mode, Err(format!("watching pods: {e}")));
                        continue;
                    }
                    Some((followed, i, Err(e))) => {
                        match followed {
                            Followed::Pods | Followed::Managed => pictures.managed.abandon(i),
                            Followed::Providers => pictures.providers.abandon(i),
                            Followed::Groups => pictures.groups.abandon(i),
                        }
                        let hint = match followed {
                            Followed::Providers | Followed::Groups => {
                                " (are the CRDs installed? `mcp-hangar crds | kubectl apply -f -`; or set custom_resources: false)"
                            }
                            _ => "",
                        };
                        watch_errors.insert(followed, format!("cannot watch {}: {e}{hint}", followed.what()));
                    }
                    None => return,
                },
                _ = tick.tick(), if self.custom_resources => {}
                _ = refresh.changed() => {}
                _ = shutdown.changed() => return,
            }
            let all = [pictures.pods.settled(), pictures.managed.settled()];
            if !all.into_iter().all(|s| s) || !pictures.providers.settled() || !pictures.groups.settled() {
                continue; // a relist in progress: the full picture comes with its InitDone
            }
            self.cycle(&state, &client, &pictures, &watch_errors, &mut operator).await;
        }
    }

    /// The watches: pods always; with custom resources, the two kinds and the pods the gateway
    /// runs, each per namespace.
    fn watches(&self, client: &Client) -> Vec<BoxStream<'static, Item>> {
        let namespaces: Vec<Option<String>> =
            if self.namespaces.is_empty() { vec![None] } else { self.namespaces.iter().cloned().map(Some).collect() };
        let pods = |ns: &Option<String>| match ns {
            Some(ns) => Api::<Pod>::namespaced(client.clone(), ns),
            None => Api::<Pod>::all(client.clone()),
        };
        let objects = |ns: &Option<String>, resource: &ApiResource| match ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, resource),
            None => Api::<DynamicObject>::all_with(client.clone(), resource),
        };
        let mut selected = watcher::Config::default();
        if let Some(selector) = &self.label_selector {
            selected = selected.labels(selector);
        }
        let managed =
            watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={}", pod_spec::MANAGED_BY));
        let provider_kind = ApiResource::erase::<MCPProvider>(&());
        let group_kind = ApiResource::erase::<MCPProviderGroup>(&());
        let mut streams = Vec::new();
        for (i, ns) in namespaces.iter().enumerate() {
            let pod_watch = |followed: Followed, config: watcher::Config| {
                watcher::watcher(pods(ns), config)
                    .default_backoff()
                    .map(move |e| (followed, i, e.map(|e| Change::Pod(Box::new(e)))))
                    .boxed()
            };
            streams.push(pod_watch(Followed::Pods, selected.clone()));
            if self.custom_resources {
                streams.push(pod_watch(Followed::Managed, managed.clone()));
                for (followed, kind) in [(Followed::Providers, &provider_kind), (Followed::Groups, &group_kind)] {
                    let watch = watcher::watcher(objects(ns, kind), watcher::Config::default())
                        .default_backoff()
                        .map(move |e| (followed, i, e.map(|e| Change::Object(Box::new(e)))))
                        .boxed();
                    streams.push(watch);
                }
            }
        }
        streams
    }

    /// One look at everything followed: records what it defines (reloading when that changed),
    /// then does the operator's part: pods, then statuses.
    async fn cycle(
        &self,
        state: &Arc<AppState>,
        client: &Client,
        pictures: &Pictures,
        watch_errors: &BTreeMap<Followed, String>,
        operator: &mut Operator,
    ) {
        let snap = state.snapshot();
        let rules = &snap.config.discovery.security;
        let allowed = |ns: Option<&str>| namespace_allowed(ns.unwrap_or_default(), rules);
        let providers: Vec<_> = pictures
            .providers
            .all()
            .filter(|o| allowed(o.metadata.namespace.as_deref()))
            .map(operator::read_provider)
            .collect();
        let groups: Vec<_> = pictures
            .groups
            .all()
            .filter(|o| allowed(o.metadata.namespace.as_deref()))
            .map(operator::read_group)
            .collect();
        let managed: HashMap<String, &Pod> = pictures
            .managed
            .all()
            .filter_map(|p| {
                let provider = p.metadata.labels.as_ref()?.get(pod_spec::PROVIDER_LABEL)?;
                Some((format!("{}/{provider}", p.metadata.namespace.as_deref().unwrap_or_default()), p))
            })
            .collect();
        let configured: HashSet<&str> =
            snap.config.providers.iter().filter(|p| p.source.is_none()).map(|p| p.name.as_str()).collect();
        let mut found = self.pod_providers(rules, pictures.pods.all());
        found.extend(operator.providers(&providers, &managed, &self.addresses));
        let (mut list, mut problems) = labels::assemble(KIND, found, &configured, rules.max_providers_per_source);
        let served = operator::served(&providers, &list);
        let taken = |name: &str| configured.contains(name) || list.iter().any(|p| p.name == name);
        let (defined, group_problems) = operator.groups(&groups, &providers, &served, &taken);
        list.extend(defined);
        problems.extend(group_problems);
        problems.extend(watch_errors.values().cloned());
        problems.extend(operator.problems());
        if super::record(state, self.index, KIND, self.mode, Ok((list, problems.clone()))) {
            let _ = state.reconciler.reload(state, "discovery: kubernetes", true).await;
        }
        if !self.custom_resources {
            return;
        }
        operator.act(client, &providers).await;
        let snap = state.snapshot();
        let runtime = |name: &str, origin: &str| {
            snap.routes
                .provider(name)
                .filter(|(_, p)| p.config.source.as_deref() == Some(Path::new(origin)))
                .map(|(_, p)| p.clone())
        };
        let admission = state.reconciler.admission();
        let quarantined = |name: &str| admission.quarantine_reason(name);
        let problem = |label: &str| problems.iter().find(|p| p.starts_with(&format!("{label}: "))).cloned();
        let writes = operator.statuses(&providers, &groups, &runtime, &quarantined, &problem);
        operator.write(client, writes).await;
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
    fn pod_providers<'a>(&self, rules: &DiscoverySecurity, pods: impl Iterator<Item = &'a Pod>) -> Found {
        let mut found: Found = Vec::new();
        for pod in pods.filter(|p| marked(p) && serving(p) && namespace_allowed(pod_namespace(p), rules)) {
            let empty = BTreeMap::new();
            let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
            let get = |k: &str| annotations.get(k).map(String::as_str);
            let name = pod.metadata.name.clone().unwrap_or_default();
            let workload = Workload { source: KIND, name, get: &get, address: address(pod) };
            found.push((
                format!("pod {}", pod_name(pod)),
                labels::provider_of(&labels::KUBERNETES, &workload, &self.addresses),
            ));
        }
        found
    }
}

/// `namespace/name` of a custom resource.
fn object_name(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    )
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
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

fn namespace_allowed(ns: &str, rules: &DiscoverySecurity) -> bool {
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
        assert!(namespace_allowed(pod_namespace(&pod("mcp", "True", on.clone())), &rules));
        assert!(!namespace_allowed(pod_namespace(&pod("default", "True", on.clone())), &rules), "denied wins");
        assert!(!namespace_allowed(pod_namespace(&pod("other", "True", on)), &rules));
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
