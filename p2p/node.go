package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/multiformats/go-multiaddr"
	"github.com/starling-sync/starling/internal/peerlog"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrBadPSK means a private-network key file could not be parsed.
	ErrBadPSK = errors.New("p2p: bad private network key")
	// ErrUnknownPeer means an operation named a peer this node does not know.
	ErrUnknownPeer = errors.New("p2p: unknown peer")
	// ErrClosed means the node has been closed.
	ErrClosed = errors.New("p2p: node closed")
)

// Config configures a Node. Build it from DefaultConfig and adjust.
type Config struct {
	// Env is the environment name (e.g. "prod-site-a"). It derives the mDNS
	// service name, the DHT protocol prefix, the rendezvous string, the
	// bitswap protocol prefix, the replication topic and the direct-stream
	// protocol, so that two environments never mix even without a PSK.
	// Required; [a-z0-9-], 1..64 chars.
	Env string
	// Identity is the host's private key (Ed25519). Required. See LoadOrCreateIdentity.
	Identity crypto.PrivKey
	// PSK is the optional private-network key (32 bytes). When set, only
	// nodes with the same key can connect, and QUIC is disabled (libp2p's
	// pnet works over TCP only).
	PSK []byte
	// ListenAddrs are the multiaddrs to listen on. Default
	// /ip4/0.0.0.0/tcp/4001 and, without a PSK, /ip4/0.0.0.0/udp/4001/quic-v1.
	ListenAddrs []multiaddr.Multiaddr
	// Peers are static bootstrap peers (must include /p2p/<id>). They are
	// dialled at start and kept forever: re-dialled with backoff whenever
	// they are not connected (in a cluster larger than MaxPeers, while
	// the node has fewer than MaxPeers connections; see MaxPeers).
	Peers []peer.AddrInfo
	// MaxPeers bounds the connections a node keeps: it dials the peers it
	// knows of (static, mDNS, DHT, the address exchange) only while it
	// has fewer than MaxPeers connections, and closes the least preferred
	// connections (never its static peers') once dialled-in ones bring
	// it to more than half as many again. Gossip reaches the nodes it is
	// not connected to through those it is. Two exceptions keep the
	// cluster whole: a peer whose connection the liveness check cut is
	// re-dialled until it is heard of again (a partition that heals), and
	// a known peer not heard of for unheardAfter is dialled whatever the
	// count (bounds.go). Default 12: a cluster of up to 13 nodes connects
	// every pair, as without a bound. Connecting every pair of 200 nodes
	// (19,900 connections, each with its pings, gossip and streams) did
	// not even finish on a 2-core machine; 12 instead of 32 took a
	// quarter off 100 idle nodes' CPU and about half off the p99 of a
	// write's way to all of 50 (README, Large clusters).
	MaxPeers int
	// MDNS enables LAN discovery. Default true.
	MDNS bool
	// DHT enables the Kademlia rendezvous (server mode, env-specific
	// protocol prefix). Default true.
	DHT bool
	// Trusted, when non-empty, is the list of peers whose replication
	// messages are accepted (gossip validator and direct streams). Messages
	// from this node itself are always accepted.
	Trusted []peer.ID
	// DropInbound, if set, is a deliberate defect for the chaos suite's
	// control build (cmd/starling, -tags chaosbroken): replication data
	// and topic messages from the peers it names are dropped, while
	// they still get everything this node sends. Never set otherwise.
	DropInbound func(from peer.ID) bool

	// Tests only: the hole-punch retry's first wait and tick (defaults
	// punchRetryFirst, punchRetryTick), a node that counts as having
	// a public address, the age below which the bound closes no
	// connection (default defaultTrimGrace), and which peer addresses
	// count as public for redialFromListenPort (default
	// manet.IsPublicAddr; loopback tests have no public address).
	punchRetryFirst, punchRetryTick time.Duration
	assumePublic                    bool
	trimGrace                       time.Duration
	publicAddr                      func(multiaddr.Multiaddr) bool
	// RedialMin and RedialMax bound the exponential backoff used to
	// re-dial known peers that are not connected. Defaults 250ms and 5s:
	// a peer that comes back after a partition is reconnected within
	// RedialMax.
	RedialMin, RedialMax time.Duration
	// Rand jitters the re-dial backoff: each wait is drawn from its upper
	// half. Two nodes that dial each other at the same moment (both
	// found each other, or a link came back) would otherwise retry in
	// lockstep; across a wide-area link their SYNs then cross on every
	// try (TCP simultaneous open, as both dial from their listen port),
	// both sides start a TLS client handshake, and neither ever connects
	// (seen in the chaos suite with 100 ms one-way delay: no connection
	// in 20 s). Default: seeded from crypto/rand; tests inject a seed.
	// The node uses it under its lock: give each node its own.
	Rand *rand.Rand
	// PingInterval and PingTimeout drive liveness: a connected known peer
	// that fails to answer pings for PingTimeout has its connections closed
	// (TCP alone does not notice a silent partition for minutes), so that
	// the re-dial loop takes over. Defaults 1s and 4s.
	PingInterval, PingTimeout time.Duration
	// Reachability is whether other nodes can dial this one: "auto"
	// (the default, also ""; AutoNAT asks peers to dial back, which takes
	// about 15 s after start), "public" or "private" (an operator who
	// knows, e.g. a cloud node with a public address or a site behind
	// NAT, skips the wait).
	Reachability string
	// AutoNAT answers other nodes' reachability probes (AutoNAT v1's
	// dial-back service) and tests this node's addresses one by one
	// (AutoNAT v2). Default true. Off, the node still asks peers that
	// answer (libp2p always runs the v1 client); in a cluster where none
	// answers, "auto" reachability stays unknown, so the relay service and
	// auto relay never start: set Reachability. Probes test public
	// addresses only: nodes that reach each other over private ranges (a
	// LAN, a VPN) need none of this.
	AutoNAT bool
	// RelayService offers circuit relay v2 to this environment's nodes
	// while this node is publicly reachable, so that nodes behind NAT can
	// be reached through it and hole punch. Limits per relayed
	// connection: 2 minutes and 16 MiB each way (nat.go says why). Off:
	// a node whose bandwidth must not carry other sites' traffic.
	// Default true.
	RelayService bool
	// AutoRelay, while this node is private, reserves slots on up to two
	// connected cluster nodes that offer the relay service, and
	// announces the relayed addresses. Default true.
	AutoRelay bool
	// HolePunch upgrades relayed connections to direct ones (DCUtR).
	// Default true.
	HolePunch bool
	// PortMap asks the router for a port mapping (UPnP, NAT-PMP). Off
	// where routers must not be touched. Default true.
	PortMap bool
	// Blockstore is where DAG blocks are kept (usually a namespace of the
	// node's LevelDB). Required.
	Blockstore ds.Batching
	// Host, when set, is the libp2p host the node runs on instead of one
	// it creates (simulations: the bench runs whole nodes on libp2p's
	// mocknet). Its peer ID must be Identity's. Everything above the host
	// is the same as on a host of the node's own: the re-dial loop,
	// liveness pings (the ping protocol is registered on the host if it
	// lacks it), the address exchange, gossipsub, bitswap, the DHT, the
	// trust list. What configures a host or its sockets cannot apply to
	// a host made elsewhere and is ignored: ListenAddrs, PSK, MDNS (it
	// would announce the host's addresses on the real LAN), and the NAT
	// settings (AutoNAT, RelayService, AutoRelay, HolePunch, PortMap).
	// The connection gater is the host's too: Block closes a peer's
	// connections and the re-dial loop leaves it alone, but connections
	// it opens are not refused.
	//
	// New takes the host over: Close closes it, as it closes a host of
	// its own (to its peers the node stops the same way), and so does a
	// New that fails.
	Host host.Host
	// Logger receives the node's logs. Default: discard. Its lines carry
	// "component" (p2p, pubsub, replication, topic) and "self" (the peer
	// ID): give a logger without these keys.
	Logger *slog.Logger
}

// PeerEvent tells that a peer became connected (first connection) or
// disconnected (last connection closed).
type PeerEvent struct {
	Peer      peer.ID
	Connected bool
}

// peerEventBuffer is the channel size of each SubscribePeers subscriber.
const peerEventBuffer = 64

// Node is a libp2p host with discovery, a re-dial loop, gossipsub and
// bitswap.
//
// Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	names envNames
	log   *slog.Logger
	// base is log without its component, for the parts that name their
	// own (pubsub, replication, topic): slog adds, it never replaces, so
	// deriving them from log wrote "component" twice.
	base  *slog.Logger
	self  peer.ID
	trust *trust // Config.Trusted and DropInbound

	host   host.Host
	gater  *gater
	mis    *misbehavior // misbehave.go
	events event.Subscription

	ps       *pubsub.PubSub
	psCancel context.CancelFunc
	repl     *Replication
	// sessions: gossip sessions lost while connected (pubsubsession.go).
	sessions        *sessionCheck
	sessionsRenewed atomic.Uint64

	bswap    *bitswap.Bitswap
	bsCancel context.CancelFunc
	dag      ipld.DAGService

	dht  *dht.IpfsDHT
	mdns mdns.Service
	nat  *natState // nat.go

	traffic *traffic // traffic.go

	// ctx is cancelled by Close; every goroutine in wg watches it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// hostReady is closed once n.host is set: libp2p may call back into
	// the node (autorelay's peer source) while libp2p.New still runs.
	hostReady chan struct{}
	// wake nudges the re-dial loop (buffered 1; a pending nudge is enough).
	wake chan struct{}
	// connected nudges the hole-punch retry loop when a peer connects
	// (buffered 1), so that a connection from the wrong port is replaced
	// at once (see redialFromListenPort).
	connected chan struct{}
	// firstConn is closed when the first peer connects (DHT advertising
	// waits for it: with an empty routing table it can only fail).
	firstConn     chan struct{}
	firstConnOnce sync.Once

	mu      sync.Mutex
	closed  bool
	known   map[peer.ID]*knownPeer
	removed map[peer.ID]struct{}
	subs    map[uint64]chan PeerEvent
	nextSub uint64
	// problemLog rate-limits the warnings about misconfigured peers.
	problemLog peerlog.Limiter
	// rng jitters the re-dial backoff (Config.Rand).
	rng *rand.Rand

	// exMu guards exBook, the address exchange's list (exchange.go).
	exMu   sync.Mutex
	exBook exchangeBook

	closeOnce sync.Once
	closeErr  error
}

// New starts a node. It returns an error (never logs-and-continues) when a
// listen address is in use or invalid. The context only bounds start-up.
//
// Everything is running when New returns: the replication subscription
// already queues messages for Receive, static peers are being dialled.
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		if cfg.Host != nil {
			_ = cfg.Host.Close()
		}
		return nil, err
	}
	cfg = cfg.withDefaults()
	self, err := peer.IDFromPrivateKey(cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("p2p: peer ID from identity: %w", err)
	}

	n := &Node{
		cfg:       cfg,
		names:     namesFor(cfg.Env),
		base:      cfg.Logger.With("self", self.String()),
		self:      self,
		trust:     newTrust(self, cfg.Trusted, cfg.DropInbound),
		gater:     newGater(),
		mis:       newMisbehavior(),
		nat:       newNATState(),
		wake:      make(chan struct{}, 1),
		connected: make(chan struct{}, 1),
		hostReady: make(chan struct{}),
		traffic:   newTraffic(cfg.Env),
		firstConn: make(chan struct{}),
		known:     make(map[peer.ID]*knownPeer),
		rng:       cfg.Rand,
		removed:   make(map[peer.ID]struct{}),
		subs:      make(map[uint64]chan PeerEvent),
	}
	n.log = n.base.With("component", "p2p")
	n.nat.log = n.log
	n.gater.banned = n.mis.isBanned
	n.gater.addrDial = n.allowAddrDial
	n.trust.banned = n.mis.isBanned
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = n.shutdown()
		}
	}()

	if err := n.startHost(); err != nil {
		return nil, err
	}
	// Subscribe before anything can connect, so no connection goes unseen.
	n.events, err = n.host.EventBus().Subscribe([]any{
		new(event.EvtPeerConnectednessChanged),
		new(event.EvtPeerIdentificationCompleted),
		new(event.EvtLocalReachabilityChanged),
		new(event.EvtHostReachableAddrsChanged),
	}, eventbus.BufSize(256), eventbus.Name("starling-p2p"))
	if err != nil {
		return nil, fmt.Errorf("p2p: subscribe to host events: %w", err)
	}
	if err := n.startPubSub(); err != nil {
		return nil, err
	}
	n.startBitswap()
	if cfg.DHT {
		if err := n.startDHT(); err != nil {
			return nil, err
		}
	}
	n.startExchange()
	// Listen only now that every protocol handler is registered: a peer
	// that connects at once finds them all.
	for _, a := range cfg.ListenAddrs {
		if err := checkPortFree(a); err != nil {
			return nil, err
		}
		if err := n.host.Network().Listen(a); err != nil {
			return nil, fmt.Errorf("p2p: listen on %s: %w", a, err)
		}
	}
	if cfg.MDNS {
		if err := n.startMDNS(); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("p2p: start: %w", err)
	}

	for _, ai := range cfg.Peers {
		n.addKnown(ai, sourceStatic)
	}

	n.wg.Add(3)
	go n.eventLoop()
	go n.redialLoop()
	go n.livenessLoop()
	if n.cfg.HolePunch {
		n.wg.Go(n.punchRetryLoop)
	}
	n.wg.Go(func() { n.repl.pump(n.ctx) })
	n.wg.Go(func() { n.repl.fillGaps(n.ctx) })
	n.wg.Go(n.sessionLoop)
	if n.dht != nil {
		n.wg.Add(2)
		go n.advertiseLoop()
		go n.findLoop()
	}
	n.log.Info("p2p node started", "addrs", n.Addrs(), "mdns", cfg.MDNS, "dht", cfg.DHT, "private", len(cfg.PSK) > 0,
		"reachability", cfg.Reachability, "autonat", cfg.AutoNAT, "relay_service", cfg.RelayService,
		"auto_relay", cfg.AutoRelay, "hole_punch", cfg.HolePunch, "port_map", cfg.PortMap)
	return n, nil
}

// startHost creates the libp2p host without listening (New listens on
// each address itself, so that any failure is reported with its address;
// libp2p alone succeeds when one address of several works), or takes
// Config.Host.
func (n *Node) startHost() error {
	if h := n.cfg.Host; h != nil {
		// The liveness loop pings every connected peer: a host without
		// the ping service (a mocknet's) would have each one cut after
		// PingTimeout.
		if !slices.Contains(h.Mux().Protocols(), ping.ID) {
			ping.NewPingService(h)
		}
		n.host = h
		close(n.hostReady)
		return nil
	}
	rm, err := resourceManager()
	if err != nil {
		return err
	}
	opts := []libp2p.Option{
		libp2p.ResourceManager(rm),
		libp2p.Identity(n.cfg.Identity),
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ConnectionGater(n.gater),
		// No process-wide Prometheus registry: several nodes share a
		// process in tests and in the local launcher.
		libp2p.DisableMetrics(),
		libp2p.BandwidthReporter(n.traffic),
		libp2p.UserAgent("starling"),
	}
	opts = append(opts, n.hostNATOptions()...)
	if len(n.cfg.PSK) > 0 {
		opts = append(opts, libp2p.PrivateNetwork(pnet.PSK(n.cfg.PSK)))
	} else {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		_ = rm.Close()
		return fmt.Errorf("p2p: create host: %w", err)
	}
	n.host = h
	close(n.hostReady)
	return nil
}

// gossipParams are gossipsub's defaults with a smaller mesh. Every
// author floods its own messages to all its peers (WithFloodPublish), so
// the mesh only carries them further to peers not connected to the
// author: each node still gets each message from the author and from
// each mesh peer, D+1 copies (measured with the default D=6: 7 copies of
// every heartbeat and report). D=4 cuts the copies to 5 and keeps a
// mesh of degree 3-8 per topic, connected with high probability for
// hundreds of nodes. Gossip (IHAVE, the repair path for a message the
// mesh lost) goes to Dlazy=4 peers per topic each heartbeat whatever the
// cluster's size: with a share of the other peers (GossipFactor, 0.25
// by default, then 0.1) it grew with N on every node (100 idle nodes:
// 35 control messages per node per second against 14 at 24), while the
// author's flood already reaches every peer directly.
func gossipParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.D, p.Dlo, p.Dhi, p.Dout, p.Dscore, p.Dlazy = 4, 3, 8, 1, 2, 4
	p.GossipFactor = 0
	return p
}

func (n *Node) startPubSub() error {
	var psCtx context.Context
	psCtx, n.psCancel = context.WithCancel(context.Background())
	opts := []pubsub.Option{
		pubsub.WithMaxMessageSize(maxMessageSize),
		pubsub.WithGossipSubParams(gossipParams()),
		// Own messages go to every peer known on the topic, not only to
		// the mesh: the mesh is built at gossip heartbeats (1s), and a
		// message published before that reached nobody (measured: up to
		// 1s for a write to appear on a peer right after start).
		pubsub.WithFloodPublish(true),
		pubsub.WithLogger(n.base.With("component", "pubsub")),
		pubsub.WithRawTracer(n.traffic),
		// --trust guards what this node gives too: gossipsub keeps no
		// session with an untrusted peer (untrustedList).
		pubsub.WithBlacklist(untrustedList{n.trust}),
	}
	// The app-specific score is the only score component (IP colocation
	// is off: a site's nodes may share an address): a peer scores
	// misScore per misbehaviour point (misbehave.go): ignored from 10
	// points, disconnected at 20.
	// SeenMsgTTL: the score keeps a record of every message and of each
	// peer that delivered it again, for the topic delivery scores, which
	// are not used here; kept the default 2 minutes (and up to a minute
	// more until the next sweep), they were the largest part of an idle
	// node's heap: 2.3 MiB per node at 24 nodes, growing as N^2 with
	// flood publishing. A record needs to outlive the validation of its
	// message only.
	opts = append(opts, pubsub.WithPeerScore(&pubsub.PeerScoreParams{
		SeenMsgTTL: scoreSeenTTL,
		AppSpecificScore: func(id peer.ID) float64 {
			return misScore * n.mis.points(id)
		},
		AppSpecificWeight: 1,
		DecayInterval:     time.Second,
		DecayToZero:       0.01,
	}, &pubsub.PeerScoreThresholds{GossipThreshold: -10, PublishThreshold: -50, GraylistThreshold: -100}))
	ps, err := pubsub.NewGossipSub(psCtx, n.host, opts...)
	if err != nil {
		return fmt.Errorf("p2p: start gossipsub: %w", err)
	}
	n.ps = ps
	if n.sessions, err = newSessionCheck(n.host); err != nil {
		return fmt.Errorf("p2p: start gossipsub: %w", err)
	}
	n.repl, err = newReplication(n.host, ps, n.names, n.trust, n.base.With("component", "replication"))
	if n.repl != nil {
		n.repl.misbehaved = n.Misbehaved
		n.repl.counts = n.traffic.count(n.traffic.protoSource(n.names.directProto))
	}
	return err
}

// scoreSeenTTL is how long gossipsub's peer score keeps a message's
// delivery record (see startPubSub).
const scoreSeenTTL = 5 * time.Second

// bitswapBlockstoreWorkers is how many goroutines read the blockstore for
// bitswap's answers. boxo starts 128 (sized for a disk-bound IPFS node
// serving the public network), each idle one a goroutine stack of its
// own: about 0.7 MiB per node. Here the blockstore is LevelDB, a read
// takes microseconds, and most blocks travel inside broadcasts anyway.
const bitswapBlockstoreWorkers = 8

func (n *Node) startBitswap() {
	var bsCtx context.Context
	bsCtx, n.bsCancel = context.WithCancel(context.Background())
	bstore := blockstore.NewBlockstore(n.cfg.Blockstore)
	net := bsnet.NewFromIpfsHost(n.host, bsnet.Prefix(n.names.bitswapPrefix))
	// No content routing: every node replicates everything, so the blocks
	// a node wants are with the peers it is connected to.
	// An untrusted peer cannot fetch blocks (the whole history) either.
	n.bswap = bitswap.New(bsCtx, net, nil, bstore,
		bitswap.WithPeerBlockRequestFilter(func(id peer.ID, _ cid.Cid) bool { return n.trust.trusts(id) }),
		bitswap.EngineBlockstoreWorkerCount(bitswapBlockstoreWorkers))
	n.dag = merkledag.NewDAGService(blockservice.New(bstore, n.bswap))
}

// ID is this node's peer ID.
func (n *Node) ID() peer.ID { return n.self }

// Host exposes the libp2p host (for protocols such as the election topic).
func (n *Node) Host() host.Host { return n.host }

// Addrs are this node's listen addresses with /p2p/<id> appended.
func (n *Node) Addrs() []multiaddr.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.self, Addrs: n.host.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// DAGService is a DAG service over the Blockstore that fetches missing
// blocks from peers with bitswap.
func (n *Node) DAGService() ipld.DAGService { return n.dag }

// Replication returns the transport for the replication topic. It
// satisfies crdt.Transport. Calling it twice returns the same value.
func (n *Node) Replication() *Replication { return n.repl }

// SubscribePeers delivers peer events until cancel is called or the node
// closes (then the channel is closed). Events are dropped for a
// subscriber whose buffer (64) is full.
//
// Events come from one goroutine, in the order libp2p reports them. A
// connection closed right after it opened may be reported as a disconnect
// alone (libp2p coalesces the two).
func (n *Node) SubscribePeers() (events <-chan PeerEvent, cancel func()) {
	ch := make(chan PeerEvent, peerEventBuffer)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(ch)
		return ch, func() {}
	}
	id := n.nextSub
	n.nextSub++
	n.subs[id] = ch
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if c, ok := n.subs[id]; ok {
			delete(n.subs, id)
			close(c)
		}
	}
}

// publishEvent fans ev out without blocking. Callers hold n.mu.
func (n *Node) publishEvent(ev PeerEvent) {
	for _, ch := range n.subs {
		select {
		case ch <- ev:
		default:
			n.log.Warn("peer event dropped: subscriber is slow", "peer", ev.Peer, "connected", ev.Connected)
		}
	}
}

// Close stops discovery, the re-dial loop, bitswap, pubsub and the host,
// in that order, and waits for every goroutine. Safe to call twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.shutdown() })
	return n.closeErr
}

// shutdown tears down whatever New got to start, in the order measured to
// leak nothing: discovery and loops, bitswap, pubsub, DHT, host.
func (n *Node) shutdown() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	if n.repl != nil {
		close(n.repl.done)
	}

	var errs []error
	if n.mdns != nil {
		errs = append(errs, n.mdns.Close())
	}
	n.cancel()
	// The event loop has stopped reading: close the subscription (it
	// drains itself) before waiting, or a dial or stream still running
	// in wg blocks for good in the host's emit of its connection event
	// once the subscription's buffer is full (a mocknet host emits
	// synchronously, holding the connection's lock).
	if n.events != nil {
		errs = append(errs, n.events.Close())
	}
	n.wg.Wait()
	n.closeRelay()
	if n.bswap != nil {
		errs = append(errs, n.bswap.Close())
		n.bsCancel()
	}
	if n.repl != nil {
		n.repl.close()
	}
	if n.psCancel != nil {
		n.psCancel()
	}
	if n.sessions != nil {
		errs = append(errs, n.sessions.emit.Close())
	}
	if n.dht != nil {
		errs = append(errs, n.dht.Close())
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}

	n.mu.Lock()
	for id, ch := range n.subs {
		delete(n.subs, id)
		close(ch)
	}
	n.mu.Unlock()

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p: close: %w", err)
	}
	return nil
}
