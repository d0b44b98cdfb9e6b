package monitor

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestGreetings(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	var g greetings
	if peers, publish := g.take(); peers != nil || publish {
		t.Fatalf("empty: %v %v", peers, publish)
	}
	// Peers heard on time get the report directly, each once.
	g.add(a, true)
	g.add(b, true)
	g.add(a, true)
	if peers, publish := g.take(); publish || !slices.Equal(peers, []peer.ID{a, b}) {
		t.Fatalf("on time: %v %v, want [a b] direct", peers, publish)
	}
	// One peer not heard on time (joining, or across a healed
	// partition) makes it a publication, which reaches the others too.
	g.add(a, true)
	g.add(c, false)
	if peers, publish := g.take(); !publish || peers != nil {
		t.Fatalf("one late: %v %v, want a publication", peers, publish)
	}
	if peers, publish := g.take(); peers != nil || publish {
		t.Fatalf("after take: %v %v", peers, publish)
	}
}
