package monitor

import (
	"testing"
	"time"
)

// TestWarnLimiter: one warning a minute per peer, with the count held
// back; another peer's first warning passes.
func TestWarnLimiter(t *testing.T) {
	var l warnLimiter
	t0 := time.Unix(1000, 0)
	if _, ok := l.allow("mallory", t0); !ok {
		t.Fatal("first warning held back")
	}
	for i := range 100 {
		if _, ok := l.allow("mallory", t0.Add(time.Duration(i)*100*time.Millisecond)); ok {
			t.Fatalf("warning %d within the minute let through", i+2)
		}
	}
	if _, ok := l.allow("alice", t0.Add(time.Second)); !ok {
		t.Fatal("another peer's first warning held back")
	}
	if n, ok := l.allow("mallory", t0.Add(time.Minute)); !ok || n != 100 {
		t.Fatalf("after a minute: let through %v, held %d, want true and 100", ok, n)
	}
}
