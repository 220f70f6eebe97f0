//! Start-up and shutdown: builds the tokio runtime, binds the listener, runs the Pingora HTTP
//! service, and on SIGTERM/SIGINT stops accepting, drains in-flight requests, then exits.
//!
//! The service is driven directly rather than through `pingora::server::Server::run`, because that
//! sleeps a fixed grace period on every shutdown and panics when the port is taken; here the socket
//! is bound first (a clear error) and handed to Pingora through its inherited-fd table.

use std::os::fd::IntoRawFd;
use std::sync::Arc;

use anyhow::Context as _;
use parking_lot::Mutex;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::server::Fds;
use pingora_core::services::listening::Service;
use pingora_core::services::Service as _;
use tokio::sync::watch;

use crate::front::connection::ConnectionGate;
use crate::front::http::HttpFront;
use crate::mcp::server::McpServer;
use crate::state::reconcile::Start;
use crate::state::{AppState, Phase};

/// Serves streamable HTTP until SIGTERM or SIGINT, then shuts down gracefully. The
/// configuration reloads on SIGHUP, the reload tool and (when `config_reload` says so) changes
/// to its files.
pub fn run_http(start: Start) -> anyhow::Result<()> {
    run(serve_http(start))
}

/// Runs `main` to its end on a new multi-threaded runtime, then leaves. Everything that matters
/// was stopped and flushed by then: a blocking task still running (a DNS lookup, a read of stdin)
/// must not keep the process alive after "shutdown complete".
fn run(main: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime =
        scheduler().enable_all().thread_name("hangar-worker").build().context("cannot start the async runtime")?;
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(EXIT_WAIT);
    result
}

/// The scheduler for the cores the process may run on: with one, a single-threaded one (the
/// multi-threaded scheduler's single worker would still pay for its run queues' atomics, its
/// idle bookkeeping and its busy-time clock reads on every turn).
fn scheduler() -> tokio::runtime::Builder {
    match std::thread::available_parallelism() {
        Ok(cores) if cores.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// How long the process waits at exit for tasks still running after the shutdown completed.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

async fn serve_http(start: Start) -> anyhow::Result<()> {
    // Pingora's own timeouts (its HTTP session's reads and writes, the TLS handshake) run on a
    // timer thread that, once started, wakes every 10 ms for the life of the process, busy or
    // idle. From a second up they are tokio's timers instead, which wake only when one is due.
    pingora_timeout::fast_timeout::set_fast_timeout_to_tokio_threshold(Some(std::time::Duration::ZERO));
    let config = start.config();
    let addr = listen_address(&config.server.host, config.server.port);
    let shutdown_timeout = config.server.limits.shutdown_timeout;
    let listener = std::net::TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true).context("cannot configure the listening socket")?;
    let local = listener.local_addr().map_or_else(|_| addr.clone(), |a| a.to_string());

    let open_files = crate::front::connection::raise_open_files_limit();
    let max_connections = ConnectionGate::cap(config.server.limits.max_connections, open_files);
    // Read before anything starts: a certificate that cannot be used fails the start.
    let certificate = config.server.tls.as_ref().map(crate::front::tls::Certificate::load).transpose()?;
    let server = McpServer::open(start)?;
    let state = server.state.clone();
    let front = HttpFront::new(server.clone(), max_connections);
    let (stop_accepting, stop_rx) = watch::channel(false);
    let (scheme, mut service_task) = match certificate {
        // TLS on Pingora's listener and stream.
        Some(certificate) => {
            let mut service = Service::new("mcp-hangar".to_string(), front);
            let mut settings = TlsSettings::intermediate("", "").context("cannot set up TLS")?;
            settings.set_cert_resolver(certificate.clone());
            // No read buffer under the HTTP session's own (Pingora's default is 64 KiB per
            // connection, which 10 000 idle streams turn into 640 MiB, and a copy per read); a
            // small write buffer so a response's header and body leave in one segment.
            let listener_config = ListenerConfig::tcp(addr.clone())
                .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
                .tls(settings);
            service.add_listener(listener_config);
            tokio::spawn(certificate.watch());
            let mut fds = Fds::new();
            fds.add(addr.clone(), listener.into_raw_fd());
            let task = tokio::spawn(async move {
                service.start_service(Some(Arc::new(Mutex::new(fds))), stop_rx, 1).await;
            });
            ("https", task)
        }
        // Plain TCP on the gateway's own accept loop (`front::plain`).
        None => {
            let listener =
                crate::front::plain::listener(listener).with_context(|| format!("cannot listen on {addr}"))?;
            ("http", tokio::spawn(crate::front::plain::accept_loop(listener, Arc::new(front), stop_rx)))
        }
    };

    tokio::spawn(server.clone().sweep_sessions());
    tokio::spawn(crate::lifecycle::services::run(state.clone()));
    tokio::spawn(crate::telemetry::recent::run(state.clone()));
    tokio::spawn(reload_on_sighup(state.clone()));
    tokio::spawn(crate::state::watcher::start(state.clone()));
    crate::discovery::sync(&state);
    let signals = ShutdownSignals::install();
    state.set_phase(Phase::Ready);
    let snap = state.snapshot();
    tracing::info!("listening on {scheme}://{local}{} (health: /health/ready)", snap.config.server.mcp_path);
    drop(snap);

    let signal = signals.recv().await;
    tracing::info!("{signal} received: draining in-flight requests (up to {shutdown_timeout:?})");
    // Draining: /health/ready and new MCP requests answer 503 while the listener stays open, so a
    // load balancer sees the drain rather than refused connections; long-lived streams end.
    state.set_phase(Phase::Draining);
    let left = state.drain(shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("{left} request(s) still in flight after {shutdown_timeout:?}; closing them");
    }
    let _ = stop_accepting.send(true);
    // The listener stops within a moment; idle keep-alive connections close with it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), &mut service_task).await;
    service_task.abort();
    stop_providers(&state).await;
    flush_telemetry(&state).await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Writes out and syncs the audit trail (after the providers' last events) and exports the
/// spans still queued.
async fn flush_telemetry(state: &Arc<AppState>) {
    let state = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        state.audit.close();
        state.traces.shutdown();
    })
    .await;
}

/// Reloads the configuration on each SIGHUP, until shutdown.
///
/// The handler is installed before this returns the task (a SIGHUP right after start must not
/// take SIGHUP's default action, which ends the process).
fn reload_on_sighup(state: Arc<AppState>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup());
    async move {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot install the SIGHUP handler; reload with the registry_reload tool");
            return;
        };
        follow_sighup(&state, &mut hup).await;
    }
}

async fn follow_sighup(state: &Arc<AppState>, hup: &mut tokio::signal::unix::Signal) {
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration");
                let _ = state.reconciler.reload(state, "SIGHUP", true).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Stops every provider the gateway started (processes, containers), those a reload retired
/// and that are still draining included.
async fn stop_providers(state: &AppState) {
    let mut upstreams = state.snapshot().routes.all_upstreams();
    upstreams.extend(state.reconciler.draining().iter().filter_map(|r| r.upstream()));
    futures_util::future::join_all(upstreams.iter().map(|u| u.stop(crate::lifecycle::Cause::Stopped))).await;
}

/// Serves MCP on stdin/stdout for desktop clients until stdin closes or SIGTERM/SIGINT, then
/// stops the providers.
pub fn run_stdio(start: Start) -> anyhow::Result<()> {
    run(async {
        let server = McpServer::open(start)?;
        let state = server.state.clone();
        tokio::spawn(crate::lifecycle::services::run(state.clone()));
        tokio::spawn(crate::telemetry::recent::run(state.clone()));
        tokio::spawn(reload_on_sighup(state.clone()));
        tokio::spawn(crate::state::watcher::start(state.clone()));
        crate::discovery::sync(&state);
        let signals = ShutdownSignals::install();
        state.set_phase(Phase::Ready);
        tracing::info!("serving MCP on stdio");
        crate::front::stdio::serve(server, async {
            let signal = signals.recv().await;
            tracing::info!("{signal} received");
        })
        .await;
        state.set_phase(Phase::Draining);
        stop_providers(&state).await;
        flush_telemetry(&state).await;
        tracing::info!("shutdown complete");
        Ok(())
    })
}

/// `host:port`, bracketing IPv6 addresses.
fn listen_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// SIGTERM and SIGINT, listened for from the moment this is made: a signal that comes before the
/// gateway waits for it (just after it said it is serving) is neither lost nor the default
/// action's abrupt exit.
struct ShutdownSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl ShutdownSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            _ => {
                tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
                Self(None)
            }
        }
    }

    /// Resolves on the first of them, naming it.
    async fn recv(self) -> &'static str {
        let Some((mut term, mut int)) = self.0 else { return std::future::pending().await };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
