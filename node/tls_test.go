package node_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// An API reachable from other machines serves HTTPS with a self-signed
// certificate that clients pin: the data dir's client and Node.Client
// work, plain HTTP and another pin do not, and a restart keeps the
// certificate. On loopback it stays plain HTTP unless api_tls is on.
func TestAPIServesTLSBeyondLoopback(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "n1")
	nodetest.Init(t, dir, "n1")
	open := func(mode string) *node.Node {
		return nodetest.Open(t, dir, node.WithConfig(func(c *node.Config) { c.APIAddr, c.APITLS = "0.0.0.0:0", mode }))
	}
	n := open("")
	sha := n.APICertSHA256()
	if len(sha) != 64 {
		t.Fatalf("API certificate fingerprint %q: want TLS on 0.0.0.0", sha)
	}
	cl, err := api.ClientFromDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.APICertSHA256 != sha || !strings.HasPrefix(cl.Addr(), "https://") {
		t.Fatalf("status over the pinned client: %+v, %v", st, err)
	}
	if _, err := n.Client().Status(ctx); err != nil {
		t.Errorf("Node.Client: %v", err)
	}
	if resp, err := http.Get("http://" + n.APIAddr() + "/v1/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS API: %d", resp.StatusCode)
		}
	}
	other := strings.Repeat("ab", 32)
	if _, err := api.NewPinnedClient(n.APIAddr(), n.Token(), other).Status(ctx); !errors.Is(err, api.ErrCertMismatch) {
		t.Errorf("another pin: %v, want ErrCertMismatch", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open("")
	if n.APICertSHA256() != sha {
		t.Errorf("the certificate changed across a restart: %s, was %s", n.APICertSHA256(), sha)
	}
	_ = n.Close()
	if n = open(node.APITLSOff); n.APICertSHA256() != "" {
		t.Errorf("api_tls off still serves TLS")
	}
	_ = n.Close()
	lo := nodetest.Start(t, "n2")
	if lo.APICertSHA256() != "" {
		t.Error("a loopback API serves TLS by default")
	}
	on := nodetest.Start(t, "n3", node.WithConfig(func(c *node.Config) { c.APITLS = node.APITLSOn }))
	if on.APICertSHA256() == "" {
		t.Error("api_tls on: no TLS on loopback")
	} else if _, err := on.Client().Status(ctx); err != nil {
		t.Errorf("api_tls on: %v", err)
	}
}

// A client that speaks plain HTTP to a TLS API is told what to give.
func TestPlainClientToTLSAPIIsTold(t *testing.T) {
	n := nodetest.Start(t, "n1", node.WithConfig(func(c *node.Config) { c.APITLS = node.APITLSOn }))
	_, err := api.NewClient(n.APIAddr(), n.Token()).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--api-cert-sha256") {
		t.Errorf("plain client to a TLS API: %v", err)
	}
}
