package entity

import (
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// genWrites makes random versions of a few registers of a few entities:
// attributes (including parents that form cycles and deletes) and fields,
// with colliding timestamps and three writers.
func genWrites(r *rand.Rand, ids []ID) []struct {
	reg regKey
	v   version
} {
	var out []struct {
		reg regKey
		v   version
	}
	writers := []string{"a", "b", "c"}
	used := map[string]bool{} // a writer stamps a register's version once
	for i := 0; i < 60; i++ {
		id := ids[r.Intn(len(ids))]
		ver := Version{Timestamp: Timestamp{Wall: int64(r.Intn(20)), Logical: uint32(r.Intn(2))}, Writer: writers[r.Intn(3)]}
		var reg regKey
		var val []byte
		switch r.Intn(6) {
		case 0:
			reg = regKey{entity: id, kind: 'a', name: attrParent}
			p := ids[r.Intn(len(ids))]
			if r.Intn(3) == 0 {
				p = Root
			}
			val = parentValue{parent: p, prev: ids[r.Intn(len(ids))]}.encode()
		case 1:
			reg = regKey{entity: id, kind: 'a', name: attrExists}
			val = Bool(r.Intn(4) != 0).Encode()
		case 2:
			reg = regKey{entity: id, kind: 'a', name: attrName}
			val = String(fmt.Sprintf("n%d", r.Intn(3))).Encode()
		default:
			reg = regKey{entity: id, kind: 'f', name: fmt.Sprintf("f%d", r.Intn(2))}
			val = Int(int64(r.Intn(100))).Encode()
		}
		if used[reg.String()+"@"+ver.String()] {
			continue
		}
		used[reg.String()+"@"+ver.String()] = true
		out = append(out, struct {
			reg regKey
			v   version
		}{reg, version{Version: ver, value: val}})
	}
	// Every entity has a type, so it can exist.
	for _, id := range ids {
		out = append(out, struct {
			reg regKey
			v   version
		}{regKey{entity: id, kind: 'a', name: attrType}, version{Version: Version{Writer: "a"}, value: String("T").Encode()}})
	}
	return out
}

// snapshot is everything a reader can observe of a state.
type snapshot struct {
	Winners map[string]string
	Paths   map[ID]string
	Kids    map[ID][]ID
}

func snap(s *state, ids []ID) snapshot {
	out := snapshot{Winners: map[string]string{}, Paths: map[ID]string{}, Kids: map[ID][]ID{}}
	for id, e := range s.ents {
		for n, r := range e.attrs {
			if w, ok := r.winner(); ok {
				out.Winners[string(id)+"/a/"+n] = w.String() + "=" + string(w.value)
			}
		}
		for n, r := range e.fields {
			if w, ok := r.winner(); ok {
				out.Winners[string(id)+"/f/"+n] = w.String() + "=" + string(w.value)
			}
		}
	}
	for _, id := range append([]ID{Root}, ids...) {
		if s.visible(id) {
			out.Paths[id] = s.path(id)
			out.Kids[id] = s.children(id)
		}
	}
	return out
}

// testRecord is a record for the property test: the writes of a few
// updates of one writer.
type testRecord struct {
	key    string
	writer string
	ws     []write
}

// groupRecords packs writes into records the way committers do: the
// writes of one version are one update; consecutive updates of a writer
// share a record at random; a record is keyed by its first version.
func groupRecords(r *rand.Rand, writes []struct {
	reg regKey
	v   version
}) []testRecord {
	byVersion := map[Version][]write{}
	var versions []Version
	for _, w := range writes {
		if _, ok := byVersion[w.v.Version]; !ok {
			versions = append(versions, w.v.Version)
		}
		byVersion[w.v.Version] = append(byVersion[w.v.Version], write{reg: w.reg, ts: w.v.Timestamp, value: w.v.value})
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i].Compare(versions[j]) < 0 })
	var out []testRecord
	open := map[string]int{} // writer -> index of its open record
	for _, v := range versions {
		i, ok := open[v.Writer]
		if !ok || r.Intn(2) == 0 {
			out = append(out, testRecord{key: recordKey(v), writer: v.Writer})
			i = len(out) - 1
			open[v.Writer] = i
		}
		out[i].ws = append(out[i].ws, byVersion[v]...)
	}
	return out
}

// TestMergeProperties applies the same records in random orders, with
// duplicates, with garbage records (every write beaten) deleted at random
// points, never seen at all, or not yet deleted, and checks that every
// order gives the same winners and the same tree, that the winners are
// those of a plain LWW reference (the greatest version of each register),
// that the view finds exactly the garbage, that the incremental tree
// equals one derived from the live records at once, and that no cycle is
// ever visible.
func TestMergeProperties(t *testing.T) {
	seed := int64(20261121)
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	ids := []ID{"01000000000000000000000001", "01000000000000000000000002", "01000000000000000000000003", "01000000000000000000000004"}
	for round := 0; round < 300; round++ {
		writes := genWrites(r, ids)
		recs := groupRecords(r, writes)
		// Reference: the greatest version of each register.
		ref := map[string]Version{}
		for _, w := range writes {
			k := w.reg.String()
			if cur, ok := ref[k]; !ok || cur.Compare(w.v.Version) < 0 {
				ref[k] = w.v.Version
			}
		}
		garbage := map[string]bool{}
		for _, rc := range recs {
			beaten := true
			for _, w := range rc.ws {
				if ref[w.reg.String()] == (Version{Timestamp: w.ts, Writer: rc.writer}) {
					beaten = false
				}
			}
			garbage[rc.key] = beaten
		}
		var first snapshot
		for perm := 0; perm < 5; perm++ {
			st := newState()
			type ev struct {
				i   int
				add bool
			}
			var evs []ev
			deleted := map[string]bool{}
			for i, rc := range recs {
				if garbage[rc.key] {
					switch r.Intn(3) {
					case 0: // never seen here
						deleted[rc.key] = true
						continue
					case 1: // deleted later
						deleted[rc.key] = true
					}
				}
				evs = append(evs, ev{i, true})
				if r.Intn(3) == 0 {
					evs = append(evs, ev{i, true}) // duplicate
				}
			}
			r.Shuffle(len(evs), func(a, b int) { evs[a], evs[b] = evs[b], evs[a] })
			for i, rc := range recs {
				if !deleted[rc.key] {
					continue
				}
				at := r.Intn(len(evs) + 1)
				for j, e := range evs {
					if e.i == i {
						at = j + 1 + r.Intn(len(evs)-j)
						break
					}
				}
				evs = slices.Insert(evs, at, ev{i, false})
			}
			for n, e := range evs {
				rc := recs[e.i]
				if e.add {
					st.addRecord(rc.key, rc.writer, rc.ws)
				} else {
					st.removeRecord(rc.key)
				}
				if n%3 == 0 { // readers in between must never see a cycle
					for _, id := range ids {
						if st.visible(id) && !st.isAncestor(Root, id) {
							t.Fatalf("round %d: %s visible but not under the root", round, id)
						}
					}
				}
			}
			got := snap(st, ids)
			// The tree kept up incrementally equals one derived at once
			// from the live records.
			fresh := newState()
			for _, rc := range recs {
				if !garbage[rc.key] {
					fresh.addRecord(rc.key, rc.writer, rc.ws)
				}
			}
			if want := snap(fresh, ids); !reflect.DeepEqual(want, got) {
				t.Fatalf("round %d perm %d: incremental tree differs from a rebuild from live records:\n%+v\n%+v", round, perm, got, want)
			}
			for k, want := range ref {
				found := false
				for name, g := range got.Winners {
					if name == k {
						found = true
						if !strings.HasPrefix(g, want.String()+"=") {
							t.Fatalf("round %d perm %d: %s winner %q, reference %s", round, perm, k, g, want)
						}
					}
				}
				if !found {
					t.Fatalf("round %d perm %d: %s has no winner, reference %s", round, perm, k, want)
				}
			}
			for k := range st.garbage {
				if !garbage[k] {
					t.Fatalf("round %d perm %d: live record %s taken for garbage", round, perm, k)
				}
			}
			for _, rc := range recs {
				if _, live := st.records[rc.key]; live && garbage[rc.key] && st.garbage[rc.key] == nil {
					t.Fatalf("round %d perm %d: garbage record %s not found", round, perm, rc.key)
				}
			}
			if perm == 0 {
				first = got
			} else if !reflect.DeepEqual(first, got) {
				t.Fatalf("round %d: order %d gives another state:\n%+v\n%+v", round, perm, first, got)
			}
		}
	}
}

// TestRecordRoundTrip: a record decodes to what was encoded.
func TestRecordRoundTrip(t *testing.T) {
	ws := []write{
		{reg: regKey{entity: "01000000000000000000000001", kind: 'f', name: "temp"}, ts: Timestamp{Wall: 7, Logical: 1}, value: Float(21.5).Encode()},
		{reg: regKey{entity: Root, kind: 'a', name: attrExists}, ts: Timestamp{Wall: 7, Logical: 1}, value: Bool(true).Encode()},
		{reg: regKey{kind: 's', name: "Sensor"}, ts: Timestamp{Wall: 8}, value: []byte(`{"type":"Sensor"}`)},
	}
	got, err := decodeRecord(encodeRecord(ws))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ws) {
		t.Fatalf("got %+v\nwant %+v", got, ws)
	}
	for _, bad := range [][]byte{nil, []byte("R1"), []byte("R2\x01"), encodeRecord(ws)[:20], append(encodeRecord(ws), 0)} {
		if _, err := decodeRecord(bad); !errors.Is(err, ErrBadRecord) {
			t.Errorf("decodeRecord(%q) = %v, want ErrBadRecord", bad, err)
		}
	}
}
