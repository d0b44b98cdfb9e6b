package crdt

import (
	"context"
	"sync"
	"sync/atomic"

	ds "github.com/ipfs/go-datastore"

	"github.com/starling-sync/starling/internal/kv"
	"github.com/starling-sync/starling/internal/mailbox"
)

// maxPendingChanges bounds changes waiting for the dispatcher. Hooks must
// not block (they run under go-ds-crdt's merge lock), so past this bound
// changes are dropped and every subscriber is told it overflowed.
const maxPendingChanges = 1 << 20

// Change is one entry of the change feed: Key now has Value, or was
// deleted. Local is true for writes made through this store. It is
// entity.Change too (both alias kv.Change).
type Change = kv.Change

// Feed is a subscription to the change feed; see Store.Subscribe. It is
// entity.Feed too (both alias kv.Feed).
type Feed = kv.Feed

// subscription is a change-feed subscriber. Its buffer is a mailbox:
// it holds what the subscriber has not read yet, up to the size asked
// for, rather than allocating that size up front.
type subscription struct {
	prefix   ds.Key
	box      *mailbox.Mailbox[Change]
	overflow atomic.Bool
	feed     *feed
}

var _ Feed = (*subscription)(nil)

// C delivers changes in the order they were applied on this node. It is
// closed by Close and when the store closes.
func (sub *subscription) C() <-chan Change { return sub.box.C() }

// Overflowed reports, and clears, whether changes were dropped because the
// subscriber fell behind. The subscriber should then read its state again.
func (sub *subscription) Overflowed() bool { return sub.overflow.Swap(false) }

// Close ends the subscription; C is closed when it returns. Safe to call
// twice and after the store closed.
func (sub *subscription) Close() {
	sub.feed.remove(sub)
	sub.box.Close()
}

// feed collects changes from go-ds-crdt's hooks and the committer, and
// fans them out to subscribers from one dispatcher goroutine.
type feed struct {
	mu      sync.Mutex
	subs    map[*subscription]struct{}
	pending []Change
	closed  bool
	notify  chan struct{}
}

func newFeed() *feed {
	return &feed{subs: make(map[*subscription]struct{}), notify: make(chan struct{}, 1)}
}

func (f *feed) subscribe(prefix ds.Key, buf int) *subscription {
	if buf <= 0 {
		buf = 1024
	}
	sub := &subscription{prefix: prefix, feed: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		sub.box = mailbox.Closed[Change]()
		return sub
	}
	sub.box = mailbox.New[Change](buf)
	f.subs[sub] = struct{}{}
	return sub
}

func (f *feed) remove(sub *subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, sub)
}

// push queues a change; it never blocks.
func (f *feed) push(c Change) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	if len(f.pending) >= maxPendingChanges {
		for sub := range f.subs {
			sub.overflow.Store(true)
		}
	} else {
		f.pending = append(f.pending, c)
	}
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

// run dispatches changes until ctx ends. resolve is called for deletions,
// outside the lock: go-ds-crdt reports the removal of one version of a
// key, which may still hold another value.
func (f *feed) run(ctx context.Context, resolve func(Change) Change) {
	for {
		select {
		case <-ctx.Done():
			f.close()
			return
		case <-f.notify:
		}
		for {
			f.mu.Lock()
			batch := f.pending
			f.pending = nil
			f.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, c := range batch {
				if c.Deleted {
					c = resolve(c)
				}
				f.deliver(c)
			}
		}
	}
}

func (f *feed) deliver(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		if !(sub.prefix.String() == "/" || sub.prefix.Equal(c.Key) || sub.prefix.IsAncestorOf(c.Key)) {
			continue
		}
		if !sub.box.Offer(c) {
			sub.overflow.Store(true)
		}
	}
}

// close ends every subscription and waits for their goroutines.
func (f *feed) close() {
	f.mu.Lock()
	f.closed = true
	subs := f.subs
	f.subs = make(map[*subscription]struct{})
	f.mu.Unlock()
	for sub := range subs {
		sub.box.Close()
	}
}

// reloadKey is the change that wakes subscribers after reload.
var reloadKey = ds.NewKey("/_starling/reload")

// reload tells every subscriber that the store's content was replaced
// without changes (a state transfer): each sees Overflowed() true, and a
// change with key /_starling/reload wakes subscribers of "/".
func (f *feed) reload() {
	f.mu.Lock()
	for sub := range f.subs {
		sub.overflow.Store(true)
	}
	f.mu.Unlock()
	f.push(Change{Key: reloadKey})
}
