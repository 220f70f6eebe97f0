//! Subprocess providers (`mode: subprocess`): the server is a child process in its own process
//! group, so stopping it (SIGTERM, then SIGKILL, to the group) stops whatever it started too.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::{Child, Command};

use super::{Launched, Launcher, Running};
use crate::upstream::CallError;

/// Graceful stop: wait this long after stdin closed, then after SIGTERM, before SIGKILL.
const STOP_STEP: Duration = Duration::from_secs(2);

/// Starts a local process.
pub struct LocalLauncher {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment (values may be secrets: never logged).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
}

#[async_trait]
impl Launcher for LocalLauncher {
    async fn launch(&self, _name: &str) -> Result<Launched, CallError> {
        let unavailable = |reason: String| CallError::Unavailable { reason, never_sent: true };
        let (program, args) = self.command.split_first().ok_or_else(|| unavailable("empty command".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| unavailable(format!("cannot start {program:?}: {e}")))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(unavailable("process has no stdio pipes".into()));
        };
        Ok(Launched {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            pid,
            label: format!("process {}", pid.unwrap_or_default()),
            handle: Box::new(LocalProcess {
                child,
                pgid: pid.and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw),
            }),
        })
    }
}

struct LocalProcess {
    child: Child,
    pgid: Option<nix::unistd::Pid>,
}

impl LocalProcess {
    fn signal_group(&self, signal: nix::sys::signal::Signal) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(pgid, signal);
        }
    }
}

/// How long a failed start waits for the process's exit status.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);

#[async_trait]
impl Running for LocalProcess {
    async fn exit_status(&mut self) -> Option<String> {
        // Its stdout may close a moment before its exit is reported: wait a little for it.
        match tokio::time::timeout(EXIT_STATUS_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    async fn stop(&mut self) {
        if tokio::time::timeout(STOP_STEP, self.child.wait()).await.is_err() {
            self.signal_group(nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(STOP_STEP, self.child.wait()).await.is_err() {
                self.signal_group(nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.wait().await;
            }
        }
        // Whatever the leader did, leave no member of its group behind.
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
    }
}
