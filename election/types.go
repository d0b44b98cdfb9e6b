package election

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrNoCandidate means an operation named a candidate that this node
	// does not host (never joined, left, or its session TTL expired).
	ErrNoCandidate = errors.New("election: no such candidate")
	// ErrCandidateExists means Join named a candidate this node already
	// hosts: leave it first, or join with another instance name.
	ErrCandidateExists = errors.New("election: candidate already joined")
	// ErrNoGroup means a query named a group that has no candidate, here
	// or on any node this node hears from.
	ErrNoGroup = errors.New("election: no such group")
	// ErrReservedGroup means Join named the built-in cluster group, whose
	// candidates are the nodes themselves.
	ErrReservedGroup = errors.New("election: reserved group")
	// ErrInvalid means a name, kind, mode or duration given to the
	// election is malformed; the message says which and what to do.
	ErrInvalid = errors.New("election: invalid argument")
	// ErrClosed means the runner has been closed.
	ErrClosed = errors.New("election: closed")
	// ErrBadHeartbeat means bytes received on the election topic are not a
	// heartbeat this version understands.
	ErrBadHeartbeat = errors.New("election: bad heartbeat")
)

// ClusterGroup is the built-in group whose candidates are the nodes
// themselves (candidate ID = node ID). Its leader coordinates the cluster.
const ClusterGroup = "cluster"

// Kind is what a group elects a leader for.
type Kind uint8

const (
	// KindService is a stateful service that must run exactly once (a
	// protocol controller, a scheduler). The default.
	KindService Kind = iota
	// KindEndpoint is a network endpoint; its Mode says which candidates
	// may accept connections.
	KindEndpoint
)

// String returns "service" or "endpoint".
func (k Kind) String() string {
	switch k {
	case KindService:
		return "service"
	case KindEndpoint:
		return "endpoint"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText implements encoding.TextMarshaler ("service", "endpoint").
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (see ParseKind).
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	*k = v
	return err
}

// ParseKind accepts "service" and "endpoint" (any case); "" is service.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "service":
		return KindService, nil
	case "endpoint":
		return KindEndpoint, nil
	}
	return 0, fmt.Errorf("%w: kind %q: use service or endpoint", ErrInvalid, s)
}

// Mode says which candidates of an endpoint group are active.
type Mode uint8

const (
	// ModeLeaderOnly: only the leader is active (may accept connections,
	// may run). The default, and the only mode of services.
	ModeLeaderOnly Mode = iota
	// ModeAllWarm: every eligible (healthy, available) candidate of an
	// endpoint group is active; the leader is still elected (and is the
	// one to prefer), the others are warm standbys that serve too.
	ModeAllWarm
)

// String returns "LeaderOnly" or "AllWarm".
func (m Mode) String() string {
	switch m {
	case ModeLeaderOnly:
		return "LeaderOnly"
	case ModeAllWarm:
		return "AllWarm"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// MarshalText implements encoding.TextMarshaler ("LeaderOnly", "AllWarm").
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (see ParseMode).
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	*m = v
	return err
}

// ParseMode accepts "LeaderOnly" and "AllWarm" (any case, '-' and '_'
// ignored); "" is LeaderOnly.
func ParseMode(s string) (Mode, error) {
	norm := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch norm {
	case "", "leaderonly":
		return ModeLeaderOnly, nil
	case "allwarm":
		return ModeAllWarm, nil
	}
	return 0, fmt.Errorf("%w: mode %q: use LeaderOnly or AllWarm", ErrInvalid, s)
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	idRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$`)
)

// CheckGroupName reports whether s is a valid group name: 1-64
// characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with a
// punctuation character.
func CheckGroupName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: group name %q: use 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalid, s)
	}
	return nil
}

// CheckInstance reports whether s is a valid instance name (the same
// rules as a group name); "" is valid and means "the node's only one".
func CheckInstance(s string) error {
	if s == "" {
		return nil
	}
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: instance %q: use 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalid, s)
	}
	return nil
}

// CandidateID is the ID of the candidate of node nodeID for instance:
// the node ID itself, or "<node-id>:<instance>". Candidate IDs compare
// byte-wise, so the leader of a service group follows the order of node
// IDs (use zero-padded numbers: node02 < node10).
func CandidateID(nodeID, instance string) string {
	if instance == "" {
		return nodeID
	}
	return nodeID + ":" + instance
}

func checkCandidateID(s string) error {
	if !idRE.MatchString(s) {
		return fmt.Errorf("%w: candidate ID %q: want <node-id> or <node-id>:<instance>", ErrInvalid, s)
	}
	return nil
}

// Spec describes a candidate to join.
type Spec struct {
	// Group is the group's name (see CheckGroupName).
	Group string
	// ID is the candidate's ID. The runner sets it from its node ID and
	// Instance; the Rule takes it as given.
	ID string
	// Instance tells apart several candidates of one node in one group
	// (Runner.Join only). Default "".
	Instance string
	// Kind and Mode describe the group. AllWarm applies to endpoints only.
	Kind Kind
	Mode Mode
	// Available makes the candidate eligible at once (default: it must
	// call SetAvailable(true) when it is ready).
	Available bool
	// TTL, when positive, is a session: the candidate leaves by itself
	// unless ReportHealth is called at least every TTL. Use it for
	// candidates held by another process (a crashed service then loses
	// leadership). Zero: the candidate stays until Leave.
	TTL time.Duration
}

func (s Spec) check() error {
	var errs []error
	if err := CheckGroupName(s.Group); err != nil {
		errs = append(errs, err)
	}
	if err := checkCandidateID(s.ID); err != nil {
		errs = append(errs, err)
	}
	if s.Kind > KindEndpoint {
		errs = append(errs, fmt.Errorf("%w: kind %d", ErrInvalid, s.Kind))
	}
	if s.Mode > ModeAllWarm {
		errs = append(errs, fmt.Errorf("%w: mode %d", ErrInvalid, s.Mode))
	}
	if s.Mode == ModeAllWarm && s.Kind != KindEndpoint {
		errs = append(errs, fmt.Errorf("%w: mode AllWarm applies to endpoint groups only: use kind endpoint, or mode LeaderOnly", ErrInvalid))
	}
	if s.TTL < 0 {
		errs = append(errs, fmt.Errorf("%w: TTL %s is negative", ErrInvalid, s.TTL))
	}
	return errors.Join(errs...)
}

// Leadership is who leads a group, as one node sees it.
type Leadership struct {
	Group string `json:"group"`
	// Leader is the leader's candidate ID; "" when the group has no
	// leader (no candidate is healthy and available).
	Leader string `json:"leader"`
	// Node and Peer are the node ID and peer ID of the leader's host.
	Node string `json:"node,omitempty"`
	Peer string `json:"peer,omitempty"`
	// Term numbers the leadership. It increases on every change of leader
	// and never decreases on a node; see the package documentation for
	// what nodes agree on.
	Term uint64 `json:"term"`
}

// HasLeader reports whether the group has a leader.
func (l Leadership) HasLeader() bool { return l.Leader != "" }

// Is reports whether l names the candidate id hosted by peer.
func (l Leadership) Is(id, peer string) bool { return l.Leader == id && l.Peer == peer }

func (l Leadership) same(o Leadership) bool {
	return l.Leader == o.Leader && l.Peer == o.Peer
}

// Reasons of a Change.
const (
	ReasonElected     = "elected"     // the group had no leader
	ReasonFailed      = "failed"      // the leader's heartbeats stopped for Timeout
	ReasonLeft        = "left"        // the leader left (or its node stopped) gracefully
	ReasonExpired     = "expired"     // the leader's session TTL ran out
	ReasonUnhealthy   = "unhealthy"   // the leader reported itself unhealthy
	ReasonUnavailable = "unavailable" // the leader marked itself unavailable
	ReasonPreempted   = "preempted"   // a lower ID became eligible (preemption on)
	ReasonSuperseded  = "superseded"  // another leadership with a higher term won (after a partition)
	ReasonTerm        = "term"        // same leader, higher term (after a partition healed)
	ReasonStarting    = "starting"    // no leader: the cluster is starting and a lower node appeared after this node elected
)

// Change is a change of a group's leadership on this node.
type Change struct {
	Leadership
	// Previous is the leadership before the change.
	Previous Leadership `json:"previous"`
	// Reason says why, one of the Reason constants.
	Reason string `json:"reason"`
	// At is when the change was computed (the rule's clock).
	At time.Duration `json:"-"`
}

func (c Change) String() string {
	return fmt.Sprintf("%s: %s@%d -> %s@%d (%s)", c.Group, orNone(c.Previous.Leader), c.Previous.Term, orNone(c.Leader), c.Term, c.Reason)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// NoticeKind classifies a Notice.
type NoticeKind uint8

const (
	// NoticeDuplicateNode: two peers use the same node ID. The rule orders
	// their candidates by peer ID (deterministic on every node), but the
	// operator must give each node a unique ID.
	NoticeDuplicateNode NoticeKind = iota + 1
	// NoticeExpired: a local candidate's session TTL ran out and it left.
	NoticeExpired
)

// Notice is something the operator should hear about (the runner logs
// it; duplicates at ERROR).
type Notice struct {
	Kind  NoticeKind
	Group string   // NoticeExpired
	ID    string   // the duplicated node ID, or the expired candidate
	Peers []string // NoticeDuplicateNode: every peer using ID, sorted
	Self  bool     // this node is one of them
}

func (n Notice) String() string {
	switch n.Kind {
	case NoticeDuplicateNode:
		s := fmt.Sprintf("node ID %q is used by %d peers (%s): the election orders them by peer ID; give every node a unique --node-id", n.ID, len(n.Peers), strings.Join(n.Peers, ", "))
		if n.Self {
			s += " (this node is one of them)"
		}
		return s
	case NoticeExpired:
		return fmt.Sprintf("candidate %s of group %s left: no health report within its TTL", n.ID, n.Group)
	}
	return fmt.Sprintf("notice(%d)", n.Kind)
}

// Member is one candidate of a group as this node sees it.
type Member struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	Peer string `json:"peer"`
	Kind Kind   `json:"kind"`
	Mode Mode   `json:"mode"`
	// Local: hosted by this node.
	Local bool `json:"local"`
	// Alive: its node was heard within Timeout (always true when Local).
	Alive bool `json:"alive"`
	// Healthy: Alive, and the candidate reports itself healthy.
	Healthy bool `json:"healthy"`
	// Available: the candidate says it is ready to lead (false while its
	// node is still warming up or syncing).
	Available bool `json:"available"`
	// Settling: it has just joined and becomes available once its node
	// has heard from every other node (a heartbeat interval or so).
	Settling bool `json:"settling,omitempty"`
	// Eligible: Healthy and Available (and this node is warm, when Local).
	Eligible bool `json:"eligible"`
	// Leader: this candidate is the group's leader.
	Leader bool `json:"leader"`
	// Active: Leader, or Eligible in an AllWarm endpoint group.
	Active bool `json:"active"`
	// Duplicate: another peer uses the same node ID.
	Duplicate bool `json:"duplicate,omitempty"`
	// LastSeen is how long ago its node's last heartbeat arrived (0 when Local).
	LastSeen time.Duration `json:"-"`
}

// GroupStatus is a group as this node sees it.
type GroupStatus struct {
	Name string `json:"name"`
	// Kind and Mode are those of the local candidate, else of the lowest
	// member. Conflicts lists disagreements between members.
	Kind      Kind       `json:"kind"`
	Mode      Mode       `json:"mode"`
	Leader    Leadership `json:"leader"`
	Members   []Member   `json:"members"`
	Conflicts []string   `json:"conflicts,omitempty"`
	// Warming: this node has not yet listened for Warmup since it
	// started, so it reports no leader yet.
	Warming bool `json:"warming,omitempty"`
	// Since is how long the current leadership has lasted on this node.
	Since time.Duration `json:"-"`
}

// CandidateStatus is one local candidate and its group's leadership.
type CandidateStatus struct {
	Spec
	Leadership Leadership
	Healthy    bool
	// IsLeader: this candidate leads its group.
	IsLeader bool
	// Active: IsLeader, or eligible in an AllWarm endpoint group.
	Active bool
	// Eligible: healthy, available, and this node is warm.
	Eligible bool
}
