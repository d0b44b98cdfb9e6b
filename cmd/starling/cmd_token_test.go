package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestScopedTokens: a read token reads (GET, /metrics) and gets 403 for
// a write; a write token writes but cannot add peers; removing a token
// makes it fail on the running node; the admin token does everything.
func TestScopedTokens(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1", noAutoCompact)
	dir := n.Dir()
	add := func(role string) string {
		r := runApp(t, "", "token", "add", "--data", dir, "--role", role, "--name", "t-"+role)
		if r.code != 0 || len(strings.TrimSpace(r.stdout)) != 64 {
			t.Fatalf("token add --role %s: %+v", role, r)
		}
		return strings.TrimSpace(r.stdout)
	}
	read, write := add("read"), add("write")
	do := func(tok, method, path, body string) int {
		req, _ := http.NewRequest(method, "http://"+n.APIAddr()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		tok, method, path, body string
		want                    int
	}{
		{read, "GET", "/v1/status", "", 200},
		{read, "GET", "/metrics", "", 200},
		{read, "GET", "/v1/entities/tree", "", 200},
		{read, "PUT", "/v1/kv/a", "x", 403},
		{read, "POST", "/v1/entities", `{"parent":"/","type":"Site","name":"P"}`, 403},
		{read, "GET", "/v1/store/backup", "", 403},
		{write, "PUT", "/v1/kv/a", "x", 204},
		{write, "POST", "/v1/entities", `{"parent":"/","type":"Site","name":"P"}`, 201},
		{write, "POST", "/v1/peers", `{"addr":"/ip4/127.0.0.1/tcp/1"}`, 403},
		{n.Token(), "GET", "/v1/store/backup", "", 200},
		{"0000", "GET", "/v1/status", "", 401},
	} {
		if got := do(c.tok, c.method, c.path, c.body); got != c.want && !(c.want == 204 && got == 200) {
			t.Errorf("%s %s with the %s token: %d, want %d", c.method, c.path, map[string]string{read: "read", write: "write"}[c.tok], got, c.want)
		}
	}
	r := runApp(t, "", "token", "ls", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "t-read") || !strings.Contains(r.stdout, "write") || strings.Contains(r.stdout, read) {
		t.Errorf("token ls: %+v", r)
	}
	if r := runApp(t, "", "token", "rm", "--data", dir, "t-read"); r.code != 0 {
		t.Fatalf("token rm: %+v", r)
	}
	testutil.Eventually(t, 5*time.Second, "the removed token refused", func() bool { return do(read, "GET", "/v1/status", "") == 401 })
	if r := runApp(t, "", "token", "rm", "--data", dir, "t-read"); r.code == 0 || !strings.Contains(r.stderr, "token ls") {
		t.Errorf("token rm of a removed token: %+v", r)
	}
	if r := runApp(t, "", "token", "add", "--data", dir, "--role", "root"); r.code == 0 || !strings.Contains(r.stderr, "read, write or admin") {
		t.Errorf("token add --role root: %+v", r)
	}
}

// TestStatusOverPinnedTLS: a client command reaches a TLS API by --api
// with the fingerprint status printed, and through --data without it.
func TestStatusOverPinnedTLS(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1", noAutoCompact, node.WithConfig(func(c *node.Config) { c.APITLS = node.APITLSOn }))
	r := runApp(t, "", "status", "--data", n.Dir())
	if r.code != 0 || !strings.Contains(r.stdout, "https://") || !strings.Contains(r.stdout, n.APICertSHA256()) {
		t.Fatalf("status --data on a TLS node: %+v", r)
	}
	r = runApp(t, "", "status", "--api", n.APIAddr(), "--token", n.Token(), "--api-cert-sha256", n.APICertSHA256())
	if r.code != 0 {
		t.Errorf("status --api --api-cert-sha256: %+v", r)
	}
	r = runApp(t, "", "status", "--api", n.APIAddr(), "--token", n.Token())
	if r.code == 0 || !strings.Contains(r.stderr, "--api-cert-sha256") {
		t.Errorf("status --api without the fingerprint: %+v", r)
	}
}
