package entity

import (
	"fmt"
	"math/rand"
	"reflect"
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
		if used[reg.key(ver).String()] {
			continue
		}
		used[reg.key(ver).String()] = true
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

// TestMergeProperties applies the same final set of versions in random
// orders, split into random groups, with duplicates and with extra
// versions added and later removed (as a newer write does), and checks
// that every order gives the same winners and the same tree, that the
// winners are those of a plain LWW reference (the greatest version), and
// that no cycle is ever visible.
func TestMergeProperties(t *testing.T) {
	seed := int64(20261121)
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	ids := []ID{"01000000000000000000000001", "01000000000000000000000002", "01000000000000000000000003", "01000000000000000000000004"}
	for round := 0; round < 200; round++ {
		writes := genWrites(r, ids)
		// Split into the final live set and extras removed later.
		var live, extra []int
		for i := range writes {
			if r.Intn(4) == 0 {
				extra = append(extra, i)
			} else {
				live = append(live, i)
			}
		}
		// Reference: the greatest live version of each register.
		ref := map[string]string{}
		for _, i := range live {
			w := writes[i]
			k := w.reg.prefix()
			if cur, ok := ref[k]; !ok || cur < w.v.String() {
				ref[k] = w.v.String()
			}
		}
		var first snapshot
		for perm := 0; perm < 5; perm++ {
			st := newState()
			type ev struct {
				i   int
				add bool
			}
			var evs []ev
			for _, i := range live {
				evs = append(evs, ev{i, true})
				if r.Intn(3) == 0 {
					evs = append(evs, ev{i, true}) // duplicate
				}
			}
			for _, i := range extra {
				evs = append(evs, ev{i, true})
			}
			r.Shuffle(len(evs), func(a, b int) { evs[a], evs[b] = evs[b], evs[a] })
			// Removals of extras go somewhere after their add.
			for _, i := range extra {
				at := 0
				for j, e := range evs {
					if e.i == i && e.add {
						at = j + 1 + r.Intn(len(evs)-j)
						break
					}
				}
				evs = append(evs[:at], append([]ev{{i, false}}, evs[at:]...)...)
			}
			for n, e := range evs {
				w := writes[e.i]
				if e.add {
					st.apply(w.reg, w.v.Version, w.v.value, true)
				} else {
					st.apply(w.reg, w.v.Version, nil, false)
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
			// The tree kept up incrementally equals one derived at once.
			fresh := newState()
			for _, i := range live {
				fresh.apply(writes[i].reg, writes[i].v.Version, writes[i].v.value, true)
			}
			if want := snap(fresh, ids); !reflect.DeepEqual(want, got) {
				t.Fatalf("round %d perm %d: incremental tree differs from a full rebuild:\n%+v\n%+v", round, perm, got, want)
			}
			for _, w := range writes {
				k := w.reg.prefix()
				want, ok := ref[k]
				name := string(w.reg.entity) + "/" + string(w.reg.kind) + "/" + w.reg.name
				if g, has := got.Winners[name]; ok != has || (ok && g[:len(want)] != want) {
					t.Fatalf("round %d perm %d: %s winner %q, reference %q", round, perm, name, g, want)
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
