package entity

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// memBackend models the replicated store for tests: an add-wins set of
// unique keys with tombstones, as go-ds-crdt keeps it. Two backends
// exchange their adds and tombstones with sync, the way two nodes do after
// a partition heals.
type memBackend struct {
	mu    sync.Mutex
	adds  map[string][]byte
	tombs map[string]bool
	feeds map[*memFeed]bool
}

func newMemBackend() *memBackend {
	return &memBackend{adds: map[string][]byte{}, tombs: map[string]bool{}, feeds: map[*memFeed]bool{}}
}

type memFeed struct {
	b  *memBackend
	ch chan Change
	mu sync.Mutex
	ok bool
}

func (f *memFeed) C() <-chan Change { return f.ch }
func (f *memFeed) Overflowed() bool { return false }
func (f *memFeed) Close() {
	f.b.mu.Lock()
	delete(f.b.feeds, f)
	f.b.mu.Unlock()
	f.mu.Lock()
	if f.ok {
		f.ok = false
		close(f.ch)
	}
	f.mu.Unlock()
}

func (b *memBackend) Subscribe(prefix ds.Key, buf int) Feed {
	f := &memFeed{b: b, ch: make(chan Change, 1<<16), ok: true}
	b.mu.Lock()
	b.feeds[f] = true
	b.mu.Unlock()
	return f
}

// emit is called with b.mu held.
func (b *memBackend) emit(c Change) {
	for f := range b.feeds {
		f.mu.Lock()
		if f.ok {
			f.ch <- c
		}
		f.mu.Unlock()
	}
}

func (b *memBackend) put(k string, v []byte, local bool) {
	if b.tombs[k] {
		return
	}
	if _, ok := b.adds[k]; ok {
		return
	}
	b.adds[k] = v
	b.emit(Change{Key: ds.RawKey(k), Value: v, Local: local})
}

func (b *memBackend) del(k string, local bool) {
	b.tombs[k] = true
	if _, ok := b.adds[k]; ok {
		delete(b.adds, k)
		b.emit(Change{Key: ds.RawKey(k), Deleted: true, Local: local})
	}
}

func (b *memBackend) Commit(ctx context.Context, ops []Op) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, op := range ops {
		if op.Delete {
			b.del(op.Key.String(), true)
		} else {
			b.put(op.Key.String(), op.Value, true)
		}
	}
	return nil
}

func (b *memBackend) Has(ctx context.Context, k ds.Key) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.adds[k.String()]
	return ok, nil
}

func (b *memBackend) Query(ctx context.Context, q query.Query) (query.Results, error) {
	b.mu.Lock()
	var es []query.Entry
	for k, v := range b.adds {
		if strings.HasPrefix(k, q.Prefix) {
			es = append(es, query.Entry{Key: k, Value: v})
		}
	}
	b.mu.Unlock()
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	return query.ResultsWithEntries(q, es), nil
}

// deliver copies from's tombstones, then its adds, into to, each in key
// order (so a script replays the same feed): one way, as a node receives
// the deltas of another.
func deliver(from, to *memBackend) {
	from.mu.Lock()
	adds, tombs := copyMap(from.adds), copyBool(from.tombs)
	from.mu.Unlock()
	to.mu.Lock()
	defer to.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(tombs)) {
		to.del(k, false)
	}
	for _, k := range slices.Sorted(maps.Keys(adds)) {
		to.put(k, adds[k], false)
	}
}

// sync2 makes a and b hold the union of their adds and tombstones.
func sync2(a, b *memBackend) {
	a.mu.Lock()
	b.mu.Lock()
	defer a.mu.Unlock()
	defer b.mu.Unlock()
	aAdds, bAdds := copyMap(a.adds), copyMap(b.adds)
	aTombs, bTombs := copyBool(a.tombs), copyBool(b.tombs)
	for k := range aTombs {
		b.del(k, false)
	}
	for k := range bTombs {
		a.del(k, false)
	}
	for k, v := range aAdds {
		b.put(k, v, false)
	}
	for k, v := range bAdds {
		a.put(k, v, false)
	}
}

func copyMap(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func copyBool(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// fakeClock is a settable physical clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// seqReader is a deterministic source of IDs.
type seqReader struct{ n byte }

func (r *seqReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

type testStore struct {
	*Store
	b       *memBackend
	clock   *fakeClock
	barrier int
	bmu     sync.Mutex
	waiting map[ds.Key]chan struct{}
}

// openMem opens a store of node over b (a new backend when nil) reading
// clock (a new one when nil); each opt, if any, adjusts its options.
func openMem(t testing.TB, node string, b *memBackend, clock *fakeClock, opt ...func(*Options)) *testStore {
	t.Helper()
	if b == nil {
		b = newMemBackend()
	}
	if clock == nil {
		clock = newFakeClock()
	}
	ts := &testStore{b: b, clock: clock, waiting: map[ds.Key]chan struct{}{}}
	opts := Options{NodeID: node, Now: clock.Now, Rand: &seqReader{n: node[len(node)-1]}}
	opts.afterApply = func(c Change) {
		ts.bmu.Lock()
		defer ts.bmu.Unlock()
		if ch, ok := ts.waiting[c.Key]; ok {
			close(ch)
			delete(ts.waiting, c.Key)
		}
	}
	for _, o := range opt {
		o(&opts)
	}
	s, err := Open(context.Background(), b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts.Store = s
	return ts
}

// settle waits until each store's view has applied every change its
// backend emitted so far: it sends a marker through the feed and waits
// for the store to apply it.
func settle(t testing.TB, stores ...*testStore) {
	t.Helper()
	for _, s := range stores {
		s.barrier++
		k := ds.NewKey(fmt.Sprintf("/_barrier/%d", s.barrier))
		done := s.waitKey(k)
		s.b.mu.Lock()
		s.b.emit(Change{Key: k})
		s.b.mu.Unlock()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("store %s did not apply its feed within 5s", s.NodeID())
		}
	}
}

func (s *testStore) waitKey(k ds.Key) <-chan struct{} {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	ch := make(chan struct{})
	s.waiting[k] = ch
	return ch
}
