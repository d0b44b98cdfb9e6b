package nodestate

import (
	"errors"
	"time"
)

// SyncPhase is where a node stands in joining the cluster.
type SyncPhase string

// Sync phases. A node is JOINING while it looks for a peer to copy the
// state from, SYNCING while a state transfer runs, and ACTIVE once its
// state is complete (installed, or never needed because it already had
// data).
const (
	PhaseJoining SyncPhase = "JOINING"
	PhaseSyncing SyncPhase = "SYNCING"
	PhaseActive  SyncPhase = "ACTIVE"
)

// SyncProgress is the node's own join/resync state, with the progress of
// a running state transfer.
type SyncProgress struct {
	Phase SyncPhase `json:"phase"`
	// Source is the peer the state is copied from, while SYNCING.
	Source string `json:"source,omitempty"`
	// EntriesDone/EntriesTotal and BytesDone/BytesTotal count the
	// transfer; totals are 0 until the source has announced them.
	EntriesDone  int64     `json:"entries_done"`
	EntriesTotal int64     `json:"entries_total"`
	BytesDone    int64     `json:"bytes_done"`
	BytesTotal   int64     `json:"bytes_total"`
	Started      time.Time `json:"started,omitzero"`
	// Transfers counts completed state transfers since the node started.
	Transfers int `json:"transfers"`
	// LastError is the last failed attempt, if the current one has not
	// yet succeeded.
	LastError string `json:"last_error,omitempty"`
}

// ErrSyncBusy means a state transfer is already running.
var ErrSyncBusy = errors.New("nodestate: a state transfer is already running")
