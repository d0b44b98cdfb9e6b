package p2p

import (
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Misbehaviour: a peer that sends what no node of this version sends (a
// malformed replication message, blocks nothing points to) earns a point
// per message. Points halve every misHalfLife. From misGraylist points
// gossipsub ignores the peer (its score is -10 per point, the graylist
// at -100); at misBanPoints the node closes its connections and refuses
// it for misBanFor (the gater), then lets it back with a clean slate. A
// correct peer never earns a point, so one bug in a peer costs nothing
// until it repeats ~20 times within a minute or two.
const (
	misHalfLife  = time.Minute
	misBanPoints = 20
	misBanFor    = 10 * time.Minute
	misScore     = -10 // gossipsub score per point
)

type offense struct {
	points float64
	at     time.Time
}

// misbehavior keeps the points and the bans. Safe for concurrent use.
type misbehavior struct {
	now    func() time.Time
	mu     sync.Mutex
	score  map[peer.ID]offense
	banned map[peer.ID]time.Time // until
}

func newMisbehavior() *misbehavior {
	return &misbehavior{now: time.Now, score: make(map[peer.ID]offense), banned: make(map[peer.ID]time.Time)}
}

// decayed is o's points at now.
func (o offense) decayed(now time.Time) float64 {
	return o.points * math.Pow(0.5, float64(now.Sub(o.at))/float64(misHalfLife))
}

// setClock replaces the clock (tests).
func (m *misbehavior) setClock(now func() time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = now
}

// add gives id a point; it reports whether this point bans it.
func (m *misbehavior) add(id peer.ID) (points float64, banned bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if until, ok := m.banned[id]; ok && now.Before(until) {
		return misBanPoints, false // already banned
	}
	o := offense{points: m.score[id].decayed(now) + 1, at: now}
	if o.points >= misBanPoints {
		delete(m.score, id)
		m.banned[id] = now.Add(misBanFor)
		return o.points, true
	}
	m.score[id] = o
	if len(m.score) > 4096 { // forget the faded ones now and then
		for p, s := range m.score {
			if s.decayed(now) < 0.5 {
				delete(m.score, p)
			}
		}
	}
	return o.points, false
}

// points is id's current points (misBanPoints while banned).
func (m *misbehavior) points(id peer.ID) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if until, ok := m.banned[id]; ok {
		if now.Before(until) {
			return misBanPoints
		}
		delete(m.banned, id)
	}
	return m.score[id].decayed(now)
}

// isBanned reports whether id is refused for misbehaviour now.
func (m *misbehavior) isBanned(id peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	until, ok := m.banned[id]
	return ok && now.Before(until)
}

// Misbehaved records that peer id sent something no correct node sends
// (why says what); repeated, it gets the peer ignored by gossipsub and
// then disconnected and refused for a while (see misbehavior). An ID
// that does not parse is ignored.
func (n *Node) Misbehaved(id string, why string) {
	p, err := peer.Decode(id)
	if err != nil || p == n.self {
		return
	}
	points, banned := n.mis.add(p)
	if !banned {
		n.log.Debug("peer misbehaved", "peer", p, "points", math.Round(points*10)/10, "why", why)
		return
	}
	n.log.Warn("peer disconnected and refused: it kept sending what no correct node sends (a wrong version, a bug, or hostile)",
		"peer", p, "for", misBanFor, "last", why)
	go func() {
		if err := n.host.Network().ClosePeer(p); err != nil {
			n.log.Debug("close a misbehaving peer", "peer", p, "err", err)
		}
	}()
}
