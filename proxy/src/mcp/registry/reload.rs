//! `registry_reload`, `registry_discover` and `registry_approve`: each ends in a reload, whose
//! report (or the reason the candidate was rejected) is the answer.

use serde_json::{json, Value};

use super::{only, views, Failure};
use crate::mcp::server::McpServer;
use crate::proto::lists::ListKind;

/// Longest `registry_discover` waits for the sources to look.
const DISCOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `registry_reload`: a reload, or with `dry_run` what it would change.
pub async fn reload(server: &McpServer, args: &Value) -> Result<Value, Failure> {
    only(args, &["graceful", "dry_run"])?;
    let flag = |k: &str, default: bool| match args.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| format!("arguments.{k} must be a boolean")),
    };
    let (graceful, dry_run) = (flag("graceful", true)?, flag("dry_run", false)?);
    if dry_run {
        dry_run_of(server, None).await
    } else {
        reloaded(server, "registry_reload", graceful).await
    }
}

/// What reloading would change: with the configuration as the sources give it now, or with
/// `candidate` (YAML text) in place of the file. The candidate's problems are the failure.
pub async fn dry_run_of(server: &McpServer, candidate: Option<&str>) -> Result<Value, Failure> {
    let state = &server.state;
    let (candidate, plan) = state
        .reconciler
        .preview(state, candidate)
        .await
        .map_err(|e| format!("the configuration would be rejected: {e}"))?;
    let snap = state.snapshot();
    let live = LiveGateway { snap: &snap, server };
    let mut d = crate::state::diff::describe(&snap.config, &candidate, &plan, Some(&live));
    d["status"] = json!("dry_run");
    let text = if plan.changes_anything() { crate::state::diff::to_text(&d) } else { "nothing would change".into() };
    d["text"] = json!(text);
    Ok(d)
}

/// `registry_approve`: the quarantined provider is let in, and a reload makes it serve.
pub async fn approve(server: &McpServer, args: &Value) -> Result<Value, Failure> {
    only(args, &["provider"])?;
    let name = super::string_arg(args, "provider")?.ok_or("arguments.provider is required")?;
    approve_named(server, name, "registry_approve").await
}

/// Lets quarantined `name` in and reloads (`by`: who asked, for the audit trail).
pub async fn approve_named(server: &McpServer, name: &str, by: &str) -> Result<Value, Failure> {
    let state = &server.state;
    if !state.reconciler.admission().approve(name) {
        return Err(format!("{name:?} is not quarantined"));
    }
    state.audit.discovery("approved", name, None, &format!("by {by}"));
    reloaded(server, by, true).await
}

/// Reloads now: what changed, or why the configuration was rejected.
pub async fn reloaded(server: &McpServer, trigger: &str, graceful: bool) -> Result<Value, Failure> {
    let state = &server.state;
    match state.reconciler.reload(state, trigger, graceful).await {
        Ok(report) => {
            let mut r = report.plan.to_json();
            r["status"] = json!(if report.applied { "success" } else { "unchanged" });
            r["generation"] = json!(report.generation);
            r["duration_ms"] = json!(report.duration.as_secs_f64() * 1000.0);
            Ok(r)
        }
        Err(e) => Err(format!("the configuration was rejected; the running one stays: {e}")),
    }
}

/// `registry_discover`: every source looks now, then a reload applies what they found. The
/// reply says what changed over the whole cycle (a source that found something reloads by
/// itself too, so the final reload alone may have nothing left to do).
pub async fn discover(server: &McpServer, args: &Value) -> Result<Value, Failure> {
    only(args, &[])?;
    let state = &server.state;
    let before = state.snapshot();
    let all = state.reconciler.live().look_now(DISCOVER_WAIT).await;
    reloaded(server, "registry_discover", true).await?;
    let after = state.snapshot();
    let mut now = (*after.config).clone();
    let plan = crate::state::reconcile::plan(&before.config, &mut now);
    let mut result = plan.to_json();
    result["status"] = json!(if after.generation == before.generation { "unchanged" } else { "success" });
    result["generation"] = json!(after.generation);
    result["sources"] = json!(views::sources(state));
    if !all {
        result["note"] = json!(format!(
            "not every source looked within {} s (see its error); what they last found was used",
            DISCOVER_WAIT.as_secs()
        ));
    }
    Ok(result)
}

/// The running gateway, as the dry run sees it.
struct LiveGateway<'a> {
    snap: &'a crate::state::Snapshot,
    server: &'a McpServer,
}

impl crate::state::diff::Live for LiveGateway<'_> {
    fn listed(&self, provider: &str, prompts: bool) -> Option<Vec<String>> {
        let (_, p) = self.snap.routes.provider(provider)?;
        let list = p.lists.get(if prompts { ListKind::Prompts } else { ListKind::Tools })?;
        Some(list.items.iter().filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
    }

    fn sessions_pinned_to(&self, member: &str) -> usize {
        self.server.sessions.all().iter().filter(|s| s.pinned_to(member)).count()
    }
}
