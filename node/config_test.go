package node

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/internal/testutil"
)

func validConfig(t testing.TB) Config {
	c := DefaultConfig()
	c.NodeID = "node1"
	c.Peers = []string{"/ip4/192.0.2.1/tcp/4001/p2p/" + testutil.PeerID(t).String()}
	return c
}

func TestValidateNamesEachBadField(t *testing.T) {
	pid := testutil.PeerID(t).String()
	tests := []struct {
		name    string
		change  func(*Config)
		key     string
		mention string // the offending value, quoted in the message
	}{
		{"env upper case", func(c *Config) { c.Env = "Prod" }, "env", `"Prod"`},
		{"env empty", func(c *Config) { c.Env = "" }, "env", `""`},
		{"env too long", func(c *Config) { c.Env = strings.Repeat("a", 65) }, "env", "1-64"},
		{"node id slash", func(c *Config) { c.NodeID = "a/b" }, "node_id", `"a/b"`},
		{"node id empty", func(c *Config) { c.NodeID = "" }, "node_id", `""`},
		{"listen none", func(c *Config) { c.ListenAddrs = nil }, "listen_addrs", "no listen address"},
		{"listen garbage", func(c *Config) { c.ListenAddrs = []string{"0.0.0.0:4001"} }, "listen_addrs", `"0.0.0.0:4001"`},
		{"listen no transport", func(c *Config) { c.ListenAddrs = []string{"/ip4/0.0.0.0"} }, "listen_addrs", `"/ip4/0.0.0.0"`},
		{"listen with p2p", func(c *Config) { c.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/1/p2p/" + pid} }, "listen_addrs", "/p2p/"},
		{"quic with psk", func(c *Config) { c.PSKFile = "swarm.key" }, "listen_addrs", "quic-v1"},
		{"api no port", func(c *Config) { c.APIAddr = "127.0.0.1" }, "api_addr", `"127.0.0.1"`},
		{"api no host", func(c *Config) { c.APIAddr = ":7401" }, "api_addr", "no host"},
		{"api bad port", func(c *Config) { c.APIAddr = "127.0.0.1:99999" }, "api_addr", "port"},
		{"peer garbage", func(c *Config) { c.Peers = []string{"/ip4/1.2.3.4/tcpp/1"} }, "peers", `"/ip4/1.2.3.4/tcpp/1"`},
		{"peer without id", func(c *Config) { c.Peers = []string{"/ip4/1.2.3.4/tcp/4001"} }, "peers", "/p2p/<peer-id>"},
		{"peer id only", func(c *Config) { c.Peers = []string{"/p2p/" + pid} }, "peers", "no address"},
		{"psk spaces", func(c *Config) { c.PSKFile = " k"; c.ListenAddrs = DefaultListenAddrs(true) }, "psk_file", "spaces"},
		{"open and psk", func(c *Config) {
			c.PSKFile = "swarm.key"
			c.OpenNetwork = true
			c.ListenAddrs = DefaultListenAddrs(true)
		}, "open_network", "psk_file"},
		{"trusted garbage", func(c *Config) { c.Trusted = []string{"not-a-peer"} }, "trusted", `"not-a-peer"`},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log_level", `"loud"`},
		{"reachability", func(c *Config) { c.Reachability = "maybe" }, "reachability", `"maybe"`},
		{"max peers negative", func(c *Config) { c.MaxPeers = -1 }, "max_peers", "negative"},
		{"compact every garbage", func(c *Config) { c.CompactEvery = "hourly" }, "compact_every", `"hourly"`},
		{"compact every no unit", func(c *Config) { c.CompactEvery = "10" }, "compact_every", `"10"`},
		{"compact every too short", func(c *Config) { c.CompactEvery = "10ms" }, "compact_every", "at least 1s"},
		{"compact every negative", func(c *Config) { c.CompactEvery = "-1h" }, "compact_every", `"-1h"`},
		{"write buffer negative", func(c *Config) { c.StoreWriteBufferMiB = -1 }, "store_write_buffer_mib", "-1"},
		{"write buffer too large", func(c *Config) { c.StoreWriteBufferMiB = 4096 }, "store_write_buffer_mib", "4096"},
		{"block cache negative", func(c *Config) { c.StoreCacheMiB = -2 }, "store_cache_mib", "-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.change(&c)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want a *ConfigError", err)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = false")
			}
			if len(ce.Problems) != 1 || ce.Problems[0].Key != tt.key {
				t.Fatalf("problems = %v, want exactly one for %q", ce.Problems, tt.key)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.key) || !strings.Contains(msg, ce.Problems[0].Flag) || !strings.Contains(msg, tt.mention) {
				t.Errorf("message %q should name key %q, flag %q and %q", msg, tt.key, ce.Problems[0].Flag, tt.mention)
			}
		})
	}
}

func TestValidateReportsAllProblemsAtOnce(t *testing.T) {
	c := Config{Env: "BAD", NodeID: "", APIAddr: "x", Peers: []string{"nope"}, LogLevel: "loud"}
	err := c.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Validate() = %v", err)
	}
	for _, key := range []string{"env", "node_id", "listen_addrs", "api_addr", "peers", "log_level"} {
		if !ce.Has(key) {
			t.Errorf("no problem reported for %q in %v", key, err)
		}
	}
	if !strings.Contains(err.Error(), "6 problems") {
		t.Errorf("message should count the problems: %v", err)
	}
}

func TestValidateAcceptsDefaultsAndVariants(t *testing.T) {
	pid := testutil.PeerID(t).String()
	for _, change := range []func(*Config){
		func(*Config) {},
		func(c *Config) { c.PSKFile = "swarm.key"; c.ListenAddrs = DefaultListenAddrs(true) },
		func(c *Config) { c.APIAddr = "localhost:0" },
		func(c *Config) { c.ListenAddrs = []string{"/ip6/::/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"} },
		func(c *Config) { c.Trusted = []string{pid}; c.LogLevel = "debug" },
		func(c *Config) { c.Peers = append(c.Peers, "/dns4/example.com/tcp/4001/p2p/"+pid) },
		func(c *Config) { c.CompactEvery = "off" },
		func(c *Config) { c.CompactEvery = "3s" },
		func(c *Config) { c.CompactEvery = "2h30m" },
		func(c *Config) { c.StoreWriteBufferMiB = 16; c.StoreCacheMiB = 64 },
	} {
		c := validConfig(t)
		change(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func TestSettingsApply(t *testing.T) {
	p1 := "/ip4/10.0.0.1/tcp/4001/p2p/" + testutil.PeerID(t).String()
	p2 := "/ip4/10.0.0.2/tcp/4001/p2p/" + testutil.PeerID(t).String()
	c := DefaultConfig()
	c.NodeID = "keep"
	c.Peers = []string{p1}
	Settings{Env: "site-a", APIAddr: "127.0.0.1:0", ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Peers: []string{p1, p2}, NoMDNS: true, CompactEvery: "off"}.Apply(&c)
	if c.Env != "site-a" || c.NodeID != "keep" || c.APIAddr != "127.0.0.1:0" {
		t.Errorf("strings: %+v", c)
	}
	if !slices.Equal(c.ListenAddrs, []string{"/ip4/127.0.0.1/tcp/0"}) {
		t.Errorf("listen not replaced: %v", c.ListenAddrs)
	}
	if !slices.Equal(c.Peers, []string{p1, p2}) {
		t.Errorf("peers should be added without duplicates: %v", c.Peers)
	}
	if c.MDNS || !c.DHT {
		t.Errorf("mdns=%v dht=%v, want false, true", c.MDNS, c.DHT)
	}
	if c.CompactEvery != "off" {
		t.Errorf("compact_every = %q, want off", c.CompactEvery)
	}
	if !c.AutoNAT || !c.RelayService || !c.AutoRelay || !c.HolePunching || !c.PortMapping || c.Reachability != "" {
		t.Errorf("NAT defaults changed by settings that do not name them: %+v", c)
	}
	Settings{Reachability: "private", NoAutoNAT: true, NoRelayService: true, NoHolePunching: true, NoPortMapping: true}.Apply(&c)
	if c.AutoNAT || c.RelayService || !c.AutoRelay || c.HolePunching || c.PortMapping || c.Reachability != "private" {
		t.Errorf("NAT settings not applied: %+v", c)
	}
	Settings{MaxPeers: 48}.Apply(&c)
	if c.MaxPeers != 48 {
		t.Errorf("max_peers = %d after --max-peers 48", c.MaxPeers)
	}
	Settings{}.Apply(&c)
	if c.CompactEvery != "off" {
		t.Errorf("an empty --compact-every changed compact_every to %q", c.CompactEvery)
	}
	if c.MaxPeers != 48 {
		t.Errorf("no --max-peers changed max_peers to %d", c.MaxPeers)
	}
}

func TestCompactOptions(t *testing.T) {
	tests := []struct {
		every            string
		given            crdt.Options
		interval, maxAge time.Duration
	}{
		{"", crdt.Options{}, 0, 0}, // the store's defaults
		{"off", crdt.Options{}, -1, 0},
		{"OFF", crdt.Options{}, -1, 0},
		{"3s", crdt.Options{}, 3 * time.Second, 3 * time.Second},
		{"1m", crdt.Options{}, time.Minute, time.Minute},
		{"6h", crdt.Options{}, time.Minute, 6 * time.Hour},
		// A test's explicit options win.
		{"3s", crdt.Options{CompactInterval: -1}, -1, 3 * time.Second},
		{"off", crdt.Options{CompactInterval: time.Second}, time.Second, 0},
		{"6h", crdt.Options{CompactMaxAge: time.Minute}, time.Minute, time.Minute},
	}
	for _, tt := range tests {
		o := compactOptions(tt.every, tt.given)
		if o.CompactInterval != tt.interval || o.CompactMaxAge != tt.maxAge {
			t.Errorf("compactOptions(%q, %+v): interval %v, max age %v; want %v, %v",
				tt.every, tt.given, o.CompactInterval, o.CompactMaxAge, tt.interval, tt.maxAge)
		}
		if o.CompactMinHistory != tt.given.CompactMinHistory {
			t.Errorf("compactOptions(%q) changed CompactMinHistory to %d", tt.every, o.CompactMinHistory)
		}
	}
}

func TestDefaultNodeID(t *testing.T) {
	id := testutil.PeerID(t)
	suffix := id.String()[len(id.String())-6:]
	tests := []struct{ host, want string }{
		{"plant1", "plant1-" + suffix},
		{"my host.example.com", "my-host.example.com-" + suffix},
		{"", "node-" + suffix},
		{"---", "node-" + suffix},
		{"héllo", "h-llo-" + suffix},
		{strings.Repeat("x", 80), strings.Repeat("x", 50) + "-" + suffix},
	}
	for _, tt := range tests {
		got := DefaultNodeID(tt.host, id)
		if got != tt.want {
			t.Errorf("DefaultNodeID(%q) = %q, want %q", tt.host, got, tt.want)
		}
		if !nodeIDRE.MatchString(got) {
			t.Errorf("DefaultNodeID(%q) = %q is not a valid node ID", tt.host, got)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadConfig(dir); !errors.Is(err, api.ErrNotInitialised) || !strings.Contains(err.Error(), "starling init --data "+dir) {
		t.Errorf("missing config: %v", err)
	}
	c := validConfig(t)
	if err := writeConfig(dir, &c); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != c.NodeID || !slices.Equal(got.Peers, c.Peers) || got.MDNS != c.MDNS {
		t.Errorf("round trip: got %+v, want %+v", got, c)
	}

	// Missing keys take defaults; unknown keys are refused with the file named.
	if err := os.WriteFile(filepath.Join(dir, api.ConfigFile), []byte(`{"node_id": "n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = LoadConfig(dir)
	if err != nil || got.Env != DefaultEnv || !got.MDNS || got.APIAddr != DefaultAPIAddr {
		t.Errorf("defaults: %+v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, api.ConfigFile), []byte(`{"nodeid": "n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(dir); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "nodeid") || !strings.Contains(err.Error(), api.ConfigFile) {
		t.Errorf("unknown key: %v", err)
	}
}
