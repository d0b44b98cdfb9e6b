package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestDamagedDatastoreRefused: a node whose datastore lost a table file
// does not start (it used to start ACTIVE with the table's keys gone),
// and the error says which file and what to do.
func TestDamagedDatastoreRefused(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "n1")
	nodetest.Init(t, dir, "n1")
	n := nodetest.Open(t, dir)
	if _, err := n.Entities().Create(ctx, "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Entities().Set(ctx, "/Plant", "f", entity.Int(1)); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// Move everything from the journal into a table.
	dbPath := filepath.Join(dir, api.DatastoreDir)
	ldb, err := crdt.OpenLevelDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := ldb.CompactPrefixes(ctx, []ds.Key{ds.NewKey("/")}); err != nil {
		t.Fatal(err)
	}
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(dbPath, "*.ldb"))
	if len(tables) == 0 {
		t.Fatal("no table file to delete")
	}
	if err := os.Remove(tables[0]); err != nil {
		t.Fatal(err)
	}

	n2, err := node.Open(ctx, dir)
	if err == nil {
		n2.Close()
		t.Fatal("a node with a missing table file started")
	}
	if !errors.Is(err, crdt.ErrDamaged) {
		t.Fatalf("open: %v, want crdt.ErrDamaged", err)
	}
	for _, want := range []string{filepath.Base(tables[0]), "mv " + dbPath, "state transfer", "backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("refused: %v", err)
	if _, statErr := os.Stat(filepath.Join(dir, api.APIFile)); statErr == nil {
		t.Error("a refused node left api.json behind")
	}
}

// TestStoreWritableReported: the status JSON and /metrics say whether
// the datastore takes writes.
func TestStoreWritableReported(t *testing.T) {
	ctx := context.Background()
	n := nodetest.Start(t, "n1")
	st, err := n.Client().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Store.Writable || st.Store.WriteError != "" {
		t.Fatalf("status: writable %v, write_error %q", st.Store.Writable, st.Store.WriteError)
	}
	text, err := n.Client().Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, text, "starling_store_writable", nil); v != 1 {
		t.Fatalf("starling_store_writable = %v, want 1", v)
	}
	if v := metricValue(t, text, "starling_compaction_last_timestamp_seconds", nil); v < 0 {
		t.Fatal("the monitor's metrics are gone")
	}
}
