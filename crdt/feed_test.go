package crdt

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/starling-sync/starling/internal/testutil"
)

// runFeed starts a feed's dispatcher; the returned function stops it and
// waits for it and the subscriptions' goroutines.
func runFeed(t *testing.T) (*feed, func()) {
	t.Helper()
	f := newFeed()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.run(ctx, func(c Change) Change { return c })
	}()
	return f, func() { cancel(); <-done }
}

func (sub *subscription) waiting() int { return sub.box.Len() }

func feedKey(i int) ds.Key { return ds.NewKey(fmt.Sprintf("/k/%05d", i)) }

// TestFeedBacklogUpToLimit: a subscriber that reads nothing gets its
// buffer's worth of changes later, all of them and in order; one more
// change marks it overflowed instead of blocking the feed.
func TestFeedBacklogUpToLimit(t *testing.T) {
	f, stop := runFeed(t)
	defer stop()
	const limit = 1000 // well above the channel's capacity
	sub := f.subscribe(ds.NewKey("/"), limit)
	for i := range limit {
		f.push(Change{Key: feedKey(i)})
	}
	testutil.Eventually(t, 10*time.Second, "every change queued", func() bool { return sub.waiting() == limit })
	if sub.Overflowed() {
		t.Fatal("overflowed within its limit")
	}
	f.push(Change{Key: feedKey(limit)})
	testutil.Eventually(t, 10*time.Second, "overflow past the limit", func() bool { return sub.overflow.Load() })
	for i := range limit {
		select {
		case c := <-sub.C():
			if !c.Key.Equal(feedKey(i)) {
				t.Fatalf("change %d is %s, want %s", i, c.Key, feedKey(i))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("change %d not delivered", i)
		}
	}
	if !sub.Overflowed() {
		t.Fatal("Overflowed() = false after a change past the limit was dropped")
	}
	sub.Close()
	if _, ok := <-sub.C(); ok {
		t.Fatal("C() delivers after Close returned")
	}
	sub.Close() // twice is fine
}

// TestFeedSubscribeAllocatesLittle: a subscription's buffer size is a
// limit, not an allocation (the entity store asks for 65,536 changes).
func TestFeedSubscribeAllocatesLittle(t *testing.T) {
	f, stop := runFeed(t)
	defer stop()
	const n = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	subs := make([]*subscription, n)
	for i := range subs {
		subs[i] = f.subscribe(ds.NewKey("/"), 1<<16)
	}
	runtime.ReadMemStats(&after)
	// A preallocated buffer would be 50 x 65,536 x 48 bytes = 150 MiB.
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("%d subscriptions of 65,536 changes allocated %d bytes", n, got)
	}
	for _, s := range subs {
		s.Close()
	}
}

// TestFeedCloseEndsSubscriptions: the feed's close closes every
// subscriber's channel and leaves no goroutine behind.
func TestFeedCloseEndsSubscriptions(t *testing.T) {
	before := runtime.NumGoroutine()
	f, stop := runFeed(t)
	subs := []*subscription{f.subscribe(ds.NewKey("/"), 10), f.subscribe(ds.NewKey("/a"), 10)}
	f.push(Change{Key: ds.NewKey("/a/x")})
	stop()
	for _, s := range subs {
		for range s.C() {
		}
	}
	late := f.subscribe(ds.NewKey("/"), 10)
	if _, ok := <-late.C(); ok {
		t.Fatal("a subscription of a closed feed delivers")
	}
	late.Close()
	testutil.Eventually(t, 5*time.Second, "goroutines back to the start count", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
