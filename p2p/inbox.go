package p2p

import (
	"context"
	"sync"
)

// inbox is the replication receive queue, fair between peers: one queue
// per sender, taken in turn. A peer that floods fills its own share
// (inboxPeerMax messages, inboxPeerBytes bytes) and its next messages are
// dropped, while the others' keep their place: before, one queue in
// arrival order made honest writes wait behind a flood (measured by the
// chaos adversary: visible after 0.2 s quiet, up to 8.6 s flooded). When
// the whole inbox is full (inboxSize), senders wait, as before.
type inbox struct {
	mu      sync.Mutex
	queues  map[string]*peerQueue
	ring    []string // senders with messages, in turn order
	next    int      // ring index of the next sender to take from
	total   int
	ready   chan struct{} // a message was added (cap 1)
	room    chan struct{} // a message was taken (cap 1)
	dropped map[string]int
}

type peerQueue struct {
	msgs  []inbound
	bytes int
}

const (
	// inboxPeerMax and inboxPeerBytes are one sender's share.
	inboxPeerMax   = inboxSize / 2
	inboxPeerBytes = 16 << 20
)

func newInbox() *inbox {
	return &inbox{queues: make(map[string]*peerQueue), ready: make(chan struct{}, 1), room: make(chan struct{}, 1), dropped: make(map[string]int)}
}

// push queues m. It returns false at once, dropping m, when the sender's
// share is full; it waits while the whole inbox is full, until stop or
// done closes (false).
func (q *inbox) push(m inbound, stop, done <-chan struct{}) bool {
	for {
		q.mu.Lock()
		pq := q.queues[m.from]
		if pq != nil && (len(pq.msgs) >= inboxPeerMax || pq.bytes+len(m.data) > inboxPeerBytes) {
			q.dropped[m.from]++
			q.mu.Unlock()
			return false
		}
		if q.total < inboxSize {
			if pq == nil {
				pq = &peerQueue{}
				q.queues[m.from] = pq
				q.ring = append(q.ring, m.from)
			}
			pq.msgs = append(pq.msgs, m)
			pq.bytes += len(m.data)
			q.total++
			q.mu.Unlock()
			signal(q.ready)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-stop:
			return false
		case <-done:
			return false
		}
	}
}

// pop takes the next message, senders in turn; it waits for one until
// ctx ends or stop closes.
func (q *inbox) pop(ctx context.Context, stop <-chan struct{}) (inbound, error) {
	for {
		q.mu.Lock()
		if len(q.ring) > 0 {
			if q.next >= len(q.ring) {
				q.next = 0
			}
			from := q.ring[q.next]
			pq := q.queues[from]
			m := pq.msgs[0]
			pq.msgs[0] = inbound{}
			pq.msgs = pq.msgs[1:]
			pq.bytes -= len(m.data)
			q.total--
			if len(pq.msgs) == 0 {
				delete(q.queues, from)
				q.ring = append(q.ring[:q.next], q.ring[q.next+1:]...)
			} else {
				q.next++
			}
			q.mu.Unlock()
			signal(q.room)
			return m, nil
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return inbound{}, ctx.Err()
		case <-stop:
			return inbound{}, ErrClosed
		}
	}
}

// takeDropped returns the messages dropped per sender since the last
// call.
func (q *inbox) takeDropped() map[string]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.dropped) == 0 {
		return nil
	}
	d := q.dropped
	q.dropped = make(map[string]int)
	return d
}

// signal wakes one waiter on c (cap 1) without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
