package entity

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-sync/starling/internal/peerlog"
)

// DefaultMaxClockOffset is how far ahead of a node's physical clock a
// timestamp seen in the data may move its hybrid clock, and how far a
// node's clock may be from the cluster's before it refuses writes
// (Options.MaxClockOffset). Five minutes: Starling needs no tight clocks
// for correctness (the hybrid clock orders what a node has seen; only
// concurrent writes are ordered by time), so the bound is there against
// broken clocks (a dead RTC battery, a wrong year or time zone), not
// against drift. NTP-synced hosts agree within milliseconds, and a quartz
// clock at 20 ppm, cut off from NTP for three months, is about 2.5
// minutes off: such a site must still write when it comes back.
// CockroachDB's 500 ms serves its linearizable reads, which Starling
// does not offer.
const DefaultMaxClockOffset = 5 * time.Minute

// farFuture counts the versions seen in the data whose timestamp lies
// beyond the clock's bound, and warns about them at most once a minute
// per writer.
type farFuture struct {
	n      atomic.Uint64
	mu     sync.Mutex
	warned peerlog.Limiter // by writer (mu)
}

// observe merges a timestamp the data holds into the clock; one the
// clock refuses (too far ahead) is counted and logged (noteFar).
func (s *Store) observe(ts Timestamp, writer string) {
	if ts.IsZero() || s.clock.Observe(ts) {
		return
	}
	s.noteFar(ts, writer)
}

// noteFar counts a version stamped beyond the clock's bound and logs it,
// naming the writer, once a minute per writer.
func (s *Store) noteFar(ts Timestamp, writer string) {
	s.far.n.Add(1)
	s.far.mu.Lock()
	held, warn := s.far.warned.Allow(writer, time.Now())
	s.far.mu.Unlock()
	if warn {
		s.log.Warn("a version is stamped far ahead of this node's clock: kept as written, but this node's clock does not follow it; check the writer's clock",
			"writer", writer, "stamped", ts.Time().Format(time.RFC3339), "ahead", ts.Time().Sub(s.opts.Now()).Round(time.Second),
			"max_offset", s.opts.MaxClockOffset, "more_since_last_line", held)
	}
}

// FarFutureVersions is how many versions this node has seen stamped
// beyond its clock's bound (Options.MaxClockOffset) since it opened.
func (s *Store) FarFutureVersions() uint64 { return s.far.n.Load() }

// SetClockSkew makes every write fail with ErrClockSkew and the reason
// given (this node's clock disagrees with the cluster's), or, with an
// empty reason, take writes again.
func (s *Store) SetClockSkew(reason string) {
	if reason == "" {
		s.skew.Store(nil)
		return
	}
	err := fmt.Errorf("%w: %s; writes are refused until the clock is fixed (NTP, the time zone, the RTC), so that they do not carry a wrong time to every node", ErrClockSkew, reason)
	s.skew.Store(&err)
}

// clockErr is the error of SetClockSkew, or nil.
func (s *Store) clockErr() error {
	if p := s.skew.Load(); p != nil {
		return *p
	}
	return nil
}

// maxStamp is the greatest timestamp of a record's writes.
func maxStamp(ws []write) Timestamp {
	var m Timestamp
	for _, w := range ws {
		if m.Less(w.ts) {
			m = w.ts
		}
	}
	return m
}

// PhysicalNow is this node's physical clock (Options.Now, with a node's
// --clock-offset), which node reports carry for the clock check.
func (s *Store) PhysicalNow() time.Time { return s.opts.Now() }

// MaxClockOffset is the clock's bound (negative: none).
func (s *Store) MaxClockOffset() time.Duration { return s.opts.MaxClockOffset }
