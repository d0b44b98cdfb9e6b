# Starling node image: a static binary on distroless, run as a non-root
# user. Build:  docker build -t starling --build-arg VERSION=v1.2.0 .
# Three nodes:  docker compose -f deploy/docker/compose.yaml up
# Everything here is in the Dockerfile syntax built into Docker (no
# "# syntax=" line: a build does not fetch a frontend image first).
# Without access to Docker Hub and gcr.io, name local copies of the two
# base images: --build-arg GO_IMAGE=... --build-arg RUNTIME_IMAGE=...
# (deploy/test/docker.sh makes stand-ins with debootstrap).

ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces goleveldb with this patched copy (third_party/goleveldb/README.md).
COPY third_party ./third_party
# A module proxy of your own, if any: --build-arg GOPROXY=...
ARG GOPROXY
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
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/starling /usr/local/bin/starling
# The data directory, owned by the node's user so a named volume
# mounted on it starts out writable.
COPY --from=build --chown=65532:65532 /out/data /data
# Where compose's key service writes the shared network key.
COPY --from=build --chown=65532:65532 /out/key /key
USER 65532:65532
# STARLING_DATA is for every command: `docker exec CONTAINER starling
# status` talks to the node of /data. The API's listen address is a flag
# of run, not STARLING_API: client commands read STARLING_API as the node
# to talk to (plain HTTP to 0.0.0.0 without the certificate), which broke
# the HEALTHCHECK and every `docker exec ... starling` command.
ENV STARLING_DATA=/data
VOLUME ["/data"]
# libp2p (TCP; UDP for QUIC on open networks only) and the HTTP API
# (token-protected; /healthz and /readyz answer without it).
EXPOSE 4001/tcp 4001/udp 7401/tcp
# The client asks the node in this container (api.json, api.token).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s \
  CMD ["/usr/local/bin/starling", "status", "--data", "/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/starling"]
# A command of your own keeps --api 0.0.0.0:7401 to serve outside the
# container (e.g. run --api 0.0.0.0:7401 --peer /dns4/...).
CMD ["run", "--api", "0.0.0.0:7401"]
