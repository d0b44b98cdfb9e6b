# syntax=docker/dockerfile:1
# Starling node image: a static binary on distroless, run as a non-root
# user. Build:  docker build -t starling --build-arg VERSION=v1.2.0 .
# Three nodes:  docker compose -f deploy/docker/compose.yaml up

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG COMMIT=""
# CGO off: a static binary (LevelDB is pure Go) that needs no libc.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/starling-sync/starling/internal/version.Version=${VERSION} -X github.com/starling-sync/starling/internal/version.Commit=${COMMIT}" \
      -o /out/starling ./cmd/starling \
 && mkdir -p /out/data /out/key

# distroless/static: CA certificates and tzdata, no shell, no package
# manager; "nonroot" is uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/starling /usr/local/bin/starling
# The data directory, owned by the node's user so a named volume
# mounted on it starts out writable.
COPY --from=build --chown=65532:65532 /out/data /data
# Where compose's key service writes the shared network key.
COPY --from=build --chown=65532:65532 /out/key /key
USER 65532:65532
ENV STARLING_DATA=/data \
    STARLING_API=0.0.0.0:7401
VOLUME ["/data"]
# libp2p (TCP; UDP for QUIC on open networks only) and the HTTP API
# (token-protected; /healthz and /readyz answer without it).
EXPOSE 4001/tcp 4001/udp 7401/tcp
# The client asks the node in this container (api.json, api.token).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s \
  CMD ["/usr/local/bin/starling", "status", "--data", "/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/starling"]
CMD ["run"]
