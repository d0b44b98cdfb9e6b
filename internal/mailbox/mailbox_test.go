package mailbox

import (
	"runtime"
	"testing"
	"time"

	"github.com/starling-sync/starling/internal/testutil"
)

func recv(t *testing.T, m *Mailbox[int]) (int, bool) {
	t.Helper()
	select {
	case v, ok := <-m.C():
		return v, ok
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered within 10s")
		return 0, false
	}
}

// TestOrderAndLimit: items beyond the channel's capacity wait in the
// queue, come out in order, and the limit counts them all.
func TestOrderAndLimit(t *testing.T) {
	const limit = 1000 // well above chanCap
	m := New[int](limit)
	defer m.Close()
	for i := range limit {
		if !m.Offer(i) {
			t.Fatalf("Offer(%d) refused below the limit", i)
		}
	}
	testutil.Eventually(t, 10*time.Second, "the channel filled", func() bool { return len(m.C()) == chanCap })
	if m.Offer(limit) {
		t.Fatal("Offer accepted past the limit")
	}
	if got := m.Len(); got != limit {
		t.Fatalf("Len() = %d, want %d", got, limit)
	}
	for i := range limit {
		if v, _ := recv(t, m); v != i {
			t.Fatalf("item %d is %d", i, v)
		}
	}
	// Room again once read.
	if !m.Offer(7) {
		t.Fatal("Offer refused after the consumer caught up")
	}
	if v, _ := recv(t, m); v != 7 {
		t.Fatalf("got %d, want 7", v)
	}
}

// TestCloseClosesC: C is closed when Close returns, waiting items are
// dropped, later offers are refused, and Close is safe twice.
func TestCloseClosesC(t *testing.T) {
	before := runtime.NumGoroutine()
	m := New[int](10)
	for i := range 10 {
		m.Offer(i)
	}
	m.Close()
	for range m.C() {
	}
	if m.Offer(1) {
		t.Fatal("Offer accepted after Close")
	}
	m.Close()
	c := Closed[int]()
	if _, ok := <-c.C(); ok {
		t.Fatal("Closed() delivers")
	}
	c.Close()
	testutil.Eventually(t, 5*time.Second, "goroutines back to the start count", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestStopThenDrain: Stop does not wait, so a producer holding a
// lock the consumer needs can end the mailbox; C closes soon after.
func TestStopThenDrain(t *testing.T) {
	m := New[int](4)
	m.Offer(1)
	m.Stop()
	testutil.Eventually(t, 5*time.Second, "C closed after Stop", func() bool {
		select {
		case _, ok := <-m.C():
			return !ok
		default:
			return false
		}
	})
	m.Close()
}

// TestSmallLimit: a limit below the channel's capacity is still the
// limit.
func TestSmallLimit(t *testing.T) {
	m := New[int](2)
	defer m.Close()
	if !m.Offer(1) {
		t.Fatal("refused the first item")
	}
	// The second may be refused while the pump moves the first (see
	// Offer); a third never fits.
	n := 1
	for v := 2; v <= 3; v++ {
		if m.Offer(v) {
			n++
		}
	}
	if n > 2 {
		t.Fatal("accepted three items with a limit of 2")
	}
}
