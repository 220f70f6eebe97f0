//! The pod the gateway runs for a container-mode `MCPProvider`: the one the Python operator
//! built (name `mcp-provider-<name>`, its labels, secure defaults, the provider's scheduling and
//! security settings), owned by the resource so Kubernetes removes it with the resource, plus the
//! port the server listens on and a readiness probe on it, so "Ready" means "accepting
//! connections".

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Map, Value};

use super::resources::{EnvVar, MCPProviderSpec, SecurityContext, Volume};

/// `app.kubernetes.io/managed-by` on the pods the gateway runs; its watch selects them by it.
pub(super) const MANAGED_BY: &str = "mcp-hangar";
/// The label naming a managed pod's `MCPProvider`.
pub(super) const PROVIDER_LABEL: &str = "mcp-hangar.io/provider";
/// The annotation holding the `metadata.generation` of the spec a pod was built from: a pod of an
/// older generation is replaced.
pub(super) const GENERATION_ANNOTATION: &str = "mcp-hangar.io/generation";
/// Where a container serves MCP unless `spec.port` says otherwise (the Docker label's default).
pub(super) const DEFAULT_PORT: u16 = 8080;

/// The pod's name for provider `name`.
pub(super) fn pod_name(name: &str) -> String {
    format!("mcp-provider-{name}")
}

/// The resource a pod is built for.
pub(super) struct Owner<'a> {
    /// Its namespace.
    pub(super) namespace: &'a str,
    /// Its name.
    pub(super) name: &'a str,
    /// Its uid (the owner reference needs it; a resource without one gets an unowned pod).
    pub(super) uid: Option<&'a str>,
    /// Its `metadata.generation`.
    pub(super) generation: i64,
}

/// The pod for `spec` (container mode, with an image).
pub(super) fn build(owner: &Owner<'_>, spec: &MCPProviderSpec, grace: Duration) -> Result<Pod, String> {
    let image = spec.image.as_deref().filter(|i| !i.is_empty()).ok_or("container mode requires spec.image")?;
    let port = spec.port.unwrap_or(DEFAULT_PORT);
    let mut container = json!({
        "name": "provider",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": env(owner, &spec.env),
        "ports": [{"name": "mcp", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2, "failureThreshold": 3},
        "securityContext": container_security(spec.security_context.as_ref()),
    });
    let fields = container.as_object_mut().ok_or("a container is an object")?;
    put(fields, "command", (!spec.command.is_empty()).then(|| json!(spec.command)));
    put(fields, "args", (!spec.args.is_empty()).then(|| json!(spec.args)));
    put(fields, "workingDir", spec.working_dir.as_ref().map(|d| json!(d)));
    put(fields, "resources", spec.resources.as_ref().map(|r| json!(r)));
    let (mounts, volumes) = volumes(&spec.volumes);
    put(fields, "volumeMounts", (!mounts.is_empty()).then_some(Value::Array(mounts)));

    let mut pod_spec = json!({
        "containers": [container],
        "restartPolicy": "Never",
        // A provider pod holds no API credentials unless it names an account to run as.
        "automountServiceAccountToken": spec.service_account_name.is_some(),
        "terminationGracePeriodSeconds": grace.as_secs(),
        "securityContext": pod_security(spec.security_context.as_ref()),
    });
    let fields = pod_spec.as_object_mut().ok_or("a pod spec is an object")?;
    put(fields, "volumes", (!volumes.is_empty()).then_some(Value::Array(volumes)));
    put(fields, "serviceAccountName", spec.service_account_name.as_ref().map(|s| json!(s)));
    put(fields, "imagePullSecrets", (!spec.image_pull_secrets.is_empty()).then(|| json!(spec.image_pull_secrets)));
    put(fields, "nodeSelector", (!spec.node_selector.is_empty()).then(|| json!(spec.node_selector)));
    put(fields, "tolerations", (!spec.tolerations.is_empty()).then(|| json!(spec.tolerations)));
    put(fields, "affinity", spec.affinity.as_ref().map(|a| json!(a)));
    put(fields, "priorityClassName", spec.priority_class_name.as_ref().map(|p| json!(p)));

    let mut metadata = json!({
        "name": pod_name(owner.name),
        "namespace": owner.namespace,
        "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/name": owner.name,
            "app.kubernetes.io/instance": owner.name,
            "app.kubernetes.io/component": "provider",
            "app.kubernetes.io/part-of": "mcp-hangar",
            PROVIDER_LABEL: owner.name,
        },
        "annotations": {GENERATION_ANNOTATION: owner.generation.to_string()},
    });
    if let (Some(uid), Some(fields)) = (owner.uid, metadata.as_object_mut()) {
        fields.insert(
            "ownerReferences".into(),
            json!([{
                "apiVersion": "mcp-hangar.io/v1alpha1",
                "kind": "MCPProvider",
                "name": owner.name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }]),
        );
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec});
    serde_json::from_value(pod).map_err(|e| format!("the pod cannot be built from the spec: {e}"))
}

fn put(fields: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        fields.insert(key.to_owned(), v);
    }
}

/// The operator's variables (who the pod is), then the provider's own.
fn env(owner: &Owner<'_>, own: &[EnvVar]) -> Value {
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let mut vars = vec![
        json!({"name": "MCP_PROVIDER_NAME", "value": owner.name}),
        json!({"name": "MCP_PROVIDER_NAMESPACE", "value": owner.namespace}),
        json!({"name": "MCP_POD_NAME", "valueFrom": field("metadata.name")}),
        json!({"name": "MCP_POD_IP", "valueFrom": field("status.podIP")}),
    ];
    vars.extend(own.iter().map(|v| json!(v)));
    Value::Array(vars)
}

/// Volume mounts and volumes, one of each per entry.
fn volumes(own: &[Volume]) -> (Vec<Value>, Vec<Value>) {
    own.iter()
        .map(|v| {
            let mut mount =
                json!({"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only.unwrap_or(false)});
            if let (Some(sub), Some(fields)) = (&v.sub_path, mount.as_object_mut()) {
                fields.insert("subPath".into(), json!(sub));
            }
            let mut volume = json!({"name": v.name});
            if let Some(fields) = volume.as_object_mut() {
                put(fields, "secret", v.secret.as_ref().map(|s| json!(s)));
                put(fields, "configMap", v.config_map.as_ref().map(|c| json!(c)));
                put(fields, "persistentVolumeClaim", v.persistent_volume_claim.as_ref().map(|c| json!(c)));
                put(fields, "emptyDir", v.empty_dir.as_ref().map(|e| json!(e)));
            }
            (mount, volume)
        })
        .collect()
}

/// The pod-level settings: the provider's, else non-root (nobody) with the runtime's seccomp profile.
fn pod_security(own: Option<&SecurityContext>) -> Value {
    let Some(sc) = own else {
        return json!({"runAsNonRoot": true, "runAsUser": 65534, "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}});
    };
    let mut out = Map::new();
    put(&mut out, "runAsNonRoot", sc.run_as_non_root.map(Value::from));
    put(&mut out, "runAsUser", sc.run_as_user.map(Value::from));
    put(&mut out, "runAsGroup", sc.run_as_group.map(Value::from));
    put(&mut out, "fsGroup", sc.fs_group.map(Value::from));
    put(&mut out, "seccompProfile", sc.seccomp_profile.as_ref().map(|s| json!(s)));
    Value::Object(out)
}

/// The container-level settings: the provider's, else read-only, unprivileged, no capabilities.
fn container_security(own: Option<&SecurityContext>) -> Value {
    let Some(sc) = own else {
        return json!({
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        });
    };
    let mut out = Map::new();
    put(&mut out, "runAsNonRoot", sc.run_as_non_root.map(Value::from));
    put(&mut out, "runAsUser", sc.run_as_user.map(Value::from));
    put(&mut out, "runAsGroup", sc.run_as_group.map(Value::from));
    put(&mut out, "readOnlyRootFilesystem", sc.read_only_root_filesystem.map(Value::from));
    put(&mut out, "allowPrivilegeEscalation", sc.allow_privilege_escalation.map(Value::from));
    put(&mut out, "capabilities", sc.capabilities.as_ref().map(|c| json!(c)));
    put(&mut out, "seccompProfile", sc.seccomp_profile.as_ref().map(|s| json!(s)));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: Value) -> MCPProviderSpec {
        let mut base = json!({"mode": "container", "image": "ghcr.io/acme/math:1"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).expect("a spec")
    }

    fn owner() -> Owner<'static> {
        Owner { namespace: "mcp", name: "math", uid: Some("u-1"), generation: 3 }
    }

    #[test]
    fn the_pod_is_the_operators_with_secure_defaults() {
        let pod = build(&owner(), &spec(json!({"args": ["--port", "9000"], "port": 9000})), Duration::from_secs(30))
            .expect("built");
        let v = serde_json::to_value(&pod).expect("json");
        assert_eq!(v["metadata"]["name"], "mcp-provider-math");
        assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/managed-by"], MANAGED_BY);
        assert_eq!(v["metadata"]["labels"][PROVIDER_LABEL], "math");
        assert_eq!(v["metadata"]["annotations"][GENERATION_ANNOTATION], "3");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "MCPProvider");
        let c = &v["spec"]["containers"][0];
        assert_eq!((c["image"].as_str(), c["args"][1].as_str()), (Some("ghcr.io/acme/math:1"), Some("9000")));
        assert_eq!(c["ports"][0]["containerPort"], 9000);
        assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], 9000);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["env"][0]["name"], "MCP_PROVIDER_NAME");
        assert_eq!(v["spec"]["securityContext"]["runAsUser"], 65534);
        assert_eq!(v["spec"]["restartPolicy"], "Never");
        assert_eq!(v["spec"]["automountServiceAccountToken"], false);
        assert_eq!(v["spec"]["terminationGracePeriodSeconds"], 30);
    }

    #[test]
    fn the_providers_settings_reach_the_pod() {
        let s = spec(json!({
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
            "volumes": [{"name": "data", "mountPath": "/data", "readOnly": true, "configMap": {"name": "cfg"}}],
            "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": false},
            "serviceAccountName": "reader",
            "nodeSelector": {"pool": "mcp"},
            "resources": {"limits": {"memory": "256Mi"}},
        }));
        let v = serde_json::to_value(build(&owner(), &s, Duration::from_secs(5)).expect("built")).expect("json");
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["env"][4]["valueFrom"]["secretKeyRef"]["key"], "token");
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/data");
        assert_eq!(v["spec"]["volumes"][0]["configMap"]["name"], "cfg");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], false);
        assert_eq!(v["spec"]["securityContext"]["runAsUser"], 1000);
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(v["spec"]["automountServiceAccountToken"], true);
        assert_eq!(v["spec"]["nodeSelector"]["pool"], "mcp");
    }

    #[test]
    fn a_container_needs_an_image() {
        let s: MCPProviderSpec = serde_json::from_value(json!({"mode": "container"})).expect("a spec");
        assert!(build(&owner(), &s, Duration::from_secs(1)).expect_err("refused").contains("spec.image"));
    }
}
