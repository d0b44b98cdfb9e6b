package p2p

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// Problem classifies why a known peer is not connected, so that an
// operator sees a misconfiguration (another network key, another
// environment) instead of a peer that is forever "joining".
type Problem string

// Problems, from PeerInfo.Problem.
const (
	ProblemNone Problem = ""
	// ProblemNetworkKey: the connection was made but the handshake failed,
	// which is what another private network key (or none on one side)
	// looks like: libp2p's pnet only garbles the bytes.
	ProblemNetworkKey Problem = "network-key"
	// ProblemEnvironment: the peer connected but speaks another
	// environment's protocols (--env differs).
	ProblemEnvironment Problem = "environment"
	// ProblemPeerID: another peer answered at the address (the address
	// names a peer ID that is not the one listening there).
	ProblemPeerID Problem = "peer-id"
	// ProblemRefused: nothing listens at the addresses (node down?).
	ProblemRefused Problem = "refused"
	// ProblemUnreachable: no answer in time (firewall, NAT, partition).
	ProblemUnreachable Problem = "unreachable"
	// ProblemNoAddress: no address known to dial.
	ProblemNoAddress Problem = "no-address"
	// ProblemBlocked: refused by this node (Block, or misbehaviour).
	ProblemBlocked Problem = "blocked"
	// ProblemOther: anything else; DialError has the details.
	ProblemOther Problem = "other"
)

// classifyDialError names the problem behind a failed dial. With several
// addresses the most telling cause wins: a handshake failure or a wrong
// peer ID says more than a timeout on another address.
func (n *Node) classifyDialError(err error) Problem {
	causes := dialCauses(err)
	best := ProblemOther
	rank := map[Problem]int{ProblemNetworkKey: 7, ProblemPeerID: 6, ProblemBlocked: 5, ProblemRefused: 4,
		ProblemUnreachable: 3, ProblemNoAddress: 2, ProblemOther: 1}
	first := true
	for _, c := range causes {
		p := classifyCause(c)
		if first || rank[p] > rank[best] {
			best, first = p, false
		}
	}
	return best
}

// dialCauses is what made a dial fail: each address's cause and the
// dial's own, or err itself when it is no swarm.DialError.
func dialCauses(err error) []error {
	var causes []error
	var de *swarm.DialError
	if errors.As(err, &de) {
		for _, te := range de.DialErrors {
			causes = append(causes, te.Cause)
		}
		if de.Cause != nil {
			causes = append(causes, de.Cause)
		}
	}
	if len(causes) == 0 {
		causes = []error{err}
	}
	return causes
}

// handshakeFailed is the text go-libp2p's upgrader (v0.51
// p2p/net/upgrader) wraps a failed security handshake in. It has no
// sentinel error; TestPSKMismatchReported fails if the text changes.
const handshakeFailed = "failed to negotiate security protocol"

// problemHandshakeTimeout is a ProblemNetworkKey whose handshake timed
// out, for the log line's advice only (PeerInfo shows ProblemNetworkKey).
// Another network key garbles the first bytes the listener reads, and
// when they decode as a length longer than what the dialer sent, both
// ends wait until the dial times out: a wrong key looks so about a
// third of the time, but so does a handshake on a saturated machine (a
// 200-node bench in one process logged 10,000 of them as a wrong key).
const problemHandshakeTimeout Problem = "handshake-timeout"

// handshakeTimedOut reports whether every failed security handshake
// among err's causes timed out.
func handshakeTimedOut(err error) bool {
	timedOut := false
	for _, c := range dialCauses(err) {
		if !strings.Contains(c.Error(), handshakeFailed) {
			continue
		}
		if !errors.Is(c, context.DeadlineExceeded) && !strings.Contains(c.Error(), context.DeadlineExceeded.Error()) {
			return false
		}
		timedOut = true
	}
	return timedOut
}

// simultaneousOpen is what crypto/tls says when both ends of one TCP
// connection act as the client: two nodes dialled each other from their
// listen ports (libp2p reuses them) at the same moment, and their SYNs
// crossed, which a wide-area round trip makes likely. Not a wrong
// network key: the re-dial's jitter (Config.Rand) breaks the tie.
const simultaneousOpen = "unexpected handshake message of type *tls.clientHelloMsg"

func classifyCause(err error) Problem {
	var mismatch sec.ErrPeerIDMismatch
	var ne net.Error
	switch {
	case errors.As(err, &mismatch):
		return ProblemPeerID
	case strings.Contains(err.Error(), simultaneousOpen):
		return ProblemOther
	case strings.Contains(err.Error(), handshakeFailed):
		return ProblemNetworkKey
	case errors.Is(err, swarm.ErrGaterDisallowedConnection):
		return ProblemBlocked
	case errors.Is(err, syscall.ECONNREFUSED):
		return ProblemRefused
	case errors.Is(err, swarm.ErrNoAddresses), errors.Is(err, swarm.ErrNoGoodAddresses):
		return ProblemNoAddress
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.As(err, &ne) && ne.Timeout():
		return ProblemUnreachable
	}
	return ProblemOther
}

// problemHint is the log line's advice for a problem.
func problemHint(p Problem) string {
	switch p {
	case ProblemNetworkKey:
		return "the handshake failed: the peer most likely holds another private network key (swarm.key), or this node or the peer has none; copy the same key to both"
	case problemHandshakeTimeout:
		return "the handshake timed out: the peer may hold another private network key (swarm.key), or this node or the peer is overloaded; if it persists while both are idle, copy the same key to both"
	case ProblemEnvironment:
		return "the peer belongs to another environment (--env); the two never exchange data"
	case ProblemPeerID:
		return "another peer answered at this address: fix the /p2p/<id> part of the peer's address"
	}
	return ""
}

// dialHint is the log line's advice for a dial that failed with err.
func dialHint(p Problem, err error) string {
	if p == ProblemNetworkKey && handshakeTimedOut(err) {
		return problemHint(problemHandshakeTimeout)
	}
	return problemHint(p)
}

// logDialProblem logs a failed dial: a misconfiguration at warn, once a
// minute per peer (a re-dial every few seconds must not fill the log),
// the rest at debug.
func (n *Node) logDialProblem(id peer.ID, p Problem, err error) {
	hint := dialHint(p, err)
	if hint == "" {
		n.log.Debug("dial failed", "peer", id, "problem", p, "err", err)
		return
	}
	n.mu.Lock()
	held, ok := n.problemLog.Allow(id.String(), time.Now())
	n.mu.Unlock()
	if ok {
		n.log.Warn("peer refused: "+hint, "peer", id, "problem", p, "held_back", held, "err", err)
	}
}

// checkEnvironment is called with the protocols a peer announced. A peer
// that speaks some environment's protocols but not this one's is in
// another environment: recorded, logged and disconnected. Called from the
// event loop, so the close runs on its own goroutine.
func (n *Node) checkEnvironment(id peer.ID, protos []protocol.ID) {
	other := ""
	for _, p := range protos {
		if p == n.names.directProto {
			return
		}
		if env, ok := envOfProtocol(p); ok && other == "" {
			other = env
		}
	}
	if other == "" {
		return // not a Starling node (or no protocols yet): nothing to say
	}
	n.mu.Lock()
	if k, ok := n.known[id]; ok {
		k.problem, k.dialErr = ProblemEnvironment, "peer is in environment "+other+", this node in "+n.cfg.Env
		// Back off for good: it will not change its environment soon.
		k.flaps = max(k.flaps, 8)
	}
	held, ok := n.problemLog.Allow(id.String(), time.Now())
	n.mu.Unlock()
	if ok {
		n.log.Warn("peer refused: "+problemHint(ProblemEnvironment), "peer", id, "problem", ProblemEnvironment,
			"peer_env", other, "env", n.cfg.Env, "held_back", held)
	}
	n.wg.Go(func() { _ = n.host.Network().ClosePeer(id) })
}

// envOfProtocol reads the environment out of a Starling replication
// protocol, "/starling/<env>/replication/1.0.0".
func envOfProtocol(p protocol.ID) (string, bool) {
	s, ok := strings.CutPrefix(string(p), "/starling/")
	if !ok {
		return "", false
	}
	env, ok := strings.CutSuffix(s, "/replication/1.0.0")
	if !ok || env == "" || strings.Contains(env, "/") {
		return "", false
	}
	return env, true
}
