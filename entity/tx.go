package entity

import (
	"context"
	"encoding/json"
	"fmt"
)

// Tx collects the writes of one Update. Its methods check each write
// against the current tree and schemas; nothing is written until the
// function given to Update returns nil.
type Tx struct {
	s       *Store
	writes  []pendingWrite
	idx     map[regKey]int
	created map[ID]pendingEntity
}

type pendingWrite struct {
	reg   regKey
	value []byte
}

type pendingEntity struct {
	parent    ID
	typ, name string
}

func (tx *Tx) write(r regKey, value []byte) {
	if i, ok := tx.idx[r]; ok {
		tx.writes[i].value = value // the last write of a register wins
		return
	}
	tx.idx[r] = len(tx.writes)
	tx.writes = append(tx.writes, pendingWrite{reg: r, value: value})
}

// Update runs fn, then commits the writes it made as one atomic group:
// durable on this node when Update returns, and applied together on every
// other node. All writes of the group carry the same version, returned.
// fn runs under the store's lock: it must only call tx's methods.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) (Version, error) {
	tx := &Tx{s: s, idx: make(map[regKey]int), created: make(map[ID]pendingEntity)}
	s.mu.Lock()
	err := fn(tx)
	var maxSeen Timestamp
	if err == nil {
		for _, w := range tx.writes {
			if cur, ok := s.st.register(w.reg, false).winner(); ok && maxSeen.Less(cur.Timestamp) {
				maxSeen = cur.Timestamp
			}
		}
	}
	s.mu.Unlock()
	if err != nil {
		return Version{}, err
	}
	if len(tx.writes) == 0 {
		return Version{}, nil
	}
	if err := s.clockErr(); err != nil {
		return Version{}, err
	}
	// Stamp after every version this write replaces, even when this
	// node's clock is behind: otherwise the write would lose to the value
	// it replaces. Past a version stamped beyond the clock's bound, the
	// stamp follows that version without moving the clock (NowAfter).
	ts, _ := s.clock.NowAfter(maxSeen)
	v := Version{Timestamp: ts, Writer: s.opts.NodeID}
	req := &commitReq{v: v, ws: make([]write, len(tx.writes)), done: make(chan error, 1)}
	for i, w := range tx.writes {
		req.ws[i] = write{reg: w.reg, ts: v.Timestamp, value: w.value}
		req.size += 48 + len(w.reg.name) + len(w.value)
	}
	if req.size > maxRecordBytes {
		return Version{}, fmt.Errorf("%w: one update of %d writes is about %d KiB; at most %d KiB go in one update: split it",
			ErrTooLarge, len(req.ws), req.size>>10, maxRecordBytes>>10)
	}
	select {
	case s.commits <- req:
	case <-ctx.Done():
		return Version{}, ctx.Err()
	case <-s.ctx.Done():
		return Version{}, ErrClosed
	}
	select {
	case err := <-req.done:
		if err != nil {
			return Version{}, err
		}
		return v, nil
	case <-s.stopped:
		select {
		case err := <-req.done:
			if err == nil {
				return v, nil
			}
		default:
		}
		return Version{}, ErrClosed
	case <-ctx.Done():
		return Version{}, fmt.Errorf("entity: write of %s: outcome unknown: %w", v, ctx.Err())
	}
}

// resolve finds an entity for a write: visible, or created earlier in
// this transaction (by ID).
func (tx *Tx) resolve(ref string) (ID, error) {
	if _, ok := tx.created[ID(ref)]; ok {
		return ID(ref), nil
	}
	return tx.s.resolveLocked(ref)
}

func (tx *Tx) typeOf(id ID) string {
	if p, ok := tx.created[id]; ok {
		return p.typ
	}
	return tx.s.st.typ(id)
}

func (tx *Tx) where(id ID) string {
	if p, ok := tx.created[id]; ok {
		return fmt.Sprintf("new entity %q", p.name)
	}
	return tx.s.st.path(id)
}

// nameTaken reports whether parent has a visible or pending child named
// name, other than self.
func (tx *Tx) nameTaken(parent ID, name string, self ID) (ID, bool) {
	if id, _ := tx.s.st.lookup(parent, name); id != "" && id != self {
		return id, true
	}
	for id, p := range tx.created {
		if p.parent == parent && p.name == name && id != self {
			return id, true
		}
	}
	return "", false
}

// Create makes an entity of type typ named name under parent (a path,
// an ID, or the ID of an entity created earlier in this transaction).
func (tx *Tx) Create(parent, typ, name string) (ID, error) {
	pid, err := tx.resolve(parent)
	if err != nil {
		return "", fmt.Errorf("create %q: parent: %w", name, err)
	}
	if err := ValidateIdent("type", typ); err != nil {
		return "", err
	}
	name = NormalizeName(name)
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if other, taken := tx.nameTaken(pid, name, ""); taken {
		return "", fmt.Errorf("%w: %s/%s (id %s); choose another name", ErrExists, trimRoot(tx.where(pid)), name, other)
	}
	id, err := newID(tx.s.clock.Now().Wall/1e6, tx.s.opts.Rand)
	if err != nil {
		return "", err
	}
	tx.created[id] = pendingEntity{parent: pid, typ: typ, name: name}
	tx.write(regKey{entity: id, kind: 'a', name: attrType}, String(typ).Encode())
	tx.write(regKey{entity: id, kind: 'a', name: attrName}, String(name).Encode())
	tx.write(regKey{entity: id, kind: 'a', name: attrParent}, parentValue{parent: pid}.encode())
	tx.write(regKey{entity: id, kind: 'a', name: attrExists}, Bool(true).Encode())
	return id, nil
}

func trimRoot(p string) string {
	if p == "/" {
		return ""
	}
	return p
}

// Set writes a field. A Null value clears it.
func (tx *Tx) Set(ref, field string, v Value) error {
	id, err := tx.resolve(ref)
	if err != nil {
		return err
	}
	if id == Root {
		return fmt.Errorf("%w: the root has no fields", ErrNotFound)
	}
	if err := ValidateIdent("field", field); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%s: field %q: %w", tx.where(id), field, err)
	}
	enc := v.Encode()
	if len(enc) > tx.s.opts.MaxValueBytes {
		return fmt.Errorf("%w: %s: field %q: %d bytes, at most %d", ErrTooLarge, tx.where(id), field, len(enc), tx.s.opts.MaxValueBytes)
	}
	if sc, ok := tx.s.schemaLocked(tx.typeOf(id)); ok {
		if err := sc.Check(tx.where(id), field, v); err != nil {
			return err
		}
	}
	tx.write(regKey{entity: id, kind: 'f', name: field}, enc)
	return nil
}

// Rename gives an entity a new name under the same parent.
func (tx *Tx) Rename(ref, name string) error {
	id, err := tx.resolve(ref)
	if err != nil {
		return err
	}
	if id == Root {
		return fmt.Errorf("%w: the root cannot be renamed", ErrNotFound)
	}
	name = NormalizeName(name)
	if err := ValidateName(name); err != nil {
		return err
	}
	if other, taken := tx.nameTaken(tx.s.st.parent(id), name, id); taken {
		return fmt.Errorf("%w: %s (id %s) is already named %q", ErrExists, tx.where(other), other, name)
	}
	tx.write(regKey{entity: id, kind: 'a', name: attrName}, String(name).Encode())
	return nil
}

// Move puts an entity under a new parent. Moving an entity under itself
// or one of its descendants is refused (ErrCycle); concurrent moves that
// would close a cycle are resolved as the package doc says.
func (tx *Tx) Move(ref, newParent string) error {
	id, err := tx.resolve(ref)
	if err != nil {
		return err
	}
	if id == Root {
		return fmt.Errorf("%w: the root cannot be moved", ErrNotFound)
	}
	pid, err := tx.resolve(newParent)
	if err != nil {
		return fmt.Errorf("new parent: %w", err)
	}
	if tx.s.st.isAncestor(id, pid) {
		return fmt.Errorf("%w: %s is %s or below it", ErrCycle, tx.where(pid), tx.where(id))
	}
	name := tx.s.st.name(id)
	if other, taken := tx.nameTaken(pid, name, id); taken {
		return fmt.Errorf("%w: %s/%s (id %s)", ErrExists, trimRoot(tx.where(pid)), name, other)
	}
	cur := tx.s.st.parent(id)
	tx.write(regKey{entity: id, kind: 'a', name: attrParent}, parentValue{parent: pid, prev: cur}.encode())
	return nil
}

// Delete removes an entity and, with it, everything below it. An entity
// with children is only deleted when recursive is true.
func (tx *Tx) Delete(ref string, recursive bool) error {
	id, err := tx.resolve(ref)
	if err != nil {
		return err
	}
	if id == Root {
		return fmt.Errorf("%w: the root cannot be deleted", ErrNotFound)
	}
	if n := len(tx.s.st.children(id)); n > 0 && !recursive {
		children, them := fmt.Sprintf("%d children", n), "them"
		if n == 1 {
			children, them = "1 child", "it"
		}
		return fmt.Errorf("%w: %s has %s; delete it with --recursive to delete %s too", ErrNotEmpty, tx.where(id), children, them)
	}
	tx.write(regKey{entity: id, kind: 'a', name: attrExists}, Bool(false).Encode())
	return nil
}

// Restore undeletes an entity by ID, with everything below it that was
// deleted with it.
func (tx *Tx) Restore(id ID) error {
	if err := id.Validate(); err != nil {
		return err
	}
	if tx.s.st.ents[id] == nil || id == Root {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	tx.write(regKey{entity: id, kind: 'a', name: attrExists}, Bool(true).Encode())
	return nil
}

// Create makes one entity; see Tx.Create.
func (s *Store) Create(ctx context.Context, parent, typ, name string) (ID, error) {
	var id ID
	_, err := s.Update(ctx, func(tx *Tx) error {
		var err error
		id, err = tx.Create(parent, typ, name)
		return err
	})
	return id, err
}

// Set writes one field; see Tx.Set.
func (s *Store) Set(ctx context.Context, ref, field string, v Value) (Version, error) {
	return s.Update(ctx, func(tx *Tx) error { return tx.Set(ref, field, v) })
}

// Rename renames one entity; see Tx.Rename. It returns the version of
// the write, as Set does.
func (s *Store) Rename(ctx context.Context, ref, name string) (Version, error) {
	return s.Update(ctx, func(tx *Tx) error { return tx.Rename(ref, name) })
}

// Move moves one entity; see Tx.Move. It returns the version of the
// write, as Set does.
func (s *Store) Move(ctx context.Context, ref, newParent string) (Version, error) {
	return s.Update(ctx, func(tx *Tx) error { return tx.Move(ref, newParent) })
}

// Delete deletes one entity (and with recursive everything below it);
// see Tx.Delete. It returns the version of the write, as Set does: every
// entity deleted carries it, and Restore undoes it.
func (s *Store) Delete(ctx context.Context, ref string, recursive bool) (Version, error) {
	return s.Update(ctx, func(tx *Tx) error { return tx.Delete(ref, recursive) })
}

// PutSchema applies a schema to its type in this transaction: new, or a
// compatible change of the current one (see Schema). Checked against the
// schema current under the store's lock, so two concurrent changes on one
// node cannot both pass the compatibility check against the same old one.
func (tx *Tx) PutSchema(sc Schema) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	if old, ok := tx.s.schemaLocked(sc.Type); ok {
		if err := sc.CompatibleWith(old); err != nil {
			return err
		}
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("entity: schema %s: %w", sc.Type, err)
	}
	tx.write(regKey{kind: 's', name: sc.Type}, b)
	return nil
}
