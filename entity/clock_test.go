package entity

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestBoundedClockDoesNotAdoptFarFuture: a timestamp more than the bound
// ahead is not adopted; NowAfter past it follows it without moving the
// clock, and every stamp, concurrent ones included, is given once.
func TestBoundedClockDoesNotAdoptFarFuture(t *testing.T) {
	clock := newFakeClock()
	c := NewBoundedClock(clock.Now, time.Minute)
	pt := clock.Now().UnixNano()
	far := Timestamp{Wall: pt + int64(10*365*24*time.Hour), Logical: 3}
	if c.Observe(far) {
		t.Fatal("a timestamp ten years ahead was adopted")
	}
	near := Timestamp{Wall: pt + int64(30*time.Second)}
	if !c.Observe(near) {
		t.Fatal("a timestamp 30s ahead (within the bound) was refused")
	}
	if got := c.Now(); !near.Less(got) || got.Wall > near.Wall {
		t.Fatalf("Now after observing %v: %v", near, got)
	}
	after, isFar := c.NowAfter(far)
	if !isFar || !far.Less(after) || after.Wall != far.Wall {
		t.Fatalf("NowAfter(far) = %v (far %v), want just after %v", after, isFar, far)
	}
	if got := c.Now(); got.Wall > pt+int64(time.Minute) {
		t.Fatalf("the clock moved to %v after NowAfter past a far-future version", got.Time())
	}

	// Concurrent stamps: normal ones, ones after the far version, and
	// ones after a version stamped with the far stamps' counter bit once
	// the physical clock has caught up with it: never twice the same.
	var mu sync.Mutex
	seen := map[Timestamp]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				var ts Timestamp
				switch (g + i) % 3 {
				case 0:
					ts = c.Now()
				case 1:
					ts, _ = c.NowAfter(far)
				case 2:
					ts, _ = c.NowAfter(after)
				}
				mu.Lock()
				if seen[ts] {
					t.Errorf("stamp %v given twice", ts)
				}
				seen[ts] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	clock.Set(far.Time().Add(time.Second)) // physical time passes the far version
	prev := c.Last()
	for range 100 {
		ts, isFar := c.NowAfter(after)
		if isFar || seen[ts] || !prev.Less(ts) {
			t.Fatalf("after the clock caught up: %v (far %v), seen before %v", ts, isFar, seen[ts])
		}
		seen[ts] = true
		prev = ts
	}
}

// TestFarFutureWriterDoesNotMoveClock: a node whose clock is ten years
// ahead writes once. Before the bound, every later write of the other
// node was stamped ten years ahead; now only a write that replaces that
// version is stamped after it (so it still wins), and the other node's
// other writes keep its own time.
func TestFarFutureWriterDoesNotMoveClock(t *testing.T) {
	b := newMemBackend()
	honest := openMem(t, "a", b, nil)
	skewed := newFakeClock()
	skewed.Add(10 * 365 * 24 * time.Hour)
	bad := openMem(t, "b", b, skewed)
	mustCreate(t, honest, "/", "Site", "F")
	settle(t, honest, bad)
	badVer := mustSet(t, bad, "/F", "x", Int(1))
	settle(t, honest, bad)
	if honest.FarFutureVersions() == 0 {
		t.Fatal("the far-future version was not counted")
	}
	now := honest.Store.clock.Now()
	other := mustSet(t, honest, "/F", "y", Int(2))
	if d := other.Timestamp.Time().Sub(now.Time()); d > time.Minute {
		t.Fatalf("a write of another field is stamped %v ahead of this node's clock", d)
	}
	over := mustSet(t, honest, "/F", "x", Int(3))
	if !badVer.Timestamp.Less(over.Timestamp) {
		t.Fatalf("the overwrite %v does not follow the far-future version %v", over, badVer)
	}
	if f := fieldOf(t, honest, "/F", "x"); f.Value.Int != 3 {
		t.Fatalf("x = %v after the overwrite, want 3", f.Value)
	}
	// A reopen reloads the far-future version and still does not follow it.
	honest.Close()
	again := openMem(t, "a", b, honest.clock)
	if got := again.Clock().Now(); got.Time().Sub(honest.clock.Now()) > time.Minute {
		t.Fatalf("after a reopen the clock is at %v", got.Time())
	}
}

// TestClockSkewRefusesWrites: a node told that its clock disagrees with
// the cluster refuses writes with ErrClockSkew, and takes them again once
// cleared.
func TestClockSkewRefusesWrites(t *testing.T) {
	a := openMem(t, "a", nil, nil)
	mustCreate(t, a, "/", "Site", "F")
	a.SetClockSkew("this node's clock is 2h0m0s ahead of the median of 3 peers")
	if _, err := a.Set(ctx, "/F", "x", Int(1)); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("write with a skewed clock: %v, want ErrClockSkew", err)
	}
	a.SetClockSkew("")
	mustSet(t, a, "/F", "x", Int(1))
}
