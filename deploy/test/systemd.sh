#!/usr/bin/env bash
# deploy/test/systemd.sh: installs deploy/systemd/starling.service on three
# machines with a real systemd as PID 1 (Debian bookworm containers on one
# Docker network) the way README's "Deploy on three machines" says, and
# checks the unit for real.
#
# Needs: root and a running Docker daemon; debootstrap and deb.debian.org
# (the bookworm+systemd image is made once and cached in $CACHE; or name
# your own with BOOKWORM_IMAGE); a starling binary: STARLING_BIN, else
# `go` builds one (CGO_ENABLED=0, as the README says); python3, bc.
# The containers run privileged where Docker can (else with every
# capability this machine has; SYSTEMD_DOCKER_FLAGS overrides), and on a
# cgroup v1 host they get /sys/fs/cgroup rw. In each container / is made
# a shared mount first: a container manager must do that (nspawn does,
# Docker does not; systemd skips it in a container), and LoadCredential=
# does not work without it (the credential is an empty directory).
#
# Checks: systemd-analyze verify and security; without /etc/starling/
# swarm.key the service does not start; `systemctl enable --now` returns
# with the unit active and the API serving (Type=notify: READY=1 after
# the API; the status text comes over the notify socket); DynamicUser +
# StateDirectory: the node runs as a dynamic uid that owns
# /var/lib/private/starling (0700) and nothing else; the sandbox (no
# capabilities, no_new_privs, seccomp) leaves it able to listen, write its
# LevelDB and resolve a peer given by name (/dns4/...); the two others
# join the first (STARLING_PEER) and all three agree on one leader; a
# write on one is read on the others; `systemctl stop` ends with
# Result=success, status 0, within TimeoutStopSec; `systemctl restart`
# keeps data and peer ID; a SIGSTOP'd node is killed by the watchdog
# (WatchdogSec=30s) and restarted, with its data, and rejoins.
#
# Usage: deploy/test/systemd.sh   (exit 0: every check passed; about 2-3
# minutes once the image is cached, half a minute of it the watchdog)
# Env: KEEP=1 leaves the containers running; FRESH=1 rebuilds the image.

# shellcheck source=deploy/test/common.sh
. "$(dirname "$0")/common.sh"
need docker python3 bc
docker info >/dev/null 2>&1 || die "no Docker daemon"

NET=starling-sd
M=(starling-sd1 starling-sd2 starling-sd3)
IDS=(site-a site-b site-c)
D="--data /var/lib/starling"
cleanup() {
	if [ -z "${KEEP:-}" ]; then
		docker rm -f "${M[@]}" >/dev/null 2>&1 || true
		docker network rm "$NET" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
docker rm -f "${M[@]}" >/dev/null 2>&1 || true
docker network rm "$NET" >/dev/null 2>&1 || true

# --- binary and machine image -------------------------------------------------
if [ -n "${STARLING_BIN:-}" ]; then
	bin=$STARLING_BIN
else
	need go
	bin=$CACHE/starling && mkdir -p "$CACHE"
	t=$(now_ms)
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/starling) || die "go build failed"
	log "built $bin in $(( ($(now_ms) - t) / 1000 )) s"
fi
bookworm_image

flags=()
if [ -n "${SYSTEMD_DOCKER_FLAGS:-}" ]; then
	read -r -a flags <<<"$SYSTEMD_DOCKER_FLAGS"
else
	for try in "--privileged" "--cap-add ALL" "--cap-add ALL --cap-drop SYS_RESOURCE"; do
		read -r -a f <<<"$try --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
		if docker run --rm "${f[@]}" "$BOOKWORM_IMAGE" true >/dev/null 2>&1; then flags=("${f[@]}"); break; fi
	done
	[ ${#flags[@]} -gt 0 ] || die "cannot run a container with the capabilities systemd needs"
	if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
		flags+=(-v /sys/fs/cgroup:/sys/fs/cgroup:rw)
	fi
fi
log "container flags: ${flags[*]}"

x() { local m=$1; shift; docker exec "$m" sh -c "$*"; }
booted() { x "$1" 'systemctl is-system-running' | grep -qE '^(running|degraded)$'; }
docker network create "$NET" >/dev/null
t=$(now_ms)
for m in "${M[@]}"; do
	docker run -d --name "$m" --hostname "$m" --network "$NET" "${flags[@]}" \
		--stop-signal SIGRTMIN+3 "$BOOKWORM_IMAGE" /sbin/init >/dev/null
done
for m in "${M[@]}"; do
	wait_for 60 booted "$m" || die "$m: systemd did not boot: $(docker logs --tail 20 "$m" 2>&1)"
	x "$m" 'mount --make-rshared /'
done
log "three systemd machines up in $(( $(now_ms) - t )) ms ($(x "${M[0]}" 'systemctl --version | head -1'))"

# --- install, as the README says ------------------------------------------------
for m in "${M[@]}"; do
	x "$m" 'mkdir -p /root/starling/deploy/systemd'
	docker cp "$bin" "$m:/root/starling/starling"
	docker cp "$REPO/deploy/systemd/starling.service" "$m:/root/starling/deploy/systemd/"
	docker cp "$REPO/deploy/systemd/starling.env" "$m:/root/starling/deploy/systemd/"
	x "$m" 'cd /root/starling &&
		install -m 0755 starling /usr/local/bin/starling &&
		install -m 0644 deploy/systemd/starling.service /etc/systemd/system/ &&
		install -d -m 0755 /etc/starling &&
		install -m 0644 deploy/systemd/starling.env /etc/starling/'
done
m1=${M[0]}
check "systemd-analyze verify starling.service" x "$m1" 'systemd-analyze verify /etc/systemd/system/starling.service'
score=$(x "$m1" 'systemd-analyze security starling.service --no-pager 2>/dev/null | sed -n "s/.*Overall exposure level for starling.service: //p"')
check "systemd-analyze security: $score" bash -c "awk '{exit !(\$1 <= 2.0)}' <<<'$score'"

# Settings: the same STARLING_ENV (the file's), one node ID each.
for i in 0 1 2; do
	x "${M[$i]}" "sed -i 's/^#STARLING_NODE_ID=.*/STARLING_NODE_ID=${IDS[$i]}/' /etc/starling/starling.env"
done

# Before the key exists: the service must not start (and must not make
# a key of its own).
m2=${M[1]}
x "$m2" 'systemctl daemon-reload'
if x "$m2" 'systemctl start starling' >/dev/null 2>&1; then
	fail "$m2 started without /etc/starling/swarm.key"
else
	check "without /etc/starling/swarm.key the service does not start (and made no node identity)" \
		x "$m2" '! systemctl is-active -q starling && ! test -e /var/lib/private/starling/identity.key &&
			journalctl -u starling --no-pager | grep -q "status=243/CREDENTIALS"'
fi
x "$m2" 'systemctl stop starling; systemctl reset-failed starling 2>/dev/null || true'

# One network key: made on the first machine, copied to the others.
x "$m1" 'starling init --data /tmp/keygen >/dev/null && install -m 0600 /tmp/keygen/swarm.key /etc/starling/swarm.key && rm -r /tmp/keygen'
for m in "${M[@]:1}"; do
	docker cp "$m1:/etc/starling/swarm.key" - | docker cp - "$m:/etc/starling/"
	x "$m" 'chown root:root /etc/starling/swarm.key && chmod 0600 /etc/starling/swarm.key'
done

# --- the first node -------------------------------------------------------------
t=$(now_ms)
x "$m1" 'systemctl daemon-reload && systemctl enable --now starling' >/dev/null 2>&1
d=$(( $(now_ms) - t ))
# Right after `systemctl start` returns: active, and the API answers.
check "enable --now returned in $d ms with the unit active and the API serving" \
	x "$m1" "systemctl is-active -q starling && starling status $D >/dev/null"
props() { x "$1" "systemctl show starling -p $2 --value"; }
wait_ms=$(( ($(props "$m1" ActiveEnterTimestampMonotonic) - $(props "$m1" ExecMainStartTimestampMonotonic)) / 1000 ))
check "active (running) only after READY=1: $wait_ms ms after the process started" test "$wait_ms" -gt 50
check "Type=notify, NotifyAccess=main" test "$(props "$m1" Type) $(props "$m1" NotifyAccess)" = "notify main"
st=$(props "$m1" StatusText)
check "the node's status text came over the notify socket: \"$st\"" test -n "$st"
pid=$(props "$m1" MainPID)
uid=$(x "$m1" "awk '/^Uid:/ {print \$2}' /proc/$pid/status")
check "DynamicUser: the node runs as dynamic uid $uid" test "$uid" -ge 61184 -a "$uid" -le 65519
check "StateDirectory: /var/lib/starling -> private/starling, owned by uid $uid, mode 0700" \
	x "$m1" "test \"\$(readlink /var/lib/starling)\" = private/starling && test \"\$(stat -c '%u %a' /var/lib/private/starling)\" = '$uid 700'"
check "the node wrote its data (identity, config, LevelDB) as uid $uid" \
	x "$m1" "test -n \"\$(find /var/lib/private/starling/datastore -type f -user $uid)\" && test \"\$(stat -c %u /var/lib/private/starling/identity.key)\" = $uid"
check "sandbox: no capabilities, no_new_privs, seccomp filter" \
	x "$m1" "grep -q '^CapEff:.*0000000000000000' /proc/$pid/status && grep -q '^NoNewPrivs:.*1' /proc/$pid/status && grep -q '^Seccomp:.*2' /proc/$pid/status"
check "sandbox: the node listens on 4001 and 127.0.0.1:7401" \
	x "$m1" "ss -ltn | grep -q ':4001 ' && ss -ltn | grep -q '127.0.0.1:7401 '"
log "LimitNOFILE=65536 became $(x "$m1" "awk '/open files/ {print \$4}' /proc/$pid/limits") (capped by the container's hard limit where that is lower)"
peer=$(x "$m1" "starling status $D" | awk '$1 == "peer" && $2 == "id" {print $3}')
ip1=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$m1")
log "first node: peer id $peer, address $ip1"

# --- the others join it ------------------------------------------------------------
# site-b by address (as the README), site-c by name: the sandbox resolves it.
x "${M[1]}" "sed -i 's|^#STARLING_PEER=.*|STARLING_PEER=/ip4/$ip1/tcp/4001/p2p/$peer|' /etc/starling/starling.env"
x "${M[2]}" "sed -i 's|^#STARLING_PEER=.*|STARLING_PEER=/dns4/$m1/tcp/4001/p2p/$peer|' /etc/starling/starling.env"
t=$(now_ms)
for m in "${M[@]:1}"; do
	x "$m" 'systemctl daemon-reload && systemctl enable --now starling' >/dev/null 2>&1 || fail "$m: enable --now failed"
done
# cluster_view MACHINE: "<leader> <ACTIVE nodes>" as its node sees it.
cluster_view() {
	x "$1" "starling cluster status $D --json" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print((d.get("leader") or {}).get("node") or "-", sum(n.get("state") == "ACTIVE" for n in d.get("nodes", [])))'
}
one_cluster() {
	local first="" v
	for m in "${M[@]}"; do
		v=$(cluster_view "$m") || return 1
		set -- $v
		[ "$1" != - ] && [ "$2" -ge 3 ] || return 1
		if [ -z "$first" ]; then first=$1; elif [ "$first" != "$1" ]; then return 1; fi
	done
	echo "$first"
}
if wait_for 60 one_cluster; then
	ok "three nodes ACTIVE with one leader ($(one_cluster)) $(( $(now_ms) - t )) ms after the others started"
else
	fail "no cluster of 3 within 60 s"; for m in "${M[@]}"; do x "$m" "starling cluster status $D" || true; done
fi

check "cluster peers shows each peer at its network address, not 127.0.0.1" \
	x "$m1" "! starling cluster peers $D | grep -q '/ip4/127.0.0.1/'"

t=$(now_ms)
x "${M[1]}" "starling create $D --type site /Plant" >/dev/null
reads() { x "$1" "starling get $D /Plant" 2>/dev/null | grep -q '^path *\/Plant'; }
for m in "$m1" "${M[2]}"; do
	check "a write on ${M[1]} is read on $m ($(( $(now_ms) - t )) ms)" wait_for 20 reads "$m"
done

# --- stop, restart -----------------------------------------------------------------
m3=${M[2]}
t=$(now_ms)
x "$m3" 'systemctl stop starling'
d=$(( $(now_ms) - t ))
check "systemctl stop: inactive, Result=success, status 0, in $d ms (TimeoutStopSec 60 s)" \
	test "$(x "$m3" 'systemctl is-active starling' || true) $(props "$m3" Result) $(props "$m3" ExecMainStatus)" = "inactive success 0" -a "$d" -lt 30000
check "the node logged a clean stop" x "$m3" "journalctl -u starling -n 5 --no-pager -o cat | grep -qx stopped"
x "$m3" 'systemctl start starling'

t=$(now_ms)
x "$m1" 'systemctl restart starling'
check "systemctl restart of the first node in $(( $(now_ms) - t )) ms: same peer ID, data kept" \
	bash -c "test \"\$(docker exec $m1 starling status $D | awk '\$1 == \"peer\" && \$2 == \"id\" {print \$3}')\" = '$peer'"
check "after restart: /Plant still there" reads "$m1"
check "after stop/start and restart: one cluster of 3 again" wait_for 60 one_cluster

# --- watchdog --------------------------------------------------------------------------
check "WatchdogUSec=30s" test "$(props "$m2" WatchdogUSec)" = 30s
old=$(props "$m2" MainPID)
restarts=$(props "$m2" NRestarts)
t=$(now_ms)
x "$m2" "kill -STOP $old"
restarted() { local p; p=$(props "$m2" MainPID); [ "$p" != "$old" ] && [ "$p" != 0 ] && x "$m2" 'systemctl is-active -q starling'; }
if wait_for 75 restarted; then
	ok "SIGSTOP'd node killed by the watchdog and running again $(( $(now_ms) - t )) ms later (pings every 15 s, WatchdogSec 30 s)"
else
	fail "SIGSTOP'd node not restarted within 75 s"
fi
check "journal: Watchdog timeout, then a restart (NRestarts $restarts -> $(props "$m2" NRestarts))" \
	x "$m2" "journalctl -u starling --no-pager | grep -q 'Watchdog timeout' && test $(props "$m2" NRestarts) -gt $restarts"
check "after the watchdog restart: /Plant still there" reads "$m2"
check "after the watchdog restart: one cluster of 3 again" wait_for 60 one_cluster

finish
