package api

import (
	"time"

	"github.com/starling-sync/starling/nodestate"
)

// NodeView is one node of the cluster table (GET /v1/cluster/status).
type NodeView struct {
	NodeID string `json:"node_id"`
	PeerID string `json:"peer_id"`
	// Self: this is the node that answers.
	Self  bool                `json:"self,omitempty"`
	Addrs []string            `json:"addrs"`
	State nodestate.NodeState `json:"state"`
	// Health is the replication link with this node ("" for itself).
	Health    nodestate.SyncHealth `json:"health,omitempty"`
	Connected bool                 `json:"connected"`
	// Connection is "direct", "hole-punched" or "relayed" (omitted when
	// not connected).
	Connection string `json:"connection,omitempty"`
	// Problem says why this node cannot reach it ("network-key": another
	// private network key; "environment": another --env; "unreachable",
	// "refused", ...), DialError the last error; omitted when none.
	Problem   string `json:"problem,omitempty"`
	DialError string `json:"dial_error,omitempty"`
	Static    bool   `json:"static,omitempty"`
	// LastSeen is when its last report arrived (omitted: never, or self);
	// LastSeenMS is how long ago.
	LastSeen   *time.Time `json:"last_seen,omitempty"`
	LastSeenMS int64      `json:"last_seen_ms"`
	// SinceMS is how long it has been in State, as this node saw it.
	SinceMS int64 `json:"since_ms"`
	// WritesOut counts its own committed writes, WritesIn the replication
	// messages it received (both since it started).
	WritesIn  uint64 `json:"writes_in"`
	WritesOut uint64 `json:"writes_out"`
	Heads     int    `json:"heads"`
	Height    uint64 `json:"height"`
	// Lag is how many DAG heights it is behind the highest node known.
	Lag uint64 `json:"lag"`
	// LiveBytes and HistoryBytes are its live state and its history on
	// disk, as it reported them (0: not reported, or not measured).
	LiveBytes    int64 `json:"live_bytes"`
	HistoryBytes int64 `json:"history_bytes"`

	Leader bool `json:"leader,omitempty"`
	// Sync is its join/resync state as it reported it.
	Sync nodestate.SyncProgress `json:"sync"`
	// WriteError says why its store cannot write (a full disk);
	// ClockSkewed, that it refuses writes because its clock is off the
	// cluster's. As it reported them.
	WriteError  string `json:"write_error,omitempty"`
	ClockSkewed bool   `json:"clock_skewed,omitempty"`
	// Version is its build as it reported it ("" before its first
	// report, or from a build that does not report it).
	Version string `json:"version,omitempty"`
}

// ClusterStatus is the answer of GET /v1/cluster/status: the fields of
// GET /v1/cluster (leader, election group) and the cluster table.
type ClusterStatus struct {
	ClusterInfo
	// Mode is "standalone" (no other node known) or "cluster".
	Mode string `json:"mode"`
	// NodeCount counts the nodes of the table that have not left.
	NodeCount int        `json:"node_count"`
	Nodes     []NodeView `json:"nodes"`
	// Sync is this node's own join/resync state.
	Sync nodestate.SyncProgress `json:"sync"`
}

// Self returns the answering node's row.
func (cs *ClusterStatus) Self() (NodeView, bool) {
	for _, n := range cs.Nodes {
		if n.Self {
			return n, true
		}
	}
	return NodeView{}, false
}

// Sample is one point of a node's chart.
type Sample struct {
	// T is the time in Unix milliseconds.
	T int64 `json:"t"`
	// W is its own writes per second, I the replication messages it
	// received per second, L its mean replication latency in ms (0: no
	// remote write in the interval).
	W float64 `json:"w"`
	I float64 `json:"i"`
	L float64 `json:"l"`
}

// ClusterHistory is the answer of GET /v1/cluster/history: the last
// minutes of samples, per node ID.
type ClusterHistory struct {
	IntervalMS int64               `json:"interval_ms"`
	Nodes      map[string][]Sample `json:"nodes"`
}

// LeadershipChange is a change of a group's leader seen by this node.
type LeadershipChange struct {
	Group    string    `json:"group"`
	Leader   string    `json:"leader"`
	Previous string    `json:"previous"`
	Term     uint64    `json:"term"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

// ClusterEvents is the answer of GET /v1/cluster/events: recent
// transitions of peer states and leadership changes, oldest first.
type ClusterEvents struct {
	Transitions []nodestate.Transition `json:"transitions"`
	Leadership  []LeadershipChange     `json:"leadership"`
}
