package httpapi

import (
	"context"
	"errors"
	"io"
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

// Backuper writes backups for GET /v1/store/backup.
type Backuper interface {
	// Backup writes a consistent copy of the node's data to w (a backup
	// file: node.Backup). Called from an HTTP handler goroutine; it
	// streams for as long as the copy takes, and ends early with ctx.
	Backup(ctx context.Context, w io.Writer) error
}

// registerStoreRoutes adds:
//
//	POST /v1/store/compact  run one compaction round; 200 with
//	                        api.CompactResult when it is over (Skipped
//	                        says why a round did nothing), 409 if one
//	                        runs already
//	GET  /v1/store/backup   a backup file of the node's data, streamed
//	                        (application/octet-stream); 503 if the node
//	                        cannot give a complete copy now (joining,
//	                        repairing)
func (a *server) registerStoreRoutes(mux *http.ServeMux) {
	if a.cfg.Backup != nil {
		mux.HandleFunc("GET /v1/store/backup", a.backup)
	}
	if a.cfg.Compactor == nil {
		return
	}
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

// backup streams a backup. A failure before the first byte is an error
// response; after it the stream is cut, and the file fails its checks
// (the snapshot's count and checksum come last), so a client cannot
// take a partial copy for a whole one.
func (a *server) backup(w http.ResponseWriter, r *http.Request) {
	sw := &startedWriter{w: w, start: func() {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="starling.backup"`)
		w.WriteHeader(http.StatusOK)
	}}
	err := a.cfg.Backup.Backup(r.Context(), sw)
	switch {
	case err == nil:
	case !sw.started:
		writeError(w, http.StatusServiceUnavailable, "cannot back up now: "+err.Error())
	default:
		a.log.Warn("backup cut off", "err", err)
		panic(http.ErrAbortHandler) // cut the stream: the client sees a truncated, failing file
	}
}

// startedWriter calls start before the first write.
type startedWriter struct {
	w       io.Writer
	start   func()
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	return s.w.Write(p)
}
