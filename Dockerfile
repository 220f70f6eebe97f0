# MCP Hangar's container image: built from this checkout, run as a non-root user on a read-only
# root filesystem, with no shell in the image (the health check is the binary's own `probe`).
#   docker build -t mcp-hangar .
#   docker run --rm -p 127.0.0.1:8000:8000 --read-only --cap-drop=ALL mcp-hangar
# The image's configuration (/etc/mcp-hangar/config.yaml, deploy/docker/config.yaml) serves the
# built-in demo provider on 0.0.0.0:8000; mount your own over it, or set MCP_HANGAR_CONFIG.
#
# Build arguments, for builders without network access to the default images:
#   RUST_IMAGE     the build stage's toolchain image
#   RUNTIME_IMAGE  the runtime base: glibc, libgcc, CA certificates and a user 65532; no shell needed
#   BINARY         an image holding a prebuilt /out/mcp-hangar to use instead of the build stage
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mcp-hangar && mkdir -p /out && cp target/release/mcp-hangar /out/

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE}
COPY --from=binary /out/mcp-hangar /usr/local/bin/mcp-hangar
COPY deploy/docker/config.yaml /etc/mcp-hangar/config.yaml
ENV MCP_HANGAR_CONFIG=/etc/mcp-hangar/config.yaml
USER 65532:65532
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/mcp-hangar", "probe", "http://127.0.0.1:8000/health/live"]
ENTRYPOINT ["/usr/local/bin/mcp-hangar"]
CMD ["--http"]
