package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// NodeState is a node's state as another node sees it.
type NodeState string

// Node states. JOINING, SYNCING and ACTIVE follow the node's own sync
// phase (SyncProgress.Phase) as it reports it; SUSPECT and DEAD are
// decided by the observer from the age of the last report; LEAVING and
// LEFT follow a graceful stop.
const (
	StateJoining NodeState = "JOINING" // known, no state yet (or looking for a source)
	StateSyncing NodeState = "SYNCING" // a state transfer is running
	StateActive  NodeState = "ACTIVE"  // holds the current state, reports on time
	StateSuspect NodeState = "SUSPECT" // reports late (past SuspectAfter)
	StateDead    NodeState = "DEAD"    // no report for DeadAfter: failed or cut off
	StateLeaving NodeState = "LEAVING" // said goodbye, still connected
	StateLeft    NodeState = "LEFT"    // said goodbye and went away
)

// AllNodeStates lists the states in display order.
var AllNodeStates = []NodeState{StateJoining, StateSyncing, StateActive, StateSuspect, StateDead, StateLeaving, StateLeft}

// SyncHealth is the replication link with a peer.
type SyncHealth string

// Sync health of a peer.
const (
	// HealthConnected: connected, and neither side is catching up.
	HealthConnected SyncHealth = "Connected"
	// HealthSyncing: connected, and the peer is joining, transferring
	// state, or working through queued DAG blocks.
	HealthSyncing SyncHealth = "Syncing"
	// HealthIndirect: no direct connection, and the peer's reports come
	// on time through other nodes, as its data does: in a cluster larger
	// than a node's bound on connections (p2p.Config.MaxPeers), most
	// peers are reached this way.
	HealthIndirect SyncHealth = "Indirect"
	// HealthDisconnected: no direct connection and no recent report;
	// the nodes exchange heads and resync when they meet again.
	HealthDisconnected SyncHealth = "Disconnected"
)

// AllSyncHealth lists the sync health values in display order.
var AllSyncHealth = []SyncHealth{HealthConnected, HealthSyncing, HealthIndirect, HealthDisconnected}

// PeerStateConfig configures PeerStates. Zero fields take the defaults.
type PeerStateConfig struct {
	// SuspectAfter: a peer whose last report is older is SUSPECT.
	// Default 3 s, three report intervals: one lost gossip message is
	// not enough.
	SuspectAfter time.Duration
	// DeadAfter: a peer whose last report is older is DEAD (the failure
	// timeout). Default 10 s: above the p2p liveness timeout (4 s) plus a
	// re-dial round (5 s), so a short reconnect does not flap to DEAD.
	DeadAfter time.Duration
	// LeftAfter: a LEAVING peer that is still connected after this long
	// is LEFT anyway. Default 5 s.
	LeftAfter time.Duration
	// ForgetAfter: a LEFT or DEAD peer that stays silent this long is
	// dropped from the table (and logged). Default 1 h; negative: never.
	ForgetAfter time.Duration
}

// Defaults of PeerStateConfig.
const (
	DefaultSuspectAfter = 3 * time.Second
	DefaultDeadAfter    = 10 * time.Second
	DefaultLeftAfter    = 5 * time.Second
	DefaultForgetAfter  = time.Hour
)

// EnsureDefaults fills the zero fields.
func (c PeerStateConfig) EnsureDefaults() PeerStateConfig {
	if c.SuspectAfter <= 0 {
		c.SuspectAfter = DefaultSuspectAfter
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = DefaultDeadAfter
	}
	if c.LeftAfter <= 0 {
		c.LeftAfter = DefaultLeftAfter
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = DefaultForgetAfter
	}
	return c
}

// Validate reports every problem at once.
func (c PeerStateConfig) Validate() error {
	c = c.EnsureDefaults()
	if c.DeadAfter <= c.SuspectAfter {
		return fmt.Errorf("nodestate: peer states: DeadAfter %v must be above SuspectAfter %v", c.DeadAfter, c.SuspectAfter)
	}
	return nil
}

// NodeReport is what a node gossips about itself every ReportInterval.
type NodeReport struct {
	// V is the format version (1).
	V    int    `json:"v"`
	Node string `json:"node"`
	// Incarnation tells the sender's runs apart (its start time in ns);
	// Seq counts reports within one. Older reports are dropped.
	Incarnation uint64 `json:"inc"`
	Seq         uint64 `json:"seq"`
	// Leaving: the sender is stopping (its goodbye).
	Leaving bool `json:"leaving,omitempty"`
	// Sync is the sender's own SyncProgress.
	Sync SyncProgress `json:"sync"`
	// WritesOut counts writes committed on the sender (its own);
	// WritesIn counts replication messages it received from peers.
	WritesOut uint64 `json:"writes_out"`
	WritesIn  uint64 `json:"writes_in"`
	// Heads, Height, Queued and Dirty are its DAG state (crdt.Status).
	Heads  int    `json:"heads"`
	Height uint64 `json:"height"`
	Queued int    `json:"queued"`
	Dirty  bool   `json:"dirty,omitempty"`
	// ReplLatencyMS is the mean replication latency the sender measured
	// over the last interval (remote writes: arrival minus the write's
	// timestamp), 0 without samples.
	ReplLatencyMS float64 `json:"repl_ms,omitempty"`
	// StableHeads are the sender's DAG heads at a moment when every
	// block below them was merged (crdt.Store.StableHeads), when
	// HeadsKnown; compaction keeps whatever a member has not merged.
	// A sender with more than MaxStableHeads heads sends none.
	StableHeads []string `json:"sh,omitempty"`
	HeadsKnown  bool     `json:"shk,omitempty"`
	// LiveBytes and HistoryBytes are the sender's live state and history
	// on disk (crdt.Status); absent from senders that do not measure
	// them.
	LiveBytes    int64 `json:"live_bytes,omitempty"`
	HistoryBytes int64 `json:"history_bytes,omitempty"`
	// Installs counts the state transfers the sender has installed;
	// EvictedBack are the members its compaction evicted that are back
	// and must rebase, each with its install count at eviction; Lineage
	// names the sender's history for the tie-break of a mutual eviction
	// (crdt/evict.go).
	Installs    uint64            `json:"inst,omitempty"`
	EvictedBack map[string]uint64 `json:"evb,omitempty"`
	Lineage     string            `json:"lin,omitempty"`
	// Clock is the sender's physical clock when it built the report (ns
	// since the Unix epoch), for the receivers' clock check.
	Clock int64 `json:"clk,omitempty"`
	// WriteError says why the sender's store cannot write (a full disk),
	// and ClockSkewed that it refuses writes because its clock is off
	// the cluster's; empty and false when it writes.
	WriteError  string `json:"we,omitempty"`
	ClockSkewed bool   `json:"cs,omitempty"`
	// Version is the sender's build (internal/version's Info.String), so
	// that a cluster of mixed versions shows it; absent from older ones.
	Version string `json:"ver,omitempty"`
	// PeriodMS is when the sender's next report is due at the latest, in
	// milliseconds: ReportInterval while its state changes, its idle
	// period once it is quiet. Receivers scale SuspectAfter and DeadAfter
	// to it. 0 (older senders): ReportInterval.
	PeriodMS int64 `json:"per,omitempty"`
}

// Quiet returns r without what changes while nothing happens (sequence,
// clock, latency, sizes on disk, period): two reports with equal Quiet
// forms say the same, and the second need not be sent before the idle
// period is up.
func (r NodeReport) Quiet() NodeReport {
	r.Seq, r.Clock, r.ReplLatencyMS, r.LiveBytes, r.HistoryBytes, r.PeriodMS = 0, 0, 0, 0, 0, 0
	return r
}

// maxReportPeriod bounds NodeReport.PeriodMS: a garbled or hostile
// value cannot keep a silent peer from turning DEAD for long.
const maxReportPeriod = 10 * time.Minute

// MaxEvictedBack bounds NodeReport.EvictedBack.
const MaxEvictedBack = 16

// MaxStableHeads bounds NodeReport.StableHeads (a CID is about 60 bytes).
const MaxStableHeads = 64

// reportVersion is NodeReport.V of this version.
const reportVersion = 1

// MaxReportSize bounds an encoded NodeReport; a peer cannot make a node
// parse much.
const MaxReportSize = 8 << 10

// ErrBadReport means bytes received on the nodestate topic are not a
// report this version understands. Test with errors.Is.
var ErrBadReport = errors.New("nodestate: bad node report")

var reportNodeRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Encode returns the wire form (JSON) of r, stamped with this version's
// report version.
func (r *NodeReport) Encode() []byte {
	r.V = reportVersion
	b, _ := json.Marshal(r) // plain fields: cannot fail
	return b
}

// DecodeNodeReport parses and checks a report. Errors wrap ErrBadReport;
// it never panics.
func DecodeNodeReport(data []byte) (*NodeReport, error) {
	if len(data) > MaxReportSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadReport, len(data), MaxReportSize)
	}
	var r NodeReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReport, err)
	}
	var errs []string
	if r.V != reportVersion {
		errs = append(errs, fmt.Sprintf("version %d, this node understands %d", r.V, reportVersion))
	}
	if !reportNodeRE.MatchString(r.Node) {
		errs = append(errs, fmt.Sprintf("bad node ID %q", r.Node))
	}
	switch r.Sync.Phase {
	case PhaseJoining, PhaseSyncing, PhaseActive:
	default:
		errs = append(errs, fmt.Sprintf("unknown sync phase %q", r.Sync.Phase))
	}
	if r.PeriodMS < 0 || r.PeriodMS > maxReportPeriod.Milliseconds() {
		errs = append(errs, fmt.Sprintf("a period of %d ms (at most %v)", r.PeriodMS, maxReportPeriod))
	}
	if r.Heads < 0 || r.Queued < 0 || r.ReplLatencyMS < 0 || r.ReplLatencyMS != r.ReplLatencyMS || r.LiveBytes < 0 || r.HistoryBytes < 0 {
		errs = append(errs, "negative count")
	}
	if len(r.Sync.Source) > 128 || len(r.Sync.LastError) > 1024 {
		errs = append(errs, "oversized sync fields")
	}
	if len(r.StableHeads) > MaxStableHeads || (len(r.StableHeads) > 0 && !r.HeadsKnown) {
		errs = append(errs, fmt.Sprintf("%d stable heads (at most %d, and only with heads known)", len(r.StableHeads), MaxStableHeads))
	}
	if len(r.Version) > 128 {
		errs = append(errs, fmt.Sprintf("a version of %d bytes", len(r.Version)))
	}
	if len(r.WriteError) > 512 {
		errs = append(errs, fmt.Sprintf("a write error of %d bytes", len(r.WriteError)))
	}
	if len(r.EvictedBack) > MaxEvictedBack || len(r.Lineage) > 128 {
		errs = append(errs, fmt.Sprintf("%d evicted members (at most %d) or a lineage of %d bytes", len(r.EvictedBack), MaxEvictedBack, len(r.Lineage)))
	}
	for id := range r.EvictedBack {
		if id == "" || len(id) > 128 {
			errs = append(errs, fmt.Sprintf("bad evicted member %q", id))
		}
	}
	for _, h := range r.StableHeads {
		if len(h) == 0 || len(h) > 128 {
			errs = append(errs, fmt.Sprintf("bad stable head %q", h))
			break
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrBadReport, strings.Join(errs, "; "))
	}
	return &r, nil
}

// Transition is a change of a peer's state or sync health.
type Transition struct {
	Peer string `json:"peer"`
	Node string `json:"node,omitempty"`
	// What is "state" or "health".
	What string `json:"what"`
	From string `json:"from"`
	To   string `json:"to"`
	// Reason says why, in words ("report late", "goodbye", ...).
	Reason string `json:"reason"`
	// At is the machine's clock (the driver's monotonic offset).
	At time.Duration `json:"-"`
	// Time is the wall-clock time, set by the driver.
	Time time.Time `json:"time,omitzero"`
}

func (t Transition) String() string {
	name := t.Peer
	if t.Node != "" {
		name = t.Node
	}
	return fmt.Sprintf("%s %s %s -> %s (%s)", name, t.What, t.From, t.To, t.Reason)
}

// PeerView is one peer as PeerStates sees it.
type PeerView struct {
	Peer      string
	Node      string // "" until its first report
	State     NodeState
	Health    SyncHealth
	Connected bool
	// Heard: a report arrived (Report is then valid); Age is how long ago.
	Heard  bool
	Age    time.Duration
	Report NodeReport
	// Since is how long the peer has been in State.
	Since time.Duration
}

type peerRec struct {
	peer      string
	known     time.Duration // first known
	connected bool
	heard     bool
	lastHeard time.Duration
	report    NodeReport
	leavingAt time.Duration // when the goodbye arrived (valid if report.Leaving)
	// gone: LEFT since that goodbye. LEFT is final for a goodbye: a
	// reconnection is not "still connected", and is more likely the
	// peer's next run, which says so in its first report.
	gone bool

	state      NodeState
	health     SyncHealth
	stateSince time.Duration
}

// PeerStates computes the state and sync health of every peer from its
// reports, its connection, and the passing of time. Inputs are method
// calls stamped with a monotonic time (the driver's clock, never the
// wall clock); outputs are Peers and the transitions collected by Take.
// It is not safe for concurrent use: the driver serialises calls.
type PeerStates struct {
	cfg     PeerStateConfig
	peers   map[string]*peerRec
	pending []Transition
}

// NewPeerStates returns an empty machine; zero cfg fields take defaults.
func NewPeerStates(cfg PeerStateConfig) *PeerStates {
	return &PeerStates{cfg: cfg.EnsureDefaults(), peers: make(map[string]*peerRec)}
}

func (s *PeerStates) rec(now time.Duration, peer string) *peerRec {
	p, ok := s.peers[peer]
	if !ok {
		p = &peerRec{peer: peer, known: now, stateSince: now}
		s.peers[peer] = p
	}
	return p
}

// Observe records a report from peer, received at now. A report older
// than the last one (same incarnation, lower or equal Seq; or an older
// incarnation) is ignored.
func (s *PeerStates) Observe(now time.Duration, peer string, r NodeReport) {
	p := s.rec(now, peer)
	if p.heard {
		old := p.report
		if r.Incarnation < old.Incarnation || (r.Incarnation == old.Incarnation && r.Seq <= old.Seq) {
			return
		}
	}
	if r.Leaving && (!p.heard || !p.report.Leaving || r.Incarnation != p.report.Incarnation) {
		p.leavingAt, p.gone = now, false
	}
	p.heard, p.lastHeard, p.report = true, now, r
	s.update(now, p, "report")
}

// Connected records that the direct connection with peer came up or went
// down. A peer the table does not hold is added, as Known adds it, even
// on a disconnection.
func (s *PeerStates) Connected(now time.Duration, peer string, up bool) {
	if p, ok := s.peers[peer]; ok && p.connected == up {
		return
	}
	p := s.rec(now, peer)
	p.connected = up
	reason := "disconnected"
	if up {
		reason = "connected"
	}
	s.update(now, p, reason)
}

// OnTime reports whether peer's reports arrive on time: it was heard,
// not longer ago than SUSPECT takes, and did not say goodbye.
func (s *PeerStates) OnTime(now time.Duration, peer string) bool {
	p, ok := s.peers[peer]
	if !ok || !p.heard || p.report.Leaving {
		return false
	}
	suspect, _ := ReportTimeouts(s.cfg, p.report.PeriodMS)
	return now-p.lastHeard < suspect
}

// Known records a peer the node knows (static, discovered) without news
// of it: it appears as JOINING and, if nothing is heard, becomes DEAD.
func (s *PeerStates) Known(now time.Duration, peer string) {
	if _, ok := s.peers[peer]; !ok {
		s.update(now, s.rec(now, peer), "known")
	}
}

// Forget drops a peer (the operator removed it). It reports whether the
// peer was known.
func (s *PeerStates) Forget(peer string) bool {
	_, ok := s.peers[peer]
	delete(s.peers, peer)
	return ok
}

// Tick advances time: reports age into SUSPECT and DEAD, LEAVING times
// out into LEFT, and long-gone peers are forgotten. Peers are visited in
// ID order, so that the transitions of one tick come in a stable order.
func (s *PeerStates) Tick(now time.Duration) {
	for _, id := range slices.Sorted(maps.Keys(s.peers)) {
		p := s.peers[id]
		s.update(now, p, "")
		if s.cfg.ForgetAfter > 0 && (p.state == StateLeft || p.state == StateDead) && !p.connected &&
			now-p.stateSince >= s.cfg.ForgetAfter {
			delete(s.peers, id)
			s.pending = append(s.pending, Transition{Peer: id, Node: p.report.Node, What: "state", From: string(p.state), To: "FORGOTTEN",
				Reason: fmt.Sprintf("silent for %v", s.cfg.ForgetAfter), At: now})
		}
	}
}

// ReportTimeouts are how long a peer that announced periodMS (its last
// report's PeriodMS) may stay silent before it is SUSPECT and DEAD: the
// configured times, or 2 and 4 of its periods when that is longer (an
// idle peer reports every few seconds to a minute, depending on the
// cluster's size).
func ReportTimeouts(cfg PeerStateConfig, periodMS int64) (suspect, dead time.Duration) {
	cfg = cfg.EnsureDefaults()
	p := time.Duration(periodMS) * time.Millisecond
	return max(cfg.SuspectAfter, 2*p), max(cfg.DeadAfter, 4*p)
}

// compute is the rule: the state and health of p at now.
func (s *PeerStates) compute(now time.Duration, p *peerRec) (NodeState, SyncHealth, string) {
	last := p.known
	if p.heard {
		last = p.lastHeard
	}
	age := now - last
	suspect, dead := s.cfg.SuspectAfter, s.cfg.DeadAfter
	if p.heard {
		suspect, dead = ReportTimeouts(s.cfg, p.report.PeriodMS)
	}
	health := HealthDisconnected
	switch {
	case p.connected:
		health = HealthConnected
		if p.heard && (p.report.Sync.Phase != PhaseActive || p.report.Queued > 0 || p.report.Dirty) {
			health = HealthSyncing
		}
	case p.heard && age < suspect && !p.report.Leaving:
		health = HealthIndirect
	}
	if p.heard && p.report.Leaving {
		if !p.connected || p.gone {
			return StateLeft, health, "goodbye, then disconnected"
		}
		if now-p.leavingAt >= s.cfg.LeftAfter {
			return StateLeft, health, fmt.Sprintf("goodbye %v ago", s.cfg.LeftAfter)
		}
		return StateLeaving, health, "goodbye"
	}
	switch {
	case age >= dead:
		return StateDead, health, fmt.Sprintf("no report for %v", dead)
	case age >= suspect && p.heard:
		return StateSuspect, health, fmt.Sprintf("no report for %v", suspect)
	case !p.heard:
		return StateJoining, health, "no report yet"
	}
	switch p.report.Sync.Phase {
	case PhaseJoining:
		return StateJoining, health, "joining"
	case PhaseSyncing:
		return StateSyncing, health, "state transfer"
	}
	return StateActive, health, "report on time"
}

func (s *PeerStates) update(now time.Duration, p *peerRec, cause string) {
	state, health, why := s.compute(now, p)
	if cause != "" && cause != "report" {
		why = cause
	}
	if state != p.state {
		// From is "" for a peer just learnt of.
		s.pending = append(s.pending, Transition{Peer: p.peer, Node: p.report.Node, What: "state", From: string(p.state), To: string(state), Reason: why, At: now})
		p.state, p.stateSince = state, now
	}
	p.gone = state == StateLeft
	if health != p.health {
		if p.health != "" { // a new peer's first health is not news
			s.pending = append(s.pending, Transition{Peer: p.peer, Node: p.report.Node, What: "health", From: string(p.health), To: string(health), Reason: why, At: now})
		}
		p.health = health
	}
}

// Take returns the transitions since the last Take, oldest first.
func (s *PeerStates) Take() []Transition {
	out := s.pending
	s.pending = nil
	return out
}

// Peers returns every peer's view at now, sorted by node ID, then peer ID.
func (s *PeerStates) Peers(now time.Duration) []PeerView {
	out := make([]PeerView, 0, len(s.peers))
	for _, p := range s.peers {
		v := PeerView{Peer: p.peer, Node: p.report.Node, State: p.state, Health: p.health, Connected: p.connected,
			Heard: p.heard, Report: p.report, Since: now - p.stateSince}
		if p.heard {
			v.Age = now - p.lastHeard
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b PeerView) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.Peer, b.Peer)
	})
	return out
}
