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
// A bounded clock (NewBoundedClock) never adopts a timestamp more than
// its maximum offset ahead of its physical clock: one peer with a clock
// years ahead would otherwise move every node's clock, for good. A write
// that replaces such a far-future version is still stamped after it
// (NowAfter), from a second counter that does not move the clock; the
// logical counter's top bit tells the two kinds of stamps apart, so no
// stamp is ever given twice.
type Clock struct {
	now  func() time.Time
	max  time.Duration // < 0: unbounded
	mu   sync.Mutex
	last Timestamp // every stamp given or adopted; Logical < farBit
	far  Timestamp // the last stamp given after a far-future version
}

// farBit is set in the logical counter of the stamps NowAfter gives after
// a far-future version, and only in those.
const farBit = 1 << 31

// NewClock returns an unbounded clock reading physical time from now
// (time.Now when nil). Tests inject a fake.
func NewClock(now func() time.Time) *Clock { return NewBoundedClock(now, -1) }

// NewBoundedClock returns a clock that adopts no timestamp more than max
// ahead of its physical clock (negative: no bound). A node adds its
// --clock-offset to now.
func NewBoundedClock(now func() time.Time, max time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, max: max}
}

// Now returns a timestamp greater than every timestamp this clock has
// returned (but those of NowAfter past a far-future version) or adopted.
func (c *Clock) Now() Timestamp {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nextLocked(pt)
}

func (c *Clock) nextLocked(pt int64) Timestamp {
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt}
	} else {
		c.last.Logical++
		if c.last.Logical >= farBit { // counter full: borrow a nanosecond
			c.last = Timestamp{Wall: c.last.Wall + 1}
		}
	}
	return c.last
}

// Observe merges a timestamp received from elsewhere. It reports false,
// changing nothing, when t is more than the bound ahead of the physical
// clock.
func (c *Clock) Observe(t Timestamp) bool {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.observeLocked(t, pt)
}

func (c *Clock) observeLocked(t Timestamp, pt int64) bool {
	if c.isFar(t, pt) {
		return false
	}
	if c.last.Less(t) {
		c.last = t
		if t.Logical >= farBit { // keep the far stamps' counter space apart
			c.last = Timestamp{Wall: t.Wall + 1}
		}
	}
	return true
}

// isFar reports whether t is beyond the bound, at physical time pt.
func (c *Clock) isFar(t Timestamp, pt int64) bool {
	return c.max >= 0 && t.Wall > pt && t.Wall-pt > int64(c.max)
}

// IsFar reports whether t is more than the bound ahead of the physical
// clock now.
func (c *Clock) IsFar(t Timestamp) bool { return c.isFar(t, c.now().UnixNano()) }

// NowAfter returns a new timestamp greater than t, for a write that
// replaces a version stamped t. Within the bound it is Observe then Now.
// Past it, the stamp follows t (and every earlier such stamp) without
// moving the clock: the write wins over the version it replaces, and
// this node's other writes stay near its physical time. far reports the
// second case.
func (c *Clock) NowAfter(t Timestamp) (ts Timestamp, far bool) {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.observeLocked(t, pt) {
		return c.nextLocked(pt), false
	}
	base := t
	if base.Less(c.far) {
		base = c.far
	}
	switch {
	case base.Logical < farBit:
		c.far = Timestamp{Wall: base.Wall, Logical: farBit}
	case base.Logical == 1<<32-1:
		c.far = Timestamp{Wall: base.Wall + 1, Logical: farBit}
	default:
		c.far = Timestamp{Wall: base.Wall, Logical: base.Logical + 1}
	}
	return c.far, true
}

// Last returns the greatest timestamp returned (but by NowAfter past a
// far-future version) or adopted so far.
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
