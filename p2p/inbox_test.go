package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestInboxIsFairBetweenPeers: a peer that floods the inbox fills its
// own share and no more; another peer's message, sent after the flood,
// is taken within the first few, not after the flood.
func TestInboxIsFairBetweenPeers(t *testing.T) {
	q := newInbox()
	for i := range 2 * inboxPeerMax {
		ok := q.push(inbound{from: "mallory", data: []byte(fmt.Sprint(i))}, nil, nil)
		if want := i < inboxPeerMax; ok != want {
			t.Fatalf("mallory's message %d queued %v, want %v (share %d)", i, ok, want, inboxPeerMax)
		}
	}
	if !q.push(inbound{from: "alice", data: []byte("honest")}, nil, nil) {
		t.Fatal("alice's message dropped while mallory's share is full")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		m, err := q.pop(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.from == "alice" {
			t.Logf("alice's message taken %d-th", i+1)
			if d := q.takeDropped(); d["mallory"] != inboxPeerMax {
				t.Fatalf("dropped %v, want mallory: %d", d, inboxPeerMax)
			}
			return
		}
	}
	t.Fatal("alice's message waits behind mallory's flood")
}
