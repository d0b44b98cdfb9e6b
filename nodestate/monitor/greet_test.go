package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestGreetings(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	var g greetings
	now := time.Unix(1e9, 0)
	const gap = 5 * time.Second
	take := func() ([]peer.ID, bool) { return g.take(now, gap) }
	if peers, publish := take(); peers != nil || publish {
		t.Fatalf("empty: %v %v", peers, publish)
	}
	// Peers heard on time get the report directly, each once.
	g.add(a, true)
	g.add(b, true)
	g.add(a, true)
	if peers, publish := take(); publish || !slices.Equal(peers, []peer.ID{a, b}) {
		t.Fatalf("on time: %v %v, want [a b] direct", peers, publish)
	}
	// One peer not heard on time (joining, or across a healed
	// partition) makes it a publication, which reaches the others too.
	g.add(a, true)
	g.add(c, false)
	if peers, publish := take(); !publish || peers != nil {
		t.Fatalf("one late: %v %v, want a publication", peers, publish)
	}
	if peers, publish := take(); peers != nil || publish {
		t.Fatalf("after take: %v %v", peers, publish)
	}
	// Within gap of that publication, late peers too get the report
	// directly: a saturated node, hearing few peers on time while its
	// connections change, would otherwise publish all the time.
	now = now.Add(gap - time.Millisecond)
	g.add(c, false)
	if peers, publish := take(); publish || !slices.Equal(peers, []peer.ID{c}) {
		t.Fatalf("late within the gap: %v %v, want [c] direct", peers, publish)
	}
	now = now.Add(time.Millisecond)
	g.add(b, false)
	if peers, publish := take(); !publish || peers != nil {
		t.Fatalf("late after the gap: %v %v, want a publication", peers, publish)
	}
}
