package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestMocknetNodes runs three whole nodes on a libp2p mocknet (no
// sockets; node.WithHost): connected as a chain, they find each other
// through the address exchange, a write through one node's entity API
// is read through the others', and they agree on a cluster leader.
func TestMocknetNodes(t *testing.T) {
	nodes, _ := nodetest.MockCluster(t, 3, fastElection())
	for _, n := range nodes {
		if a := n.APIAddr(); a != "" {
			t.Errorf("%s serves its API on %s", n.NodeID(), a)
		}
	}
	ctx := context.Background()
	if _, err := nodes[0].Entities().Create(ctx, "/", "Sensor", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Entities().Set(ctx, "/s1", "temp", entity.Int(21)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		testutil.Eventually(t, 10*time.Second, n.NodeID()+" reads the write", func() bool {
			f, err := n.Entities().GetField("/s1", "temp")
			return err == nil && f.Value.Int == 21
		})
	}
	var l election.Leadership
	testutil.Eventually(t, 10*time.Second, "a cluster leader all agree on", func() bool {
		var ok bool
		l, ok = agreed(election.ClusterGroup, nodes...)
		return ok
	})
	if l.Leader != "node1" {
		t.Errorf("leader %s, want node1 (the lowest ID)", l.Leader)
	}
}
