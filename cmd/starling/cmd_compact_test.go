package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// noAutoCompact keeps the automatic policy out of a test's way.
var noAutoCompact = node.WithConfig(func(c *node.Config) { c.CompactEvery = node.CompactOff })

// overwriteFields writes rounds versions of fields fields of /Plant.
func overwriteFields(t *testing.T, n *node.Node, fields, rounds int) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Entities().Create(ctx, "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	for r := range rounds {
		for f := range fields {
			if _, err := n.Entities().Set(ctx, "/Plant", fmt.Sprintf("f%d", f), entity.Int(int64(r))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// treeJSON is what the node's API reads of the whole entity tree.
func treeJSON(t *testing.T, n *node.Node) string {
	t.Helper()
	tr, err := n.Client().Tree(context.Background(), "/", -1, true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(tr)
	return string(b)
}

// TestCompactOffline: `compact` on a stopped node's directory reclaims
// its dead history; the node then reads what it read before.
func TestCompactOffline(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "node1")
	nodetest.Init(t, dir, "node1")
	n := nodetest.Open(t, dir, noAutoCompact)
	const fields, rounds = 20, 10
	overwriteFields(t, n, fields, rounds)
	want := treeJSON(t, n)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	r := runApp(t, "", "compact", "--data", dir, "--json")
	if r.code != 0 {
		t.Fatalf("compact --json: %+v", r)
	}
	var res api.CompactResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("compact --json printed %q: %v", r.stdout, err)
	}
	if res.Skipped != "" || res.ElementsDeleted < fields*(rounds-1) || res.BlocksDeleted == 0 || res.Members != 1 {
		t.Errorf("offline round: %+v", res)
	}
	if res.HistoryBefore <= 0 || res.HistoryAfter >= res.HistoryBefore {
		t.Errorf("history %d before, %d after: want smaller", res.HistoryBefore, res.HistoryAfter)
	}

	// A second round: nothing dead is left; the human output says so.
	r = runApp(t, "", "compact", "--data", dir)
	t.Logf("second round:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, "offline") || !strings.Contains(r.stdout, "reclaimed") || !strings.Contains(r.stdout, "0 elements") {
		t.Errorf("second round: %+v", r)
	}

	n = nodetest.Open(t, dir, noAutoCompact)
	if got := treeJSON(t, n); got != want {
		t.Errorf("reads after an offline compaction:\n got %s\nwant %s", got, want)
	}
	if h := n.Store().Status(context.Background()).HistoryBytes; h >= res.HistoryBefore {
		t.Errorf("history after reopening %d, before the round %d", h, res.HistoryBefore)
	}
	// The store takes writes on top of the compacted history.
	if _, err := n.Entities().Set(context.Background(), "/Plant", "f0", entity.Int(99)); err != nil {
		t.Fatal(err)
	}
}

// TestCompactRefusesWhatIsNotANode: a directory that is not a node's, a
// node's that does not record its members while it may have peers; a
// node that never ran has nothing to compact (exit 0).
func TestCompactRefusesWhatIsNotANode(t *testing.T) {
	tmp := t.TempDir()
	r := runApp(t, "", "compact", "--data", tmp)
	if r.code != 1 || !strings.Contains(r.stderr, "is not a starling node's data directory") {
		t.Errorf("empty dir: %+v", r)
	}
	r = runApp(t, "", "compact", "--data", filepath.Join(tmp, "missing"))
	if r.code != 1 || !strings.Contains(r.stderr, "is not a starling node's data directory") {
		t.Errorf("missing dir: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(tmp, "missing")); err == nil {
		t.Error("compact created the missing directory")
	}
	r = runApp(t, "", "compact")
	if r.code != exitUsage {
		t.Errorf("no --data: %+v", r)
	}

	fresh := filepath.Join(tmp, "fresh")
	nodetest.Init(t, fresh, "fresh")
	r = runApp(t, "", "compact", "--data", fresh)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing compacted") || !strings.Contains(r.stdout, "never run") {
		t.Errorf("node that never ran: %+v", r)
	}

	// A node with discovery on whose datastore has no member table (last
	// run by a version without compaction).
	old := filepath.Join(tmp, "old")
	if _, err := node.Init(old, node.InitOptions{Settings: node.Settings{NodeID: "old", APIAddr: "127.0.0.1:0"}}); err != nil {
		t.Fatal(err)
	}
	db, err := crdt.OpenLevelDB(filepath.Join(old, api.DatastoreDir))
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	r = runApp(t, "", "compact", "--data", old)
	if r.code != 1 || !strings.Contains(r.stderr, "which nodes share its data") || !strings.Contains(r.stderr, "starling run --data "+old) {
		t.Errorf("node without a member table: %+v", r)
	}
}

// TestCompactOnline: with a node running on DIR, `compact` asks it; then
// `status` shows the round.
func TestCompactOnline(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1", noAutoCompact)
	overwriteFields(t, n, 10, 10)
	want := treeJSON(t, n)
	dir := n.Dir()
	var r result
	testutil.Eventually(t, 20*time.Second, "a round that runs", func() bool {
		r = runApp(t, "", "compact", "--data", dir)
		if r.code != 0 {
			t.Fatalf("compact: %+v", r)
		}
		return !strings.Contains(r.stdout, "nothing compacted")
	})
	for _, s := range []string{"by its running node", "reclaimed", "90 elements", "members", "history"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("compact output lacks %q:\n%s", s, r.stdout)
		}
	}
	if got := treeJSON(t, n); got != want {
		t.Errorf("reads after compaction:\n got %s\nwant %s", got, want)
	}
	r = runApp(t, "", "status", "--data", dir)
	for _, s := range []string{"storage", "history", "compaction", "last round", "reclaimed", "1 round since start"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("status lacks %q:\n%s", s, r.stdout)
		}
	}
	// Through --api and --token, with JSON.
	r = runApp(t, "", "compact", "--api", n.APIAddr(), "--token", n.Token(), "--json")
	var res api.CompactResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Members != 1 {
		t.Errorf("compact --api --json: %+v", r)
	}
}

func TestCompactProgress(t *testing.T) {
	if got := compactProgressLine(crdt.CompactProgress{Done: 450, Total: 1000}, 1200*time.Millisecond); got !=
		"compacting [=============>                ]  45%  450/1000 blocks  1.2s" {
		t.Errorf("progress line %q", got)
	}
	var out bytes.Buffer
	b := newCompactBar(&out)
	for done := 100; done <= 2000; done += 100 {
		b.update(crdt.CompactProgress{Done: done, Total: 2000})
	}
	b.done()
	// Not a terminal: the first line, then one per tenth, the last at 100%.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 11 || !strings.Contains(lines[10], "100%  2000/2000 blocks") {
		t.Errorf("progress on a pipe:\n%s", out.String())
	}
}
