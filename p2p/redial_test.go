package p2p

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/multiformats/go-multiaddr"
)

// TestBackoffJitter: each wait lies in the upper half of the doubling
// backoff, and two nodes that failed the same number of times do not
// retry at the same moment (without jitter they did, and two nodes
// dialling each other across a slow link collided on every try).
func TestBackoffJitter(t *testing.T) {
	newNode := func(seed uint64) *Node {
		return &Node{cfg: Config{RedialMin: 250 * time.Millisecond, RedialMax: 5 * time.Second}, rng: rand.New(rand.NewPCG(seed, 1))}
	}
	a, b := newNode(1), newNode(2)
	if d := a.backoff(0); d != 0 {
		t.Fatalf("backoff(0) = %s, want 0", d)
	}
	for failures, full := range map[int]time.Duration{1: 250 * time.Millisecond, 3: time.Second, 5: 4 * time.Second, 9: 5 * time.Second} {
		apart := 0
		for range 100 {
			da, db := a.backoff(failures), b.backoff(failures)
			for _, d := range []time.Duration{da, db} {
				if d < full/2 || d > full {
					t.Fatalf("backoff(%d) = %s, want within [%s, %s]", failures, d, full/2, full)
				}
			}
			if diff := da - db; diff > full/20 || diff < -full/20 {
				apart++
			}
		}
		if apart < 50 {
			t.Errorf("backoff(%d): two nodes retried within %s of each other %d times in 100", failures, full/20, 100-apart)
		}
	}
}

// TestSimultaneousOpenIsNoKeyProblem: crossed SYNs make both ends TLS
// clients; that is not another network key (it was reported as one).
func TestSimultaneousOpenIsNoKeyProblem(t *testing.T) {
	err := errors.New("failed to negotiate security protocol: tls: received unexpected handshake message of type *tls.clientHelloMsg when waiting for *tls.serverHelloMsg")
	if p := classifyCause(err); p != ProblemOther {
		t.Fatalf("classifyCause = %q, want %q", p, ProblemOther)
	}
	if p := classifyCause(errors.New("failed to negotiate security protocol: EOF")); p != ProblemNetworkKey {
		t.Fatalf("a garbled handshake: classifyCause = %q, want %q", p, ProblemNetworkKey)
	}
}

// TestHandshakeTimeoutHint: a security handshake that timed out is
// still a network-key problem (another key makes one time out about a
// third of the time), but its log line names overload too; a garbled
// one on any address keeps the plain advice.
func TestHandshakeTimeoutHint(t *testing.T) {
	addr := multiaddr.StringCast("/ip4/127.0.0.1/tcp/4001")
	dialErr := func(causes ...string) error {
		de := &swarm.DialError{Peer: newTestID(t)}
		for _, c := range causes {
			de.DialErrors = append(de.DialErrors, swarm.TransportError{Address: addr, Cause: errors.New(c)})
		}
		return fmt.Errorf("failed to dial: %w", de)
	}
	timedOut := dialErr("failed to negotiate security protocol: context deadline exceeded")
	garbled := dialErr("failed to negotiate security protocol: context deadline exceeded", "failed to negotiate security protocol: incoming message was too large")
	n := &Node{}
	for _, tt := range []struct {
		err      error
		timedOut bool
	}{{timedOut, true}, {garbled, false}, {dialErr("dial tcp: connection refused"), false}} {
		if got := handshakeTimedOut(tt.err); got != tt.timedOut {
			t.Errorf("handshakeTimedOut(%v) = %v, want %v", tt.err, got, tt.timedOut)
		}
	}
	if p := n.classifyDialError(timedOut); p != ProblemNetworkKey {
		t.Errorf("a timed-out handshake: problem %q, want %q", p, ProblemNetworkKey)
	}
	if h := dialHint(ProblemNetworkKey, timedOut); !strings.Contains(h, "timed out") || !strings.Contains(h, "overloaded") {
		t.Errorf("a timed-out handshake's hint %q does not say it timed out and why it may", h)
	}
	if h := dialHint(ProblemNetworkKey, garbled); !strings.Contains(h, "most likely holds another private network key") {
		t.Errorf("a garbled handshake's hint %q does not name the network key", h)
	}
}

// TestRTTSampledWhileHeard: a peer heard from all the time (gossip
// answers for it as a pong, so the liveness loop would never ping it)
// still has its round trip sampled every rttEvery ping periods.
func TestRTTSampledWhileHeard(t *testing.T) {
	const interval = 200 * time.Millisecond // heard every 5 ms: never silent for a period
	a := newNode(t, func(c *Config) { c.PingInterval = interval })
	b := newNode(t, withPeers(a))
	waitConnected(t, a, b)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			// What gossip from b does to a's record of it.
			a.traffic.LogRecvMessageStream(1, "/meshsub/1.1.0", b.ID())
		}
	}()
	defer func() { close(stop); <-done }()
	a.traffic.LogRecvMessageStream(1, "/meshsub/1.1.0", b.ID())
	if a.traffic.lastHeard(b.ID()).IsZero() {
		t.Fatal("the simulated gossip does not count as heard: the test would prove nothing")
	}
	const want = 3 // at once, then every rttEvery×interval (2 s)
	deadline := time.Now().Add(5 * rttEvery * interval)
	for {
		var rtts []time.Duration
		for _, p := range a.Peers() {
			if p.ID == b.ID() {
				rtts = p.RTTs
			}
		}
		if len(rtts) >= want {
			for _, d := range rtts {
				if d <= 0 || d > time.Second {
					t.Fatalf("round trip %v on loopback", d)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d round trips sampled in %v of a peer heard every 5 ms, want %d (one every %v)", len(rtts), 5*rttEvery*interval, want, rttEvery*interval)
		}
		time.Sleep(interval / 4)
	}
}
