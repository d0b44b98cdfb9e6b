package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/nodestate"
)

// TestResyncCLI: `resync` on a real two-node cluster transfers the
// state, shows the outcome, and `sync status --json` reports it; bad
// input is a clear error.
func TestResyncCLI(t *testing.T) {
	dirA, a := startEntityNode(t, "node1")
	dirB, b := startEntityNode(t, "node2")
	ctx := context.Background()
	if err := a.P2P().AddPeer(ctx, peerInfo(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Entities().Create(ctx, "/", "Sensor", "S"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Entities().Set(ctx, "/S", "v", entity.Int(5)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "b has a's field", func() bool {
		f, err := b.Entities().GetField("/S", "v")
		return err == nil && f.Value.Int == 5
	})
	r := runApp(t, "", "resync", "--data", dirB)
	if r.code != 0 || !strings.Contains(r.stdout, "ACTIVE") {
		t.Fatalf("resync: code %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	r = runApp(t, "", "sync", "status", "--data", dirB, "--json")
	var p nodestate.SyncProgress
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Phase != nodestate.PhaseActive || p.Transfers != 1 {
		t.Fatalf("sync status: %v %+v\n%s", err, p, r.stdout)
	}
	r = runApp(t, "", "resync", "--data", dirA, "--peer", "nonsense")
	if r.code == 0 || !strings.Contains(r.stderr, "not a peer ID") {
		t.Fatalf("resync from a bad peer: code %d stderr %s", r.code, r.stderr)
	}
}

func peerInfo(n *node.Node) peer.AddrInfo {
	return peer.AddrInfo{ID: n.PeerID(), Addrs: n.P2P().Host().Addrs()}
}
