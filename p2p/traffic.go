package p2p

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// Traffic is what a node sent and received, by source, since it started:
// each gossip topic (the election heartbeats, the node reports, the
// replication broadcasts), gossipsub's own control messages, and each
// stream protocol (the direct replication messages, the DHT, identify,
// ping, NAT traversal, block exchange). It is how the idle cost of a
// cluster is measured and broken down (starling_p2p_messages_total and
// starling_p2p_bytes_total).
//
// Messages count gossip messages (a duplicate received from a second
// mesh peer counts again: it was carried) and control RPCs; streams
// count bytes only.
//
// Dropped counts what gossipsub gave up on: DroppedOut the messages (and
// control RPCs) not sent because the peer's outbound queue was full (the
// peer reads slower than this node sends), DroppedIn the messages not
// validated because the validation queue was full or the peer throttled.
// Either means lost heartbeats and reports: an overloaded node or link.
type Traffic struct {
	Source     string
	MsgsIn     uint64
	MsgsOut    uint64
	BytesIn    uint64
	BytesOut   uint64
	DroppedIn  uint64
	DroppedOut uint64
}

// traffic counts by source. It is both gossipsub's RawTracer and the
// host's bandwidth reporter; every method is cheap (a map read and
// atomic adds).
type traffic struct {
	env     string
	mu      sync.RWMutex
	sources map[string]*trafficCount
	// heard: when gossip last arrived from each peer (peer.ID ->
	// *atomic.Int64, Unix ns): the liveness loop does not ping a peer it
	// has just heard from. Gossip only: it is most of an idle node's
	// traffic, and a peer's answer to a stream it cannot serve (an
	// unknown protocol) is not a sign that it works.
	heard sync.Map
	// authored: when gossip written by each peer last arrived, through
	// whichever peer forwarded it (peer.ID -> *atomic.Int64, Unix ns):
	// a peer this node is not connected to is still heard of
	// (bounds.go).
	authored sync.Map
}

// lastAuthored is when gossip written by p last arrived (zero if never).
func (t *traffic) lastAuthored(p peer.ID) time.Time {
	v, ok := t.authored.Load(p)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(*atomic.Int64).Load())
}

// stamp stores now as m's time for p.
func stamp(m *sync.Map, p peer.ID) {
	now := time.Now().UnixNano()
	if v, ok := m.Load(p); ok {
		v.(*atomic.Int64).Store(now)
		return
	}
	v := new(atomic.Int64)
	v.Store(now)
	m.Store(p, v)
}

// lastHeard is when gossip last arrived from p (zero if never).
func (t *traffic) lastHeard(p peer.ID) time.Time {
	v, ok := t.heard.Load(p)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(*atomic.Int64).Load())
}

// forget drops p's last-heard time (it disconnected).
func (t *traffic) forget(p peer.ID) { t.heard.Delete(p) }

type trafficCount struct {
	msgsIn, msgsOut, bytesIn, bytesOut atomic.Uint64
	droppedIn, droppedOut              atomic.Uint64
}

func newTraffic(env string) *traffic {
	return &traffic{env: env, sources: make(map[string]*trafficCount)}
}

func (t *traffic) count(source string) *trafficCount {
	t.mu.RLock()
	c := t.sources[source]
	t.mu.RUnlock()
	if c != nil {
		return c
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c = t.sources[source]; c == nil {
		c = new(trafficCount)
		t.sources[source] = c
	}
	return c
}

// snapshot returns the counts sorted by source.
func (t *traffic) snapshot() []Traffic {
	t.mu.RLock()
	out := make([]Traffic, 0, len(t.sources))
	for s, c := range t.sources {
		out = append(out, Traffic{Source: s, MsgsIn: c.msgsIn.Load(), MsgsOut: c.msgsOut.Load(),
			BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
			DroppedIn: c.droppedIn.Load(), DroppedOut: c.droppedOut.Load()})
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// topicSource names a gossip topic's source: "gossip:" and the topic's
// short name ("gossip:election"), or the full name of a foreign topic.
func (t *traffic) topicSource(topic string) string {
	return "gossip:" + strings.TrimPrefix(topic, "starling/"+t.env+"/")
}

// protoSource names a stream protocol's source; gossipsub's own streams
// are "gossipsub-streams" (their messages are counted by topic).
func (t *traffic) protoSource(p protocol.ID) string {
	s := string(p)
	switch {
	case strings.HasPrefix(s, "/meshsub/"):
		return "gossipsub-streams"
	case strings.HasPrefix(s, "/ipfs/ping/"):
		return "ping"
	case strings.HasPrefix(s, "/ipfs/id/"):
		return "identify"
	case strings.Contains(s, "/kad/"):
		return "dht"
	case strings.Contains(s, "/bitswap"):
		return "bitswap"
	case strings.Contains(s, "autonat"), strings.Contains(s, "/libp2p/circuit/"), strings.Contains(s, "/libp2p/dcutr"):
		return "nat"
	case strings.HasPrefix(s, "/starling/"+t.env+"/"):
		return "stream:" + strings.TrimPrefix(s, "/starling/"+t.env+"/")
	case s == "":
		return "stream:unnegotiated"
	}
	return "stream:other"
}

func (t *traffic) rpc(r *pubsub.RPC, out bool) {
	for _, m := range r.GetPublish() {
		c := t.count(t.topicSource(m.GetTopic()))
		if out {
			c.msgsOut.Add(1)
			c.bytesOut.Add(uint64(proto.Size(m)))
		} else {
			c.msgsIn.Add(1)
			c.bytesIn.Add(uint64(proto.Size(m)))
		}
	}
	if ctl := r.GetControl(); ctl != nil {
		c := t.count("gossipsub-control")
		n := uint64(proto.Size(ctl))
		if out {
			c.msgsOut.Add(1)
			c.bytesOut.Add(n)
		} else {
			c.msgsIn.Add(1)
			c.bytesIn.Add(n)
		}
	}
}

// dropped counts an RPC gossipsub did not send: each message by its
// topic, the control part as gossipsub-control.
func (t *traffic) dropped(r *pubsub.RPC) {
	for _, m := range r.GetPublish() {
		t.count(t.topicSource(m.GetTopic())).droppedOut.Add(1)
	}
	if r.GetControl() != nil {
		t.count("gossipsub-control").droppedOut.Add(1)
	}
}

// rejected counts a received message that was not validated for lack
// of room; a message rejected as invalid is misbehaviour, counted
// elsewhere (misbehave.go).
func (t *traffic) rejected(m *pubsub.Message, reason string) {
	if reason == pubsub.RejectValidationQueueFull || reason == pubsub.RejectValidationThrottled {
		t.count(t.topicSource(m.GetTopic())).droppedIn.Add(1)
	}
}

// gossipsub's RawTracer.
func (t *traffic) RecvRPC(r *pubsub.RPC)                             { t.rpc(r, false) }
func (t *traffic) SendRPC(r *pubsub.RPC, _ peer.ID)                  { t.rpc(r, true) }
func (t *traffic) AddPeer(peer.ID, protocol.ID)                      {}
func (t *traffic) RemovePeer(peer.ID)                                {}
func (t *traffic) OnNewOutboundStream(peer.ID, protocol.ID)          {}
func (t *traffic) OnClosedOutboundStream(peer.ID)                    {}
func (t *traffic) Join(string)                                       {}
func (t *traffic) Leave(string)                                      {}
func (t *traffic) Graft(peer.ID, string)                             {}
func (t *traffic) Prune(peer.ID, string)                             {}
func (t *traffic) ValidateMessage(*pubsub.Message)                   {}
func (t *traffic) DeliverMessage(m *pubsub.Message)                  { stamp(&t.authored, m.GetFrom()) }
func (t *traffic) RejectMessage(m *pubsub.Message, reason string)    { t.rejected(m, reason) }
func (t *traffic) DuplicateMessage(*pubsub.Message)                  {}
func (t *traffic) ThrottlePeer(peer.ID)                              {}
func (t *traffic) DropRPC(r *pubsub.RPC, _ peer.ID)                  { t.dropped(r) }
func (t *traffic) UndeliverableMessage(*pubsub.Message)              {}
func (t *traffic) LogSentMessage(int64)                              {}
func (t *traffic) LogRecvMessage(int64)                              {}
func (t *traffic) GetBandwidthForPeer(peer.ID) metrics.Stats         { return metrics.Stats{} }
func (t *traffic) GetBandwidthForProtocol(protocol.ID) metrics.Stats { return metrics.Stats{} }
func (t *traffic) GetBandwidthTotals() metrics.Stats                 { return metrics.Stats{} }
func (t *traffic) GetBandwidthByPeer() map[peer.ID]metrics.Stats     { return nil }
func (t *traffic) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	return nil
}
func (t *traffic) Reset()             {}
func (t *traffic) TrimIdle(time.Time) {}

// The host's bandwidth reporter: bytes by stream protocol.
func (t *traffic) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	t.count(t.protoSource(p)).bytesOut.Add(uint64(n))
}

func (t *traffic) LogRecvMessageStream(n int64, p protocol.ID, from peer.ID) {
	src := t.protoSource(p)
	t.count(src).bytesIn.Add(uint64(n))
	if src != "gossipsub-streams" {
		return
	}
	stamp(&t.heard, from)
}

var (
	_ pubsub.RawTracer = (*traffic)(nil)
	_ metrics.Reporter = (*traffic)(nil)
)

// Traffic returns what the node sent and received since it started, by
// source.
func (n *Node) Traffic() []Traffic { return n.traffic.snapshot() }
