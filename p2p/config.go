package p2p

import (
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"
)

// Defaults. Each one says why it has the value it has.
const (
	// defaultPort is libp2p's customary port, so firewall rules written for
	// IPFS-style nodes apply.
	defaultPort = 4001
	// defaultRedialMin is short enough that a peer lost to a transient
	// fault is back within a blink, long enough not to spin on a peer that
	// refuses at once.
	defaultRedialMin = 250 * time.Millisecond
	// defaultRedialMax bounds how long a healed partition stays unhealed:
	// neither gossipsub (backs off to 1 h) nor mDNS (~53 min) re-dial
	// quickly on their own.
	defaultRedialMax = 5 * time.Second
	// defaultPingInterval gives several probes per PingTimeout, so one lost
	// ping does not cut a healthy link.
	defaultPingInterval = time.Second
	// defaultPingTimeout is how long a silent peer keeps its connection: TCP
	// alone notices a silent partition only after minutes.
	defaultPingTimeout = 4 * time.Second

	// defaultMaxPeers: see Config.MaxPeers. Enough for gossipsub's mesh
	// (3 to 8 peers per topic, gossipParams) with room for its gossip
	// (Dlazy 4), small enough that an idle node's pings, streams and peer
	// state stay small.
	defaultMaxPeers = 12

	// maxEnvLen bounds Config.Env; names derived from it must stay short
	// (the mDNS service name is one DNS label of at most 63 bytes).
	maxEnvLen = 64
	// pskLen is the size of a libp2p private network key.
	pskLen = 32
)

// DefaultConfig returns a Config for env with documented defaults; Identity
// and Blockstore must still be set.
//
// ListenAddrs is left empty: New then listens on /ip4/0.0.0.0/tcp/4001 and,
// when no PSK is set, on /ip4/0.0.0.0/udp/4001/quic-v1 too. Deciding in New
// lets a caller set a PSK after DefaultConfig without having to remove QUIC.
func DefaultConfig(env string) Config {
	return Config{
		Env:          env,
		MDNS:         true,
		DHT:          true,
		RedialMin:    defaultRedialMin,
		RedialMax:    defaultRedialMax,
		PingInterval: defaultPingInterval,
		PingTimeout:  defaultPingTimeout,
		Reachability: ReachabilityAuto,
		AutoNAT:      true,
		RelayService: true,
		AutoRelay:    true,
		HolePunch:    true,
		PortMap:      true,
	}
}

// withDefaults returns a copy of c with zero values replaced by the
// defaults: durations, Logger, Rand and ListenAddrs. Booleans cannot be told from
// "unset", which is why DefaultConfig exists.
func (c Config) withDefaults() Config {
	if c.RedialMin == 0 {
		c.RedialMin = defaultRedialMin
	}
	if c.RedialMax == 0 {
		c.RedialMax = max(defaultRedialMax, c.RedialMin)
	}
	if c.PingInterval == 0 {
		c.PingInterval = defaultPingInterval
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = max(defaultPingTimeout, c.PingInterval)
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = defaultMaxPeers
	}
	if c.trimGrace == 0 {
		c.trimGrace = defaultTrimGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rand == nil {
		var seed [32]byte
		_, _ = crand.Read(seed[:]) // never fails (crypto/rand's contract)
		c.Rand = rand.New(rand.NewChaCha8(seed))
	}
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = defaultListenAddrs(len(c.PSK) > 0)
	}
	if c.Reachability == "" {
		c.Reachability = ReachabilityAuto
	}
	if c.Host != nil {
		// Settings of a host's construction and sockets (see Host): off,
		// so that New skips them and its log says what runs.
		c.ListenAddrs, c.PSK, c.MDNS = nil, nil, false
		c.AutoNAT, c.RelayService, c.AutoRelay, c.HolePunch, c.PortMap = false, false, false, false, false
	}
	return c
}

func defaultListenAddrs(private bool) []multiaddr.Multiaddr {
	addrs := []multiaddr.Multiaddr{
		multiaddr.StringCast(fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", defaultPort)),
	}
	if !private {
		addrs = append(addrs, multiaddr.StringCast(fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", defaultPort)))
	}
	return addrs
}

// Validate reports every problem of cfg at once, naming the field.
//
// Zero durations and an empty ListenAddrs are valid: they take the
// defaults documented on each field.
func (c *Config) Validate() error {
	cfg := c.withDefaults()
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}

	switch {
	case cfg.Env == "":
		add("Env: required (e.g. \"prod-site-a\"); it keeps environments apart")
	case len(cfg.Env) > maxEnvLen:
		add("Env: %d characters, at most %d allowed", len(cfg.Env), maxEnvLen)
	case strings.Trim(cfg.Env, "abcdefghijklmnopqrstuvwxyz0123456789-") != "":
		add("Env: %q may only contain a-z, 0-9 and '-'", cfg.Env)
	}

	var self peer.ID
	if cfg.Identity == nil {
		add("Identity: required (load it with LoadOrCreateIdentity)")
	} else if cfg.Identity.Type() != crypto.Ed25519 {
		add("Identity: key type %s, want Ed25519", cfg.Identity.Type())
	} else if id, err := peer.IDFromPrivateKey(cfg.Identity); err != nil {
		add("Identity: %v", err)
	} else {
		self = id
	}

	if len(cfg.PSK) != 0 && len(cfg.PSK) != pskLen {
		add("PSK: %d bytes, want %d (load it with LoadPSK)", len(cfg.PSK), pskLen)
	}

	for i, a := range cfg.ListenAddrs {
		switch {
		case len(a) == 0:
			add("ListenAddrs[%d]: empty address", i)
		case len(cfg.PSK) > 0 && isQUIC(a):
			add("ListenAddrs[%d]: %s is QUIC, which a private network key (PSK) does not support; listen on TCP", i, a)
		}
	}

	for i, ai := range cfg.Peers {
		switch {
		case ai.ID == "":
			add("Peers[%d]: no peer ID (the address must end in /p2p/<id>)", i)
		case self != "" && ai.ID == self:
			add("Peers[%d]: %s is this node itself", i, ai.ID)
		}
	}
	for i, id := range cfg.Trusted {
		if id == "" {
			add("Trusted[%d]: empty peer ID", i)
		}
	}

	if cfg.RedialMin < 0 {
		add("RedialMin: %s is negative", cfg.RedialMin)
	}
	if cfg.RedialMax < cfg.RedialMin {
		add("RedialMax: %s is less than RedialMin (%s)", cfg.RedialMax, cfg.RedialMin)
	}
	if cfg.PingInterval < 0 {
		add("PingInterval: %s is negative", cfg.PingInterval)
	}
	if cfg.PingTimeout < cfg.PingInterval {
		add("PingTimeout: %s is less than PingInterval (%s); a peer would be cut between two pings", cfg.PingTimeout, cfg.PingInterval)
	}

	if cfg.MaxPeers < 0 {
		add("MaxPeers: %d is negative (0 takes the default, %d)", cfg.MaxPeers, defaultMaxPeers)
	}

	switch cfg.Reachability {
	case ReachabilityAuto, ReachabilityPublic, ReachabilityPrivate:
	default:
		add("Reachability: %q, want auto, public or private", cfg.Reachability)
	}

	if c.Host != nil && self != "" && c.Host.ID() != self {
		add("Host: its peer ID %s is not Identity's (%s)", c.Host.ID(), self)
	}

	if cfg.Blockstore == nil {
		add("Blockstore: required (a namespace of the node's datastore)")
	}

	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("p2p: invalid config: %s", strings.Join(problems, "; "))
}

func isQUIC(a multiaddr.Multiaddr) bool {
	for _, c := range a {
		switch c.Protocol().Code {
		case multiaddr.P_QUIC, multiaddr.P_QUIC_V1:
			return true
		}
	}
	return false
}

// envNames are the protocol and service names derived from Config.Env, so
// that two environments never mix even without a PSK.
type envNames struct {
	mdnsService   string      // mDNS service, "_starling-<env>._udp"
	rendezvous    string      // DHT rendezvous namespace, "starling/<env>"
	topic         string      // gossipsub topic, "starling/<env>/replication"
	dhtPrefix     protocol.ID // "/starling/<env>" (kad protocol is <prefix>/kad/1.0.0)
	bitswapPrefix protocol.ID // "/starling/<env>"
	directProto   protocol.ID // "/starling/<env>/replication/1.0.0"
}

func namesFor(env string) envNames {
	return envNames{
		mdnsService:   mdnsServiceName(env),
		rendezvous:    "starling/" + env,
		topic:         "starling/" + env + "/replication",
		dhtPrefix:     protocol.ID("/starling/" + env),
		bitswapPrefix: protocol.ID("/starling/" + env),
		directProto:   protocol.ID("/starling/" + env + "/replication/1.0.0"),
	}
}

// mdnsServiceName derives the mDNS service from env. A DNS label holds at
// most 63 bytes; an env too long for "_starling-<env>" is shortened to a
// prefix plus a hash, which stays unique per env.
func mdnsServiceName(env string) string {
	const prefix, maxLabel = "_starling-", 63
	label := prefix + env
	if len(label) > maxLabel {
		sum := sha256.Sum256([]byte(env))
		h := hex.EncodeToString(sum[:6]) // 12 characters
		label = prefix + env[:maxLabel-len(prefix)-1-len(h)] + "-" + h
	}
	return label + "._udp"
}
