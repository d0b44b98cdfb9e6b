package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/p2p"
)

// fakeKeys stands in for the p2p package's key files, so Init is tested
// without libp2p. failPSK makes GeneratePSK fail (after the identity was
// written), to test the roll-back.
type fakeKeys struct{ failPSK bool }

const fakePSKPrefix = "fake-psk:"

// errInjected is the failure fakeKeys injects.
var errInjected = errors.New("injected failure")

func (fakeKeys) LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		return crypto.UnmarshalPrivateKey(b)
	}
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	b, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return priv, writeFileAtomic(path, b, 0o600)
}

func (f fakeKeys) GeneratePSK() ([]byte, error) {
	if f.failPSK {
		return nil, errInjected
	}
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

func (fakeKeys) WritePSK(path string, psk []byte) error {
	if exists(path) {
		return fs.ErrExist
	}
	return os.WriteFile(path, []byte(fakePSKPrefix+hex.EncodeToString(psk)), 0o600)
}

func (fakeKeys) LoadPSK(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, ok := strings.CutPrefix(string(b), fakePSKPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: no %q header", p2p.ErrBadPSK, fakePSKPrefix)
	}
	return hex.DecodeString(s)
}

func fakeInit(dir string, opts InitOptions) (*Config, error) {
	if opts.keys == nil {
		opts.keys = fakeKeys{}
	}
	return Init(dir, opts)
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// listDir returns the names under dir (recursively), or nil if dir does not exist.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestInitCreatesDataDir: Init given no flags makes a node of a private
// network: a new key in swarm.key, the config using it, TCP only.
func TestInitCreatesDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "node")
	cfg, err := fakeInit(dir, InitOptions{Settings: Settings{Env: "site-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := listDir(t, dir), []string{api.ConfigFile, api.TokenFile, api.IdentityFile, api.SwarmKeyFile}; !sameSet(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
	for path, want := range map[string]fs.FileMode{
		dir:                                  0o700,
		filepath.Join(dir, api.ConfigFile):   0o600,
		filepath.Join(dir, api.TokenFile):    0o600,
		filepath.Join(dir, api.IdentityFile): 0o600,
		filepath.Join(dir, api.SwarmKeyFile): 0o600,
		filepath.Join(filepath.Dir(dir)):     0o700,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	tok, err := api.ReadToken(dir)
	if err != nil || len(tok) != 64 {
		t.Errorf("token %q, %v: want 64 hex characters", tok, err)
	}
	if _, err := hex.DecodeString(tok); err != nil {
		t.Errorf("token is not hex: %v", err)
	}
	if loaded, err := LoadConfig(dir); err != nil || loaded.PSKFile != api.SwarmKeyFile {
		t.Errorf("config.json: %+v, %v: want psk_file %s", loaded, err, api.SwarmKeyFile)
	}
	if cfg.Env != "site-a" || !cfg.MDNS || !cfg.DHT || cfg.APIAddr != DefaultAPIAddr {
		t.Errorf("config: %+v", cfg)
	}
	if cfg.PSKFile != api.SwarmKeyFile || cfg.OpenNetwork || cfg.Network() != NetworkPrivate || cfg.OpenNetworkWarning(dir) != "" {
		t.Errorf("psk_file %q, open_network %v: want the generated %s", cfg.PSKFile, cfg.OpenNetwork, api.SwarmKeyFile)
	}
	if psk, err := (fakeKeys{}).LoadPSK(filepath.Join(dir, api.SwarmKeyFile)); err != nil || len(psk) != 32 {
		t.Errorf("swarm.key: %x, %v: want a 32-byte key", psk, err)
	}
	if !slices.Equal(cfg.ListenAddrs, DefaultListenAddrs(true)) || len(cfg.ListenAddrs) != 1 {
		t.Errorf("listen = %v, want TCP only (a PSK allows no QUIC)", cfg.ListenAddrs)
	}
	priv, err := fakeKeys{}.LoadOrCreateIdentity(filepath.Join(dir, api.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := peer.IDFromPrivateKey(priv)
	host, _ := os.Hostname()
	if want := DefaultNodeID(host, pid); cfg.NodeID != want || cfg.Validate() != nil {
		t.Errorf("node ID %q, want %q (from host and peer ID)", cfg.NodeID, want)
	}
	loaded, err := LoadConfig(dir)
	if err != nil || loaded.NodeID != cfg.NodeID || loaded.Env != cfg.Env {
		t.Errorf("LoadConfig = %+v, %v; Init returned %+v", loaded, err, cfg)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestInitPSK(t *testing.T) {
	t.Run("generate", func(t *testing.T) {
		dir := t.TempDir()
		cfg, err := fakeInit(dir, InitOptions{GeneratePSK: true, Settings: Settings{NodeID: "n1"}})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.PSKFile != api.SwarmKeyFile || cfg.PSKPath(dir) != filepath.Join(dir, api.SwarmKeyFile) {
			t.Errorf("psk_file = %q", cfg.PSKFile)
		}
		if mode(t, filepath.Join(dir, api.SwarmKeyFile)) != 0o600 {
			t.Error("swarm.key should be 0600")
		}
		if !slices.Equal(cfg.ListenAddrs, DefaultListenAddrs(true)) {
			t.Errorf("listen = %v: a PSK allows no QUIC", cfg.ListenAddrs)
		}
	})
	t.Run("existing file", func(t *testing.T) {
		keyDir := t.TempDir()
		key := filepath.Join(keyDir, "swarm.key")
		if err := (fakeKeys{}).WritePSK(key, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cfg, err := fakeInit(dir, InitOptions{Settings: Settings{NodeID: "n1", PSKFile: key}})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.PSKPath(dir) != key {
			t.Errorf("psk path = %q, want %q", cfg.PSKPath(dir), key)
		}
	})
	t.Run("exclusive choices", func(t *testing.T) {
		for _, opts := range []InitOptions{
			{GeneratePSK: true, Settings: Settings{PSKFile: "/x"}},
			{OpenNetwork: true, Settings: Settings{PSKFile: "/x"}},
			{OpenNetwork: true, GeneratePSK: true},
			{OpenNetwork: true, PSK: make([]byte, 32)},
		} {
			dir := filepath.Join(t.TempDir(), "n")
			_, err := fakeInit(dir, opts)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "--psk-file") || !strings.Contains(err.Error(), "--open") {
				t.Errorf("%+v: err = %v, want ErrInvalidConfig naming the flags", opts, err)
			}
			if exists(dir) {
				t.Errorf("%+v: dir created despite the error", opts)
			}
		}
	})
	t.Run("open", func(t *testing.T) {
		dir := t.TempDir()
		cfg, err := fakeInit(dir, InitOptions{OpenNetwork: true, Settings: Settings{NodeID: "n1"}})
		if err != nil {
			t.Fatal(err)
		}
		if exists(filepath.Join(dir, api.SwarmKeyFile)) || cfg.PSKFile != "" || !cfg.OpenNetwork || cfg.Network() != NetworkOpen {
			t.Errorf("--open: psk_file %q, open_network %v, swarm.key exists %v: want no key", cfg.PSKFile, cfg.OpenNetwork, exists(filepath.Join(dir, api.SwarmKeyFile)))
		}
		if !slices.Equal(cfg.ListenAddrs, DefaultListenAddrs(false)) {
			t.Errorf("listen = %v, want TCP and QUIC", cfg.ListenAddrs)
		}
		if loaded, err := LoadConfig(dir); err != nil || !loaded.OpenNetwork {
			t.Errorf("config.json: %+v, %v: want open_network true", loaded, err)
		}
		if w := cfg.OpenNetworkWarning(dir); !strings.Contains(w, "open_network") || !strings.Contains(w, "--force --psk") {
			t.Errorf("warning %q does not say why the network is open and how to close it", w)
		}
	})
	t.Run("shared key", func(t *testing.T) {
		psk := bytes.Repeat([]byte{7}, 32)
		dir := t.TempDir()
		cfg, err := fakeInit(dir, InitOptions{PSK: psk, Settings: Settings{NodeID: "n1"}})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := (fakeKeys{}).LoadPSK(cfg.PSKPath(dir)); err != nil || !bytes.Equal(got, psk) {
			t.Errorf("swarm.key holds %x, %v; want the given key", got, err)
		}
		other := t.TempDir()
		if err := (fakeKeys{}).WritePSK(filepath.Join(other, api.SwarmKeyFile), make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		if _, err := fakeInit(other, InitOptions{PSK: psk}); !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "another private network key") {
			t.Errorf("a dir whose swarm.key holds another key: %v", err)
		}
		if _, err := fakeInit(t.TempDir(), InitOptions{PSK: psk[:5]}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("a 5-byte key: %v", err)
		}
	})
	t.Run("force keeps the network", func(t *testing.T) {
		// A config written before keys became the default (no psk_file,
		// no open_network) stays open: a new key would cut the node off
		// its cluster. The warning says how to close it.
		legacy := t.TempDir()
		old := DefaultConfig()
		old.NodeID = "old"
		if err := writeConfig(legacy, &old); err != nil {
			t.Fatal(err)
		}
		cfg, err := fakeInit(legacy, InitOptions{Force: true, Settings: Settings{Env: "two"}})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Network() != NetworkLegacyOpen || exists(filepath.Join(legacy, api.SwarmKeyFile)) {
			t.Errorf("--force on an open dir: psk_file %q, open_network %v; want both unset and no key made", cfg.PSKFile, cfg.OpenNetwork)
		}
		if w := cfg.OpenNetworkWarning(legacy); !strings.Contains(w, "before") || !strings.Contains(w, "--force --psk") {
			t.Errorf("warning %q does not say why the network is open and how to close it", w)
		}
		// --force --psk closes it.
		cfg, err = fakeInit(legacy, InitOptions{Force: true, GeneratePSK: true})
		if err != nil || cfg.PSKFile != api.SwarmKeyFile || !exists(filepath.Join(legacy, api.SwarmKeyFile)) {
			t.Fatalf("--force --psk: %+v, %v", cfg, err)
		}
		before, _ := os.ReadFile(filepath.Join(legacy, api.SwarmKeyFile))
		// And a later --force keeps that key.
		cfg, err = fakeInit(legacy, InitOptions{Force: true})
		after, _ := os.ReadFile(filepath.Join(legacy, api.SwarmKeyFile))
		if err != nil || cfg.PSKFile != api.SwarmKeyFile || !bytes.Equal(before, after) {
			t.Errorf("--force after --psk: %+v, %v, key kept %v", cfg, err, bytes.Equal(before, after))
		}
		// An open network chosen with --open stays open.
		cfg, err = fakeInit(legacy, InitOptions{Force: true, OpenNetwork: true})
		if err != nil || cfg.Network() != NetworkOpen {
			t.Fatalf("--force --open: %+v, %v", cfg, err)
		}
		if cfg, err = fakeInit(legacy, InitOptions{Force: true}); err != nil || cfg.Network() != NetworkOpen {
			t.Errorf("--force after --open: %+v, %v", cfg, err)
		}
	})
}

func TestInitRefusesInitialisedDirUnlessForced(t *testing.T) {
	dir := t.TempDir()
	first, err := fakeInit(dir, InitOptions{Settings: Settings{Env: "one"}})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	_, err = fakeInit(dir, InitOptions{Settings: Settings{Env: "two"}})
	if !errors.Is(err, ErrAlreadyInitialised) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second Init: %v", err)
	}
	if after := snapshot(t, dir); !equalSnapshots(before, after) {
		t.Error("a refused Init changed the directory")
	}

	second, err := fakeInit(dir, InitOptions{Force: true, Settings: Settings{Env: "two"}})
	if err != nil {
		t.Fatal(err)
	}
	if second.Env != "two" || second.NodeID != first.NodeID {
		t.Errorf("forced config: env %q node %q, want two, %q", second.Env, second.NodeID, first.NodeID)
	}
	after := snapshot(t, dir)
	for _, f := range []string{api.IdentityFile, api.TokenFile} {
		if !bytes.Equal(before[f], after[f]) {
			t.Errorf("--force changed %s", f)
		}
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, name := range listDir(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			m[name] = b
		}
	}
	return m
}

func equalSnapshots(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestInitUnusableDirWritesNothing(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(tmp, "read-only")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(readOnly, 0o700) })

	tests := []struct {
		name, dir string
		rootOK    bool // root ignores permissions, so the case cannot fail as root
		linuxOnly bool
	}{
		{"under a regular file", filepath.Join(file, "node"), false, false},
		{"deep under a regular file", filepath.Join(file, "a", "b"), false, false},
		{"is a regular file", file, false, false},
		{"read-only directory", readOnly, true, false},
		{"inside a read-only directory", filepath.Join(readOnly, "node"), true, false},
		// Unwritable even for root: the probe fails in an existing directory.
		{"existing directory in sysfs", "/sys", false, true},
		{"new directory in procfs", "/proc/starling-init-test", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rootOK && os.Geteuid() == 0 {
				t.Skip("root can write to read-only directories")
			}
			if tt.linuxOnly && runtime.GOOS != "linux" {
				t.Skip("needs /proc and /sys")
			}
			before := listDir(t, tmp)
			_, err := fakeInit(tt.dir, InitOptions{})
			if !errors.Is(err, ErrDataDir) {
				t.Fatalf("Init(%s) = %v, want ErrDataDir", tt.dir, err)
			}
			if !strings.Contains(err.Error(), tt.dir) || !strings.Contains(err.Error(), "--data") {
				t.Errorf("error should name the dir and the flag: %v", err)
			}
			if after := listDir(t, tmp); !slices.Equal(before, after) {
				t.Errorf("files changed: before %v, after %v", before, after)
			}
		})
	}
}

func TestInitBadInputWritesNothing(t *testing.T) {
	tmp := t.TempDir()
	garbage := filepath.Join(tmp, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    InitOptions
		mention []string
		is      error
	}{
		{"malformed peer", InitOptions{Settings: Settings{Peers: []string{"/ip4/1.2.3.4/tcp/x"}}}, []string{"--peer", `"/ip4/1.2.3.4/tcp/x"`}, ErrInvalidConfig},
		{"bad env and listen", InitOptions{Settings: Settings{Env: "A B", ListenAddrs: []string{"tcp:4001"}}}, []string{"--env", "--listen", `"tcp:4001"`}, ErrInvalidConfig},
		{"missing psk file", InitOptions{Settings: Settings{PSKFile: filepath.Join(tmp, "nope.key")}}, []string{"--psk-file", filepath.Join(tmp, "nope.key")}, fs.ErrNotExist},
		{"psk file is a dir", InitOptions{Settings: Settings{PSKFile: tmp}}, []string{"--psk-file", tmp}, nil},
		{"garbage psk file", InitOptions{Settings: Settings{PSKFile: garbage}}, []string{"--psk-file", garbage}, p2p.ErrBadPSK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(tmp, "node")
			_, err := fakeInit(dir, tt.opts)
			if err == nil {
				t.Fatal("Init succeeded")
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if exists(dir) {
				t.Errorf("%s created despite the error", dir)
			}
		})
	}
}

func TestInitRollsBackOnLateFailure(t *testing.T) {
	t.Run("new dir is removed", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "x", "node")
		_, err := fakeInit(dir, InitOptions{GeneratePSK: true, keys: fakeKeys{failPSK: true}})
		if !errors.Is(err, errInjected) {
			t.Fatalf("err = %v", err)
		}
		if got := listDir(t, parent); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
	})
	t.Run("existing dir is emptied of what Init wrote", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "keep-me"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := fakeInit(dir, InitOptions{GeneratePSK: true, keys: fakeKeys{failPSK: true}})
		if err == nil {
			t.Fatal("Init succeeded")
		}
		if got := listDir(t, dir); !slices.Equal(got, []string{"keep-me"}) {
			t.Errorf("files = %v, want only keep-me", got)
		}
	})
}

func TestWriteFileAtomicLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for i := range 3 {
		if err := writeFileAtomic(path, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("files = %v", got)
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("write into a missing dir succeeded")
	}
}
