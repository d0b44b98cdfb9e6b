package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrCompactBusy means a compaction round is already running on the
// node (HTTP 409 from POST /v1/store/compact). Test with errors.Is.
var ErrCompactBusy = errors.New("api: a compaction is already running")

// CompactResult is the answer of POST /v1/store/compact: what one
// compaction round did, as crdt.CompactStats reports it (the daemon
// converts one to the other, so the compiler keeps their fields the
// same).
type CompactResult struct {
	Started time.Time     `json:"started"`
	Took    time.Duration `json:"took_ns"`
	// Members is how many nodes' heads bounded the round (the node
	// itself included).
	Members int `json:"members"`
	// Frontier is how many DAG blocks every member had merged; Walked is
	// how many local blocks the round read to find them.
	Frontier int `json:"frontier"`
	Walked   int `json:"walked"`
	// BlocksDeleted raw blocks went; Pinned blocks stay because a live
	// value lives in them.
	BlocksDeleted int `json:"blocks_deleted"`
	Pinned        int `json:"pinned"`
	// MarkersDeleted processed markers went (those no walk can reach).
	MarkersDeleted int `json:"markers_deleted"`
	// ElementsDeleted dead set elements went, each with its tombstone;
	// TombstonesDeleted counts tombstones whose element was already gone.
	ElementsDeleted   int `json:"elements_deleted"`
	TombstonesDeleted int `json:"tombstones_deleted"`
	// MaxHold is the longest that the node's writes and merges waited
	// for one chunk of the round's deletes.
	MaxHold time.Duration `json:"max_hold_ns"`
	// BytesDeleted is what the round deleted: raw blocks and keys.
	BytesDeleted int64 `json:"bytes_deleted"`
	// HistoryBefore and HistoryAfter are the history's size on disk
	// (LevelDB's table files) around the round.
	HistoryBefore int64 `json:"history_before"`
	HistoryAfter  int64 `json:"history_after"`
	// Skipped says why the round did nothing ("" when it ran).
	Skipped string `json:"skipped,omitempty"`
}

// Compact runs one compaction round on the node and returns what it
// reclaimed; it returns when the round is over. An error wrapping
// ErrCompactBusy if a round is running already (the automatic policy's,
// or another client's).
func (c *Client) Compact(ctx context.Context) (*CompactResult, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/store/compact", nil, http.StatusOK)
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusConflict {
		return nil, busyError{ae}
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r CompactResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("POST /v1/store/compact: bad answer: %w", err)
	}
	return &r, nil
}

// busyError is the 409 of POST /v1/store/compact: the API's message,
// matching ErrCompactBusy.
type busyError struct{ *APIError }

func (e busyError) Unwrap() []error { return []error{e.APIError, ErrCompactBusy} }
