# syntax=docker/dockerfile:1
#
# Container images of sluice, built from this repository (BuildKit):
#
#   docker build -t sluice:dev .                       # the proxy: sidecar and gateway
#   docker build --target init -t sluice-init:dev .    # the sidecar's init container
#
# Two images from one build, because the two jobs want different things:
#
# - `runtime` (the default, last stage): the sluice binary on distroless
#   cc-debian12 (glibc, CA certificates, no shell, no package manager),
#   running as UID 2102. The sidecar runs it for the life of the pod with
#   no capability, so it carries nothing but sluice. 2102 is the
#   `[sidecar] proxy_uid` of examples/kubernetes: the iptables rules let
#   that UID's connections out instead of redirecting them back to sluice.
# - `init`: the same binary on debian:bookworm-slim with the `iptables`,
#   `ip6tables` and `nft` commands that `sluice iptables` runs. It runs once
#   per pod, as root with NET_ADMIN and NET_RAW (the manifests set
#   runAsUser: 0), and exits.
#
# The binary is built on bookworm (glibc 2.36) and both images are
# bookworm-based, so it runs on either.

# The channel of rust-toolchain.toml.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# proxy/build.rs compiles the built-in plugins (plugins/*) to wasm32-wasip2
# components with a nested cargo and embeds them in the binary: the build
# needs that target (rust-toolchain.toml pins the toolchain and lists it;
# with the toolchain file in the working directory, this adds it to the
# pinned toolchain). The linker for it, wasm-component-ld, ships with the
# target. aws-lc-sys (rustls' crypto) needs the C compiler the slim image
# has.
COPY rust-toolchain.toml ./
RUN rustup target add wasm32-wasip2 && rustup show active-toolchain
COPY . .
# The target directory is a cache mount, so the binary is copied out in the
# same step. The nested plugin build lands in target/wasm-components.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p sluice --locked \
    && install -D -m 0755 target/release/sluice /out/sluice

# The init container: `sluice iptables --config FILE`. bookworm's `iptables`
# is the nf_tables backend (iptables-nft); `sluice iptables --nftables`
# uses `nft` directly.
FROM debian:bookworm-slim AS init
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/sluice /usr/local/bin/sluice
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]

# The proxy. Kubernetes sets the UID again (runAsUser: 2102), the image
# says it too so that `docker run` is not root either.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/sluice /usr/local/bin/sluice
USER 2102:2102
# The sidecar's interception ports and the admin port (the gateway of
# examples/kubernetes listens on 8080 and 9901).
EXPOSE 15001 15006 15020
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
