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
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
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
)

// Op is one write to the backend: a Put, or a Delete when Delete is true.
type Op struct {
	Key    ds.Key
	Value  []byte
	Delete bool
}

// Change is one entry of the backend's change feed.
type Change struct {
	Key     ds.Key
	Value   []byte
	Deleted bool
	Local   bool
}

// Feed is a subscription to the backend's changes.
type Feed interface {
	// C delivers changes in the order the backend applied them; it is
	// closed when the feed or the backend closes.
	C() <-chan Change
	// Overflowed reports, and clears, whether changes were dropped.
	Overflowed() bool
	Close()
}

// Backend is the replicated key-value store under the entity tree
// (crdt.Store through an adapter). Apply must be durable on return and
// must apply ops atomically for replication.
type Backend interface {
	Apply(ctx context.Context, ops []Op) error
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
	// Rand is the source of entity IDs. Default crypto/rand.
	Rand io.Reader
	// MaxValueBytes bounds an encoded field value. Default 64 KiB: a value
	// travels in every replication message that carries it.
	MaxValueBytes int
	// FeedBuffer is the change-feed buffer. Default 65536 changes; on
	// overflow the store reloads its view from the backend.
	FeedBuffer int
	// Logger receives the store's logs. Default: discard.
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
	if opts.FeedBuffer <= 0 {
		opts.FeedBuffer = 1 << 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Store{
		b:        b,
		opts:     opts,
		clock:    NewClock(opts.Now),
		log:      opts.Logger.With("component", "entity"),
		st:       newState(),
		watchers: make(map[*Watcher]struct{}),
	}
	// Subscribe before loading, so no change falls between the two;
	// changes seen twice are harmless (see applyChange).
	s.feed = b.Subscribe(ds.NewKey("/"), opts.FeedBuffer)
	if err := s.load(ctx); err != nil {
		s.feed.Close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow()
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
		for w := range s.watchers {
			w.end()
		}
		s.watchers = nil
		s.wmu.Unlock()
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
	var maxTS Timestamp
	for _, prefix := range []string{entitiesPrefix, schemasPrefix} {
		res, err := s.b.Query(ctx, query.Query{Prefix: prefix})
		if err != nil {
			return fmt.Errorf("entity: load: %w", err)
		}
		for r := range res.Next() {
			if r.Error != nil {
				res.Close()
				return fmt.Errorf("entity: load: %w", r.Error)
			}
			rk, v, err := parseKey(r.Key)
			if err != nil {
				s.log.Warn("ignoring stored key", "key", r.Key, "err", err)
				continue
			}
			st.apply(rk, v, r.Value, true)
			if maxTS.Less(v.Timestamp) {
				maxTS = v.Timestamp
			}
		}
		res.Close()
	}
	s.clock.Observe(maxTS)
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	return nil
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
// back through the feed), which is harmless for removals and for a
// version above the register's winner. A version below the winner may be
// one already removed: it is checked against the backend. (A version is
// only ever removed by a write that saw it and is stamped above it.)
func (s *Store) applyChange(c Change) {
	rk, v, err := parseKey(c.Key.String())
	if err != nil {
		return // not an entity key (raw key-value use of the store)
	}
	if !c.Deleted {
		s.clock.Observe(v.Timestamp)
		s.mu.RLock()
		w, ok := s.st.register(rk, false).winner()
		s.mu.RUnlock()
		if ok && v.Compare(w.Version) < 0 {
			if has, err := s.b.Has(s.ctx, c.Key); err != nil || !has {
				return
			}
		}
	}
	s.mu.Lock()
	ch, changed := s.st.apply(rk, v, c.Value, !c.Deleted)
	var ev Event
	if changed {
		ev = s.event(ch, c.Local)
	}
	s.mu.Unlock()
	if changed {
		s.notify(ev)
	}
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
	// Concurrent counts other live versions: writes made concurrently
	// (on both sides of a partition) that lost, kept until the next write.
	Concurrent int `json:"concurrent,omitempty"`
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
		e.Fields[name] = Field{Value: v, Version: w.Version, Concurrent: len(reg.vs) - 1}
	}
	if sc, ok := s.schemaLocked(e.Type); ok {
		for name, spec := range sc.Fields {
			if _, ok := e.Fields[name]; ok {
				continue
			}
			if reg := s.st.ents[id].fields[name]; reg != nil && len(reg.vs) > 0 {
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
