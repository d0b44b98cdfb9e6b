package bench

import (
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// An interrupted set-up stops before the next dial: mocknet's dials take
// no context, and a 200-node set-up that had slowed to minutes ran on
// after Ctrl-C, since the context was only looked at once all were made.
func TestMockTopologyStopsWhenInterrupted(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	var ids []peer.ID
	for range 6 {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := mockTopology(ctx, mn, ids, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("mockTopology after an interrupt: %v, want context.Canceled", err)
	}
	if links := mn.Links(); len(links) != 0 {
		t.Fatalf("%d peers linked after the interrupt, want none", len(links))
	}
}
