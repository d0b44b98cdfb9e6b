package kv_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	offline "github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"

	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/entity"
)

// The replicated store is the entity tree's backend as it is: both
// packages alias this package's types, and neither imports the other.
var _ entity.Backend = (*crdt.Store)(nil)

// openStores opens a store that does not replicate in dir, and an entity
// tree on it.
func openStores(t *testing.T, dir string) (*crdt.Store, *entity.Store, func()) {
	t.Helper()
	db, err := crdt.OpenLevelDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	bs := blockstore.NewBlockstore(namespace.Wrap(db, ds.NewKey("/blocks")))
	dag := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
	cs, err := crdt.Open(context.Background(), db, dag, nil, crdt.DefaultOptions())
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	es, err := entity.Open(context.Background(), cs, entity.Options{NodeID: "n1"})
	if err != nil {
		cs.Close()
		db.Close()
		t.Fatal(err)
	}
	return cs, es, func() {
		es.Close()
		if err := cs.Close(); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestEntityOnCrdt writes the entity tree through crdt.Store directly:
// one Update is one delta, concurrent Updates share deltas, and the tree
// reads back from the store after a restart.
func TestEntityOnCrdt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cs, es, closeAll := openStores(t, dir)
	if _, err := es.Create(ctx, "/", "Sensor", "S"); err != nil {
		t.Fatal(err)
	}
	before := cs.Status(ctx).Commits
	if _, err := es.Set(ctx, "/S", "v", entity.Int(1)); err != nil {
		t.Fatal(err)
	}
	if got := cs.Status(ctx).Commits - before; got != 1 {
		t.Fatalf("one Update made %d deltas, want 1", got)
	}
	const writers = 32
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := es.Set(ctx, "/S", fmt.Sprintf("f%d", w), entity.Int(int64(w))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := cs.Status(ctx); st.Commits-before > 1+writers || st.PendingOps != 0 {
		t.Fatalf("status after %d concurrent Updates: %+v", writers, st)
	}
	closeAll()

	_, es, closeAll = openStores(t, dir)
	defer closeAll()
	for w := range writers {
		f, err := es.GetField("/S", fmt.Sprintf("f%d", w))
		if err != nil || f.Value.Int != int64(w) {
			t.Fatalf("f%d after restart: %+v, %v", w, f, err)
		}
	}
}
