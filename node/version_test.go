package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/internal/version"
	"github.com/starling-sync/starling/node"
)

// TestMixedVersionsShow: node2 runs another build; node1's cluster view
// shows node2's version from its reports, and its own.
func TestMixedVersionsShow(t *testing.T) {
	defer testutil.FailOnPanic(t)
	other := version.Info{Version: "v9.9.9-test", GoVersion: "go1.26.0"}
	nodes := startClusterOpts(t, 2, func(i int) []node.Option {
		if i == 1 {
			return []node.Option{node.WithBuild(other)}
		}
		return nil
	})
	ctx := context.Background()
	want := map[string]string{"node1": version.Get().String(), "node2": "v9.9.9-test"}
	testutil.Eventually(t, 20*time.Second, "node1 shows both versions", func() bool {
		cs, err := nodes[0].ClusterStatus(ctx)
		if err != nil {
			return false
		}
		got := map[string]string{}
		for _, v := range cs.Nodes {
			got[v.NodeID] = v.Version
		}
		return got["node1"] == want["node1"] && got["node2"] == want["node2"]
	})
	st, err := nodes[1].Status(ctx)
	if err != nil || st.Version != "v9.9.9-test" {
		t.Errorf("node2's status version %q, %v", st.Version, err)
	}
}
