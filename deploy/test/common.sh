# Shared by deploy/test/docker.sh and deploy/test/systemd.sh (sourced, not run).
# Checks are counted: check/fail print one line each, finish exits non-zero
# if any check failed.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${CACHE:-/var/tmp/starling-deploy-test}
mkdir -p "$CACHE"
T0=$(date +%s%N)
FAILED=0
PASSED=0

log() { printf '[%6.1fs] %s\n' "$(elapsed)" "$*"; }
elapsed() { echo "scale=1; ($(date +%s%N) - $T0) / 1000000000" | bc; }
ok() { PASSED=$((PASSED + 1)); log "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
die() { log "ERROR $*"; exit 2; }
# check DESCRIPTION COMMAND...: one check, by a command's exit status.
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
need() { for c in "$@"; do command -v "$c" >/dev/null || die "needs $c"; done; }
finish() {
	log "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}
# now_ms: a monotonic-enough clock for the timings printed.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# wait_for SECONDS COMMAND...: runs COMMAND every 0.5 s until it succeeds
# or the deadline passes (then returns 1).
wait_for() {
	local deadline=$(( $(date +%s) + $1 )); shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.5
	done
}

# bookworm_image: a Debian bookworm image with systemd, made by
# debootstrap from deb.debian.org (cached in $CACHE; FRESH=1 makes it
# again). Stands in for the base images when no registry is reachable,
# and is the machine of systemd.sh.
BOOKWORM_IMAGE=${BOOKWORM_IMAGE:-starling-test/bookworm-systemd:local}
bookworm_image() {
	if [ -z "${FRESH:-}" ] && docker image inspect "$BOOKWORM_IMAGE" >/dev/null 2>&1; then
		return
	fi
	need debootstrap
	local root=$CACHE/bookworm
	if [ -n "${FRESH:-}" ] || [ ! -x "$root/sbin/init" ]; then
		log "debootstrap bookworm into $root (a few minutes)"
		rm -rf "$root" && mkdir -p "$CACHE"
		debootstrap --variant=minbase \
			--include=systemd,systemd-sysv,dbus,ca-certificates,iproute2,procps \
			bookworm "$root" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
			die "debootstrap failed: $CACHE/debootstrap.log"
	fi
	tar -C "$root" -c . | docker import -c 'ENV container=docker' - "$BOOKWORM_IMAGE" >/dev/null
}
