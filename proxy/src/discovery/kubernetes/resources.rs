//! The Python MCP Hangar operator's custom resources, `MCPProvider` and `MCPProviderGroup`
//! (`mcp-hangar.io/v1alpha1`), as Rust types: the gateway watches them itself (there is no
//! separate operator process) and writes their status back. The spec fields are the operator's
//! CRD reference's, so its resources load unchanged; a few of our provider YAML's keys are added
//! (`port`, `path`, `serviceRef`, `expose`, `toolPrefix`, group `members`). The CRD manifests in
//! `deploy/crds/` are rendered from these types (`mcp-hangar crds`), and a test keeps them equal.
//!
//! Every struct refuses unknown fields: a resource with a misspelt key is reported with the key's
//! path (in the source's report and the resource's status), never half-read.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an `MCPProvider` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderMode {
    /// The gateway runs a pod from `image` and reaches it at the pod's address.
    Container,
    /// An MCP server at `endpoint` (or behind `serviceRef`).
    Remote,
}

/// An MCP server the gateway serves: a pod it runs (`container`) or a server elsewhere (`remote`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mcp-hangar.io",
    version = "v1alpha1",
    kind = "MCPProvider",
    plural = "mcpproviders",
    namespaced,
    status = "MCPProviderStatus",
    shortname = "mcpp",
    shortname = "provider",
    category = "mcp",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Tools","type":"integer","jsonPath":".status.toolsCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MCPProviderSpec {
    /// `container` or `remote`.
    pub mode: ProviderMode,
    /// The container image (container mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The container's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The MCP endpoint (remote mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A Service of the resource's namespace to reach instead of `endpoint` (remote mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,
    /// Where the container serves streamable HTTP (container mode; default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// The endpoint's path in the container (default `/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 0 keeps a container provider Cold (no pod); 1 runs it. The gateway runs one pod at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: Option<i32>,
    /// Stop after this long without a call (Go duration, default `5m`).
    #[serde(default, rename = "idleTTL", skip_serializing_if = "Option::is_none")]
    pub idle_ttl: Option<String>,
    /// Longest wait for the pod to become Ready (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout: Option<String>,
    /// The pod's termination grace period (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<String>,
    /// Active health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// The container's resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The container's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Volumes mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Pod and container security settings (secure defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// The pod's ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Pod scheduling: node labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Pod scheduling: tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod scheduling: affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod scheduling priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Which tools are exposed, and the provider's rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolsConfig>,
    /// The provider's circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Accepted for compatibility; the gateway's own tracing and metrics cover every provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilityConfig>,
    /// Accepted for compatibility; the gateway writes no NetworkPolicy from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<ProviderCapabilities>,
    /// List the provider's tools on their own (default true; group members may not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<bool>,
    /// Prepended to tool and prompt names (default `<name>__`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_prefix: Option<String>,
}

/// A Service in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// The Service's name.
    pub name: String,
    /// Its port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The endpoint's path (default `/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Health checking.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Whether to check at all (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Between checks (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// A slower check fails (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Failures in a row before the provider is Degraded (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<i32>,
    /// Accepted for compatibility (one success restores a provider here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub success_threshold: Option<i32>,
}

/// CPU and memory requests and limits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
}

/// A CPU and memory quantity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// CPU (`100m`, `1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory (`128Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// An environment variable: a value, or a key of a Secret or ConfigMap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// A Secret's or ConfigMap's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    /// A Secret's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// A ConfigMap's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
}

/// A key of a Secret or ConfigMap in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySelector {
    /// The object's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// Whether the pod starts without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A volume and where it is mounted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Where it is mounted.
    pub mount_path: String,
    /// A path within the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A Secret's keys as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A ConfigMap's keys as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// A PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PvcVolumeSource>,
    /// An empty directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

/// A Secret as a volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretVolumeSource {
    /// The Secret.
    pub secret_name: String,
    /// Which keys, as which files (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
}

/// A ConfigMap as a volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapVolumeSource {
    /// The ConfigMap.
    pub name: String,
    /// Which keys, as which files (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
}

/// A PersistentVolumeClaim as a volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvcVolumeSource {
    /// The claim.
    pub claim_name: String,
}

/// An empty directory as a volume.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDirVolumeSource {
    /// `Memory` for a tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Its size limit (`64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// A key and the file it becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// The file's path in the volume.
    pub path: String,
}

/// Pod and container security settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    /// Refuse to run as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// The user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// The volumes' group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    /// A read-only root filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Whether a process may gain privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Linux capabilities added and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// The seccomp profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// Linux capabilities.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// Added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A seccomp profile.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    /// `RuntimeDefault`, `Localhost` or `Unconfined`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// The taint's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The taint's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The taint's effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// How long a `NoExecute` taint is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// Which tools are exposed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolsConfig {
    /// Only these (globs; all when empty): `tools_include`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_list: Vec<String>,
    /// Never these (globs): `tools_exclude`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_list: Vec<String>,
    /// The provider's rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

/// A rate limit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Calls per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<i32>,
    /// Calls at once above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst_size: Option<i32>,
}

/// A provider's circuit breaker.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Whether the breaker opens at all (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Failures in a row that open it (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<i32>,
    /// Accepted for compatibility (the half-open probes decide here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// How long it stays open (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_timeout: Option<String>,
    /// Calls let through when half open (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub half_open_requests: Option<i32>,
}

/// The operator's per-provider observability switches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
    /// Metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
}

/// Tracing switches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingConfig {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A fraction, as a string (`"0.1"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_rate: Option<String>,
}

/// Metrics switches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsConfig {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// What the server declares it needs (the operator turned it into NetworkPolicies).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderCapabilities {
    /// Network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkCapabilities>,
    /// Filesystem access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemCapabilities>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentCapabilities>,
    /// Tool constraints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolCapabilities>,
    /// Expected resource use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceCapabilities>,
    /// `alert`, `block` or `quarantine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_mode: Option<String>,
}

/// Declared network access.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkCapabilities {
    /// Allowed destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
    /// DNS queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_allowed: Option<bool>,
    /// Connections to localhost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loopback_allowed: Option<bool>,
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    /// A host name or glob.
    pub host: String,
    /// The port (0: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// `https`, `http`, `grpc`, `tcp` or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// An address range instead of a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// Declared filesystem access.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesystemCapabilities {
    /// Read-only paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_paths: Vec<String>,
    /// Read-write paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_paths: Vec<String>,
    /// Writes to /tmp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_allowed: Option<bool>,
}

/// Declared environment variables.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentCapabilities {
    /// Needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// Used when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
}

/// Declared tool constraints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolCapabilities {
    /// Most tools advertised (0: any number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i32>,
    /// Alert when schemas change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_drift_alert: Option<bool>,
    /// The tools expected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_tools: Vec<String>,
}

/// Declared resource use.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceCapabilities {
    /// MiB (0: unbounded).
    #[serde(default, rename = "maxMemoryMB", skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<i32>,
    /// Percent, as a string.
    #[serde(default, rename = "maxCPUPercent", skip_serializing_if = "Option::is_none")]
    pub max_cpu_percent: Option<String>,
}

/// What the gateway observes of an `MCPProvider`, written back to its status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPProviderStatus {
    /// `Cold`, `Initializing`, `Ready`, `Degraded` or `Dead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Pods wanted (0 or 1; remote providers: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Tools it offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_count: Option<i32>,
    /// Their names, as the provider gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Where the gateway reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The pod the gateway runs for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Failed calls and checks in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, with the reason and the last error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A status condition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The generation it was observed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// How a group chooses a member (the operator's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum LoadBalancingStrategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// The member with the fewest calls in flight.
    LeastConnections,
    /// A member at random, in proportion to its weight.
    Random,
    /// Round-robin in proportion to the members' weights.
    Weighted,
    /// The first member (in `members` order, or by name) that can take the call.
    Failover,
}

/// Providers served as one, chosen by label selector and/or named as members.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mcp-hangar.io",
    version = "v1alpha1",
    kind = "MCPProviderGroup",
    plural = "mcpprovidergroups",
    namespaced,
    status = "MCPProviderGroupStatus",
    shortname = "mcppg",
    shortname = "providergroup",
    category = "mcp",
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".spec.strategy"}"#,
    printcolumn = r#"{"name":"Providers","type":"integer","jsonPath":".status.providerCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyCount"}"#,
    printcolumn = r#"{"name":"Degraded","type":"integer","jsonPath":".status.degradedCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MCPProviderGroupSpec {
    /// The `MCPProvider`s of the group's namespace whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// `MCPProvider`s named with a weight and priority (our provider YAML's members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
    /// How a member is chosen (default `RoundRobin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<LoadBalancingStrategy>,
    /// Accepted for compatibility: the gateway retries safe calls on another member by its own
    /// rules (connection failures, read-only and idempotent tools, a retry budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverConfig>,
    /// When the group reports itself Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_policy: Option<HealthPolicy>,
    /// Accepted for compatibility (modern clients have no session to stick to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinityConfig>,
    /// Accepted for compatibility: each member has its own breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<GroupCircuitBreakerConfig>,
}

/// A named member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupMember {
    /// The `MCPProvider`'s name (same namespace).
    pub provider: String,
    /// Its share of the traffic (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub weight: Option<u32>,
    /// Its tier for `Failover` (lower is preferred; default: its place in the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub priority: Option<u32>,
}

/// Failover settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverConfig {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// Between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<String>,
    /// Which failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

/// When a group is Ready.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthPolicy {
    /// Ready members, in percent of all (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_healthy_percentage: Option<i32>,
    /// Ready members, as a count (wins over the percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_count: Option<i32>,
    /// Accepted for compatibility (each member's own threshold applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<i32>,
}

/// Session stickiness.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinityConfig {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `ClientIP` or `Header`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The header for `Header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// How long a session sticks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// A group-wide breaker.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupCircuitBreakerConfig {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Failures that open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// How long it stays open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_timeout: Option<String>,
}

/// What the gateway observes of an `MCPProviderGroup`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPProviderGroupStatus {
    /// Members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_count: Option<i32>,
    /// Members Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_count: Option<i32>,
    /// Members Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_count: Option<i32>,
    /// Members Cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_count: Option<i32>,
    /// Members Dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_count: Option<i32>,
    /// The strategy in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_strategy: Option<String>,
    /// Each member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderMemberStatus>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, by the health policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One member's status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderMemberStatus {
    /// The `MCPProvider`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Its weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Calls in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_connections: Option<i32>,
}

/// The CRD manifests of both kinds, as `deploy/crds/` holds them (YAML documents).
pub fn crd_manifests() -> Result<String, serde_norway::Error> {
    use kube::CustomResourceExt;
    let mut out = String::from("# Generated by `mcp-hangar crds` from proxy/src/discovery/kubernetes/resources.rs.\n");
    for crd in [MCPProvider::crd(), MCPProviderGroup::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_crds_are_rendered_from_these_types() {
        let shipped = include_str!("../../../../deploy/crds/mcp-hangar.io.yaml");
        let rendered = crd_manifests().expect("rendered");
        assert!(
            shipped == rendered,
            "deploy/crds/mcp-hangar.io.yaml is out of date: run `cargo run -- crds > deploy/crds/mcp-hangar.io.yaml`"
        );
    }

    #[test]
    fn the_python_operators_resources_load_unchanged() {
        let text = include_str!("../../../../deploy/examples/mcpproviders.yaml");
        let mut kinds = Vec::new();
        for doc in serde_norway::Deserializer::from_str(text) {
            let value = serde_json::to_value(serde_norway::Value::deserialize(doc).expect("yaml")).expect("json");
            let object: kube::api::DynamicObject = serde_json::from_value(value).expect("an object");
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            match kind.as_str() {
                "MCPProvider" => {
                    let r = super::super::operator::read_provider(&object);
                    r.spec.expect("loads");
                }
                "MCPProviderGroup" => {
                    let r = super::super::operator::read_group(&object);
                    r.spec.expect("loads");
                }
                other => panic!("unexpected kind {other}"),
            }
            kinds.push(kind);
        }
        assert_eq!(kinds, ["MCPProvider", "MCPProvider", "MCPProviderGroup"]);
    }

    #[test]
    fn the_rbac_manifest_allows_what_the_source_does() {
        let text = include_str!("../../../../deploy/rbac.yaml");
        let role = serde_norway::Deserializer::from_str(text)
            .map(|doc| serde_norway::Value::deserialize(doc).expect("yaml"))
            .find(|d| d["kind"] == "ClusterRole")
            .expect("a ClusterRole");
        let allows = |group: &str, resource: &str, verb: &str| {
            role["rules"].as_sequence().expect("rules").iter().any(|r| {
                let has =
                    |k: &str, v: &str| r[k].as_sequence().is_some_and(|l| l.iter().any(|x| x.as_str() == Some(v)));
                has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
            })
        };
        for verb in ["list", "watch", "create", "delete"] {
            assert!(allows("", "pods", verb), "pods {verb}");
        }
        for resource in ["mcpproviders", "mcpprovidergroups"] {
            assert!(
                allows("mcp-hangar.io", resource, "list") && allows("mcp-hangar.io", resource, "watch"),
                "{resource}"
            );
            assert!(allows("mcp-hangar.io", &format!("{resource}/status"), "patch"), "{resource}/status");
        }
    }
}
