package node_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// probe GETs path on n's API without a token and returns the status.
func probe(t *testing.T, n *node.Node, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + n.APIAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestProbes: a running node answers /healthz and, once ACTIVE, /readyz
// without the token; it is not ready once it stops. (A node whose clock
// is off is alive but not ready: TestClockSkewedNodeRefusesWrites.)
func TestProbes(t *testing.T) {
	n := nodetest.Start(t, "node1")
	if code := probe(t, n, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	testutil.Eventually(t, 20*time.Second, "/readyz 200", func() bool { return probe(t, n, "/readyz") == http.StatusOK })
	if code := probe(t, n, "/v1/status"); code != http.StatusUnauthorized {
		t.Errorf("/v1/status without a token: %d, want 401", code)
	}
	if err := n.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(context.Background()); err == nil {
		t.Error("a closed node says it is ready")
	}
}
