package p2p

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// ErrPortInUse means a TCP listen address is held by another process
// (often a second node started on the same port). Test with errors.Is.
var ErrPortInUse = errors.New("p2p: listen port in use")

// checkPortFree fails when another socket already listens on a's TCP
// port.
//
// libp2p's TCP transport listens and dials with SO_REUSEPORT, so a second
// process of the same user binds the same port without error and the
// kernel splits the inbound connections between the two. SO_REUSEPORT is
// kept (tcp.DisableReuseport would fix this too): TCP hole punching needs
// the outgoing connections to leave from the listen port, so that the
// NAT's mapping of the listen port is the address peers see and dial.
// Instead a plain listen (no SO_REUSEPORT) on the port is tried first and
// closed again: the kernel refuses it while any other socket listens
// there. Two nodes started within the same instant could still both pass;
// a node already running is always detected.
func checkPortFree(a multiaddr.Multiaddr) error {
	if isQUIC(a) {
		return nil // UDP: QUIC's own listener reports a conflict
	}
	network, host, err := manet.DialArgs(a)
	if err != nil || (network != "tcp" && network != "tcp4" && network != "tcp6") {
		return nil // not plain TCP (or not parseable): libp2p reports it
	}
	_, port, err := net.SplitHostPort(host)
	if err != nil || port == "0" {
		return nil // port 0: the kernel picks a free one
	}
	ln, err := net.Listen(network, host)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: %s (TCP port %s) is held by another process, perhaps another node: stop it, or give this node another --listen port", ErrPortInUse, a, port)
		}
		return nil // e.g. an address not on this host: libp2p's Listen says so
	}
	return ln.Close()
}
