package entity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var ctx = context.Background()

func mustCreate(t testing.TB, s *testStore, parent, typ, name string) ID {
	t.Helper()
	id, err := s.Create(ctx, parent, typ, name)
	if err != nil {
		t.Fatalf("create %s/%s: %v", parent, name, err)
	}
	return id
}

func mustSet(t testing.TB, s *testStore, ref, field string, v Value) Version {
	t.Helper()
	ver, err := s.Set(ctx, ref, field, v)
	if err != nil {
		t.Fatalf("set %s.%s: %v", ref, field, err)
	}
	return ver
}

func fieldOf(t testing.TB, s *testStore, ref, field string) Field {
	t.Helper()
	f, err := s.GetField(ref, field)
	if err != nil {
		t.Fatalf("%s: get %s.%s: %v", s.NodeID(), ref, field, err)
	}
	return f
}

func TestTreeBasics(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	f := mustCreate(t, s, "/", "Site", "Factory")
	l := mustCreate(t, s, "/Factory", "Line", "Line1")
	mustCreate(t, s, string(l), "Sensor", "Sensor7")
	mustSet(t, s, "/Factory/Line1/Sensor7", "temperature", Float(21.5))

	e, err := s.Get("/Factory/Line1/Sensor7")
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != "Sensor" || e.Name != "Sensor7" || e.Path != "/Factory/Line1/Sensor7" {
		t.Fatalf("entity = %+v", e)
	}
	if got := e.Fields["temperature"]; got.Value.Float != 21.5 || got.Writer != "n1" || got.Timestamp.IsZero() {
		t.Fatalf("field = %+v", got)
	}
	if _, err := s.Create(ctx, "/Factory", "Line", "Line1"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := s.Get("/Factory/Nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `no "Nope" under /Factory`) {
		t.Fatalf("missing path: %v", err)
	}
	if _, err := s.Rename(ctx, "/Factory/Line1", "LineA"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("/Factory/LineA/Sensor7"); err != nil {
		t.Fatalf("after rename: %v", err)
	}
	mustCreate(t, s, "/", "Site", "Warehouse")
	if _, err := s.Move(ctx, "/Factory/LineA", "/Warehouse"); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Get(string(l)); err != nil || e.Path != "/Warehouse/LineA" || e.Parent == f {
		t.Fatalf("after move: %+v, %v", e, err)
	}
	if _, err := s.Move(ctx, "/Warehouse", "/Warehouse/LineA/Sensor7"); !errors.Is(err, ErrCycle) {
		t.Fatalf("move under own descendant: %v", err)
	}
	if _, err := s.Delete(ctx, "/Warehouse", false); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--recursive") {
		t.Fatalf("delete non-empty: %v", err)
	}
	if _, err := s.Delete(ctx, "/Warehouse", true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/Warehouse", "/Warehouse/LineA/Sensor7"} {
		if _, err := s.Get(p); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s after recursive delete: %v", p, err)
		}
	}
	kids, err := s.Children("/")
	if err != nil || len(kids) != 1 || kids[0].Name != "Factory" {
		t.Fatalf("root children = %+v, %v", kids, err)
	}
}

func TestBadInput(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	mustCreate(t, s, "/", "Site", "Factory")
	cases := []struct {
		name string
		err  error
		do   func() error
	}{
		{"name with slash", ErrBadName, func() error { _, err := s.Create(ctx, "/", "Site", "a/b"); return err }},
		{"empty name", ErrBadName, func() error { _, err := s.Create(ctx, "/", "Site", ""); return err }},
		{"bad type name", ErrBadName, func() error { _, err := s.Create(ctx, "/", "9x", "x"); return err }},
		{"bad field name", ErrBadName, func() error { _, err := s.Set(ctx, "/Factory", "a b", Int(1)); return err }},
		{"unknown parent", ErrNotFound, func() error { _, err := s.Create(ctx, "/Nope", "Site", "x"); return err }},
		{"bad ID", ErrNotFound, func() error { _, err := s.Get("not-an-id"); return err }},
		{"oversized", ErrTooLarge, func() error {
			_, err := s.Set(ctx, "/Factory", "blob", BytesValue(make([]byte, 65<<10)))
			return err
		}},
		{"bad json", ErrBadValue, func() error { _, err := s.Set(ctx, "/Factory", "doc", JSONValue("{")); return err }},
		{"NaN", ErrBadValue, func() error { _, err := s.Set(ctx, "/Factory", "x", Float(nan())); return err }},
	}
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, c.err) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
		}
	}
	if e, _ := s.Get("/Factory"); len(e.Fields) != 0 {
		t.Fatalf("bad writes left fields: %+v", e.Fields)
	}
}

func nan() float64 { var z float64; return z / z }

func TestSchema(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	mustCreate(t, s, "/", "Sensor", "S1")
	mustSet(t, s, "/S1", "anything", String("goes")) // no schema yet
	lo, hi := -50.0, 150.0
	sc := Schema{Type: "Sensor", Fields: map[string]FieldSpec{
		"temperature": {Type: KindFloat, Unit: "°C", Min: &lo, Max: &hi, Default: []byte("20")},
		"anything":    {Type: KindString},
	}}
	if err := s.PutSchema(ctx, sc); err != nil {
		t.Fatal(err)
	}
	if f := fieldOf(t, s, "/S1", "temperature"); !f.Default || f.Value.Float != 20 {
		t.Fatalf("default = %+v", f)
	}
	for _, c := range []struct {
		field string
		v     Value
		want  string
	}{
		{"temperature", String("hot"), `/S1: field "temperature" of type Sensor: expected float, got string`},
		{"temperature", Float(200), "above the maximum 150"},
		{"tempp", Float(1), `field "tempp" is not in the schema of type Sensor (fields: anything, temperature)`},
	} {
		_, err := s.Set(ctx, "/S1", c.field, c.v)
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("set %s=%v: %v, want %q", c.field, c.v, err, c.want)
		}
	}
	mustSet(t, s, "/S1", "temperature", Float(22))
	// Evolution: adding a field is fine; removing or retyping is not.
	sc2 := Schema{Type: "Sensor", Fields: map[string]FieldSpec{
		"temperature": sc.Fields["temperature"], "anything": {Type: KindString}, "unit_id": {Type: KindInt},
	}}
	if err := s.PutSchema(ctx, sc2); err != nil {
		t.Fatal(err)
	}
	mustSet(t, s, "/S1", "unit_id", Int(7))
	if err := s.PutSchema(ctx, Schema{Type: "Sensor", Fields: map[string]FieldSpec{"temperature": {Type: KindInt}}}); !errors.Is(err, ErrSchema) ||
		!strings.Contains(err.Error(), `"anything" would be removed`) || !strings.Contains(err.Error(), "from float to int") {
		t.Fatalf("incompatible schema: %v", err)
	}
	if err := s.PutSchema(ctx, Schema{Type: "Bad", Fields: map[string]FieldSpec{"x": {Type: KindString, Min: &lo}}}); !errors.Is(err, ErrSchema) {
		t.Fatalf("invalid schema: %v", err)
	}
}

func TestWatch(t *testing.T) {
	a := openMem(t, "a", nil, nil)
	b := openMem(t, "b", nil, a.clock)
	mustCreate(t, a, "/", "Site", "Factory")
	mustCreate(t, a, "/", "Site", "Other")
	mustCreate(t, a, "/Factory", "Sensor", "S")
	w := a.Watch("/Factory", 16)
	defer w.Close()
	rw := a.WatchRemote("/Factory", 16)
	defer rw.Close()
	mustSet(t, a, "/Factory/S", "t", Int(1))
	mustSet(t, a, "/Other", "t", Int(1)) // outside
	sync2(a.b, b.b)
	settle(t, a, b)
	a.clock.Add(time.Millisecond)
	mustSet(t, b, "/Factory/S", "t", Int(2)) // remote
	sync2(a.b, b.b)
	settle(t, a, b)
	a.clock.Add(time.Millisecond)
	mustSet(t, a, "/Factory/S", "t", Int(3))
	events := func(w *Watcher, n int) []string {
		var got []string
		for len(got) < n {
			select {
			case ev := <-w.C():
				if ev.Field != "t" {
					continue
				}
				old := "none"
				if ev.Old != nil {
					old = ev.Old.String()
				}
				got = append(got, fmt.Sprintf("%s %s->%s by %s local=%v", ev.Path, old, ev.New, ev.Writer, ev.Local))
			case <-time.After(5 * time.Second):
				t.Fatalf("events so far: %v", got)
			}
		}
		return got
	}
	got := events(w, 3)
	want := []string{"/Factory/S none->1 by a local=true", "/Factory/S 1->2 by b local=false", "/Factory/S 2->3 by a local=true"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	// The remote-only watcher sees b's write alone.
	if got, want := events(rw, 1), []string{"/Factory/S 1->2 by b local=false"}; strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("remote-only events:\n got %v\nwant %v", got, want)
	}
	select {
	case ev := <-rw.C():
		if ev.Local {
			t.Fatalf("remote-only watcher got a local event: %+v", ev)
		}
	default:
	}
}

func TestReopenKeepsTree(t *testing.T) {
	b := newMemBackend()
	a := openMem(t, "a", b, nil)
	mustCreate(t, a, "/", "Site", "F")
	mustSet(t, a, "/F", "x", Int(5))
	a.Close()
	a2 := openMem(t, "a", b, nil)
	if f := fieldOf(t, a2, "/F", "x"); f.Value.Int != 5 {
		t.Fatalf("after reopen: %+v", f)
	}
}

// TestWatchSeesCreateUnderPath: every event of a create carries the new
// entity's full path, so a watcher of its parent sees all of them.
func TestWatchSeesCreateUnderPath(t *testing.T) {
	a := openMem(t, "a", nil, nil)
	mustCreate(t, a, "/", "Site", "F")
	w := a.Watch("/F", 16)
	defer w.Close()
	mustCreate(t, a, "/F", "Line", "L")
	seen := map[string]string{}
	for len(seen) < 4 {
		select {
		case ev := <-w.C():
			seen[ev.Field] = ev.Path
		case <-time.After(5 * time.Second):
			t.Fatalf("events: %v", seen)
		}
	}
	for f, p := range seen {
		if p != "/F/L" {
			t.Fatalf("%s event has path %q, want /F/L", f, p)
		}
	}
}

// TestUpdateTooLarge: one update larger than a record may be is refused
// with a message that says to split it, and nothing is written.
func TestUpdateTooLarge(t *testing.T) {
	s := openMem(t, "a", nil, nil)
	mustCreate(t, s, "/", "Blob", "B")
	big := strings.Repeat("x", 60<<10)
	_, err := s.Update(context.Background(), func(tx *Tx) error {
		for i := 0; i < 5; i++ {
			if err := tx.Set("/B", fmt.Sprintf("f%d", i), String(big)); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "split it") {
		t.Fatalf("a 300 KiB update: %v, want ErrTooLarge saying to split it", err)
	}
	if _, err := s.GetField("/B", "f0"); !errors.Is(err, ErrNoField) {
		t.Fatalf("part of a refused update was written: %v", err)
	}
}

// TestNamesNormalized: a name is stored in Unicode NFC, so "é" typed as
// one code point or as "e" + combining acute names the same sibling, and
// a path in either form finds it.
func TestNamesNormalized(t *testing.T) {
	const nfc, nfd = "Caf\u00e9", "Cafe\u0301"
	s := openMem(t, "n1", nil, nil)
	id := mustCreate(t, s, "/", "Site", nfd)
	if e, err := s.Get(string(id)); err != nil || e.Name != nfc || e.Path != "/"+nfc {
		t.Fatalf("created as NFD: %+v, %v; want the name stored as NFC", e, err)
	}
	if _, err := s.Create(ctx, "/", "Site", nfc); !errors.Is(err, ErrExists) {
		t.Fatalf("NFC twin of an NFD name: %v, want ErrExists", err)
	}
	for _, p := range []string{"/" + nfc, "/" + nfd} {
		if got, err := s.Resolve(p); err != nil || got != id {
			t.Errorf("Resolve(%+q) = %v, %v; want %v", p, got, err, id)
		}
	}
	other := mustCreate(t, s, "/", "Site", "Other")
	if _, err := s.Rename(ctx, string(other), nfd); !errors.Is(err, ErrExists) {
		t.Fatalf("rename to the NFD twin of a sibling: %v, want ErrExists", err)
	}
	if _, err := s.Rename(ctx, string(other), "Re\u0301sume\u0301"); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(string(other)); e.Name != "R\u00e9sum\u00e9" {
		t.Fatalf("renamed to %+q, want NFC", e.Name)
	}
}

// TestStoredNamesStillRead: names stored before normalization and
// validation (NFD, a trailing space) still read as stored and resolve by
// path; only Create and Rename refuse them.
func TestStoredNamesStillRead(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	old := func(name string) ID {
		t.Helper()
		id := mustCreate(t, s, "/", "Site", "tmp")
		if _, err := s.Update(ctx, func(tx *Tx) error { // as an older version wrote it
			tx.write(regKey{entity: id, kind: 'a', name: attrName}, String(name).Encode())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	nfd, spaced := old("Cafe\u0301"), old("Pump ")
	if e, err := s.Get(string(nfd)); err != nil || e.Name != "Cafe\u0301" {
		t.Fatalf("stored NFD name: %+v, %v", e, err)
	}
	for _, p := range []string{"/Caf\u00e9", "/Cafe\u0301"} {
		if got, err := s.Resolve(p); err != nil || got != nfd {
			t.Errorf("Resolve(%+q) = %v, %v; want the stored NFD entity", p, got, err)
		}
	}
	if got, err := s.Resolve("/Pump "); err != nil || got != spaced {
		t.Errorf("stored name with a trailing space: %v, %v", got, err)
	}
	if _, err := s.Rename(ctx, string(spaced), "Pump"); err != nil {
		t.Fatalf("renaming it to a valid name: %v", err)
	}
}

// TestNamesRefused: leading or trailing white space, control and
// bidirectional-formatting characters are refused on create and rename
// with an error saying what to do.
func TestNamesRefused(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	id := mustCreate(t, s, "/", "Site", "Ok name")
	for _, c := range []struct{ name, says string }{
		{"Pump ", "trim"}, {" Pump", "trim"}, {"Pump\u00a0", "trim"}, {"\u3000Pump", "trim"},
		{"Pu\tmp", "control character"}, {"Pump\n", "control character"},
		{"abc\u202egnp.exe", "bidirectional"}, {"a\u2066b", "bidirectional"},
	} {
		if _, err := s.Create(ctx, "/", "Site", c.name); !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Create(%+q) = %v; want ErrBadName saying %q", c.name, err, c.says)
		}
		if _, err := s.Rename(ctx, string(id), c.name); !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Rename to %+q = %v; want ErrBadName saying %q", c.name, err, c.says)
		}
	}
}

// Deleted lists what Restore can bring back: where each entity was,
// newest delete first, and whether it went with a deleted ancestor.
func TestDeletedLists(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	for _, c := range [][3]string{{"/", "Site", "Plant"}, {"/Plant", "Line", "L1"}, {"/Plant/L1", "Cell", "C1"}, {"/Plant", "Line", "L2"}} {
		if _, err := s.Create(ctx, c[0], c[1], c[2]); err != nil {
			t.Fatal(err)
		}
	}
	l2, _ := s.Get("/Plant/L2")
	l1, _ := s.Get("/Plant/L1")
	if _, err := s.Delete(ctx, "/Plant/L2", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "/Plant/L1/C1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "/Plant/L1", false); err != nil {
		t.Fatal(err)
	}
	got := s.Deleted("/", 0)
	var paths []string
	for _, d := range got {
		paths = append(paths, fmt.Sprintf("%s %s %v", d.Path, d.Type, d.WithParent))
	}
	want := []string{"/Plant/L1 Line false", "/Plant/L1/C1 Cell true", "/Plant/L2 Line false"}
	if !slices.Equal(paths, want) {
		t.Fatalf("Deleted = %q, want %q", paths, want)
	}
	if got[0].ID != l1.ID || got[2].ID != l2.ID || got[0].Timestamp.IsZero() {
		t.Errorf("Deleted = %+v", got)
	}
	if d := s.Deleted("/Plant/L1", 0); len(d) != 2 {
		t.Errorf("Deleted under /Plant/L1 = %+v, want 2", d)
	}
	if d := s.Deleted("/", 1); len(d) != 1 || d[0].ID != l1.ID {
		t.Errorf("Deleted limit 1 = %+v", d)
	}
	if _, err := s.Update(ctx, func(tx *Tx) error { return tx.Restore(l1.ID) }); err != nil {
		t.Fatal(err)
	}
	if d := s.Deleted("/", 0); len(d) != 2 || d[0].Path != "/Plant/L1/C1" || d[0].WithParent {
		t.Errorf("after restoring L1: %+v", d)
	}
}

// TestStructureWritesReturnVersions: Rename, Move and Delete return the
// version of their write as Set does: stamped by this node, later than
// every write before them, and the same one Update returns.
func TestStructureWritesReturnVersions(t *testing.T) {
	s := openMem(t, "n1", nil, nil)
	mustCreate(t, s, "/", "Site", "A")
	mustCreate(t, s, "/", "Site", "B")
	mustCreate(t, s, "/A", "Line", "L")
	set, err := s.Set(ctx, "/A/L", "speed", Int(3))
	if err != nil {
		t.Fatal(err)
	}
	prev := set
	for _, step := range []struct {
		name string
		do   func() (Version, error)
	}{
		{"rename", func() (Version, error) { return s.Rename(ctx, "/A/L", "M") }},
		{"move", func() (Version, error) { return s.Move(ctx, "/A/M", "/B") }},
		{"delete", func() (Version, error) { return s.Delete(ctx, "/B/M", false) }},
		{"delete recursive", func() (Version, error) { return s.Delete(ctx, "/B", true) }},
	} {
		v, err := step.do()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if v.Writer != "n1" || v.Timestamp.IsZero() || v.Compare(prev) <= 0 {
			t.Errorf("%s returned %v, want a version of n1 after %v", step.name, v, prev)
		}
		prev = v
	}
	if v, err := s.Move(ctx, "/nope", "/A"); err == nil || !v.Timestamp.IsZero() {
		t.Errorf("a failed move returned %v, %v", v, err)
	}
}
