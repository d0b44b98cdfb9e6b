package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	// 60 live fields take more than one LevelDB table block (4 KiB), so
	// the live state's size on disk is above 0 (sizes are by block).
	const fields, rounds = 60, 5
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
	if res.HistoryAfter != s.HistoryBytes {
		t.Errorf("history after the round %d, status says %d", res.HistoryAfter, s.HistoryBytes)
	}
}

// TestCompactionMetricsAndClusterSizes: /metrics serves the compaction
// series with the round's figures, and each node's report carries its
// sizes on disk into the others' cluster table.
func TestCompactionMetricsAndClusterSizes(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := nodetest.Cluster(t, 2, noAutoCompact)
	ctx := context.Background()
	text, err := nodes[1].Client().Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, text, "starling_compaction_last_timestamp_seconds", nil); v != 0 {
		t.Errorf("last compaction before any round = %v, want 0", v)
	}

	overwrite(t, nodes[0], 5, 10)
	// Large values too: a round gives the space back at once (and the
	// sizes, which LevelDB measures in its table files, show) only after
	// deleting 1 MiB or more.
	big := entity.String(strings.Repeat("x", 32<<10))
	for range 40 {
		if _, err := nodes[0].Entities().Set(ctx, "/Plant", "blob", big); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "node2 has node1's writes and its reported heads", func() bool {
		if nodes[1].Store().Status(ctx).MaxHeight != nodes[0].Store().Status(ctx).MaxHeight {
			return false
		}
		m, ok := nodes[1].Store().Members()[nodes[0].PeerID().String()]
		return ok && !m.Unknown
	})
	want := nodetest.EntitySnapshot(t, nodes[1])
	// node2 compacts once node1's heads bound the round.
	res := compactRound(t, nodes[1])
	if res.Members != 2 || res.ElementsDeleted == 0 {
		t.Errorf("round on node2: %+v, want 2 members and dead elements deleted", res)
	}

	text, err = nodes[1].Client().Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ok   func(float64) bool
	}{
		{"starling_compaction_rounds_total", func(v float64) bool { return v == 1 }},
		{"starling_compaction_reclaimed_bytes_total", func(v float64) bool { return v == float64(res.BytesDeleted) }},
		{"starling_compaction_members", func(v float64) bool { return v == 2 }},
		{"starling_compaction_last_timestamp_seconds", func(v float64) bool {
			return v >= float64(res.Started.Unix()) && v <= float64(time.Now().Unix()+1)
		}},
		// LevelDB's sizes are by table block: a live state this small
		// may measure 0, the history after the round does not.
		{"starling_store_live_bytes", func(v float64) bool { return v >= 0 }},
		{"starling_store_history_bytes", func(v float64) bool { return v > 0 }},
	} {
		if v := metricValue(t, text, c.name, nil); !c.ok(v) {
			t.Errorf("%s = %v after the round %+v", c.name, v, res)
		}
	}

	// node1 sees node2's sizes in its cluster table, from node2's reports.
	testutil.Eventually(t, 20*time.Second, "node1's cluster table shows node2's sizes", func() bool {
		v, ok := clusterState(t, nodes[0], "node2")
		return ok && v.HistoryBytes > 0
	})
	self, _ := clusterState(t, nodes[1], "node2")
	if !self.Self || self.HistoryBytes <= 0 {
		t.Errorf("node2's own row: %+v", self)
	}
	if got := nodetest.EntitySnapshot(t, nodes[1]); got != want {
		t.Errorf("node2's reads after compaction:\n got %s\nwant %s", got, want)
	}
}
