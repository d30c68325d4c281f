# syntax=docker/dockerfile:1
#
# minion-operator image: the controller (`minion-operator run`), the subtask runner
# (`minion-worker run --spec <URI>`, started by each Job) and the user CLI (`minion`).
#
#   docker build -t minion-operator:0.1.0 .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t minion-operator:dev .
#
# The builder is Debian bookworm, like the runtime: binaries link glibc dynamically, and one built
# against a newer glibc would not start on the runtime image.

ARG RUST_VERSION=1.95
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-bookworm AS builder
# aws-lc-sys (rustls' default provider, pulled in by the HTTP stack) may build with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace: every member's manifest is needed to resolve it; config/ samples are
# compiled into the demo (include_str!). .dockerignore keeps target/ and the rest out.
COPY . .
# Cache mounts keep the registry and build outputs between builds; binaries are copied out of the
# cached target/ because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p minion-operator -p minion-worker -p minion-cli \
 && mkdir -p /out \
 && cp target/release/minion-operator target/release/minion-worker target/release/minion /out/

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="minion-operator" \
      org.opencontainers.image.description="Kubernetes operator running Pinot-style minion tasks over Parquet segments in Delta tables; holds minion-operator, minion-worker and minion" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/minion-operator" \
      org.opencontainers.image.documentation="docs/kubernetes.md"
COPY --from=builder /out/minion-operator /out/minion-worker /out/minion /usr/local/bin/
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd. Spill and scratch
# files go to /tmp, an emptyDir in the pod (the root filesystem is read-only).
USER 65532:65532
ENV TMPDIR=/tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/minion-operator"]
CMD ["run"]
