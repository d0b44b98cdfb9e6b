package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/internal/testutil"
)

func trafficOf(n *Node, source string) Traffic {
	for _, t := range n.Traffic() {
		if t.Source == source {
			return t
		}
	}
	return Traffic{Source: source}
}

// Traffic counts each topic's messages and bytes both ways, and the
// stream protocols' bytes; gossip from a peer counts as hearing it.
func TestTrafficBySource(t *testing.T) {
	a := newNode(t)
	b := newNode(t, withPeers(a))
	waitConnected(t, a, b)
	join := func(n *Node) *Topic {
		tp, err := n.JoinTopic("election")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tp.Close() })
		return tp
	}
	ta, tb := join(a), join(b)
	inB := topicInbox(t, tb)
	ctx := context.Background()
	testutil.Eventuallyf(t, 5*time.Second, func() bool {
		_ = ta.Publish(ctx, fmt.Appendf(nil, "hb-%d", time.Now().UnixNano()))
		return hasFrom(inB(), a.ID(), "hb-")
	}, "no message from a on b")
	out, in := trafficOf(a, "gossip:election"), trafficOf(b, "gossip:election")
	if out.MsgsOut == 0 || out.BytesOut == 0 || in.MsgsIn == 0 || in.BytesIn == 0 {
		t.Errorf("gossip:election: a sent %+v, b received %+v", out, in)
	}
	if s := trafficOf(b, "gossipsub-streams"); s.BytesIn == 0 {
		t.Errorf("gossipsub-streams on b: %+v", s)
	}
	if ta.Lag(time.Minute) <= 0 {
		t.Errorf("a's own messages were never seen through its pipeline (Lag 0)")
	}
	if b.traffic.lastHeard(a.ID()).IsZero() {
		t.Errorf("b never heard a's gossip")
	}
}

// Pings grow sparser with the number of connected peers beyond 20, and
// the silence allowed grows with them.
func TestPingTimesGrowWithPeers(t *testing.T) {
	for _, c := range []struct {
		peers          int
		every, timeout time.Duration
	}{{3, time.Second, 4 * time.Second}, {20, time.Second, 4 * time.Second}, {40, 2 * time.Second, 8 * time.Second}, {200, 10 * time.Second, 40 * time.Second}} {
		n := &Node{cfg: Config{PingInterval: time.Second, PingTimeout: 4 * time.Second}, known: map[peer.ID]*knownPeer{}}
		for i := range c.peers {
			n.known[peer.ID(fmt.Sprint(i))] = &knownPeer{connected: true}
		}
		n.known["away"] = &knownPeer{}
		every, timeout := n.pingTimes()
		if every != c.every || timeout != c.timeout {
			t.Errorf("%d peers: ping every %v, cut after %v; want %v, %v", c.peers, every, timeout, c.every, c.timeout)
		}
	}
}

// A dial that succeeds for a peer whose connection event has not been
// handled yet does not make the re-dial loop dial it again at once
// (Connect returns at once for a connected peer: a hot loop while the
// events lagged).
func TestSuccessfulDialWaitsForTheEvent(t *testing.T) {
	a := newNode(t)
	b := newNode(t, withPeers(a))
	waitConnected(t, a, b)
	a.mu.Lock()
	a.known[b.ID()].connected = false // the event not handled yet
	a.mu.Unlock()
	a.dial(peer.AddrInfo{ID: b.ID(), Addrs: b.Host().Addrs()}, false)
	a.mu.Lock()
	next := a.known[b.ID()].nextDial
	a.mu.Unlock()
	if !next.After(time.Now()) {
		t.Fatalf("after a successful dial the peer is due again at once (next dial %v)", next)
	}
}

// What gossipsub drops (a full outbound queue, a full validation queue)
// is counted by source; a message rejected as invalid is not a drop.
func TestTrafficCountsDrops(t *testing.T) {
	tr := newTraffic("env")
	topic := "starling/env/election"
	msg := &pb.Message{Topic: &topic, Data: []byte("hb")}
	tr.DropRPC(&pubsub.RPC{RPC: pb.RPC{Publish: []*pb.Message{msg, msg}, Control: &pb.ControlMessage{}}}, "")
	tr.RejectMessage(&pubsub.Message{Message: msg}, pubsub.RejectValidationQueueFull)
	tr.RejectMessage(&pubsub.Message{Message: msg}, pubsub.RejectValidationThrottled)
	tr.RejectMessage(&pubsub.Message{Message: msg}, pubsub.RejectValidationFailed)
	got := map[string]Traffic{}
	for _, c := range tr.snapshot() {
		got[c.Source] = c
	}
	if e := got["gossip:election"]; e.DroppedOut != 2 || e.DroppedIn != 2 {
		t.Errorf("gossip:election: dropped out %d, in %d; want 2 and 2", e.DroppedOut, e.DroppedIn)
	}
	if c := got["gossipsub-control"]; c.DroppedOut != 1 {
		t.Errorf("gossipsub-control: dropped out %d, want 1", c.DroppedOut)
	}
}
