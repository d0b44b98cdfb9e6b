package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// Budgets of libp2p's resource manager for what one peer, and all peers
// together, can make a node hold in streams, connections and the muxers'
// buffers. libp2p's default scales them all with the machine's memory
// (1/8 of it): on a 24 GiB host one peer could hold 640 inbound streams
// and 448 MiB, and all peers together 3.1 GiB, whatever the node needs.
// Starling keeps libp2p's scaled counts for the node as a whole (a large
// cluster needs its connections) but fixes the per-peer budget and caps
// the total memory, so that a hostile peer holding the network key gets
// no more than an honest one could use.
const (
	// peerStreamsInbound is one peer's open inbound streams. An honest
	// peer holds a handful (gossipsub, identify, ping, bitswap, the DHT)
	// plus one per direct replication message in flight: a burst of
	// heads and branch replies stays well below it.
	peerStreamsInbound = 256
	// peerStreams is one peer's open streams both ways.
	peerStreams = 512
	// peerConnsInbound is one peer's inbound connections: one is usual, a
	// few while a re-dial races a stale connection or a relayed one is
	// upgraded.
	peerConnsInbound = 8
	// peerMemory is what one peer's streams may reserve in the muxer
	// (yamux grows a stream's window up to 16 MiB while a state transfer
	// streams): two full windows and change.
	peerMemory = 64 << 20
	// systemMemory caps what all peers together may reserve (libp2p's
	// own comment on its default says 1 GB at most; its code does not cap).
	systemMemory = 1 << 30
)

// resourceManager returns libp2p's resource manager with Starling's
// per-peer budgets (see above) on libp2p's autoscaled defaults.
func resourceManager() (network.ResourceManager, error) {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	scaled := scaling.AutoScale()
	limits := resourceLimits(scaled.ToPartialLimitConfig().System.Memory).Build(scaled)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits))
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return rm, nil
}

// resourceLimits is what Starling sets over libp2p's defaults, given
// the total memory libp2p scaled for this machine.
func resourceLimits(scaledMemory rcmgr.LimitVal64) rcmgr.PartialLimitConfig {
	return rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{Memory: min(scaledMemory, systemMemory)},
		PeerDefault: rcmgr.ResourceLimits{
			StreamsInbound: peerStreamsInbound,
			Streams:        peerStreams,
			ConnsInbound:   peerConnsInbound,
			Memory:         peerMemory,
		},
	}
}
