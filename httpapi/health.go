package httpapi

import (
	"context"
	"net/http"
)

// Readiness says whether the node can take traffic, for GET /readyz.
// Called concurrently from handler goroutines; it must be cheap and not
// block (probes call it every few seconds).
type Readiness interface {
	// Ready returns nil when the node serves reads and writes: its store
	// writes and it is ACTIVE (not joining or resyncing). The error says
	// why not; it is logged at debug, never sent to the prober.
	Ready(ctx context.Context) error
}

// Probe paths. They answer without the API token, so that load
// balancers and orchestrators can probe a node they hold no secret for,
// and so they say nothing beyond one status word.
const (
	// LivePath answers 200 "ok" whenever the process serves HTTP.
	LivePath = "/healthz"
	// ReadyPath answers 200 "ready" when Readiness.Ready is nil and 503
	// "unavailable" otherwise; so does LivePath with ?ready=1.
	ReadyPath = "/readyz"
)

// probes answers GET and HEAD of the probe paths before auth, and hands
// every other request to next. Only these two exact paths are exempt.
func (a *server) probes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if (p != LivePath && p != ReadyPath) || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if p == LivePath && r.URL.Query().Get("ready") == "" {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		var err error
		if a.cfg.Ready != nil {
			err = a.cfg.Ready.Ready(r.Context())
		}
		if err != nil {
			a.log.Debug("readiness probe: not ready", "cause", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unavailable\n"))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ready\n"))
	})
}
