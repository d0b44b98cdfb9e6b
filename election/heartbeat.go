package election

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Heartbeat is what a node gossips every Interval: the candidates it
// hosts (a full list: a candidate missing from the next heartbeat has
// left) and, per group, its view of the leadership (so that every node
// agrees on terms, also nodes that joined late).
type Heartbeat struct {
	// NodeID is the sender's node ID.
	NodeID string
	// Incarnation tells the sender's runs apart: its start time in Unix
	// nanoseconds, which also tells which nodes started together (see
	// NewRule); Seq counts heartbeats within one incarnation. A receiver
	// drops a heartbeat older than the last it accepted.
	Incarnation uint64
	Seq         uint64
	// Period is when the sender's next heartbeat is due: Interval while
	// one of its candidates leads or stands next in a group (or it is
	// starting), its idle period otherwise (Config.IdlePeriod), plus an
	// allowance for its own recent lateness (Rule.lateness). Receivers
	// time the sender out after Timeout/Interval periods of silence.
	// Zero (a version 1 sender): Interval. Sent in milliseconds.
	Period time.Duration
	// Leaving is the goodbye of a node that stops: its candidates are gone
	// at once, without waiting for Timeout.
	Leaving bool
	// Warming: the sender has not yet listened for Warmup since it
	// started. Nodes that have wait for it before they decide, so that a
	// cluster started all at once elects from the full picture.
	Warming    bool
	Candidates []CandidateState
	Views      []View
}

// CandidateState is one candidate in a heartbeat.
type CandidateState struct {
	Group string
	ID    string
	Kind  Kind
	Mode  Mode
	// Available is false while the sender is still warming up, and while
	// the candidate is settling.
	Available bool
	Healthy   bool
	// Settling: the candidate has just joined and will be available once
	// its node has heard from every other node. A group with no leader
	// waits for a lower settling candidate instead of electing a higher
	// one for a moment.
	Settling bool
}

// View is a sender's view of one group's leadership.
type View struct {
	Group      string
	Leader     string // candidate ID, "" for none
	LeaderPeer string // peer ID of the leader's host
	Term       uint64
}

// Wire format, version 2 (all integers unsigned varints, strings a
// varint length then the bytes):
//
//	version(=2) flags(bit0 leaving, bit1 warming) incarnation seq period(ms) nodeID
//	nCandidates { group id kind mode flags(bit0 available, bit1 healthy, bit2 settling) }
//	nViews      { group leader leaderPeer term }
const (
	wireVersion = 2
	// wireVersion1 is version 2 without the period; still understood.
	wireVersion1 = 1
	// maxPeriod bounds a received Period: a garbled or hostile value
	// cannot keep a silent node alive for long.
	maxPeriod = 10 * time.Minute
	// MaxHeartbeatSize bounds an encoded heartbeat: thousands of
	// candidates fit, and a peer cannot make a node allocate much.
	MaxHeartbeatSize = 256 << 10
	maxWireString    = 256
	maxWireItems     = 4096
)

// Encode returns the wire form of h. It does not validate h: Decode does
// on the receiving side.
func (h *Heartbeat) Encode() []byte {
	b := make([]byte, 0, 64+32*len(h.Candidates)+96*len(h.Views))
	b = append(b, wireVersion)
	var flags byte
	if h.Leaving {
		flags |= 1
	}
	if h.Warming {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, h.Incarnation)
	b = binary.AppendUvarint(b, h.Seq)
	b = binary.AppendUvarint(b, uint64(h.Period.Milliseconds()))
	b = appendString(b, h.NodeID)
	b = binary.AppendUvarint(b, uint64(len(h.Candidates)))
	for _, c := range h.Candidates {
		b = appendString(b, c.Group)
		b = appendString(b, c.ID)
		var cf byte
		if c.Available {
			cf |= 1
		}
		if c.Healthy {
			cf |= 2
		}
		if c.Settling {
			cf |= 4
		}
		b = append(b, byte(c.Kind), byte(c.Mode), cf)
	}
	b = binary.AppendUvarint(b, uint64(len(h.Views)))
	for _, v := range h.Views {
		b = appendString(b, v.Group)
		b = appendString(b, v.Leader)
		b = appendString(b, v.LeaderPeer)
		b = binary.AppendUvarint(b, v.Term)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeHeartbeat parses and validates a heartbeat. Every error wraps
// ErrBadHeartbeat; it never panics, whatever the input.
func DecodeHeartbeat(data []byte) (*Heartbeat, error) {
	if len(data) > MaxHeartbeatSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadHeartbeat, len(data), MaxHeartbeatSize)
	}
	d := decoder{b: data}
	v := d.byte()
	if d.err == nil && v != wireVersion && v != wireVersion1 {
		return nil, fmt.Errorf("%w: version %d, this node understands %d and %d (upgrade it)", ErrBadHeartbeat, v, wireVersion1, wireVersion)
	}
	h := &Heartbeat{}
	flags := d.byte()
	if flags&^3 != 0 {
		d.fail("unknown flags %#x", flags)
	}
	h.Leaving, h.Warming = flags&1 != 0, flags&2 != 0
	h.Incarnation = d.uvarint()
	h.Seq = d.uvarint()
	if v == wireVersion {
		ms := d.uvarint()
		if ms > uint64(maxPeriod.Milliseconds()) {
			d.fail("period %d ms above the limit of %s", ms, maxPeriod)
		}
		h.Period = time.Duration(ms) * time.Millisecond
	}
	h.NodeID = d.string()
	n := d.count()
	seen := make(map[[2]string]bool)
	for i := 0; i < n && d.err == nil; i++ {
		c := CandidateState{Group: d.string(), ID: d.string()}
		k, m, cf := d.byte(), d.byte(), d.byte()
		if d.err != nil {
			break
		}
		if k > byte(KindEndpoint) || m > byte(ModeAllWarm) || cf&^7 != 0 {
			d.fail("candidate %d: bad kind %d, mode %d or flags %#x", i, k, m, cf)
			break
		}
		c.Kind, c.Mode = Kind(k), Mode(m)
		c.Available, c.Healthy, c.Settling = cf&1 != 0, cf&2 != 0, cf&4 != 0
		key := [2]string{c.Group, c.ID}
		if seen[key] {
			d.fail("candidate %s/%s listed twice", c.Group, c.ID)
			break
		}
		seen[key] = true
		if err := CheckGroupName(c.Group); err != nil {
			d.fail("candidate %d: %v", i, err)
		} else if err := checkCandidateID(c.ID); err != nil {
			d.fail("candidate %d: %v", i, err)
		}
		h.Candidates = append(h.Candidates, c)
	}
	n = d.count()
	groups := make(map[string]bool)
	for i := 0; i < n && d.err == nil; i++ {
		v := View{Group: d.string(), Leader: d.string(), LeaderPeer: d.string(), Term: d.uvarint()}
		if d.err != nil {
			break
		}
		if groups[v.Group] {
			d.fail("view of group %s listed twice", v.Group)
			break
		}
		groups[v.Group] = true
		switch {
		case CheckGroupName(v.Group) != nil:
			d.fail("view %d: bad group name %q", i, v.Group)
		case v.Leader != "" && checkCandidateID(v.Leader) != nil:
			d.fail("view %d: bad leader %q", i, v.Leader)
		case (v.Leader == "") != (v.LeaderPeer == ""):
			d.fail("view %d: leader %q with peer %q", i, v.Leader, v.LeaderPeer)
		}
		h.Views = append(h.Views, v)
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	if d.err == nil && !nameOrIDOK(h.NodeID) {
		d.fail("bad node ID %q", h.NodeID)
	}
	if d.err != nil {
		return nil, d.err
	}
	return h, nil
}

func nameOrIDOK(nodeID string) bool {
	return checkCandidateID(nodeID) == nil && !strings.Contains(nodeID, ":")
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadHeartbeat, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated at byte %d", d.off)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint at byte %d", d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) count() int {
	n := d.uvarint()
	if n > maxWireItems {
		d.fail("%d items, limit %d", n, maxWireItems)
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxWireString || n > uint64(len(d.b)-d.off) {
		d.fail("string of %d bytes at byte %d (limit %d, %d left)", n, d.off, maxWireString, len(d.b)-d.off)
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	if !utf8.ValidString(s) {
		d.fail("string at byte %d is not UTF-8", d.off-int(n))
		return ""
	}
	return s
}
