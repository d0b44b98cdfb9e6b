package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
)

// The election's HTTP API, for services in any language (see
// registerElectionRoutes for the routes). Candidates are addressed by
// group and candidate ID ("<node-id>" or "<node-id>:<instance>").

// registerElectionRoutes adds:
//
//	GET    /v1/cluster                               the cluster group, its leader, is this node leader
//	GET    /v1/election/groups                       {"groups": [...]}
//	GET    /v1/election/groups/{group}               members, healthy, available, leader, term (404 unknown)
//	GET    /v1/election/groups/{group}/watch         JSON lines: current state, then every change
//	POST   /v1/election/groups/{group}/candidates    join (JoinRequest) -> 201 ElectionCandidate
//	GET    /v1/election/groups/{group}/candidates/{id}            am I leader, term, active
//	PUT    /v1/election/groups/{group}/candidates/{id}/health     {"healthy": bool}; renews the TTL
//	PUT    /v1/election/groups/{group}/candidates/{id}/available  {"available": bool}
//	DELETE /v1/election/groups/{group}/candidates/{id}            leave (a leader hands over at once)
//	GET    /v1/election/groups/{group}/candidates/{id}/watch      JSON lines for this candidate
//
// Watch streams take ?keepalive=DURATION (default 5s): a line is sent at
// least that often, so a client detects a hung node with a read timeout.
func (a *server) registerElectionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/cluster", a.cluster)
	mux.HandleFunc("GET /v1/election/groups", a.electionGroups)
	mux.HandleFunc("GET /v1/election/groups/{group}", a.electionGroup)
	mux.HandleFunc("GET /v1/election/groups/{group}/watch", a.electionWatch)
	mux.HandleFunc("POST /v1/election/groups/{group}/candidates", a.electionJoin)
	mux.HandleFunc("GET /v1/election/groups/{group}/candidates/{id}", a.electionCandidate)
	mux.HandleFunc("PUT /v1/election/groups/{group}/candidates/{id}/health", a.electionHealth)
	mux.HandleFunc("PUT /v1/election/groups/{group}/candidates/{id}/available", a.electionAvailable)
	mux.HandleFunc("DELETE /v1/election/groups/{group}/candidates/{id}", a.electionLeave)
	mux.HandleFunc("GET /v1/election/groups/{group}/candidates/{id}/watch", a.electionWatch)
}

// electionError maps the election's sentinels to API errors.
func electionError(err error) (int, string) {
	switch {
	case errors.Is(err, election.ErrInvalid), errors.Is(err, election.ErrReservedGroup):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, election.ErrNoGroup), errors.Is(err, election.ErrNoCandidate):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, election.ErrCandidateExists):
		return http.StatusConflict, err.Error() + ": leave it first, or join with another instance"
	case errors.Is(err, election.ErrClosed):
		return http.StatusServiceUnavailable, "the node is stopping"
	}
	return http.StatusInternalServerError, err.Error()
}

func (a *server) electionFail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := electionError(err)
	if code >= 500 {
		a.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, code, msg)
}

// group checks the {group} path value.
func (a *server) group(r *http.Request) (string, error) {
	g := r.PathValue("group")
	if err := election.CheckGroupName(g); err != nil {
		return "", err
	}
	return g, nil
}

func (a *server) cluster(w http.ResponseWriter, r *http.Request) {
	gs, err := a.cfg.Election.Group(election.ClusterGroup)
	if err != nil && !errors.Is(err, election.ErrNoGroup) {
		a.electionFail(w, r, err)
		return
	}
	cfg := a.cfg.Election.Config()
	if gs.Name == "" {
		gs = election.GroupStatus{Name: election.ClusterGroup, Leader: election.Leadership{Group: election.ClusterGroup}}
	}
	writeJSON(w, http.StatusOK, api.ClusterInfo{
		NodeID: cfg.NodeID, PeerID: cfg.Peer, Leader: gs.Leader,
		IsLeader: gs.Leader.Is(cfg.NodeID, cfg.Peer), Group: api.NewElectionGroup(gs),
	})
}

func (a *server) electionGroups(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Groups []api.ElectionGroup `json:"groups"`
	}{Groups: []api.ElectionGroup{}}
	for _, gs := range a.cfg.Election.Groups() {
		out.Groups = append(out.Groups, api.NewElectionGroup(gs))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *server) electionGroup(w http.ResponseWriter, r *http.Request) {
	g, err := a.group(r)
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	gs, err := a.cfg.Election.Group(g)
	if err != nil {
		a.electionFail(w, r, a.withKnownGroups(err))
		return
	}
	writeJSON(w, http.StatusOK, api.NewElectionGroup(gs))
}

// withKnownGroups adds the known groups to an ErrNoGroup.
func (a *server) withKnownGroups(err error) error {
	if !errors.Is(err, election.ErrNoGroup) {
		return err
	}
	var names []string
	for _, gs := range a.cfg.Election.Groups() {
		names = append(names, gs.Name)
	}
	return fmt.Errorf("%w (known groups: %s)", err, strings.Join(names, ", "))
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, shape string) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body must be %s: %v", election.ErrInvalid, shape, err)
	}
	return nil
}

func (a *server) electionJoin(w http.ResponseWriter, r *http.Request) {
	g, err := a.group(r)
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	var req api.JoinRequest
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req, `{"instance": "", "kind": "service|endpoint", "mode": "LeaderOnly|AllWarm", "ttl": "5s", "available": false}`); err != nil {
			a.electionFail(w, r, err)
			return
		}
	}
	spec, err := req.Spec(g)
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	c, err := a.cfg.Election.Join(spec)
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	st, err := c.Status()
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.NewElectionCandidate(st))
}

func (a *server) candidateRef(r *http.Request) (group, id string, err error) {
	if group, err = a.group(r); err != nil {
		return "", "", err
	}
	return group, r.PathValue("id"), nil
}

func (a *server) electionCandidate(w http.ResponseWriter, r *http.Request) {
	g, id, err := a.candidateRef(r)
	if err == nil {
		var st election.CandidateStatus
		if st, err = a.cfg.Election.Candidate(g, id); err == nil {
			writeJSON(w, http.StatusOK, api.NewElectionCandidate(st))
			return
		}
	}
	a.electionFail(w, r, err)
}

func (a *server) electionHealth(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Healthy *bool `json:"healthy"`
	}
	a.candidateUpdate(w, r, &req, `{"healthy": true}`, func(g, id string) error {
		if req.Healthy == nil {
			return fmt.Errorf("%w: body must be {\"healthy\": true|false}", election.ErrInvalid)
		}
		return a.cfg.Election.ReportHealth(g, id, *req.Healthy)
	})
}

func (a *server) electionAvailable(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Available *bool `json:"available"`
	}
	a.candidateUpdate(w, r, &req, `{"available": true}`, func(g, id string) error {
		if req.Available == nil {
			return fmt.Errorf("%w: body must be {\"available\": true|false}", election.ErrInvalid)
		}
		return a.cfg.Election.SetAvailable(g, id, *req.Available)
	})
}

func (a *server) candidateUpdate(w http.ResponseWriter, r *http.Request, body any, shape string, f func(g, id string) error) {
	g, id, err := a.candidateRef(r)
	if err == nil {
		err = decodeBody(w, r, body, shape)
	}
	if err == nil {
		err = f(g, id)
	}
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	st, err := a.cfg.Election.Candidate(g, id)
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewElectionCandidate(st))
}

func (a *server) electionLeave(w http.ResponseWriter, r *http.Request) {
	g, id, err := a.candidateRef(r)
	if err == nil {
		err = a.cfg.Election.Leave(g, id)
	}
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// electionWatch streams a group's or a candidate's state as JSON lines
// until the client goes away or the node stops.
func (a *server) electionWatch(w http.ResponseWriter, r *http.Request) {
	g, err := a.group(r)
	if err != nil {
		a.electionFail(w, r, err)
		return
	}
	keepalive := api.DefaultKeepalive
	if s := r.URL.Query().Get("keepalive"); s != "" {
		if keepalive, err = time.ParseDuration(s); err != nil || keepalive < api.MinKeepalive {
			a.electionFail(w, r, fmt.Errorf("%w: keepalive %q: use a duration of at least %s", election.ErrInvalid, s, api.MinKeepalive))
			return
		}
	}
	release, ok := a.holdStream(w)
	if !ok {
		return
	}
	defer release()
	var watcher *election.Watcher
	if id := r.PathValue("id"); id != "" {
		if watcher, err = a.cfg.Election.WatchCandidate(g, id); err != nil {
			a.electionFail(w, r, err)
			return
		}
	} else {
		if _, err := a.cfg.Election.Group(g); err != nil {
			a.electionFail(w, r, a.withKnownGroups(err))
			return
		}
		watcher = a.cfg.Election.Watch(g)
	}
	defer watcher.Close()

	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(typ string, ev election.Event) bool {
		if err := enc.Encode(api.ElectionEvent{Type: typ, Event: ev}); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if !send("keepalive", watcher.Peek()) {
				return
			}
			continue
		case <-watcher.Changed():
		}
		ev, ok, err := watcher.Poll()
		if err != nil {
			send("closed", watcher.Peek())
			return
		}
		if !ok {
			continue
		}
		if !send("state", ev) {
			return
		}
		tick.Reset(keepalive)
	}
}
