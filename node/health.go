package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/starling-sync/starling/httpapi"
	"github.com/starling-sync/starling/nodestate"
)

var _ httpapi.Readiness = (*Node)(nil)

// Ready returns nil when the node takes reads and writes: its store
// writes (the disk is not full), it is ACTIVE (not joining or
// resyncing by state transfer), its clock is not off the cluster's
// (then it refuses writes), and it is not stopping. GET /readyz answers
// 503 otherwise. It is cheap: no I/O, a few locks.
func (n *Node) Ready(context.Context) error {
	if n.closing.Load() {
		return errors.New("node: stopping")
	}
	if h := n.ldb.Health(); !h.Writable {
		return fmt.Errorf("node: store cannot write: %s", h.WriteError)
	}
	if p := n.SyncProgress().Phase; p != nodestate.PhaseActive {
		return fmt.Errorf("node: %s, not ACTIVE", p)
	}
	if n.mon.ClockStatus().Skewed {
		return errors.New("node: clock off the cluster's, writes refused")
	}
	return nil
}
