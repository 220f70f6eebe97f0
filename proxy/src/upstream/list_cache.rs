//! A provider's cached lists (tools, prompts, resources, templates). They live with the provider's
//! runtime, not with a routing snapshot, so a reload that leaves a provider unchanged keeps them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use crate::proto::lists::ListKind;

/// Longest time a list is cached, whatever `ttlMs` an upstream asks for.
const MAX_LIST_TTL: Duration = Duration::from_secs(24 * 3600);

/// One provider's list, as fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The items, un-prefixed.
    pub items: Arc<Vec<Value>>,
    /// Freshness hint to pass on (ms).
    pub ttl_ms: u64,
    /// Whether the upstream marked it private.
    pub private: bool,
}

/// A list and when it goes stale.
struct Cached {
    fetched: Fetched,
    expires: Instant,
}

/// Per-provider list cache. Each kind has its slot (a call reads two on its way: no hashing).
#[derive(Default)]
pub struct ListCache {
    entries: Mutex<[Option<Cached>; KINDS]>,
    /// The latest list of each kind, fresh or not, until a `list_changed` says it is wrong: tool
    /// schemas are read from it (an upstream that says `ttlMs: 0` must not make every call list).
    latest: Mutex<Latest>,
    /// Set while the gateway fetches the tools list for itself (to learn their annotations), so
    /// concurrent first calls start one fetch.
    pub learning: std::sync::atomic::AtomicBool,
}

/// The latest lists, and what was learnt from the tools list.
#[derive(Default)]
struct Latest {
    lists: [Option<Arc<Vec<Value>>>; KINDS],
    /// Per tool name (its first definition in the list), whether it is safe to repeat; learnt
    /// once per list.
    marked: Option<foldhash::HashMap<String, bool>>,
}

/// How many kinds there are.
const KINDS: usize = 4;

/// The slot of `kind`.
fn slot(kind: ListKind) -> usize {
    match kind {
        ListKind::Tools => 0,
        ListKind::Prompts => 1,
        ListKind::Resources => 2,
        ListKind::Templates => 3,
    }
}

impl ListCache {
    /// The list of `kind`, if cached and fresh.
    pub fn get(&self, kind: ListKind) -> Option<Fetched> {
        let slots = self.entries.lock();
        slots[slot(kind)].as_ref().filter(|c| c.expires > Instant::now()).map(|c| c.fetched.clone())
    }

    /// The latest list of `kind` fetched, even if stale (none after a `list_changed`).
    pub fn latest(&self, kind: ListKind) -> Option<Arc<Vec<Value>>> {
        self.latest.lock().lists[slot(kind)].clone()
    }

    /// Whether the latest tools list marks tool `own` safe to repeat (`readOnlyHint` or
    /// `idempotentHint` on its first definition); `None` while there is no list. Learnt for
    /// every tool at once, the first time a list is asked: calls ask on their way, and a scan of
    /// the list per call would cost as much as the list is long.
    pub fn tool_is_idempotent(&self, own: &str) -> Option<bool> {
        let mut latest = self.latest.lock();
        let Latest { lists, marked } = &mut *latest;
        let list = lists[slot(ListKind::Tools)].as_ref()?;
        let marked = marked.get_or_insert_with(|| {
            let mut marked = foldhash::HashMap::default();
            for tool in list.iter() {
                if let Some(name) = tool.get("name").and_then(Value::as_str) {
                    marked.entry(name.to_owned()).or_insert_with(|| crate::balance::retry::is_idempotent_tool(tool));
                }
            }
            marked
        });
        Some(marked.get(own).copied().unwrap_or(false))
    }

    /// Caches a list for `ttl` (not at all when it is zero; it is the latest either way).
    pub fn put(&self, kind: ListKind, fetched: Fetched, ttl: Duration) {
        self.latest.lock().set(kind, Some(fetched.items.clone()));
        if ttl.is_zero() {
            return;
        }
        // An upstream's `ttlMs` may say anything (u64::MAX ms would overflow an Instant).
        let ttl = ttl.min(MAX_LIST_TTL);
        self.entries.lock()[slot(kind)] = Some(Cached { fetched, expires: Instant::now() + ttl });
    }

    /// Forgets the cached lists of `kinds`.
    pub fn invalidate(&self, kinds: &[ListKind]) {
        {
            let mut slots = self.entries.lock();
            for &k in kinds {
                slots[slot(k)] = None;
            }
        }
        let mut latest = self.latest.lock();
        for &k in kinds {
            latest.set(k, None);
        }
    }
}

impl Latest {
    fn set(&mut self, kind: ListKind, list: Option<Arc<Vec<Value>>>) {
        self.lists[slot(kind)] = list;
        if kind == ListKind::Tools {
            self.marked = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fetched(n: usize) -> Fetched {
        Fetched { items: Arc::new(vec![json!({"name": format!("t{n}")})]), ttl_ms: 0, private: false }
    }

    #[test]
    fn retry_safety_is_learnt_once_per_list_and_forgotten_with_it() {
        let cache = ListCache::default();
        assert_eq!(cache.tool_is_idempotent("a"), None, "no list yet");
        let list = |items: Value| Fetched {
            items: Arc::new(items.as_array().cloned().unwrap_or_default()),
            ttl_ms: 0,
            private: false,
        };
        cache.put(
            ListKind::Tools,
            list(json!([{"name": "a", "annotations": {"readOnlyHint": true}}, {"name": "b"}, {"name": "a"}])),
            Duration::ZERO,
        );
        assert_eq!(cache.tool_is_idempotent("a"), Some(true), "the first definition of a name counts");
        assert_eq!(cache.tool_is_idempotent("b"), Some(false));
        assert_eq!(cache.tool_is_idempotent("zz"), Some(false), "a name the list lacks");
        cache.put(
            ListKind::Tools,
            list(json!([{"name": "b", "annotations": {"idempotentHint": true}}])),
            Duration::ZERO,
        );
        assert_eq!(
            (cache.tool_is_idempotent("a"), cache.tool_is_idempotent("b")),
            (Some(false), Some(true)),
            "a new list"
        );
        cache.put(
            ListKind::Prompts,
            list(json!([{"name": "a", "annotations": {"readOnlyHint": true}}])),
            Duration::ZERO,
        );
        assert_eq!(cache.tool_is_idempotent("a"), Some(false), "another kind's list changes nothing");
        cache.invalidate(&[ListKind::Tools]);
        assert_eq!(cache.tool_is_idempotent("b"), None, "forgotten with its list");
    }

    #[test]
    fn cache_honours_ttl_and_invalidation() {
        let cache = ListCache::default();
        cache.put(ListKind::Templates, fetched(0), Duration::from_millis(u64::MAX));
        assert!(cache.get(ListKind::Templates).is_some(), "an absurd ttlMs is capped, not an overflow");
        cache.put(ListKind::Tools, fetched(1), Duration::ZERO);
        assert!(cache.get(ListKind::Tools).is_none(), "ttlMs 0 means immediately stale: never cached");
        assert_eq!(
            cache.latest(ListKind::Tools).map(|l| l[0]["name"].clone()),
            Some(json!("t1")),
            "but it is the latest"
        );
        cache.put(ListKind::Tools, fetched(2), Duration::from_secs(60));
        cache.put(ListKind::Prompts, fetched(3), Duration::from_secs(60));
        assert_eq!(cache.get(ListKind::Tools).map(|f| f.items[0]["name"].clone()), Some(json!("t2")));
        cache.invalidate(ListKind::from_notification("notifications/tools/list_changed"));
        assert!(cache.get(ListKind::Tools).is_none(), "list_changed invalidates");
        assert!(cache.latest(ListKind::Tools).is_none(), "the latest list too");
        assert!(cache.get(ListKind::Prompts).is_some(), "other kinds stay");
        cache.put(ListKind::Resources, fetched(4), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(ListKind::Resources).is_none(), "expired entries are not served");
        assert_eq!(
            ListKind::from_notification("notifications/resources/list_changed"),
            &[ListKind::Resources, ListKind::Templates]
        );
    }
}
