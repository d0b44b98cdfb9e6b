package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/nodestate"
)

// systemd's service notification (sd_notify(3)) for `run` under a unit
// of Type=notify: READY=1 once the node serves its API, STOPPING=1 when
// it begins to stop, and WATCHDOG=1 pings when the unit sets WatchdogSec.
// Without NOTIFY_SOCKET (not under systemd) every call does nothing.
//
// go-systemd's daemon package is systemd's own Go binding of the
// protocol (NOTIFY_SOCKET paths and abstract sockets, WATCHDOG_USEC and
// WATCHDOG_PID); it imports only the standard library and x/sys, so it
// adds no D-Bus code to the binary.

// sdNotify sends state to systemd; failures are logged, never fatal: a
// node that cannot tell systemd still serves (systemd then times out the
// start and says so in its own log).
func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// sdWatchdog pings systemd's watchdog every half WATCHDOG_USEC until ctx
// ends, each time after alive returns. alive is the node's Ready: the
// ping says its main locks (store health, sync state, clock check) are
// not deadlocked, not that it is ready: a node that is resyncing or has a
// full disk must not be restarted for it (its state is in /readyz). If
// alive blocks, pings stop and systemd kills the process with SIGABRT,
// whose goroutine dump lands in the journal, then restarts it
// (Restart=on-failure). Returns at once when no watchdog is set.
func sdWatchdog(ctx context.Context, log *slog.Logger, alive func(context.Context) error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: ignored", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		_ = alive(ctx) // not ready is still alive
		sdNotify(log, daemon.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sdStopping is the message sent when the node begins to stop.
const sdStopping = daemon.SdNotifyStopping

// sdStatus is the status line `systemctl status` shows: the node, its
// sync phase (JOINING, SYNCING, ACTIVE) and its API.
func sdStatus(nodeID string, phase nodestate.SyncPhase, apiAddr string) string {
	if apiAddr == "" {
		return fmt.Sprintf("STATUS=node %s %s", nodeID, phase)
	}
	return fmt.Sprintf("STATUS=node %s %s, API %s", nodeID, phase, apiAddr)
}

// sdReady tells systemd that n serves, and keeps the status line up to
// date as its sync phase changes.
func sdReady(log *slog.Logger, n *node.Node) {
	n.OnSyncPhase(func(p nodestate.SyncPhase) { sdNotify(log, sdStatus(n.NodeID(), p, n.APIAddr())) })
	sdNotify(log, daemon.SdNotifyReady+"\n"+sdStatus(n.NodeID(), n.SyncProgress().Phase, n.APIAddr()))
}
