package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/p2p"
)

// DefaultMaxValueBytes bounds a value written through the API: well
// under the store's delta size cap (512 KiB) so one value always fits.
const DefaultMaxValueBytes = 256 << 10

// KV is the key-value store behind the API. Keys are clean
// slash-separated paths without the leading slash ("site/sensor1").
// Methods are called concurrently from HTTP handler goroutines and may
// block for as long as ctx allows.
type KV interface {
	// Get returns the value of key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the entries under prefix ("" for all), sorted by key.
	List(ctx context.Context, prefix string) ([]api.Entry, error)
	// Put writes key and returns once the write is durable locally.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key, durable on return.
	Delete(ctx context.Context, key string) error
}

// PeerSet is the peer management behind the API. Called concurrently.
type PeerSet interface {
	Peers(ctx context.Context) ([]api.PeerStatus, error)
	// AddPeer remembers ai as a static peer and dials it.
	AddPeer(ctx context.Context, ai peer.AddrInfo) error
	// RemovePeer forgets a peer; an error wrapping ErrNotFound if unknown.
	RemovePeer(ctx context.Context, id peer.ID) error
}

// PeerSaver is implemented by a PeerSet that can keep a peer in the
// node's configuration, so that it is dialled again after a restart
// (POST /v1/peers with "save": true).
type PeerSaver interface {
	SavePeer(addr string) error
}

// StatusSource reports the node's state for GET /v1/status.
type StatusSource interface {
	Status(ctx context.Context) (api.StatusInfo, error)
}

// APIConfig configures NewAPIHandler.
type APIConfig struct {
	// Token is the admin bearer token (the data directory's api.token).
	// Required.
	Token string
	// Tokens, if set, holds scoped tokens (read, write, admin) besides
	// Token: a request whose token's role is below what it needs gets
	// 403 (roleFor).
	Tokens TokenLookup
	// KV, Peers and Status serve the endpoints. Required.
	KV     KV
	Peers  PeerSet
	Status StatusSource
	// Entities serves the entity tree's endpoints (entity_api.go).
	// Optional: without it they are not registered.
	Entities EntityStore
	// Election serves the leader election's endpoints (election_api.go).
	// Optional: without it they are not registered.
	Election *election.Runner
	// Cluster serves /v1/cluster/status, history and events (web.go).
	// Optional: without it they are not registered.
	Cluster ClusterSource
	// Metrics serves GET /metrics (Prometheus), behind the token like
	// every endpoint. Optional.
	Metrics http.Handler
	// Web serves the web page under /ui/ and its login (web.go).
	// Optional.
	Web *WebUI
	// Sync serves /v1/sync and /v1/sync/resync (transfer_api.go).
	// Optional.
	Sync SyncControl
	// Compactor serves POST /v1/store/compact (store_api.go). Optional.
	Compactor Compactor
	// Backup serves GET /v1/store/backup (store_api.go). Optional.
	Backup Backuper
	// Ready answers GET /readyz, unauthenticated (health.go); without it
	// the node is ready whenever it serves. /healthz needs nothing.
	Ready Readiness
	// MaxValueBytes bounds PUT bodies. Default DefaultMaxValueBytes.
	MaxValueBytes int64
	// WatchHeartbeat is how often an idle watch stream (GET /v1/watch)
	// gets a comment line. Default DefaultWatchHeartbeat.
	WatchHeartbeat time.Duration
	// MaxStreams bounds the watch streams (entity and election) served
	// at once; one beyond gets 429 Too Many Requests, naming the limit.
	// Each holds a goroutine, a buffer of events and a connection (about
	// 90 KB). Default DefaultMaxStreams.
	MaxStreams int
	// Logger receives server-side errors. Default: discard.
	Logger *slog.Logger
}

// DefaultMaxStreams is the default of APIConfig.MaxStreams.
const DefaultMaxStreams = 256

type server struct {
	cfg     APIConfig
	log     *slog.Logger
	streams chan struct{} // a token per watch stream being served
}

// streamRetryAfter is the Retry-After (seconds) of a watch stream
// refused for the limit: long enough that a client retrying in a loop
// does not hammer the node, short enough to pick up a slot soon.
const streamRetryAfter = "5"

// holdStream takes a watch stream's slot; without one it answers 429
// Too Many Requests (the client's streams are the cause, and closing
// some is the fix; the node itself is fine) with the limit and what to
// do, and returns false. Call release when the stream ends.
func (a *server) holdStream(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case a.streams <- struct{}{}:
		return func() { <-a.streams }, true
	default:
		w.Header().Set("Retry-After", streamRetryAfter)
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many watch streams: this node already serves %d, its limit; close watch streams you no longer read (one stream per path is enough, or watch a common parent path), then retry (Retry-After: %ss)", cap(a.streams), streamRetryAfter))
		return nil, false
	}
}

// NewAPIHandler returns the HTTP API:
//
//	GET    /v1/status          node, peers and store state
//	GET    /v1/kv?prefix=P     list entries under P
//	GET    /v1/kv/{key...}     the raw value (404 if missing)
//	PUT    /v1/kv/{key...}     body = raw value; returns once durable
//	DELETE /v1/kv/{key...}
//	GET    /v1/peers
//	POST   /v1/peers           {"addr": "/ip4/.../tcp/.../p2p/<id>"}
//	DELETE /v1/peers/{id}
//
// With APIConfig.Entities, the entity tree. A ref names an entity by
// path ("/Factory/Line1", "/" is the root) or by ID, always in the
// query string (URL-encoded), so names may hold any character but '/'.
// Every write answers with its version {"timestamp": "<24 hex>",
// "writer": "<node ID>"}:
//
//	GET    /v1/entities?ref=R            entity with fields (default ref /)
//	POST   /v1/entities                  {"parent": R, "type": T, "name": N} (201)
//	PATCH  /v1/entities?ref=R            {"name": N} or {"parent": R}
//	DELETE /v1/entities?ref=R[&recursive=true]
//	POST   /v1/entities/restore          {"id": ID}
//	GET    /v1/entities/children?ref=R   {"entities": [...]} (no fields)
//	GET    /v1/entities/search?q=Q[&limit=N]  {"entities": [...], "more"}:
//	                                     paths or types containing Q
//	GET    /v1/entities/deleted[?path=P][&limit=N]  {"deleted": [...]}: what
//	                                     POST /v1/entities/restore brings back,
//	                                     newest delete first (default 1,000)
//	GET    /v1/entities/tree?ref=R[&depth=N][&fields=false]  nested
//	GET    /v1/fields?ref=R&field=F      value, timestamp, writer, default, concurrent
//	PUT    /v1/fields?ref=R&field=F      {"type": "int", "value": 42} or {"value": 42}
//	POST   /v1/fields/batch              {"writes": [{"ref", "field", "type"?, "value"}]}: one atomic write, one version
//	GET    /v1/schemas                   {"schemas": [...]}
//	PUT    /v1/schemas                   body = entity.Schema
//	GET    /v1/schemas/{type}
//	GET    /v1/watch?path=P              Server-Sent Events: "data: <entity.Event>" per change
//
// A value without "type" takes the type the entity's schema gives the
// field, else its JSON type; null clears the field. Entity errors carry
// a "code" naming the entity package's sentinel ("not_found",
// "exists", "schema", ...): 404 not_found/no_field/no_schema, 409
// exists/not_empty/cycle, 413 too_large, 400 for bad input.
//
// With APIConfig.Cluster, Metrics and Web (web.go, metrics.go): GET
// /v1/cluster/status|history|events (the cluster table, chart samples,
// recent transitions), GET /metrics (Prometheus), and the web page under
// /ui/ with its login (/ui/login is the one page served without a
// token; its session cookie then stands for the token).
//
// With APIConfig.Sync and Compactor: GET /v1/sync and POST
// /v1/sync/resync (transfer_api.go), POST /v1/store/compact
// (store_api.go).
//
// With APIConfig.Election, the leader election (election_api.go):
// /v1/cluster and /v1/election/groups/... (status, watch streams, and
// the candidate lifecycle: join, health, available, leave).
//
// Every request needs "Authorization: Bearer <token>"; without it the
// answer is 401 and nothing else. Errors are JSON {"error": "..."}.
func NewAPIHandler(cfg APIConfig) (http.Handler, error) {
	if cfg.Token == "" {
		return nil, errors.New("httpapi: API needs a token")
	}
	if cfg.KV == nil || cfg.Peers == nil || cfg.Status == nil {
		return nil, errors.New("httpapi: API needs KV, Peers and Status")
	}
	if cfg.MaxValueBytes <= 0 {
		cfg.MaxValueBytes = DefaultMaxValueBytes
	}
	if cfg.WatchHeartbeat <= 0 {
		cfg.WatchHeartbeat = DefaultWatchHeartbeat
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	a := &server{cfg: cfg, log: cfg.Logger, streams: make(chan struct{}, cfg.MaxStreams)}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.status)
	mux.HandleFunc("GET /v1/kv", a.list)
	mux.HandleFunc("GET /v1/kv/{key...}", a.get)
	mux.HandleFunc("PUT /v1/kv/{key...}", a.put)
	mux.HandleFunc("DELETE /v1/kv/{key...}", a.del)
	mux.HandleFunc("GET /v1/peers", a.peers)
	mux.HandleFunc("POST /v1/peers", a.addPeer)
	mux.HandleFunc("DELETE /v1/peers/{id}", a.removePeer)
	if cfg.Entities != nil {
		a.registerEntityRoutes(mux)
	}
	if cfg.Election != nil {
		a.registerElectionRoutes(mux)
	}
	if cfg.Cluster != nil {
		a.registerClusterRoutes(mux)
	}
	if cfg.Sync != nil {
		a.registerSyncRoutes(mux)
	}
	a.registerStoreRoutes(mux)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Web != nil {
		cfg.Web.register(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return a.probes(a.auth(mux)), nil
}

// TokenLookup finds scoped tokens. Lookup is called for every request
// whose token is not the admin token, from the request's goroutine.
type TokenLookup interface {
	Lookup(tok string) (TokenInfo, bool)
}

var _ TokenLookup = (*FileTokens)(nil)

func (a *server) auth(next http.Handler) http.Handler {
	want := []byte(a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		// The web page's login, and requests with its session cookie.
		if web := a.cfg.Web; web != nil && h == "" {
			if web.public(r) || web.authorized(r) {
				next.ServeHTTP(w, r)
				return
			}
			if strings.HasPrefix(r.URL.Path, "/ui/") {
				web.unauthorized(w, r)
				return
			}
		}
		// A client without the token gets its answer and the connection
		// is closed: kept alive, 20k of them held every file descriptor.
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("Connection", "close")
			w.Header().Set("WWW-Authenticate", `Bearer realm="starling"`)
			writeError(w, http.StatusUnauthorized, "missing API token: send `Authorization: Bearer <token>`; the token is in the node's data dir (api.token)")
			return
		}
		tok = strings.TrimSpace(tok)
		if subtle.ConstantTimeCompare([]byte(tok), want) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		var ti TokenInfo
		ok = false
		if a.cfg.Tokens != nil {
			ti, ok = a.cfg.Tokens.Lookup(tok)
		}
		if !ok {
			w.Header().Set("Connection", "close")
			w.Header().Set("WWW-Authenticate", `Bearer realm="starling", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "wrong API token: use the one in the node's data dir (api.token), or one made with `starling token add`")
			return
		}
		if need := roleFor(r); ti.Role < need {
			w.Header().Set("WWW-Authenticate", `Bearer realm="starling", error="insufficient_scope"`)
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %q has role %s; %s %s needs %s: use a token with that role (starling token add --role %s)", ti.Name, ti.Role, r.Method, r.URL.Path, need, need))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPrefix is CleanKey for list prefixes, where "" means everything.
func cleanPrefix(raw string) (string, error) {
	p := strings.Trim(raw, "/")
	if p == "" {
		return "", nil
	}
	return api.CleanKey(p)
}

func (a *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.cfg.Status.Status(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *server) list(w http.ResponseWriter, r *http.Request) {
	prefix, err := cleanPrefix(r.URL.Query().Get("prefix"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	es, err := a.cfg.KV.List(r.Context(), prefix)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if es == nil {
		es = []api.Entry{}
	}
	writeJSON(w, http.StatusOK, api.ListResponse{Entries: es})
}

func (a *server) get(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.cfg.KV.Get(r.Context(), key)
	if errors.Is(err, api.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("key %q not found", key))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(v)
}

func (a *server) put(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxValueBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value too large: the limit is %d bytes", tooBig.Limit))
		return
	}
	if err != nil {
		a.fail(w, r, api.BadRequestf("read body: %v", err))
		return
	}
	if err := a.cfg.KV.Put(r.Context(), key, v); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *server) del(w http.ResponseWriter, r *http.Request) {
	key, err := a.key(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.KV.Delete(r.Context(), key); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *server) key(r *http.Request) (string, error) {
	k := r.PathValue("key")
	if k == "" {
		return "", api.BadRequestf("empty key: use /v1/kv/<key>, or GET /v1/kv?prefix=<p> to list")
	}
	return api.CleanKey(k)
}

func (a *server) peers(w http.ResponseWriter, r *http.Request) {
	ps, err := a.cfg.Peers.Peers(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ps == nil {
		ps = []api.PeerStatus{}
	}
	writeJSON(w, http.StatusOK, api.PeersResponse{Peers: ps})
}

func (a *server) addPeer(w http.ResponseWriter, r *http.Request) {
	var req api.AddPeerRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, r, api.BadRequestf(`body must be {"addr": "<multiaddr>", "save": false}: %v`, err))
		return
	}
	ai, err := p2p.ParsePeerAddr(req.Addr)
	if err != nil {
		a.fail(w, r, api.BadRequestf("addr: %v", err))
		return
	}
	saver, canSave := a.cfg.Peers.(PeerSaver)
	if req.Save && !canSave {
		a.fail(w, r, api.BadRequestf("this node cannot save peers in its configuration: add it with --peer or in config.json"))
		return
	}
	if err := a.cfg.Peers.AddPeer(r.Context(), *ai); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Save {
		if err := saver.SavePeer(req.Addr); err != nil {
			a.fail(w, r, fmt.Errorf("added %s, but could not save it in the configuration: %w", ai.ID, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, api.AddPeerResponse{ID: ai.ID.String(), Saved: req.Save})
}

func (a *server) removePeer(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := peer.Decode(raw)
	if err != nil {
		a.fail(w, r, api.BadRequestf("%q is not a peer ID: %v", raw, err))
		return
	}
	err = a.cfg.Peers.RemovePeer(r.Context(), id)
	if errors.Is(err, api.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("peer %s is not known to this node", id))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fail answers with the status code that err's sentinel calls for.
func (a *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, api.ErrBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, api.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		a.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, code, err.Error())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
