//! Upstream sessions leased to one call at a time, for modern (sessionless) callers of a legacy
//! upstream. A legacy server may ask its client something (sampling, elicitation, roots) on the
//! session's standalone GET stream without naming the call it belongs to; on a session that
//! carries exactly one call, whatever arrives on that stream belongs to that call, so it is
//! relayed to it (and becomes an MRTR `input_required` round for a modern client). The shared
//! session cannot tell its many calls apart.
//!
//! Sessions are kept in a small per-provider pool, so the `initialize` handshake is paid once per
//! concurrent call slot, not per call: a lease takes an idle session (or opens one, up to
//! [`MAX_LEASED`]), and the call's end returns it. An idle session is reused only for calls of the
//! same principal from a client with the same identity and capabilities (a legacy server may keep
//! what a client told it — roots, log level — in the session). Beyond that many calls at once, a
//! call uses the shared session, as before.

use std::sync::Arc;

use serde_json::json;

use super::session::LegacySession;
use super::{message_bytes, Extra, Inner};
use crate::upstream::{gateway_capabilities, CallError, Caller, Events};

/// Most sessions leased out or idle at once, per provider.
pub(super) const MAX_LEASED: usize = 64;
/// Most idle sessions kept for the next calls; more are closed when returned.
const MAX_IDLE: usize = 8;

/// The pool of one upstream.
#[derive(Default)]
pub(super) struct LeasePool {
    /// Idle sessions, with whose calls they carried (and may carry again): principal, client
    /// capabilities and identity.
    idle: Vec<(Arc<str>, Arc<LegacySession>)>,
    /// Leased out plus idle.
    open: usize,
    /// Bumped when the upstream stops: sessions of an earlier epoch are closed, not returned.
    epoch: u64,
}

/// A session leased to one call; returned to the pool when dropped.
pub(super) struct Lease {
    inner: Arc<Inner>,
    pub(super) session: Arc<LegacySession>,
    owner: Arc<str>,
    epoch: u64,
    /// The upstream forgot the session: it is not returned.
    expired: bool,
}

impl Lease {
    /// Marks the session as one the upstream no longer knows.
    pub(super) fn expire(&mut self) {
        self.expired = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.session.call.lock() = None;
        let keep = {
            let mut pool = self.inner.leases.lock();
            let keep = !self.expired && pool.epoch == self.epoch && pool.idle.len() < MAX_IDLE;
            if keep {
                pool.idle.push((self.owner.clone(), self.session.clone()));
            } else {
                pool.open = pool.open.saturating_sub(1);
            }
            keep
        };
        if !keep && !self.expired {
            let (inner, session) = (self.inner.clone(), self.session.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { inner.delete_session(&session).await });
            }
        }
    }
}

impl Inner {
    /// A session for `caller`'s call of `method`, carrying the call's `events`; `None` when the
    /// pool is full (the call then uses the shared session). The session's log level is made the
    /// caller's first, where the upstream has logging.
    pub(super) async fn lease(self: &Arc<Self>, caller: &Caller, events: &Events) -> Result<Option<Lease>, CallError> {
        // Reused only for the same principal's client declaring the same capabilities: a legacy
        // server may have asked the previous holder for its roots when the session opened and
        // kept them.
        let owner: Arc<str> =
            format!("{}\u{0}{}\u{0}{}", caller.owner.as_deref().unwrap_or(""), caller.capabilities, caller.client_info)
                .into();
        let (idle, epoch) = {
            let mut pool = self.leases.lock();
            if let Some(i) = pool.idle.iter().rposition(|(o, _)| *o == owner) {
                (Some(pool.idle.remove(i).1), pool.epoch)
            } else {
                if pool.open >= MAX_LEASED && !pool.idle.is_empty() {
                    // At the cap: another principal's idle session makes room.
                    let (_, old) = pool.idle.remove(0);
                    pool.open -= 1;
                    let inner = self.clone();
                    tokio::spawn(async move { inner.delete_session(&old).await });
                }
                if pool.open >= MAX_LEASED {
                    return Ok(None);
                }
                pool.open += 1;
                (None, pool.epoch)
            }
        };
        let session = match idle {
            Some(s) => s,
            // Opened with every capability the gateway can bridge: the session serves many
            // callers in turn, and each request it makes is checked against the caller's own.
            None => match self
                .initialize(&Caller { capabilities: gateway_capabilities(), ..caller.clone() }, events.clone())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    let mut pool = self.leases.lock();
                    pool.open = pool.open.saturating_sub(1);
                    return Err(e);
                }
            },
        };
        *session.call.lock() = events.clone();
        let lease = Lease { inner: self.clone(), session, owner, epoch, expired: false };
        self.set_session_level(&lease.session, caller.log_level.as_deref()).await;
        Ok(Some(lease))
    }

    /// Tells a leased session the caller's log level when it differs from the one it has.
    async fn set_session_level(self: &Arc<Self>, session: &Arc<LegacySession>, level: Option<&str>) {
        let Some(level) = level else { return };
        let logs = self.info.load().as_ref().is_some_and(|i| i.capabilities.get("logging").is_some());
        if !logs || session.log_level.lock().as_deref() == Some(level) {
            return;
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = message_bytes(Some(id), "logging/setLevel", &json!({"level": level}));
        match self.post(Some(session), "logging/setLevel", Extra::default(), body).await {
            Ok(resp) => {
                resp.release().await;
                *session.log_level.lock() = Some(level.to_owned());
            }
            Err(e) => tracing::debug!(provider = %self.name, "setting a leased session's log level failed: {e}"),
        }
    }

    /// Closes every idle leased session, and makes those leased out close when returned.
    pub(super) async fn close_leases(&self) {
        let idle = {
            let mut pool = self.leases.lock();
            pool.epoch += 1;
            pool.open = pool.open.saturating_sub(pool.idle.len());
            std::mem::take(&mut pool.idle)
        };
        for (_, session) in idle {
            self.delete_session(&session).await;
        }
    }

    /// Sessions leased out or idle now.
    pub(super) fn leased(&self) -> usize {
        self.leases.lock().open
    }
}
