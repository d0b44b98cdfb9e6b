package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

type fakeReady struct{ err atomic.Pointer[error] }

func (f *fakeReady) Ready(context.Context) error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// TestProbesWithoutToken: /healthz and /readyz answer without the token,
// with one status word; every other path, method or suffix still needs
// the token.
func TestProbesWithoutToken(t *testing.T) {
	f := newFakeBackend()
	f.kv["secret/key"] = []byte(secretValue)
	ready := &fakeReady{}
	h, err := NewAPIHandler(APIConfig{Token: testToken, KV: f, Peers: f, Status: f, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	check := func(method, path string, code int, body string) {
		t.Helper()
		c, b := get(method, path)
		if c != code || (body != "" && b != body) {
			t.Errorf("%s %s = %d %q, want %d %q", method, path, c, b, code, body)
		}
		if strings.Contains(b, secretValue) {
			t.Errorf("%s %s leaks data: %q", method, path, b)
		}
	}
	check("GET", "/healthz", 200, "ok\n")
	check("HEAD", "/healthz", 200, "")
	check("GET", "/readyz", 200, "ready\n")
	check("GET", "/healthz?ready=1", 200, "ready\n")
	notReady := errors.New("store cannot write: disk full")
	ready.err.Store(&notReady)
	check("GET", "/readyz", 503, "unavailable\n")
	check("GET", "/healthz?ready=1", 503, "unavailable\n")
	check("GET", "/healthz", 200, "ok\n") // liveness does not depend on readiness
	for _, p := range []string{"/healthz/", "/healthz/x", "/readyz/..", "/v1/kv/secret/key", "/metrics", "/v1/status"} {
		check("GET", p, 401, "")
	}
	check("POST", "/healthz", 401, "")
	check("DELETE", "/readyz", 401, "")
}
