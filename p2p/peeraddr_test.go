package p2p

import (
	"strings"
	"testing"

	"github.com/starling-sync/starling/internal/testutil"
)

func TestParsePeerAddrsMergesByPeer(t *testing.T) {
	a, b := testutil.PeerID(t), testutil.PeerID(t)
	ais, err := ParsePeerAddrs([]string{
		"/ip4/10.0.0.1/tcp/4001/p2p/" + a.String(),
		"/ip4/10.0.0.2/tcp/4001/p2p/" + b.String(),
		"/ip4/10.0.0.1/udp/4001/quic-v1/p2p/" + a.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ais) != 2 || ais[0].ID != a || len(ais[0].Addrs) != 2 || ais[1].ID != b {
		t.Fatalf("got %v", ais)
	}
	_, err = ParsePeerAddrs([]string{"/ip4/10.0.0.1/tcp/4001/p2p/" + a.String(), "/ip4/bad"})
	if err == nil || !strings.Contains(err.Error(), `"/ip4/bad"`) {
		t.Fatalf("error should name the bad address: %v", err)
	}
}
