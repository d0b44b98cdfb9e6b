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
type Clock struct {
	now  func() time.Time
	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading physical time from now (time.Now when
// nil). Tests inject a fake; a node adds its --clock-offset here.
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a timestamp greater than every timestamp this clock has
// returned or observed.
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

// Observe merges a timestamp received from elsewhere.
func (c *Clock) Observe(t Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Less(t) {
		c.last = t
	}
}

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
