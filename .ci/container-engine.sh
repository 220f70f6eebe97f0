#!/usr/bin/env bash
# Starts a Docker-compatible container engine (podman's API service) and builds the image the
# container-provider tests use, FROM scratch with the static hangar-upstream binary (no registry is
# needed). Prints the environment the tests need; exits non-zero if the engine cannot run here.
#   .ci/container-engine.sh start DIR   -> prints DOCKER_HOST=... and HANGAR_CONTAINER_IMAGE=...
#   .ci/container-engine.sh stop DIR
# Notes: crun refuses some VMs' hybrid cgroup layout, so runc is configured; default rlimits are set
# lower with soft == hard (root may lack CAP_SYS_RESOURCE).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
case $cmd in
start)
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -q >/dev/null
    $sudo_cmd apt-get install -y -q --no-install-recommends podman runc conmon netavark aardvark-dns \
      containernetworking-plugins iptables uidmap catatonit >/dev/null
  fi
  if [ ! -f /etc/containers/containers.conf ] || ! grep -q 'runtime = "runc"' /etc/containers/containers.conf; then
    mkdir -p /etc/containers
    cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  fi
  sock="$dir/podman.sock"
  if ! curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
    podman system service --time=0 "unix://$sock" >"$dir/service.log" 2>&1 &
    echo $! >"$dir/service.pid"
    for _ in $(seq 100); do curl -sf --unix-socket "$sock" http://d/_ping >/dev/null && break; sleep 0.1; done
  fi
  curl -sf --unix-socket "$sock" http://d/_ping >/dev/null || { cat "$dir/service.log" >&2; exit 1; }
  # Containers of the test image left by an earlier run that was killed mid-test (so its cleanup
  # never ran) would be discovered by this run's label-discovery tests as extra providers.
  podman ps -aq --filter ancestor=localhost/hangar-upstream:test | xargs -r podman rm -f -t 0 >/dev/null
  # The test image: the static tiny MCP server, nothing else.
  (cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release --locked \
     -p hangar-upstream --target x86_64-unknown-linux-gnu --target-dir target/static)
  ctx="$dir/image"
  mkdir -p "$ctx"
  cp "$root/target/static/x86_64-unknown-linux-gnu/release/hangar-upstream" "$ctx/app"
  printf 'FROM scratch\nCOPY app /app\nENTRYPOINT ["/app", "stdio"]\n' > "$ctx/Containerfile"
  podman build -q -t localhost/hangar-upstream:test "$ctx" >/dev/null
  echo "DOCKER_HOST=unix://$sock"
  echo "HANGAR_CONTAINER_IMAGE=localhost/hangar-upstream:test"
  ;;
stop)
  [ -f "$dir/service.pid" ] && kill "$(cat "$dir/service.pid")" 2>/dev/null || true
  rm -f "$dir/service.pid"
  ;;
esac
