package crdt

import (
	"context"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/starling-sync/starling/internal/testutil"
)

// slowMergeDB delays the commit of go-ds-crdt's batches that write a
// set element (elemDelay) or a tombstone (tombDelay) of one key, to
// widen the window in which two merges of that key can interleave.
type slowMergeDB struct {
	*LevelDB
	key                  string
	elemDelay, tombDelay time.Duration
}

func (d *slowMergeDB) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := d.LevelDB.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &slowBatch{Batch: b, db: d}, nil
}

type slowBatch struct {
	ds.Batch
	db          *slowMergeDB
	elem, tombs bool
}

func (b *slowBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	ks := k.String()
	b.elem = b.elem || strings.Contains(ks, "/s/s"+b.db.key+"/")
	b.tombs = b.tombs || strings.Contains(ks, "/s/t"+b.db.key+"/")
	return b.Batch.Put(ctx, k, v)
}

func (b *slowBatch) Commit(ctx context.Context) error {
	if b.tombs {
		time.Sleep(b.db.tombDelay)
	}
	if b.elem {
		time.Sleep(b.db.elemDelay)
	}
	return b.Batch.Commit(ctx)
}

// TestConcurrentMergesOfPutAndDelete: a node that merges a branch in
// which a put and the delete of the same key sit on two paths (the
// delete's block D above the put's block P, and P also below a sibling
// block Q) merges D and P on two of go-ds-crdt's DAG workers at once.
// go-ds-crdt v0.6.8 reads and writes a key's value outside one lock
// there (putElems checks for a tombstone, then commits the value in a
// batch; putTombs, not under putElems' lock, commits the tombstone in
// between), so the key stayed visible on that node alone, with a
// tombstone for its only version: the divergence a chaos run found (a
// delete acknowledged by n4 still present on n5, identical heads).
func TestConcurrentMergesOfPutAndDelete(t *testing.T) {
	net := newMemNet()
	ctx := context.Background()
	a := openTestNode(t, net, "a", t.TempDir(), fastOpts())
	defer a.close(t)
	b := openTestNode(t, net, "b", t.TempDir(), fastOpts())
	defer b.close(t)
	net.partition([]string{"a", "b"}, []string{"c"})
	c := openTestNodeOn(t, net, "c", t.TempDir(), fastOpts(), true, func(db *LevelDB) ds.Batching {
		return &slowMergeDB{LevelDB: db, key: "/race", tombDelay: 50 * time.Millisecond, elemDelay: 150 * time.Millisecond}
	})
	defer c.close(t)

	k := ds.NewKey("/race")
	if err := a.store.Put(ctx, k, []byte("v")); err != nil { // P
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "b has the put", func() bool {
		ok, _ := b.store.Has(ctx, k)
		return ok
	})
	net.partition([]string{"a"}, []string{"b"})
	if err := b.store.Put(ctx, ds.NewKey("/other"), []byte("q")); err != nil { // Q, above P
		t.Fatal(err)
	}
	if err := a.store.Delete(ctx, k); err != nil { // D, above P
		t.Fatal(err)
	}
	net.heal()
	net.partition([]string{"a", "b"}, []string{"c"})
	b.store.PeerConnected("a")
	a.store.PeerConnected("b")
	testutil.Eventually(t, 5*time.Second, "a has Q", func() bool {
		ok, _ := a.store.Has(ctx, ds.NewKey("/other"))
		return ok
	})
	if err := a.store.Put(ctx, ds.NewKey("/top"), []byte("h")); err != nil { // H, above D and Q
		t.Fatal(err)
	}
	if hs := headStrings(ctx, a.store.crdt()); len(hs) != 1 {
		t.Fatalf("a has %d heads, want the one above D and Q", len(hs))
	}

	// c meets a only: it merges H's branch, D and Q side by side.
	net.heal()
	net.partition([]string{"b"}, []string{"c"})
	c.store.PeerConnected("a")
	a.store.PeerConnected("c")
	testutil.Eventually(t, 10*time.Second, "c has a's heads", func() bool {
		hs, ok := c.store.StableHeads(ctx) // the whole branch merged
		return ok && strings.Join(hs, ",") == strings.Join(headStrings(ctx, a.store.crdt()), ",")
	})
	if ok, err := c.store.Has(ctx, ds.NewKey("/other")); err != nil || !ok {
		t.Fatalf("c lacks Q's key: %v %v", ok, err)
	}
	if ok, err := c.store.Has(ctx, k); err != nil || ok {
		t.Fatalf("c has the key a deleted (has %v, err %v); a has it: %v", ok, err, mustHas(t, a.store, k))
	}
}

func mustHas(t testing.TB, s *Store, k ds.Key) bool {
	t.Helper()
	ok, err := s.Has(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}
