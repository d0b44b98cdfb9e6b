package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// SyncControl is what the API needs for join/resync state.
type SyncControl interface {
	SyncProgress() SyncProgress
	Resync(peerID string) error
}

// registerSyncRoutes adds:
//
//	GET  /v1/sync           SyncProgress: phase, source, progress, transfers
//	POST /v1/sync/resync    {"peer": "<peer ID>"} (optional): force a state
//	                        transfer; 202 with SyncProgress once it started,
//	                        409 if one is running
func (a *api) registerSyncRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sync", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.cfg.Sync.SyncProgress())
	})
	mux.HandleFunc("POST /v1/sync/resync", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Peer string `json:"peer"`
		}
		if r.ContentLength != 0 {
			if err := decodeJSON(w, r, 4096, &req, `{"peer": "<peer ID>"} or nothing`); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		err := a.cfg.Sync.Resync(req.Peer)
		switch {
		case errors.Is(err, ErrSyncBusy):
			writeError(w, http.StatusConflict, err.Error()+": see `starling sync status`")
		case err != nil:
			writeError(w, http.StatusBadRequest, err.Error())
		default:
			writeJSON(w, http.StatusAccepted, a.cfg.Sync.SyncProgress())
		}
	})
}

// SyncProgress returns the node's join/resync state.
func (c *Client) SyncProgress(ctx context.Context) (SyncProgress, error) {
	var p SyncProgress
	err := c.getJSON(ctx, "/v1/sync", &p)
	return p, err
}

// Resync starts a full state transfer on the node, from peerID or any
// connected peer ("").
func (c *Client) Resync(ctx context.Context, peerID string) (SyncProgress, error) {
	body, _ := json.Marshal(map[string]string{"peer": peerID})
	resp, err := c.do(ctx, http.MethodPost, "/v1/sync/resync", bytes.NewReader(body), http.StatusAccepted)
	if err != nil {
		return SyncProgress{}, err
	}
	defer resp.Body.Close()
	var p SyncProgress
	err = json.NewDecoder(resp.Body).Decode(&p)
	return p, err
}
