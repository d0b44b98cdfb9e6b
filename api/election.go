package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/starling-sync/starling/election"
)

// Client side of the election API. Errors wrap the election's sentinels
// where the API answers with one: election.ErrNoGroup (unknown group),
// election.ErrNoCandidate (a candidate this node does not host),
// election.ErrCandidateExists (join of a candidate already joined), and
// ErrBadRequest (with election.ErrInvalid's message) for bad input.

func groupPath(group string) string { return "/v1/election/groups/" + url.PathEscape(group) }

func candidatePath(group, id string) string {
	return groupPath(group) + "/candidates/" + url.PathEscape(id)
}

// electionAPIError is an API error that also matches an election
// sentinel; its message is the API's.
type electionAPIError struct {
	api      *APIError
	sentinel error
}

func (e *electionAPIError) Error() string   { return e.api.Error() }
func (e *electionAPIError) Unwrap() []error { return []error{e.api, e.sentinel} }

// electionErr adds the election sentinel matching an API error.
func electionErr(err error, notFound error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.StatusCode {
	case http.StatusNotFound:
		return &electionAPIError{ae, notFound}
	case http.StatusConflict:
		return &electionAPIError{ae, election.ErrCandidateExists}
	}
	return err
}

// Cluster returns the cluster group and its leader as the node sees it.
func (c *Client) Cluster(ctx context.Context) (*ClusterInfo, error) {
	var ci ClusterInfo
	if err := c.getJSON(ctx, "/v1/cluster", &ci); err != nil {
		return nil, err
	}
	return &ci, nil
}

// ElectionGroups lists every group the node knows.
func (c *Client) ElectionGroups(ctx context.Context) ([]ElectionGroup, error) {
	var out struct {
		Groups []ElectionGroup `json:"groups"`
	}
	if err := c.getJSON(ctx, "/v1/election/groups", &out); err != nil {
		return nil, err
	}
	return out.Groups, nil
}

// ElectionGroup returns one group: members, health, availability,
// leader and term. An error wrapping election.ErrNoGroup if unknown.
func (c *Client) ElectionGroup(ctx context.Context, group string) (*ElectionGroup, error) {
	if err := election.CheckGroupName(group); err != nil {
		return nil, badRequest(err.Error())
	}
	var g ElectionGroup
	if err := c.getJSON(ctx, groupPath(group), &g); err != nil {
		return nil, electionErr(err, election.ErrNoGroup)
	}
	return &g, nil
}

func (c *Client) candidateCall(ctx context.Context, method, path string, body any, want int) (*ElectionCandidate, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, rd, want)
	if err != nil {
		return nil, electionErr(err, election.ErrNoCandidate)
	}
	defer resp.Body.Close()
	var ec ElectionCandidate
	if err := json.NewDecoder(resp.Body).Decode(&ec); err != nil {
		return nil, fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return &ec, nil
}

// JoinGroup makes the node host a new candidate of group (a service in
// any language uses the same HTTP call). The answer names its ID.
func (c *Client) JoinGroup(ctx context.Context, group string, req JoinRequest) (*ElectionCandidate, error) {
	if _, err := req.Spec(group); err != nil {
		return nil, badRequest(err.Error())
	}
	if err := election.CheckGroupName(group); err != nil {
		return nil, badRequest(err.Error())
	}
	return c.candidateCall(ctx, http.MethodPost, groupPath(group)+"/candidates", req, http.StatusCreated)
}

// Candidate returns one of the node's candidates: whether it leads, the
// term, whether it is active.
func (c *Client) Candidate(ctx context.Context, group, id string) (*ElectionCandidate, error) {
	return c.candidateCall(ctx, http.MethodGet, candidatePath(group, id), nil, http.StatusOK)
}

// ReportHealth reports a candidate healthy or not and renews its TTL.
func (c *Client) ReportHealth(ctx context.Context, group, id string, healthy bool) (*ElectionCandidate, error) {
	return c.candidateCall(ctx, http.MethodPut, candidatePath(group, id)+"/health", map[string]bool{"healthy": healthy}, http.StatusOK)
}

// SetAvailable marks a candidate ready to lead, or not.
func (c *Client) SetAvailable(ctx context.Context, group, id string, available bool) (*ElectionCandidate, error) {
	return c.candidateCall(ctx, http.MethodPut, candidatePath(group, id)+"/available", map[string]bool{"available": available}, http.StatusOK)
}

// LeaveGroup removes a candidate; a leader hands over at once.
func (c *Client) LeaveGroup(ctx context.Context, group, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, candidatePath(group, id), nil, http.StatusNoContent)
	if err != nil {
		return electionErr(err, election.ErrNoCandidate)
	}
	return resp.Body.Close()
}

// WatchOptions tune a watch stream.
type WatchOptions struct {
	// Keepalive asks the node to send a line at least this often.
	// Default 5s.
	Keepalive time.Duration
	// IdleTimeout ends the stream with ErrStreamIdle when no line arrives
	// for this long (a hung node, a silent network). Default 3×Keepalive.
	IdleTimeout time.Duration
}

// ErrStreamIdle means a watch stream received nothing for its
// IdleTimeout. Test with errors.Is.
var ErrStreamIdle = errors.New("api: watch stream idle")

// ErrStreamClosed means the node ended a watch stream because it is
// stopping. Test with errors.Is.
var ErrStreamClosed = errors.New("api: node stopping, watch stream closed")

// EventStream is a watch stream. Next returns its states; Close ends it.
type EventStream struct {
	body  io.ReadCloser
	sc    *bufio.Scanner
	idle  *time.Timer
	dur   time.Duration
	mu    sync.Mutex
	idled bool
}

// WatchGroup streams the state of group: first the current one, then
// every change. An error wrapping election.ErrNoGroup if unknown.
func (c *Client) WatchGroup(ctx context.Context, group string, opts WatchOptions) (*EventStream, error) {
	if err := election.CheckGroupName(group); err != nil {
		return nil, badRequest(err.Error())
	}
	return c.watch(ctx, groupPath(group)+"/watch", opts, election.ErrNoGroup)
}

// WatchCandidate streams the state of one of the node's candidates
// (is_leader, active, term).
func (c *Client) WatchCandidate(ctx context.Context, group, id string, opts WatchOptions) (*EventStream, error) {
	return c.watch(ctx, candidatePath(group, id)+"/watch", opts, election.ErrNoCandidate)
}

func (c *Client) watch(ctx context.Context, path string, opts WatchOptions, notFound error) (*EventStream, error) {
	if opts.Keepalive <= 0 {
		opts.Keepalive = DefaultKeepalive
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 3 * opts.Keepalive
	}
	resp, err := c.do(ctx, http.MethodGet, path+"?keepalive="+url.QueryEscape(opts.Keepalive.String()), nil, http.StatusOK)
	if err != nil {
		return nil, electionErr(err, notFound)
	}
	s := &EventStream{body: resp.Body, sc: bufio.NewScanner(resp.Body), dur: opts.IdleTimeout}
	s.sc.Buffer(make([]byte, 0, 4096), 1<<20)
	s.idle = time.AfterFunc(opts.IdleTimeout, func() {
		s.mu.Lock()
		s.idled = true
		s.mu.Unlock()
		_ = resp.Body.Close()
	})
	return s, nil
}

// Next returns the next state (keepalives are skipped). ErrStreamClosed
// when the node stops, ErrStreamIdle after IdleTimeout of silence, or
// the read error when the connection breaks.
func (s *EventStream) Next() (election.Event, error) {
	for s.sc.Scan() {
		s.idle.Reset(s.dur)
		var ev ElectionEvent
		if err := json.Unmarshal(s.sc.Bytes(), &ev); err != nil {
			return election.Event{}, fmt.Errorf("watch stream: bad line %q: %w", s.sc.Text(), err)
		}
		switch ev.Type {
		case "keepalive":
			continue
		case "closed":
			return election.Event{}, ErrStreamClosed
		}
		return ev.Event, nil
	}
	s.mu.Lock()
	idled := s.idled
	s.mu.Unlock()
	if idled {
		return election.Event{}, fmt.Errorf("%w: nothing for %s", ErrStreamIdle, s.dur)
	}
	if err := s.sc.Err(); err != nil {
		return election.Event{}, fmt.Errorf("watch stream: %w", err)
	}
	return election.Event{}, fmt.Errorf("watch stream: %w", io.ErrUnexpectedEOF)
}

// Close ends the stream.
func (s *EventStream) Close() error {
	s.idle.Stop()
	return s.body.Close()
}
