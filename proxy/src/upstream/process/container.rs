//! Container providers (`mode: container`, alias `docker`), through the Docker Engine API
//! (bollard): Docker itself or Podman's Docker-compatible socket, found from `DOCKER_HOST` or the
//! default socket. The server speaks MCP on the container's attached stdio.
//!
//! Defaults keep it contained: no network, a read-only root filesystem, no new privileges, every
//! capability dropped. The container carries the gateway's labels and is stopped and removed when
//! it is collected, stopped, or the gateway shuts down.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use hangar_config::Container;
use tokio::io::AsyncWriteExt;

use super::{Launched, Launcher, Running};
use crate::upstream::CallError;

/// Label marking a container as started by MCP Hangar.
pub const LABEL_MANAGED: &str = "io.mcp-hangar.managed";
/// Label naming the provider a container serves.
pub const LABEL_PROVIDER: &str = "io.mcp-hangar.provider";
/// Seconds the engine waits after SIGTERM before SIGKILL when stopping a container.
const STOP_TIMEOUT_S: i32 = 2;
/// Buffer between the attach stream and the protocol reader.
const PIPE_BYTES: usize = 256 * 1024;

/// Starts a container.
pub struct ContainerLauncher {
    /// The provider's container settings (environment values may be secrets: never logged).
    pub spec: Container,
}

fn unavailable(reason: String) -> CallError {
    CallError::Unavailable { reason, never_sent: true }
}

impl ContainerLauncher {
    fn body(&self, provider: &str) -> ContainerCreateBody {
        let s = &self.spec;
        let mut binds = Vec::with_capacity(s.volumes.len());
        for v in &s.volumes {
            binds.push(format!("{}:{}:{}", v.host, v.container, if v.read_only { "ro" } else { "rw" }));
        }
        ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: (!s.command.is_empty()).then(|| s.command.clone()),
            env: Some(s.env.iter().map(|(k, v)| format!("{k}={}", v.expose())).collect()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            // Our one attachment closing is the container's stdin EOF: the polite stop request.
            stdin_once: Some(true),
            tty: Some(false),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_PROVIDER.to_owned(), provider.to_owned()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(s.network.clone()),
                readonly_rootfs: Some(s.read_only),
                binds: (!binds.is_empty()).then_some(binds),
                memory: s.memory_bytes.and_then(|m| i64::try_from(m).ok()),
                nano_cpus: s.cpus.map(|c| (c * 1e9) as i64),
                cap_drop: Some(vec!["ALL".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[async_trait]
impl Launcher for ContainerLauncher {
    async fn launch(&self, provider: &str) -> Result<Launched, CallError> {
        let docker = Docker::connect_with_defaults().map_err(|e| {
            unavailable(format!("cannot reach the container engine (DOCKER_HOST or the default socket): {e}"))
        })?;
        let image = &self.spec.image;
        let options = || {
            CreateContainerOptionsBuilder::default()
                .name(&format!("mcp-hangar-{provider}-{:08x}", rand::random::<u32>()))
                .build()
        };
        let created = match docker.create_container(Some(options()), self.body(provider)).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => {
                pull(&docker, image).await?;
                docker
                    .create_container(Some(options()), self.body(provider))
                    .await
                    .map_err(|e| unavailable(format!("cannot create a container from {image}: {e}")))?
            }
            Err(e) => return Err(unavailable(format!("cannot create a container from {image}: {e}"))),
        };
        let id = created.id;
        let handle = RunningContainer { docker: docker.clone(), id: id.clone() };
        let attach_options =
            AttachContainerOptionsBuilder::default().stdin(true).stdout(true).stderr(true).stream(true).build();
        let attached = match docker.attach_container(&id, Some(attach_options)).await {
            Ok(a) => a,
            Err(e) => {
                handle.remove().await;
                return Err(unavailable(format!("cannot attach to container {}: {e}", short(&id))));
            }
        };
        if let Err(e) = docker.start_container(&id, None).await {
            handle.remove().await;
            return Err(unavailable(format!("cannot start container {}: {e}", short(&id))));
        }
        // One attach stream carries stdout and stderr frames: split them into two pipes so the
        // protocol reader and the log reader stay the ones subprocesses use.
        let (mut out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
        let (mut err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
        let mut output = attached.output;
        tokio::spawn(async move {
            while let Some(Ok(frame)) = output.next().await {
                let written = match frame {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => out_w.write_all(&message).await,
                    LogOutput::StdErr { message } => err_w.write_all(&message).await,
                    LogOutput::StdIn { .. } => Ok(()),
                };
                if written.is_err() {
                    break;
                }
            }
        });
        Ok(Launched {
            stdin: attached.input,
            stdout: Box::pin(out_r),
            stderr: Box::pin(err_r),
            pid: None,
            label: format!("container {}", short(&id)),
            handle: Box::new(handle),
        })
    }
}

/// Pulls `image` when it is not present (there may be no registry to pull from: say so).
async fn pull(docker: &Docker, image: &str) -> Result<(), CallError> {
    let options = CreateImageOptionsBuilder::default().from_image(image).build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        if let Err(e) = step {
            return Err(unavailable(format!("image {image} is not present and cannot be pulled: {e}")));
        }
    }
    Ok(())
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// The short form of a container id, as `docker ps` shows it. The id comes from the engine, so
/// it is cut at a character, never inside one.
fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

/// A container started for a provider.
struct RunningContainer {
    docker: Docker,
    id: String,
}

impl RunningContainer {
    async fn remove(&self) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = self.docker.remove_container(&self.id, Some(options)).await {
            if !is_not_found(&e) {
                tracing::warn!("cannot remove container {}: {e}", short(&self.id));
            }
        }
    }
}

#[async_trait]
impl Running for RunningContainer {
    async fn exit_status(&mut self) -> Option<String> {
        let inspected = self.docker.inspect_container(&self.id, None).await.ok()?;
        let state = inspected.state?;
        if state.running == Some(true) {
            return None;
        }
        Some(format!("exit status: {}", state.exit_code.unwrap_or(-1)))
    }

    async fn stop(&mut self) {
        let options = StopContainerOptionsBuilder::default().t(STOP_TIMEOUT_S).build();
        if let Err(e) = self.docker.stop_container(&self.id, Some(options)).await {
            tracing::debug!("stopping container {}: {e}", short(&self.id));
        }
        self.remove().await;
    }
}
