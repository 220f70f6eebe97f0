//! The Python project's operator, done by the Kubernetes source itself (there is no operator
//! process): `MCPProvider`s become providers — a remote one at its endpoint or Service, a
//! container one at the pod the gateway runs for it — and `MCPProviderGroup`s become groups over
//! them; what the gateway sees of each (state, tools, last error) is written back to its status.
//!
//! Translation goes through the configuration file's own provider format
//! ([`hangar_config::discovered_definition`]), so a resource gets the file's checks and messages.
//! Pods are created, replaced (the spec changed, the pod ended: with backoff) and deleted
//! (replicas 0, resource gone) here; their state comes from the source's watch of the pods it
//! manages.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hangar_config::Provider;
use jsonschema::Validator;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::pod_spec::{self, Owner, GENERATION_ANNOTATION};
use super::resources::{
    Condition, LoadBalancingStrategy, MCPProviderGroupSpec, MCPProviderGroupStatus, MCPProviderSpec, MCPProviderStatus,
    ProviderMemberStatus, ProviderMode,
};
use crate::discovery::labels::{AddressPolicy, Found};
use crate::lifecycle::State;
use crate::proto::lists::ListKind;
use crate::provider::ProviderRuntime;

/// Most schema problems reported for one resource.
const MAX_PROBLEMS: usize = 10;
/// After a pod is created or deleted, the watch shows the result; no second action meanwhile.
const ACTION_SETTLE: Duration = Duration::from_secs(5);
/// Longest wait before a container provider whose pods keep ending gets a new one.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Each Kubernetes call the operator part makes.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a resource is, and its spec or why it has none.
#[derive(Debug, Clone)]
pub(super) struct Resource<S> {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: Option<String>,
    pub(super) generation: i64,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) spec: Result<S, String>,
    /// Its status as the API server has it (`Null` when it has none).
    pub(super) status: Value,
}

impl<S> Resource<S> {
    /// `namespace/name`.
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An `MCPProvider` as read.
pub(super) type ProviderResource = Resource<MCPProviderSpec>;
/// An `MCPProviderGroup` as read.
pub(super) type GroupResource = Resource<MCPProviderGroupSpec>;

/// Reads an `MCPProvider`: its spec is checked against the resource's schema first, so every
/// unknown or ill-typed field is reported with its path, not just the first.
pub(super) fn read_provider(obj: &DynamicObject) -> ProviderResource {
    static SCHEMA: OnceLock<Option<Validator>> = OnceLock::new();
    let validator = SCHEMA.get_or_init(compile::<MCPProviderSpec>);
    read(obj, validator.as_ref())
}

/// Reads an `MCPProviderGroup` (see [`read_provider`]).
pub(super) fn read_group(obj: &DynamicObject) -> GroupResource {
    static SCHEMA: OnceLock<Option<Validator>> = OnceLock::new();
    let validator = SCHEMA.get_or_init(compile::<MCPProviderGroupSpec>);
    read(obj, validator.as_ref())
}

/// The validator of a spec type's schema, shaped as the CRD's is (subschemas inline, optional
/// fields `nullable` rather than `anyOf` with `null`), so a problem inside an optional field is
/// reported at its own path.
fn compile<S: schemars::JsonSchema>() -> Option<Validator> {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings
        .with_transform(schemars::transform::AddNullable::default())
        .into_generator()
        .into_root_schema_for::<S>();
    match jsonschema::validator_for(schema.as_value()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!("the custom resources' schema does not compile; specs are only decoded: {e}");
            None
        }
    }
}

fn read<S: DeserializeOwned>(obj: &DynamicObject, validator: Option<&Validator>) -> Resource<S> {
    let meta = &obj.metadata;
    Resource {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        generation: meta.generation.unwrap_or(0),
        labels: meta.labels.clone().unwrap_or_default(),
        spec: decode(obj.data.get("spec"), validator),
        status: obj.data.get("status").cloned().unwrap_or(Value::Null),
    }
}

fn decode<S: DeserializeOwned>(spec: Option<&Value>, validator: Option<&Validator>) -> Result<S, String> {
    let mut spec = spec.ok_or("has no spec")?.clone();
    without_nulls(&mut spec); // a null field is an absent one, as for the API server
    if let Some(v) = validator {
        let problems: Vec<String> = v
            .iter_errors(&spec)
            .take(MAX_PROBLEMS)
            .map(|e| format!("{}: {e}", dotted("spec", &e.instance_path.to_string())))
            .collect();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
    }
    serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))
}

fn without_nulls(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            fields.retain(|_, f| !f.is_null());
            fields.values_mut().for_each(without_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(without_nulls),
        _ => {}
    }
}

/// A JSON pointer (`/env/0/name`) as a path in the configuration's style (`spec.env[0].name`).
fn dotted(root: &str, pointer: &str) -> String {
    let mut out = root.to_owned();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push('.');
            out.push_str(&part);
        }
    }
    out
}

/// A Go duration (`30s`, `5m`, `1h30m`) at `path`.
fn duration(path: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = value else { return Ok(None) };
    let parsed: kube::core::Duration = text.parse().map_err(|e| format!("{path}: {text:?} is not a duration ({e})"))?;
    if parsed.is_negative() {
        return Err(format!("{path}: {text:?} is negative"));
    }
    Ok(Some(parsed.into()))
}

/// What the pod of a container provider says.
#[derive(Debug, Clone, PartialEq)]
enum PodView {
    /// There is none.
    Absent,
    /// It is going away.
    Deleting,
    /// It was built from an older spec.
    Stale,
    /// Its container ended (why).
    Ended(String),
    /// Scheduled or starting, not Ready yet.
    Pending,
    /// Ready at this address.
    Ready(IpAddr),
}

fn view(pod: Option<&Pod>, generation: i64) -> PodView {
    let Some(pod) = pod else { return PodView::Absent };
    if pod.metadata.deletion_timestamp.is_some() {
        return PodView::Deleting;
    }
    let built_from = pod.metadata.annotations.as_ref().and_then(|a| a.get(GENERATION_ANNOTATION));
    if built_from.is_some_and(|g| g != &generation.to_string()) {
        return PodView::Stale;
    }
    let Some(status) = &pod.status else { return PodView::Pending };
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        let terminated = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()));
        let why = match terminated {
            Some(t) => format!(
                "the pod's container ended with exit code {}{}",
                t.exit_code,
                t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            None => format!(
                "the pod {}{}",
                status.phase.as_deref().unwrap_or_default().to_lowercase(),
                status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        };
        return PodView::Ended(why);
    }
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    match status.pod_ip.as_deref().map(str::parse::<IpAddr>) {
        Some(Ok(ip)) if ready => PodView::Ready(ip),
        _ => PodView::Pending,
    }
}

/// The bookkeeping of one container provider's pods.
#[derive(Debug, Default)]
struct PodRun {
    /// Pods that ended in a row.
    failures: u32,
    /// No new pod before this.
    retry_at: Option<Instant>,
    /// Why the last pod ended (or could not be created).
    last_error: Option<String>,
    /// The last create or delete (whether a pod is there after it, and when): until the watch
    /// shows its result, or [`ACTION_SETTLE`] passed, it is not repeated.
    expect: Option<(bool, Instant)>,
    /// When the current pod was created (for `startupTimeout`).
    created_at: Option<Instant>,
}

impl PodRun {
    /// Whether the last action's result is still to be seen (`present`: a pod is there now).
    fn settling(&mut self, present: bool, now: Instant) -> bool {
        match self.expect {
            Some((after, at)) if after != present && now.duration_since(at) < ACTION_SETTLE => true,
            _ => {
                self.expect = None;
                false
            }
        }
    }

    fn acted(&mut self, present_after: bool, now: Instant) {
        self.expect = Some((present_after, now));
    }

    fn ended(&mut self, why: String, now: Instant) {
        self.failures += 1;
        let backoff = Duration::from_secs(1u64 << self.failures.min(9)).min(MAX_BACKOFF);
        self.retry_at = Some(now + backoff);
        self.last_error = Some(why);
    }
}

/// What the operator part does to a pod.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// Create the provider's pod.
    Create,
    /// Delete a pod (`namespace`, pod name, why).
    Delete(String, String, String),
}

/// Why an `MCPProvider` has no provider now, as its status says.
#[derive(Debug, Clone, PartialEq)]
struct Waiting {
    state: &'static str,
    reason: &'static str,
    message: String,
}

/// What became of one `MCPProvider` at the last look.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// A provider definition at this endpoint.
    Defined(String),
    /// No provider now.
    Waiting(Waiting),
    /// Not usable (also a problem of the source).
    Invalid(String),
}

/// What the last look made of one group: its members (MCPProvider names), or why it has none.
#[derive(Debug, Clone, PartialEq)]
enum GroupOutcome {
    Defined { strategy: &'static str, members: Vec<(String, u32)> },
    Waiting(String),
    Invalid(String),
}

/// The operator part of one Kubernetes source: pod bookkeeping, the outcomes of the last look,
/// and the statuses written.
#[derive(Default)]
pub(super) struct Operator {
    runs: HashMap<String, PodRun>,
    outcomes: HashMap<String, Outcome>,
    groups: HashMap<String, GroupOutcome>,
    actions: Vec<(String, Action)>,
    /// The status last written to each resource (`Kind namespace/name`), timestamps included.
    written: HashMap<String, Value>,
    /// Why a resource's status could not be written, by resource.
    write_errors: BTreeMap<String, String>,
}

/// The label of an `MCPProvider` in the source's problems (and its provider's origin).
pub(super) fn provider_label(key: &str) -> String {
    format!("MCPProvider {key}")
}

/// The origin recorded in a provider's `source`.
fn origin(label: &str) -> String {
    format!("kubernetes:{label}")
}

/// The `MCPProvider`s (by key) whose provider is in `list`: the source's providers once names
/// were sorted out (the configuration file and other workloads may have taken some).
pub(super) fn served(resources: &[ProviderResource], list: &[Provider]) -> HashSet<String> {
    resources
        .iter()
        .filter(|r| {
            let origin = origin(&provider_label(&r.key()));
            list.iter().any(|p| p.name == r.name && p.source.as_deref() == Some(Path::new(&origin)))
        })
        .map(Resource::key)
        .collect()
}

impl Operator {
    /// What the `MCPProvider`s define now, for the source's look; decides the pod actions that
    /// [`Operator::act`] then carries out. `managed` are the pods the gateway runs, by the
    /// provider they run (`namespace/name`).
    pub(super) fn providers(
        &mut self,
        resources: &[ProviderResource],
        managed: &HashMap<String, &Pod>,
        addresses: &AddressPolicy,
    ) -> Found {
        let now = Instant::now();
        let mut found = Found::new();
        self.outcomes.clear();
        self.actions.clear();
        for r in resources {
            let key = r.key();
            let label = provider_label(&key);
            let outcome = match &r.spec {
                Err(why) => Outcome::Invalid(why.clone()),
                Ok(spec) => {
                    let place = match spec.mode {
                        ProviderMode::Remote => {
                            remote_endpoint(r, spec).map_or_else(Outcome::Invalid, Outcome::Defined)
                        }
                        ProviderMode::Container => self.container(r, spec, managed.get(&key).copied(), now),
                    };
                    match place {
                        Outcome::Defined(endpoint) => {
                            let defined =
                                checked_endpoint(&endpoint, addresses).and_then(|()| definition(r, spec, &endpoint));
                            match defined {
                                Ok(provider) => {
                                    found.push((label.clone(), Ok((provider, None))));
                                    Outcome::Defined(endpoint)
                                }
                                Err(why) => Outcome::Invalid(why),
                            }
                        }
                        other => other,
                    }
                }
            };
            if let Outcome::Invalid(why) = &outcome {
                found.push((label, Err(why.clone())));
            }
            self.outcomes.insert(key, outcome);
        }
        // Pods whose resource is gone, or no longer runs a container.
        for (key, pod) in managed {
            let wanted = resources.iter().any(|r| {
                r.key() == *key && r.spec.as_ref().is_ok_and(|s| s.mode == ProviderMode::Container && replicas(s) > 0)
            });
            if !wanted && pod.metadata.deletion_timestamp.is_none() {
                let run = self.runs.entry(key.clone()).or_default();
                if !run.settling(true, now) {
                    run.acted(false, now);
                    let (ns, name) = pod_key(pod);
                    self.actions
                        .push((key.clone(), Action::Delete(ns, name, "its MCPProvider is gone or stopped".into())));
                }
            }
        }
        self.runs.retain(|key, _| resources.iter().any(|r| r.key() == *key) || managed.contains_key(key));
        found
    }

    /// A container provider: its pod's state decides its outcome and what to do about the pod.
    fn container(&mut self, r: &ProviderResource, spec: &MCPProviderSpec, pod: Option<&Pod>, now: Instant) -> Outcome {
        let key = r.key();
        if spec.image.as_deref().is_none_or(str::is_empty) {
            return Outcome::Invalid("spec.image is required for mode container".into());
        }
        let startup = match duration("spec.startupTimeout", spec.startup_timeout.as_deref()) {
            Ok(d) => d.unwrap_or(Duration::from_secs(30)),
            Err(why) => return Outcome::Invalid(why),
        };
        let run = self.runs.entry(key.clone()).or_default();
        let wanted = replicas(spec) > 0;
        let podview = view(pod, r.generation);
        let busy = run.settling(!matches!(podview, PodView::Absent | PodView::Deleting), now);
        let waiting = |state, reason, message: String| Outcome::Waiting(Waiting { state, reason, message });
        let delete = |why: &str| {
            let (ns, name) = pod.map(pod_key).unwrap_or_default();
            Action::Delete(ns, name, why.to_owned())
        };
        match podview {
            PodView::Ready(ip) if wanted => {
                run.failures = 0;
                run.retry_at = None;
                run.created_at = None;
                let port = spec.port.unwrap_or(pod_spec::DEFAULT_PORT);
                let path = spec.path.as_deref().unwrap_or("/mcp");
                let host = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
                Outcome::Defined(format!("http://{host}:{port}{path}"))
            }
            _ if !wanted => {
                if !matches!(podview, PodView::Absent | PodView::Deleting) && !busy {
                    run.acted(false, now);
                    self.actions.push((key, delete("replicas is 0")));
                }
                waiting("Cold", "Cold", "replicas is 0: no pod runs".into())
            }
            PodView::Absent => {
                if let Some(at) = run.retry_at.filter(|at| *at > now) {
                    let why = run.last_error.clone().unwrap_or_default();
                    let secs = at.duration_since(now).as_secs().max(1);
                    return waiting("Dead", "BackOff", format!("{why}; a new pod in {secs} s"));
                }
                if !busy {
                    run.acted(true, now);
                    run.created_at = Some(now);
                    self.actions.push((key, Action::Create));
                }
                waiting("Initializing", "PodCreating", format!("creating pod {}", pod_spec::pod_name(&r.name)))
            }
            PodView::Deleting => waiting("Initializing", "PodDeleting", "the previous pod is being deleted".into()),
            PodView::Stale => {
                if !busy {
                    run.acted(false, now);
                    self.actions.push((key, delete("the spec changed")));
                }
                waiting("Initializing", "SpecChanged", "the spec changed: replacing the pod".into())
            }
            PodView::Ended(why) => {
                if !busy {
                    run.acted(false, now);
                    run.ended(why.clone(), now);
                    self.actions.push((key, delete(&why)));
                }
                waiting("Dead", "PodEnded", why)
            }
            PodView::Pending | PodView::Ready(_) => {
                let since = *run.created_at.get_or_insert(now);
                if now.duration_since(since) > startup {
                    return waiting(
                        "Dead",
                        "StartupTimeout",
                        format!("pod {} was not Ready within {}s", pod_spec::pod_name(&r.name), startup.as_secs()),
                    );
                }
                waiting(
                    "Initializing",
                    "PodPending",
                    format!("waiting for pod {} to be Ready", pod_spec::pod_name(&r.name)),
                )
            }
        }
    }

    /// The groups the `MCPProviderGroup`s define over the providers this source serves
    /// (`served`: the MCPProviders' keys whose provider was accepted, with their provider names);
    /// `taken` tells a name another provider has.
    pub(super) fn groups(
        &mut self,
        groups: &[GroupResource],
        providers: &[ProviderResource],
        served: &HashSet<String>,
        taken: &dyn Fn(&str) -> bool,
    ) -> (Vec<Provider>, Vec<String>) {
        self.groups.clear();
        let mut defined = Vec::new();
        let mut problems = Vec::new();
        for g in groups {
            let key = g.key();
            let label = format!("MCPProviderGroup {key}");
            let outcome = match &g.spec {
                Err(why) => GroupOutcome::Invalid(why.clone()),
                Ok(spec) => match members(g, spec, providers) {
                    Err(why) => GroupOutcome::Invalid(why),
                    Ok(all) => {
                        let live: Vec<(String, u32, u32)> = all
                            .into_iter()
                            .filter(|(name, _, _)| served.contains(&format!("{}/{name}", g.namespace)))
                            .collect();
                        let strategy = strategy(spec.strategy.unwrap_or_default());
                        if taken(&g.name) {
                            GroupOutcome::Invalid(format!("provider name {:?} is taken", g.name))
                        } else if live.is_empty() {
                            GroupOutcome::Waiting("no member is serving".into())
                        } else {
                            match group_definition(g, strategy, &live) {
                                Ok(p) => {
                                    defined.push(p);
                                    GroupOutcome::Defined {
                                        strategy,
                                        members: live.into_iter().map(|(n, w, _)| (n, w)).collect(),
                                    }
                                }
                                Err(why) => GroupOutcome::Invalid(why),
                            }
                        }
                    }
                },
            };
            if let GroupOutcome::Invalid(why) = &outcome {
                problems.push(format!("{label}: {why}"));
            }
            self.groups.insert(key, outcome);
        }
        (defined, problems)
    }

    /// Problems of the operator part itself (statuses that could not be written, pods that
    /// could not be created), for the source's report.
    pub(super) fn problems(&self) -> impl Iterator<Item = String> + '_ {
        self.write_errors.values().cloned()
    }

    /// Carries out the pod actions the last look decided.
    pub(super) async fn act(&mut self, client: &Client, resources: &[ProviderResource]) {
        for (key, action) in std::mem::take(&mut self.actions) {
            let result = match &action {
                Action::Create => match resources.iter().find(|r| r.key() == key) {
                    Some(r) => create_pod(client, r).await,
                    None => Ok(()),
                },
                Action::Delete(ns, name, why) => {
                    tracing::info!(provider = key, pod = name, "deleting the provider's pod: {why}");
                    delete_pod(client, ns, name).await
                }
            };
            let label = provider_label(&key);
            match result {
                Ok(()) => {
                    self.write_errors.remove(&format!("pod of {label}"));
                }
                Err(why) => {
                    tracing::warn!(provider = key, "{why}");
                    if action == Action::Create {
                        if let Some(run) = self.runs.get_mut(&key) {
                            run.ended(why.clone(), Instant::now());
                        }
                    }
                    self.write_errors.insert(format!("pod of {label}"), format!("{label}: {why}"));
                }
            }
        }
    }

    /// The statuses of all resources now, and those that differ from what each has (or was last
    /// given). `runtime` finds the running provider a resource defined (by name and origin),
    /// `quarantined` why a provider is held back, `problem` the source's problem about a resource
    /// (by its label).
    pub(super) fn statuses(
        &mut self,
        providers: &[ProviderResource],
        groups: &[GroupResource],
        runtime: &dyn Fn(&str, &str) -> Option<std::sync::Arc<ProviderRuntime>>,
        quarantined: &dyn Fn(&str) -> Option<String>,
        problem: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<StatusWrite> {
        let mut states: HashMap<String, (String, usize)> = HashMap::new();
        let mut writes = Vec::new();
        for r in providers {
            let key = r.key();
            let label = provider_label(&key);
            let running = runtime(&r.name, &origin(&label));
            let outcome = self.outcomes.get(&key);
            let status = provider_status(r, outcome, running.as_deref(), quarantined(&r.name), problem(&label));
            let inflight = running.as_ref().map_or(0, |p| p.lifecycle.inflight());
            states.insert(key.clone(), (status.state.clone().unwrap_or_default(), inflight));
            writes.extend(self.changed("MCPProvider", r, serde_json::to_value(&status).unwrap_or(Value::Null)));
        }
        for g in groups {
            let status = group_status(g, self.groups.get(&g.key()), &states);
            writes.extend(self.changed("MCPProviderGroup", g, serde_json::to_value(&status).unwrap_or(Value::Null)));
        }
        let live: HashSet<String> = providers
            .iter()
            .map(|r| format!("MCPProvider {}", r.key()))
            .chain(groups.iter().map(|g| format!("MCPProviderGroup {}", g.key())))
            .collect();
        self.written.retain(|k, _| live.contains(k));
        self.write_errors.retain(|k, _| k.starts_with("pod of ") || live.contains(k));
        writes
    }

    /// The write of `status` to resource `r`, unless it is what the resource has or was written
    /// last (conditions keep their transition time while their status stays).
    fn changed<S>(&self, kind: &'static str, r: &Resource<S>, mut status: Value) -> Option<StatusWrite> {
        let id = format!("{kind} {}", r.key());
        let previous = self.written.get(&id).unwrap_or(&r.status);
        carry_transition_times(&mut status, previous);
        if *previous == status || r.status == status {
            return None;
        }
        // A merge patch, with the fields that no longer apply (ours, or another writer's) nulled
        // so that they go away.
        let mut body = status.clone();
        if let Some(fields) = body.as_object_mut() {
            for old in [&r.status, previous].into_iter().filter_map(Value::as_object) {
                for key in old.keys() {
                    fields.entry(key.clone()).or_insert(Value::Null);
                }
            }
        }
        Some(StatusWrite { id, kind, namespace: r.namespace.clone(), name: r.name.clone(), status, body })
    }

    /// Writes statuses (see [`Operator::statuses`]).
    pub(super) async fn write(&mut self, client: &Client, writes: Vec<StatusWrite>) {
        for w in writes {
            let StatusWrite { id, kind, namespace, name, status, body } = w;
            let resource = if kind == "MCPProvider" {
                kube::core::ApiResource::erase::<super::resources::MCPProvider>(&())
            } else {
                kube::core::ApiResource::erase::<super::resources::MCPProviderGroup>(&())
            };
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
            let patch = Patch::Merge(json!({"status": body}));
            let result =
                tokio::time::timeout(API_TIMEOUT, api.patch_status(&name, &PatchParams::default(), &patch)).await;
            match result {
                Ok(Ok(_)) => {
                    self.written.insert(id.clone(), status);
                    self.write_errors.remove(&id);
                }
                Ok(Err(e)) => {
                    self.write_errors.insert(id.clone(), format!("{id}: cannot write its status: {e}"));
                }
                Err(_) => {
                    self.write_errors.insert(id.clone(), format!("{id}: cannot write its status: no answer in 10 s"));
                }
            }
        }
    }
}

/// A status to write: the status itself (kept as written) and the merge patch that sets it.
pub(super) struct StatusWrite {
    id: String,
    kind: &'static str,
    namespace: String,
    name: String,
    status: Value,
    body: Value,
}

fn replicas(spec: &MCPProviderSpec) -> i32 {
    spec.replicas.unwrap_or(1)
}

fn pod_key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

/// A remote provider's endpoint: `spec.endpoint`, or the Service `spec.serviceRef` names.
fn remote_endpoint(r: &ProviderResource, spec: &MCPProviderSpec) -> Result<String, String> {
    match (&spec.endpoint, &spec.service_ref) {
        (Some(endpoint), None) => Ok(endpoint.clone()),
        (None, Some(svc)) => {
            let path = svc.path.as_deref().unwrap_or("/mcp");
            Ok(format!("http://{}.{}.svc:{}{path}", svc.name, r.namespace, svc.port))
        }
        (Some(_), Some(_)) => Err("spec.endpoint and spec.serviceRef: give one, not both".into()),
        (None, None) => Err("spec.endpoint or spec.serviceRef is required for mode remote".into()),
    }
}

/// Refuses an endpoint the source's address policy does not allow.
fn checked_endpoint(endpoint: &str, addresses: &AddressPolicy) -> Result<(), String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("endpoint {endpoint:?} has no host"))?;
    match addresses.refuses_host(host) {
        Some(why) => Err(format!("endpoint {endpoint:?}: {why}")),
        None => Ok(()),
    }
}

/// The provider an `MCPProvider` defines at `endpoint`, in the configuration file's format.
fn definition(r: &ProviderResource, spec: &MCPProviderSpec, endpoint: &str) -> Result<Provider, String> {
    let mut def = Map::new();
    def.insert("mode".into(), json!("remote"));
    def.insert("endpoint".into(), json!(endpoint));
    if let Some(prefix) = &spec.tool_prefix {
        def.insert("tool_prefix".into(), json!(prefix));
    }
    if let Some(expose) = spec.expose {
        def.insert("expose".into(), json!(expose));
    }
    let seconds = |d: Duration| json!(d.as_secs_f64());
    if let Some(ttl) = duration("spec.idleTTL", spec.idle_ttl.as_deref())? {
        def.insert("idle_ttl_s".into(), seconds(ttl));
    }
    let mut threshold: Option<i32> = None;
    if let Some(hc) = &spec.health_check {
        if hc.enabled == Some(false) {
            // No active checks: the longest interval the configuration allows.
            def.insert("health_check_interval_s".into(), json!(365 * 24 * 3600));
        } else if let Some(every) = duration("spec.healthCheck.interval", hc.interval.as_deref())? {
            def.insert("health_check_interval_s".into(), seconds(every));
        }
        if let Some(t) = duration("spec.healthCheck.timeout", hc.timeout.as_deref())? {
            def.insert("health_check_timeout_s".into(), seconds(t));
        }
        threshold = hc.failure_threshold;
    }
    if let Some(cb) = &spec.circuit_breaker {
        let mut breaker = Map::new();
        if let Some(open) = duration("spec.circuitBreaker.resetTimeout", cb.reset_timeout.as_deref())? {
            breaker.insert("open_s".into(), seconds(open));
        }
        if let Some(probes) = cb.half_open_requests {
            breaker.insert("half_open_probes".into(), json!(probes));
        }
        if !breaker.is_empty() {
            def.insert("circuit_breaker".into(), Value::Object(breaker));
        }
        threshold = match (threshold, cb.failure_threshold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(t) = threshold {
        def.insert("max_consecutive_failures".into(), json!(t));
    }
    if let Some(tools) = &spec.tools {
        if !tools.allow_list.is_empty() {
            def.insert("tools_include".into(), json!(tools.allow_list));
        }
        if !tools.deny_list.is_empty() {
            def.insert("tools_exclude".into(), json!(tools.deny_list));
        }
        if let Some(rate) = &tools.rate_limit {
            let rpm = rate.requests_per_minute.ok_or("spec.tools.rateLimit.requestsPerMinute is required")?;
            let mut limit = Map::new();
            limit.insert("rps".into(), json!(f64::from(rpm) / 60.0));
            if let Some(burst) = rate.burst_size {
                limit.insert("burst".into(), json!(burst));
            }
            def.insert("rate_limit".into(), Value::Object(limit));
        }
    }
    decoded(&r.name, Value::Object(def), &provider_label(&r.key()))
}

/// Decodes a definition made here with the configuration file's rules.
fn decoded(name: &str, def: Value, label: &str) -> Result<Provider, String> {
    let yaml: serde_norway::Value = serde_norway::to_value(&def).map_err(|e| e.to_string())?;
    hangar_config::discovered_definition(name, &yaml, Path::new(&origin(label))).map_err(|e| match e {
        hangar_config::LoadError::Invalid { problems, .. } => problems
            .iter()
            .map(|p| if p.path.is_empty() { p.message.clone() } else { format!("{}: {}", p.path, p.message) })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })
}

/// A group's members (MCPProvider names, weights, priorities): those it names, then those its
/// selector picks (by name), each once.
fn members(
    g: &GroupResource,
    spec: &MCPProviderGroupSpec,
    providers: &[ProviderResource],
) -> Result<Vec<(String, u32, u32)>, String> {
    if spec.selector.is_none() && spec.members.is_empty() {
        return Err("spec.selector or spec.members is required".into());
    }
    let mut out: Vec<(String, u32, u32)> = Vec::new();
    for (i, m) in spec.members.iter().enumerate() {
        if !out.iter().any(|(n, _, _)| *n == m.provider) {
            let priority = m.priority.unwrap_or(u32::try_from(i).unwrap_or(u32::MAX));
            out.push((m.provider.clone(), m.weight.unwrap_or(1), priority));
        }
    }
    if let Some(selector) = &spec.selector {
        let selector: Selector =
            selector.clone().try_into().map_err(|e| format!("spec.selector is not a valid label selector: {e}"))?;
        let mut picked: Vec<&str> = providers
            .iter()
            .filter(|r| r.namespace == g.namespace && selector.matches(&r.labels))
            .map(|r| r.name.as_str())
            .collect();
        picked.sort_unstable();
        for name in picked {
            if !out.iter().any(|(n, _, _)| n == name) {
                let priority = u32::try_from(out.len()).unwrap_or(u32::MAX);
                out.push((name.to_owned(), 1, priority));
            }
        }
    }
    Ok(out)
}

/// The configuration's strategy for the operator's.
fn strategy(s: LoadBalancingStrategy) -> &'static str {
    match s {
        LoadBalancingStrategy::RoundRobin | LoadBalancingStrategy::Weighted => "weighted_round_robin",
        LoadBalancingStrategy::LeastConnections => "least_connections",
        LoadBalancingStrategy::Random => "random",
        LoadBalancingStrategy::Failover => "priority",
    }
}

fn group_definition(g: &GroupResource, strategy: &str, members: &[(String, u32, u32)]) -> Result<Provider, String> {
    let equal = g.spec.as_ref().is_ok_and(|s| s.strategy.unwrap_or_default() == LoadBalancingStrategy::RoundRobin);
    let members: Vec<Value> = members
        .iter()
        .map(|(name, weight, priority)| {
            let weight = if equal { 1 } else { *weight };
            let priority = if strategy == "priority" { *priority } else { 0 };
            json!({"provider": name, "weight": weight, "priority": priority})
        })
        .collect();
    let def = json!({"mode": "group", "strategy": strategy, "members": members});
    decoded(&g.name, def, &format!("MCPProviderGroup {}", g.key()))
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Cold => "Cold",
        State::Initializing => "Initializing",
        State::Ready => "Ready",
        State::Degraded => "Degraded",
        State::Dead => "Dead",
    }
}

fn condition(ready: bool, reason: &str, message: Option<String>, generation: i64) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        reason: Some(reason.into()),
        message,
        observed_generation: Some(generation),
    }
}

/// An `MCPProvider`'s status from what the gateway knows of it.
fn provider_status(
    r: &ProviderResource,
    outcome: Option<&Outcome>,
    running: Option<&ProviderRuntime>,
    quarantined: Option<String>,
    problem: Option<String>,
) -> MCPProviderStatus {
    let mut status = MCPProviderStatus { observed_generation: Some(r.generation), ..Default::default() };
    if let Ok(spec) = &r.spec {
        if spec.mode == ProviderMode::Container {
            status.replicas = Some(replicas(spec).min(1));
            status.pod_name = Some(pod_spec::pod_name(&r.name));
            status.ready_replicas = Some(i32::from(matches!(outcome, Some(Outcome::Defined(_)))));
        }
    }
    let (state, ready, reason, message) = match outcome {
        Some(Outcome::Invalid(why)) => ("Dead", false, "InvalidSpec", Some(why.clone())),
        Some(Outcome::Waiting(w)) => (w.state, false, w.reason, Some(w.message.clone())),
        Some(Outcome::Defined(endpoint)) => {
            status.endpoint = Some(endpoint.clone());
            match (running, quarantined, problem) {
                (_, _, Some(problem)) => ("Cold", false, "NotServed", Some(problem)),
                (_, Some(why), None) => ("Cold", false, "Quarantined", Some(why)),
                (Some(p), None, None) => {
                    let state = p.lifecycle.state();
                    status.consecutive_failures = i32::try_from(p.lifecycle.consecutive_failures()).ok();
                    if let Some(tools) = p.lists.latest(ListKind::Tools) {
                        status.tools = tools
                            .iter()
                            .filter_map(|t| t.get("name").and_then(Value::as_str))
                            .map(str::to_owned)
                            .collect();
                        status.tools_count = i32::try_from(status.tools.len()).ok();
                    }
                    let ready = state == State::Ready;
                    (state_name(state), ready, state_name(state), p.lifecycle.last_error())
                }
                (None, None, None) => ("Initializing", false, "Registering", Some("being added to the gateway".into())),
            }
        }
        None => ("Initializing", false, "Registering", None),
    };
    status.state = Some(state.into());
    status.conditions = vec![condition(ready, reason, message, r.generation)];
    status
}

/// An `MCPProviderGroup`'s status from its members' (`states`: state and calls in flight by
/// MCPProvider key).
fn group_status(
    g: &GroupResource,
    outcome: Option<&GroupOutcome>,
    states: &HashMap<String, (String, usize)>,
) -> MCPProviderGroupStatus {
    let mut status = MCPProviderGroupStatus { observed_generation: Some(g.generation), ..Default::default() };
    let (ready, reason, message) = match outcome {
        Some(GroupOutcome::Defined { strategy, members }) => {
            status.active_strategy = Some((*strategy).into());
            for (name, weight) in members {
                let (state, inflight) = states.get(&format!("{}/{name}", g.namespace)).cloned().unwrap_or_default();
                status.providers.push(ProviderMemberStatus {
                    name: name.clone(),
                    namespace: g.namespace.clone(),
                    state: Some(state),
                    weight: i32::try_from(*weight).ok(),
                    active_connections: i32::try_from(inflight).ok(),
                });
            }
            let count = |s: &str| status.providers.iter().filter(|m| m.state.as_deref() == Some(s)).count();
            let (total, ready) = (status.providers.len(), count("Ready"));
            status.provider_count = i32::try_from(total).ok();
            status.ready_count = i32::try_from(ready).ok();
            status.degraded_count = i32::try_from(count("Degraded")).ok();
            status.cold_count = i32::try_from(count("Cold")).ok();
            status.dead_count = i32::try_from(count("Dead")).ok();
            let policy = g.spec.as_ref().ok().and_then(|s| s.health_policy.clone()).unwrap_or_default();
            let healthy = match policy.min_healthy_count {
                Some(n) => ready >= usize::try_from(n).unwrap_or(0),
                None => {
                    total > 0
                        && ready * 100
                            >= total * usize::try_from(policy.min_healthy_percentage.unwrap_or(50)).unwrap_or(0)
                }
            };
            let message = format!("{ready} of {total} members Ready");
            (healthy, if healthy { "Healthy" } else { "Unhealthy" }, Some(message))
        }
        Some(GroupOutcome::Waiting(why)) => (false, "NoMembers", Some(why.clone())),
        Some(GroupOutcome::Invalid(why)) => (false, "InvalidSpec", Some(why.clone())),
        None => (false, "Registering", None),
    };
    status.conditions = vec![condition(ready, reason, message, g.generation)];
    status
}

/// Keeps a condition's transition time from the status last written while its status is the
/// same, so a status that did not change compares equal and is not written again.
fn carry_transition_times(status: &mut Value, previous: &Value) {
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else { return };
    for c in conditions {
        let before = previous
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|list| list.iter().find(|b| b.get("type") == c.get("type")));
        if let Some(b) = before.filter(|b| b.get("status") == c.get("status")) {
            if let (Some(fields), Some(time)) = (c.as_object_mut(), b.get("lastTransitionTime")) {
                fields.insert("lastTransitionTime".into(), time.clone());
            }
        }
    }
}

async fn create_pod(client: &Client, r: &ProviderResource) -> Result<(), String> {
    let Ok(spec) = &r.spec else { return Ok(()) };
    let grace =
        duration("spec.shutdownGracePeriod", spec.shutdown_grace_period.as_deref())?.unwrap_or(Duration::from_secs(30));
    let owner = Owner { namespace: &r.namespace, name: &r.name, uid: r.uid.as_deref(), generation: r.generation };
    let pod = pod_spec::build(&owner, spec, grace)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &r.namespace);
    match tokio::time::timeout(API_TIMEOUT, api.create(&PostParams::default(), &pod)).await {
        Ok(Ok(_)) => {
            tracing::info!(provider = r.key(), pod = pod_spec::pod_name(&r.name), "created the provider's pod");
            Ok(())
        }
        Ok(Err(kube::Error::Api(e))) if e.code == 409 => Ok(()), // already there: the watch shows it
        Ok(Err(e)) => Err(format!("cannot create pod {}: {e}", pod_spec::pod_name(&r.name))),
        Err(_) => Err(format!("cannot create pod {}: no answer in 10 s", pod_spec::pod_name(&r.name))),
    }
}

async fn delete_pod(client: &Client, ns: &str, name: &str) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match tokio::time::timeout(API_TIMEOUT, api.delete(name, &DeleteParams::default())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => Ok(()),
        Ok(Err(e)) => Err(format!("cannot delete pod {ns}/{name}: {e}")),
        Err(_) => Err(format!("cannot delete pod {ns}/{name}: no answer in 10 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_config::ProviderKind;

    fn object(kind: &str, ns: &str, name: &str, spec: Value, labels: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "mcp-hangar.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "generation": 2, "labels": labels},
            "spec": spec,
        }))
        .expect("an object")
    }

    fn provider(name: &str, spec: Value) -> ProviderResource {
        read_provider(&object("MCPProvider", "mcp", name, spec, json!({})))
    }

    fn ready_pod(generation: &str, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "mcp-provider-math", "namespace": "mcp", "annotations": {GENERATION_ANNOTATION: generation}},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("a pod")
    }

    fn lenient() -> AddressPolicy {
        AddressPolicy { loopback: true, link_local: false }
    }

    #[test]
    fn every_spec_problem_is_reported_with_its_path() {
        let r = provider(
            "typo",
            json!({"mode": "remote", "endpoint": "http://a/mcp", "healthCheck": {"intervl": "1s"}, "env": [{"nam": "X"}], "bogus": 1}),
        );
        let why = r.spec.expect_err("refused");
        assert!(why.contains("spec.healthCheck: ") && why.contains("'intervl' was unexpected"), "{why}");
        assert!(why.contains("spec.env[0]"), "{why}");
        assert!(why.contains("'bogus' was unexpected"), "{why}");
        let r =
            read_provider(&serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "n"}})).expect("obj"));
        assert_eq!(r.spec.expect_err("no spec"), "has no spec");
        assert_eq!(dotted("spec", "/volumes/2/secret/a~1b"), "spec.volumes[2].secret.a/b");
    }

    #[test]
    fn the_operators_fields_become_the_configurations() {
        let r = provider(
            "search",
            json!({
                "mode": "remote",
                "endpoint": "https://search.example.com/mcp",
                "idleTTL": "2m",
                "healthCheck": {"interval": "15s", "timeout": "2s", "failureThreshold": 4},
                "circuitBreaker": {"failureThreshold": 2, "resetTimeout": "1m30s", "halfOpenRequests": 2},
                "tools": {"allowList": ["get_*"], "denyList": ["get_secret"], "rateLimit": {"requestsPerMinute": 120, "burstSize": 10}},
                "toolPrefix": "s_",
            }),
        );
        let mut op = Operator::default();
        let found = op.providers(&[r], &HashMap::new(), &AddressPolicy::default());
        let [(label, Ok((p, None)))] = &found[..] else { panic!("{found:?}") };
        assert_eq!(label, "MCPProvider mcp/search");
        assert_eq!((p.name.as_str(), p.tool_prefix.as_str()), ("search", "s_"));
        assert_eq!(p.idle_ttl, Duration::from_secs(120));
        assert_eq!(p.health_check_interval, Duration::from_secs(15));
        assert_eq!(p.health_check_timeout, Duration::from_secs(2));
        assert_eq!(p.max_consecutive_failures, 2, "the lower of the two thresholds");
        assert_eq!(p.circuit_breaker.open, Duration::from_secs(90));
        assert_eq!(p.circuit_breaker.half_open_probes, 2);
        assert_eq!(
            (p.tools_include.clone(), p.tools_exclude.clone()),
            (vec!["get_*".into()], vec!["get_secret".into()])
        );
        let rate = p.rate_limit.expect("a rate limit");
        assert!((rate.rps - 2.0).abs() < 1e-9 && rate.burst == 10, "{rate:?}");
        assert_eq!(p.source.as_deref(), Some(Path::new("kubernetes:MCPProvider mcp/search")));
        assert!(matches!(&p.kind, ProviderKind::Remote(rm) if rm.endpoint == "https://search.example.com/mcp"));
    }

    #[test]
    fn bad_values_and_addresses_are_refused() {
        let mut op = Operator::default();
        let bad = |spec: Value| {
            let found =
                Operator::default().providers(&[provider("p", spec)], &HashMap::new(), &AddressPolicy::default());
            match &found[..] {
                [(_, Err(why))] => why.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert!(
            bad(json!({"mode": "remote", "endpoint": "http://a/mcp", "idleTTL": "5 minutes"})).contains("spec.idleTTL")
        );
        assert!(bad(json!({"mode": "remote"})).contains("spec.endpoint or spec.serviceRef is required"));
        assert!(bad(json!({"mode": "remote", "endpoint": "http://127.0.0.1:9/mcp"})).contains("loopback"));
        assert!(bad(json!({"mode": "remote", "endpoint": "http://localhost:9/mcp"})).contains("loopback"));
        assert!(bad(json!({"mode": "remote", "endpoint": "http://metadata.google.internal/x"})).contains("metadata"));
        assert!(bad(json!({"mode": "remote", "endpoint": "http://[fe80::1]/x"})).contains("link-local"));
        assert!(bad(json!({"mode": "container"})).contains("spec.image is required"));
        assert!(bad(json!({"mode": "sideways"})).contains("spec.mode"));
        let svc = provider("svc", json!({"mode": "remote", "serviceRef": {"name": "search", "port": 8080}}));
        let found = op.providers(&[svc], &HashMap::new(), &AddressPolicy::default());
        assert!(
            matches!(&found[..], [(_, Ok((p, _)))] if matches!(&p.kind, ProviderKind::Remote(r) if r.endpoint == "http://search.mcp.svc:8080/mcp")),
            "{found:?}"
        );
    }

    #[test]
    fn a_container_provider_follows_its_pod() {
        let spec = json!({"mode": "container", "image": "x", "port": 9000});
        let mut op = Operator::default();
        let math = provider("math", spec.clone());
        let none: HashMap<String, &Pod> = HashMap::new();
        assert!(op.providers(std::slice::from_ref(&math), &none, &lenient()).is_empty(), "no provider without a pod");
        assert_eq!(op.actions, [("mcp/math".to_owned(), Action::Create)]);
        op.actions.clear();
        op.providers(std::slice::from_ref(&math), &none, &lenient());
        assert!(op.actions.is_empty(), "a create in flight is not repeated");

        let pod = ready_pod("2", "10.0.0.7");
        let managed = HashMap::from([("mcp/math".to_owned(), &pod)]);
        let found = op.providers(std::slice::from_ref(&math), &managed, &lenient());
        assert!(
            matches!(&found[..], [(_, Ok((p, _)))] if matches!(&p.kind, ProviderKind::Remote(r) if r.endpoint == "http://10.0.0.7:9000/mcp")),
            "{found:?}"
        );

        // Built from generation 1: replaced (once the last action settled).
        let stale = ready_pod("1", "10.0.0.7");
        let managed = HashMap::from([("mcp/math".to_owned(), &stale)]);
        assert!(op.providers(std::slice::from_ref(&math), &managed, &lenient()).is_empty(), "the create settled");
        assert!(
            matches!(&op.actions[..], [(_, Action::Delete(_, name, why))] if name == "mcp-provider-math" && why.contains("spec changed"))
        );

        // replicas 0: the pod goes, the provider is Cold.
        let cold = provider("math", json!({"mode": "container", "image": "x", "replicas": 0}));
        op.runs.get_mut("mcp/math").expect("a run").expect = None;
        let managed = HashMap::from([("mcp/math".to_owned(), &pod)]);
        assert!(op.providers(std::slice::from_ref(&cold), &managed, &lenient()).is_empty());
        assert!(matches!(&op.actions[..], [(_, Action::Delete(..))]));
        assert!(matches!(op.outcomes.get("mcp/math"), Some(Outcome::Waiting(w)) if w.state == "Cold"));

        // A pod whose resource is gone is deleted.
        let mut op = Operator::default();
        op.providers(&[], &managed, &lenient());
        assert!(matches!(&op.actions[..], [(_, Action::Delete(..))]), "{:?}", op.actions);
    }

    #[test]
    fn an_ended_pod_is_replaced_after_a_growing_backoff() {
        let mut run = PodRun::default();
        let now = Instant::now();
        run.ended("exit 1".into(), now);
        let first = run.retry_at.expect("a retry") - now;
        run.ended("exit 1".into(), now);
        let second = run.retry_at.expect("a retry") - now;
        assert!(first >= Duration::from_secs(1) && second > first && second <= MAX_BACKOFF, "{first:?} {second:?}");
        for _ in 0..20 {
            run.ended("exit 1".into(), now);
        }
        assert_eq!(run.retry_at.expect("a retry") - now, MAX_BACKOFF);
        let ended: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "provider", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                       "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]},
        }))
        .expect("a pod");
        assert_eq!(view(Some(&ended), 1), PodView::Ended("the pod's container ended with exit code 3 (Error)".into()));
    }

    #[test]
    fn groups_select_their_members_and_map_the_strategy() {
        let labels = json!({"tier": "search"});
        let providers: Vec<ProviderResource> = ["b", "a", "c"]
            .iter()
            .map(|n| {
                read_provider(&object(
                    "MCPProvider",
                    "mcp",
                    n,
                    json!({"mode": "remote", "endpoint": "http://x/mcp"}),
                    labels.clone(),
                ))
            })
            .collect();
        let served: HashSet<String> = ["mcp/a", "mcp/b"].iter().map(|s| (*s).to_owned()).collect();
        let g = |spec: Value| read_group(&object("MCPProviderGroup", "mcp", "pool", spec, json!({})));
        let mut op = Operator::default();
        let free = |_: &str| false;
        let (defined, problems) = op.groups(
            &[g(json!({"selector": {"matchLabels": {"tier": "search"}}, "strategy": "Failover"}))],
            &providers,
            &served,
            &free,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let ProviderKind::Group(group) = &defined[0].kind else { panic!("not a group") };
        assert_eq!(group.strategy.as_str(), "priority");
        let members: Vec<(&str, u32)> = group.members.iter().map(|m| (m.provider.as_str(), m.priority)).collect();
        assert_eq!(members, [("a", 0), ("b", 1)], "by name, the unserved member c left out");

        let (defined, _) = op.groups(
            &[g(json!({"members": [{"provider": "b", "weight": 3}, {"provider": "a"}], "strategy": "Weighted"}))],
            &providers,
            &served,
            &free,
        );
        let ProviderKind::Group(group) = &defined[0].kind else { panic!("not a group") };
        let weights: Vec<(&str, u32)> = group.members.iter().map(|m| (m.provider.as_str(), m.weight)).collect();
        assert_eq!((group.strategy.as_str(), weights), ("weighted_round_robin", vec![("b", 3), ("a", 1)]));

        let (defined, problems) = op.groups(&[g(json!({"strategy": "Random"}))], &providers, &served, &free);
        assert!(
            defined.is_empty() && problems[0].contains("spec.selector or spec.members is required"),
            "{problems:?}"
        );
        let (_, problems) =
            op.groups(&[g(json!({"selector": {"matchLabels": {"tier": "search"}}}))], &providers, &served, &|n| {
                n == "pool"
            });
        assert!(problems[0].contains("is taken"), "{problems:?}");
    }

    #[test]
    fn statuses_say_what_the_gateway_sees_and_are_written_once() {
        let mut op = Operator::default();
        let bad = provider("typo", json!({"mode": "remote", "bogus": true}));
        op.providers(std::slice::from_ref(&bad), &HashMap::new(), &lenient());
        let none = |_: &str, _: &str| None;
        let no = |_: &str| None;
        let writes = op.statuses(std::slice::from_ref(&bad), &[], &none, &no, &no);
        let [w] = &writes[..] else { panic!("one write") };
        assert_eq!(w.status["state"], "Dead");
        assert_eq!(w.status["conditions"][0]["reason"], "InvalidSpec");
        assert_eq!(w.status["observedGeneration"], 2);
        // Written: the same status is not written again, and keeps its transition time.
        let first = writes.into_iter().next().expect("a write");
        op.written.insert(first.id.clone(), first.status.clone());
        assert!(op.statuses(std::slice::from_ref(&bad), &[], &none, &no, &no).is_empty());

        // A status another writer left has its fields removed by the patch.
        let mut old = bad.clone();
        old.status = json!({"phase": "Running", "state": "Ready"});
        let mut op2 = Operator::default();
        op2.providers(std::slice::from_ref(&old), &HashMap::new(), &lenient());
        let writes = op2.statuses(std::slice::from_ref(&old), &[], &none, &no, &no);
        assert_eq!(writes[0].body["phase"], Value::Null, "{}", writes[0].body);
        assert_eq!(writes[0].body["state"], "Dead");
    }
}
