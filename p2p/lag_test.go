package p2p

import (
	"testing"
	"time"
)

func TestLagMeter(t *testing.T) {
	var l lagMeter
	t0 := time.Now()
	l.sent([]byte("a"), t0)
	l.sent([]byte("b"), t0)
	l.arrived([]byte("a"), t0.Add(300*time.Millisecond))
	l.arrived([]byte("b"), t0.Add(2*time.Second))
	l.arrived([]byte("unknown"), t0.Add(3*time.Second)) // not sent here: no sample
	if got := l.max(5*time.Second, t0.Add(2*time.Second)); got != 2*time.Second {
		t.Errorf("lag = %v, want 2s", got)
	}
	// Only samples within the window count.
	if got := l.max(time.Second, t0.Add(2500*time.Millisecond)); got != 2*time.Second {
		t.Errorf("lag within 1s = %v, want 2s", got)
	}
	if got := l.max(time.Second, t0.Add(10*time.Second)); got != 0 {
		t.Errorf("lag of old samples = %v, want 0", got)
	}
}
