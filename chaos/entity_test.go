package chaos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
)

// IDs of the test tree: three lines, two sensors, one tag.
const (
	tL0 entity.ID = "01000000000000000000000000"
	tL1 entity.ID = "01000000000000000000000001"
	tL2 entity.ID = "01000000000000000000000002"
	tS0 entity.ID = "01000000000000000000000010"
	tS1 entity.ID = "01000000000000000000000011"
	tT0 entity.ID = "01000000000000000000000020"
)

func ver(wall int64, writer string) entity.Version {
	return entity.Version{Timestamp: entity.Timestamp{Wall: wall}, Writer: writer}
}

func testEntityModel(t *testing.T) *entityModel {
	t.Helper()
	m, err := newEntityModel(ModelConfig{Hosts: 3, OverwriteKeys: 4})
	if err != nil {
		t.Fatal(err)
	}
	em := m.Workload.(*entityModel)
	em.setPlan([]entPlanned{
		{ID: tL0, Type: entTypeLn, Name: "L0", Parent: entity.Root, Version: ver(1, "n1")},
		{ID: tL1, Type: entTypeLn, Name: "L1", Parent: entity.Root, Version: ver(2, "n1")},
		{ID: tL2, Type: entTypeLn, Name: "L2", Parent: entity.Root, Version: ver(3, "n1")},
		{ID: tS0, Type: entTypeSn, Name: "S00", Parent: tL0, Version: ver(4, "n1")},
		{ID: tS1, Type: entTypeSn, Name: "S01", Parent: tL1, Version: ver(5, "n1")},
		{ID: tT0, Type: entTypeTag, Name: "T0", Parent: entity.Root, Version: ver(6, "n1")},
	})
	return em
}

// eop builds a client operation of the entity model.
func eop(kind string, r Result, host string, v *entity.Version, ext entExt) Op {
	ext.Version = v
	b, _ := json.Marshal(ext)
	return Op{Kind: kind, Result: r, Host: host, Start: time.Unix(100, 0), End: time.Unix(101, 0), Ext: b}
}

func setOp(r Result, host string, v *entity.Version, id entity.ID, field string, val entity.Value) Op {
	return eop(entKindSet, r, host, v, entExt{Writes: []entWrite{{Entity: id, Field: field, Value: val}}})
}

func vp(v entity.Version) *entity.Version { return &v }

// tnode is a tree node for test states; fields as name -> Field.
type tnode struct {
	id       entity.ID
	typ      string
	name     string
	fields   map[string]entity.Field
	children []tnode
}

func (n tnode) tree(parent entity.ID, path string) api.TreeNode {
	p := strings.TrimSuffix(path, "/") + "/" + n.name
	tn := api.TreeNode{Entity: entity.Entity{ID: n.id, Type: n.typ, Name: n.name, Parent: parent, Path: p, Fields: n.fields}}
	for _, c := range n.children {
		tn.Children = append(tn.Children, c.tree(n.id, p))
	}
	return tn
}

func tstate(top ...tnode) *entState {
	root := api.TreeNode{Entity: entity.Entity{ID: entity.Root, Path: "/"}}
	for _, n := range top {
		root.Children = append(root.Children, n.tree(entity.Root, "/"))
	}
	return newEntState(root, "[]")
}

// baseTree is the prepared tree with S0's fields and the tag as given.
func baseTree(s0 map[string]entity.Field, withTag bool) *entState {
	top := []tnode{
		{id: tL0, typ: entTypeLn, name: "L0", children: []tnode{{id: tS0, typ: entTypeSn, name: "S00", fields: s0}}},
		{id: tL1, typ: entTypeLn, name: "L1", children: []tnode{{id: tS1, typ: entTypeSn, name: "S01"}}},
		{id: tL2, typ: entTypeLn, name: "L2"},
	}
	if withTag {
		top = append(top, tnode{id: tT0, typ: entTypeTag, name: "T0"})
	}
	return tstate(top...)
}

func fld(v entity.Value, ver entity.Version) entity.Field {
	return entity.Field{Value: v, Version: ver}
}

func checkEntity(t *testing.T, m *entityModel, h []Op, states ...*entState) map[string]Verdict {
	t.Helper()
	in := CheckInput{History: hist(h...), Forfeited: map[int]bool{}}
	for i, s := range states {
		in.Final = append(in.Final, HostState{Host: hostName(i + 1), State: s})
	}
	out := map[string]Verdict{}
	for _, c := range []Checker{entLostChecker{m}, entPhantomChecker{m}, entTreeChecker{m}, digestChecker{}} {
		out[c.Name()] = c.Check(in)
	}
	return out
}

// TestEntityLWWOracle: the expected winner of a field is the greatest
// (timestamp, writer) among acknowledged writes, whatever the order the
// acknowledgements came in; a build that lets the older write win (no
// LWW ordering) is caught as a lost write, and a value nobody wrote as a
// phantom too.
func TestEntityLWWOracle(t *testing.T) {
	older, newer := ver(200, "n2"), ver(200, "n3") // equal timestamps: the writer breaks the tie
	a, b := entity.String("a"), entity.String("b")
	h := []Op{
		setOp(ResultOK, "n3", vp(newer), tS0, "label", b), // acknowledged first, wins
		setOp(ResultOK, "n2", vp(older), tS0, "label", a),
	}
	for _, tt := range []struct {
		name          string
		shown         map[string]entity.Field
		lost, phantom int
	}{
		{"winner", map[string]entity.Field{"label": fld(b, newer)}, 0, 0},
		{"older wins (LWW broken)", map[string]entity.Field{"label": fld(a, older)}, 1, 0},
		{"missing", map[string]entity.Field{}, 1, 0},
		{"winner's version, other value", map[string]entity.Field{"label": fld(a, newer)}, 1, 1},
		{"later value nobody wrote", map[string]entity.Field{"label": fld(entity.String("zz"), ver(300, "n1"))}, 1, 1},
		{"schema default instead", map[string]entity.Field{"label": {Value: entity.String(""), Default: true}}, 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := testEntityModel(t)
			vs := checkEntity(t, m, h, baseTree(tt.shown, true))
			if got := vs["entity-lost"].Counts["lost"]; got != tt.lost {
				t.Errorf("lost = %d, want %d: %v", got, tt.lost, vs["entity-lost"].Problems)
			}
			if got := vs["entity-phantom"].Counts["phantom"]; got != tt.phantom {
				t.Errorf("phantom = %d, want %d: %v", got, tt.phantom, vs["entity-phantom"].Problems)
			}
		})
	}
}

// TestEntityUnknownOutcome: a write that timed out may or may not be
// there: a later version is accepted when it is that write's value from
// its node, and so is the acknowledged winner.
func TestEntityUnknownOutcome(t *testing.T) {
	acked := ver(200, "n1")
	h := []Op{
		setOp(ResultOK, "n1", vp(acked), tS0, "count", entity.Int(1)),
		setOp(ResultInfo, "n2", nil, tS0, "count", entity.Int(2)),
		setOp(ResultFail, "n3", nil, tS0, "count", entity.Int(3)),
	}
	for _, tt := range []struct {
		name          string
		f             entity.Field
		lost, phantom int
	}{
		{"acked winner", fld(entity.Int(1), acked), 0, 0},
		{"timed-out write applied", fld(entity.Int(2), ver(300, "n2")), 0, 0},
		{"timed-out value under another writer", fld(entity.Int(2), ver(300, "n3")), 1, 1},
		{"failed write applied", fld(entity.Int(3), ver(300, "n3")), 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vs := checkEntity(t, testEntityModel(t), h, baseTree(map[string]entity.Field{"count": tt.f}, true))
			if got := vs["entity-lost"].Counts["lost"]; got != tt.lost {
				t.Errorf("lost = %d, want %d: %v", got, tt.lost, vs["entity-lost"].Problems)
			}
			if got := vs["entity-phantom"].Counts["phantom"]; got != tt.phantom {
				t.Errorf("phantom = %d, want %d: %v", got, tt.phantom, vs["entity-phantom"].Problems)
			}
		})
	}
}

// TestEntityExistenceAndMoves: a tag's existence and a sensor's parent
// are LWW registers too; the creation counts as their first write.
func TestEntityExistenceAndMoves(t *testing.T) {
	del := eop(entKindDelete, ResultOK, "n1", vp(ver(200, "n1")), entExt{Entity: tT0})
	restore := eop(entKindRest, ResultOK, "n2", vp(ver(300, "n2")), entExt{Entity: tT0})
	move := eop(entKindMove, ResultOK, "n2", vp(ver(250, "n2")), entExt{Entity: tS0, Parent: tL2})
	moved := func(withTag bool) *entState {
		top := []tnode{
			{id: tL0, typ: entTypeLn, name: "L0"},
			{id: tL1, typ: entTypeLn, name: "L1", children: []tnode{{id: tS1, typ: entTypeSn, name: "S01"}}},
			{id: tL2, typ: entTypeLn, name: "L2", children: []tnode{{id: tS0, typ: entTypeSn, name: "S00"}}},
		}
		if withTag {
			top = append(top, tnode{id: tT0, typ: entTypeTag, name: "T0"})
		}
		return tstate(top...)
	}
	for _, tt := range []struct {
		name string
		h    []Op
		s    *entState
		lost int
		tree int
	}{
		{"prepared tree", nil, baseTree(nil, true), 0, 0},
		{"tag gone without a delete", nil, baseTree(nil, false), 1, 0},
		{"deleted", []Op{del}, baseTree(nil, false), 0, 0},
		{"delete lost", []Op{del}, baseTree(nil, true), 1, 0},
		{"deleted then restored", []Op{del, restore}, baseTree(nil, true), 0, 0},
		{"restore lost", []Op{restore, del}, baseTree(nil, false), 1, 0},
		{"moved", []Op{move}, moved(true), 0, 0},
		{"move lost", []Op{move}, baseTree(nil, true), 1, 0},
		{"delete of unknown outcome", []Op{eop(entKindDelete, ResultInfo, "n1", nil, entExt{Entity: tT0})}, baseTree(nil, false), 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vs := checkEntity(t, testEntityModel(t), tt.h, tt.s)
			if got := vs["entity-lost"].Counts["lost"]; got != tt.lost {
				t.Errorf("lost = %d, want %d: %v", got, tt.lost, vs["entity-lost"].Problems)
			}
			if got := vs["entity-tree"].Counts["tree"]; got != tt.tree {
				t.Errorf("tree = %d, want %d: %v", got, tt.tree, vs["entity-tree"].Problems)
			}
		})
	}
}

// TestEntityTreeInvariants: the cycle rule (the latest move of a cycle
// is undone), orphans, unknown entities and inconsistent answers.
func TestEntityTreeInvariants(t *testing.T) {
	// L0 under L1 (earlier), L1 under L0 (later): a cycle; L1's move loses.
	h := []Op{
		eop(entKindMove, ResultOK, "n1", vp(ver(200, "n1")), entExt{Entity: tL0, Parent: tL1}),
		eop(entKindMove, ResultOK, "n2", vp(ver(300, "n2")), entExt{Entity: tL1, Parent: tL0}),
	}
	s0 := tnode{id: tS0, typ: entTypeSn, name: "S00"}
	s1 := tnode{id: tS1, typ: entTypeSn, name: "S01"}
	tag := tnode{id: tT0, typ: entTypeTag, name: "T0"}
	resolved := tstate(
		tnode{id: tL1, typ: entTypeLn, name: "L1", children: []tnode{s1, {id: tL0, typ: entTypeLn, name: "L0", children: []tnode{s0}}}},
		tnode{id: tL2, typ: entTypeLn, name: "L2"}, tag)
	wrongLoser := tstate(
		tnode{id: tL0, typ: entTypeLn, name: "L0", children: []tnode{s0, {id: tL1, typ: entTypeLn, name: "L1", children: []tnode{s1}}}},
		tnode{id: tL2, typ: entTypeLn, name: "L2"}, tag)
	orphaned := tstate(tnode{id: tL2, typ: entTypeLn, name: "L2"}, tag)
	stranger := baseTree(nil, true)
	stranger.ents["01000000000000000000000099"] = &entView{ID: "01000000000000000000000099", Type: "x", Name: "X", Path: "/X", Parent: entity.Root, TreeParent: entity.Root}
	for _, tt := range []struct {
		name string
		h    []Op
		s    *entState
		tree int
	}{
		{"cycle resolved by the rule", h, resolved, 0},
		{"cycle resolved against the rule", h, wrongLoser, 1},
		{"lines and sensors unreachable", nil, orphaned, 4},
		{"entity nobody created", nil, stranger, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vs := checkEntity(t, testEntityModel(t), tt.h, tt.s)
			if got := vs["entity-tree"].Counts["tree"]; got != tt.tree {
				t.Errorf("tree = %d, want %d: %v", got, tt.tree, vs["entity-tree"].Problems)
			}
		})
	}
	if vs := checkEntity(t, testEntityModel(t), h, resolved); vs["entity-tree"].Counts["cycles"] != 1 || !vs["entity-lost"].OK {
		t.Errorf("cycles = %d, lost ok %v: %v", vs["entity-tree"].Counts["cycles"], vs["entity-lost"].OK, vs["entity-lost"].Problems)
	}
}

// TestEntityDigest: equal trees have equal digests whatever the order of
// children; any field version, value or placement changes it; Diff names
// the difference.
func TestEntityDigest(t *testing.T) {
	f := map[string]entity.Field{"label": fld(entity.String("a"), ver(5, "n1"))}
	a := baseTree(f, true)
	b := tstate(
		tnode{id: tT0, typ: entTypeTag, name: "T0"},
		tnode{id: tL2, typ: entTypeLn, name: "L2"},
		tnode{id: tL1, typ: entTypeLn, name: "L1", children: []tnode{{id: tS1, typ: entTypeSn, name: "S01"}}},
		tnode{id: tL0, typ: entTypeLn, name: "L0", children: []tnode{{id: tS0, typ: entTypeSn, name: "S00", fields: f}}},
	)
	if a.Digest() != b.Digest() {
		t.Error("same tree, different digests")
	}
	for name, other := range map[string]*entState{
		"version":   baseTree(map[string]entity.Field{"label": fld(entity.String("a"), ver(5, "n2"))}, true),
		"value":     baseTree(map[string]entity.Field{"label": fld(entity.String("b"), ver(5, "n1"))}, true),
		"no tag":    baseTree(f, false),
		"no fields": baseTree(nil, true),
	} {
		if other.Digest() == a.Digest() {
			t.Errorf("%s differs but the digest does not", name)
		}
		if d := a.Diff(other, 5); len(d) == 0 {
			t.Errorf("%s: Diff found nothing", name)
		}
	}
	vs := checkEntity(t, testEntityModel(t), nil, a, b, baseTree(f, false))
	if dv := vs["divergence"]; dv.Counts["divergent"] != 1 || !strings.Contains(strings.Join(dv.Problems, "\n"), "T0") {
		t.Errorf("divergence: %v", dv)
	}
}

// TestEntityExpectation: while the workload runs, a caught-up host shows
// every acknowledged field write (or a later version); a tag that may
// have been deleted is not demanded; once final, the tag's existence is.
func TestEntityExpectation(t *testing.T) {
	m := testEntityModel(t)
	v1 := ver(200, "n1")
	h := hist(
		setOp(ResultOK, "n1", vp(v1), tS0, "on", entity.Bool(true)),
		setOp(ResultOK, "n1", vp(ver(210, "n1")), tT0, "on", entity.Bool(true)),
		eop(entKindDelete, ResultOK, "n2", vp(ver(220, "n2")), entExt{Entity: tT0}),
	)
	o := entOracle{m}
	due := time.Unix(200, 0)
	behind := baseTree(nil, false)
	caughtUp := baseTree(map[string]entity.Field{"on": fld(entity.Bool(false), ver(250, "n3"))}, false)
	if got := o.Expect(h, due, false).Missing(behind); len(got) != 1 || got[0] != 0 {
		t.Errorf("behind: missing %v, want [0]", got)
	}
	if got := o.Expect(h, due, false).Missing(caughtUp); len(got) != 0 {
		t.Errorf("caught up (a later version supersedes): missing %v", got)
	}
	if got := o.Expect(h, time.Unix(50, 0), false).Missing(behind); len(got) != 0 {
		t.Errorf("nothing acknowledged before due: missing %v", got)
	}
	withTag := baseTree(map[string]entity.Field{"on": fld(entity.Bool(true), v1)}, true)
	if got := o.Expect(h, farFuture, true).Missing(withTag); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("final, deleted tag still visible without its field: missing %v, want [1 2]", got)
	}
}

// TestEntityMissingOn: for a visibility sample, a write from another
// host is not shown by the reading host's own later write to its
// register (the sites of TestChaosCatchesNATNoPath, cut apart, covered
// each other's writes so within seconds, and Missing said they had
// caught up); a later write of the writer itself, or the write, is.
func TestEntityMissingOn(t *testing.T) {
	m := testEntityModel(t)
	// n3's write, after n2's, is acknowledged after the sample's due:
	// it is not demanded, and it covers n2's on n3.
	later := setOp(ResultOK, "n3", vp(ver(250, "w3")), tS0, "on", entity.Bool(false))
	later.Start, later.End = time.Unix(102, 0), time.Unix(103, 0)
	h := hist(setOp(ResultOK, "n2", vp(ver(200, "w2")), tS0, "on", entity.Bool(true)), later)
	exp := entOracle{m}.Expect(h, time.Unix(102, 0), false).(HostExpectation)
	// n3 wrote S0's field after n2, and never heard from n2.
	covered := baseTree(map[string]entity.Field{"on": fld(entity.Bool(false), ver(250, "w3"))}, false)
	if got := exp.Missing(covered); len(got) != 0 {
		t.Fatalf("Missing %v: the test needs a state Missing takes as caught up", got)
	}
	if got := exp.MissingOn("n3", covered); len(got) != 1 || got[0] != 0 {
		t.Errorf("covered by n3's own write: MissingOn %v, want [0]", got)
	}
	if got := exp.MissingOn("n2", covered); len(got) != 0 {
		t.Errorf("n2 reading its own write: MissingOn %v", got)
	}
	// A later write of n2 (w2) shows on n3: n2's writes reach it.
	reached := baseTree(map[string]entity.Field{"on": fld(entity.Bool(false), ver(250, "w3")), "label": fld(entity.String("x"), ver(230, "w2"))}, false)
	if got := exp.MissingOn("n3", reached); len(got) != 0 {
		t.Errorf("n2's later write shows on n3: MissingOn %v", got)
	}
	shown := baseTree(map[string]entity.Field{"on": fld(entity.Bool(true), ver(200, "w2"))}, false)
	if got := exp.MissingOn("n3", shown); len(got) != 0 {
		t.Errorf("the write itself shows: MissingOn %v", got)
	}
}

func TestEntityModelConfig(t *testing.T) {
	if _, err := newEntityModel(ModelConfig{Hosts: 3, OverwriteKeys: 2}); err == nil {
		t.Error("OverwriteKeys 2 (one sensor) accepted")
	}
	if _, err := NewRegistry().model(entModel); err != nil {
		t.Error(err)
	}
}
