package crdt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dstest "github.com/ipfs/go-datastore/test"
	"github.com/starling-sync/starling/internal/testutil"
)

// fastOpts keeps background timers short for tests.
func fastOpts() Options {
	o := DefaultOptions()
	o.RebroadcastInterval = 500 * time.Millisecond
	o.HeadsResendDelay = 100 * time.Millisecond
	o.DAGSyncerTimeout = 5 * time.Second
	return o
}

func key(i int) ds.Key { return ds.NewKey(fmt.Sprintf("/k/%06d", i)) }

func mustGet(t testing.TB, s *Store, k ds.Key) string {
	t.Helper()
	v, err := s.Get(context.Background(), k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	return string(v)
}

func countKeys(t testing.TB, s *Store, prefix string) int {
	t.Helper()
	res, err := s.Query(context.Background(), query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	return len(all)
}

func TestLevelDBConformance(t *testing.T) {
	db, err := OpenLevelDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dstest.SubtestAll(t, db)
}

func TestPutGetDeleteAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openTestNode(t, nil, "a", dir, fastOpts())
	if err := n.store.Put(ctx, ds.NewKey("/x"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := n.store.Apply(ctx, []Op{
		{Key: ds.NewKey("/y"), Value: []byte("2")},
		{Key: ds.NewKey("/z"), Value: []byte("3")},
		{Key: ds.NewKey("/y"), Value: []byte("2b")}, // last op on a key wins
	}); err != nil {
		t.Fatal(err)
	}
	if err := n.store.Delete(ctx, ds.NewKey("/z")); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, n.store, ds.NewKey("/y")); got != "2b" {
		t.Fatalf("/y = %q, want 2b", got)
	}
	if _, err := n.store.Get(ctx, ds.NewKey("/z")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("/z after delete: err = %v, want ErrNotFound", err)
	}
	n.close(t)
	if err := n.store.Put(ctx, ds.NewKey("/late"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: err = %v, want ErrClosed", err)
	}

	n = openTestNode(t, nil, "a", dir, fastOpts())
	defer n.close(t)
	if got := mustGet(t, n.store, ds.NewKey("/x")); got != "1" {
		t.Fatalf("/x after reopen = %q", got)
	}
	if got := mustGet(t, n.store, ds.NewKey("/y")); got != "2b" {
		t.Fatalf("/y after reopen = %q", got)
	}
	if ok, _ := n.store.Has(ctx, ds.NewKey("/z")); ok {
		t.Fatal("/z is back after reopen")
	}
}

func TestApplyTooLarge(t *testing.T) {
	n := openTestNode(t, nil, "a", t.TempDir(), fastOpts())
	defer n.close(t)
	err := n.store.Put(context.Background(), ds.NewKey("/big"), make([]byte, 600<<10))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestGroupCommitBatchesConcurrentWriters(t *testing.T) {
	n := openTestNode(t, nil, "a", t.TempDir(), fastOpts())
	defer n.close(t)
	const writers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := n.store.Put(context.Background(), key(w*each+i), []byte("v")); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := n.store.Status(context.Background())
	if st.OpsCommitted != writers*each {
		t.Fatalf("ops committed = %d, want %d", st.OpsCommitted, writers*each)
	}
	// With 32 concurrent writers, groups must hold several writes each.
	if st.Commits*4 > st.OpsCommitted {
		t.Fatalf("%d commits for %d writes: group commit is not grouping", st.Commits, st.OpsCommitted)
	}
	t.Logf("%d writes in %d deltas", st.OpsCommitted, st.Commits)
	if got := countKeys(t, n.store, "/k"); got != writers*each {
		t.Fatalf("%d keys readable, want %d", got, writers*each)
	}
}

// TestSlowPublishDoesNotHoldWrites: a write is acknowledged once it is
// durable, whatever the gossip publish of its delta is doing; the held
// broadcasts go out when publishing moves again.
func TestSlowPublishDoesNotHoldWrites(t *testing.T) {
	_, a, b := twoNodes(t, fastOpts(), true)
	a.tr.publishing.Lock()
	held := true
	defer func() {
		if held {
			a.tr.publishing.Unlock()
		}
	}()
	const n = 20
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := a.store.Put(ctx, key(i), []byte("v"))
		cancel()
		if err != nil {
			t.Fatalf("write %d while publishing is held: %v", i, err)
		}
	}
	a.tr.publishing.Unlock()
	held = false
	testutil.Eventually(t, 10*time.Second, "b holds every write", func() bool {
		return countKeys(t, b.store, "/k") == n
	})
}

func TestChangeFeed(t *testing.T) {
	net := newMemNet()
	a := openTestNode(t, net, "a", t.TempDir(), fastOpts())
	defer a.close(t)
	b := openTestNode(t, net, "b", t.TempDir(), fastOpts())
	defer b.close(t)
	subA := a.store.Subscribe(ds.NewKey("/watched"), 16)
	defer subA.Close()
	subB := b.store.Subscribe(ds.NewKey("/"), 16)
	defer subB.Close()

	ctx := context.Background()
	if err := a.store.Put(ctx, ds.NewKey("/other/x"), []byte("no")); err != nil {
		t.Fatal(err)
	}
	if err := a.store.Put(ctx, ds.NewKey("/watched/x"), []byte("yes")); err != nil {
		t.Fatal(err)
	}
	next := func(sub Feed) Change {
		select {
		case c := <-sub.C():
			return c
		case <-time.After(20 * time.Second): // generous: CI machines are busy
			t.Fatal("no change within 20s")
			return Change{}
		}
	}
	c := next(subA)
	if c.Key.String() != "/watched/x" || string(c.Value) != "yes" || !c.Local || c.Deleted {
		t.Fatalf("local change = %+v", c)
	}
	// B sees both keys as remote changes, in some order.
	seen := map[string]bool{}
	for len(seen) < 2 {
		c := next(subB)
		if c.Local {
			t.Fatalf("remote change marked local: %+v", c)
		}
		seen[c.Key.String()] = true
	}
	// A remote change is delivered as go-ds-crdt applies it, before its
	// batch is readable (see Subscribe); a Delete issued at that moment
	// finds nothing to delete.
	testutil.Eventually(t, 20*time.Second, "/watched/x readable on b", func() bool {
		ok, _ := b.store.Has(ctx, ds.NewKey("/watched/x"))
		return ok
	})
	if err := b.store.Delete(ctx, ds.NewKey("/watched/x")); err != nil {
		t.Fatal(err)
	}
	c = next(subA)
	if c.Key.String() != "/watched/x" || !c.Deleted || c.Local {
		t.Fatalf("remote delete = %+v", c)
	}
}

// TestPartitionHeal writes on both sides of a partition, heals, and checks
// that every key is everywhere.
func TestPartitionHeal(t *testing.T) {
	net := newMemNet()
	var nodes []*testNode
	for _, id := range []string{"a", "b", "c"} {
		n := openTestNode(t, net, id, t.TempDir(), fastOpts())
		defer n.close(t)
		nodes = append(nodes, n)
	}
	ctx := context.Background()
	if err := nodes[0].store.Put(ctx, ds.NewKey("/before"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, 5*time.Second, "initial write replicated to "+n.id, func() bool {
			ok, _ := n.store.Has(ctx, ds.NewKey("/before"))
			return ok
		})
	}
	net.partition([]string{"a", "b"}, []string{"c"})
	const perSide = 500
	var wg sync.WaitGroup
	for side, n := range []*testNode{nodes[0], nodes[2]} {
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(n *testNode, side, w int) {
				defer wg.Done()
				for i := w; i < perSide; i += 8 {
					if err := n.store.Put(ctx, ds.NewKey(fmt.Sprintf("/side%d/%04d", side, i)), []byte("v")); err != nil {
						t.Error(err)
						return
					}
				}
			}(n, side, w)
		}
	}
	wg.Wait()
	if got := countKeys(t, nodes[2].store, "/side0"); got != 0 {
		t.Fatalf("c saw %d keys of the other side during the partition", got)
	}
	net.heal()
	start := time.Now()
	for _, n := range nodes {
		for _, p := range nodes {
			if p != n {
				n.store.PeerConnected(p.id)
			}
		}
	}
	for _, n := range nodes {
		testutil.Eventually(t, 20*time.Second, "all keys on "+n.id, func() bool {
			return countKeys(t, n.store, "/side0") == perSide && countKeys(t, n.store, "/side1") == perSide
		})
	}
	t.Logf("healed %d writes in %v", 2*perSide, time.Since(start))
}

func TestRejectsTamperedBlock(t *testing.T) {
	net := newMemNet()
	a := openTestNode(t, net, "a", t.TempDir(), fastOpts())
	defer a.close(t)
	b := openTestNode(t, net, "b", t.TempDir(), fastOpts())
	defer b.close(t)
	net.partition([]string{"a"}, []string{"b"}) // no fetch fallback
	if err := a.store.Put(context.Background(), ds.NewKey("/x"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	heads := a.store.headCIDs(context.Background())
	msg, err := a.store.bc.headsMessage(heads, true)
	if err != nil {
		t.Fatal(err)
	}
	env, err := decodeEnvelope(msg)
	if err != nil || len(env.blocks) != 1 {
		t.Fatalf("heads message: %v, %d blocks", err, len(env.blocks))
	}
	env.blocks[0].data = append([]byte{}, env.blocks[0].data...)
	env.blocks[0].data[len(env.blocks[0].data)-1] ^= 0xff
	if err := b.store.bc.accept("a", env.encode()); !errors.Is(err, errEnvelope) {
		t.Fatalf("tampered block accepted: err = %v", err)
	}
	if b.store.bc.queueLen() != 0 {
		t.Fatal("heads of a tampered message were queued")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	net := newMemNet()
	a := openTestNode(t, net, "a", t.TempDir(), fastOpts())
	b := openTestNode(t, net, "b", t.TempDir(), fastOpts())
	sub := b.store.Subscribe(ds.NewKey("/"), 4)
	for i := 0; i < 20; i++ {
		if err := a.store.Put(context.Background(), key(i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	a.store.PeerConnected("b")
	a.close(t)
	b.close(t)
	if err := b.store.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
	for range sub.C() { // closed by the store
	}
	testutil.Eventually(t, 5*time.Second, "goroutines back to the start count", func() bool {
		return runtime.NumGoroutine() <= before+2
	})
}

// TestBranchRequestsHealLongChain gives the nodes no bitswap at all: a
// chain of one delta per write, made during a partition, must reach the
// other node through carried blocks and branch requests alone, in a few
// round trips.
func TestBranchRequestsHealLongChain(t *testing.T) {
	net := newMemNet()
	a := openTestNodeFetch(t, net, "a", t.TempDir(), fastOpts(), false)
	defer a.close(t)
	b := openTestNodeFetch(t, net, "b", t.TempDir(), fastOpts(), false)
	defer b.close(t)
	net.partition([]string{"a"}, []string{"b"})
	ctx := context.Background()
	const writes = 2000
	for i := 0; i < writes; i++ { // one writer: one delta per write
		if err := a.store.Put(ctx, key(i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if c := a.store.Status(ctx).Commits; c != writes {
		t.Fatalf("%d commits, want one per write (%d)", c, writes)
	}
	net.heal()
	start := time.Now()
	a.store.PeerConnected("b")
	testutil.Eventually(t, 20*time.Second, "chain replicated", func() bool { return countKeys(t, b.store, "/k") == writes })
	st := b.store.Status(ctx)
	if st.Requested == 0 || st.Dirty {
		t.Fatalf("status after heal: %+v", st)
	}
	t.Logf("chain of %d deltas healed in %v with %d blocks requested", writes, time.Since(start), st.Requested)
}

// TestCommitWritesAtOnce: Commit writes its ops as one delta of their
// own, on the caller's goroutine, with the rules of Apply (last op on a
// key wins, size limit, durable and in the feed as local on return).
func TestCommitWritesAtOnce(t *testing.T) {
	ctx := context.Background()
	n := openTestNode(t, nil, "a", t.TempDir(), fastOpts())
	sub := n.store.Subscribe(ds.NewKey("/"), 16)
	defer sub.Close()
	before := n.store.Status(ctx)
	if err := n.store.Commit(ctx, []Op{
		{Key: ds.NewKey("/c/1"), Value: []byte("a")},
		{Key: ds.NewKey("/c/2"), Value: []byte("b")},
		{Key: ds.NewKey("/c/1"), Value: []byte("a2")},
	}); err != nil {
		t.Fatal(err)
	}
	after := n.store.Status(ctx)
	if after.Commits != before.Commits+1 || after.OpsCommitted != before.OpsCommitted+2 || after.PendingOps != 0 {
		t.Fatalf("status after one Commit of 2 keys: %+v (before %+v)", after, before)
	}
	if got := mustGet(t, n.store, ds.NewKey("/c/1")); got != "a2" {
		t.Fatalf("/c/1 = %q, want a2 (last op wins)", got)
	}
	for range 2 {
		select {
		case c := <-sub.C():
			if !c.Local {
				t.Fatalf("own commit's change not local: %+v", c)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no change within 20s")
		}
	}
	if err := n.store.Commit(ctx, []Op{{Key: ds.NewKey("/big"), Value: make([]byte, 600<<10)}}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: err = %v, want ErrTooLarge", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.store.Commit(cctx, []Op{{Key: ds.NewKey("/c/3"), Value: nil}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	if ok, _ := n.store.Has(ctx, ds.NewKey("/c/3")); ok {
		t.Fatal("a Commit cancelled before it began was written")
	}
	n.close(t)
	if err := n.store.Commit(ctx, []Op{{Key: ds.NewKey("/late")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: err = %v, want ErrClosed", err)
	}
}

// TestCommitBesideApply: Commit and the group committer write at the same
// time; every write lands, and each is in the feed marked local (the
// local-key bookkeeping of one commit must not leak into the other).
func TestCommitBesideApply(t *testing.T) {
	ctx := context.Background()
	n := openTestNode(t, nil, "a", t.TempDir(), fastOpts())
	defer n.close(t)
	const writers, each = 8, 40
	sub := n.store.Subscribe(ds.NewKey("/"), 2*writers*each)
	defer sub.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := n.store.Commit(ctx, []Op{{Key: ds.NewKey(fmt.Sprintf("/commit/%d/%d", w, i)), Value: []byte("v")}}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range each {
				if err := n.store.Apply(ctx, []Op{{Key: ds.NewKey(fmt.Sprintf("/apply/%d/%d", w, i)), Value: []byte("v")}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c, a := countKeys(t, n.store, "/commit"), countKeys(t, n.store, "/apply"); c != writers*each || a != writers*each {
		t.Fatalf("%d committed and %d applied keys, want %d each", c, a, writers*each)
	}
	for got := 0; got < 2*writers*each; got++ {
		select {
		case c := <-sub.C():
			if !c.Local {
				t.Fatalf("change %d of own writes not marked local: %+v", got, c)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d changes within 20s", got, 2*writers*each)
		}
	}
	if sub.Overflowed() {
		t.Fatal("feed overflowed")
	}
}
