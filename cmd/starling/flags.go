package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/node"
)

// Flag names shared by several commands.
const (
	flagData    = "data"
	flagEnv     = "env"
	flagNodeID  = "node-id"
	flagPSK     = "psk"
	flagPSKFile = "psk-file"
	flagOpen    = "open"
	flagListen  = "listen"
	flagAPI     = "api"
	flagPeer    = "peer"
	flagTrust   = "trust"
	flagNoMDNS  = "no-mdns"
	flagNoDHT   = "no-dht"
	// NAT traversal (p2p/nat.go).
	flagReach       = "reachability"
	flagNoAutoNAT   = "no-autonat"
	flagNoRelaySvc  = "no-relay-service"
	flagNoAutoRelay = "no-auto-relay"
	flagNoHolePunch = "no-hole-punching"
	flagNoPortMap   = "no-port-mapping"
	flagMaxPeers    = "max-peers"
	flagForce       = "force"
	flagBackup      = "backup"
	// flagAPICertSHA pins a node's API certificate (client commands).
	flagAPICertSHA = "api-cert-sha256"
	flagAPITLS     = "api-tls"
	flagAPICert    = "api-cert"
	flagAPIKey     = "api-key"
	flagToken      = "token"
	flagJSON       = "json"
	flagClock      = "clock-offset"
	flagPreset     = "election-preset"
	flagCompact    = "compact-every"
	flagEvict      = "compact-evict-after"
)

// clockOffsetFlag shifts the node's clock, for tests of clock skew:
// faketime does not reach Go binaries.
func clockOffsetFlag() cli.Flag {
	return &cli.DurationFlag{Name: flagClock, EnvVars: envVar(flagClock),
		Usage: "add `DURATION` (e.g. -5s) to the node's clock for its write timestamps; for tests of clock skew"}
}

// electionPresetFlag picks the election timings (election/config.go).
func electionPresetFlag() cli.Flag {
	return &cli.StringFlag{Name: flagPreset, EnvVars: envVar(flagPreset), Value: "lan",
		Usage: "leader election timings: `PRESET` lan (heartbeat 200ms, failover under 1s), wan (1s/5s: tolerates slow links, fails over in about 5s) or fast (tests)"}
}

// electionPreset turns the flag into a node option.
func electionPreset(name string) (node.Option, error) {
	opt, err := node.WithElectionPreset(name)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagPreset, err)
	}
	return opt, nil
}

// envVar is the environment variable of a flag that means the same for
// every command that has it (--data, --api, --token, --json, the node
// flags of init and run): STARLING_<NAME>.
func envVar(name string) []string {
	return []string{"STARLING_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// cmdEnvVar is the environment variable of a flag of one command:
// STARLING_<COMMAND>_<NAME> (e.g. STARLING_RESYNC_PEER, a peer ID, apart
// from run's STARLING_PEER, a multiaddr). Flags that destroy or expose
// data (--recursive, --force, --open) have no environment variable at
// all: one exported in a shell would apply to every later command.
func cmdEnvVar(cmd, name string) []string { return envVar(cmd + "-" + name) }

func dataFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: flagData, Aliases: []string{"d"}, Usage: usage, EnvVars: envVar(flagData)}
}

// nodeFlags are the flags of init and run that map to node.Settings.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: envVar(flagEnv),
			Usage: "environment `NAME` (a-z, 0-9, '-'): only nodes of the same environment connect (default \"" + node.DefaultEnv + "\")"},
		&cli.StringFlag{Name: flagNodeID, EnvVars: envVar(flagNodeID),
			Usage: "stable, unique node `ID` (A-Z, a-z, 0-9, '.', '_', '-'); default: host name + end of the peer ID"},
		&cli.BoolFlag{Name: flagPSK, EnvVars: envVar(flagPSK),
			Usage: "generate a private network key in DIR/swarm.key (at init only). A new DIR gets one anyway; with --force it gives an open node a key. Copy it to every node of the environment"},
		&cli.StringFlag{Name: flagPSKFile, EnvVars: envVar(flagPSKFile),
			Usage: "use the private network key in `FILE` (another node's swarm.key) instead of generating one; only nodes holding the same key connect"},
		&cli.BoolFlag{Name: flagOpen,
			Usage: "no private network key (at init only): ANY machine that can reach the listen port can join and read and write all data. Only for networks closed by other means (VPN, firewall); the node warns at every start"},
		&cli.StringSliceFlag{Name: flagListen, EnvVars: envVar(flagListen),
			Usage: fmt.Sprintf("libp2p listen `MULTIADDR`, repeatable (default /ip4/0.0.0.0/tcp/%d, plus QUIC on udp/%d without a PSK)", node.DefaultP2PPort, node.DefaultP2PPort)},
		&cli.StringFlag{Name: flagAPI, EnvVars: envVar(flagAPI),
			Usage: "HTTP API `HOST:PORT` (default " + node.DefaultAPIAddr + "; port 0 picks a free port)"},
		&cli.StringFlag{Name: flagAPITLS, EnvVars: envVar(flagAPITLS),
			Usage: "HTTPS for the API: auto (when --api is not loopback; a self-signed certificate clients pin), on, or off (`MODE`)"},
		&cli.StringFlag{Name: flagAPICert, EnvVars: envVar(flagAPICert), Usage: "the API's TLS certificate `FILE` (PEM), with --api-key, instead of a self-signed one"},
		&cli.StringFlag{Name: flagAPIKey, EnvVars: envVar(flagAPIKey), Usage: "the key `FILE` (PEM) of --api-cert"},
		&cli.StringSliceFlag{Name: flagPeer, EnvVars: envVar(flagPeer),
			Usage: "static peer `MULTIADDR` ending in /p2p/<peer-id>, repeatable; kept connected and re-dialled"},
		&cli.StringSliceFlag{Name: flagTrust, EnvVars: envVar(flagTrust),
			Usage: "exchange replication data and election heartbeats only with this `PEER-ID` (repeatable; default: every peer of the network); others get nothing, not even blocks over bitswap"},
		&cli.IntFlag{Name: flagMaxPeers, EnvVars: envVar(flagMaxPeers), DefaultText: "12",
			Usage: "keep at most about `N` connections: in a larger cluster gossip reaches the other nodes through these; dials beyond it only to heal a cut"},
		&cli.BoolFlag{Name: flagNoMDNS, EnvVars: envVar(flagNoMDNS), Usage: "turn off LAN discovery (mDNS)"},
		&cli.BoolFlag{Name: flagNoDHT, EnvVars: envVar(flagNoDHT), Usage: "turn off DHT rendezvous discovery"},
		&cli.StringFlag{Name: flagReach, EnvVars: envVar(flagReach),
			Usage: "`REACHABILITY` of this node from other sites: auto (ask peers with AutoNAT, ~15 s after start), public (it has a public address) or private (behind NAT); default auto"},
		&cli.BoolFlag{Name: flagNoAutoNAT, EnvVars: envVar(flagNoAutoNAT),
			Usage: "do not answer reachability probes or test this node's addresses (AutoNAT); where no peer answers, set --reachability, or the relay parts never start"},
		&cli.BoolFlag{Name: flagNoRelaySvc, EnvVars: envVar(flagNoRelaySvc),
			Usage: "do not relay for this environment's nodes behind NAT while publicly reachable (a relayed connection carries at most 16 MiB each way, 2 min)"},
		&cli.BoolFlag{Name: flagNoAutoRelay, EnvVars: envVar(flagNoAutoRelay),
			Usage: "while behind NAT, do not reserve relay slots on public cluster nodes (then nodes of other sites cannot reach this one unless it dials them)"},
		&cli.BoolFlag{Name: flagNoHolePunch, EnvVars: envVar(flagNoHolePunch),
			Usage: "do not upgrade relayed connections to direct ones by hole punching (DCUtR)"},
		&cli.BoolFlag{Name: flagNoPortMap, EnvVars: envVar(flagNoPortMap),
			Usage: "do not ask the router for a port mapping (UPnP, NAT-PMP)"},
		&cli.StringFlag{Name: flagCompact, EnvVars: envVar(flagCompact),
			Usage: "automatic compaction: at most `DURATION` between two rounds (e.g. 30m; the size is looked at every min(1m, DURATION)), or off (default 1h, and at once when the history outgrows the live state and 8 MiB)"},
		&cli.StringFlag{Name: flagEvict, EnvVars: envVar(flagEvict),
			Usage: "compaction stops waiting for a node it has had no usable report from (away, or stuck) for `DURATION` (default 1h; at least 1s), which then takes a state transfer, keeping its own writes, when it comes back; off: wait for it until `starling cluster remove`"},
	}
}

// flagValues is what settingsFrom reads; *cli.Context has it.
type flagValues interface {
	String(name string) string
	StringSlice(name string) []string
	Bool(name string) bool
	Int(name string) int
}

// settingsFrom maps the node flags to node.Settings. A relative
// --psk-file is taken from the current directory (as users expect of a
// flag), so it is made absolute here; in config.json relative paths are
// relative to the data directory.
func settingsFrom(f flagValues) (node.Settings, error) {
	s := node.Settings{
		Env:            strings.TrimSpace(f.String(flagEnv)),
		NodeID:         strings.TrimSpace(f.String(flagNodeID)),
		APIAddr:        strings.TrimSpace(f.String(flagAPI)),
		APITLS:         strings.TrimSpace(f.String(flagAPITLS)),
		ListenAddrs:    cleanList(f.StringSlice(flagListen)),
		Peers:          cleanList(f.StringSlice(flagPeer)),
		Trusted:        cleanList(f.StringSlice(flagTrust)),
		MaxPeers:       f.Int(flagMaxPeers),
		NoMDNS:         f.Bool(flagNoMDNS),
		NoDHT:          f.Bool(flagNoDHT),
		Reachability:   strings.TrimSpace(f.String(flagReach)),
		NoAutoNAT:      f.Bool(flagNoAutoNAT),
		NoRelayService: f.Bool(flagNoRelaySvc),
		NoAutoRelay:    f.Bool(flagNoAutoRelay),
		NoHolePunching: f.Bool(flagNoHolePunch),
		NoPortMapping:  f.Bool(flagNoPortMap),
		CompactEvery:   strings.TrimSpace(f.String(flagCompact)),
		EvictAfter:     strings.TrimSpace(f.String(flagEvict)),
	}
	for _, x := range []struct {
		flag string
		dst  *string
	}{{flagAPICert, &s.APICertFile}, {flagAPIKey, &s.APIKeyFile}} {
		if p := strings.TrimSpace(f.String(x.flag)); p != "" {
			abs, err := filepath.Abs(p)
			if err != nil {
				return s, fmt.Errorf("--%s %q: %w", x.flag, p, err)
			}
			*x.dst = abs
		}
	}
	if p := strings.TrimSpace(f.String(flagPSKFile)); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return s, fmt.Errorf("--%s %q: %w", flagPSKFile, p, err)
		}
		s.PSKFile = abs
	}
	return s, nil
}

func cleanList(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clientFlags are the flags of the client commands.
func clientFlags(withJSON bool) []cli.Flag {
	fs := []cli.Flag{
		dataFlag("data `DIR` of the running node to talk to (its api.json and api.token)"),
		&cli.StringFlag{Name: flagAPI, EnvVars: envVar(flagAPI),
			Usage: "talk to the node API at `HOST:PORT` instead (needs --token)"},
		&cli.StringFlag{Name: flagToken, EnvVars: envVar(flagToken),
			Usage: "API `TOKEN` for --api (the node's DIR/api.token)"},
		&cli.StringFlag{Name: flagAPICertSHA, EnvVars: envVar(flagAPICertSHA),
			Usage: "for --api: the node's TLS certificate `SHA256` (starling status shows it); the API is then reached over HTTPS, trusted by this fingerprint"},
	}
	if withJSON {
		fs = append(fs, &cli.BoolFlag{Name: flagJSON, EnvVars: envVar(flagJSON), Usage: "print JSON, for scripts"})
	}
	return fs
}

// requireData returns --data or a usage error.
func requireData(c *cli.Context) (string, error) {
	dir := strings.TrimSpace(c.String(flagData))
	if dir == "" {
		return "", usageErrorf(c, "missing --data DIR (the node's data directory; or set STARLING_DATA)")
	}
	return dir, nil
}

// checkArgs makes sure the command got between min and max positional
// arguments. Flags may come after them (reorderArgs moves them); what
// follows "--" is an argument even if it looks like a flag.
func checkArgs(c *cli.Context, min, max int, names string) error {
	args := c.Args().Slice()
	switch {
	case len(args) < min:
		return usageErrorf(c, "missing %s", names)
	case len(args) > max:
		return usageErrorf(c, "too many arguments: expected %s, got %d (%s); quote values with spaces", names, len(args), strings.Join(args, " "))
	}
	return nil
}

func hasFlag(fs []cli.Flag, name string) bool {
	for _, f := range fs {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}
