package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
)

// The entity model ("entity") drives the entity tree's HTTP API. Prepare
// applies two schemas and creates a fixed tree on one host:
//
//	/L0 /L1 /L2           lines (no schema): moved under each other or
//	                      the root, so concurrent moves can close cycles
//	/Lk/S00 ... /Lk/S07   sensors (schema: typed fields), moved between
//	                      lines and the root; never deleted
//	/T0 /T1 /T2           tags (schema), deleted and restored
//
// Clients then write typed fields (label string, count int, level float,
// on bool) on every entity, alone or in batches (one version for the
// batch), delete and restore tags, and move sensors and lines. Every
// write's answer carries its version (HLC timestamp, writer), recorded in
// Op.Ext; values are unique per process and sequence number, so a value
// nobody wrote is recognised.
//
// Oracle: per register (a field; a tag's existence; an entity's parent)
// the expected winner is the greatest version among acknowledged writes
// (the prepared creation counts as one). A write whose outcome is unknown
// (a timeout) may or may not be there, so a later version is accepted
// when it matches such a write's value and node. Fields of a tag that may
// end deleted are not judged (a deleted entity's fields are hidden); a
// line's parent is not judged strictly when the lines' expected parents
// close a cycle (the documented rule undoes the latest move of the cycle).
const (
	entModel      = "entity"
	entKindSet    = "set"     // one field: PUT /v1/fields
	entKindBatch  = "batch"   // several fields, one version: POST /v1/fields/batch
	entKindDelete = "delete"  // a tag: DELETE /v1/entities
	entKindRest   = "restore" // a tag: POST /v1/entities/restore
	entKindMove   = "move"    // a sensor or a line: PATCH /v1/entities {"parent"}

	entLines   = 3
	entTags    = 3
	entTypeLn  = "line"
	entTypeSn  = "sensor"
	entTypeTag = "tag"

	// Operation mix, in percent: the rest are single field writes.
	entBatchPct   = 10
	entDeletePct  = 4
	entRestorePct = 6
	entMovePct    = 8
)

// entFields are the typed fields of sensors and tags (lines have no
// schema and take the same fields with explicit types).
var entFields = []struct {
	name string
	kind entity.Kind
}{{"label", entity.KindString}, {"count", entity.KindInt}, {"level", entity.KindFloat}, {"on", entity.KindBool}}

func newEntityModel(cfg ModelConfig) (*Model, error) {
	sensors := cfg.OverwriteKeys / 2
	if sensors < 2 {
		return nil, fmt.Errorf("chaos: entity model: OverwriteKeys %d gives %d sensors, want >= 2 (OverwriteKeys >= 4)", cfg.OverwriteKeys, sensors)
	}
	m := &entityModel{sensors: sensors, cache: map[int]*entOp{}}
	return &Model{
		Name:     entModel,
		Workload: m,
		Reader:   entReader{},
		Oracle:   entOracle{m},
		Checkers: []Checker{entLostChecker{m}, entPhantomChecker{m}, entTreeChecker{m}, entClockChecker{m}},
	}, nil
}

// entPlanned is one entity Prepare created.
type entPlanned struct {
	ID      entity.ID      `json:"id"`
	Type    string         `json:"type"`
	Name    string         `json:"name"`
	Parent  entity.ID      `json:"parent"`
	Version entity.Version `json:"version"` // of the creation
}

// entityModel is the workload and the shared knowledge of one scenario:
// the prepared tree, and the decoded operations (cached by index: the
// oracle reads the whole history at every poll).
type entityModel struct {
	sensors int

	mu    sync.Mutex
	plan  []entPlanned
	byID  map[entity.ID]*entPlanned
	cache map[int]*entOp
}

// entExt is what an entity operation records in Op.Ext.
type entExt struct {
	// Version is the write's version, from the node's answer (acked only).
	Version *entity.Version `json:"version,omitempty"`
	// Writes are the field writes of set and batch.
	Writes []entWrite `json:"writes,omitempty"`
	// Entity is the entity of delete, restore and move.
	Entity entity.ID `json:"entity,omitempty"`
	// Parent is the new parent of a move.
	Parent entity.ID `json:"parent,omitempty"`
}

type entWrite struct {
	Entity entity.ID    `json:"entity"`
	Field  string       `json:"field"`
	Value  entity.Value `json:"value"`
}

// entOp is a decoded client operation.
type entOp struct {
	Op
	entExt
}

// decoded returns the client operations of h, decoded (nemesis events
// and undecodable entries left out).
func (m *entityModel) decoded(h []Op) []*entOp {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*entOp, 0, len(h))
	for _, o := range h {
		if o.Process == NemesisProcess {
			continue
		}
		d, ok := m.cache[o.Index]
		if !ok || d.Op.End != o.End || d.Op.Kind != o.Kind {
			d = &entOp{Op: o}
			if len(o.Ext) > 0 && json.Unmarshal(o.Ext, &d.entExt) != nil {
				continue
			}
			m.cache[o.Index] = d
		}
		out = append(out, d)
	}
	return out
}

// planned returns the prepared entities (nil before Prepare).
func (m *entityModel) planned() ([]entPlanned, map[entity.ID]*entPlanned) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.plan, m.byID
}

func (m *entityModel) setPlan(plan []entPlanned) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.plan = plan
	m.byID = make(map[entity.ID]*entPlanned, len(plan))
	for i := range m.plan {
		m.byID[m.plan[i].ID] = &m.plan[i]
	}
}

// Prepare applies the schemas and creates the tree on the first host,
// then waits until every host shows all of it, so that every client can
// address every entity from its first operation.
func (m *entityModel) Prepare(ctx context.Context, hosts []*Host) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	h := hosts[0]
	spec := entity.Schema{Fields: map[string]entity.FieldSpec{}}
	for _, f := range entFields {
		spec.Fields[f.name] = entity.FieldSpec{Type: f.kind}
	}
	for _, typ := range []string{entTypeSn, entTypeTag} {
		spec.Type = typ
		if err := entCall(ctx, h, http.MethodPut, "/v1/schemas", spec, nil); err != nil {
			return err
		}
	}
	// Creations run in parallel (the node commits them in few groups):
	// the lines first, then what goes under them.
	create := func(want []entPlanned) ([]entPlanned, error) {
		errs := make([]error, len(want))
		var wg sync.WaitGroup
		for i := range want {
			wg.Go(func() {
				p := &want[i]
				pref := string(p.Parent)
				if p.Parent == entity.Root {
					pref = "/"
				}
				var res api.WriteResult
				errs[i] = entCall(ctx, h, http.MethodPost, "/v1/entities", map[string]string{"parent": pref, "type": p.Type, "name": p.Name}, &res)
				p.ID, p.Version = res.ID, res.Version
			})
		}
		wg.Wait()
		return want, errors.Join(errs...)
	}
	var want []entPlanned
	for i := range entLines {
		want = append(want, entPlanned{Type: entTypeLn, Name: fmt.Sprintf("L%d", i), Parent: entity.Root})
	}
	plan, err := create(want)
	if err != nil {
		return err
	}
	want = nil
	for i := range m.sensors {
		want = append(want, entPlanned{Type: entTypeSn, Name: fmt.Sprintf("S%02d", i), Parent: plan[i%entLines].ID})
	}
	for i := range entTags {
		want = append(want, entPlanned{Type: entTypeTag, Name: fmt.Sprintf("T%d", i), Parent: entity.Root})
	}
	rest, err := create(want)
	if err != nil {
		return err
	}
	plan = append(plan, rest...)
	m.setPlan(plan)
	// Every host shows the whole tree.
	for {
		var short []string
		for _, h := range hosts {
			s, err := entReader{}.Read(ctx, h)
			if err != nil {
				short = append(short, fmt.Sprintf("%s: %v", h.Name(), err))
				continue
			}
			if n := len(s.(*entState).ents); n < len(plan) {
				short = append(short, fmt.Sprintf("%s shows %d of %d entities", h.Name(), n, len(plan)))
			}
		}
		if len(short) == 0 {
			return nil
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("the prepared tree did not reach every host: %s", strings.Join(short, "; "))
		}
	}
}

// entCall sends one API request with a JSON body and decodes a 2xx
// answer into out.
func entCall(ctx context.Context, h *Host, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	code, resp, err := h.Request(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("%s: %s %s: %w", h.Name(), method, path, err)
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("%s: %s %s: HTTP %d: %s", h.Name(), method, path, code, strings.TrimSpace(string(resp)))
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			return fmt.Errorf("%s: %s %s: %w", h.Name(), method, path, err)
		}
	}
	return nil
}

func (m *entityModel) NewClient(p Process) Client {
	h := fnv.New32a()
	_, _ = h.Write([]byte(p.ID))
	return &entClient{m: m, p: p, salt: int64(h.Sum32() & 0x7ffff)}
}

type entClient struct {
	m    *entityModel
	p    Process
	salt int64 // from the process ID: makes int and float values unique
	seq  int64
}

func (c *entClient) Invoke(ctx context.Context, rng *rand.Rand) Op {
	plan, _ := c.m.planned()
	var lines, sensors, tags, writable []entity.ID
	for _, e := range plan {
		switch e.Type {
		case entTypeLn:
			lines = append(lines, e.ID)
		case entTypeSn:
			sensors = append(sensors, e.ID)
		case entTypeTag:
			tags = append(tags, e.ID)
		}
		writable = append(writable, e.ID)
	}
	c.seq++
	r := rng.IntN(100)
	switch {
	case r < entBatchPct:
		n := 2 + rng.IntN(2)
		seen := map[string]bool{}
		var ws []entWrite
		for range n {
			w := c.write(rng, writable)
			if k := string(w.Entity) + "/" + w.Field; !seen[k] {
				seen[k] = true
				ws = append(ws, w)
			}
		}
		return c.batch(ctx, ws)
	case r < entBatchPct+entDeletePct:
		return c.structure(ctx, entKindDelete, tags[rng.IntN(len(tags))], "")
	case r < entBatchPct+entDeletePct+entRestorePct:
		return c.structure(ctx, entKindRest, tags[rng.IntN(len(tags))], "")
	case r < entBatchPct+entDeletePct+entRestorePct+entMovePct:
		if rng.IntN(2) == 0 {
			return c.structure(ctx, entKindMove, sensors[rng.IntN(len(sensors))], lines[rng.IntN(len(lines))])
		}
		i := rng.IntN(len(lines))
		to := entity.Root
		if j := rng.IntN(len(lines)); j != i {
			to = lines[j]
		}
		return c.structure(ctx, entKindMove, lines[i], to)
	default:
		return c.set(ctx, c.write(rng, writable))
	}
}

// write draws a field write with a value unique to this process and
// sequence number (bools excepted).
func (c *entClient) write(rng *rand.Rand, ents []entity.ID) entWrite {
	f := entFields[rng.IntN(len(entFields))]
	uniq := c.salt<<24 | c.seq<<2 | int64(rng.IntN(4))
	var v entity.Value
	switch f.kind {
	case entity.KindString:
		v = entity.String(fmt.Sprintf("%s:%d:%d", c.p.ID, c.seq, uniq&3))
	case entity.KindInt:
		v = entity.Int(uniq)
	case entity.KindFloat:
		v = entity.Float(float64(uniq) + 0.5)
	default:
		v = entity.Bool(rng.IntN(2) == 0)
	}
	return entWrite{Entity: ents[rng.IntN(len(ents))], Field: f.name, Value: v}
}

func (c *entClient) set(ctx context.Context, w entWrite) Op {
	path := "/v1/fields?" + url.Values{"ref": {string(w.Entity)}, "field": {w.Field}}.Encode()
	body, _ := json.Marshal(w.Value)
	op := Op{Kind: entKindSet, Key: string(w.Entity) + "/" + w.Field, Value: w.Value.String()}
	var res api.WriteResult
	return c.do(ctx, op, entExt{Writes: []entWrite{w}}, http.MethodPut, path, body, &res, func() entity.Version { return res.Version })
}

func (c *entClient) batch(ctx context.Context, ws []entWrite) Op {
	type item struct {
		Ref   string          `json:"ref"`
		Field string          `json:"field"`
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	var req struct {
		Writes []item `json:"writes"`
	}
	var keys []string
	for _, w := range ws {
		var tv struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		}
		b, _ := json.Marshal(w.Value)
		_ = json.Unmarshal(b, &tv)
		req.Writes = append(req.Writes, item{Ref: string(w.Entity), Field: w.Field, Type: tv.Type, Value: tv.Value})
		keys = append(keys, string(w.Entity)+"/"+w.Field+"="+w.Value.String())
	}
	body, _ := json.Marshal(req)
	op := Op{Kind: entKindBatch, Value: strings.Join(keys, " ")}
	var res api.BatchResult
	return c.do(ctx, op, entExt{Writes: ws}, http.MethodPost, "/v1/fields/batch", body, &res, func() entity.Version { return res.Version })
}

func (c *entClient) structure(ctx context.Context, kind string, id, parent entity.ID) Op {
	op := Op{Kind: kind, Key: string(id)}
	ext := entExt{Entity: id}
	var method, path string
	var body []byte
	switch kind {
	case entKindDelete:
		method, path = http.MethodDelete, "/v1/entities?"+url.Values{"ref": {string(id)}}.Encode()
	case entKindRest:
		method, path = http.MethodPost, "/v1/entities/restore"
		body, _ = json.Marshal(map[string]string{"id": string(id)})
	case entKindMove:
		p := string(parent)
		if parent == entity.Root {
			p = "/"
		}
		op.Value, ext.Parent = string(parent), parent
		method, path = http.MethodPatch, "/v1/entities?"+url.Values{"ref": {string(id)}}.Encode()
		body, _ = json.Marshal(map[string]string{"parent": p})
	}
	var res api.WriteResult
	return c.do(ctx, op, ext, method, path, body, &res, func() entity.Version { return res.Version })
}

// do sends the request, classifies the outcome and records the version
// of an acknowledged write.
func (c *entClient) do(ctx context.Context, op Op, ext entExt, method, path string, body []byte, res any, version func() entity.Version) Op {
	op.Host, op.Start = c.p.Host.Name(), time.Now()
	code, resp, err := c.p.Host.Request(ctx, method, path, body)
	op.End = time.Now()
	op.Result = Classify(code, err)
	switch {
	case err != nil:
		op.Error = err.Error()
	case op.Result != ResultOK:
		op.Error = fmt.Sprintf("HTTP %d: %s", code, strings.TrimSpace(string(resp)))
	default:
		if derr := json.Unmarshal(resp, res); derr != nil || version().Timestamp.IsZero() {
			// Applied, but the answer does not say with which version:
			// the write's outcome is as good as unknown.
			op.Result, op.Error = ResultInfo, fmt.Sprintf("answer without a version: %.200s", resp)
		} else {
			v := version()
			ext.Version = &v
		}
	}
	op.Ext, _ = json.Marshal(ext)
	return op
}

// entView is one visible entity as a host shows it.
type entView struct {
	ID         entity.ID
	Type, Name string
	Parent     entity.ID // as the entity says
	TreeParent entity.ID // where the tree walk found it
	Path       string
	Duplicates int
	Fields     map[string]entity.Field
}

// entState is a host's entity tree: every visible entity with its
// fields and versions, and the schemas.
type entState struct {
	ents    map[entity.ID]*entView
	schemas string
	// problems are inconsistencies of the answer itself (an entity
	// listed twice), for the tree checker.
	problems []string
	digest   string
}

func (s *entState) Digest() string { return s.digest }

type entReader struct{}

func (entReader) Read(ctx context.Context, h *Host) (State, error) {
	var tree api.TreeNode
	if err := entCall(ctx, h, http.MethodGet, "/v1/entities/tree?ref=%2F&fields=true", nil, &tree); err != nil {
		return nil, err
	}
	var scs struct {
		Schemas []entity.Schema `json:"schemas"`
	}
	if err := entCall(ctx, h, http.MethodGet, "/v1/schemas", nil, &scs); err != nil {
		return nil, err
	}
	sb, _ := json.Marshal(scs.Schemas)
	return newEntState(tree, string(sb)), nil
}

func newEntState(tree api.TreeNode, schemas string) *entState {
	s := &entState{ents: map[entity.ID]*entView{}, schemas: schemas}
	var walk func(n api.TreeNode, parent entity.ID, depth int)
	walk = func(n api.TreeNode, parent entity.ID, depth int) {
		for _, c := range n.Children {
			if _, dup := s.ents[c.ID]; dup {
				s.problems = append(s.problems, fmt.Sprintf("entity %s listed twice (at %s)", c.ID, c.Path))
				continue
			}
			fields := c.Fields
			if fields == nil {
				fields = map[string]entity.Field{}
			}
			s.ents[c.ID] = &entView{ID: c.ID, Type: c.Type, Name: c.Name, Parent: c.Parent, TreeParent: parent,
				Path: c.Path, Duplicates: c.Duplicates, Fields: fields}
			if depth < 10_000 {
				walk(c, c.ID, depth+1)
			}
		}
	}
	walk(tree, entity.Root, 0)
	s.digest = s.computeDigest()
	return s
}

func (s *entState) computeDigest() string {
	sum := sha256.New()
	field := func(v string) { fmt.Fprintf(sum, "%d:%s", len(v), v) }
	field(s.schemas)
	for _, id := range slices.Sorted(maps.Keys(s.ents)) {
		e := s.ents[id]
		field(string(id))
		field(e.Type)
		field(e.Name)
		field(string(e.Parent))
		field(string(e.TreeParent))
		field(e.Path)
		field(fmt.Sprint(e.Duplicates))
		names := slices.Sorted(maps.Keys(e.Fields))
		field(fmt.Sprint(len(names)))
		for _, n := range names {
			f := e.Fields[n]
			field(n)
			field(hex.EncodeToString(f.Value.Encode()))
			field(f.Version.String())
			field(fmt.Sprint(f.Default))
		}
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// Diff lists what differs between s and o: entities one side lacks,
// and attributes or fields that differ.
func (s *entState) Diff(other State, limit int) []string {
	o, ok := other.(*entState)
	if !ok {
		return []string{"not an entity state"}
	}
	var out []string
	add := func(format string, args ...any) {
		if len(out) < limit {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	if s.schemas != o.schemas {
		add("schemas differ")
	}
	ids := map[entity.ID]bool{}
	for id := range s.ents {
		ids[id] = true
	}
	for id := range o.ents {
		ids[id] = true
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		a, b := s.ents[id], o.ents[id]
		switch {
		case a == nil:
			add("%s (%s) missing", id, b.Path)
			continue
		case b == nil:
			add("%s (%s) extra", id, a.Path)
			continue
		}
		if a.Path != b.Path || a.Parent != b.Parent || a.TreeParent != b.TreeParent || a.Type != b.Type || a.Duplicates != b.Duplicates {
			add("%s: %s parent %s vs %s parent %s", id, a.Path, a.Parent, b.Path, b.Parent)
		}
		names := map[string]bool{}
		for n := range a.Fields {
			names[n] = true
		}
		for n := range b.Fields {
			names[n] = true
		}
		for _, n := range sortedKeys(names) {
			fa, oka := a.Fields[n]
			fb, okb := b.Fields[n]
			switch {
			case !oka || !okb:
				add("%s %s: present %v vs %v", a.Path, n, oka, okb)
			case fa.Version != fb.Version || !fa.Value.Equal(fb.Value) || fa.Default != fb.Default:
				add("%s %s: %s=%s vs %s=%s", a.Path, n, fa.Version, fa.Value, fb.Version, fb.Value)
			}
		}
	}
	return out
}

// entReg names a field register.
type entReg struct {
	ent   entity.ID
	field string
}

func (r entReg) String() string { return string(r.ent) + "/" + r.field }

// entWin is a register's expected winner among acknowledged writes.
type entWin struct {
	version entity.Version
	value   entity.Value
	index   int // -1: the prepared creation
	op      *entOp
}

// entKnowledge is what a history says about every register.
type entKnowledge struct {
	// fields: greatest acknowledged write per field register.
	fields map[entReg]entWin
	// unknown: writes of unknown outcome per register (any version).
	unknown map[entReg][]*entOp
	// written: every value any write (whatever its outcome) put in a
	// register, with the node that wrote it.
	written map[entReg][]entWrittenBy
	// exists: per tag, the greatest acknowledged creation, delete or
	// restore (value true: exists); existsMaybe: the values of writes of
	// unknown outcome.
	exists      map[entity.ID]entWinBool
	existsMaybe map[entity.ID]map[bool]bool
	// mayBeDeleted: a delete of the tag was sent and did not surely fail.
	mayBeDeleted map[entity.ID]bool
	// parent: per entity, the greatest acknowledged move (or the
	// creation); parentMaybe: targets of moves of unknown outcome.
	parent      map[entity.ID]entWinParent
	parentMaybe map[entity.ID]map[entity.ID]bool
}

type entWrittenBy struct {
	value  entity.Value
	writer string
	result Result
	index  int
}

type entWinBool struct {
	version entity.Version
	exists  bool
	index   int
}

type entWinParent struct {
	version entity.Version
	parent  entity.ID
	index   int
}

// know derives the knowledge of ops, acknowledged before due. With
// plan, the prepared creations count as acknowledged writes.
func know(ops []*entOp, due time.Time, plan []entPlanned) *entKnowledge {
	k := &entKnowledge{
		fields: map[entReg]entWin{}, unknown: map[entReg][]*entOp{}, written: map[entReg][]entWrittenBy{},
		exists: map[entity.ID]entWinBool{}, existsMaybe: map[entity.ID]map[bool]bool{}, mayBeDeleted: map[entity.ID]bool{},
		parent: map[entity.ID]entWinParent{}, parentMaybe: map[entity.ID]map[entity.ID]bool{},
	}
	for _, p := range plan {
		k.parent[p.ID] = entWinParent{version: p.Version, parent: p.Parent, index: -1}
		if p.Type == entTypeTag {
			k.exists[p.ID] = entWinBool{version: p.Version, exists: true, index: -1}
		}
	}
	for _, o := range ops {
		acked := o.Acked() && o.Version != nil && o.End.Before(due)
		maybe := o.Result == ResultInfo || (o.Acked() && o.Version == nil)
		switch o.Kind {
		case entKindSet, entKindBatch:
			for _, w := range o.Writes {
				r := entReg{w.Entity, w.Field}
				k.written[r] = append(k.written[r], entWrittenBy{value: w.Value, writer: o.Host, result: o.Result, index: o.Index})
				switch {
				case acked:
					if cur, ok := k.fields[r]; !ok || o.Version.Compare(cur.version) > 0 {
						k.fields[r] = entWin{version: *o.Version, value: w.Value, index: o.Index, op: o}
					}
				case maybe || o.Acked(): // acknowledged after due: may be there
					k.unknown[r] = append(k.unknown[r], o)
				}
			}
		case entKindDelete, entKindRest:
			val := o.Kind == entKindRest
			if o.Kind == entKindDelete && o.Result != ResultFail {
				k.mayBeDeleted[o.Entity] = true
			}
			switch {
			case acked:
				if cur, ok := k.exists[o.Entity]; !ok || o.Version.Compare(cur.version) > 0 {
					k.exists[o.Entity] = entWinBool{version: *o.Version, exists: val, index: o.Index}
				}
			case maybe || o.Acked():
				if k.existsMaybe[o.Entity] == nil {
					k.existsMaybe[o.Entity] = map[bool]bool{}
				}
				k.existsMaybe[o.Entity][val] = true
			}
		case entKindMove:
			switch {
			case acked:
				if cur, ok := k.parent[o.Entity]; !ok || o.Version.Compare(cur.version) > 0 {
					k.parent[o.Entity] = entWinParent{version: *o.Version, parent: o.Parent, index: o.Index}
				}
			case maybe || o.Acked():
				if k.parentMaybe[o.Entity] == nil {
					k.parentMaybe[o.Entity] = map[entity.ID]bool{}
				}
				k.parentMaybe[o.Entity][o.Parent] = true
			}
		}
	}
	return k
}

// fieldVerdict judges one register on one host: "" when the host shows
// the expected winner, or a later write of unknown outcome; else why not.
func (k *entKnowledge) fieldVerdict(r entReg, f entity.Field, ok bool) string {
	want := k.fields[r]
	switch {
	case !ok || f.Default:
		return "missing"
	case f.Version.Compare(want.version) < 0:
		return fmt.Sprintf("shows older %s=%s", f.Version, f.Value)
	case f.Version.Compare(want.version) == 0:
		if !f.Value.Equal(want.value) {
			return fmt.Sprintf("shows %s with its version but another value", f.Value)
		}
		return ""
	}
	// Later than every acknowledged write: a write of unknown outcome
	// must explain it.
	for _, o := range k.unknown[r] {
		for _, w := range o.Writes {
			if w.Entity == r.ent && w.Field == r.field && w.Value.Equal(f.Value) && f.Writer == o.Host {
				return ""
			}
		}
	}
	return fmt.Sprintf("beaten by %s=%s, which nobody wrote", f.Version, f.Value)
}

// expectExists returns whether a tag must be visible, and whether that
// is certain (no write of unknown outcome could change it).
func (k *entKnowledge) expectExists(id entity.ID) (exists, certain bool) {
	w, ok := k.exists[id]
	if !ok {
		return false, false
	}
	for v := range k.existsMaybe[id] {
		if v != w.exists {
			return w.exists, false
		}
	}
	return w.exists, true
}

// parentOK reports whether p is an acceptable effective parent of id
// by LWW alone (the acknowledged winner, or a move of unknown outcome).
func (k *entKnowledge) parentOK(id, p entity.ID) bool {
	w, ok := k.parent[id]
	return !ok || w.parent == p || k.parentMaybe[id][p]
}

// lineCycles returns the cycles of the lines' expected parents (by
// acknowledged LWW), each as its members, and whether any line's parent
// is uncertain (a move of unknown outcome).
func (k *entKnowledge) lineCycles(plan []entPlanned) (cycles [][]entity.ID, uncertain bool) {
	eff := map[entity.ID]entity.ID{}
	var ids []entity.ID
	for _, p := range plan {
		if p.Type != entTypeLn {
			continue
		}
		if len(k.parentMaybe[p.ID]) > 0 {
			uncertain = true
		}
		eff[p.ID] = k.parent[p.ID].parent
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	done := map[entity.ID]bool{}
	for _, start := range ids {
		var path []entity.ID
		on := map[entity.ID]int{}
		for cur := start; ; {
			if done[cur] {
				break
			}
			if i, ok := on[cur]; ok {
				cycles = append(cycles, slices.Clone(path[i:]))
				break
			}
			p, ok := eff[cur]
			if !ok {
				break
			}
			on[cur] = len(path)
			path = append(path, cur)
			cur = p
		}
		for _, id := range path {
			done[id] = true
		}
	}
	return cycles, uncertain
}

// entOracle: a host that has caught up shows, for every field register,
// a version at least that of the greatest acknowledged write (a greater
// one supersedes it, and versions only grow: no later write can undo
// that). Once the workload has stopped it also shows every tag's
// expected existence and every sensor's expected parent, when certain.
// Fields of a tag that may have been deleted are judged only while the
// tag is visible.
type entOracle struct{ m *entityModel }

type entExpectation struct {
	m     *entityModel
	k     *entKnowledge
	final bool
	ops   []*entOp
}

func (o entOracle) Expect(h []Op, due time.Time, final bool) Expectation {
	ops := o.m.decoded(h)
	// Only operations in h: the prepared tree is the checkers' business
	// (h may be one host's operations, see the runner's wipe check).
	return &entExpectation{m: o.m, k: know(ops, due, nil), final: final, ops: ops}
}

func (e *entExpectation) Missing(s State) []int {
	st := s.(*entState)
	_, byID := e.m.planned()
	var out []int
	for r, want := range e.k.fields {
		v, visible := st.ents[r.ent]
		if !visible {
			if p := byID[r.ent]; p != nil && p.Type == entTypeTag && (!e.final || e.k.mayBeDeleted[r.ent]) {
				continue
			}
			out = append(out, want.index)
			continue
		}
		f, ok := v.Fields[r.field]
		if !ok || f.Default || f.Version.Compare(want.version) < 0 {
			out = append(out, want.index)
		}
	}
	if e.final {
		for id, w := range e.k.exists {
			if exists, certain := e.k.expectExists(id); certain && w.index >= 0 {
				if _, visible := st.ents[id]; visible != exists {
					out = append(out, w.index)
				}
			}
		}
		for id, w := range e.k.parent {
			if p := byID[id]; p == nil || p.Type != entTypeSn || w.index < 0 || len(e.k.parentMaybe[id]) > 0 {
				continue
			}
			if v, visible := st.ents[id]; visible && v.Parent != w.parent {
				out = append(out, w.index)
			}
		}
	}
	sort.Ints(out)
	return slices.Compact(out)
}

// MissingOn: where host's own later write hides an operation of another
// host, or the operation's tag is not visible on host (host may have
// deleted it), the operation counts as shown when host shows a write of
// the operation's writer at least as recent. That proves a path from the
// writer to host at or after the operation (its Merkle-DAG walk may
// still be fetching the operation itself, so a sample may end a few
// milliseconds early; it cannot end without a path).
func (e *entExpectation) MissingOn(host string, s State) []int {
	st := s.(*entState)
	self := ""
	for _, o := range e.ops {
		if o.Host == host && o.Version != nil {
			self = o.Version.Writer
			break
		}
	}
	_, byID := e.m.planned()
	out := e.Missing(s)
	for r, want := range e.k.fields {
		if want.op == nil || want.op.Host == host {
			continue
		}
		v, visible := st.ents[r.ent]
		if visible {
			f, ok := v.Fields[r.field]
			c := f.Version.Compare(want.version)
			if !ok || f.Default || c < 0 {
				continue // Missing reported it
			}
			if c == 0 || self == "" || f.Writer != self {
				continue // it, or a later write that came from elsewhere
			}
		} else if p := byID[r.ent]; p == nil || p.Type != entTypeTag {
			continue // Missing reported it
		}
		if !showsWriteSince(st, want.version) {
			out = append(out, want.index)
		}
	}
	sort.Ints(out)
	return slices.Compact(out)
}

// showsWriteSince reports whether st holds a field written by v's writer
// at v or later.
func showsWriteSince(st *entState, v entity.Version) bool {
	for _, e := range st.ents {
		for _, f := range e.Fields {
			if f.Writer == v.Writer && f.Version.Compare(v) >= 0 {
				return true
			}
		}
	}
	return false
}

// entCheckIn prepares the checkers' common input.
func entCheckIn(m *entityModel, in CheckInput) ([]entPlanned, map[entity.ID]*entPlanned, *entKnowledge, []*entOp) {
	var live []Op
	for _, o := range in.History {
		if !in.Forfeited[o.Index] {
			live = append(live, o)
		}
	}
	plan, byID := m.planned()
	ops := m.decoded(live)
	return plan, byID, know(ops, farFuture, plan), ops
}

// entLostChecker counts acknowledged writes whose effect is missing on
// at least one host: a field whose expected winner is absent, older, or
// beaten by a value nobody wrote; a tag whose existence is not the
// expected one; an entity under another parent than its last
// acknowledged move (lines excepted when their moves closed a cycle).
type entLostChecker struct{ m *entityModel }

func (entLostChecker) Name() string { return "entity-lost" }

func (c entLostChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "entity-lost", Counts: map[string]int{"lost": 0, "forfeited": len(in.Forfeited)}}
	plan, _, k, ops := entCheckIn(c.m, in)
	if plan == nil {
		v.problem("the workload was never prepared: nothing to judge")
		return v
	}
	byIndex := map[int]*entOp{}
	for _, o := range ops {
		byIndex[o.Index] = o
	}
	lost := map[int][]string{}
	why := map[int]string{}
	mark := func(idx int, host, what string) {
		lost[idx] = append(lost[idx], host)
		if _, ok := why[idx]; !ok {
			why[idx] = what
		}
	}
	cycles, uncertain := k.lineCycles(plan)
	regs := make([]entReg, 0, len(k.fields))
	for r := range k.fields {
		regs = append(regs, r)
	}
	sort.Slice(regs, func(i, j int) bool { return regs[i].String() < regs[j].String() })
	for _, hs := range in.Final {
		if hs.Err != nil {
			continue // the divergence checker reports unreadable hosts
		}
		st := hs.State.(*entState)
		for _, r := range regs {
			ev, visible := st.ents[r.ent]
			if !visible {
				continue // a hidden entity: the tree checker judges it
			}
			f, ok := ev.Fields[r.field]
			if w := k.fieldVerdict(r, f, ok); w != "" {
				want := k.fields[r]
				mark(want.index, hs.Host, fmt.Sprintf("%s=%s (%s): %s", r, want.value, want.version, w))
			}
		}
		for _, p := range plan {
			ev, visible := st.ents[p.ID]
			if p.Type == entTypeTag {
				exists, certain := k.expectExists(p.ID)
				if certain && visible != exists {
					w := k.exists[p.ID]
					state := map[bool]string{true: "visible", false: "deleted"}
					mark(w.index, hs.Host, fmt.Sprintf("%s %s: want %s (%s), shows %s", p.Name, p.ID, state[exists], w.version, state[visible]))
				}
				continue
			}
			if !visible {
				continue // lines and sensors are always visible: the tree checker
			}
			if p.Type == entTypeLn && (len(cycles) > 0 || uncertain) {
				// The cycle rule may move any line (an undone move can close
				// another cycle): the tree checker judges the rule.
				continue
			}
			if !k.parentOK(p.ID, ev.Parent) {
				w := k.parent[p.ID]
				mark(w.index, hs.Host, fmt.Sprintf("%s %s: want parent %s (%s), shows %s", p.Name, p.ID, w.parent, w.version, ev.Parent))
			}
		}
	}
	idx := make([]int, 0, len(lost))
	for i := range lost {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		hosts := strings.Join(slices.Compact(lost[i]), " ")
		if o := byIndex[i]; o != nil {
			v.problem("op %d %s acknowledged by %s at %s: %s on %s", i, o.Kind, o.Host, o.End.Format("15:04:05.000"), why[i], hosts)
		} else {
			v.problem("prepared tree: %s on %s", why[i], hosts)
		}
	}
	v.Counts["lost"] = len(idx)
	v.OK = len(idx) == 0
	return v
}

// entPhantomChecker counts field values that no write put in that
// register: a version no acknowledged write has and no write of unknown
// outcome explains, or an acknowledged version with another value.
type entPhantomChecker struct{ m *entityModel }

func (entPhantomChecker) Name() string { return "entity-phantom" }

func (c entPhantomChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "entity-phantom", Counts: map[string]int{"phantom": 0}}
	_, _, k, ops := entCheckIn(c.m, in)
	// Acknowledged versions per register.
	ackedAt := map[entReg]map[entity.Version]entity.Value{}
	for _, o := range ops {
		if !o.Acked() || o.Version == nil {
			continue
		}
		for _, w := range o.Writes {
			r := entReg{w.Entity, w.Field}
			if ackedAt[r] == nil {
				ackedAt[r] = map[entity.Version]entity.Value{}
			}
			ackedAt[r][*o.Version] = w.Value
		}
	}
	seen := map[string]bool{}
	for _, hs := range in.Final {
		if hs.Err != nil {
			continue
		}
		st := hs.State.(*entState)
		for _, id := range slices.Sorted(maps.Keys(st.ents)) {
			e := st.ents[id]
			for _, n := range slices.Sorted(maps.Keys(e.Fields)) {
				f := e.Fields[n]
				if f.Default {
					continue
				}
				r := entReg{e.ID, n}
				if val, ok := ackedAt[r][f.Version]; ok {
					if val.Equal(f.Value) {
						continue
					}
				} else if explained(k.written[r], f) {
					continue
				}
				key := r.String() + "\x00" + f.Version.String() + "\x00" + f.Value.String()
				if seen[key] {
					continue
				}
				seen[key] = true
				v.Counts["phantom"]++
				v.problem("%s: %s %s=%s (%s) was never written", hs.Host, e.Path, n, f.Value, f.Version)
			}
		}
	}
	v.OK = v.Counts["phantom"] == 0
	return v
}

// explained reports whether a write of unknown outcome (or an
// acknowledged one whose version is unknown) put f's value there.
func explained(ws []entWrittenBy, f entity.Field) bool {
	for _, w := range ws {
		if w.result != ResultFail && w.writer == f.Writer && w.value.Equal(f.Value) {
			return true
		}
	}
	return false
}

// entTreeChecker checks the tree's invariants on every host: each
// entity once, under the parent it names, on the path its names make;
// no cycle; every line and sensor (never deleted) reachable from the
// root (a tag's existence is entity-lost's); no entity nobody created; types and names as created; and where the lines'
// expected parents close a cycle, the documented rule: the latest move
// of the cycle is undone (that line is not under the parent its move
// named).
type entTreeChecker struct{ m *entityModel }

func (entTreeChecker) Name() string { return "entity-tree" }

func (c entTreeChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "entity-tree", Counts: map[string]int{"tree": 0, "cycles": 0}}
	plan, byID, k, _ := entCheckIn(c.m, in)
	if plan == nil {
		v.problem("the workload was never prepared: nothing to judge")
		return v
	}
	cycles, uncertain := k.lineCycles(plan)
	v.Counts["cycles"] = len(cycles)
	bad := func(host, format string, args ...any) {
		v.Counts["tree"]++
		v.problem("%s: "+format, append([]any{host}, args...)...)
	}
	for _, hs := range in.Final {
		if hs.Err != nil {
			continue
		}
		st := hs.State.(*entState)
		for _, p := range st.problems {
			bad(hs.Host, "%s", p)
		}
		for _, id := range slices.Sorted(maps.Keys(st.ents)) {
			e := st.ents[id]
			p := byID[e.ID]
			switch {
			case p == nil:
				bad(hs.Host, "entity %s (%s) was never created", e.ID, e.Path)
				continue
			case e.Type != p.Type || e.Name != p.Name:
				bad(hs.Host, "entity %s is %s %q, was created as %s %q", e.ID, e.Type, e.Name, p.Type, p.Name)
			}
			if e.Parent != e.TreeParent {
				bad(hs.Host, "%s names parent %s but is listed under %s", e.Path, e.Parent, e.TreeParent)
			}
			want := "/" + e.Name
			if pe, ok := st.ents[e.TreeParent]; ok {
				want = pe.Path + want
			}
			if e.Path != want {
				bad(hs.Host, "%s: path should be %s", e.Path, want)
			}
			if e.Duplicates != 0 {
				bad(hs.Host, "%s: %d duplicates, but every name is unique", e.Path, e.Duplicates)
			}
			// No cycle: the parent chain reaches the root.
			cur, n := e.ID, 0
			for ; cur != entity.Root && n <= len(st.ents); n++ {
				pe, ok := st.ents[cur]
				if !ok {
					break
				}
				cur = pe.Parent
			}
			if cur != entity.Root {
				bad(hs.Host, "%s: its parent chain does not reach the root (stops at %s)", e.Path, cur)
			}
		}
		for _, p := range plan {
			_, visible := st.ents[p.ID]
			if visible {
				continue
			}
			if p.Type != entTypeTag { // a tag's existence: entity-lost
				bad(hs.Host, "%s %s %s is never deleted but is not reachable from the root (an orphan or a cycle)", p.Type, p.Name, p.ID)
			}
		}
		if uncertain {
			continue
		}
		for _, cy := range cycles {
			loser, best := cy[0], entity.Version{}
			for _, id := range cy {
				if w := k.parent[id]; w.version.Compare(best) > 0 {
					loser, best = id, w.version
				}
			}
			if e, ok := st.ents[loser]; ok && e.Parent == k.parent[loser].parent {
				bad(hs.Host, "lines %v closed a cycle, and %s (the latest move, %s) still is under %s", cy, byID[loser].Name, best, e.Parent)
			}
		}
	}
	v.OK = v.Counts["tree"] == 0
	return v
}

var (
	_ Workload    = (*entityModel)(nil)
	_ Preparer    = (*entityModel)(nil)
	_ Client      = (*entClient)(nil)
	_ Reader      = entReader{}
	_ State       = (*entState)(nil)
	_ Differ      = (*entState)(nil)
	_ Oracle      = entOracle{}
	_ Expectation = (*entExpectation)(nil)
	_ Checker     = entLostChecker{}
	_ Checker     = entPhantomChecker{}
	_ Checker     = entTreeChecker{}
)
