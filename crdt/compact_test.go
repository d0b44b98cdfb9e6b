package crdt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	offline "github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-datastore/namespace"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/starling-sync/starling/internal/testutil"
)

// noAutoCompact keeps the automatic policy out of a test's way.
func noAutoCompact(o Options) Options {
	o.CompactInterval = -1
	return o
}

// snapshotKV reads every key under prefix as key=value.
func snapshotKV(t testing.TB, s *Store, prefix string) map[string]string {
	t.Helper()
	res, err := s.Query(context.Background(), query.Query{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	out := make(map[string]string)
	for r := range res.Next() {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		out[r.Key] = string(r.Value)
	}
	return out
}

// countPrefix counts the backing datastore's keys under prefix.
func countPrefix(t testing.TB, db *LevelDB, prefix string) int {
	t.Helper()
	res, err := db.Query(context.Background(), query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	n := 0
	for r := range res.Next() {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		n++
	}
	return n
}

// overwrite writes field f's version v as entity does: the new version
// under its own key, the version before deleted, in one delta.
func overwrite(t testing.TB, s *Store, f, v int) {
	t.Helper()
	ops := []Op{{Key: ds.NewKey(fmt.Sprintf("/r/f%03d/%08d", f, v)), Value: []byte(fmt.Sprintf("v%d", v))}}
	if v > 0 {
		ops = append(ops, Op{Key: ds.NewKey(fmt.Sprintf("/r/f%03d/%08d", f, v-1)), Delete: true})
	}
	if err := s.Apply(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

func compactOK(t testing.TB, s *Store) CompactStats {
	t.Helper()
	st, err := s.Compact(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != "" {
		t.Fatalf("compaction skipped: %s", st.Skipped)
	}
	return st
}

// TestCompactReclaimsDeadHistory: after many overwrites, a round leaves
// the reads as they were, removes the dead elements with their
// tombstones and the blocks nothing live needs, and the store goes on
// taking writes and deletes, also after a restart.
func TestCompactReclaimsDeadHistory(t *testing.T) {
	dir := t.TempDir()
	n := openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
	const fields, rounds = 50, 40
	for v := range rounds {
		for f := range fields {
			overwrite(t, n.store, f, v)
		}
	}
	before := snapshotKV(t, n.store, "/r")
	if len(before) != fields {
		t.Fatalf("%d live keys before, want %d", len(before), fields)
	}
	ns := n.store.opts.Namespace
	blocksBefore := countPrefix(t, n.db, "/blocks")
	elemsBefore := countPrefix(t, n.db, ns+"/s/s")
	tombsBefore := countPrefix(t, n.db, ns+"/s/t")
	markersBefore := countPrefix(t, n.db, ns+"/b")

	st := compactOK(t, n.store)
	t.Logf("round: %+v", st)
	if got := snapshotKV(t, n.store, "/r"); !maps.Equal(got, before) {
		t.Fatalf("reads changed by compaction:\n got %v\nwant %v", got, before)
	}
	elems, tombs := countPrefix(t, n.db, ns+"/s/s"), countPrefix(t, n.db, ns+"/s/t")
	if elems != fields || tombs != 0 {
		t.Errorf("after the round: %d elements (want %d, the live ones) and %d tombstones (want 0); before %d and %d",
			elems, fields, tombs, elemsBefore, tombsBefore)
	}
	// One block per delta; the live keys of the last round are in at
	// most `fields` blocks, and the heads' block stays.
	if blocks := countPrefix(t, n.db, "/blocks"); blocks > fields+1 || blocks >= blocksBefore {
		t.Errorf("%d raw blocks left of %d, want at most %d", blocks, blocksBefore, fields+1)
	}
	// Markers: the top markerSlack heights (the last round's blocks,
	// live ones among them) stay, and those of the maxima of A.
	if markers := countPrefix(t, n.db, ns+"/b"); markers > markerSlack+1 || st.MarkersDeleted != markersBefore-markers {
		t.Errorf("processed markers %d of %d left (stats say %d deleted), want at most %d", markers, markersBefore, st.MarkersDeleted, markerSlack+1)
	}
	if st.ElementsDeleted != fields*(rounds-1) || st.Pinned != fields-1 {
		t.Errorf("stats %+v: want %d elements deleted, %d pinned blocks", st, fields*(rounds-1), fields-1)
	}

	// Life goes on: overwrites (which delete the live, pinned versions),
	// a second round, a restart.
	for f := range fields {
		overwrite(t, n.store, f, rounds)
	}
	compactOK(t, n.store)
	want := snapshotKV(t, n.store, "/r")
	if len(want) != fields || want[fmt.Sprintf("/r/f%03d/%08d", 7, rounds)] != fmt.Sprintf("v%d", rounds) {
		t.Fatalf("after more writes: %v", want)
	}
	n.close(t)
	n = openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
	defer n.close(t)
	if got := snapshotKV(t, n.store, "/r"); !maps.Equal(got, want) {
		t.Fatalf("after restart:\n got %v\nwant %v", got, want)
	}
	if m := n.store.Members(); len(m) != 1 {
		t.Errorf("members after restart: %v, want this node's own entry", m)
	}
}

// TestCompactKeepsBlocksOfLiveElements: a raw key written many times has
// as many live elements; deleting it later reads the block of each (to
// find the value that remains), so those blocks survive compaction.
func TestCompactKeepsBlocksOfLiveElements(t *testing.T) {
	n := openTestNode(t, nil, "a", t.TempDir(), noAutoCompact(fastOpts()))
	defer n.close(t)
	ctx := context.Background()
	k := ds.NewKey("/kv/multi")
	for i := range 10 {
		if err := n.store.Put(ctx, k, []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	st := compactOK(t, n.store)
	if st.BlocksDeleted != 0 || st.Pinned != 9 {
		t.Errorf("stats %+v: want no block deleted and 9 pinned (the heads' block is kept anyway)", st)
	}
	if err := n.store.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.store.Has(ctx, k); err != nil || ok {
		t.Fatalf("Has after delete = %v, %v", ok, err)
	}
	if n.store.Status(ctx).Dirty {
		t.Fatal("store dirty after deleting a key whose history was compacted")
	}
	compactOK(t, n.store)
	if got := countPrefix(t, n.db, n.store.opts.Namespace+"/s"); got != 0 {
		t.Errorf("%d set entries left for a deleted key, want 0", got)
	}
}

// TestCompactWaitsForMembers: a node compacts only what every member has
// merged. While a member is cut off, its last reported heads hold the
// round back, so when it returns it finds every block it needs.
func TestCompactWaitsForMembers(t *testing.T) {
	net := newMemNet()
	root := t.TempDir()
	opts := noAutoCompact(fastOpts())
	a := openTestNodeFetch(t, net, "a", filepath.Join(root, "a"), opts, false)
	defer a.close(t)
	b := openTestNodeFetch(t, net, "b", filepath.Join(root, "b"), opts, false)
	defer b.close(t)
	ctx := context.Background()
	a.store.PeerConnected("b")
	b.store.PeerConnected("a")
	// The node reports, by hand: each tells the other its stable heads.
	report := func(from, to *testNode) {
		t.Helper()
		var heads []string
		testutil.Eventually(t, 5*time.Second, from.id+"'s stable heads", func() bool {
			var ok bool
			heads, ok = from.store.StableHeads(ctx)
			return ok
		})
		to.store.ObserveHeads(from.id, heads, time.Now())
	}
	for v := range 20 {
		overwrite(t, a.store, 1, v)
	}
	testutil.Eventually(t, 10*time.Second, "b has a's writes", func() bool {
		return len(snapshotKV(t, b.store, "/r")) == 1 && mustGetOr(b.store, "/r/f001/00000019") == "v19"
	})
	report(b, a)
	report(a, b)

	// b is cut off; a goes on writing and compacting.
	net.partition([]string{"a"}, []string{"b"})
	for v := 20; v < 60; v++ {
		overwrite(t, a.store, 1, v)
	}
	st := compactOK(t, a.store)
	t.Logf("round while b is away: %+v", st)

	// b comes back and must find every block of a's writes.
	net.heal()
	a.store.PeerConnected("b")
	b.store.PeerConnected("a")
	testutil.Eventually(t, 20*time.Second, "b has a's writes made while it was away", func() bool {
		return mustGetOr(b.store, "/r/f001/00000059") == "v59" && len(snapshotKV(t, b.store, "/r")) == 1
	})
	if b.store.Status(ctx).Dirty {
		t.Fatal("b is dirty: it could not fetch a block a compacted")
	}
	// Now both have everything: a's next round reclaims what b holds too.
	report(b, a)
	st = compactOK(t, a.store)
	if st.ElementsDeleted == 0 {
		t.Errorf("second round reclaimed nothing: %+v", st)
	}
	if !maps.Equal(snapshotKV(t, a.store, "/r"), snapshotKV(t, b.store, "/r")) {
		t.Error("a and b differ")
	}
}

// mustGetOr reads key, "" when missing.
func mustGetOr(s *Store, key string) string {
	v, err := s.Get(context.Background(), ds.NewKey(key))
	if err != nil {
		return ""
	}
	return string(v)
}

// TestCompactMatchesModel is the property test of the reclamation rule:
// random puts, overwrites and deletes on a store that compacts at random
// moments read the same, after every step, as on a store that never
// compacts (the model). The seed is printed for replay.
func TestCompactMatchesModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	opts := noAutoCompact(fastOpts())
	sut := openTestNode(t, nil, "sut", t.TempDir(), opts)
	defer sut.close(t)
	model := openTestNode(t, nil, "model", t.TempDir(), opts)
	defer model.close(t)
	ctx := context.Background()
	keys := make([]ds.Key, 12)
	for i := range keys {
		keys[i] = ds.NewKey(fmt.Sprintf("/p/k%02d", i))
	}
	var log []string
	for step := range 400 {
		var ops []Op
		for range 1 + rng.IntN(4) {
			k := keys[rng.IntN(len(keys))]
			if rng.IntN(3) == 0 {
				ops = append(ops, Op{Key: k, Delete: true})
			} else {
				ops = append(ops, Op{Key: k, Value: []byte(fmt.Sprintf("s%d", step))})
			}
		}
		for _, s := range []*Store{sut.store, model.store} {
			if err := s.Apply(ctx, ops); err != nil {
				t.Fatal(err)
			}
		}
		log = append(log, fmt.Sprint(ops))
		if rng.IntN(10) == 0 {
			st, err := sut.store.Compact(ctx, nil)
			if err != nil {
				t.Fatalf("seed %d, step %d: %v", seed, step, err)
			}
			log = append(log, fmt.Sprintf("compact: %d markers, %d elements, %d blocks", st.MarkersDeleted, st.ElementsDeleted, st.BlocksDeleted))
		}
		got, want := snapshotKV(t, sut.store, "/p"), snapshotKV(t, model.store, "/p")
		if !maps.Equal(got, want) {
			t.Fatalf("seed %d, step %d: reads differ\n got %v\nwant %v\nlast ops: %s", seed, step, got, want,
				strings.Join(log[max(0, len(log)-8):], "\n"))
		}
	}
	if sut.store.Status(ctx).Dirty {
		t.Fatal("store dirty")
	}
	sizes := func(n *testNode) int {
		return countPrefix(t, n.db, "/blocks") + countPrefix(t, n.db, n.store.opts.Namespace+"/s")
	}
	// History for the last round, whatever the loop's last step did (a
	// round there may have left nothing to reclaim).
	for v := range 3 {
		for _, s := range []*Store{sut.store, model.store} {
			if err := s.Put(ctx, keys[0], []byte(fmt.Sprint("last", v))); err != nil {
				t.Fatal(err)
			}
		}
	}
	compactOK(t, sut.store)
	if s, m := sizes(sut), sizes(model); s >= m {
		t.Errorf("compacted store holds %d history entries, the model %d", s, m)
	}
	_ = slices.Sorted(maps.Keys(snapshotKV(t, sut.store, "/p")))
}

// TestCompactSurvivesKill kills (SIGKILL) a process in the middle of a
// round, then reopens its store: reads are what they were, the store is
// clean, and the next round finishes the work.
func TestCompactSurvivesKill(t *testing.T) {
	if os.Getenv(killHelperEnv) != "" {
		t.Skip("helper process")
	}
	for _, block := range []bool{true, false} {
		t.Run(fmt.Sprintf("block_after_first_chunk=%v", block), func(t *testing.T) {
			dir := t.TempDir()
			n := openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
			const fields, rounds = 30, 100 // 3,000 blocks: several chunks
			for v := range rounds {
				for f := range fields {
					overwrite(t, n.store, f, v)
				}
			}
			want := snapshotKV(t, n.store, "/r")
			n.close(t)

			cmd := exec.Command(os.Args[0], "-test.run=^TestCompactKillHelper$", "-test.v")
			cmd.Env = append(os.Environ(), killHelperEnv+"="+dir, fmt.Sprintf("%s_BLOCK=%v", killHelperEnv, block))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			killed := false
			for sc.Scan() {
				if strings.Contains(sc.Text(), "compaction chunk done") {
					_ = cmd.Process.Kill()
					killed = true
					break
				}
			}
			_ = cmd.Wait()
			if !killed {
				t.Fatal("the helper process ended before its first chunk")
			}

			n = openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
			defer n.close(t)
			if got := snapshotKV(t, n.store, "/r"); !maps.Equal(got, want) {
				t.Fatalf("reads after the kill differ:\n got %v\nwant %v", got, want)
			}
			if n.store.Status(context.Background()).Dirty {
				t.Fatal("store dirty after the kill")
			}
			st := compactOK(t, n.store)
			t.Logf("round after the kill: %+v", st)
			ns := n.store.opts.Namespace
			if e, tb := countPrefix(t, n.db, ns+"/s/s"), countPrefix(t, n.db, ns+"/s/t"); e != fields || tb != 0 {
				t.Errorf("after the second round: %d elements, %d tombstones; want %d and 0", e, tb, fields)
			}
			if b := countPrefix(t, n.db, "/blocks"); b > fields+1 {
				t.Errorf("%d raw blocks left, want at most %d", b, fields+1)
			}
			for f := range fields {
				overwrite(t, n.store, f, rounds)
			}
			if got := len(snapshotKV(t, n.store, "/r")); got != fields {
				t.Errorf("%d live keys after more writes, want %d", got, fields)
			}
		})
	}
}

const killHelperEnv = "STARLING_COMPACT_KILL_DIR"

// TestCompactKillHelper is the process TestCompactSurvivesKill kills: it
// runs a round on the store in $STARLING_COMPACT_KILL_DIR and says when a
// chunk is done; with _BLOCK=true it then waits to be killed.
func TestCompactKillHelper(t *testing.T) {
	dir := os.Getenv(killHelperEnv)
	if dir == "" {
		t.Skip("run by TestCompactSurvivesKill")
	}
	block := os.Getenv(killHelperEnv+"_BLOCK") == "true"
	n := openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
	_, err := n.store.Compact(context.Background(), func(p CompactProgress) {
		fmt.Printf("compaction chunk done %d/%d\n", p.Done, p.Total)
		if block {
			select {} // killed here
		}
	})
	t.Fatalf("the round ended (%v) before the kill", err)
}

// TestFrontierRefusesBranchesOfNonMembers: a node the operator removed
// (so no longer a member) comes back with a branch built on history this
// node has compacted, markers included: on the block that put a value
// deleted here since. Merging the branch would merge that block again
// and bring the value back, its tombstone being compacted; the
// broadcaster drops the heads instead, and the store stays clean and
// reads the same.
func TestFrontierRefusesBranchesOfNonMembers(t *testing.T) {
	net := newMemNet()
	root := t.TempDir()
	opts := noAutoCompact(fastOpts())
	a := openTestNode(t, net, "a", filepath.Join(root, "a"), opts)
	defer a.close(t)
	c := openTestNode(t, net, "c", filepath.Join(root, "c"), opts)
	defer c.close(t)
	ctx := context.Background()
	a.store.PeerConnected("c")
	c.store.PeerConnected("a")
	x := ds.NewKey("/p/x")
	if err := c.store.Put(ctx, x, []byte("from c")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a has c's write", func() bool { return mustGetOr(a.store, "/p/x") == "from c" })

	// c is cut off and removed. a deletes c's value, writes on and
	// compacts its history away, processed markers included.
	net.partition([]string{"a"}, []string{"c"})
	a.store.ForgetMember("c")
	if err := a.store.Delete(ctx, x); err != nil {
		t.Fatal(err)
	}
	for v := range 3 * markerSlack {
		overwrite(t, a.store, 1, v)
	}
	st := compactOK(t, a.store)
	if st.MarkersDeleted == 0 || a.store.frontier.Load() == 0 {
		t.Fatalf("round deleted no markers: %+v", st)
	}
	before := snapshotKV(t, a.store, "/")

	// c writes on its old branch and comes back.
	if err := c.store.Put(ctx, ds.NewKey("/p/y"), []byte("late")); err != nil {
		t.Fatal(err)
	}
	net.heal()
	a.store.PeerConnected("c")
	c.store.PeerConnected("a")
	// c's heads arrive (with the heads exchange on connect) and are
	// refused, by the gate or, failing that, by the DAG guard.
	testutil.Eventually(t, 10*time.Second, "a refuses c's branch", func() bool {
		st := a.store.Status(ctx)
		return (a.store.bc.gated.Load() > 0 || a.store.refusedBelow.Load() > 0) && st.ReceiveQueue == 0 && st.QueuedJobs == 0
	})
	if got := snapshotKV(t, a.store, "/"); !maps.Equal(got, before) {
		t.Fatalf("a's reads changed after c's branch arrived:\n got %v\nwant %v", got, before)
	}
	if a.store.Status(ctx).Dirty {
		t.Fatal("a is dirty")
	}
	// The gate, before go-ds-crdt: c's heads come again with every heads
	// exchange.
	testutil.Eventually(t, 10*time.Second, "the gate drops c's heads", func() bool { return a.store.bc.gated.Load() > 0 })
	if a.store.Status(ctx).Dirty {
		t.Fatal("a is dirty")
	}
}

// TestMemberTableSavedWithoutARound: a node heard from is in the saved
// member table at once, and Close saves the members' last heads, so a
// round run on the data directory later (offline, or after a crash)
// waits for every node this one ever heard, even if no round ran before.
func TestMemberTableSavedWithoutARound(t *testing.T) {
	ctx := context.Background()
	// A store that heard nobody saves its (empty) table at Close.
	lone := t.TempDir()
	n := openTestNode(t, nil, "a", lone, noAutoCompact(fastOpts()))
	if ok, err := HasMemberTable(ctx, n.db); err != nil || ok {
		t.Fatalf("member table of a new store: %v, %v", ok, err)
	}
	n.close(t)
	db, err := OpenLevelDB(lone)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := HasMemberTable(ctx, db); err != nil || !ok {
		t.Errorf("member table after Close: %v, %v; want saved", ok, err)
	}
	_ = db.Close()

	dir := t.TempDir()
	n = openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
	n.store.NoteMember("peer-b")
	n.store.ObserveHeads("peer-c", []string{"h1"}, time.Now())
	// Saved before any round or Close: what a crash would leave.
	saved, found, err := savedMembers(ctx, n.db)
	if err != nil || !found {
		t.Fatalf("member table not saved when members joined: %v, %v", found, err)
	}
	for _, id := range []string{"peer-b", "peer-c"} {
		if _, ok := saved[id]; !ok {
			t.Errorf("saved table %v lacks %s", saved, id)
		}
	}
	n.store.ObserveHeads("peer-c", []string{"h2"}, time.Now())
	n.close(t)

	n = openTestNode(t, nil, "a", dir, noAutoCompact(fastOpts()))
	defer n.close(t)
	m := n.store.Members()
	if b, ok := m["peer-b"]; !ok || !b.Unknown {
		t.Errorf("peer-b after restart: %+v, %v", b, ok)
	}
	if c := m["peer-c"]; !slices.Equal(c.Heads, []string{"h2"}) {
		t.Errorf("peer-c after restart: %+v, want the heads it reported last", c)
	}
	// peer-b never reported heads: a round waits for it. (peer-c's
	// heads are not CIDs; it goes first.)
	n.store.ForgetMember("peer-c")
	if st, err := n.store.Compact(context.Background(), nil); err != nil || !strings.Contains(st.Skipped, "peer-b") {
		t.Errorf("round with a silent member: %+v, %v", st, err)
	}
}

// countingStore counts the bytes written through it.
type countingStore struct {
	ds.Batching
	written atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	c.written.Add(int64(len(v)))
	return c.Batching.Put(ctx, k, v)
}

func (c *countingStore) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := c.Batching.Batch(ctx)
	return &countingBatch{b, c}, err
}

type countingBatch struct {
	ds.Batch
	c *countingStore
}

func (b *countingBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	b.c.written.Add(int64(len(v)))
	return b.Batch.Put(ctx, k, v)
}

// TestNewMembersSavedInLinearBytes: each member that joins is saved on
// its own, not with the whole table again. Saving the whole table for
// each made a start quadratic: 200 nodes started together each wrote
// their table of up to 199 members 199 times (12% of the process's CPU
// in a 200-node start, about 2 MB per node). The table is whole again
// after a restart.
func TestNewMembersSavedInLinearBytes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenLevelDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingStore{Batching: db}
	bs := blockstore.NewBlockstore(namespace.Wrap(db, ds.NewKey("/blocks")))
	opts := noAutoCompact(fastOpts())
	opts.LocalBlocks = bs
	s, err := Open(ctx, counting, merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs))), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	const members, perMember = 200, 512
	before := counting.written.Load()
	for i := range members {
		s.NoteMember(fmt.Sprintf("peer-%03d", i))
	}
	if w := counting.written.Load() - before; w > members*perMember {
		t.Errorf("%d members joining wrote %d bytes, want at most %d (%d each): the whole table saved for each?", members, w, members*perMember, perMember)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	saved, found, err := savedMembers(ctx, db)
	if err != nil || !found || len(saved) != members {
		t.Fatalf("after Close: %d members saved (%v, %v), want %d", len(saved), found, err, members)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStateTransferFromACompactedSource: a node joining from a compacted
// source gets the live state, few markers, the source's frontier and its
// member table (so it does not compact past a member it never heard
// from), and then follows the source's writes.
func TestStateTransferFromACompactedSource(t *testing.T) {
	net := newMemNet()
	opts := noAutoCompact(fastOpts())
	a := openTestNodeFetch(t, net, "a", t.TempDir(), opts, false)
	defer a.close(t)
	const fields, rounds = 20, 3 * markerSlack
	for v := range rounds {
		for f := range fields {
			overwrite(t, a.store, f, v)
		}
	}
	// p, a member a heard from once, has merged everything so far.
	heads, ok := a.store.StableHeads(context.Background())
	if !ok {
		t.Fatal("no stable heads")
	}
	a.store.ObserveHeads("p", heads, time.Now())
	st := compactOK(t, a.store)
	if st.MarkersDeleted == 0 {
		t.Fatalf("nothing to transfer light: %+v", st)
	}
	var snap bytes.Buffer
	if err := a.store.WriteSnapshot(context.Background(), &snap); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of %d live fields after %d overwrites: %d bytes", fields, fields*rounds, snap.Len())
	// The live state is 20 values; everything else is what K keeps.
	if snap.Len() > 64<<10 {
		t.Errorf("snapshot is %d bytes: it carries history", snap.Len())
	}

	b := openTestNodeFetch(t, net, "b", t.TempDir(), opts, false)
	defer b.close(t)
	if err := b.store.Install(context.Background(), &snap, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.store.frontier.Load(), a.store.frontier.Load(); got != want || got == 0 {
		t.Errorf("b's frontier %d, a's %d", got, want)
	}
	if m := b.store.Members(); len(m["p"].Heads) == 0 {
		t.Errorf("b's members %v: p is missing", m)
	}
	a.store.PeerConnected("b")
	b.store.PeerConnected("a")
	for f := range fields {
		overwrite(t, a.store, f, rounds)
	}
	testutil.Eventually(t, 10*time.Second, "b follows a", func() bool {
		return maps.Equal(snapshotKV(t, a.store, "/r"), snapshotKV(t, b.store, "/r"))
	})
	if b.store.Status(context.Background()).Dirty || b.store.bc.gated.Load() > 0 || b.store.refusedBelow.Load() > 0 {
		t.Fatalf("b refused or failed a member's writes: %+v", b.store.Status(context.Background()))
	}
}

// TestInstallReplaysOwnHistoryBelowTheFrontier: a node whose history grew
// apart from a compacted source's (a node started alone, or cut off past
// the source's frontier) takes the source's state: its own history cannot
// merge as a DAG (the source's frontier refuses it), so its live values
// are written again on top, and both converge on the union.
func TestInstallReplaysOwnHistoryBelowTheFrontier(t *testing.T) {
	net := newMemNet()
	opts := noAutoCompact(fastOpts())
	a := openTestNodeFetch(t, net, "a", t.TempDir(), opts, false)
	defer a.close(t)
	c := openTestNodeFetch(t, net, "c", t.TempDir(), opts, false)
	defer c.close(t)
	net.partition([]string{"a"}, []string{"c"})
	ctx := context.Background()
	for v := range 3 * markerSlack {
		overwrite(t, a.store, 1, v)
	}
	compactOK(t, a.store)
	// c's own history, apart from a's.
	for v := range 5 {
		overwrite(t, c.store, 2, v)
	}
	if err := c.store.Put(ctx, ds.NewKey("/p/own"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := transfer(t, a.store, c.store); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/r/f001/" + fmt.Sprintf("%08d", 3*markerSlack-1): fmt.Sprintf("v%d", 3*markerSlack-1),
		"/r/f002/00000004": "v4",
		"/p/own":           "c",
	}
	got := snapshotKV(t, c.store, "/")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("c after the install: %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if c.store.Status(ctx).Dirty {
		t.Fatal("c is dirty after the install")
	}
	net.heal()
	a.store.PeerConnected("c")
	c.store.PeerConnected("a")
	testutil.Eventually(t, 10*time.Second, "a has c's replayed values", func() bool {
		return maps.Equal(snapshotKV(t, a.store, "/"), snapshotKV(t, c.store, "/"))
	})
	if a.store.bc.gated.Load() > 0 || a.store.Status(ctx).Dirty {
		t.Fatalf("a refused c's writes after the install: gated %d, %+v", a.store.bc.gated.Load(), a.store.Status(ctx))
	}
}

// TestPacedRoundRestsAfterEachSlice: a paced round (the automatic
// policy's) rests after each chunk of deletes, for as long as the chunk
// took times (1-duty)/duty; an explicit round does not rest.
func TestPacedRoundRestsAfterEachSlice(t *testing.T) {
	n := openTestNode(t, nil, "a", t.TempDir(), noAutoCompact(fastOpts()))
	defer n.close(t)
	const fields, rounds = 40, 10
	for v := range rounds {
		for f := range fields {
			overwrite(t, n.store, f, v)
		}
	}
	want := snapshotKV(t, n.store, "/r")
	// A clock that moves 10 ms per reading: every slice "took" 10 ms.
	var mu sync.Mutex
	clock := time.Unix(0, 0)
	var slept []time.Duration
	p := newPacer(0.25)
	p.now = func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(10 * time.Millisecond); return clock }
	p.since = p.now()
	p.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	st, err := n.store.compact(context.Background(), nil, 1, p)
	if err != nil || st.Skipped != "" {
		t.Fatalf("round: %+v, %v", st, err)
	}
	chunks := (st.Frontier + compactChunk - 1) / compactChunk
	if chunks < 2 || len(slept) < chunks {
		t.Fatalf("%d blocks in A (%d chunks), %d rests: want a rest after every chunk", st.Frontier, chunks, len(slept))
	}
	for _, d := range slept {
		if d != 30*time.Millisecond {
			t.Fatalf("rests %v: want 30ms after each 10 ms slice at duty 0.25", slept)
		}
	}
	if got := snapshotKV(t, n.store, "/r"); !maps.Equal(got, want) {
		t.Fatalf("reads changed by a paced round:\n got %v\nwant %v", got, want)
	}
	if newPacer(1) != nil || newPacer(0) != nil {
		t.Fatal("duty 1 (unpaced) or 0 made a pacer")
	}
}

// TestRoundRotatesTheManifest: goleveldb's MANIFEST, which grows with
// every flush and compaction while the store runs, is started afresh by
// a round once it passes manifestMax, and the store reads and writes on.
func TestRoundRotatesTheManifest(t *testing.T) {
	old := manifestMax
	manifestMax = 2 << 10
	defer func() { manifestMax = old }()
	n := openTestNode(t, nil, "a", t.TempDir(), noAutoCompact(fastOpts()))
	defer n.close(t)
	ctx := context.Background()
	for v := range 30 {
		overwrite(t, n.store, 1, v)
		if err := n.db.CompactPrefixes(ctx, []ds.Key{ds.NewKey("/")}); err != nil {
			t.Fatal(err)
		}
	}
	grown := n.db.ManifestSize()
	if grown < manifestMax {
		t.Fatalf("the MANIFEST grew to %d bytes only, below %d: the test proves nothing", grown, manifestMax)
	}
	overwrite(t, n.store, 1, 30)
	compactOK(t, n.store)
	if after := n.db.ManifestSize(); after >= grown || after >= manifestMax {
		t.Fatalf("MANIFEST %d bytes before the round, %d after (limit %d)", grown, after, manifestMax)
	}
	overwrite(t, n.store, 1, 31)
	if got := mustGetOr(n.store, "/r/f001/00000031"); got != "v31" {
		t.Fatalf("read after the rotation: %q", got)
	}
}
