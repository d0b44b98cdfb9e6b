package entity

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: physical time in
// nanoseconds since the Unix epoch, and a logical counter that orders
// events within the same physical reading. Timestamps compare by Wall,
// then Logical.
type Timestamp struct {
	Wall    int64  // physical component, ns since the Unix epoch
	Logical uint32 // logical counter
}

// Compare returns -1, 0 or +1.
func (t Timestamp) Compare(o Timestamp) int {
	switch {
	case t.Wall < o.Wall:
		return -1
	case t.Wall > o.Wall:
		return 1
	case t.Logical < o.Logical:
		return -1
	case t.Logical > o.Logical:
		return 1
	}
	return 0
}

// Less reports whether t orders before o.
func (t Timestamp) Less(o Timestamp) bool { return t.Compare(o) < 0 }

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t.Wall == 0 && t.Logical == 0 }

// Time returns the physical component as a time.Time.
func (t Timestamp) Time() time.Time { return time.Unix(0, t.Wall).UTC() }

// timestampLen is the length of an encoded timestamp: 16 hex digits of
// Wall and 8 of Logical, so that byte order is time order.
const timestampLen = 24

// String encodes t as fixed-width hex; the encoding sorts like Compare.
func (t Timestamp) String() string {
	var b [timestampLen]byte
	const hex = "0123456789abcdef"
	w := uint64(t.Wall)
	for i := 15; i >= 0; i-- {
		b[i] = hex[w&0xf]
		w >>= 4
	}
	l := t.Logical
	for i := 23; i >= 16; i-- {
		b[i] = hex[l&0xf]
		l >>= 4
	}
	return string(b[:])
}

// ErrBadTimestamp means a timestamp could not be decoded.
var ErrBadTimestamp = errors.New("entity: bad timestamp")

// ParseTimestamp decodes String's encoding.
func ParseTimestamp(s string) (Timestamp, error) {
	if len(s) != timestampLen {
		return Timestamp{}, fmt.Errorf("%w: %q is %d characters, want %d", ErrBadTimestamp, s, len(s), timestampLen)
	}
	w, err := strconv.ParseUint(s[:16], 16, 64)
	if err != nil || w > 1<<63-1 {
		return Timestamp{}, fmt.Errorf("%w: wall part of %q", ErrBadTimestamp, s)
	}
	l, err := strconv.ParseUint(s[16:], 16, 32)
	if err != nil {
		return Timestamp{}, fmt.Errorf("%w: logical part of %q", ErrBadTimestamp, s)
	}
	for _, c := range s { // ParseUint accepts upper case; the encoding does not
		if c >= 'A' && c <= 'F' {
			return Timestamp{}, fmt.Errorf("%w: %q is not lower-case hex", ErrBadTimestamp, s)
		}
	}
	return Timestamp{Wall: int64(w), Logical: uint32(l)}, nil
}

// Clock is a hybrid logical clock (Kulkarni et al., 2014). Now stamps a
// local event; Observe merges a timestamp seen from elsewhere, so that
// every later Now orders after it even when this node's physical clock is
// behind. Safe for concurrent use.
//
// A clock with a maximum drift (NewBoundedClock) does not adopt a
// timestamp further ahead of its physical clock than that: one peer with a
// clock years ahead would otherwise drag every later write of every node
// years ahead, for good (the clock never goes back, and restarts reload
// the greatest stored timestamp).
type Clock struct {
	now      func() time.Time
	maxDrift time.Duration // 0: unbounded
	mu       sync.Mutex
	last     Timestamp
}

// NewClock returns a clock reading physical time from now (time.Now when
// nil), adopting every timestamp it observes however far ahead. Tests
// inject a fake; a node adds its --clock-offset here.
func NewClock(now func() time.Time) *Clock { return NewBoundedClock(now, 0) }

// NewBoundedClock is NewClock with a maximum forward drift: Observe
// ignores a timestamp more than maxDrift ahead of the physical clock.
// maxDrift <= 0 means no bound.
func NewBoundedClock(now func() time.Time, maxDrift time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	if maxDrift < 0 {
		maxDrift = 0
	}
	return &Clock{now: now, maxDrift: maxDrift}
}

// Now returns a timestamp greater than every timestamp this clock has
// returned or adopted.
func (c *Clock) Now() Timestamp {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt}
	} else {
		c.last.Logical++
		if c.last.Logical == 0 { // counter wrapped: borrow a nanosecond
			c.last.Wall++
		}
	}
	return c.last
}

// Observe merges a timestamp received from elsewhere. It reports false,
// and leaves the clock as it was, when t is more than the maximum drift
// ahead of the physical clock; the caller decides what to say about it.
// A timestamp not adopted is still a valid timestamp: the value it stamps
// merges by last-writer-wins as written.
func (c *Clock) Observe(t Timestamp) bool {
	if c.tooFar(t) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Less(t) {
		c.last = t
	}
	return true
}

// tooFar reports whether t is more than the maximum drift ahead of the
// physical clock.
func (c *Clock) tooFar(t Timestamp) bool {
	if c.maxDrift <= 0 {
		return false
	}
	limit := c.now().UnixNano() + int64(c.maxDrift)
	return t.Wall > limit && limit > 0 // limit <= 0: overflowed, no bound
}

// NowAfter returns Now, or, when t is not before Now (t was too far ahead
// to be adopted), the timestamp just after t, without moving the clock.
// A write that replaces a far-future value uses it so that it still wins
// over the value it replaces; the rest of the node's writes stay near its
// physical clock.
func (c *Clock) NowAfter(t Timestamp) Timestamp {
	now := c.Now()
	if t.Less(now) {
		return now
	}
	t.Logical++
	if t.Logical == 0 {
		t.Wall++
	}
	return t
}

// MaxDrift returns the bound given to NewBoundedClock (0: none).
func (c *Clock) MaxDrift() time.Duration { return c.maxDrift }

// Last returns the greatest timestamp returned or observed so far.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// MarshalText encodes t as String does.
func (t Timestamp) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText decodes String's form.
func (t *Timestamp) UnmarshalText(b []byte) error {
	v, err := ParseTimestamp(string(b))
	*t = v
	return err
}
