#!/usr/bin/env bash
# Builds, without any registry, the two images the Dockerfile's runtime stage can be given in place
# of its defaults, so CI builds and runs the real runtime stage:
#   localhost/hangar-runtime-base:test  what distroless/cc provides: the binary's shared libraries
#                                       from this machine, CA certificates, a user 65532; no shell
#   localhost/hangar-binary:test        BINARY's /out/mcp-hangar
#   .ci/runtime-base.sh BINARY WORKDIR
set -euo pipefail
bin=${1:?path of the mcp-hangar binary}; dir=${2:?work directory}
rm -rf "$dir"; mkdir -p "$dir/base/rootfs/etc/ssl/certs" "$dir/base/rootfs/tmp" "$dir/binary"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$dir/base/rootfs$(dirname "$lib")"
  cp -L "$lib" "$dir/base/rootfs$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$dir/base/rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$dir/base/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$dir/base/rootfs/etc/group"
chmod 1777 "$dir/base/rootfs/tmp"
printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65532:65532\n' > "$dir/base/Containerfile"
podman build -q -t localhost/hangar-runtime-base:test "$dir/base" >/dev/null
cp "$bin" "$dir/binary/mcp-hangar"
printf 'FROM scratch\nCOPY mcp-hangar /out/mcp-hangar\n' > "$dir/binary/Containerfile"
podman build -q -t localhost/hangar-binary:test "$dir/binary" >/dev/null
