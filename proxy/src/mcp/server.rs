//! The gateway's MCP server as a whole: the shared gateway state plus what it holds for its MCP
//! clients (legacy sessions, `subscriptions/listen` streams, calls parked for MRTR answers). The
//! state below knows nothing of these; upstreams reach clients through [`Fanout`].

use std::sync::Arc;
use std::time::Duration;

use crate::mcp::bridge::ParkedCalls;
use crate::mcp::fanout::Fanout;
use crate::mcp::session::SessionStore;
use crate::mcp::subscriptions::Listeners;
use crate::state::reconcile::Start;
use crate::state::{AppState, Observability, StartError};

/// What every front door serves from.
pub struct McpServer {
    /// Snapshots, runtimes, telemetry, lifecycle of the process.
    pub state: Arc<AppState>,
    /// Legacy client sessions.
    pub sessions: SessionStore,
    /// Open `subscriptions/listen` streams.
    pub listeners: Arc<Listeners>,
    /// Calls to legacy upstreams parked while a modern client answers their questions (MRTR).
    pub parked: ParkedCalls,
}

impl McpServer {
    /// The server for `start`, with its audit trail and trace export set up as configured.
    pub fn open(start: Start) -> Result<Arc<Self>, StartError> {
        let observability = Observability::open(start.config())?;
        Ok(Arc::new_cyclic(|weak| {
            let state = AppState::build(start, observability, Arc::new(Fanout(weak.clone())));
            let sessions = SessionStore::new(&state.snapshot().config.server.limits, state.metrics.clone());
            Self { state, sessions, listeners: Arc::default(), parked: ParkedCalls::default() }
        }))
    }

    /// Ends legacy sessions idle for longer than `server.limits.session_idle_timeout`, until
    /// shutdown.
    pub async fn sweep_sessions(self: Arc<Self>) {
        let mut shutdown = self.state.shutdown_signal();
        loop {
            let ttl = self.state.snapshot().config.server.limits.session_idle_timeout;
            let every = (ttl / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            for client in self.sessions.expire(ttl) {
                tracing::debug!(session = %client.audit_id, "legacy session expired");
                crate::mcp::hub::end_session(&self.state, &client);
            }
        }
    }
}
