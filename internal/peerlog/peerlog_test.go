package peerlog

import (
	"testing"
	"time"
)

// TestOneLinePerPeerAMinute: a peer repeating an event gets one line a
// minute, with the count held back, and does not hide another peer's.
func TestOneLinePerPeerAMinute(t *testing.T) {
	var l Limiter
	t0 := time.Unix(1000, 0)
	if _, ok := l.Allow("mallory", t0); !ok {
		t.Fatal("first warning held back")
	}
	for i := range 1000 {
		if _, ok := l.Allow("mallory", t0.Add(time.Duration(i)*time.Millisecond)); ok {
			t.Fatalf("warning %d within a minute let through", i+2)
		}
	}
	if _, ok := l.Allow("alice", t0); !ok {
		t.Fatal("another peer's warning held back")
	}
	if n, ok := l.Allow("mallory", t0.Add(Every)); !ok || n != 1000 {
		t.Fatalf("after a minute: let through %v, held back %d: want true, 1000", ok, n)
	}
}
