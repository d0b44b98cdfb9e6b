package p2p

import (
	"fmt"
	"strings"
	"testing"

	"github.com/multiformats/go-multiaddr"
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

// A connected peer's address shown first is the one on the IP its
// connection uses, never its loopback address (which it announces too).
func TestAddrsForPeople(t *testing.T) {
	ma := func(s string) multiaddr.Multiaddr { return multiaddr.StringCast(s) }
	addrs := []multiaddr.Multiaddr{
		ma("/ip4/127.0.0.1/tcp/4001"),
		ma("/dns4/site-b/tcp/4001"),
		ma("/ip4/10.0.0.3/tcp/4001"),
		ma("/ip4/10.0.0.2/tcp/4001"),
	}
	// Inbound: the far end is the peer's ephemeral port on 10.0.0.2.
	got := addrsForPeople(addrs, []multiaddr.Multiaddr{ma("/ip4/10.0.0.2/tcp/51234")})
	want := "[/ip4/10.0.0.2/tcp/4001 /dns4/site-b/tcp/4001 /ip4/10.0.0.3/tcp/4001 /ip4/127.0.0.1/tcp/4001]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	// No live connection: loopback last, the rest as they were.
	got = addrsForPeople(addrs, nil)
	want = "[/dns4/site-b/tcp/4001 /ip4/10.0.0.3/tcp/4001 /ip4/10.0.0.2/tcp/4001 /ip4/127.0.0.1/tcp/4001]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	if addrs[0].String() != "/ip4/127.0.0.1/tcp/4001" {
		t.Fatal("addrsForPeople changed its argument")
	}
	// Hole-punched beside a still open relayed connection: the punched
	// address first, not the relay's (both IPs have live connections).
	relay := "/ip4/192.0.0.65/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo/p2p-circuit"
	got = addrsForPeople([]multiaddr.Multiaddr{ma(relay), ma("/ip4/192.0.0.67/tcp/4001")},
		[]multiaddr.Multiaddr{ma(relay), ma("/ip4/192.0.0.67/tcp/4001")})
	if want := "[/ip4/192.0.0.67/tcp/4001 " + relay + "]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Relayed only: the relay address is the way, ahead of addresses
	// with no live connection.
	got = addrsForPeople([]multiaddr.Multiaddr{ma("/ip4/10.9.9.9/tcp/4001"), ma(relay)}, []multiaddr.Multiaddr{ma(relay)})
	if want := "[" + relay + " /ip4/10.9.9.9/tcp/4001]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}
