# syntax=docker/dockerfile:1
#
# gpuflow production image: one static binary, /usr/local/bin/gpuflow, whose
# subcommands are the processes of the production topology (docker-compose.yml):
#
#   gpuflow migrate   apply the PostgreSQL migrations, then exit
#   gpuflow api       the HTTP/WebSocket API (Echo) on HTTP_ADDR
#   gpuflow worker    the Temporal worker that runs the job workflows
#   gpuflow user      manage API users
#
# Temporal itself is NOT in this image: production talks to a real Temporal
# cluster at TEMPORAL_ADDRESS. The embedded dev server (internal/devtemporal)
# is for dev builds and tests only and is not linked into cmd/gpuflow.
#
# Configuration comes from the environment only (see docker-compose.yml);
# nothing secret is baked into the image.
#
# Build:  docker build -t gpuflow .
# Run:    docker run --rm gpuflow --help
#
# Pin the base images by digest (image@sha256:...) in CI if you need
# byte-for-byte reproducible builds; the tags below pin the versions.

# ---- build stage ------------------------------------------------------------
# 1.26.10, not the 1.26.8 of the dev machines: it has the standard-library fixes that
# govulncheck.allow lists (docs/SECURITY-SUPPLY-CHAIN.md).
FROM golang:1.26.10-bookworm AS build

WORKDIR /src
# A pure-Go binary (pgx, the Temporal SDK): no cgo, so it runs on any libc.
# GOTOOLCHAIN=local: build with exactly the Go of this image, never download one.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local

# Dependencies first, so source edits do not invalidate the module layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/gpuflow ./cmd/gpuflow

# ---- runtime stage ----------------------------------------------------------
FROM debian:12.8-slim

# ca-certificates: the API and worker call cloud GPU providers over HTTPS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed uid, so volume ownership is predictable.
# /var/lib/gpuflow (GPUFLOW_DATA_DIR) is created here, owned by that user: a
# named volume mounted there starts with this ownership.
RUN groupadd --system --gid 10001 gpuflow \
    && useradd --system --uid 10001 --gid gpuflow \
        --home-dir /var/lib/gpuflow --no-create-home --shell /usr/sbin/nologin gpuflow \
    && install -d -o gpuflow -g gpuflow -m 0750 /var/lib/gpuflow

COPY --from=build /out/gpuflow /usr/local/bin/gpuflow

USER gpuflow
WORKDIR /var/lib/gpuflow
# The API's default port in the container (HTTP_ADDR=0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gpuflow"]
