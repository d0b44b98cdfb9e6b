package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipfs/boxo/blockstore"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/net/netutil"

	"github.com/multiformats/go-multiaddr"
	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/httpapi"
	"github.com/starling-sync/starling/internal/version"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/nodestate/monitor"
	"github.com/starling-sync/starling/p2p"
	"github.com/starling-sync/starling/statesync"
)

// The p2p package's replication transport is what the store consumes.
var _ crdt.Transport = (*p2p.Replication)(nil)

// BlocksNamespace is where DAG blocks live in the node's LevelDB; the
// CRDT store uses crdt.Options.Namespace (default "/crdt").
var BlocksNamespace = ds.NewKey("/blocks")

// ErrInUse means another process (or another Node in this process) has
// the data directory open. Test with errors.Is.
var ErrInUse = errors.New("node: data dir in use")

// Node is a running Starling node: LevelDB, the libp2p node, the
// replicated store, and the HTTP API, assembled from a data directory.
type Node struct {
	dir   string
	cfg   Config
	log   *slog.Logger
	token string
	ldb   *crdt.LevelDB
	p2p   *p2p.Node
	store *crdt.Store
	// entities is the entity tree over store.
	entities *entity.Store
	elect    electionState     // leader election (election.go)
	sync     *statesync.Syncer // join and resync by state transfer
	avail    *availability     // whether it may lead the cluster (available.go)
	mon      *monitor.Monitor  // node states, metrics, samples
	web      *httpapi.WebUI    // the web page's one-time login codes
	srv      *http.Server
	apiAddr  string
	// apiCertSHA256 is the API certificate's fingerprint; "" without
	// TLS, whose config apiTLS is.
	apiCertSHA256 string
	apiTLS        *tls.Config
	build         version.Info // what status, reports and metrics say runs

	stopPeers   chan struct{} // closed by Close: ends the peer-event loop
	cancelPeers func()        // ends the p2p subscription
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
	// closing is set when Close begins: /readyz turns 503 at once.
	closing atomic.Bool
}

// Option adjusts Open.
type Option func(*openOptions)

type openOptions struct {
	logger    *slog.Logger
	configure []func(*Config)
	p2pConfig []func(*p2p.Config)
	crdtOpts  crdt.Options
	clockOff  time.Duration
	// noAPI: no HTTP API (WithoutAPI).
	noAPI bool
	// build replaces the running build in reports and status (tests of
	// mixed versions).
	build *version.Info

	// electionConfig adjusts the election's config (election.go).
	electionConfig []func(*election.Config)
	// joinTimeout bounds the wait for a peer to join from (statesync).
	joinTimeout time.Duration
	// joinRetry is statesync's JoinRetry (tests only).
	joinRetry time.Duration
	// peerStates sets the node-state timings (nodestate).
	peerStates nodestate.PeerStateConfig
	// newHost makes the libp2p host (WithHost).
	newHost func(identity crypto.PrivKey) (host.Host, error)
}

// The API server's connection limits: a kept-alive connection with no
// request for apiIdleTimeout is closed (without, idle connections were
// held forever), and at most apiMaxConns are open at once, so that API
// clients cannot take the file descriptors libp2p and LevelDB need
// (further connections wait in the listen queue). Clients without the
// token have their connection closed after the 401 (httpapi).
const (
	apiIdleTimeout = 2 * time.Minute
	apiMaxConns    = 4096
)

// WithClockOffset adds d to the node's physical clock (the hybrid logical
// clock's input), to test clock skew: faketime does not reach Go binaries.
func WithClockOffset(d time.Duration) Option {
	return func(o *openOptions) { o.clockOff = d }
}

// WithoutAPI opens the node without its HTTP API and web page, for a
// program that embeds it and uses the Go API only (Entities, Election,
// Store, ...): no port is bound, no DIR/api.json is written, so the
// client commands (`starling get --data DIR`) cannot reach it; APIAddr
// and WebLoginURL are empty and Client's calls fail.
func WithoutAPI() Option { return func(o *openOptions) { o.noAPI = true } }

// WithLogger sets the node's logger (default: discard). Components log
// with a "component" attribute.
func WithLogger(l *slog.Logger) Option { return func(o *openOptions) { o.logger = l } }

// WithSettings applies command-line settings to the loaded config for
// this run only (config.json is not changed).
func WithSettings(s Settings) Option {
	return WithConfig(s.Apply)
}

// WithConfig changes the loaded config for this run only.
func WithConfig(f func(*Config)) Option {
	return func(o *openOptions) { o.configure = append(o.configure, f) }
}

// WithP2PConfig adjusts the libp2p node's config after it is built
// from the node config (tests shorten timers with it).
func WithP2PConfig(f func(*p2p.Config)) Option {
	return func(o *openOptions) { o.p2pConfig = append(o.p2pConfig, f) }
}

// WithHost runs the node on the libp2p host newHost makes, given the
// node's identity key (the host's peer ID must be its), instead of one
// listening on listen_addrs: simulations run whole nodes on libp2p's
// mocknet this way (mocknet.AddPeer). Everything else is the node's
// own: its data directory, LevelDB, store, election and node states,
// and p2p's re-dial loop, gossipsub and bitswap on that host; what
// configures sockets (listen_addrs, the private network key, mDNS, NAT
// traversal) does not apply (p2p.Config.Host). The node closes the
// host when it closes, or when Open fails after making it.
func WithHost(newHost func(identity crypto.PrivKey) (host.Host, error)) Option {
	return func(o *openOptions) { o.newHost = newHost }
}

// WithPeerStateConfig sets the timings of the node states this node
// computes for its peers (SUSPECT, DEAD, LEFT); zero fields keep the
// defaults. Tests shorten them.
func WithPeerStateConfig(c nodestate.PeerStateConfig) Option {
	return func(o *openOptions) { o.peerStates = c }
}

// WithCRDTOptions sets the store's options (zero fields take the
// store's defaults, or for CompactInterval and CompactMaxAge the
// config's compact_every; the logger is set by Open unless given).
func WithCRDTOptions(opts crdt.Options) Option {
	return func(o *openOptions) { o.crdtOpts = opts }
}

// Open starts the node of data directory dir: it loads and validates the
// config, opens LevelDB (whose lock refuses a second node on dir), binds
// the API address (so a port in use fails before libp2p starts), starts
// libp2p and the replicated store,
// forwards new peer connections to the store, serves the API, and
// writes DIR/api.json. On error everything started so far is stopped.
// The context bounds start-up only.
func Open(ctx context.Context, dir string, opts ...Option) (_ *Node, err error) {
	var o openOptions
	for _, f := range opts {
		f(&o)
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range o.configure {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{dir: dir, cfg: *cfg, log: log.With("node", cfg.NodeID), stopPeers: make(chan struct{}), build: version.Get()}
	if o.build != nil {
		n.build = *o.build
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()

	// Everything that can be checked cheaply first.
	listen, err := ParseListenAddrs(cfg.ListenAddrs)
	if err != nil {
		return nil, fmt.Errorf("listen_addrs (--listen): %w", err)
	}
	peers, err := p2p.ParsePeerAddrs(cfg.Peers)
	if err != nil {
		return nil, fmt.Errorf("peers (--peer): %w", err)
	}
	trusted := make([]peer.ID, 0, len(cfg.Trusted))
	for _, s := range cfg.Trusted {
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("trusted (--trust): %q: %w", s, err)
		}
		trusted = append(trusted, id)
	}
	if w := cfg.OpenNetworkWarning(dir); w != "" {
		n.log.Warn(w)
	}
	var psk []byte
	if path := cfg.PSKPath(dir); path != "" {
		if err := checkPSKFile(p2pKeys{}, path); err != nil {
			return nil, err
		}
		if psk, err = p2p.LoadPSK(path); err != nil {
			return nil, fmt.Errorf("psk_file (--psk-file): %s: %w", path, err)
		}
	}
	if n.token, _, err = ensureToken(dir); err != nil {
		return nil, err
	}
	// LevelDB holds blocks and the store. Its lock file also keeps a
	// second node off the directory, so it is opened first.
	dbPath := filepath.Join(dir, api.DatastoreDir)
	n.ldb, err = crdt.OpenLevelDBWith(dbPath, crdt.LevelDBOptions{
		Logger:      n.log,
		WriteBuffer: cfg.StoreWriteBufferMiB << 20,
		BlockCache:  cfg.StoreCacheMiB << 20,
	})
	if err != nil {
		return nil, n.datastoreError(dbPath, err)
	}

	var ln net.Listener
	if !o.noAPI {
		ln, err = net.Listen("tcp", cfg.APIAddr)
		if err != nil {
			return nil, fmt.Errorf("api_addr (--api): cannot listen on %s: %w: choose another address with --api (port 0 picks a free one) or stop what uses it", cfg.APIAddr, err)
		}
		n.apiAddr = ln.Addr().String()
		if n.apiTLS, n.apiCertSHA256, err = apiTLS(dir, cfg); err != nil {
			_ = ln.Close()
			return nil, err
		}
		if n.apiTLS == nil && !apiLoopback(cfg.APIAddr) {
			n.log.Warn("the API is reachable from other machines without TLS: its token and data cross the network in the clear; set api_tls to auto or on (config.json, or run --api-tls auto)", "api", cfg.APIAddr)
		}
		n.srv = &http.Server{
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       apiIdleTimeout,
			ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		}
		defer func() {
			if err != nil && n.srv.Handler == nil {
				_ = ln.Close() // not served yet: Close's Shutdown does not know it
			}
		}()
	}

	identity, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, api.IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	pc := p2p.DefaultConfig(cfg.Env)
	pc.Identity = identity
	pc.PSK = psk
	pc.ListenAddrs = listen
	pc.Peers = peers
	pc.MaxPeers = cfg.MaxPeers
	pc.MDNS = cfg.MDNS
	pc.DHT = cfg.DHT
	pc.Reachability = cfg.Reachability
	pc.AutoNAT = cfg.AutoNAT
	pc.RelayService = cfg.RelayService
	pc.AutoRelay = cfg.AutoRelay
	pc.HolePunch = cfg.HolePunching
	pc.PortMap = cfg.PortMapping
	pc.Trusted = trusted
	pc.Blockstore = namespace.Wrap(n.ldb, BlocksNamespace)
	// p2p, crdt and entity name themselves with a "component" attribute;
	// giving them one too wrote it twice in every line.
	pc.Logger = n.log
	for _, f := range o.p2pConfig {
		f(&pc)
	}
	if o.newHost != nil {
		if pc.Host, err = o.newHost(identity); err != nil {
			return nil, fmt.Errorf("start libp2p: make the host: %w", err)
		}
	}
	n.p2p, err = p2p.New(ctx, pc) // closes pc.Host if it fails
	if err != nil {
		return nil, fmt.Errorf("start libp2p: %w", err)
	}
	// Subscribe before the store exists so that no connection made
	// meanwhile is missed (the subscription buffers 64 events).
	events, cancel := n.p2p.SubscribePeers()
	n.cancelPeers = cancel

	co := compactOptions(cfg.CompactEvery, o.crdtOpts)
	if co.EvictAfter == 0 {
		co.EvictAfter, _ = parseEvictAfter(cfg.EvictAfter) // Validate checked it
	}
	co.Self = n.p2p.ID().String()
	// A node with no state decides whether to join by state transfer
	// before it merges anything a peer sends (statesync releases it).
	co.HoldRemoteWhenEmpty = true
	if co.Logger == nil {
		co.Logger = n.log
	}
	if co.LocalBlocks == nil {
		// The same blocks p2p serves, read without the network, for
		// branch requests between stores.
		co.LocalBlocks = blockstore.NewBlockstore(namespace.Wrap(n.ldb, BlocksNamespace))
	}
	n.store, err = crdt.Open(ctx, n.ldb, n.p2p.DAGService(), n.p2p.Replication(), co)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	n.wg.Add(1)
	go n.forwardPeerEvents(events)

	off := o.clockOff
	n.entities, err = entity.Open(ctx, n.store, entity.Options{
		NodeID: cfg.NodeID,
		Now:    func() time.Time { return time.Now().Add(off) },
		Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("open entity tree: %w", err)
	}
	if err := n.startElection(o.electionConfig); err != nil {
		return nil, err
	}
	n.avail = newAvailability(n.elect.runner.SetNodeAvailable)
	n.wg.Add(1)
	go n.watchWritable()
	n.sync, err = statesync.New(statesync.Config{
		NodeID: cfg.NodeID, Store: n.store, P2P: n.p2p, HasPeers: len(cfg.Peers) > 0 || cfg.MDNS || cfg.DHT,
		JoinTimeout: o.joinTimeout, JoinRetry: o.joinRetry, Loads: n.entities.Loads,
		Available: func(ok bool) error { return n.avail.hold(holdSync, !ok) },
		Logger:    n.log.With("component", "statesync"),
	})
	if err != nil {
		return nil, err
	}
	n.mon, err = monitor.Start(monitor.Config{
		NodeID: cfg.NodeID, Env: cfg.Env, Build: n.build, P2P: n.p2p, Store: n.store, Election: n.elect.runner, Rebase: n.Resync,
		Entities: n.entities, Sync: n.SyncProgress, PeerStates: o.peerStates,
		Logger: n.log.With("component", "nodestate"),
	})
	if err != nil {
		return nil, err
	}
	if !o.noAPI {
		if err := n.serveAPI(ln); err != nil {
			return nil, err
		}
	}
	if err := n.sync.Start(); err != nil {
		return nil, err
	}
	// The web page's address only: a one-time login URL in a log would
	// let whoever reads the log in (`starling web` makes one on demand).
	web := ""
	if n.apiAddr != "" {
		web = n.scheme() + n.apiAddr + "/ui/"
	}
	n.log.Info("node started", "peer", n.p2p.ID(), "api", n.apiAddr, "env", cfg.Env, "web", web)
	return n, nil
}

// serveAPI serves the HTTP API and the web page on ln, and writes
// DIR/api.json.
func (n *Node) serveAPI(ln net.Listener) error {
	n.web = httpapi.NewWebUI(n.token, nil)
	h, err := httpapi.NewAPIHandler(httpapi.APIConfig{
		Token:     n.token,
		Tokens:    httpapi.NewFileTokens(n.dir),
		KV:        storeKV{n.store},
		Peers:     monitoredPeers{p2pPeers{n.p2p}, n.mon, n.dir},
		Status:    n,
		Entities:  n.entities,
		Election:  n.elect.runner,
		Cluster:   n.mon,
		Sync:      n,
		Compactor: storeCompactor{n.store},
		Backup:    n,
		Ready:     n,
		Metrics:   storeMetrics{n.mon.Handler(), n.ldb},
		Web:       n.web,
		Logger:    n.log.With("component", "api"),
	})
	if err != nil {
		return err
	}
	n.srv.Handler = n.mon.Instrument(h)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		l := netutil.LimitListener(ln, apiMaxConns)
		if n.apiTLS != nil {
			l = tls.NewListener(l, n.apiTLS)
		}
		if err := n.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API server stopped", "err", err)
		}
	}()
	return n.writeAPIInfo()
}

func (n *Node) datastoreError(path string, err error) error {
	return datastoreError(n.dir, path, err)
}

// datastoreError explains a failed LevelDB open of data directory dir.
func datastoreError(dir, path string, err error) error {
	// goleveldb returns flock's errno as is when the LOCK file is held.
	if errors.Is(err, syscall.EWOULDBLOCK) {
		hint := "another starling process uses it"
		if info, ierr := api.ReadAPIInfo(dir); ierr == nil && info.Alive() {
			hint = fmt.Sprintf("a node is running on it (pid %d, API %s)", info.PID, info.Addr)
		}
		return fmt.Errorf("%w: %s: %s: stop it first, or use another --data", ErrInUse, dir, hint)
	}
	if errors.Is(err, crdt.ErrDamaged) {
		// Refused, not repaired in place: the node cannot tell which keys
		// a lost file held. Started anyway, it would serve and replicate
		// their absence; marked dirty, a resync would write its
		// surviving live values back on top of the peers' state, bringing
		// back keys whose tombstones were in the lost file. An empty
		// store joins by state transfer instead, from the peers' state.
		return fmt.Errorf("%w; the node did not start, so that it serves and replicates no data silently missing. "+
			"To recover, with peers: move the datastore aside (mv %s %s.damaged) and start the node again: it starts empty and joins by state transfer from a peer "+
			"(writes this node made that no peer received are lost; the damaged copy stays for inspection). "+
			"With no peer that has the data, restore %s from a backup", err, path, path, path)
	}
	return err // crdt.OpenLevelDB names the path
}

// forwardPeerEvents tells the store about every new connection, so it
// sends its heads at once instead of waiting for the rebroadcast.
func (n *Node) forwardPeerEvents(events <-chan p2p.PeerEvent) {
	defer n.wg.Done()
	// Peers connected before the subscription existed.
	for _, p := range n.p2p.Peers() {
		if p.Connected {
			n.store.PeerConnected(p.ID.String())
		}
	}
	for {
		select {
		case <-n.stopPeers:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Connected {
				n.log.Debug("peer connected", "peer", ev.Peer)
				n.store.PeerConnected(ev.Peer.String())
			} else {
				n.log.Debug("peer disconnected", "peer", ev.Peer)
				n.store.PeerDisconnected(ev.Peer.String())
			}
		}
	}
}

func (n *Node) writeAPIInfo() error {
	b, err := json.Marshal(api.APIInfo{Addr: n.apiAddr, PID: os.Getpid(), CertSHA256: n.apiCertSHA256})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(n.dir, api.APIFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", api.APIFile, err)
	}
	return nil
}

// Close stops the node: the API server, the peer-event loop, the store,
// libp2p and LevelDB, in that order, and removes DIR/api.json. It waits
// for every goroutine the node started and is safe to call twice.
func (n *Node) Close() error {
	n.closing.Store(true)
	n.closeOnce.Do(func() {
		var errs []error
		// The node-state goodbye first (the others show LEAVING at once);
		// the election's linger below gives it time to leave.
		if n.mon != nil {
			if err := n.mon.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close node states: %w", err))
			}
		}
		// The election first, while the network is up: its goodbye makes
		// the others fail over at once, and its streams tell `lead` to
		// stop its command without delay.
		if err := n.closeElection(); err != nil {
			errs = append(errs, err)
		}
		// The entity tree first: it ends watch streams, which would
		// otherwise hold the API server's shutdown.
		if n.entities != nil {
			_ = n.entities.Close()
		}
		if n.srv != nil && n.srv.Handler != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop API: %w", err))
				_ = n.srv.Close()
			}
			cancel()
			_ = os.Remove(filepath.Join(n.dir, api.APIFile))
		}
		close(n.stopPeers)
		if n.sync != nil {
			n.sync.Close()
		}
		if n.cancelPeers != nil {
			n.cancelPeers()
		}
		n.wg.Wait()
		if n.store != nil {
			if err := n.store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close store: %w", err))
			}
		}
		if n.p2p != nil {
			if err := n.p2p.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close libp2p: %w", err))
			}
		}
		if n.ldb != nil {
			if err := n.ldb.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close datastore: %w", err))
			}
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// Dir is the node's data directory.
func (n *Node) Dir() string { return n.dir }

// Config is the configuration the node runs with (after overrides).
func (n *Node) Config() Config { return n.cfg }

// NodeID is the node's configured ID.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// PeerID is the node's libp2p peer ID.
func (n *Node) PeerID() peer.ID { return n.p2p.ID() }

// APIAddr is the address the API is bound to (host:port).
func (n *Node) APIAddr() string { return n.apiAddr }

// Token is the API's bearer token.
func (n *Node) Token() string { return n.token }

// Client returns an API client for this node.
func (n *Node) Client() *api.Client {
	if n.apiCertSHA256 != "" {
		return api.NewPinnedClient(n.apiAddr, n.token, n.apiCertSHA256)
	}
	return api.NewClient(n.apiAddr, n.token)
}

// scheme is the API's URL scheme, with "://".
func (n *Node) scheme() string {
	if n.apiCertSHA256 != "" {
		return "https://"
	}
	return "http://"
}

// APICertSHA256 is the SHA-256 (hex) of the API's TLS certificate, or ""
// when the API serves plain HTTP.
func (n *Node) APICertSHA256() string { return n.apiCertSHA256 }

// P2P exposes the libp2p node (peers, Block/Unblock for partitions).
func (n *Node) P2P() *p2p.Node { return n.p2p }

// Store exposes the replicated store.
func (n *Node) Store() *crdt.Store { return n.store }

// Entities returns the node's entity tree.
func (n *Node) Entities() *entity.Store { return n.entities }

// Status implements httpapi.StatusSource.
func (n *Node) Status(ctx context.Context) (api.StatusInfo, error) {
	peers, _ := p2pPeers{n.p2p}.Peers(ctx)
	addrs := make([]string, 0)
	for _, a := range n.p2p.Addrs() {
		addrs = append(addrs, a.String())
	}
	return api.StatusInfo{
		NodeID:         n.cfg.NodeID,
		PeerID:         n.p2p.ID().String(),
		Env:            n.cfg.Env,
		PrivateNetwork: n.cfg.PSKFile != "",
		Addrs:          addrs,
		APIAddr:        n.apiAddr,
		APICertSHA256:  n.apiCertSHA256,
		NAT:            natStatus(n.p2p.NATStatus()),
		Peers:          peers,
		Store:          api.StoreStatus(n.store.Status(ctx)),
		Clock:          n.mon.ClockStatus(),
		Links:          n.mon.LinkStatus(),
		Version:        n.build.String(),
	}, nil
}

// ClusterStatus returns the cluster table as GET /v1/cluster/status
// does, without going through HTTP.
func (n *Node) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	return n.mon.ClusterStatus(ctx)
}

// WebLoginURL returns a new one-time login URL of the node's web page.
func (n *Node) WebLoginURL() string {
	if n.web == nil {
		return ""
	}
	return n.scheme() + n.apiAddr + api.LoginPath(n.web.LoginCode())
}

func natStatus(s p2p.NATStatus) api.NATStatus {
	strs := func(as []multiaddr.Multiaddr) []string {
		out := make([]string, 0, len(as))
		for _, a := range as {
			out = append(out, a.String())
		}
		return out
	}
	return api.NATStatus{
		Reachability:       s.Reachability,
		ObservedAddrs:      strs(s.Observed),
		ReachableAddrs:     strs(s.Reachable),
		UnreachableAddrs:   strs(s.Unreachable),
		RelayAddrs:         strs(s.RelayAddrs),
		HolePunchAttempts:  s.HolePunchAttempts,
		HolePunchSuccesses: s.HolePunchSuccesses,
		RelayedBytes:       s.RelayedBytes,
		RelayCircuits:      s.RelayCircuits,
		RelayReservations:  s.Reservations,
	}
}
