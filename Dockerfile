# syntax=docker/dockerfile:1
# The operator's image: `mlmodel-operator run` in the Deployment, `mlmodel-operator fetch` in the
# download Jobs (their pods run this same image, see --operator-image). The default plugins are
# built for wasm32-wasip2 by host/build.rs and embedded in the binary, so the image holds one file.
#
#   make image                       # docker or podman, IMAGE=ghcr.io/mlmodel-dev/mlmodel-operator:v0.1.0
#
# Builder: the official Rust image of the workspace's rust-version, on Debian 12 (bookworm), the
# same glibc as the distroless runtime below.
FROM docker.io/library/rust:1.95-slim-bookworm AS builder
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY host host
COPY plugins plugins
COPY wit wit
# Registry and target directory are build caches (BuildKit / buildah), so a rebuild after a source
# change does not start from nothing; the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mlmodel-operator \
    && install -D -m 0755 target/release/mlmodel-operator /out/mlmodel-operator

# Runtime: distroless (glibc, CA certificates, no shell, no package manager), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
# On PATH: the download Jobs run `mlmodel-operator fetch ...` by name.
COPY --from=builder /out/mlmodel-operator /usr/local/bin/mlmodel-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mlmodel-operator"]
CMD ["run"]
