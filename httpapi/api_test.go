package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
)

// fakeBackend is an in-memory KV, PeerSet and StatusSource that counts
// the calls it serves.
type fakeBackend struct {
	mu    sync.Mutex
	kv    map[string][]byte
	peers map[peer.ID]peer.AddrInfo
	calls int
	// compactBusy: Compact answers that a round runs already.
	compactBusy bool
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{kv: map[string][]byte{}, peers: map[peer.ID]peer.AddrInfo{}}
}

func (f *fakeBackend) called() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeBackend) Get(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	v, ok := f.kv[key]
	if !ok {
		return nil, fmt.Errorf("key %q: %w", key, api.ErrNotFound)
	}
	return v, nil
}

func (f *fakeBackend) List(_ context.Context, prefix string) ([]api.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var out []api.Entry
	for k, v := range f.kv {
		if prefix == "" || strings.HasPrefix(k, prefix+"/") {
			out = append(out, api.Entry{Key: k, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b api.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (f *fakeBackend) Put(_ context.Context, key string, value []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.kv[key] = value
	return nil
}

func (f *fakeBackend) Delete(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	delete(f.kv, key)
	return nil
}

func (f *fakeBackend) Peers(context.Context) ([]api.PeerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var out []api.PeerStatus
	for id, ai := range f.peers {
		ps := api.PeerStatus{ID: id.String(), Static: true}
		for _, a := range ai.Addrs {
			ps.Addrs = append(ps.Addrs, a.String())
		}
		out = append(out, ps)
	}
	return out, nil
}

func (f *fakeBackend) AddPeer(_ context.Context, ai peer.AddrInfo) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.peers[ai.ID] = ai
	return nil
}

func (f *fakeBackend) RemovePeer(_ context.Context, id peer.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if _, ok := f.peers[id]; !ok {
		return fmt.Errorf("peer %s: %w", id, api.ErrNotFound)
	}
	delete(f.peers, id)
	return nil
}

func (f *fakeBackend) Status(context.Context) (api.StatusInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return api.StatusInfo{NodeID: "fake1", PeerID: "12D3KooWfake", Env: "test", Store: api.StoreStatus{MaxHeight: 7}}, nil
}

func (f *fakeBackend) Compact(context.Context) (api.CompactResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.compactBusy {
		return api.CompactResult{}, fmt.Errorf("store: %w", api.ErrCompactBusy)
	}
	return api.CompactResult{Members: 2, Frontier: 10, BlocksDeleted: 7, Pinned: 3, ElementsDeleted: 9, BytesDeleted: 4096,
		HistoryBefore: 10000, HistoryAfter: 6000}, nil
}

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// secretValue is stored in the fake; no unauthorised answer may contain it.
const secretValue = "the-secret-value"

func newTestAPI(t *testing.T) (*fakeBackend, *httptest.Server) {
	t.Helper()
	f := newFakeBackend()
	f.kv["secret/key"] = []byte(secretValue)
	h, err := NewAPIHandler(APIConfig{Token: testToken, KV: f, Peers: f, Status: f, Compactor: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f.calls = 0
	return f, srv
}

func TestNewAPIHandlerNeedsTokenAndBackends(t *testing.T) {
	f := newFakeBackend()
	if _, err := NewAPIHandler(APIConfig{KV: f, Peers: f, Status: f}); err == nil {
		t.Error("no token accepted")
	}
	if _, err := NewAPIHandler(APIConfig{Token: "t", Peers: f, Status: f}); err == nil {
		t.Error("no KV accepted")
	}
}

func TestAPIAuth(t *testing.T) {
	endpoints := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/kv", ""},
		{"GET", "/v1/kv?prefix=secret", ""},
		{"GET", "/v1/kv/secret/key", ""},
		{"PUT", "/v1/kv/secret/key", "overwritten"},
		{"DELETE", "/v1/kv/secret/key", ""},
		{"GET", "/v1/peers", ""},
		{"POST", "/v1/peers", `{"addr": "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"}`},
		{"DELETE", "/v1/peers/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA", ""},
		{"POST", "/v1/store/compact", ""},
		{"GET", "/no/such/endpoint", ""},
	}
	auths := []struct {
		name   string
		header string
		want   int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"basic scheme", "Basic " + testToken, http.StatusUnauthorized},
		{"wrong token", "Bearer " + strings.Repeat("0", 64), http.StatusUnauthorized},
		{"token prefix", "Bearer " + testToken[:63], http.StatusUnauthorized},
		{"token with suffix", "Bearer " + testToken + "0", http.StatusUnauthorized},
		{"good token", "Bearer " + testToken, 0},
		{"good token, lower-case scheme", "bearer " + testToken, 0},
	}
	for _, a := range auths {
		for _, ep := range endpoints {
			t.Run(a.name+"/"+ep.method+" "+ep.path, func(t *testing.T) {
				f, srv := newTestAPI(t)
				req, err := http.NewRequest(ep.method, srv.URL+ep.path, strings.NewReader(ep.body))
				if err != nil {
					t.Fatal(err)
				}
				if a.header != "" {
					req.Header.Set("Authorization", a.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if a.want != http.StatusUnauthorized {
					if resp.StatusCode == http.StatusUnauthorized {
						t.Fatalf("good token refused: %s", body)
					}
					return
				}
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", resp.StatusCode, body)
				}
				var e api.ErrorResponse
				dec := json.NewDecoder(strings.NewReader(string(body)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&e); err != nil || e.Error == "" {
					t.Errorf("body %q is not a JSON error: %v", body, err)
				}
				if strings.Contains(string(body), secretValue) || strings.Contains(string(body), testToken) {
					t.Errorf("401 body leaks data: %s", body)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate header")
				}
				if n := f.called(); n != 0 {
					t.Errorf("backend served %d calls for an unauthorised request", n)
				}
			})
		}
	}
}

func TestAPIWithClient(t *testing.T) {
	_, srv := newTestAPI(t)
	c := api.NewClient(srv.URL, testToken)
	ctx := context.Background()

	if err := c.Put(ctx, "site/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "/site/b", []byte{0xff, 0x00}); err != nil { // leading '/' allowed, binary value
		t.Fatal(err)
	}
	if err := c.Put(ctx, "siteX", []byte("other")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(ctx, "site/a")
	if err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	es, err := c.List(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Entry{{Key: "site/a", Value: []byte("1")}, {Key: "site/b", Value: []byte{0xff, 0x00}}}
	if !slices.EqualFunc(es, want, func(a, b api.Entry) bool { return a.Key == b.Key && string(a.Value) == string(b.Value) }) {
		t.Errorf("List(site) = %v, want %v", es, want)
	}
	all, err := c.List(ctx, "")
	if err != nil || len(all) != 4 {
		t.Errorf("List() = %v, %v; want 4 entries", all, err)
	}
	if err := c.Delete(ctx, "site/a"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, "site/a")
	var ae *api.APIError
	if !errors.Is(err, api.ErrNotFound) || !errors.As(err, &ae) || ae.StatusCode != 404 || !strings.Contains(err.Error(), `"site/a"`) {
		t.Errorf("Get(deleted) = %v, want a 404 naming the key", err)
	}

	st, err := c.Status(ctx)
	if err != nil || st.NodeID != "fake1" || st.Store.MaxHeight != 7 {
		t.Errorf("Status = %+v, %v", st, err)
	}

	id := testutil.PeerID(t)
	got, err := c.AddPeer(ctx, "/ip4/10.0.0.1/tcp/4001/p2p/"+id.String())
	if err != nil || got != id.String() {
		t.Fatalf("AddPeer = %q, %v", got, err)
	}
	ps, err := c.Peers(ctx)
	if err != nil || len(ps) != 1 || ps[0].ID != id.String() || !slices.Equal(ps[0].Addrs, []string{"/ip4/10.0.0.1/tcp/4001"}) {
		t.Errorf("Peers = %+v, %v", ps, err)
	}
	if err := c.RemovePeer(ctx, id.String()); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePeer(ctx, id.String()); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("RemovePeer(unknown) = %v, want api.ErrNotFound", err)
	}
	if err := c.RemovePeer(ctx, "not-a-peer"); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), `"not-a-peer"`) {
		t.Errorf("RemovePeer(garbage) = %v, want a bad request naming it", err)
	}
	if _, err := c.AddPeer(ctx, "/ip4/10.0.0.1/tcp/4001"); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "/p2p/") {
		t.Errorf("AddPeer(no id) = %v", err)
	}
	if _, err := c.Get(ctx, "a//b"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("Get(a//b) = %v, want api.ErrBadRequest", err)
	}

	wrong := api.NewClient(srv.URL, "wrong")
	if _, err := wrong.Get(ctx, "site/b"); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("wrong token: %v, want api.ErrUnauthorized", err)
	}
}

// do sends an authorised raw request and returns status and body.
func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPIErrors(t *testing.T) {
	pid := testutil.PeerID(t).String()
	tests := []struct {
		name, method, path, body string
		code                     int
		mention                  string
	}{
		{"missing key", "GET", "/v1/kv/nope", "", 404, `"nope"`},
		{"empty key", "GET", "/v1/kv/", "", 400, "empty key"},
		{"put empty key", "PUT", "/v1/kv/", "v", 400, "empty key"},
		{"dot segment", "GET", "/v1/kv/a/%2E%2E", "", 400, "clean path"},
		{"trailing slash", "PUT", "/v1/kv/a/", "v", 400, "clean path"},
		{"bad prefix", "GET", "/v1/kv?prefix=a//b", "", 400, "clean path"},
		{"too large", "PUT", "/v1/kv/big", strings.Repeat("x", DefaultMaxValueBytes+1), 413, "limit"},
		{"peer body not json", "POST", "/v1/peers", "addr=x", 400, `{"addr"`},
		{"peer unknown field", "POST", "/v1/peers", `{"address": "x"}`, 400, "address"},
		{"peer bad multiaddr", "POST", "/v1/peers", `{"addr": "/ip4/1.2.3.4/tcp/nope/p2p/` + pid + `"}`, 400, "/ip4/1.2.3.4/tcp/nope"},
		{"remove unknown peer", "DELETE", "/v1/peers/" + pid, "", 404, pid},
		{"remove bad id", "DELETE", "/v1/peers/xyz", "", 400, `"xyz"`},
		{"unknown endpoint", "GET", "/v2/kv", "", 404, "/v2/kv"},
		{"wrong method", "POST", "/v1/status", "", 404, "POST /v1/status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestAPI(t)
			code, body := do(t, srv, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d; body %s", code, tt.code, body)
			}
			var e api.ErrorResponse
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.mention) {
				t.Errorf("body %s: want a JSON error mentioning %q", body, tt.mention)
			}
		})
	}
}

func TestAPIPutReturnsNoContentAndStores(t *testing.T) {
	f, srv := newTestAPI(t)
	code, body := do(t, srv, "PUT", "/v1/kv/x/y", "hello")
	if code != http.StatusNoContent || body != "" {
		t.Fatalf("PUT = %d %q", code, body)
	}
	if string(f.kv["x/y"]) != "hello" {
		t.Errorf("stored %q", f.kv["x/y"])
	}
	code, body = do(t, srv, "GET", "/v1/kv/x/y", "")
	if code != 200 || body != "hello" {
		t.Errorf("GET = %d %q", code, body)
	}
}

func TestAPICompact(t *testing.T) {
	f, srv := newTestAPI(t)
	c := api.NewClient(srv.URL, testToken)
	ctx := context.Background()
	res, err := c.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlocksDeleted != 7 || res.ElementsDeleted != 9 || res.BytesDeleted != 4096 || res.HistoryAfter != 6000 || res.Skipped != "" {
		t.Errorf("Compact = %+v", res)
	}

	f.mu.Lock()
	f.compactBusy = true
	f.mu.Unlock()
	_, err = c.Compact(ctx)
	if !errors.Is(err, api.ErrCompactBusy) {
		t.Fatalf("Compact while busy = %v, want ErrCompactBusy", err)
	}
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || !strings.Contains(ae.Message, "already running") {
		t.Errorf("Compact while busy: %#v, want a 409 saying a round is already running", err)
	}

	// GET is not the way to compact.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/store/compact", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("GET /v1/store/compact answered 200")
	}
}

// TestUnauthorizedClosesTheConnection: a request without the right
// token gets its 401 and the connection is closed, so clients without
// the token cannot hold kept-alive connections (20k of them took every
// file descriptor, and a request with the token got no answer).
func TestUnauthorizedClosesTheConnection(t *testing.T) {
	_, srv := newTestAPI(t)
	for _, auth := range []string{"", "Authorization: Bearer wrong\r\n"} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"+auth+"\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("auth %q: status %d, close %v: want 401 and the connection closed", auth, resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("auth %q: the server kept the connection open (read: %v)", auth, err)
		}
	}
}

// TestWatchStreamsAreLimited: beyond MaxStreams, a watch stream (both
// watch handlers take a slot with holdStream) is refused with 429 Too
// Many Requests, a Retry-After and a message naming the limit and the fix (5,000 were accepted, ~88 KB each); a slot is free again once
// its stream ends.
func TestWatchStreamsAreLimited(t *testing.T) {
	a := &server{streams: make(chan struct{}, 1)}
	release, ok := a.holdStream(httptest.NewRecorder())
	if !ok {
		t.Fatal("the first stream was refused")
	}
	rec := httptest.NewRecorder()
	if _, ok := a.holdStream(rec); ok || rec.Code != http.StatusTooManyRequests {
		t.Fatalf("a second stream over the limit of 1: ok %v, %d %s; want refused with 429", ok, rec.Code, rec.Body)
	}
	var e api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("429 body %q: %v", rec.Body, err)
	}
	for _, want := range []string{"already serves 1,", "its limit", "close watch streams you no longer read"} {
		if !strings.Contains(e.Error, want) {
			t.Errorf("429 message %q does not say %q", e.Error, want)
		}
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("429 without a Retry-After header")
	}
	release()
	if release, ok := a.holdStream(httptest.NewRecorder()); !ok {
		t.Fatal("a stream was refused after the first ended")
	} else {
		release()
	}
}
