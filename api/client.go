package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrNoNode means no node is running on a data directory (no api.json).
// Test with errors.Is.
var ErrNoNode = errors.New("api: no running node")

// APIInfo is the content of DIR/api.json, written by a running node.
type APIInfo struct {
	Addr string `json:"addr"` // host:port the API is bound to
	PID  int    `json:"pid"`
	// CertSHA256 is the SHA-256 (hex) of the API's TLS certificate when
	// it serves HTTPS; empty for plain HTTP.
	CertSHA256 string `json:"cert_sha256,omitempty"`
}

// Alive reports whether the process that wrote the file still runs.
func (i *APIInfo) Alive() bool { return processAlive(i.PID) }

// ReadAPIInfo reads DIR/api.json; an error wrapping ErrNoNode if the
// file does not exist.
func ReadAPIInfo(dir string) (*APIInfo, error) {
	path := filepath.Join(dir, APIFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, noNodeError(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var info APIInfo
	if err := json.Unmarshal(b, &info); err != nil || info.Addr == "" {
		return nil, fmt.Errorf("%s is damaged (%v): delete it and restart the node", path, err)
	}
	return &info, nil
}

// noNodeError explains a data dir with no running node. Only a dir that
// holds a node (its config.json) is told to start it: `starling run` on a
// mistyped path would make a new node there.
func noNodeError(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return fmt.Errorf("%w for %s: start it with `starling run --data %s`", ErrNoNode, dir, dir)
	}
	what := "has no node (no " + ConfigFile + ")"
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		what = "does not exist"
	}
	msg := fmt.Sprintf("%s %s.", dir, what)
	if near := nodeDirsNear(dir); len(near) > 0 {
		msg += fmt.Sprintf(" Did you mean --data %s?", strings.Join(near, " or --data "))
	}
	return fmt.Errorf("%w: %s To make a new node there: `starling init --data %s`, then `starling run --data %s`", ErrNoNode, msg, dir, dir)
}

// nodeDirsNear lists up to 3 sibling directories of dir that hold a node
// and whose names are a few edits from dir's, nearest first.
func nodeDirsNear(dir string) []string {
	parent, base := filepath.Split(filepath.Clean(dir))
	if parent == "" {
		parent = "."
	}
	ents, err := os.ReadDir(parent)
	if err != nil || len(ents) > 1000 {
		return nil
	}
	type cand struct {
		path string
		d    int
	}
	var cs []cand
	limit := max(2, len(base)/3)
	for _, e := range ents {
		if !e.IsDir() || e.Name() == base {
			continue
		}
		d := editDistance(strings.ToLower(base), strings.ToLower(e.Name()))
		if d > limit {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if _, err := os.Stat(filepath.Join(p, ConfigFile)); err == nil {
			cs = append(cs, cand{p, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, cs[i].path)
	}
	return out
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}

// Client talks to a node's HTTP API. It is safe for concurrent use.
type Client struct {
	base  string // "http://host:port"
	token string
	hc    *http.Client
	dir   string // data dir, when made by ClientFromDataDir (for messages)
	pid   int
}

// NewClient returns a client for the API at addr ("host:port" or an
// http:// URL) using token.
func NewClient(addr, token string) *Client {
	base := strings.TrimRight(addr, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "http://" + base
	}
	return &Client{
		base:  base,
		token: token,
		// No overall timeout: a Put waits for durability and callers
		// bound it with their context.
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // the API is local; never go through a proxy
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
}

// NewPinnedClient returns a client for an API that serves HTTPS with the
// certificate whose SHA-256 (hex, as `starling status` shows it; colons
// and case do not matter) is certSHA256, such as a node's self-signed
// one: the certificate is trusted by that fingerprint alone, not by a CA.
func NewPinnedClient(addr, token, certSHA256 string) *Client {
	c := NewClient(addr, token)
	c.base = "https://" + strings.TrimPrefix(strings.TrimPrefix(c.base, "http://"), "https://")
	want := normalizeFingerprint(certSHA256)
	c.hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{
		// Verification is the pin below, not a CA chain and host name.
		InsecureSkipVerify: true, //nolint:gosec // pinned in VerifyPeerCertificate
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				sum := sha256.Sum256(raw[0])
				if hex.EncodeToString(sum[:]) == want {
					return nil
				}
			}
			return fmt.Errorf("%w (pinned sha256 %s): the node made a new certificate, or this is not the node; compare with `starling status` on it", ErrCertMismatch, want)
		},
	}
	return c
}

// ErrCertMismatch means an API's TLS certificate is not the pinned one.
var ErrCertMismatch = errors.New("api: the API's TLS certificate is not the pinned one")

// normalizeFingerprint lowercases a hex fingerprint and drops colons.
func normalizeFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}

// ClientFromDataDir returns a client for the node running on dir: the
// address comes from DIR/api.json and the token from DIR/api.token; an
// API serving HTTPS is pinned to the certificate api.json names.
func ClientFromDataDir(dir string) (*Client, error) {
	info, err := ReadAPIInfo(dir)
	if err != nil {
		return nil, err
	}
	tok, err := ReadToken(dir)
	if err != nil {
		return nil, err
	}
	c := NewClient(info.Addr, tok)
	if info.CertSHA256 != "" {
		c = NewPinnedClient(info.Addr, tok, info.CertSHA256)
	}
	c.dir, c.pid = dir, info.PID
	return c, nil
}

// Addr is the API's base URL.
func (c *Client) Addr() string { return c.base }

// CloseIdleConnections releases the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// APIError is an error answer of the API. It wraps ErrNotFound (404),
// ErrUnauthorized (401) or ErrBadRequest (400, 413) for errors.Is.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	if e.StatusCode == http.StatusUnauthorized {
		return "API refused the token: " + e.Message
	}
	return e.Message
}

// Unwrap maps the status code to a sentinel.
func (e *APIError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return ErrBadRequest
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode == want {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e ErrorResponse
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusBadRequest && bytes.Contains(b, []byte("HTTP request to an HTTPS server")) {
			e.Error = fmt.Sprintf("the node API at %s serves HTTPS: give its certificate fingerprint with --api-cert-sha256 (the node's `starling status` shows it), or use --data on its machine", c.base)
		}
	}
	return nil, &APIError{StatusCode: resp.StatusCode, Message: e.Error}
}

// unreachable explains a failed connection, with a hint when api.json
// is probably left over from a node that was killed.
func (c *Client) unreachable(err error) error {
	if errors.Is(err, ErrCertMismatch) {
		return fmt.Errorf("node API at %s: %w", c.base, err)
	}
	var hdr tls.RecordHeaderError
	if errors.As(err, &hdr) {
		return fmt.Errorf("node API at %s does not speak TLS: it serves plain HTTP; drop --api-cert-sha256 (or turn its api_tls on): %w", c.base, err)
	}
	msg := fmt.Sprintf("cannot reach the node API at %s: %v", c.base, err)
	if c.dir != "" {
		if c.pid > 0 && !processAlive(c.pid) {
			msg += fmt.Sprintf(" (process %d from %s is gone: the node was not stopped cleanly; start it again with `starling run --data %s`)", c.pid, filepath.Join(c.dir, APIFile), c.dir)
		} else {
			msg += fmt.Sprintf(": is the node on %s running?", c.dir)
		}
	} else {
		msg += ": check --api, and that the node is running"
	}
	return &unreachableError{msg: msg, err: err}
}

// ErrUnreachable means the node's API could not be reached (no answer
// at its address): the node is not running, or is still starting.
// Test with errors.Is.
var ErrUnreachable = errors.New("api: node unreachable")

type unreachableError struct {
	msg string
	err error
}

func (e *unreachableError) Error() string        { return e.msg }
func (e *unreachableError) Unwrap() error        { return e.err }
func (e *unreachableError) Is(target error) bool { return target == ErrUnreachable }

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: bad answer: %w", path, err)
	}
	return nil
}

func keyPath(key string) (string, error) {
	k, err := CleanKey(key)
	if err != nil {
		return "", err
	}
	segs := strings.Split(k, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/kv/" + strings.Join(segs, "/"), nil
}

// Status returns the node's state.
func (c *Client) Status(ctx context.Context) (*StatusInfo, error) {
	var st StatusInfo
	if err := c.getJSON(ctx, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Get returns the value of key; an error wrapping ErrNotFound if missing.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodGet, p, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// List returns the entries under prefix ("" for all).
func (c *Client) List(ctx context.Context, prefix string) ([]Entry, error) {
	var lr ListResponse
	if err := c.getJSON(ctx, "/v1/kv?prefix="+url.QueryEscape(prefix), &lr); err != nil {
		return nil, err
	}
	return lr.Entries, nil
}

// Put writes key=value and returns once the write is durable on the node.
func (c *Client) Put(ctx context.Context, key string, value []byte) error {
	p, err := keyPath(key)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, p, bytes.NewReader(value), http.StatusNoContent)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key string) error {
	p, err := keyPath(key)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodDelete, p, nil, http.StatusNoContent)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Peers lists the peers the node knows.
func (c *Client) Peers(ctx context.Context) ([]PeerStatus, error) {
	var pr PeersResponse
	if err := c.getJSON(ctx, "/v1/peers", &pr); err != nil {
		return nil, err
	}
	return pr.Peers, nil
}

// AddPeer adds a static peer (a multiaddr ending in /p2p/<id>) and
// returns its peer ID. The node checks the address: a malformed one is
// an error wrapping ErrBadRequest that says what is wrong.
func (c *Client) AddPeer(ctx context.Context, addr string) (string, error) {
	return c.addPeer(ctx, AddPeerRequest{Addr: addr})
}

// AddPeerSaved is AddPeer that also keeps the peer in the node's
// config.json, so that the node dials it again after a restart.
func (c *Client) AddPeerSaved(ctx context.Context, addr string) (string, error) {
	return c.addPeer(ctx, AddPeerRequest{Addr: addr, Save: true})
}

func (c *Client) addPeer(ctx context.Context, req AddPeerRequest) (string, error) {
	b, _ := json.Marshal(req)
	resp, err := c.do(ctx, http.MethodPost, "/v1/peers", bytes.NewReader(b), http.StatusOK)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var ar AddPeerResponse
	if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
		return "", fmt.Errorf("POST /v1/peers: bad answer: %w", err)
	}
	return ar.ID, nil
}

// RemovePeer forgets a peer; an error wrapping ErrNotFound if unknown.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/peers/"+url.PathEscape(id), nil, http.StatusNoContent)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// ClusterStatus returns the cluster table: mode, leader and every node's
// state, sync health and counters (GET /v1/cluster/status).
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	var cs ClusterStatus
	if err := c.getJSON(ctx, "/v1/cluster/status", &cs); err != nil {
		return nil, err
	}
	return &cs, nil
}

// ClusterEvents returns recent node-state transitions and leadership
// changes.
func (c *Client) ClusterEvents(ctx context.Context) (*ClusterEvents, error) {
	var ev ClusterEvents
	if err := c.getJSON(ctx, "/v1/cluster/events", &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// ClusterHistory returns the samples behind the web page's charts
// (GET /v1/cluster/history): per node, writes/s in and out and the
// replication latency, one sample per report interval.
func (c *Client) ClusterHistory(ctx context.Context) (*ClusterHistory, error) {
	var h ClusterHistory
	if err := c.getJSON(ctx, "/v1/cluster/history", &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// WebLoginURL asks the node for a one-time login URL of its web page.
func (c *Client) WebLoginURL(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/web/login-codes", nil, http.StatusCreated)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var lc LoginCodeResponse
	if err := json.NewDecoder(resp.Body).Decode(&lc); err != nil {
		return "", fmt.Errorf("POST /v1/web/login-codes: bad answer: %w", err)
	}
	return c.base + lc.Path, nil
}

// Metrics returns the Prometheus text of GET /metrics.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics", nil, http.StatusOK)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// ReadToken reads the API token of the data directory dir.
func ReadToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s is missing: is %s a starling data dir? (create one with `starling init --data %s`)", ErrNotInitialised, path, dir, dir)
	}
	if err != nil {
		return "", fmt.Errorf("read API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("API token file %s is empty: delete it and run `starling run --data %s` to create a new one", path, dir)
	}
	return tok, nil
}
