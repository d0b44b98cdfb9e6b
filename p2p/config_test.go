package p2p

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/multiformats/go-multiaddr"
)

func TestIdentityPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "identity.key")
	k1, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("identity file mode %o, want 600", mode)
	}
	if k1.Type() != crypto.Ed25519 {
		t.Errorf("key type %s, want Ed25519", k1.Type())
	}
	k2, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	if id1 != id2 {
		t.Fatalf("peer ID changed after reload: %s then %s", id1, id2)
	}
	// No temporary file is left next to it.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key", len(entries))
	}

	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(path); err == nil {
		t.Fatal("corrupt identity file accepted")
	}
}

func TestPSKRoundTrip(t *testing.T) {
	psk, err := GeneratePSK()
	if err != nil {
		t.Fatal(err)
	}
	if len(psk) != 32 {
		t.Fatalf("GeneratePSK: %d bytes", len(psk))
	}
	path := filepath.Join(t.TempDir(), "swarm.key")
	if err := WritePSK(path, psk); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode %o, want 600", mode)
	}
	got, err := LoadPSK(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, psk) {
		t.Fatal("loaded key differs from the written one")
	}
	// libp2p's own decoder reads our file (go-ipfs swarm.key compatibility).
	f, _ := os.Open(path)
	defer f.Close()
	lib, err := pnet.DecodeV1PSK(f)
	if err != nil || !bytes.Equal(lib, psk) {
		t.Fatalf("pnet.DecodeV1PSK: %v", err)
	}

	other, _ := GeneratePSK()
	err = WritePSK(path, other)
	if err == nil {
		t.Fatal("WritePSK overwrote an existing file")
	}
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwrite error %v does not wrap fs.ErrExist", err)
	}
	if got, _ := LoadPSK(path); !bytes.Equal(got, psk) {
		t.Fatal("refused overwrite still changed the file")
	}
	if err := WritePSK(filepath.Join(t.TempDir(), "short.key"), psk[:16]); err == nil {
		t.Fatal("WritePSK accepted a 16-byte key")
	}
}

func TestLoadPSKFormats(t *testing.T) {
	psk := bytes.Repeat([]byte{0xab}, 32)
	cases := map[string]string{
		"base16":       "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("ab", 32) + "\n",
		"base16 crlf":  "/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + strings.Repeat("AB", 32) + "\r\n",
		"base16 no nl": "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("ab", 32),
		"base64":       "/key/swarm/psk/1.0.0/\n/base64/\n" + base64.StdEncoding.EncodeToString(psk) + "\n",
		"bin":          "/key/swarm/psk/1.0.0/\n/bin/\n" + string(psk),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "swarm.key")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadPSK(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, psk) {
				t.Fatalf("got %x", got)
			}
		})
	}
}

func TestLoadPSKErrors(t *testing.T) {
	hex := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name, content, want string
	}{
		{"garbage", "hello world\n", "first line must be /key/swarm/psk/1.0.0/"},
		{"empty", "", "first line must be"},
		{"missing header", "/base16/\n" + hex(64) + "\n", "first line must be"},
		{"missing encoding", "/key/swarm/psk/1.0.0/", "second line must name the encoding"},
		{"short", "/key/swarm/psk/1.0.0/\n/base16/\n" + hex(62) + "\n", "expected 64 hex characters after /base16/, got 62"},
		{"long", "/key/swarm/psk/1.0.0/\n/base16/\n" + hex(66) + "\n", "expected 64 hex characters after /base16/, got 66"},
		{"not hex", "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("zz", 32) + "\n", "expected 64 hex characters"},
		{"unknown encoding", "/key/swarm/psk/1.0.0/\n/base32/\n" + hex(64) + "\n", "unknown encoding"},
		{"base64 short", "/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n", "expected 32 bytes after /base64/, got 3"},
		{"bin short", "/key/swarm/psk/1.0.0/\n/bin/\nabc", "expected 32 bytes after /bin/, got 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "swarm.key")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPSK(path)
			if !errors.Is(err, ErrBadPSK) {
				t.Fatalf("error %v does not wrap ErrBadPSK", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name the file and say %q", err, c.want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := LoadPSK(filepath.Join(t.TempDir(), "nope.key"))
		if !errors.Is(err, ErrBadPSK) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error %v should wrap ErrBadPSK and fs.ErrNotExist", err)
		}
	})
}

func FuzzDecodePSK(f *testing.F) {
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/bin/\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		psk, err := decodePSK(data)
		if err == nil && len(psk) != 32 {
			t.Fatalf("accepted a %d-byte key", len(psk))
		}
		if err == nil {
			// What decodes must survive a round trip through our encoder.
			again, err := decodePSK(encodePSK(psk))
			if err != nil || !bytes.Equal(again, psk) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func TestValidate(t *testing.T) {
	var empty Config
	err := empty.Validate()
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, field := range []string{"Env", "Identity", "Blockstore"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error %q does not name %s", err, field)
		}
	}

	good := testConfig(t)
	if err := good.Validate(); err != nil {
		t.Fatalf("test config rejected: %v", err)
	}
	psk, _ := GeneratePSK()

	cases := map[string]struct {
		mut  func(*Config)
		want string
	}{
		"env chars":  {func(c *Config) { c.Env = "Prod_A" }, "Env:"},
		"env long":   {func(c *Config) { c.Env = strings.Repeat("a", 65) }, "Env:"},
		"psk size":   {func(c *Config) { c.PSK = []byte("short") }, "PSK:"},
		"quic + psk": {func(c *Config) { c.PSK = psk; c.ListenAddrs = defaultListenAddrs(false) }, "ListenAddrs[1]"},
		"peer no id": {func(c *Config) { c.Peers = []peer.AddrInfo{{}} }, "Peers[0]"},
		"peer self": {func(c *Config) {
			self, _ := peer.IDFromPrivateKey(c.Identity)
			c.Peers = []peer.AddrInfo{{ID: self}}
		}, "Peers[0]"},
		"redial":      {func(c *Config) { c.RedialMin, c.RedialMax = 2e9, 1e9 }, "RedialMax:"},
		"ping":        {func(c *Config) { c.PingInterval, c.PingTimeout = 2e9, 1e9 }, "PingTimeout:"},
		"no identity": {func(c *Config) { c.Identity = nil }, "Identity:"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			c.mut(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
			if _, err := New(context.Background(), cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}

	// A PSK set after DefaultConfig must not bring QUIC back.
	cfg := DefaultConfig("x")
	cfg.Identity, cfg.Blockstore, cfg.PSK = good.Identity, good.Blockstore, psk
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig + PSK rejected: %v", err)
	}
	for _, a := range cfg.withDefaults().ListenAddrs {
		if isQUIC(a) {
			t.Fatalf("default listen address %s is QUIC despite the PSK", a)
		}
	}
}

func TestNamesForEnv(t *testing.T) {
	n := namesFor("site-a")
	want := envNames{
		mdnsService:   "_starling-site-a._udp",
		rendezvous:    "starling/site-a",
		topic:         "starling/site-a/replication",
		dhtPrefix:     "/starling/site-a",
		bitswapPrefix: "/starling/site-a",
		directProto:   "/starling/site-a/replication/1.0.0",
	}
	if n != want {
		t.Fatalf("namesFor: %+v", n)
	}
	long1 := mdnsServiceName(strings.Repeat("a", 64))
	long2 := mdnsServiceName(strings.Repeat("a", 63) + "b")
	label, _, _ := strings.Cut(long1, ".")
	if len(label) > 63 || long1 == long2 {
		t.Fatalf("long env names: %q, %q", long1, long2)
	}
}

func TestListenAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	addr := multiaddr.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(port))

	cfg := testConfig(t)
	// One good address and one taken one: libp2p alone would succeed.
	cfg.ListenAddrs = []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/127.0.0.1/tcp/0"), addr}
	n, err := New(context.Background(), cfg)
	if err == nil {
		n.Close()
		t.Fatal("New succeeded on a port in use")
	}
	if !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("error %q does not name %s", err, addr)
	}

	cfg.ListenAddrs = []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/127.0.0.1/udp/0")}
	if n, err := New(context.Background(), cfg); err == nil {
		n.Close()
		t.Fatal("New succeeded on an address no transport handles")
	}
}
