// Package peerlog rate-limits log lines per peer: a peer that repeats
// what gets it logged (malformed messages, bad reports) must not fill the
// log, nor hide another peer's lines.
package peerlog

import "time"

// Every is how often one peer's lines of one kind pass.
const Every = time.Minute

// Limiter lets one event per peer through every Every and counts the ones
// it holds back. Not safe for concurrent use: one goroutine, or its
// owner's lock.
type Limiter struct {
	last map[string]time.Time
	held map[string]int
}

// Allow reports whether an event of peer at now may be logged, and how
// many were held back since the last one that was.
func (l *Limiter) Allow(peer string, now time.Time) (held int, ok bool) {
	if l.last == nil {
		l.last, l.held = make(map[string]time.Time), make(map[string]int)
	}
	if t, seen := l.last[peer]; seen && now.Sub(t) < Every {
		l.held[peer]++
		return 0, false
	}
	if len(l.last) >= 1024 { // peers come and go: forget them all now and then
		clear(l.last)
		clear(l.held)
	}
	held = l.held[peer]
	l.last[peer] = now
	delete(l.held, peer)
	return held, true
}
