// Package mailbox is a queue between one producer that must never block
// and one consumer that reads a channel: it holds up to a limit of items,
// and memory in proportion to what waits, not to the limit.
//
// A buffered channel of the limit's size does the same with one make, but
// allocates the whole buffer at once: the change feed's 65,536 changes
// took 3 MiB per node, counted as live heap by Go's collector (which
// then lets as much garbage pile up) and scanned at every cycle, for a
// subscriber that keeps up and so never holds more than a few.
package mailbox

import (
	"sync"
	"sync/atomic"
)

// chanCap bounds the channel the consumer reads: the pump keeps it
// filled from the queue, so a consumer that reads in a loop rarely waits
// on the pump.
const chanCap = 64

// keepCap is the largest drained queue kept for the next burst; a larger
// one is dropped so that a burst's memory goes back.
const keepCap = 1024

// Mailbox queues items for C. Offer is called by one producer at a time
// (the caller serialises it), C is read by the consumer; a goroutine of
// the mailbox moves items from the queue to C in order.
type Mailbox[T any] struct {
	ch    chan T
	limit int
	wake  chan struct{}
	done  chan struct{}
	gone  chan struct{} // closed when the pump closed ch
	once  sync.Once

	mu     sync.Mutex
	queue  []T
	unsent atomic.Int64 // offered and not yet in ch
}

// New returns a mailbox of at most limit items (at least 1) and starts
// its goroutine, which Close stops.
func New[T any](limit int) *Mailbox[T] {
	limit = max(limit, 1)
	m := &Mailbox[T]{
		ch:    make(chan T, min(limit, chanCap)),
		limit: limit,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		gone:  make(chan struct{}),
	}
	go m.pump()
	return m
}

// Closed returns a mailbox whose C is closed at once (for a subscription
// to something already closed); it has no goroutine.
func Closed[T any]() *Mailbox[T] {
	m := &Mailbox[T]{ch: make(chan T), done: make(chan struct{}), gone: make(chan struct{})}
	m.once.Do(func() { close(m.done) })
	close(m.ch)
	close(m.gone)
	return m
}

// C delivers the items in the order offered; it is closed once Close
// has been called (items still waiting are dropped).
func (m *Mailbox[T]) C() <-chan T { return m.ch }

// Offer queues v unless limit items wait already (then it returns false
// and drops v). It never blocks. Calls must not overlap.
func (m *Mailbox[T]) Offer(v T) bool {
	// One item may be counted twice for a moment (in ch and not yet
	// uncounted), so the mailbox may refuse at limit-1: never above it.
	if int(m.unsent.Load())+len(m.ch) >= m.limit {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
	}
	m.unsent.Add(1)
	m.mu.Lock()
	m.queue = append(m.queue, v)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return true
}

// Len is how many items wait, in the queue and in C.
func (m *Mailbox[T]) Len() int { return int(m.unsent.Load()) + len(m.ch) }

// Close stops the mailbox's goroutine and closes C; it returns once C is
// closed. Safe to call twice and from the consumer.
func (m *Mailbox[T]) Close() {
	m.once.Do(func() { close(m.done) })
	<-m.gone
}

// Stop is Close without waiting: for a caller holding a lock the
// consumer may need. C is closed soon after.
func (m *Mailbox[T]) Stop() { m.once.Do(func() { close(m.done) }) }

func (m *Mailbox[T]) pump() {
	defer close(m.gone)
	defer close(m.ch)
	var spare []T // the drained queue, reused unless a burst grew it
	var zero T
	for {
		select {
		case <-m.done:
			return
		case <-m.wake:
		}
		for {
			m.mu.Lock()
			batch := m.queue
			if len(batch) == 0 {
				m.mu.Unlock()
				break
			}
			m.queue = spare
			m.mu.Unlock()
			for i, v := range batch {
				select {
				case m.ch <- v:
					m.unsent.Add(-1)
				case <-m.done:
					return
				}
				batch[i] = zero // drop references to what was delivered
			}
			spare = nil
			if cap(batch) <= keepCap {
				spare = batch[:0]
			}
		}
	}
}
