package node_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestWithoutAPI: an embedded node without the HTTP API binds no API
// port and writes no api.json, and its Go API works.
func TestWithoutAPI(t *testing.T) {
	n := nodetest.Start(t, "embedded", node.WithoutAPI())
	if n.APIAddr() != "" || n.WebLoginURL() != "" {
		t.Errorf("APIAddr %q, WebLoginURL %q: want both empty", n.APIAddr(), n.WebLoginURL())
	}
	if _, err := os.Stat(filepath.Join(n.Dir(), api.APIFile)); !os.IsNotExist(err) {
		t.Errorf("api.json written without an API: %v", err)
	}
	ctx := context.Background()
	if _, err := n.Entities().Create(ctx, "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	v, err := n.Entities().Set(ctx, "/Plant", "temp", entity.Int(21))
	if err != nil || v.Writer != "embedded" {
		t.Fatalf("Set: %v, %v", v, err)
	}
	if _, err := n.Status(ctx); err != nil {
		t.Errorf("Status: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
