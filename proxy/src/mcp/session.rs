//! Legacy (2025-xx) client sessions at the gateway: created by `initialize`, named by
//! `Mcp-Session-Id`, ended by DELETE or by idling out. A session owns the messages for its GET
//! stream (`mcp::outbox`) and the server→client requests awaiting its answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::auth::Principal;
use crate::jsonrpc::{code, RpcError};
use crate::telemetry::metrics::{Limit, Metrics};
use crate::upstream::{Caller, SessionKey};

/// Server→client requests awaiting one client's answers at most.
pub const MAX_PENDING_REQUESTS: usize = 64;

/// The group member holding this client's upstream session, in the incarnation that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The group's name.
    pub group: String,
    /// The member's name.
    pub member: String,
    /// The member's lifecycle generation when the session was opened.
    pub generation: u64,
}

/// One legacy client session.
pub struct ClientSession {
    /// The `Mcp-Session-Id`: the session's only credential. It goes to the client and nowhere
    /// else (not to logs, traces, the audit trail or upstreams); those get [`Self::audit_id`].
    pub id: Arc<str>,
    /// A second random id naming the session wherever it is shown or recorded: knowing it does
    /// not let anyone use the session.
    pub audit_id: Arc<str>,
    /// The client's address (HTTP), for the per-client session share.
    client_addr: Option<IpAddr>,
    /// Who opened the session: every later request in it must come from the same principal (a
    /// session id alone does not let another caller in).
    pub principal: Arc<Principal>,
    shared: Arc<Shared>,
    /// Negotiated protocol version.
    pub version: String,
    /// Capabilities the client declared in `initialize`.
    pub capabilities: Value,
    /// The client's `clientInfo`.
    pub client_info: Value,
    /// What a modern upstream is told about the client on each request, rendered once.
    envelope: std::sync::OnceLock<Box<str>>,
    log_level: Mutex<Option<String>>,
    outbox: crate::mcp::outbox::Outbox,
    pending: Mutex<HashMap<i64, oneshot::Sender<Result<Value, RpcError>>>>,
    inflight: Mutex<HashMap<String, oneshot::Sender<()>>>,
    subscriptions: Mutex<std::collections::BTreeSet<String>>,
    pins: Mutex<Vec<Pin>>,
    /// Reply streams, for `Last-Event-ID` resumption.
    pub replies: crate::mcp::replay::ReplayStreams,
    next_request_id: AtomicI64,
    created: Instant,
    last_active_ms: AtomicU64,
}

impl ClientSession {
    fn new(
        id: Arc<str>,
        version: String,
        capabilities: Value,
        client_info: Value,
        principal: Arc<Principal>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            id,
            audit_id: format!("{:016x}", rand::random::<u64>()).into(),
            client_addr: None,
            principal,
            shared,
            version,
            capabilities,
            client_info,
            envelope: std::sync::OnceLock::new(),
            log_level: Mutex::new(None),
            outbox: crate::mcp::outbox::Outbox::default(),
            pending: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(std::collections::BTreeSet::new()),
            pins: Mutex::new(Vec::new()),
            replies: crate::mcp::replay::ReplayStreams::default(),
            next_request_id: AtomicI64::new(1),
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
        }
    }

    /// Notes activity (resets the idle clock).
    pub fn touch(&self) {
        let ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Whether the client declared a capability (`sampling`, `elicitation`, `roots`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.get(name).is_some()
    }

    /// The log level set with `logging/setLevel`.
    pub fn log_level(&self) -> Option<String> {
        self.log_level.lock().clone()
    }

    /// Records `logging/setLevel`.
    pub fn set_log_level(&self, level: &str) {
        {
            let mut g = self.log_level.lock();
            *g = Some(level.to_owned());
        }
    }

    /// The member of `group` this session is pinned to.
    pub fn pin_for(&self, group: &str) -> Option<Pin> {
        self.pins.lock().iter().find(|p| p.group == group).cloned()
    }

    /// Whether the session is pinned to `member` in some group.
    pub fn pinned_to(&self, member: &str) -> bool {
        self.pins.lock().iter().any(|p| p.member == member)
    }

    /// Pins the session to a member of a group (replacing an earlier pin).
    pub fn pin(&self, pin: Pin) {
        {
            let mut pins = self.pins.lock();
            pins.retain(|p| p.group != pin.group);
            pins.push(pin);
        }
    }

    /// Forgets the pin to a member of `group`.
    pub fn unpin(&self, group: &str) {
        {
            let mut pins = self.pins.lock();
            pins.retain(|p| p.group != group);
        }
    }

    /// The members of the `_meta` a modern upstream gets on this client's requests, as JSON text
    /// without braces: what `upstream::remote::with_modern_meta` adds for [`Self::caller`] (the
    /// fast path splices it into the request's bytes).
    pub fn modern_envelope(&self) -> std::borrow::Cow<'_, str> {
        use crate::proto::protocol::meta;
        let fixed = self.envelope.get_or_init(|| {
            let text = |v: &Value| serde_json::to_string(v).unwrap_or_else(|_| "null".into());
            format!(
                r#""{}":"{}","{}":{},"{}":{}"#,
                meta::PROTOCOL_VERSION,
                crate::proto::protocol::MODERN_VERSION,
                meta::CLIENT_CAPABILITIES,
                text(&self.capabilities),
                meta::CLIENT_INFO,
                text(&self.client_info),
            )
            .into()
        });
        match self.log_level.lock().as_deref() {
            None => std::borrow::Cow::Borrowed(fixed),
            Some(level) => std::borrow::Cow::Owned(format!(
                r#"{fixed},"{}":{}"#,
                meta::LOG_LEVEL,
                serde_json::to_string(level).unwrap_or_else(|_| "null".into())
            )),
        }
    }

    /// What upstreams are told about this client.
    pub fn caller(&self) -> Caller {
        Caller {
            session: SessionKey::Client(self.audit_id.clone()),
            capabilities: self.capabilities.clone(),
            client_info: self.client_info.clone(),
            log_level: self.log_level(),
            credential: None,
            owner: None,
        }
    }

    /// Attaches a GET stream, in place of any previous one (which then ends): it reads the
    /// messages kept so far first.
    pub fn attach_stream(self: &Arc<Self>) -> StreamReader {
        StreamReader { number: self.outbox.attach(), session: self.clone() }
    }

    /// Whether a GET stream is attached and still open (an open stream keeps the session alive).
    pub fn has_open_stream(&self) -> bool {
        self.outbox.is_read()
    }

    /// Sends a message to the client outside of any request: to its GET stream, or kept
    /// (boundedly) for the next one.
    pub fn push(&self, message: Bytes) {
        self.outbox.push(message);
    }

    /// Registers a server→client request; returns the id to send it under. Requests whose asker
    /// gave up are forgotten first; `None` (the request answered with an error) when
    /// [`MAX_PENDING_REQUESTS`] still await this client's answers.
    pub fn register_request(&self, respond: oneshot::Sender<Result<Value, RpcError>>) -> Option<i64> {
        let mut pending = self.pending.lock();
        pending.retain(|_, tx| !tx.is_closed());
        if pending.len() >= MAX_PENDING_REQUESTS {
            drop(pending);
            self.shared.metrics.limit_hit(Limit::PendingServerRequests);
            let _ = respond.send(Err(RpcError::new(
                code::INTERNAL_ERROR,
                format!("the client has {MAX_PENDING_REQUESTS} requests unanswered already"),
            )));
            return None;
        }
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        pending.insert(id, respond);
        Some(id)
    }

    /// Delivers the client's answer to request `id`; `false` when nothing awaits it.
    pub fn answer(&self, id: i64, reply: Result<Value, RpcError>) -> bool {
        let waiter = self.pending.lock().remove(&id);
        match waiter {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    /// Records `resources/subscribe` (`true`) or `resources/unsubscribe` (`false`) for `uri`.
    pub fn set_subscribed(&self, uri: &str, on: bool) {
        {
            let mut s = self.subscriptions.lock();
            if on {
                s.insert(uri.to_owned());
            } else {
                s.remove(uri);
            }
        }
    }

    /// The URIs this session subscribed to.
    pub fn resource_subscriptions(&self) -> Vec<String> {
        self.subscriptions.lock().iter().cloned().collect()
    }

    /// Whether this session subscribed to `uri`.
    pub fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().contains(uri)
    }

    /// Tracks a client request in flight (by its id's JSON text) so `notifications/cancelled` can
    /// stop it. Refused when a request with that id is in flight already (the second must not take
    /// the first's place) and when this session, or all sessions together, have their most
    /// requests in flight.
    pub fn track(&self, request_id: &str) -> Result<Tracked, TrackError> {
        let mut m = self.inflight.lock();
        if m.contains_key(request_id) {
            return Err(TrackError::InUse);
        }
        if m.len() >= self.shared.max_requests {
            self.shared.metrics.limit_hit(Limit::LegacyRequests);
            return Err(TrackError::TooMany(format!("this session has {} requests in flight", m.len())));
        }
        if self.shared.in_flight.fetch_add(1, Ordering::AcqRel) >= self.shared.max_total {
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.shared.metrics.limit_hit(Limit::LegacyRequests);
            return Err(TrackError::TooMany(format!("{} legacy requests are in flight", self.shared.max_total)));
        }
        let (tx, rx) = oneshot::channel();
        m.insert(request_id.to_owned(), tx);
        Ok(Tracked { cancelled: rx, shared: self.shared.clone() })
    }

    /// Stops tracking a finished request.
    pub fn untrack(&self, request_id: &str) {
        {
            let mut m = self.inflight.lock();
            m.remove(request_id);
        }
    }

    /// Cancels a tracked request; `false` when none is in flight under that id.
    pub fn cancel(&self, request_id: &str) -> bool {
        let tx = self.inflight.lock().remove(request_id);
        tx.is_some_and(|tx| tx.send(()).is_ok())
    }

    /// Fails every request still awaiting an answer (the session is ending).
    fn fail_pending(&self) {
        let waiters: Vec<_> = self.pending.lock().drain().collect();
        for (_, tx) in waiters {
            let _ = tx.send(Err(RpcError::new(code::INTERNAL_ERROR, "the client session ended")));
        }
    }
}

/// A GET stream's hold on its session: the messages to write, while it is the session's stream.
pub struct StreamReader {
    session: Arc<ClientSession>,
    number: u64,
}

impl StreamReader {
    /// The next message to write, waiting for one; `None` once another stream took this one's
    /// place.
    pub async fn next(&mut self) -> Option<Bytes> {
        self.session.outbox.next(self.number).await
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.session.outbox.detach(self.number);
    }
}

/// Why a request could not be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    /// A request with the same id is in flight.
    #[error("the request id is already in use by a request in flight")]
    InUse,
    /// A bound on requests in flight was reached.
    #[error("too many requests in flight: {0}")]
    TooMany(String),
}

/// A tracked request: `cancelled` fires on `notifications/cancelled`; dropping it frees its place
/// in the gateway-wide count.
pub struct Tracked {
    /// Fires when the client cancels the request.
    pub cancelled: oneshot::Receiver<()>,
    shared: Arc<Shared>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bounds every session of a store shares, and where their hits are counted.
pub struct Shared {
    max_requests: usize,
    max_total: usize,
    in_flight: AtomicUsize,
    /// Counts bounds that bite.
    pub metrics: Arc<Metrics>,
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Too many sessions are open.
    #[error("too many open sessions ({0})")]
    TooMany(usize),
    /// This client address holds its share of sessions already.
    #[error("too many open sessions from this client ({0}); end some (DELETE) or let them expire")]
    TooManyFromClient(usize),
}

/// All legacy client sessions, by id and by audit id, and how many each client address holds.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<Arc<str>, Arc<ClientSession>>,
    by_audit_id: HashMap<Arc<str>, Arc<ClientSession>>,
    per_client: HashMap<IpAddr, usize>,
}

impl Sessions {
    fn take(&mut self, id: &str) -> Option<Arc<ClientSession>> {
        let s = self.by_id.remove(id)?;
        self.by_audit_id.remove(&s.audit_id);
        if let Some(addr) = s.client_addr {
            if let Some(n) = self.per_client.get_mut(&addr) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_client.remove(&addr);
                }
            }
        }
        Some(s)
    }
}

/// All legacy client sessions.
pub struct SessionStore {
    sessions: Mutex<Sessions>,
    max: usize,
    max_per_client: usize,
    shared: Arc<Shared>,
}

impl SessionStore {
    /// A store holding at most `limits.max_sessions` sessions, `limits.max_sessions_per_client`
    /// from one client address, and their requests in flight within the limits' bounds.
    pub fn new(limits: &hangar_config::Limits, metrics: Arc<Metrics>) -> Self {
        let shared = Shared {
            max_requests: limits.max_requests_per_session,
            max_total: limits.max_legacy_requests,
            in_flight: AtomicUsize::new(0),
            metrics,
        };
        Self {
            sessions: Mutex::new(Sessions::default()),
            max: limits.max_sessions,
            max_per_client: limits.max_sessions_per_client,
            shared: Arc::new(shared),
        }
    }

    /// Creates a session with a fresh random id for a client at `client_addr` (`None`: the
    /// local stdio client, which has no share to exceed).
    pub fn create(
        &self,
        version: String,
        capabilities: Value,
        client_info: Value,
        client_addr: Option<IpAddr>,
        principal: Arc<Principal>,
    ) -> Result<Arc<ClientSession>, SessionError> {
        let id: Arc<str> = format!("{:032x}", rand::random::<u128>()).into();
        let mut session =
            ClientSession::new(id.clone(), version, capabilities, client_info, principal, self.shared.clone());
        session.client_addr = client_addr;
        let session = Arc::new(session);
        session.touch();
        let mut map = self.sessions.lock();
        if map.by_id.len() >= self.max {
            self.shared.metrics.limit_hit(Limit::Sessions);
            return Err(SessionError::TooMany(self.max));
        }
        if let Some(addr) = client_addr {
            let held = map.per_client.entry(addr).or_insert(0);
            if *held >= self.max_per_client {
                self.shared.metrics.limit_hit(Limit::Sessions);
                return Err(SessionError::TooManyFromClient(self.max_per_client));
            }
            *held += 1;
        }
        map.by_audit_id.insert(session.audit_id.clone(), session.clone());
        map.by_id.insert(id, session.clone());
        Ok(session)
    }

    /// The session called `id`, noting activity.
    pub fn get(&self, id: &str) -> Option<Arc<ClientSession>> {
        let s = self.sessions.lock().by_id.get(id).cloned()?;
        s.touch();
        Some(s)
    }

    /// The session whose audit id is `audit_id` (upstream sessions are keyed by it), without
    /// noting activity: a message from an upstream is not the client being active.
    pub fn by_audit_id(&self, audit_id: &str) -> Option<Arc<ClientSession>> {
        self.sessions.lock().by_audit_id.get(audit_id).cloned()
    }

    /// Removes and returns the session, failing its pending requests and ending its GET stream.
    pub fn remove(&self, id: &str) -> Option<Arc<ClientSession>> {
        let s = self.sessions.lock().take(id)?;
        s.fail_pending();
        s.outbox.close();
        Some(s)
    }

    /// Removes sessions idle for longer than `ttl` and returns them (to close upstream sessions).
    pub fn expire(&self, ttl: Duration) -> Vec<Arc<ClientSession>> {
        let mut map = self.sessions.lock();
        let stale: Vec<Arc<str>> = map
            .by_id
            .iter()
            .filter(|(_, s)| s.idle_for() > ttl && !s.has_open_stream())
            .map(|(k, _)| k.clone())
            .collect();
        let out: Vec<_> = stale.iter().filter_map(|k| map.take(k)).collect();
        drop(map);
        out.iter().for_each(|s| s.fail_pending());
        out
    }

    /// Every session (to broadcast list changes).
    pub fn all(&self) -> Vec<Arc<ClientSession>> {
        self.sessions.lock().by_id.values().cloned().collect()
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().by_id.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: usize, per_client: usize) -> SessionStore {
        let limits =
            hangar_config::Limits { max_sessions: max, max_sessions_per_client: per_client, ..Default::default() };
        SessionStore::new(&limits, Arc::default())
    }

    #[test]
    fn sessions_are_created_found_and_removed() {
        let store = store(2, 2);
        let a = store
            .create("2025-11-25".into(), serde_json::json!({"sampling": {}}), Value::Null, None, Principal::local())
            .expect("a");
        assert_eq!(a.id.len(), 32);
        assert_ne!(a.audit_id, a.id, "the audit id is not the credential");
        assert!(a.has_capability("sampling") && !a.has_capability("roots"));
        let _b = store.create("2025-11-25".into(), Value::Null, Value::Null, None, Principal::local()).expect("b");
        assert!(matches!(
            store.create("x".into(), Value::Null, Value::Null, None, Principal::local()),
            Err(SessionError::TooMany(2))
        ));
        assert!(store.get(&a.id).is_some());
        assert!(store.get(&a.audit_id).is_none(), "the audit id does not open the session");
        assert!(store.by_audit_id(&a.audit_id).is_some());
        assert!(store.remove(&a.id).is_some());
        assert!(store.get(&a.id).is_none());
        assert!(store.by_audit_id(&a.audit_id).is_none());
    }

    #[test]
    fn the_modern_envelope_is_what_a_modern_upstream_is_told() {
        let store = store(2, 2);
        let caps = serde_json::json!({"roots": {"listChanged": true}});
        let info = serde_json::json!({"name": "c\"1", "version": "2"});
        let s = store.create("2025-11-25".into(), caps, info, None, Principal::local()).expect("s");
        let told = |s: &ClientSession| {
            let text = format!("{{{}}}", s.modern_envelope());
            serde_json::from_str::<Value>(&text).expect("JSON")
        };
        let want = |s: &ClientSession| crate::upstream::remote::with_modern_meta(serde_json::json!({}), &s.caller());
        assert_eq!(told(&s), want(&s)["_meta"]);
        s.set_log_level("warning");
        assert_eq!(told(&s), want(&s)["_meta"], "the log level set since");
        assert_eq!(told(&s)[crate::proto::protocol::meta::LOG_LEVEL], "warning");
    }

    #[test]
    fn one_client_address_gets_its_share_only() {
        let store = store(10, 2);
        let (one, two): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        let new = |addr| store.create("2025-11-25".into(), Value::Null, Value::Null, Some(addr), Principal::local());
        let first = new(one).expect("1st");
        new(one).expect("2nd");
        assert!(matches!(new(one), Err(SessionError::TooManyFromClient(2))));
        new(two).expect("another client is not affected");
        store.remove(&first.id);
        new(one).expect("a freed share can be used again");
    }

    #[test]
    fn pending_requests_get_answers_or_fail_on_end() {
        let store = store(8, 8);
        let s = store.create("2025-11-25".into(), Value::Null, Value::Null, None, Principal::local()).expect("s");
        let (tx, mut rx) = oneshot::channel();
        let id = s.register_request(tx).expect("registered");
        assert!(s.answer(id, Ok(serde_json::json!({"ok": true}))));
        assert_eq!(rx.try_recv().expect("answered"), Ok(serde_json::json!({"ok": true})));
        assert!(!s.answer(id, Ok(Value::Null)), "answered only once");
        let (tx, mut rx) = oneshot::channel();
        s.register_request(tx);
        store.remove(&s.id);
        assert!(rx.try_recv().expect("failed").is_err());
    }

    #[test]
    fn unanswered_server_requests_are_bounded_and_abandoned_ones_forgotten() {
        let store = store(8, 8);
        let s = store.create("2025-11-25".into(), Value::Null, Value::Null, None, Principal::local()).expect("s");
        let mut waiting = Vec::new();
        for _ in 0..MAX_PENDING_REQUESTS {
            let (tx, rx) = oneshot::channel();
            assert!(s.register_request(tx).is_some());
            waiting.push(rx);
        }
        let (tx, mut refused) = oneshot::channel();
        assert_eq!(s.register_request(tx), None, "full");
        assert!(refused.try_recv().expect("answered at once").is_err());
        waiting.truncate(MAX_PENDING_REQUESTS / 2); // the others' askers gave up
        let (tx, _rx) = oneshot::channel();
        assert!(s.register_request(tx).is_some(), "abandoned requests no longer count");
    }

    #[tokio::test]
    async fn messages_wait_for_the_get_stream_which_keeps_the_session() {
        let store = store(8, 8);
        let s = store.create("2025-11-25".into(), Value::Null, Value::Null, None, Principal::local()).expect("s");
        s.push(Bytes::from("kept"));
        assert!(!s.has_open_stream());
        let mut reader = s.attach_stream();
        assert!(s.has_open_stream());
        assert_eq!(reader.next().await, Some(Bytes::from("kept")));
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.expire(Duration::from_millis(1)).is_empty(), "an open stream keeps an idle session");
        drop(reader);
        assert!(!s.has_open_stream());
        assert_eq!(store.expire(Duration::from_millis(1)).len(), 1);
    }

    #[test]
    fn idle_sessions_expire() {
        let store = store(8, 8);
        let s = store.create("2025-11-25".into(), Value::Null, Value::Null, None, Principal::local()).expect("s");
        assert!(store.expire(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(5));
        let gone = store.expire(Duration::from_millis(1));
        assert_eq!(gone.len(), 1);
        assert!(store.get(&s.id).is_none());
    }
}
