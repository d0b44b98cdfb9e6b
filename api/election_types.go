package api

import (
	"errors"
	"fmt"
	"time"

	"github.com/starling-sync/starling/election"
)

// ElectionGroup is a group as the node sees it (GET
// /v1/election/groups/{group}).
type ElectionGroup struct {
	Name      string              `json:"name"`
	Kind      election.Kind       `json:"kind"`
	Mode      election.Mode       `json:"mode"`
	Leader    election.Leadership `json:"leader"`
	Members   []ElectionMember    `json:"members"`
	Conflicts []string            `json:"conflicts,omitempty"`
	// Warming: the node is still listening after its start and reports
	// no leader yet.
	Warming bool `json:"warming,omitempty"`
	// SinceMS is how long the current leadership has lasted, in ms.
	SinceMS int64 `json:"since_ms"`
}

// ElectionMember is a candidate of a group.
type ElectionMember struct {
	election.Member
	// LastSeenMS is how long ago its node's last heartbeat arrived, in
	// ms (0 for the node's own candidates).
	LastSeenMS int64 `json:"last_seen_ms"`
}

// ElectionCandidate is one of the node's own candidates and what it
// should do (GET /v1/election/groups/{group}/candidates/{id}).
type ElectionCandidate struct {
	Group     string              `json:"group"`
	ID        string              `json:"id"`
	Kind      election.Kind       `json:"kind"`
	Mode      election.Mode       `json:"mode"`
	Healthy   bool                `json:"healthy"`
	Available bool                `json:"available"`
	Eligible  bool                `json:"eligible"`
	TTLMS     int64               `json:"ttl_ms,omitempty"`
	Leader    election.Leadership `json:"leader"`
	// IsLeader: this candidate leads the group; Term is then its term.
	IsLeader bool   `json:"is_leader"`
	Term     uint64 `json:"term"`
	// Active: IsLeader, or eligible in an AllWarm endpoint group.
	Active bool `json:"active"`
}

// JoinRequest is the body of POST /v1/election/groups/{group}/candidates.
type JoinRequest struct {
	// Instance tells apart several candidates of this node in the group
	// (the candidate ID becomes "<node-id>:<instance>"). Default "".
	Instance string `json:"instance,omitempty"`
	// Kind: "service" (default) or "endpoint".
	Kind string `json:"kind,omitempty"`
	// Mode: "LeaderOnly" (default) or "AllWarm" (endpoints only).
	Mode string `json:"mode,omitempty"`
	// TTL, a Go duration ("5s"): the candidate leaves by itself unless it
	// reports health at least this often. Default: no TTL.
	TTL string `json:"ttl,omitempty"`
	// Available makes it eligible at once. Default false: it must mark
	// itself available when it is ready.
	Available bool `json:"available,omitempty"`
}

// ClusterInfo is the answer of GET /v1/cluster.
type ClusterInfo struct {
	NodeID string `json:"node_id"`
	PeerID string `json:"peer_id"`
	// Leader is the cluster's leader (a node) as this node sees it.
	Leader election.Leadership `json:"leader"`
	// IsLeader: this node leads the cluster.
	IsLeader bool          `json:"is_leader"`
	Group    ElectionGroup `json:"group"`
}

// ElectionEvent is one line of a watch stream (JSON lines).
type ElectionEvent struct {
	// Type is "state" (the first line, then every change), "keepalive"
	// (sent every keepalive interval; carries the current state too), or
	// "closed" (the node is stopping; the stream ends).
	Type string `json:"type"`
	election.Event
}

// Keepalive of the election's watch streams: the server sends a comment
// line this often (the client's WatchOptions.Keepalive, default
// DefaultKeepalive), never more often than MinKeepalive.
const (
	DefaultKeepalive = 5 * time.Second
	MinKeepalive     = 100 * time.Millisecond
)

// NewElectionGroup is the wire form of a group's status.
func NewElectionGroup(gs election.GroupStatus) ElectionGroup {
	g := ElectionGroup{
		Name: gs.Name, Kind: gs.Kind, Mode: gs.Mode, Leader: gs.Leader, Conflicts: gs.Conflicts,
		Warming: gs.Warming, SinceMS: gs.Since.Milliseconds(), Members: make([]ElectionMember, 0, len(gs.Members)),
	}
	for _, m := range gs.Members {
		g.Members = append(g.Members, ElectionMember{Member: m, LastSeenMS: m.LastSeen.Milliseconds()})
	}
	return g
}

// NewElectionCandidate is the wire form of a candidate's status.
func NewElectionCandidate(st election.CandidateStatus) ElectionCandidate {
	c := ElectionCandidate{
		Group: st.Group, ID: st.ID, Kind: st.Kind, Mode: st.Mode, Healthy: st.Healthy,
		Available: st.Available, Eligible: st.Eligible, TTLMS: st.TTL.Milliseconds(),
		Leader: st.Leadership, IsLeader: st.IsLeader, Active: st.Active,
	}
	if st.IsLeader {
		c.Term = st.Leadership.Term
	}
	return c
}

// spec checks the request and turns it into an election.Spec, reporting
// every problem at once.
func (req JoinRequest) Spec(group string) (election.Spec, error) {
	s := election.Spec{Group: group, Instance: req.Instance, Available: req.Available}
	var errs []error
	var err error
	if s.Kind, err = election.ParseKind(req.Kind); err != nil {
		errs = append(errs, err)
	}
	if s.Mode, err = election.ParseMode(req.Mode); err != nil {
		errs = append(errs, err)
	}
	if req.TTL != "" {
		if s.TTL, err = time.ParseDuration(req.TTL); err != nil || s.TTL < 0 {
			errs = append(errs, fmt.Errorf("%w: ttl %q: use a duration like 5s", election.ErrInvalid, req.TTL))
		}
	}
	if err := election.CheckInstance(req.Instance); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && s.Mode == election.ModeAllWarm && s.Kind != election.KindEndpoint {
		errs = append(errs, fmt.Errorf("%w: mode AllWarm applies to endpoints: add \"kind\": \"endpoint\"", election.ErrInvalid))
	}
	return s, errors.Join(errs...)
}
