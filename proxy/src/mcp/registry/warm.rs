//! `registry_warm`: start providers now, so their first call does not wait for a cold start.
//! Starts run a few at a time; each one finished is a progress notification when the caller gave
//! a progress token.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::{only, string_arg, Failure};
use crate::lifecycle::State;
use crate::routing::{ProviderRuntime, Routes};
use crate::upstream::{CallEvent, Events};

/// Providers started at once.
const PARALLEL_STARTS: usize = 4;

/// How one provider's warming ended.
enum Warmed {
    Started,
    AlreadyWarm,
    Failed(String),
    Skipped(&'static str),
}

/// Runs `registry_warm`.
pub(super) async fn run(routes: &Routes, params: &Value, args: &Value, events: Events) -> Result<Value, Failure> {
    only(args, &["providers"])?;
    let names: Vec<String> = match string_arg(args, "providers")?.map(str::trim).filter(|s| !s.is_empty()) {
        Some(list) => list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect(),
        None => routes.providers.iter().filter(|p| !p.is_group()).map(|p| p.name().to_owned()).collect(),
    };
    let token = params.get("_meta").and_then(|m| m.get("progressToken")).cloned();
    let total = names.len();
    let mut outcomes: Vec<(String, Warmed)> = Vec::with_capacity(total);
    let mut starts = stream::iter(names.into_iter().map(|name| {
        let runtime = routes.provider(&name).map(|(_, p)| p.clone());
        async move {
            let outcome = warm(runtime).await;
            (name, outcome)
        }
    }))
    .buffer_unordered(PARALLEL_STARTS);
    while let Some((name, outcome)) = starts.next().await {
        let done = outcomes.len() + 1;
        if let (Some(token), Some(tx)) = (&token, &events) {
            let what = match &outcome {
                Warmed::Started => "started".to_owned(),
                Warmed::AlreadyWarm => "already warm".to_owned(),
                Warmed::Failed(e) => format!("failed: {e}"),
                Warmed::Skipped(why) => format!("skipped: {why}"),
            };
            let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                "progressToken": token, "progress": done, "total": total, "message": format!("{name}: {what}")}});
            let _ = tx.send(CallEvent::Notification(note)).await;
        }
        outcomes.push((name, outcome));
    }
    drop(starts);
    let (mut warmed, mut already, mut failed, mut skipped) = (vec![], vec![], vec![], vec![]);
    for (name, outcome) in outcomes {
        match outcome {
            Warmed::Started => warmed.push(json!(name)),
            Warmed::AlreadyWarm => already.push(json!(name)),
            Warmed::Failed(error) => failed.push(json!({"id": name, "error": error})),
            Warmed::Skipped(reason) => skipped.push(json!({"id": name, "reason": reason})),
        }
    }
    let summary = format!("Warmed {} providers, {} already warm, {} failed", warmed.len(), already.len(), failed.len());
    Ok(json!({"warmed": warmed, "already_warm": already, "failed": failed, "skipped": skipped, "summary": summary}))
}

/// Starts one provider as its first call would, unless it runs already.
async fn warm(runtime: Option<Arc<ProviderRuntime>>) -> Warmed {
    let Some(p) = runtime else { return Warmed::Failed("Provider not found".into()) };
    let Some(upstream) = p.upstream() else { return Warmed::Skipped("a group: warm its members") };
    if matches!(p.lifecycle.state(), State::Ready | State::Degraded) {
        return Warmed::AlreadyWarm;
    }
    let started = upstream.check().await;
    p.lifecycle.record(started.as_ref().err().map(ToString::to_string).as_deref());
    match started {
        Ok(()) => Warmed::Started,
        Err(e) => Warmed::Failed(e.to_string().chars().take(300).collect()),
    }
}
