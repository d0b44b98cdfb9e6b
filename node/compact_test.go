package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// noAutoCompact keeps the automatic policy out of a test's way, through
// the config key as an operator would.
var noAutoCompact = node.WithConfig(func(c *node.Config) { c.CompactEvery = node.CompactOff })

// overwrite writes rounds versions of fields fields of /Plant: every
// version but the last of each field is dead history.
func overwrite(t *testing.T, n *node.Node, fields, rounds int) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Entities().Get("/Plant"); err != nil {
		if _, err := n.Entities().Create(ctx, "/", "Site", "Plant"); err != nil {
			t.Fatal(err)
		}
	}
	for r := range rounds {
		for f := range fields {
			if _, err := n.Entities().Set(ctx, "/Plant", fmt.Sprintf("f%d", f), entity.Int(int64(r))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// compactRound asks the node for a round through its API until one runs
// (a round skips while the store is between states, e.g. merging).
func compactRound(t *testing.T, n *node.Node) *api.CompactResult {
	t.Helper()
	var res *api.CompactResult
	testutil.Eventually(t, 20*time.Second, "a compaction round that runs", func() bool {
		r, err := n.Client().Compact(context.Background())
		if errors.Is(err, api.ErrCompactBusy) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		res = r
		return r.Skipped == ""
	})
	return res
}

// TestCompactEndpoint: POST /v1/store/compact runs a round on the real
// store, reclaims the dead history, and `status` and /metrics show it.
func TestCompactEndpoint(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1", noAutoCompact)
	const fields, rounds = 10, 20
	overwrite(t, n, fields, rounds)
	before := nodetest.EntitySnapshot(t, n)

	res := compactRound(t, n)
	t.Logf("round: %+v", res)
	if res.ElementsDeleted < fields*(rounds-1) || res.BlocksDeleted == 0 || res.BytesDeleted <= 0 || res.Members != 1 {
		t.Errorf("round %+v: want at least %d elements and some blocks deleted by one member", res, fields*(rounds-1))
	}
	if res.Took <= 0 || res.Started.IsZero() {
		t.Errorf("round %+v: no start or duration", res)
	}
	if after := nodetest.EntitySnapshot(t, n); after != before {
		t.Errorf("reads changed by compaction:\n got %s\nwant %s", after, before)
	}

	st, err := n.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := st.Store
	if s.CompactRounds != 1 || s.CompactReclaimed != res.BytesDeleted || s.LastReclaimed != res.BytesDeleted || s.LastCompacted.IsZero() || s.CompactMembers != 1 {
		t.Errorf("status after a round: %+v; round %+v", s, res)
	}
	// The round gave LevelDB's ranges back, which writes the memtable to
	// tables: both sizes are on disk now.
	if s.LiveBytes <= 0 || s.HistoryBytes <= 0 {
		t.Errorf("status sizes: live %d, history %d; want both above 0", s.LiveBytes, s.HistoryBytes)
	}
}
