package httpapi

import (
	"errors"
	"net/http"

	"github.com/starling-sync/starling/nodestate"
)

// SyncControl is what the API needs for join/resync state.
type SyncControl interface {
	SyncProgress() nodestate.SyncProgress
	Resync(peerID string) error
}

// registerSyncRoutes adds:
//
//	GET  /v1/sync           SyncProgress: phase, source, progress, transfers
//	POST /v1/sync/resync    {"peer": "<peer ID>"} (optional): force a state
//	                        transfer; 202 with SyncProgress once it started,
//	                        409 if one is running
func (a *server) registerSyncRoutes(mux *http.ServeMux) {
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
		case errors.Is(err, nodestate.ErrSyncBusy):
			writeError(w, http.StatusConflict, err.Error()+": see `starling sync status`")
		case err != nil:
			writeError(w, http.StatusBadRequest, err.Error())
		default:
			writeJSON(w, http.StatusAccepted, a.cfg.Sync.SyncProgress())
		}
	})
}
