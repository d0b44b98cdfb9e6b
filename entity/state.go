package entity

import (
	"slices"
	"sort"
	"strings"
)

// version is a register's winning write, with its stored value and the
// record that holds it.
type version struct {
	Version
	value []byte
	rec   *record // nil when its record is gone (see removeRecord)
}

// register is a last-writer-wins register: the greatest version seen of
// one attribute, field or schema. It only ever moves to a greater
// version; deleting a record never changes it.
type register struct {
	w   version
	has bool
}

func (r *register) winner() (version, bool) {
	if r == nil || !r.has {
		return version{}, false
	}
	return r.w, true
}

// record is a record of the store, as the view tracks it.
type record struct {
	key string
	// alive counts the record's writes that are their register's
	// winner. At 0 the record is garbage: no reader can observe it.
	alive int
	gone  bool // deleted from the store (removed from the view)
}

// entState is what a node holds of one entity.
type entState struct {
	attrs  map[string]*register // attrType, attrName, attrParent, attrExists
	fields map[string]*register
}

// change is a register whose winner changed.
type change struct {
	reg      regKey
	old, new version
	hadOld   bool
	hasNew   bool
}

// state is a node's materialized view of the entity tree: every live
// version of every register, kept in step with the replicated store, and
// the tree derived from the winners. It is not safe for concurrent use;
// Store guards it.
type state struct {
	ents    map[ID]*entState
	schemas map[string]*register
	records map[string]*record // live records of the store
	garbage map[string]*record // live records with no winner left

	// The tree derived from the winners. Attribute changes mark their
	// entity touched; rebuild brings the tree up to date incrementally,
	// or from scratch when a change may close or open a cycle.
	full     bool                   // next rebuild starts from scratch
	touched  map[ID]struct{}        // entities whose attributes changed
	eff      map[ID]ID              // effective parent of each existing entity
	kids     map[ID]map[ID]struct{} // existing entities by effective parent
	vis      map[ID]bool            // visible entities
	names    map[ID]map[string][]ID // visible children by name (NormalizeName), IDs ascending
	indexed  map[ID]indexEntry      // where each visible entity is indexed
	reverted map[ID]bool            // entities whose move was undone to break a cycle
}

func newState() *state {
	return &state{
		ents: make(map[ID]*entState), schemas: make(map[string]*register),
		records: make(map[string]*record), garbage: make(map[string]*record),
		full: true, touched: make(map[ID]struct{}),
	}
}

func (s *state) register(r regKey, create bool) *register {
	if r.kind == 's' {
		reg := s.schemas[r.name]
		if reg == nil && create {
			reg = &register{}
			s.schemas[r.name] = reg
		}
		return reg
	}
	e := s.ents[r.entity]
	if e == nil {
		if !create {
			return nil
		}
		e = &entState{attrs: make(map[string]*register, 4), fields: make(map[string]*register)}
		s.ents[r.entity] = e
	}
	m := e.fields
	if r.kind == 'a' {
		m = e.attrs
	}
	reg := m[r.name]
	if reg == nil && create {
		reg = &register{}
		m[r.name] = reg
	}
	return reg
}

// addRecord applies a record of the store: each write that is greater
// than its register's winner becomes the winner. It returns the changes
// of winner, in the record's order. A record already applied changes
// nothing.
func (s *state) addRecord(key string, writer string, ws []write) []change {
	if _, ok := s.records[key]; ok {
		return nil
	}
	rec := &record{key: key}
	s.records[key] = rec
	var changes []change
	for _, w := range ws {
		if ch, ok := s.apply(w.reg, version{Version: Version{Timestamp: w.ts, Writer: writer}, value: w.value, rec: rec}); ok {
			changes = append(changes, ch)
		}
	}
	if rec.alive == 0 {
		s.garbage[key] = rec
	}
	return changes
}

// apply offers v to register r; it returns the change of winner, if v
// wins.
func (s *state) apply(r regKey, v version) (change, bool) {
	reg := s.register(r, true)
	old, hadOld := reg.winner()
	if hadOld && v.Compare(old.Version) <= 0 {
		return change{}, false
	}
	if hadOld && old.rec != nil && !old.rec.gone {
		old.rec.alive--
		if old.rec.alive == 0 {
			s.garbage[old.rec.key] = old.rec
		}
	}
	if v.rec != nil {
		v.rec.alive++
		delete(s.garbage, v.rec.key)
	}
	reg.w, reg.has = v, true
	if r.kind == 'a' {
		s.touched[r.entity] = struct{}{}
	}
	return change{reg: r, old: old, hadOld: hadOld, new: v, hasNew: true}, true
}

// removeRecord applies the deletion of a record. Winners it held stay:
// a record is only deleted once greater versions beat all its writes,
// and those are in the store of whoever deleted it, on their way here if
// not yet arrived (a deletion travels in a delta whose ancestors hold
// them). So a deletion changes no value, in any order of arrival.
func (s *state) removeRecord(key string) {
	rec, ok := s.records[key]
	if !ok {
		return
	}
	rec.gone = true
	delete(s.records, key)
	delete(s.garbage, key)
}

func (s *state) attr(id ID, name string) (version, bool) {
	e := s.ents[id]
	if e == nil {
		return version{}, false
	}
	return e.attrs[name].winner()
}

// exists reports whether an entity is created and not deleted, whatever
// its ancestors.
func (s *state) exists(id ID) bool {
	if id == Root {
		return true
	}
	x, ok := s.attr(id, attrExists)
	if !ok {
		return false
	}
	if _, ok := s.attr(id, attrType); !ok {
		return false // created on another node, not all of it here yet
	}
	v, err := DecodeValue(x.value)
	return err == nil && v.Kind == KindBool && v.Bool
}

func (s *state) rawParent(id ID) (parentValue, Version) {
	p, ok := s.attr(id, attrParent)
	if !ok {
		return parentValue{parent: Root}, Version{}
	}
	pv, err := decodeParent(p.value)
	if err != nil {
		return parentValue{parent: Root}, p.Version
	}
	return pv, p.Version
}

// rebuild brings the derived tree up to date with the registers.
func (s *state) rebuild() {
	if s.full || s.eff == nil {
		s.fullRebuild()
		return
	}
	if len(s.touched) == 0 {
		return
	}
	ids := make([]ID, 0, len(s.touched))
	for id := range s.touched {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if !s.update(id) {
			s.fullRebuild()
			return
		}
	}
	clear(s.touched)
}

// update re-derives one entity's place in the tree, and the visibility of
// its subtree. It returns false when only a full rebuild is safe: the
// change closes a cycle, or cycles were broken before (undoing a move
// depends on the whole tree).
func (s *state) update(id ID) bool {
	if len(s.reverted) > 0 {
		return false
	}
	wasVis := s.vis[id]
	if p, ok := s.eff[id]; ok {
		delete(s.kids[p], id)
		delete(s.eff, id)
	}
	if wasVis {
		s.unindex(id)
	}
	if !s.exists(id) {
		delete(s.vis, id)
		if wasVis {
			s.setSubtreeVisible(id, false)
		}
		return true
	}
	pv, _ := s.rawParent(id)
	p := pv.parent
	for cur, n := p, 0; cur != Root && n < 100_000; n++ {
		if cur == id {
			return false
		}
		next, ok := s.eff[cur]
		if !ok {
			break
		}
		cur = next
	}
	s.eff[id] = p
	s.addKid(p, id)
	v := p == Root || s.vis[p]
	if v {
		s.vis[id] = true
		s.index(id)
	} else {
		delete(s.vis, id)
	}
	if v != wasVis {
		s.setSubtreeVisible(id, v)
	}
	return true
}

func (s *state) addKid(p, id ID) {
	m := s.kids[p]
	if m == nil {
		m = make(map[ID]struct{})
		s.kids[p] = m
	}
	m[id] = struct{}{}
}

// setSubtreeVisible sets the visibility of everything below id.
func (s *state) setSubtreeVisible(id ID, v bool) {
	for c := range s.kids[id] {
		if s.vis[c] == v {
			continue
		}
		if v {
			s.vis[c] = true
			s.index(c)
		} else {
			s.unindex(c)
			delete(s.vis, c)
		}
		s.setSubtreeVisible(c, v)
	}
}

// indexEntry is where an entity sits in state.names.
type indexEntry struct {
	parent ID
	name   string
}

func (s *state) index(id ID) {
	p, n := s.eff[id], NormalizeName(s.name(id))
	m := s.names[p]
	if m == nil {
		m = make(map[string][]ID)
		s.names[p] = m
	}
	l := m[n]
	i, found := slices.BinarySearch(l, id)
	if !found {
		m[n] = slices.Insert(l, i, id)
	}
	s.indexed[id] = indexEntry{p, n}
}

func (s *state) unindex(id ID) {
	e, ok := s.indexed[id]
	if !ok {
		return
	}
	delete(s.indexed, id)
	m := s.names[e.parent]
	l := m[e.name]
	if i, found := slices.BinarySearch(l, id); found {
		m[e.name] = slices.Delete(l, i, i+1)
		if len(m[e.name]) == 0 {
			delete(m, e.name)
		}
		if len(m) == 0 {
			delete(s.names, e.parent)
		}
	}
}

// fullRebuild derives the tree from the registers' winners; see the
// package doc for the rules. It depends only on the set of live versions,
// so every node that holds the same versions derives the same tree.
func (s *state) fullRebuild() {
	s.full = false
	clear(s.touched)
	eff := make(map[ID]ID, len(s.ents))
	for id := range s.ents {
		if s.exists(id) {
			pv, _ := s.rawParent(id)
			eff[id] = pv.parent
		}
	}
	ids := make([]ID, 0, len(eff))
	for id := range eff {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })

	// Break cycles: in each cycle, the move with the greatest version (the
	// latest) is undone: its entity goes back to the parent its mover saw
	// before. If that closes a cycle again, the entity goes to the root.
	reverted := make(map[ID]bool)
	for {
		cycle := findCycle(ids, eff)
		if cycle == nil {
			break
		}
		loser, best := cycle[0], Version{}
		for _, id := range cycle {
			if _, v := s.rawParent(id); v.Compare(best) > 0 {
				loser, best = id, v
			}
		}
		pv, _ := s.rawParent(loser)
		if !reverted[loser] && pv.prev != "" && pv.prev != eff[loser] {
			eff[loser] = pv.prev
		} else {
			eff[loser] = Root
		}
		reverted[loser] = true
	}

	vis := make(map[ID]bool, len(eff))
	var visible func(id ID, depth int) bool
	visible = func(id ID, depth int) bool {
		if id == Root {
			return true
		}
		if v, ok := vis[id]; ok {
			return v
		}
		p, ok := eff[id]
		v := ok && depth < 10_000 && visible(p, depth+1)
		vis[id] = v
		return v
	}
	names := make(map[ID]map[string][]ID)
	for _, id := range ids { // ascending, so each name's list is sorted
		if !visible(id, 0) {
			continue
		}
		p := eff[id]
		m := names[p]
		if m == nil {
			m = make(map[string][]ID)
			names[p] = m
		}
		n := NormalizeName(s.name(id))
		m[n] = append(m[n], id)
	}
	kids := make(map[ID]map[ID]struct{})
	indexed := make(map[ID]indexEntry)
	for id, p := range eff {
		m := kids[p]
		if m == nil {
			m = make(map[ID]struct{})
			kids[p] = m
		}
		m[id] = struct{}{}
	}
	for p, m := range names {
		for n, l := range m {
			for _, id := range l {
				indexed[id] = indexEntry{p, n}
			}
		}
	}
	for id, v := range vis {
		if !v {
			delete(vis, id)
		}
	}
	s.eff, s.vis, s.names, s.kids, s.indexed, s.reverted = eff, vis, names, kids, indexed, reverted
}

// findCycle returns the entities of one cycle of parent pointers, or nil.
// It scans in ID order, so every node finds the same cycle first.
func findCycle(ids []ID, eff map[ID]ID) []ID {
	done := make(map[ID]bool, len(ids))
	for _, start := range ids {
		if done[start] {
			continue
		}
		var path []ID
		on := make(map[ID]int)
		cur := start
		for {
			if done[cur] {
				break
			}
			if i, ok := on[cur]; ok {
				return path[i:]
			}
			p, ok := eff[cur]
			if !ok {
				break // the root, or a parent that does not exist
			}
			on[cur] = len(path)
			path = append(path, cur)
			cur = p
		}
		for _, id := range path {
			done[id] = true
		}
	}
	return nil
}

func (s *state) name(id ID) string {
	n, ok := s.attr(id, attrName)
	if !ok {
		return ""
	}
	v, err := DecodeValue(n.value)
	if err != nil {
		return ""
	}
	return v.Str
}

func (s *state) typ(id ID) string {
	t, ok := s.attr(id, attrType)
	if !ok {
		return ""
	}
	v, err := DecodeValue(t.value)
	if err != nil {
		return ""
	}
	return v.Str
}

// visible reports whether id exists and all its ancestors do.
func (s *state) visible(id ID) bool {
	s.rebuild()
	return id == Root || s.vis[id]
}

// parent returns the effective parent of a visible entity.
func (s *state) parent(id ID) ID {
	s.rebuild()
	return s.eff[id]
}

// path returns the path of a visible entity ("/" for the root).
func (s *state) path(id ID) string {
	s.rebuild()
	if id == Root {
		return "/"
	}
	var parts []string
	for cur := id; cur != Root && len(parts) < 10_000; cur = s.eff[cur] {
		parts = append(parts, s.name(cur))
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

// lookup finds the visible child of parent named name. When concurrent
// creates left several, it returns the one with the smallest ID (in
// general the first created) and how many there are.
//
// Names compare in normal form C (NormalizeName): the index is keyed by
// it, so a name stored before names were normalized is still found, and
// two siblings stored as NFC and NFD of the same name count as
// duplicates of one path.
func (s *state) lookup(parent ID, name string) (ID, int) {
	s.rebuild()
	ids := s.names[parent][NormalizeName(name)]
	if len(ids) == 0 {
		return "", 0
	}
	return ids[0], len(ids)
}

// children lists the visible children of id, by name then ID.
func (s *state) children(id ID) []ID {
	s.rebuild()
	m := s.names[id]
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []ID
	for _, n := range names {
		out = append(out, m[n]...)
	}
	return out
}

// isAncestor reports whether a is id or one of its ancestors.
func (s *state) isAncestor(a, id ID) bool {
	s.rebuild()
	for cur, n := id, 0; n < 10_000; n++ {
		if cur == a {
			return true
		}
		if cur == Root {
			return false
		}
		p, ok := s.eff[cur]
		if !ok {
			return false
		}
		cur = p
	}
	return false
}

// pathAny returns the path of an entity through its parents' names,
// whether or not it is visible (for watchers of deleted entities).
func (s *state) pathAny(id ID) string {
	s.rebuild()
	if id == Root {
		return "/"
	}
	var parts []string
	seen := make(map[ID]bool)
	for cur := id; cur != Root && !seen[cur]; {
		seen[cur] = true
		parts = append(parts, s.name(cur))
		if p, ok := s.eff[cur]; ok {
			cur = p
		} else {
			pv, _ := s.rawParent(cur)
			cur = pv.parent
		}
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}
