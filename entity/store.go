package entity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/starling-sync/starling/internal/groupcommit"
	"github.com/starling-sync/starling/internal/kv"
)

// Sentinel errors. Test for them with errors.Is.
var (
	ErrNotFound = errors.New("entity: no such entity")
	ErrExists   = errors.New("entity: already exists")
	ErrNotEmpty = errors.New("entity: has children")
	ErrCycle    = errors.New("entity: move would create a cycle")
	ErrTooLarge = errors.New("entity: value too large")
	ErrNoField  = errors.New("entity: no such field")
	ErrClosed   = errors.New("entity: store closed")
	// ErrClockSkew: this node's clock disagrees with the cluster's by
	// more than the maximum offset, and it takes no writes until the
	// clock is fixed (SetClockSkew).
	ErrClockSkew = errors.New("entity: this node's clock disagrees with the cluster")
)

// Op is one write to the backend: a Put, or a Delete when Delete is true.
// It is crdt.Op too (both alias kv.Op).
type Op = kv.Op

// Change is one entry of the backend's change feed. It is crdt.Change
// too (both alias kv.Change).
type Change = kv.Change

// Feed is a subscription to the backend's changes: C delivers them in
// the order the backend applied them and is closed when the feed or the
// backend closes; Overflowed reports, and clears, whether changes were
// dropped. It is crdt.Feed too (both alias kv.Feed).
type Feed = kv.Feed

// Backend is the replicated key-value store under the entity tree;
// *crdt.Store is one. Its methods are called from the store's own
// goroutines (Commit from the committer, Subscribe's feed from the
// follower) and from Open.
type Backend interface {
	// Commit writes ops now, as one atomic delta for replication, and is
	// durable on return. The store gathers concurrent Updates itself
	// (see committer), so Commit must not wait to gather more: one
	// gathering stage per write.
	Commit(ctx context.Context, ops []Op) error
	Query(ctx context.Context, q query.Query) (query.Results, error)
	Has(ctx context.Context, key ds.Key) (bool, error)
	Subscribe(prefix ds.Key, buf int) Feed
}

// Options configure a Store.
type Options struct {
	// NodeID is the writer recorded with every write. Required.
	NodeID string
	// Now is the physical clock of the hybrid logical clock. Default
	// time.Now; a node passes time.Now plus its --clock-offset.
	Now func() time.Time
	// MaxClockOffset bounds how far ahead of Now a timestamp seen in the
	// data (replicated or stored) may move the hybrid clock; a version
	// further ahead is kept and merged as written, but the clock does not
	// adopt it (see Clock). Default DefaultMaxClockOffset; negative: no
	// bound.
	MaxClockOffset time.Duration
	// Rand is the source of entity IDs. Default crypto/rand.
	Rand io.Reader
	// MaxValueBytes bounds an encoded field value. Default 64 KiB: a value
	// travels in every replication message that carries it.
	MaxValueBytes int
	// GCInterval is how often the store deletes records that lost all
	// their writes to newer ones from other nodes (records beaten by
	// this node's own writes go in the same commit). A record is deleted
	// when it was garbage at two ticks in a row, which leaves other nodes
	// time to delete it first. Default 1 s.
	GCInterval time.Duration
	// FeedBuffer is the change-feed buffer. Default 65536 changes; on
	// overflow the store reloads its view from the backend.
	FeedBuffer int
	// Logger receives the store's logs. Default: discard. Lines carry
	// component=entity: give a logger without a "component".
	Logger *slog.Logger

	// afterApply, when set (tests), is called after each change from the
	// feed is applied.
	afterApply func(Change)
}

// Store is the entity tree of one node: writes go to the replicated
// backend, reads come from a view kept in step with it.
type Store struct {
	b     Backend
	opts  Options
	clock *Clock
	log   *slog.Logger

	mu sync.RWMutex // guards st
	st *state

	wmu      sync.Mutex
	watchers map[*Watcher]struct{}

	commits chan *commitReq // to the committer
	loads   atomic.Uint64   // whole loads of the view (Loads)
	// far counts versions stamped beyond the clock's bound; skew, when
	// set, refuses writes (clock.go).
	far     farFuture
	skew    atomic.Pointer[error]
	prevGC  map[string]bool // garbage at the last GC tick
	stopped chan struct{}   // closed when the committer has ended

	feed   Feed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Open loads the tree from the backend and follows its changes until
// Close.
func Open(ctx context.Context, b Backend, opts Options) (*Store, error) {
	if err := ValidateWriter(opts.NodeID); err != nil {
		return nil, fmt.Errorf("entity: Options.NodeID: %w", err)
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = 64 << 10
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxClockOffset == 0 {
		opts.MaxClockOffset = DefaultMaxClockOffset
	}
	if opts.FeedBuffer <= 0 {
		opts.FeedBuffer = 1 << 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Store{
		b:        b,
		opts:     opts,
		clock:    NewBoundedClock(opts.Now, opts.MaxClockOffset),
		log:      opts.Logger.With("component", "entity"),
		st:       newState(),
		watchers: make(map[*Watcher]struct{}),
		commits:  make(chan *commitReq, 1024),
		stopped:  make(chan struct{}),
	}
	// Subscribe before loading, so no change falls between the two;
	// changes seen twice are harmless (see applyChange).
	s.feed = b.Subscribe(ds.NewKey("/"), opts.FeedBuffer)
	if err := s.load(ctx); err != nil {
		s.feed.Close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.follow()
	}()
	go func() {
		defer s.wg.Done()
		defer close(s.stopped)
		s.committer()
	}()
	return s, nil
}

// Close stops following the backend and ends every watcher. It does not
// close the backend. Safe to call twice.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.feed.Close()
		s.wg.Wait()
		s.wmu.Lock()
		ws := s.watchers
		s.watchers = nil
		s.wmu.Unlock()
		for w := range ws {
			w.box.Close()
		}
	})
	return nil
}

// Clock returns the store's hybrid logical clock.
func (s *Store) Clock() *Clock { return s.clock }

// NodeID returns the writer ID of this store.
func (s *Store) NodeID() string { return s.opts.NodeID }

// load replaces the view with the backend's content.
func (s *Store) load(ctx context.Context) error {
	st := newState()
	// The clock adopts the greatest stamp within its bound once, at the
	// end; those beyond it are counted as they come.
	pt := s.opts.Now().UnixNano()
	var maxTS Timestamp
	res, err := s.b.Query(ctx, query.Query{Prefix: recordsPrefix})
	if err != nil {
		return fmt.Errorf("entity: load: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return fmt.Errorf("entity: load: %w", r.Error)
		}
		v, ws, err := s.decode(r.Key, r.Value)
		if err != nil {
			s.log.Warn("ignoring stored record", "key", r.Key, "err", err)
			continue
		}
		st.addRecord(r.Key, v.Writer, ws)
		switch m := maxStamp(ws); {
		case s.clock.isFar(m, pt):
			s.noteFar(m, v.Writer)
		case maxTS.Less(m):
			maxTS = m
		}
	}
	s.clock.Observe(maxTS)
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	s.loads.Add(1)
	return nil
}

// Loads counts the times the view was loaded whole from the backend: at
// Open, and whenever the change feed reports it cannot be followed (an
// overflow, or the backend's content replaced by a state transfer). A
// caller that replaced the content waits for it to grow.
func (s *Store) Loads() uint64 { return s.loads.Load() }

// decode reads a stored record.
func (s *Store) decode(key string, value []byte) (Version, []write, error) {
	v, err := parseRecordKey(key)
	if err != nil {
		return Version{}, nil, err
	}
	ws, err := decodeRecord(value)
	if err != nil {
		return Version{}, nil, err
	}
	return v, ws, nil
}

// follow applies the backend's changes to the view.
func (s *Store) follow() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case c, ok := <-s.feed.C():
			if !ok {
				return
			}
			s.applyChange(c)
			if s.opts.afterApply != nil {
				s.opts.afterApply(c)
			}
			if s.feed.Overflowed() {
				s.log.Warn("change feed overflowed; reloading the view")
				if err := s.load(s.ctx); err != nil && s.ctx.Err() == nil {
					s.log.Error("reload after overflow failed", "err", err)
				}
				s.notify(Event{Field: "$reload"}) // every watcher: notify passes $reload to all
			}
		}
	}
}

// applyChange applies one change of the backend. A change may come twice
// (the feed overlaps the load; local writes are applied at once and come
// back through the feed): a record applied twice changes nothing, and one
// put again after its deletion is garbage, dropped at the next GC.
func (s *Store) applyChange(c Change) {
	key := c.Key.String()
	if !strings.HasPrefix(key, recordsPrefix+"/") {
		return // not an entity record (raw key-value use of the store)
	}
	if c.Deleted {
		s.mu.Lock()
		s.st.removeRecord(key)
		s.mu.Unlock()
		return
	}
	// A record never changes under its key: one the view holds (this
	// node's own, applied at its commit) needs no decoding.
	s.mu.RLock()
	_, have := s.st.records[key]
	s.mu.RUnlock()
	if have {
		return
	}
	v, ws, err := s.decode(key, c.Value)
	if err != nil {
		s.log.Warn("ignoring replicated record", "key", key, "err", err)
		return
	}
	s.observe(maxStamp(ws), v.Writer)
	s.mu.Lock()
	changes := s.st.addRecord(key, v.Writer, ws)
	events := make([]Event, 0, len(changes))
	for _, ch := range changes {
		events = append(events, s.event(ch, c.Local))
	}
	s.mu.Unlock()
	for _, ev := range events {
		s.notify(ev)
	}
}

// commitReq is one Update's writes waiting for the committer.
type commitReq struct {
	gc   bool // collect garbage (a request with no writes)
	v    Version
	ws   []write
	size int
	done chan error // buffered
}

// Limits of the committer. A record travels as part of one delta, which
// must fit one replication message (crdt.Options.CommitMaxBytes).
const (
	// gatherWindow is the longest the committer waits for more updates
	// after a group of several (see groupcommit.Gatherer).
	gatherWindow = 500 * time.Microsecond

	maxRecordBytes = 256 << 10
	maxGroupBytes  = 448 << 10
	maxGroupWrites = 4096
)

// committer is the only writer of records. It gathers the Updates
// waiting (see groupcommit.Gatherer) into one group: writes packed into
// records of up to maxRecordBytes, plus the deletion of every record the
// group's writes leave with no winner, in one atomic Backend.Commit,
// which does not gather again. So concurrent writers share one backend
// write, and a lone writer waits for nobody.
// Every GCInterval it also deletes garbage left by other nodes' writes.
func (s *Store) committer() {
	tick := time.NewTicker(s.opts.GCInterval)
	defer tick.Stop()
	g := groupcommit.Gatherer[*commitReq]{C: s.commits, Window: gatherWindow}
	for {
		first, ok := g.Carried()
		gc := false
		if !ok {
			select {
			case <-s.ctx.Done():
				s.failPending()
				return
			case first = <-s.commits:
			case <-tick.C:
				gc = true
			}
		}
		var group []*commitReq
		if first != nil {
			gc = gc || first.gc
			n, size := len(first.ws), first.size
			group, _ = g.Gather(first, func(r *commitReq) bool {
				if n+len(r.ws) > maxGroupWrites || size+r.size > maxGroupBytes {
					return false
				}
				gc = gc || r.gc
				n += len(r.ws)
				size += r.size
				return true
			}, func() bool { return n >= maxGroupWrites })
		}
		err := s.commitGroup(group, gc)
		for _, r := range group {
			r.done <- err
		}
	}
}

// collectGarbage runs a GC pass now, as a GC tick does (tests).
func (s *Store) collectGarbage(ctx context.Context) error {
	req := &commitReq{gc: true, done: make(chan error, 1)}
	select {
	case s.commits <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failPending answers Updates still waiting when the store closes.
func (s *Store) failPending() {
	for {
		select {
		case r := <-s.commits:
			r.done <- ErrClosed
		default:
			return
		}
	}
}

// commitGroup writes a group's records and deletes the garbage they
// make; with gc, also garbage found at two GC ticks in a row. Then it
// applies the group to the view and tells the watchers.
func (s *Store) commitGroup(group []*commitReq, gc bool) error {
	type rec struct {
		key string
		ws  []write
	}
	var recs []rec
	size := 0
	for _, r := range group {
		if len(r.ws) == 0 {
			continue
		}
		if len(recs) == 0 || size+r.size > maxRecordBytes {
			recs = append(recs, rec{key: recordKey(r.v)})
			size = 0
		}
		last := &recs[len(recs)-1]
		last.ws = append(last.ws, r.ws...)
		size += r.size
	}

	// Records whose every winner this group beats are deleted in the
	// same Commit: the versions that beat them travel with the deletion.
	var del []string
	s.mu.RLock()
	loss := make(map[*record]int)
	counted := make(map[regKey]bool)
	for _, r := range group {
		for _, w := range r.ws {
			if counted[w.reg] {
				continue
			}
			if cur, ok := s.st.register(w.reg, false).winner(); ok && cur.rec != nil && !cur.rec.gone &&
				cur.Compare(Version{Timestamp: w.ts, Writer: r.v.Writer}) < 0 {
				loss[cur.rec]++
				counted[w.reg] = true
			}
		}
	}
	for rc, n := range loss {
		if n == rc.alive {
			del = append(del, rc.key)
		}
	}
	var candidates []string
	if gc {
		next := make(map[string]bool, len(s.st.garbage))
		for k := range s.st.garbage {
			next[k] = true
			if s.prevGC[k] && loss[s.st.garbage[k]] == 0 {
				candidates = append(candidates, k)
			}
		}
		s.prevGC = next
	}
	s.mu.RUnlock()
	// A garbage record may be one the feed brought back after its
	// deletion (see applyChange): drop those from the view only.
	var stale []string
	for _, k := range candidates {
		has, err := s.b.Has(s.ctx, ds.RawKey(k))
		switch {
		case err != nil:
			continue
		case has:
			del = append(del, k)
		default:
			stale = append(stale, k)
		}
	}
	if len(recs) == 0 && len(del) == 0 && len(stale) == 0 {
		return nil
	}
	ops := make([]Op, 0, len(recs)+len(del))
	for _, r := range recs {
		ops = append(ops, Op{Key: ds.RawKey(r.key), Value: encodeRecord(r.ws)})
	}
	for _, k := range del {
		ops = append(ops, Op{Key: ds.RawKey(k), Delete: true})
	}
	if len(ops) > 0 {
		if err := s.b.Commit(context.WithoutCancel(s.ctx), ops); err != nil {
			return fmt.Errorf("entity: write: %w", err)
		}
	}
	// Read your writes: apply to the view now; the feed brings the same
	// changes again later, which is harmless. Apply every record before
	// describing any change, so events carry the paths the group
	// produced (a new entity's name and parent).
	var changes []change
	describe := s.watchingLocal()
	s.mu.Lock()
	for _, k := range append(del, stale...) {
		s.st.removeRecord(k)
	}
	for _, r := range recs {
		changes = append(changes, s.st.addRecord(r.key, s.opts.NodeID, r.ws)...)
	}
	var events []Event
	if describe {
		events = make([]Event, 0, len(changes))
		for _, ch := range changes {
			events = append(events, s.event(ch, true))
		}
	}
	s.mu.Unlock()
	for _, ev := range events {
		s.notify(ev)
	}
	return nil
}

// Ref names an entity by ID or by path ("/Factory/Line1").
func (s *Store) Resolve(ref string) (ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resolveLocked(ref)
}

func (s *Store) resolveLocked(ref string) (ID, error) {
	if ref == "" {
		return "", fmt.Errorf("%w: empty reference; give a path like /Factory/Line1 or an ID", ErrNotFound)
	}
	if !strings.HasPrefix(ref, "/") {
		id := ID(ref)
		if err := id.Validate(); err != nil {
			return "", fmt.Errorf("%w: %q is neither a path (starting with /) nor an ID", ErrNotFound, ref)
		}
		if !s.st.visible(id) {
			return "", fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return id, nil
	}
	cur := Root
	for _, part := range strings.Split(strings.Trim(ref, "/"), "/") {
		if part == "" {
			continue
		}
		next, _ := s.st.lookup(cur, part)
		if next == "" {
			return "", fmt.Errorf("%w: %s (no %q under %s)", ErrNotFound, ref, part, s.st.path(cur))
		}
		cur = next
	}
	return cur, nil
}

// Field is a field's current value with its version.
type Field struct {
	Value Value `json:"value"`
	Version
	// Default is true when the field was never written and Value is the
	// schema's default.
	Default bool `json:"default,omitempty"`
}

// Entity is what a read returns.
type Entity struct {
	ID     ID               `json:"id"`
	Type   string           `json:"type"`
	Name   string           `json:"name"`
	Parent ID               `json:"parent"`
	Path   string           `json:"path"`
	Fields map[string]Field `json:"fields"`
	// Duplicates counts other entities with the same path (concurrent
	// creates); the path resolves to the one with the smallest ID.
	Duplicates int `json:"duplicates,omitempty"`
}

// Get reads an entity with its fields.
func (s *Store) Get(ref string) (Entity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := s.resolveLocked(ref)
	if err != nil {
		return Entity{}, err
	}
	return s.entityLocked(id, true), nil
}

func (s *Store) entityLocked(id ID, withFields bool) Entity {
	if id == Root {
		return Entity{ID: Root, Path: "/", Fields: map[string]Field{}}
	}
	e := Entity{ID: id, Type: s.st.typ(id), Name: s.st.name(id), Parent: s.st.parent(id), Path: s.st.path(id)}
	_, n := s.st.lookup(e.Parent, e.Name)
	e.Duplicates = n - 1
	if !withFields {
		return e
	}
	e.Fields = make(map[string]Field)
	for name, reg := range s.st.ents[id].fields {
		w, ok := reg.winner()
		if !ok {
			continue
		}
		v, err := DecodeValue(w.value)
		if err != nil {
			s.log.Warn("undecodable stored value", "entity", id, "field", name, "err", err)
			continue
		}
		if v.IsNull() {
			continue
		}
		e.Fields[name] = Field{Value: v, Version: w.Version}
	}
	if sc, ok := s.schemaLocked(e.Type); ok {
		for name, spec := range sc.Fields {
			if _, ok := e.Fields[name]; ok {
				continue
			}
			if _, ok := s.st.ents[id].fields[name].winner(); ok {
				continue // cleared on purpose
			}
			if d, ok, err := spec.defaultValue(); err == nil && ok {
				e.Fields[name] = Field{Value: d, Default: true}
			}
		}
	}
	return e
}

// GetField reads one field.
func (s *Store) GetField(ref, field string) (Field, error) {
	e, err := s.Get(ref)
	if err != nil {
		return Field{}, err
	}
	f, ok := e.Fields[field]
	if !ok {
		return Field{}, fmt.Errorf("%w: %s has no field %q", ErrNoField, e.Path, field)
	}
	return f, nil
}

// Children lists the entities directly under ref, without fields.
func (s *Store) Children(ref string) ([]Entity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	var out []Entity
	for _, c := range s.st.children(id) {
		out = append(out, s.entityLocked(c, false))
	}
	return out, nil
}

// Walk calls fn for ref and every visible entity below it, parents
// before children, siblings by name then ID, with fields. It holds the
// store's lock: fn must not call the store.
func (s *Store) Walk(ref string, fn func(Entity) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	var walk func(ID) error
	walk = func(id ID) error {
		if err := fn(s.entityLocked(id, true)); err != nil {
			return err
		}
		for _, c := range s.st.children(id) {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(id)
}

// Schema returns the schema of a type.
func (s *Store) Schema(typ string) (Schema, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.schemaLocked(typ)
}

func (s *Store) schemaLocked(typ string) (Schema, bool) {
	w, ok := s.st.schemas[typ].winner()
	if !ok {
		return Schema{}, false
	}
	var sc Schema
	if err := json.Unmarshal(w.value, &sc); err != nil {
		return Schema{}, false
	}
	return sc, true
}

// Schemas lists every schema, by type.
func (s *Store) Schemas() []Schema {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Schema
	for t := range s.st.schemas {
		if sc, ok := s.schemaLocked(t); ok {
			out = append(out, sc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// PutSchema applies a schema to its type: new, or a compatible change of
// the current one (see Schema).
func (s *Store) PutSchema(ctx context.Context, sc Schema) error {
	_, err := s.Update(ctx, func(tx *Tx) error { return tx.PutSchema(sc) })
	return err
}
