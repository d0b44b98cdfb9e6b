package p2p

import (
	"hash/maphash"
	"sync"
	"time"
)

// lagMeter measures how long this node's own messages take through its
// gossipsub pipeline (Topic.Lag): sent stamps a message at Publish,
// arrived finds it where pubsub delivers it to subscribers.
type lagMeter struct {
	mu      sync.Mutex
	pending map[uint64]time.Time // message hash -> when it was published
	samples [lagSamples]lagSample
	next    int
}

type lagSample struct {
	at  time.Time
	lag time.Duration
}

const (
	// lagSamples is how many measurements are kept (the last ones).
	lagSamples = 32
	// lagPending bounds the messages awaiting their arrival (a message
	// that never arrives, dropped by a full queue, is forgotten).
	lagPending = 64
)

var lagSeed = maphash.MakeSeed()

func (l *lagMeter) sent(data []byte, now time.Time) {
	h := maphash.Bytes(lagSeed, data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = make(map[uint64]time.Time)
	}
	if len(l.pending) >= lagPending {
		clear(l.pending)
	}
	l.pending[h] = now
}

func (l *lagMeter) arrived(data []byte, now time.Time) {
	h := maphash.Bytes(lagSeed, data)
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.pending[h]
	if !ok {
		return
	}
	delete(l.pending, h)
	l.samples[l.next] = lagSample{at: now, lag: now.Sub(at)}
	l.next = (l.next + 1) % lagSamples
}

// max is the longest lag measured within the last period within.
func (l *lagMeter) max(within time.Duration, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m time.Duration
	for _, s := range l.samples {
		if !s.at.IsZero() && now.Sub(s.at) <= within {
			m = max(m, s.lag)
		}
	}
	return m
}
