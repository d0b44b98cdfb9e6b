#!/usr/bin/env bash
# deploy/test/docker.sh: builds the image of ./Dockerfile and runs the
# three nodes of deploy/docker/compose.yaml for real, then checks them.
#
# Needs: a running Docker daemon (run as root or a docker group member);
# `docker compose` (v2) or docker-compose 1.29 (v1); python3, curl, bc.
# Base images: golang:1.26-bookworm and gcr.io/distroless/static-debian12
# are pulled; where they cannot be (no registry access; or STANDINS=1),
# local stand-ins are built instead: a debootstrap'd bookworm with this
# machine's Go (`go env GOROOT`) and CA bundle as the builder, and a
# FROM-scratch image with CA certificates, tzdata and the nonroot user
# (65532) as the runtime. That needs debootstrap, deb.debian.org and root.
# The build downloads modules from the Go proxy (GOPROXY is passed on).
#
# Checks: the build and its image (size, user 65532:65532); the three
# nodes go healthy (HEALTHCHECK); they form one cluster (every node sees 3
# ACTIVE nodes and all name the same leader); a write on node1 is read on
# node2 and node3; every node process runs as uid 65532; node1's API
# answers on the host's loopback (/readyz, and a scoped token made with
# `starling token add` reads /Plant); `docker stop` of the leader exits 0
# well within stop_grace_period (SIGTERM handled) and the other two elect
# a new leader; after `down` and `up` (named volumes) the data, the peer
# IDs and the network key are the same and the cluster forms again.
#
# Usage: deploy/test/docker.sh   (exit 0: every check passed)
# Env: STANDINS=1 (always use stand-ins), KEEP=1 (leave the project up),
# STARLING_API_PORT (host port for node1's API, default 17401),
# CACHE (debootstrap cache, /var/tmp/starling-deploy-test).
# Uses the compose project "starling-test" and the image starling:local.

# shellcheck source=deploy/test/common.sh
. "$(dirname "$0")/common.sh"
need docker python3 curl bc
docker info >/dev/null 2>&1 || die "no Docker daemon"

export STARLING_API_PORT=${STARLING_API_PORT:-17401}
PROJECT=starling-test
FILE=$REPO/deploy/docker/compose.yaml
if docker compose version >/dev/null 2>&1; then
	COMPOSE=(docker compose -p "$PROJECT" -f "$FILE")
elif command -v docker-compose >/dev/null; then
	COMPOSE=(docker-compose -p "$PROJECT" -f "$FILE")
else
	die "needs docker compose (v2) or docker-compose (v1)"
fi
log "compose: $("${COMPOSE[@]}" version 2>/dev/null | head -1)"
compose() { "${COMPOSE[@]}" "$@"; }
cleanup() {
	if [ -z "${KEEP:-}" ]; then compose down -v --remove-orphans >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
compose down -v --remove-orphans >/dev/null 2>&1 || true

# --- base images ---------------------------------------------------------
GO_IMAGE=golang:1.26-bookworm
RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot
pulled() { docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1; }
if [ -z "${STANDINS:-}" ] && pulled "$GO_IMAGE" && pulled "$RUNTIME_IMAGE"; then
	log "base images: $GO_IMAGE, $RUNTIME_IMAGE"
else
	log "base images cannot be pulled (or STANDINS=1): building local stand-ins"
	need go tar
	bookworm_image
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"; cleanup' EXIT
	GO_IMAGE=starling-test/golang:1.26-bookworm
	RUNTIME_IMAGE=starling-test/static-debian12:nonroot
	# Builder: bookworm, this machine's Go and its CA bundle (a proxy
	# that intercepts TLS needs its CA in the build too).
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
	cat >"$ctx/Dockerfile.go" <<-EOF
		FROM $BOOKWORM_IMAGE
		COPY go /usr/local/go
		COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
		ENV GOPATH=/go GOTOOLCHAIN=local PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		WORKDIR /go
	EOF
	tar -c -C "$ctx" Dockerfile.go ca-certificates.crt -C "$(dirname "$(go env GOROOT)")" "$(basename "$(go env GOROOT)")" |
		docker build -q -f Dockerfile.go -t "$GO_IMAGE" - >/dev/null 2>&1 || die "building $GO_IMAGE failed"
	# Runtime: what distroless/static:nonroot has that a static binary
	# uses (CA certificates, tzdata, passwd with nonroot 65532, /tmp).
	rt=$ctx/rt && mkdir -p "$rt/etc/ssl/certs" "$rt/usr/share" "$rt/tmp" "$rt/home/nonroot"
	chmod 1777 "$rt/tmp"
	cid=$(docker create "$BOOKWORM_IMAGE" true)
	docker cp "$cid:/etc/ssl/certs/ca-certificates.crt" "$rt/etc/ssl/certs/"
	docker cp "$cid:/usr/share/zoneinfo" "$rt/usr/share/" 2>/dev/null || mkdir -p "$rt/usr/share/zoneinfo"
	docker rm "$cid" >/dev/null
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rt/etc/passwd"
	printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rt/etc/group"
	echo 'hosts: files dns' >"$rt/etc/nsswitch.conf"
	cat >"$rt/Dockerfile" <<-'EOF'
		FROM scratch
		COPY etc /etc
		COPY usr /usr
		COPY tmp /tmp
		COPY --chown=65532:65532 home /home
		ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
		USER 65532:65532
		WORKDIR /home/nonroot
	EOF
	docker build -q -t "$RUNTIME_IMAGE" "$rt" >/dev/null 2>&1 || die "building $RUNTIME_IMAGE failed"
fi

# --- build ------------------------------------------------------------------
t=$(now_ms)
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if docker build -t starling:local --build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
	--build-arg VERSION=deploy-test --build-arg COMMIT="$commit" \
	${GOPROXY:+--build-arg GOPROXY="$GOPROXY"} "$REPO" >"$CACHE/build.log" 2>&1; then
	ok "docker build in $(( ($(now_ms) - t) / 1000 )) s, image $(docker image inspect -f '{{.Size}}' starling:local | awk '{printf "%.1f MB", $1/1e6}')"
else
	tail -30 "$CACHE/build.log"; die "docker build failed (log: $CACHE/build.log)"
fi
check "image user is 65532:65532" test "$(docker image inspect -f '{{.Config.User}}' starling:local)" = 65532:65532

# --- three nodes -------------------------------------------------------------
NODES=(node1 node2 node3)
# cid SERVICE: its container, also when stopped (v2's ps lists running ones only).
cid() { compose ps -a -q "$1"; }
st() { compose exec -T "$1" starling "${@:2}"; }
# cluster_view NODE: "<leader node> <ACTIVE nodes> <node count>" as NODE sees it.
cluster_view() {
	st "$1" cluster status --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print((d.get("leader") or {}).get("node") or "-", sum(n.get("state") == "ACTIVE" for n in d.get("nodes", [])), d.get("node_count", 0))'
}
# one_cluster NODES...: every node sees all of them ACTIVE and the same leader.
one_cluster() {
	local first="" v n=$#
	for x in "$@"; do
		v=$(cluster_view "$x") || return 1
		set -- $v
		[ "$1" != - ] && [ "$2" -ge "$n" ] || return 1
		if [ -z "$first" ]; then first=$1; elif [ "$first" != "$1" ]; then return 1; fi
	done
	echo "$first"
}
healthy() {
	for n in "${NODES[@]}"; do
		[ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$n")")" = healthy ] || return 1
	done
}
peer_ids() { for n in "${NODES[@]}"; do st "$n" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer_id"])'; done; }
swarm_key_sum() { docker cp "$(cid key):/key/gen/swarm.key" - | tar -xO | sha256sum | cut -c1-16; }

t=$(now_ms)
compose up -d >/dev/null 2>&1 || die "compose up failed: $(compose logs --tail 20 2>&1)"
if wait_for 60 one_cluster "${NODES[@]}"; then
	ok "one cluster of 3, leader $(one_cluster "${NODES[@]}"), $(( $(now_ms) - t )) ms after up"
else
	fail "no cluster of 3 within 60 s"; for n in "${NODES[@]}"; do st "$n" cluster status || true; done
fi
check "cluster peers shows each peer at its network address, not 127.0.0.1" \
	bash -c "! ${COMPOSE[*]} exec -T node1 starling cluster peers | grep -q '/ip4/127.0.0.1/'"
check "all three healthy (HEALTHCHECK: starling status) within 90 s of up" wait_for 90 healthy
log "healthy $(( $(now_ms) - t )) ms after up"
for n in "${NODES[@]}"; do
	check "$n runs as uid 65532" test "$(docker top "$(cid "$n")" -eo pid,uid | awk 'NR > 1 {print $2}' | sort -u)" = 65532
done

t=$(now_ms)
st node1 create --type site /Plant >/dev/null
# reads NODE: NODE has /Plant (the answer is kept for a failure's report).
reads() { st "$1" get /Plant >"$CACHE/read.$1" 2>&1 && grep -q '^path *\/Plant' "$CACHE/read.$1"; }
# check_read DESCRIPTION NODE SECONDS
check_read() {
	local t0; t0=$(now_ms)
	if wait_for "$3" reads "$2"; then
		ok "$1 ($(( $(now_ms) - t0 )) ms)"
	else
		fail "$1: $2 answered: $(cat "$CACHE/read.$2")"
		compose logs --tail 40 "$2" 2>&1 | cut -c1-300
	fi
}
for n in node2 node3; do
	check_read "a write on node1 is read on $n" "$n" 20
done

check "node1's API on the host's loopback: /readyz 200" \
	test "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$STARLING_API_PORT/readyz")" = 200
tok=$(st node1 token add --role read --name deploy-test --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
check "a scoped token made by 'starling token add' reads /Plant from the host" \
	bash -c "curl -skf -H 'Authorization: Bearer $tok' 'https://127.0.0.1:$STARLING_API_PORT/v1/entities?ref=/Plant' | grep -q '\"/Plant\"'"

# --- stop -----------------------------------------------------------------------
leader=$(one_cluster "${NODES[@]}" || echo node1)
c=$(cid "$leader")
t=$(now_ms)
docker stop -t 30 "$c" >/dev/null
d=$(( $(now_ms) - t ))
code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
check "docker stop of the leader $leader: exit code $code in $d ms (grace 30 s)" test "$code" = 0 -a "$d" -lt 25000
check "$leader logged a clean stop" bash -c "docker logs --tail 5 '$c' 2>&1 | grep -q '^stopped'"
rest=(); for n in "${NODES[@]}"; do [ "$n" = "$leader" ] || rest+=("$n"); done
t=$(now_ms)
if wait_for 30 one_cluster "${rest[@]}"; then
	ok "the other two agree on leader $(one_cluster "${rest[@]}") $(( $(now_ms) - t )) ms after the stop"
else
	fail "no new leader among ${rest[*]} within 30 s"
fi
compose start "$leader" >/dev/null 2>&1
check "$leader back in the cluster of 3 after docker start" wait_for 60 one_cluster "${NODES[@]}"
check_read "$leader still has /Plant after its stop and start" "$leader" 15

# --- down and up: named volumes keep everything -----------------------------------
ids_before=$(peer_ids); key_before=$(swarm_key_sum)
compose down >/dev/null 2>&1
t=$(now_ms)
compose up -d >/dev/null 2>&1 || die "second compose up failed"
if wait_for 60 one_cluster "${NODES[@]}"; then
	ok "after down/up: one cluster again, $(( $(now_ms) - t )) ms after up"
else
	fail "after down/up: no cluster of 3 within 60 s"
fi
for n in "${NODES[@]}"; do check_read "after down/up: $n still has /Plant" "$n" 15; done
check "after down/up: the same peer IDs" test "$(peer_ids)" = "$ids_before"
check "after down/up: the same network key" test "$(swarm_key_sum)" = "$key_before"
check "after down/up: all healthy" wait_for 90 healthy

finish
