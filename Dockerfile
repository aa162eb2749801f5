# syntax=docker/dockerfile:1
# The gateway's image: built from this checkout in a Rust stage, run from distroless as a
# non-root user with nothing else in the image (no shell, no package manager).
#
#   docker build --build-arg GATEHOUSE_COMMIT=$(git rev-parse --short=12 HEAD) -t gatehouse:0.1.0 .
#   docker run --read-only -p 8080:8080 -v gatehouse-data:/var/lib/gatehouse gatehouse:0.1.0
#
# The bases are named by tag here; pin them by digest in your own build (tags move).
# docs/OPERATIONS.md ("Container image") has the rest; tests/python/test_deploy.py checks
# the properties this file promises.

# Matches rust-toolchain.toml (the test checks), so the image builds what CI tested.
ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# `gatehouse --version` names this commit (the build context carries no .git).
ARG GATEHOUSE_COMMIT=unknown
ENV GATEHOUSE_COMMIT=${GATEHOUSE_COMMIT} CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin gatehouse \
    && install -D -m 0755 target/release/gatehouse /out/usr/local/bin/gatehouse \
    && install -d -m 0700 /out/var/lib/gatehouse

# glibc and libgcc only (the binary links them dynamically); CA roots for providers over HTTPS.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/gatehouse /usr/local/bin/gatehouse
# The embedded store and the audit spool; the only path the gateway writes.
COPY --from=build --chown=65532:65532 /out/var/lib/gatehouse /var/lib/gatehouse
USER 65532:65532
# The control plane stays on loopback unless you open it (GATEHOUSE_ADMIN_LISTEN): the chart
# does, behind a NetworkPolicy.
ENV GATEHOUSE_DATA_DIR=/var/lib/gatehouse \
    GATEHOUSE_DATA_LISTEN=0.0.0.0:8080 \
    GATEHOUSE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve"]
