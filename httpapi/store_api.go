package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/starling-sync/starling/api"
)

// Compactor runs compaction rounds for POST /v1/store/compact.
type Compactor interface {
	// Compact runs one round and returns what it did; an error wrapping
	// api.ErrCompactBusy if a round is running already. It is called
	// from an HTTP handler goroutine and blocks for the round (seconds
	// on a large history); ctx is the request's, and a round cut short
	// by it leaves a consistent store.
	Compact(ctx context.Context) (api.CompactResult, error)
}

// registerStoreRoutes adds:
//
//	POST /v1/store/compact  run one compaction round; 200 with
//	                        api.CompactResult when it is over (Skipped
//	                        says why a round did nothing), 409 if one
//	                        runs already
func (a *server) registerStoreRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/store/compact", func(w http.ResponseWriter, r *http.Request) {
		res, err := a.cfg.Compactor.Compact(r.Context())
		switch {
		case errors.Is(err, api.ErrCompactBusy):
			writeError(w, http.StatusConflict, "a compaction round is already running on this node (the automatic policy's or another request's): wait for it to finish and try again; `starling status` shows the last round")
		case err != nil:
			a.fail(w, r, err)
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
}
