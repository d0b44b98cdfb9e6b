package entity

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClockMaxDrift: a bounded clock does not adopt a timestamp years
// ahead of its physical clock, and adopts one within the bound.
func TestClockMaxDrift(t *testing.T) {
	fc := newFakeClock()
	c := NewBoundedClock(fc.Now, time.Minute)
	far := Timestamp{Wall: fc.Now().AddDate(10, 0, 0).UnixNano()}
	if c.Observe(far) {
		t.Fatal("Observe adopted a timestamp 10 years ahead")
	}
	if got := c.Now().Time(); got.Sub(fc.Now()) > time.Second {
		t.Fatalf("Now = %v after observing %v: the clock moved to the far timestamp", got, far.Time())
	}
	if next := c.NowAfter(far); !far.Less(next) || c.Last().Wall > fc.Now().UnixNano()+int64(time.Second) {
		t.Fatalf("NowAfter(far) = %v, clock at %v: want just after far, clock unmoved", next, c.Last())
	}
	near := Timestamp{Wall: fc.Now().Add(30 * time.Second).UnixNano()}
	if !c.Observe(near) {
		t.Fatal("Observe refused a timestamp within the bound")
	}
	if got := c.Now(); !near.Less(got) {
		t.Fatalf("Now %v not after adopted %v", got, near)
	}
}

// syncBuffer is a bytes.Buffer safe for the store's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// TestFarFutureWriterDoesNotMoveClock: one peer whose clock is 10 years
// ahead writes; this node keeps its value (LWW as written) but its own
// later writes are stamped near its physical clock, not 10 years ahead.
// The event is counted and logged once per writer per minute.
func TestFarFutureWriterDoesNotMoveClock(t *testing.T) {
	var logs syncBuffer
	fc := newFakeClock()
	a := openMem(t, "a", nil, fc, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	bad := newFakeClock()
	bad.Add(10 * 365 * 24 * time.Hour)
	b := openMem(t, "b", nil, bad)

	mustCreate(t, b, "/", "Sensor", "S")
	far := mustSet(t, b, "/S", "v", Int(1))
	bad.Add(time.Millisecond)
	mustSet(t, b, "/S", "w", Int(2))
	deliver(b.b, a.b)
	settle(t, a)

	if f := fieldOf(t, a, "/S", "v"); f.Value.Int != 1 || f.Writer != "b" || f.Timestamp != far.Timestamp {
		t.Fatalf("far-future value not kept as written: %+v", f)
	}
	id := mustCreate(t, a, "/", "Sensor", "T")
	v := mustSet(t, a, string(id), "v", Int(3))
	if ahead := v.Timestamp.Time().Sub(fc.Now()); ahead > time.Second {
		t.Fatalf("local write stamped %v ahead of this node's clock after a peer wrote 10 years ahead", ahead)
	}
	// Overwriting the far-future value still wins (LWW), without moving
	// the clock for other writes.
	over := mustSet(t, a, "/S", "v", Int(4))
	if f := fieldOf(t, a, "/S", "v"); f.Value.Int != 4 || f.Timestamp != over.Timestamp {
		t.Fatalf("overwrite of a far-future value lost: %+v", f)
	}
	if v := mustSet(t, a, string(id), "v", Int(5)); v.Timestamp.Time().Sub(fc.Now()) > time.Second {
		t.Fatalf("write after overwriting a far-future value stamped %v ahead", v.Timestamp.Time().Sub(fc.Now()))
	}

	if n := a.FarFutureTimestamps(); n != 3 { // the create, v and w of b
		t.Fatalf("FarFutureTimestamps = %d, want 3", n)
	}
	const msg = "timestamp too far ahead"
	if n := logs.count(msg); n != 1 {
		t.Fatalf("%d warnings for one writer within a minute, want 1:\n%s", n, logs.b.String())
	}
	if logs.count("writer=b") != 1 {
		t.Fatalf("warning does not name the writer:\n%s", logs.b.String())
	}
	fc.Add(2 * time.Minute)
	mustSet(t, b, "/S", "x", Int(6))
	deliver(b.b, a.b)
	settle(t, a)
	if n := logs.count(msg); n != 2 {
		t.Fatalf("%d warnings after a minute, want 2", n)
	}
}
