package p2p

import (
	"slices"
	"testing"
)

// TestExchangeBookSendsChanges: after a round, a peer is sent only the
// entries that changed or appeared since the round it last received,
// never its own, and nothing when nothing changed.
func TestExchangeBookSendsChanges(t *testing.T) {
	ids := func(es []exchangeEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID+"="+e.Addrs[0])
		}
		return out
	}
	var b exchangeBook
	b.update([]exchangeEntry{{ID: "a", Addrs: []string{"1"}}, {ID: "b", Addrs: []string{"2"}}, {ID: "c", Addrs: []string{"3"}}})
	if got := ids(b.since(0, "c")); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Fatalf("the whole list for c = %v, want a and b", got)
	}
	r1 := b.round
	b.update([]exchangeEntry{{ID: "c", Addrs: []string{"3"}}, {ID: "b", Addrs: []string{"2"}}, {ID: "a", Addrs: []string{"1"}}})
	if got := b.since(r1, "x"); len(got) != 0 || b.round != r1 {
		t.Fatalf("nothing changed, yet since(%d) = %v, round %d", r1, ids(got), b.round)
	}
	b.update([]exchangeEntry{{ID: "a", Addrs: []string{"1"}}, {ID: "b", Addrs: []string{"2b"}}, {ID: "d", Addrs: []string{"4"}}})
	if got := ids(b.since(r1, "d")); !slices.Equal(got, []string{"b=2b"}) {
		t.Fatalf("since(%d) for d = %v, want only b's new address", r1, got)
	}
	if got := ids(b.since(r1, "x")); !slices.Equal(got, []string{"b=2b", "d=4"}) {
		t.Fatalf("since(%d) = %v, want b's new address and d", r1, got)
	}
	if got := ids(b.since(0, "x")); !slices.Equal(got, []string{"a=1", "b=2b", "d=4"}) {
		t.Fatalf("the whole list = %v: c, no longer listed, must be gone", got)
	}
}
