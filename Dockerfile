# litellm-exporter container image.
#
#   docker build -t litellm-exporter --build-arg LITELLM_EXPORTER_REVISION=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -p 10410:10410 litellm-exporter --db-url postgresql://user:pass@db:5432/litellm
#
# Stage 1 builds the exporter's release binary, and only it (the traffic generator, litellm-seed,
# writes to databases and is neither built nor in the build context); stage 2 is distroless (glibc, no shell, no package manager)
# running as the unprivileged "nonroot" user (65532). The HEALTHCHECK needs an HTTP client and the
# exporter has no self-check mode, so a statically linked busybox is copied in under the name
# `wget`: busybox picks its applet from argv[0], so the image still has no shell to run.
# scripts/deploy-test/check_dockerfile.py checks this file's structure (no Docker engine in CI).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BUSYBOX_IMAGE=busybox:1.37.0-musl

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the binary is built from (build.rs embeds the revision; without .git in the context
# it comes from this build argument).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY sql ./sql
# Cargo.toml declares the scrape benchmark's target; cargo reads its file even when building only
# the binary.
COPY benches ./benches
ARG LITELLM_EXPORTER_REVISION=unknown
ENV LITELLM_EXPORTER_REVISION=${LITELLM_EXPORTER_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin litellm-exporter \
    && install -D -m 0755 target/release/litellm-exporter /out/usr/local/bin/litellm-exporter \
    && install -d -m 0750 /out/var/lib/litellm-exporter

FROM ${BUSYBOX_IMAGE} AS busybox

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/usr/local/bin/litellm-exporter /usr/local/bin/litellm-exporter
# The --state.file directory, owned by the runtime user so that a fresh named volume mounted here
# inherits a writable owner.
COPY --from=build --chown=65532:65532 /out/var/lib/litellm-exporter /var/lib/litellm-exporter
COPY --from=busybox /bin/busybox /usr/local/bin/wget
USER 65532:65532
EXPOSE 10410
# /-/healthy answers 200 while the process runs (readiness, /-/ready, is for orchestrators).
# If you change --web.listen-address, override this check too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:10410/-/healthy"]
ENTRYPOINT ["/usr/local/bin/litellm-exporter"]
