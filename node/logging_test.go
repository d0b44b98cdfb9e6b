package node_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestLogLinesHaveEachKeyOnce runs two nodes with one JSON logger at
// debug level and checks that no line carries a key twice: each part is
// given the node's logger and names its own component (before, p2p lines
// said component=p2p twice and election lines node=X twice).
func TestLogLinesHaveEachKeyOnce(t *testing.T) {
	defer testutil.FailOnPanic(t)
	var buf testutil.LogBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nodes := nodetest.Cluster(t, 2, node.WithLogger(log))
	ctx := context.Background()
	if _, err := nodes[0].Entities().Create(ctx, "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Entities().Set(ctx, "/Plant", "temp", entity.Int(21)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "a cluster leader", func() bool {
		return nodes[1].Election().Leader(election.ClusterGroup).HasLeader()
	})
	// Parts whose loggers were derived twice must have logged: pubsub
	// (p2p's), go-ds-crdt (crdt's), the election, LevelDB.
	want := map[string]bool{"pubsub": false, "go-ds-crdt": false, "election": false, "leveldb": false}
	testutil.Eventually(t, 20*time.Second, "lines from pubsub, go-ds-crdt, election and leveldb", func() bool {
		for _, l := range buf.Lines() {
			var rec struct{ Component string }
			if json.Unmarshal(l, &rec) == nil {
				if _, ok := want[rec.Component]; ok {
					want[rec.Component] = true
				}
			}
		}
		for _, ok := range want {
			if !ok {
				return false
			}
		}
		return true
	})
	lines := buf.Lines()
	bad := 0
	for _, l := range lines {
		rep, err := testutil.RepeatedKeys(l)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep) > 0 && bad < 5 {
			t.Errorf("keys %v repeated in %s", rep, l)
		}
		if len(rep) > 0 {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines repeat a key", bad, len(lines))
	}
}
