//! The gateway's merged lists: each exposed provider's tools, prompts, resources and resource
//! templates, fetched concurrently, cached per provider (honouring `ttlMs`; invalidated by
//! `list_changed`), merged in declaration order. A provider that cannot list is skipped and
//! reported in `_meta`; it never fails the whole list.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::auth::{Item, Principal};
use crate::jsonrpc::{code, RpcError};
use crate::lifecycle::State;
use crate::proto::lists::ListKind;
use crate::proto::protocol::Era;
use crate::routing::index::{Listed, NameIndex, UriTemplate};
use crate::routing::{Backend, Routes};
use crate::telemetry::metrics::Limit;
use crate::upstream::list_cache::Fetched;
use crate::upstream::{CallError, Caller};

/// Most pages read from one upstream list before giving up (a paging loop is a bug upstream).
const MAX_PAGES: usize = 100;
/// Cache lifetime of a legacy upstream's list when it promises `list_changed` notifications.
const LEGACY_TTL_WITH_NOTIFICATIONS: Duration = Duration::from_secs(300);
/// Cache lifetime of a legacy upstream's list otherwise.
const LEGACY_TTL: Duration = Duration::from_secs(30);
/// How long one provider may take to list before the merged list goes on without it.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);
/// Least time between two list refreshes caused by unknown resource URIs.
pub const URI_REFRESH_EVERY: Duration = Duration::from_secs(1);
/// `_meta` key naming the providers missing from a merged list.
pub const UNAVAILABLE_META: &str = "io.mcp-hangar/unavailableProviders";
/// `_meta` key of a tools list naming the provider tools left out because one of the gateway's
/// own tools has the same name.
pub const SHADOWED_META: &str = "io.mcp-hangar/shadowedTools";

/// One provider's list: cached, fetched, or (tools of a provider that cannot be reached) its
/// predefined tools.
pub async fn provider_list(routes: &Routes, idx: usize, kind: ListKind) -> Result<Fetched, RpcError> {
    let p = &routes.providers[idx];
    if let Some(hit) = p.lists.get(kind) {
        return Ok(hit);
    }
    let predefined = || Fetched {
        items: Arc::new(p.config.tools.iter().map(|t| t.definition.clone()).collect()),
        ttl_ms: 0,
        private: false,
    };
    // Predefined tools mean "do not start me to list": a COLD subprocess shows them (and nothing
    // else) until a call starts it.
    if !p.config.tools.is_empty() && matches!(p.backend, Backend::Process(_)) && p.lifecycle.state() == State::Cold {
        return Ok(if kind == ListKind::Tools {
            predefined()
        } else {
            Fetched { items: Arc::new(Vec::new()), ttl_ms: 0, private: false }
        });
    }
    let result = match routes.pool(idx) {
        Some(pool) => group_list(routes, idx, &pool.members, kind).await,
        None => fetch(routes, idx, kind).await,
    };
    match result {
        Ok(f) => Ok(f),
        Err(_) if kind == ListKind::Tools && !p.config.tools.is_empty() => Ok(predefined()),
        Err(e) => Err(e),
    }
}

/// A group's list: its members serve the same things, so the first member that answers gives it
/// (healthy members first).
async fn group_list(routes: &Routes, idx: usize, members: &[usize], kind: ListKind) -> Result<Fetched, RpcError> {
    let mut order = members.to_vec();
    order.sort_by_key(|&m| !routes.providers[m].lifecycle.admits());
    let mut last =
        RpcError::new(code::PROVIDER_UNAVAILABLE, format!("group {:?} has no members", routes.providers[idx].name()));
    for m in order {
        match Box::pin(provider_list(routes, m, kind)).await {
            Ok(f) => return Ok(f),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn fetch(routes: &Routes, idx: usize, kind: ListKind) -> Result<Fetched, RpcError> {
    let p = &routes.providers[idx];
    let (_, upstream) = routes.upstream(idx)?;
    let caller = Caller::gateway();
    let info = upstream.probe().await.map_err(|e| e.to_rpc(p.name()))?;
    if info.capabilities.get(kind.capability()).is_none() {
        let empty = Fetched { items: Arc::new(Vec::new()), ttl_ms: 0, private: false };
        p.lists.put(kind, empty.clone(), LEGACY_TTL_WITH_NOTIFICATIONS);
        return Ok(empty);
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut ttl_ms: Option<u64> = None;
    let mut private = false;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let mut page = upstream.call(kind.method(), params, &caller, None).await.map_err(|e| match e {
            CallError::Rpc(r) => r,
            other => other.to_rpc(p.name()),
        })?;
        if let Some(Value::Array(list)) = page.get_mut(kind.items_key()).map(Value::take) {
            items.extend(list.into_iter().filter(Value::is_object));
        }
        if let Some(t) = page.get("ttlMs").and_then(Value::as_i64) {
            let t = u64::try_from(t).unwrap_or(0);
            ttl_ms = Some(ttl_ms.map_or(t, |prev| prev.min(t)));
        }
        private |= page.get("cacheScope").and_then(Value::as_str) == Some("private");
        cursor = page.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let ttl = match (ttl_ms, info.era) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, Era::Legacy)
            if info.capabilities.pointer(&format!("/{}/listChanged", kind.capability())) == Some(&json!(true)) =>
        {
            LEGACY_TTL_WITH_NOTIFICATIONS
        }
        (None, _) => LEGACY_TTL,
    };
    let fetched = Fetched { items: Arc::new(items), ttl_ms: ttl_ms.unwrap_or(0), private };
    p.lists.put(kind, fetched.clone(), ttl);
    Ok(fetched)
}

/// Who a merged list is for: it shows only what they may use (through the door they came by).
#[derive(Clone, Copy)]
pub struct Viewer<'a> {
    /// The caller.
    pub principal: &'a Principal,
}

impl Viewer<'_> {
    fn sees(&self, item: &Item<'_>) -> bool {
        self.principal.decide(item).allowed
    }
}

/// The merged list for `kind`, shaped for a client of `era` and filtered to what `viewer` may use
/// (everything when `None`, for the gateway's own lookups); also refreshes the name index, which
/// always holds everything.
pub async fn merged(routes: &Routes, kind: ListKind, era: Era, viewer: Option<Viewer<'_>>) -> Value {
    let exposed: Vec<usize> = routes.exposed().map(|(i, _)| i).collect();
    let fetches = exposed.iter().map(|&i| async move {
        match tokio::time::timeout(LIST_TIMEOUT, provider_list(routes, i, kind)).await {
            Ok(r) => (i, r),
            Err(_) => (i, Err(RpcError::new(code::PROVIDER_TIMEOUT, format!("no list within {LIST_TIMEOUT:?}")))),
        }
    });
    let results = join_all(fetches).await;

    let mut items = Vec::new();
    let mut unavailable = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let own_tools =
        if kind == ListKind::Tools && routes.admin_tools { crate::mcp::registry::tools() } else { Vec::new() };
    let mut shadowed = Vec::new();
    let own_names: Vec<&str> = own_tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).collect();
    let mut ttl_ms: Option<u64> = None;
    let mut private = false;
    let compiled: HashMap<String, Arc<UriTemplate>> = if kind == ListKind::Templates {
        routes.index.load().templates.iter().map(|(t, _)| (t.source().to_owned(), t.clone())).collect()
    } else {
        HashMap::new()
    };
    let mut section = NameIndex::default();
    for (i, result) in results {
        let p = &routes.providers[i];
        let fetched = match result {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(provider = p.name(), "{} failed: {e}", kind.method());
                unavailable.push(json!({"provider": p.name(), "error": e.message}));
                continue;
            }
        };
        ttl_ms = Some(ttl_ms.map_or(fetched.ttl_ms, |t| t.min(fetched.ttl_ms)));
        private |= fetched.private;
        for item in fetched.items.iter() {
            let mut item = item.clone();
            let own = item.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            // Trimmed by the provider's tools_include/tools_exclude: not listed, not indexed.
            let trimmed_by = match kind {
                ListKind::Tools | ListKind::Prompts => Some(own.as_str()),
                ListKind::Resources => item.get("uri").and_then(Value::as_str),
                ListKind::Templates => item.get("uriTemplate").and_then(Value::as_str),
            };
            if trimmed_by.is_some_and(|n| !p.config.exposes(n)) {
                continue;
            }
            let key = match kind {
                ListKind::Tools | ListKind::Prompts => {
                    let Some(name) = item.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
                    let exposed = format!("{}{}", p.config.tool_prefix, name);
                    if kind == ListKind::Tools && own_names.contains(&exposed.as_str()) {
                        if routes.shadowed.lock().insert(format!("{}\u{0}{exposed}", p.name())) {
                            tracing::warn!(
                                provider = p.name(),
                                "tool {exposed:?} is left out: the gateway's own tool has that name (give the provider a tool_prefix, or set server.admin_tools: false)"
                            );
                        }
                        shadowed.push(json!({"provider": p.name(), "tool": exposed}));
                        continue;
                    }
                    item["name"] = Value::String(exposed.clone());
                    let map = if kind == ListKind::Tools { &mut section.tools } else { &mut section.prompts };
                    if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(exposed.clone()) {
                        slot.insert(Listed::new(i, name));
                        if kind == ListKind::Tools && crate::balance::retry::is_idempotent_tool(&item) {
                            section.idempotent_tools.insert(exposed.clone());
                        }
                    }
                    exposed
                }
                ListKind::Resources => {
                    let Some(uri) = item.get("uri").and_then(Value::as_str).map(str::to_owned) else { continue };
                    section.resources.entry(uri.clone()).or_insert(i);
                    uri
                }
                ListKind::Templates => {
                    let Some(t) = item.get("uriTemplate").and_then(Value::as_str).map(str::to_owned) else { continue };
                    let template = compiled.get(&t).cloned().unwrap_or_else(|| Arc::new(UriTemplate::parse(&t)));
                    section.templates.push((template, i));
                    t
                }
            };
            if let Some(&owner) = seen.get(&key) {
                tracing::warn!(
                    "{key:?} is listed by both {:?} and {:?}; keeping the first",
                    routes.providers[owner].name(),
                    p.name()
                );
                continue;
            }
            let visible = viewer.is_none_or(|v| {
                let provider = p.name();
                v.sees(&match kind {
                    ListKind::Tools => Item::Tool { provider, own: &own, exposed: &key },
                    ListKind::Prompts => Item::Prompt { provider, own: &own, exposed: &key },
                    ListKind::Resources | ListKind::Templates => Item::Resource { provider, uri: &key },
                })
            });
            seen.insert(key, i);
            if visible {
                items.push(item);
            }
        }
    }
    publish(&routes.index, kind, &section);
    items.extend(own_tools.into_iter().filter(|t| {
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        viewer.is_none_or(|v| v.sees(&Item::AdminTool { name }))
    }));
    // Lists that differ by caller must not be cached for everyone.
    private |= viewer.is_some_and(|v| v.principal.private_lists);

    let mut result = Map::new();
    result.insert(kind.items_key().into(), Value::Array(items));
    let mut meta = Map::new();
    if !unavailable.is_empty() {
        meta.insert(UNAVAILABLE_META.into(), Value::Array(unavailable));
    }
    if !shadowed.is_empty() {
        meta.insert(SHADOWED_META.into(), Value::Array(shadowed));
    }
    if era == Era::Modern {
        result.insert("ttlMs".into(), ttl_ms.unwrap_or(0).into());
        result.insert("cacheScope".into(), if private { "private" } else { "public" }.into());
    }
    if !meta.is_empty() {
        result.insert("_meta".into(), Value::Object(meta));
    }
    Value::Object(result)
}

/// Replaces `kind`'s part of the name index with `section`'s. A merge of another kind may run
/// meanwhile and must not lose its part, so the swap is a read-copy-update, never a load, a clone
/// and a store.
fn publish(index: &ArcSwap<NameIndex>, kind: ListKind, section: &NameIndex) {
    index.rcu(|current| {
        let mut index = NameIndex::clone(current);
        match kind {
            ListKind::Tools => {
                index.tools.clone_from(&section.tools);
                index.idempotent_tools.clone_from(&section.idempotent_tools);
            }
            ListKind::Prompts => index.prompts.clone_from(&section.prompts),
            ListKind::Resources => index.resources.clone_from(&section.resources),
            ListKind::Templates => index.templates.clone_from(&section.templates),
        }
        index
    });
}

/// Whether provider or group `idx` marks its tool `own` safe to repeat (`readOnlyHint` or
/// `idempotentHint`), from the latest tools list of it (or its members), or its predefined tools;
/// `None` while no list is known.
pub fn tool_is_idempotent(routes: &Routes, idx: usize, own: &str) -> Option<bool> {
    let single = [idx];
    let candidates: &[usize] = routes.pool(idx).map_or(&single[..], |p| &p.members[..]);
    for &m in candidates {
        let p = &routes.providers[m];
        if let Some(known) = p.lists.tool_is_idempotent(own) {
            return Some(known);
        }
        if let Some(t) = p.config.tools.iter().find(|t| t.name == own) {
            return Some(crate::balance::retry::is_idempotent_tool(&t.definition));
        }
    }
    None
}

/// Fetches the tools list of provider or group `idx` in the background when none is known, so
/// the gateway knows which of its tools are safe to retry whether or not a client listed them
/// through it. One fetch at a time per provider; a `list_changed` makes the next call learn
/// again. Learning never starts a provider: it waits for the start the call made and lists once
/// the provider (for a group, a member) serves; a failed start leaves it for the next call.
pub fn learn_tools(routes: &Arc<Routes>, idx: usize) {
    let flag = &routes.providers[idx].lists.learning;
    if flag.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let routes = routes.clone();
    tokio::spawn(async move {
        if in_service(&routes, idx).await {
            if let Err(e) = provider_list(&routes, idx, ListKind::Tools).await {
                tracing::debug!(provider = routes.providers[idx].name(), "learning the tools' annotations failed: {e}");
            }
        }
        routes.providers[idx].lists.learning.store(false, std::sync::atomic::Ordering::Release);
    });
}

/// Longest learning waits for a start under way.
const LEARN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether provider `idx` (for a group, one of its members) serves, waiting (up to
/// [`LEARN_WAIT`]) while it is COLD or starting.
async fn in_service(routes: &Routes, idx: usize) -> bool {
    use crate::lifecycle::State;
    let targets: Vec<usize> = routes.pool(idx).map_or_else(|| vec![idx], |pool| pool.members.clone());
    let deadline = tokio::time::Instant::now() + LEARN_WAIT;
    loop {
        let states: Vec<State> = targets.iter().map(|&m| routes.providers[m].lifecycle.state()).collect();
        if states.iter().any(|s| matches!(s, State::Ready | State::Degraded)) {
            return true;
        }
        // COLD: the call that asked is about to start it; DEAD: its start failed.
        if states.iter().all(|s| *s == State::Dead) || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Looks up which provider serves exposed tool or prompt `name`, and its own name for it.
pub async fn resolve_named(routes: &Routes, kind: ListKind, name: &str) -> Option<(usize, String)> {
    let lookup = |index: &NameIndex| {
        let map = if kind == ListKind::Tools { &index.tools } else { &index.prompts };
        map.get(name).map(|l| (l.provider, l.own.clone()))
    };
    let exposed = |(i, own): (usize, String)| routes.providers[i].config.exposes(&own).then_some((i, own));
    if let Some(hit) = lookup(&routes.index.load()) {
        return exposed(hit);
    }
    if let Some((i, rest)) = routes.by_prefix(name) {
        return exposed((i, rest.to_owned()));
    }
    for &i in routes.unprefixed() {
        if let Ok(list) = provider_list(routes, i, kind).await {
            if list.items.iter().any(|t| t.get("name").and_then(Value::as_str) == Some(name)) {
                return exposed((i, name.to_owned()));
            }
        }
    }
    None
}

/// Which provider serves resource `uri`: listed resources first, then templates; refreshes the
/// lists when the URI is not known yet. `None` means unknown (never a guess). Refreshes are
/// shared by concurrent lookups and happen at most once per [`URI_REFRESH_EVERY`]: a client
/// sending made-up URIs must not turn each into a fan-out to every provider.
pub async fn resolve_resource(routes: &Routes, uri: &str) -> Option<usize> {
    let lookup = |index: &NameIndex| {
        let i = index.resources.get(uri).copied().or_else(|| index.template_for(uri))?;
        routes.providers[i].config.exposes(uri).then_some(i)
    };
    if let Some(i) = lookup(&routes.index.load()) {
        return Some(i);
    }
    let mut last_refresh = routes.uri_refresh.lock().await;
    if let Some(i) = lookup(&routes.index.load()) {
        return Some(i); // refreshed while this lookup waited
    }
    if last_refresh.is_some_and(|t| t.elapsed() < URI_REFRESH_EVERY) {
        routes.metrics.limit_hit(Limit::UriRefresh);
        return None;
    }
    merged(routes, ListKind::Resources, Era::Modern, None).await;
    merged(routes, ListKind::Templates, Era::Modern, None).await;
    *last_refresh = Some(Instant::now());
    lookup(&routes.index.load())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_merges_of_different_kinds_keep_each_others_part() {
        let index = Arc::new(ArcSwap::from_pointee(NameIndex::default()));
        let kinds = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::Templates];
        for round in 0..300usize {
            let barrier = Arc::new(std::sync::Barrier::new(kinds.len()));
            let writers: Vec<_> = kinds
                .iter()
                .map(|&kind| {
                    let (index, barrier) = (index.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut section = NameIndex::default();
                        let key = format!("{round}");
                        match kind {
                            ListKind::Tools => drop(section.tools.insert(key, Listed::new(round, String::new()))),
                            ListKind::Prompts => drop(section.prompts.insert(key, Listed::new(round, String::new()))),
                            ListKind::Resources => drop(section.resources.insert(key, round)),
                            ListKind::Templates => section.templates.push((Arc::new(UriTemplate::parse(&key)), round)),
                        }
                        barrier.wait();
                        publish(&index, kind, &section);
                    })
                })
                .collect();
            writers.into_iter().for_each(|w| w.join().expect("writer"));
            let now = index.load();
            let key = round.to_string();
            assert!(now.tools.contains_key(&key), "round {round}: tools lost");
            assert!(now.prompts.contains_key(&key), "round {round}: prompts lost");
            assert!(now.resources.contains_key(&key), "round {round}: resources lost");
            assert_eq!(now.templates.first().map(|t| t.1), Some(round), "round {round}: templates lost");
        }
    }
}
