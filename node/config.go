package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/p2p"
)

// Defaults.
const (
	// DefaultEnv is the environment of a node not given --env. Nodes only
	// ever talk to nodes of the same environment.
	DefaultEnv = "default"
	// DefaultAPIAddr is loopback only: the API gives full read/write
	// access to anyone holding the token, so it is not exposed by default.
	DefaultAPIAddr = "127.0.0.1:7401"
	// DefaultP2PPort is the libp2p port (TCP, and UDP for QUIC).
	DefaultP2PPort = 4001
)

// Values of Config.APITLS.
const (
	APITLSAuto = "auto"
	APITLSOn   = "on"
	APITLSOff  = "off"
)

// Config is a node's configuration, stored as JSON in DIR/config.json.
// Build it with DefaultConfig (or Init), change it, and check it with
// Validate. Each field names its JSON key and command-line flag.
type Config struct {
	// Env (env, --env) is the environment name: nodes of different
	// environments never connect or exchange data. Default "default".
	// 1-64 characters of a-z, 0-9 and '-'.
	Env string `json:"env"`
	// NodeID (node_id, --node-id) names the node for humans and for
	// leader election (lowest ID wins), so it must be stable and unique in
	// the environment. Default: hostname plus the end of the peer ID.
	// 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'.
	NodeID string `json:"node_id"`
	// ListenAddrs (listen_addrs, --listen) are libp2p multiaddrs to listen
	// on. Default /ip4/0.0.0.0/tcp/4001 and, without a private network
	// key, /ip4/0.0.0.0/udp/4001/quic-v1 (libp2p's PSK works over TCP only).
	ListenAddrs []string `json:"listen_addrs"`
	// APIAddr (api_addr, --api) is host:port of the HTTP API. Default
	// 127.0.0.1:7401. Port 0 picks a free port; the bound address is
	// written to DIR/api.json.
	APIAddr string `json:"api_addr"`
	// APITLS (api_tls, --api-tls) is when the API serves HTTPS: "auto"
	// (or empty) when api_addr is not a loopback address, "on" always,
	// "off" never (a node whose API is reachable from other machines
	// without TLS warns at every start: the token crosses the network in
	// the clear). Without api_cert_file the node makes a self-signed
	// certificate (DIR/api-cert.pem, api-key.pem) whose SHA-256
	// fingerprint clients pin: DIR/api.json and `starling status` show it.
	APITLS string `json:"api_tls,omitempty"`
	// APICertFile and APIKeyFile (api_cert_file, api_key_file,
	// --api-cert, --api-key) are a PEM certificate (chain) and key for
	// the API, e.g. from the site's CA; relative paths are taken from the
	// data directory. Both or neither.
	APICertFile string `json:"api_cert_file,omitempty"`
	APIKeyFile  string `json:"api_key_file,omitempty"`
	// Peers (peers, --peer) are static peers: full multiaddrs ending in
	// /p2p/<peer-id>. They are dialled at start and re-dialled whenever
	// the connection drops (past max_peers connections, only while the
	// node has fewer).
	Peers []string `json:"peers,omitempty"`
	// MaxPeers (max_peers, --max-peers) bounds the connections the node
	// keeps; gossip reaches the other nodes through the peers it is
	// connected to (p2p.Config.MaxPeers says how). 0: the default, 12.
	// Raise it for a cluster that must connect every pair of more nodes;
	// lower it on a small machine in a large cluster.
	MaxPeers int `json:"max_peers,omitempty"`
	// MDNS (mdns, --no-mdns) enables LAN discovery. Default true.
	MDNS bool `json:"mdns"`
	// DHT (dht, --no-dht) enables the Kademlia rendezvous. Default true.
	DHT bool `json:"dht"`
	// Reachability (reachability, --reachability) is whether nodes of
	// other sites can dial this one: auto (AutoNAT asks peers to dial
	// back, about 15 s after start), public (a node with a public
	// address) or private (a node behind NAT). Empty: auto.
	Reachability string `json:"reachability,omitempty"`
	// AutoNAT (autonat, --no-autonat) answers peers' reachability probes
	// and tests this node's addresses (AutoNAT v1 service, v2). Default
	// true. Off, the node still asks peers that answer; where none does,
	// reachability "auto" stays unknown and the relay parts never start:
	// set reachability.
	AutoNAT bool `json:"autonat"`
	// RelayService (relay_service, --no-relay-service) offers circuit
	// relay to this environment's nodes while this node is publicly
	// reachable: nodes behind NAT are reached through it and then hole
	// punch to a direct connection. Limits: 2 minutes and 16 MiB each
	// way per relayed connection. Off: a node whose bandwidth must not
	// carry other sites' traffic. Default true.
	RelayService bool `json:"relay_service"`
	// AutoRelay (auto_relay, --no-auto-relay), while this node is
	// private, reserves slots on up to two public cluster nodes and
	// announces the relayed addresses. Default true.
	AutoRelay bool `json:"auto_relay"`
	// HolePunching (hole_punching, --no-hole-punching) upgrades relayed
	// connections to direct ones (DCUtR). Default true.
	HolePunching bool `json:"hole_punching"`
	// PortMapping (port_mapping, --no-port-mapping) asks the router for a
	// port mapping (UPnP, NAT-PMP). Off where routers must not be
	// touched. Default true.
	PortMapping bool `json:"port_mapping"`
	// PSKFile (psk_file, --psk-file) is the private network key file;
	// relative paths are taken from the data directory. Only nodes
	// holding the same key can connect: without one, any machine that
	// reaches the listen port can join and read and write all data.
	// Init sets it (to swarm.key, which it generates) unless told
	// --open. Empty: no PSK (see OpenNetwork).
	PSKFile string `json:"psk_file,omitempty"`
	// OpenNetwork (open_network, init --open) records that the operator
	// chose a network without a key on purpose: any machine that can
	// reach the listen port may join. It excludes psk_file. A config with
	// neither (made before keys became the default) runs open too, with
	// a warning at start saying how to close it. Default false.
	OpenNetwork bool `json:"open_network,omitempty"`
	// Trusted (trusted, --trust) are the peer IDs this node exchanges
	// replication data with, both ways: others get no gossip and no
	// blocks, and what they send is dropped. Empty: every peer of the
	// (private) network is trusted.
	Trusted []string `json:"trusted,omitempty"`
	// LogLevel (log_level, --log-level) is the default log level of `run`
	// when --log-level is not given: debug, info, warn or error. Empty: warn.
	LogLevel string `json:"log_level,omitempty"`
	// CompactEvery (compact_every, --compact-every) is the longest time
	// between two automatic compaction rounds, as a Go duration ("10m"),
	// at least MinCompactEvery; the policy then looks at the history's
	// size every min(1m, CompactEvery), and also runs a round as soon as
	// the history outgrows both the live state and 8 MiB. "off" turns
	// automatic rounds off (`starling compact` still works). Empty: the
	// store's defaults (a round at least every hour, looked at every
	// minute).
	CompactEvery string `json:"compact_every,omitempty"`
	// EvictAfter (compact_evict_after, --compact-evict-after) is how long
	// compaction waits for a node it has no usable report from, as a Go duration
	// of at least a second; then it reclaims what that node had not
	// merged, and the node rebases (takes a state transfer, keeping its
	// own writes) when it comes back. "off": wait until the operator
	// removes the node. Empty: 1h.
	EvictAfter string `json:"compact_evict_after,omitempty"`
	// StoreWriteBufferMiB (store_write_buffer_mib) is the size in MiB of
	// LevelDB's write buffer (memtable); the node holds up to two, taking
	// the memory as writes fill them. 0: 4 MiB, sized for an edge node; a
	// node taking sustained bulk writes may want 8-16 (up to 13% less CPU
	// per write, and that many MiB more RSS while busy). At most 1024.
	StoreWriteBufferMiB int `json:"store_write_buffer_mib,omitempty"`
	// StoreCacheMiB (store_cache_mib) is the size in MiB of LevelDB's
	// block cache, which fills as table blocks are read. 0: 4 MiB; a node
	// serving many reads of a large store may want more. At most 65536.
	StoreCacheMiB int `json:"store_cache_mib,omitempty"`
}

// DefaultConfig returns the configuration of a node given no flags. Its
// NodeID is empty: Init derives one from the host name and peer ID.
func DefaultConfig() Config {
	return Config{
		Env:          DefaultEnv,
		ListenAddrs:  DefaultListenAddrs(false),
		APIAddr:      DefaultAPIAddr,
		MDNS:         true,
		DHT:          true,
		AutoNAT:      true,
		RelayService: true,
		AutoRelay:    true,
		HolePunching: true,
		PortMapping:  true,
	}
}

// DefaultListenAddrs are the listen addresses of a node given no
// --listen: TCP on all interfaces, plus QUIC unless a PSK is used.
func DefaultListenAddrs(psk bool) []string {
	addrs := []string{fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", DefaultP2PPort)}
	if !psk {
		addrs = append(addrs, fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", DefaultP2PPort))
	}
	return addrs
}

// Network says how c admits peers: NetworkPrivate (a key), NetworkOpen
// (no key, chosen with --open) or NetworkLegacyOpen (no key and no
// choice recorded: a data directory initialised before keys became the
// default).
func (c *Config) Network() Network {
	switch {
	case c.PSKFile != "":
		return NetworkPrivate
	case c.OpenNetwork:
		return NetworkOpen
	}
	return NetworkLegacyOpen
}

// Network is how a node admits peers; see Config.Network.
type Network int

// The values of Config.Network.
const (
	// NetworkPrivate: only nodes holding the same key connect.
	NetworkPrivate Network = iota
	// NetworkOpen: no key, by the operator's choice (open_network).
	NetworkOpen
	// NetworkLegacyOpen: no key and no choice recorded.
	NetworkLegacyOpen
)

// OpenNetworkWarning is what a node without a private network key says
// at start: that anyone who reaches its port can read and write, and
// how to close the network. Empty for a node with a key.
func (c *Config) OpenNetworkWarning(dir string) string {
	const closeIt = "to close it, stop every node, then run `starling init --data %[1]s --force --psk` on one node (it writes %[1]s/%[2]s; --force rewrites config.json from the flags given, so repeat them) and `starling init --data DIR --force --psk-file COPIED_%[2]s` on the others"
	switch c.Network() {
	case NetworkOpen:
		return fmt.Sprintf("the network is open (open_network: true in config.json): any machine that can reach this node's listen port can join and read and write all data; "+closeIt, dir, api.SwarmKeyFile)
	case NetworkLegacyOpen:
		return fmt.Sprintf("the network is open: this data directory has no private network key (it was initialised before `starling init` made one by default), so any machine that can reach this node's listen port can join and read and write all data; "+closeIt+"; or set \"open_network\": true in config.json to record that it stays open", dir, api.SwarmKeyFile)
	}
	return ""
}

// PSKPath is the PSK file's path, resolved against the data directory;
// empty when the node uses no PSK.
func (c *Config) PSKPath(dir string) string {
	if c.PSKFile == "" || filepath.IsAbs(c.PSKFile) {
		return c.PSKFile
	}
	return filepath.Join(dir, c.PSKFile)
}

// ErrInvalidConfig is wrapped by the errors of Validate (a *ConfigError).
// Test with errors.Is; use errors.As for the list of problems.
var ErrInvalidConfig = errors.New("node: invalid config")

// Problem is one thing wrong with a Config.
type Problem struct {
	Key  string // JSON key in config.json, e.g. "listen_addrs"
	Flag string // command-line flag, e.g. "--listen"
	Msg  string // what is wrong and what to do
}

func (p Problem) String() string {
	if p.Flag == "" {
		return fmt.Sprintf("%s: %s", p.Key, p.Msg)
	}
	return fmt.Sprintf("%s (%s): %s", p.Key, p.Flag, p.Msg)
}

// ConfigError lists every problem Validate found.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid config: " + e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config (%d problems):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// Has reports whether a problem names key.
func (e *ConfigError) Has(key string) bool {
	return slices.ContainsFunc(e.Problems, func(p Problem) bool { return p.Key == key })
}

var (
	envRE    = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Bounds of store_write_buffer_mib and store_cache_mib.
const (
	maxStoreWriteBufferMiB = 1 << 10
	maxStoreCacheMiB       = 1 << 16
)

// LogLevels are the values accepted for LogLevel and --log-level.
var LogLevels = []string{"debug", "info", "warn", "error"}

// Validate reports every problem of c at once (a *ConfigError), each
// naming the config key and flag and saying what to do.
func (c *Config) Validate() error {
	var ps []Problem
	add := func(key, flag, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Flag: flag, Msg: fmt.Sprintf(format, args...)})
	}
	if !envRE.MatchString(c.Env) {
		add("env", "--env", "%q is not a valid environment name: use 1-64 characters of a-z, 0-9 and '-' (e.g. site-a)", c.Env)
	}
	if !nodeIDRE.MatchString(c.NodeID) {
		add("node_id", "--node-id", "%q is not a valid node ID: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-' (e.g. plant1-edge)", c.NodeID)
	}
	if len(c.ListenAddrs) == 0 {
		add("listen_addrs", "--listen", "no listen address: give at least one, e.g. /ip4/0.0.0.0/tcp/%d", DefaultP2PPort)
	}
	for _, s := range c.ListenAddrs {
		if _, err := ParseListenAddr(s); err != nil {
			add("listen_addrs", "--listen", "%v", err)
		} else if c.PSKFile != "" && isQUIC(s) {
			add("listen_addrs", "--listen", "%q is a QUIC address, but a private network key (psk_file) only works over TCP: remove it or use /tcp/", s)
		}
	}
	if err := checkAPIAddr(c.APIAddr); err != nil {
		add("api_addr", "--api", "%v", err)
	}
	switch c.APITLS {
	case "", APITLSAuto, APITLSOn, APITLSOff:
	default:
		add("api_tls", "--api-tls", "%q: want auto (TLS when the API is reachable from other machines), on or off", c.APITLS)
	}
	if (c.APICertFile == "") != (c.APIKeyFile == "") {
		add("api_cert_file", "--api-cert", "give both a certificate (api_cert_file, --api-cert) and its key (api_key_file, --api-key), or neither")
	}
	if c.APITLS == APITLSOff && c.APICertFile != "" {
		add("api_tls", "--api-tls", "off, but api_cert_file is set: remove one")
	}
	for _, s := range c.Peers {
		if _, err := p2p.ParsePeerAddr(s); err != nil {
			add("peers", "--peer", "%v", err)
		}
	}
	if strings.TrimSpace(c.PSKFile) != c.PSKFile {
		add("psk_file", "--psk-file", "%q has leading or trailing spaces: remove them", c.PSKFile)
	}
	if c.OpenNetwork && c.PSKFile != "" {
		add("open_network", "--open", "true, but psk_file %q is set too: an open network has no key; remove open_network to keep the key, or psk_file to open the network", c.PSKFile)
	}
	for _, s := range c.Trusted {
		if _, err := peer.Decode(s); err != nil {
			add("trusted", "--trust", "%q is not a peer ID (%v): copy it from `starling status` on that node", s, err)
		}
	}
	if c.MaxPeers < 0 {
		add("max_peers", "--max-peers", "%d is negative: give the number of connections to keep, or 0 for the default (12)", c.MaxPeers)
	}
	switch c.Reachability {
	case "", p2p.ReachabilityAuto, p2p.ReachabilityPublic, p2p.ReachabilityPrivate:
	default:
		add("reachability", "--reachability", "%q: use auto, public or private", c.Reachability)
	}
	if c.LogLevel != "" && !slices.Contains(LogLevels, c.LogLevel) {
		add("log_level", "--log-level", "%q is not a log level: use one of %s", c.LogLevel, strings.Join(LogLevels, ", "))
	}
	if _, _, err := parseCompactEvery(c.CompactEvery); err != nil {
		add("compact_every", "--compact-every", "%v", err)
	}
	if _, err := parseEvictAfter(c.EvictAfter); err != nil {
		add("compact_evict_after", "--compact-evict-after", "%v", err)
	}
	if c.StoreWriteBufferMiB < 0 || c.StoreWriteBufferMiB > maxStoreWriteBufferMiB {
		add("store_write_buffer_mib", "", "%d: use 1 to %d MiB, or 0 for the default (4)", c.StoreWriteBufferMiB, maxStoreWriteBufferMiB)
	}
	if c.StoreCacheMiB < 0 || c.StoreCacheMiB > maxStoreCacheMiB {
		add("store_cache_mib", "", "%d: use 1 to %d MiB, or 0 for the default (4)", c.StoreCacheMiB, maxStoreCacheMiB)
	}
	if len(ps) == 0 {
		return nil
	}
	return &ConfigError{Problems: ps}
}

func isQUIC(s string) bool {
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return false
	}
	_, err = m.ValueForProtocol(multiaddr.P_QUIC_V1)
	return err == nil
}

// ParseListenAddr parses a listen multiaddr; the error names the value
// and says what is expected.
func ParseListenAddr(s string) (multiaddr.Multiaddr, error) {
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a multiaddr (%v): use e.g. /ip4/0.0.0.0/tcp/%d", s, err, DefaultP2PPort)
	}
	if _, err := m.ValueForProtocol(multiaddr.P_P2P); err == nil {
		return nil, fmt.Errorf("%q: a listen address has no /p2p/ part: remove it", s)
	}
	_, tcpErr := m.ValueForProtocol(multiaddr.P_TCP)
	_, quicErr := m.ValueForProtocol(multiaddr.P_QUIC_V1)
	if tcpErr != nil && quicErr != nil {
		return nil, fmt.Errorf("%q has neither /tcp/ nor /udp/.../quic-v1: use e.g. /ip4/0.0.0.0/tcp/%d", s, DefaultP2PPort)
	}
	return m, nil
}

// ParseListenAddrs parses every address; the error names the first bad one.
func ParseListenAddrs(ss []string) ([]multiaddr.Multiaddr, error) {
	out := make([]multiaddr.Multiaddr, 0, len(ss))
	for _, s := range ss {
		m, err := ParseListenAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func checkAPIAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v): use e.g. %s", s, err, DefaultAPIAddr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host: use 127.0.0.1 for local access only, or 0.0.0.0 to expose the API", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port must be a number from 0 to 65535 (0 picks a free port)", s)
	}
	return nil
}

// Settings are what a user can set on the command line of init, run and
// local. Zero values mean "not given".
type Settings struct {
	Env         string
	NodeID      string
	ListenAddrs []string // replace the configured ones
	APIAddr     string
	APITLS      string
	APICertFile string
	APIKeyFile  string
	Peers       []string // added to the configured ones
	PSKFile     string   // also clears OpenNetwork
	Trusted     []string // replace the configured ones
	MaxPeers    int      // replaces the configured one when not 0
	NoMDNS      bool
	NoDHT       bool
	// Reachability replaces the configured reachability; the No* NAT
	// settings turn the parts off.
	Reachability   string
	NoAutoNAT      bool
	NoRelayService bool
	NoAutoRelay    bool
	NoHolePunching bool
	NoPortMapping  bool
	LogLevel       string
	// CompactEvery replaces the configured compact_every ("off" too).
	CompactEvery string
	// EvictAfter replaces the configured compact_evict_after ("off" too).
	EvictAfter string
}

// Apply changes c by the given settings: strings and lists replace the
// configured values, except Peers which are added (without duplicates);
// NoMDNS and NoDHT turn discovery off.
func (s Settings) Apply(c *Config) {
	setStr := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	setStr(&c.Env, s.Env)
	setStr(&c.NodeID, s.NodeID)
	setStr(&c.APIAddr, s.APIAddr)
	setStr(&c.APITLS, s.APITLS)
	setStr(&c.APICertFile, s.APICertFile)
	setStr(&c.APIKeyFile, s.APIKeyFile)
	if s.PSKFile != "" {
		c.PSKFile, c.OpenNetwork = s.PSKFile, false
	}
	setStr(&c.LogLevel, s.LogLevel)
	setStr(&c.CompactEvery, s.CompactEvery)
	setStr(&c.EvictAfter, s.EvictAfter)
	if len(s.ListenAddrs) > 0 {
		c.ListenAddrs = slices.Clone(s.ListenAddrs)
	}
	if len(s.Trusted) > 0 {
		c.Trusted = slices.Clone(s.Trusted)
	}
	for _, p := range s.Peers {
		if !slices.Contains(c.Peers, p) {
			c.Peers = append(c.Peers, p)
		}
	}
	if s.MaxPeers != 0 {
		c.MaxPeers = s.MaxPeers
	}
	if s.NoMDNS {
		c.MDNS = false
	}
	if s.NoDHT {
		c.DHT = false
	}
	setStr(&c.Reachability, s.Reachability)
	for _, off := range []struct {
		set bool
		dst *bool
	}{{s.NoAutoNAT, &c.AutoNAT}, {s.NoRelayService, &c.RelayService}, {s.NoAutoRelay, &c.AutoRelay},
		{s.NoHolePunching, &c.HolePunching}, {s.NoPortMapping, &c.PortMapping}} {
		if off.set {
			*off.dst = false
		}
	}
}

// Initialised reports whether dir holds a node's config.
func Initialised(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, api.ConfigFile))
	return err == nil
}

// LoadConfig reads DIR/config.json. Keys missing from the file take
// their defaults; unknown keys are an error (they usually are typos). It
// does not validate: Open validates after applying overrides.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, api.ConfigFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s: create it with `starling init --data %s`", api.ErrNotInitialised, dir, api.ConfigFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	cfg := DefaultConfig()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%w: read %s: %w: fix the file or re-create it with `starling init --force --data %s`", ErrInvalidConfig, path, err, dir)
	}
	return &cfg, nil
}

// writeConfig stores cfg as DIR/config.json, atomically.
func writeConfig(dir string, cfg *Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, api.ConfigFile), append(b, '\n'), 0o600)
}
