package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-datastore"
)

// Sentinel errors of the API, on the server (returned by backends) and
// on the client (wrapped by *APIError). Test with errors.Is.
var (
	// ErrNotFound means a key or peer does not exist (HTTP 404).
	ErrNotFound = errors.New("api: not found")
	// ErrUnauthorized means the API token was missing or wrong (HTTP 401).
	ErrUnauthorized = errors.New("api: unauthorized")
	// ErrBadRequest means the request was malformed (HTTP 400, 413).
	ErrBadRequest = errors.New("api: bad request")
)

// badRequest is a client mistake: its text is the whole message, and it
// matches ErrBadRequest.
type badRequest string

func (e badRequest) Error() string { return string(e) }

func (e badRequest) Is(target error) bool { return target == ErrBadRequest }

func BadRequestf(format string, args ...any) error {
	return badRequest(fmt.Sprintf(format, args...))
}

// Entry is one key and its value. In JSON the value is a string when it
// is valid UTF-8 and base64 (with "encoding": "base64") otherwise.
type Entry struct {
	Key   string
	Value []byte
}

type entryJSON struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (e Entry) MarshalJSON() ([]byte, error) {
	j := entryJSON{Key: e.Key, Value: string(e.Value)}
	if !utf8.Valid(e.Value) {
		j.Value = base64.StdEncoding.EncodeToString(e.Value)
		j.Encoding = "base64"
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	e.Key, e.Value = j.Key, []byte(j.Value)
	switch j.Encoding {
	case "":
	case "base64":
		v, err := base64.StdEncoding.DecodeString(j.Value)
		if err != nil {
			return fmt.Errorf("entry %q: %w", j.Key, err)
		}
		e.Value = v
	default:
		return fmt.Errorf("entry %q: unknown encoding %q", j.Key, j.Encoding)
	}
	return nil
}

// StatusInfo is the answer of GET /v1/status.
type StatusInfo struct {
	NodeID         string   `json:"node_id"`
	PeerID         string   `json:"peer_id"`
	Env            string   `json:"env"`
	PrivateNetwork bool     `json:"private_network"`
	Addrs          []string `json:"addrs"`
	APIAddr        string   `json:"api_addr"`
	// APICertSHA256 is the SHA-256 (hex) of the API's TLS certificate:
	// what a client pins (--api-cert-sha256); empty for plain HTTP.
	APICertSHA256 string `json:"api_cert_sha256,omitempty"`
	// NAT is the node's reachability and NAT traversal.
	NAT   NATStatus    `json:"nat"`
	Peers []PeerStatus `json:"peers"`
	Store StoreStatus  `json:"store"`
	Clock ClockStatus  `json:"clock"`
	// Links is how the round trips to the peers fit the election's
	// timings.
	Links LinkStatus `json:"links"`
	// Version is the node's build (`starling version` has the details).
	Version string `json:"version"`
}

// ClockStatus is a node's clock as the cluster sees it (node reports
// carry each node's clock).
type ClockStatus struct {
	// MedianOffsetMS is the median of the peers' clocks minus this
	// node's, over the peers heard in the last seconds (Peers) and this
	// node itself; MaxOffsetMS is the bound (negative: none).
	MedianOffsetMS float64 `json:"median_offset_ms"`
	MaxOffsetMS    float64 `json:"max_offset_ms"`
	Peers          int     `json:"peers"`
	// Skewed: the median is beyond the bound, so this node's clock is
	// the odd one out and it refuses writes until the clock is fixed.
	Skewed bool `json:"skewed"`
	// Disagreeing lists the peers whose clocks differ from this node's
	// by more than the bound ("ID +2h0m0s").
	Disagreeing []string `json:"disagreeing,omitempty"`
	// FarFuture counts the versions seen stamped beyond the bound ahead
	// of this node's clock (kept, but not followed by its clock).
	FarFuture uint64 `json:"far_future_versions"`
}

// LinkStatus is how the round trips to a node's peers (its liveness
// pings) fit its election timings: a link slower than the budget makes
// false failovers likely (election.Config.LinkBudget says why).
type LinkStatus struct {
	// Preset names the election timings: lan, wan, fast or custom.
	Preset string `json:"preset"`
	// BudgetMS is the highest round trip the timings take safely: a
	// quarter of their pause tolerance (timeout − heartbeat).
	BudgetMS float64 `json:"budget_ms"`
	// Measured is the number of connected peers with enough samples to
	// judge; WorstMS the highest judged round trip among them.
	Measured int     `json:"measured"`
	WorstMS  float64 `json:"worst_ms"`
	// Slow lists the peers whose round trips exceed the budget.
	Slow []SlowLink `json:"slow,omitempty"`
	// Advice says what to do when Slow is not empty.
	Advice string `json:"advice,omitempty"`
}

// SlowLink is a peer whose round trips exceed the election's budget.
type SlowLink struct {
	PeerID string `json:"peer_id"`
	NodeID string `json:"node_id,omitempty"` // "" until its first report
	// RTTMS is the judged round trip: the second highest of the recent
	// samples (one outlier does not count, two are a pattern);
	// MinRTTMS the lowest, so RTTMS − MinRTTMS is the jitter.
	RTTMS    float64 `json:"rtt_ms"`
	MinRTTMS float64 `json:"min_rtt_ms"`
}

// NATStatus is a node's reachability as it learnt it (AutoNAT) and
// what NAT traversal did.
type NATStatus struct {
	// Reachability is "public", "private" or "unknown" (not found out
	// yet; AutoNAT only tests public addresses, so nodes on private
	// ranges stay unknown).
	Reachability string `json:"reachability"`
	// ObservedAddrs are the public addresses peers see this node at.
	ObservedAddrs []string `json:"observed_addrs"`
	// ReachableAddrs and UnreachableAddrs: addresses AutoNAT v2
	// confirmed or refuted.
	ReachableAddrs   []string `json:"reachable_addrs,omitempty"`
	UnreachableAddrs []string `json:"unreachable_addrs,omitempty"`
	// RelayAddrs are its /p2p-circuit addresses (relay slots it holds).
	RelayAddrs []string `json:"relay_addrs,omitempty"`
	// Counters since start: hole punches (attempts and successes), and
	// what this node relayed for others.
	HolePunchAttempts  uint64 `json:"hole_punch_attempts"`
	HolePunchSuccesses uint64 `json:"hole_punch_successes"`
	RelayedBytes       uint64 `json:"relayed_bytes"`
	RelayCircuits      uint64 `json:"relay_circuits"`
	RelayReservations  uint64 `json:"relay_reservations"`
}

// PeerStatus describes a peer the node knows.
type PeerStatus struct {
	ID        string     `json:"id"`
	Addrs     []string   `json:"addrs"`
	Connected bool       `json:"connected"`
	Static    bool       `json:"static"`
	Blocked   bool       `json:"blocked,omitempty"`
	LastSeen  *time.Time `json:"last_seen,omitempty"`
	Failures  int        `json:"failures,omitempty"`
	NextDial  *time.Time `json:"next_dial,omitempty"`
	// Conn is how it is connected: "direct", "hole-punched" or "relayed"
	// (omitted when not connected).
	Conn string `json:"connection,omitempty"`
	// Problem names why it cannot be used ("network-key": another
	// private network key; "environment": another --env; "unreachable",
	// "refused", "peer-id", ...); DialError is the last error.
	Problem   string `json:"problem,omitempty"`
	DialError string `json:"dial_error,omitempty"`
}

type ListResponse struct {
	Entries []Entry `json:"entries"`
}

type PeersResponse struct {
	Peers []PeerStatus `json:"peers"`
}

type AddPeerRequest struct {
	Addr string `json:"addr"`
	// Save also keeps the peer in the node's config.json, so that it is
	// dialled again after a restart.
	Save bool `json:"save,omitempty"`
}

type AddPeerResponse struct {
	ID    string `json:"id"`
	Saved bool   `json:"saved,omitempty"` // in config.json
}

type ErrorResponse struct {
	Error string `json:"error"`
}

// LoginPath is the path of a one-time login URL.
func LoginPath(code string) string { return "/ui/login?code=" + url.QueryEscape(code) }

// LoginCodeResponse is the answer of POST /v1/web/login-codes.
type LoginCodeResponse struct {
	Code string `json:"code"`
	// Path is the one-time login URL's path: append it to the API's base.
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}

// StoreStatus is the replicated store's sync state, as crdt.Store.Status
// reports it (the daemon converts one to the other, so the compiler keeps
// their fields the same).
type StoreStatus struct {
	Heads        []string `json:"heads"`                 // CIDs of the current DAG heads
	MaxHeight    uint64   `json:"max_height"`            // height of the highest head
	QueuedJobs   int      `json:"queued_jobs"`           // DAG blocks waiting to be processed
	Dirty        bool     `json:"dirty"`                 // a DAG walk failed; repair pending
	Writable     bool     `json:"writable"`              // the datastore accepts writes
	WriteError   string   `json:"write_error,omitempty"` // why it does not (a full disk...), and what to do
	Syncing      bool     `json:"syncing"`               // a state transfer is being installed
	PendingOps   int64    `json:"pending_ops"`           // writes waiting for group commit
	ReceiveQueue int      `json:"receive_queue"`         // messages received, not yet processed
	Received     uint64   `json:"received"`              // messages received from peers
	Rejected     uint64   `json:"rejected"`              // malformed messages dropped
	Dropped      uint64   `json:"dropped"`               // messages dropped by a full receive queue
	Requested    uint64   `json:"requested"`             // blocks asked of peers in branch requests
	Served       uint64   `json:"served"`                // blocks sent to peers in branch replies
	Commits      uint64   `json:"commits"`               // deltas committed locally
	OpsCommitted uint64   `json:"ops_committed"`         // writes committed locally

	// Compaction: the live state's and the history's size on disk, the
	// rounds run and the bytes they gave back since the node started,
	// when the last round ended and what it gave back, and how many
	// nodes' heads bound what can be reclaimed.
	LiveBytes        int64     `json:"live_bytes"`
	HistoryBytes     int64     `json:"history_bytes"`
	CompactRounds    uint64    `json:"compact_rounds"`
	CompactReclaimed int64     `json:"compact_reclaimed_bytes"`
	LastCompacted    time.Time `json:"last_compacted,omitzero"`
	LastReclaimed    int64     `json:"last_reclaimed_bytes"`
	CompactMembers   int       `json:"compact_members"`
	// CompactEvicted members stayed away longer than the eviction time:
	// compaction no longer waits for them, and they take a state
	// transfer (keeping their own writes) when they come back.
	CompactEvicted int `json:"compact_evicted"`
	// Installs counts the state transfers the store has installed.
	Installs uint64 `json:"installs"`
}

// CleanKey checks an API key ("a/b", a leading '/' is allowed) and
// returns it without the leading '/'. Keys are go-datastore paths, so
// empty, "." and ".." segments are refused rather than silently cleaned.
func CleanKey(raw string) (string, error) {
	k := strings.TrimPrefix(raw, "/")
	if k == "" {
		return "", BadRequestf("empty key")
	}
	if datastore.NewKey(k).String() != "/"+k {
		return "", BadRequestf("key %q is not a clean path: use segments separated by single '/', without '.' or '..' segments or a trailing '/'", raw)
	}
	return k, nil
}
