package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
	"github.com/starling-sync/starling/nodestate"
)

// TestJoinCompactedSource: a fresh node joins, by state transfer, a node
// whose history was compacted (markers included), and becomes ACTIVE
// with every value.
func TestJoinCompactedSource(t *testing.T) {
	ctx := context.Background()
	srcDir := filepath.Join(t.TempDir(), "node1")
	nodetest.Init(t, srcDir, "node1")
	src := nodetest.Open(t, srcDir)
	if _, err := src.Entities().Create(ctx, "/", "t", "E"); err != nil {
		t.Fatal(err)
	}
	const fields, rounds = 50, 300
	for v := range rounds {
		_, err := src.Entities().Update(ctx, func(tx *entity.Tx) error {
			for f := range fields {
				if err := tx.Set("/E", fmt.Sprintf("f%d", f), entity.Int(int64(v))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := src.Store().Compact(ctx, nil)
	if err != nil || st.MarkersDeleted == 0 {
		t.Fatalf("compact: %+v, %v", st, err)
	}
	// The source restarts (its store reopens on the compacted state).
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	src = nodetest.Open(t, srcDir)
	if f, err := src.Entities().GetField("/E", "f7"); err != nil || f.Value.String() != entity.Int(rounds-1).String() {
		t.Fatalf("f7 on the restarted source: %+v, %v (heads %v, phase %v)", f, err, src.Store().Status(ctx).Heads, src.SyncProgress().Phase)
	}
	dir := filepath.Join(t.TempDir(), "node2")
	nodetest.Init(t, dir, "node2")
	j := nodetest.Open(t, dir, node.WithConfig(func(c *node.Config) { c.Peers = []string{src.P2P().Addrs()[0].String()} }))
	testutil.Eventually(t, 20*time.Second, "node2 ACTIVE", func() bool { return j.SyncProgress().Phase == nodestate.PhaseActive })
	f, err := j.Entities().GetField("/E", "f7")
	if err != nil || f.Value.String() != entity.Int(rounds-1).String() {
		t.Fatalf("f7 on node2: %+v, %v; sync %+v; store %+v", f, err, j.SyncProgress(), j.Store().Status(ctx))
	}
}
