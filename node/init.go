package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/p2p"
)

// Sentinel errors of Init and Open. Test with errors.Is.
var (
	// ErrAlreadyInitialised means Init found a config.json and was not
	// given Force.
	ErrAlreadyInitialised = errors.New("node: data dir already initialised")
	// ErrDataDir means the data directory cannot be created or written.
	ErrDataDir = errors.New("node: data dir unusable")
)

// InitOptions are the choices of `starling init`.
//
// The network: given no choice, Init generates a private network key
// in DIR/swarm.key and uses it, so that a new node admits only the
// machines the operator gave the key. At most one of GeneratePSK, PSK,
// Settings.PSKFile and OpenNetwork may be set. With Force and none of
// them, the old config's choice is kept, so rewriting a config never
// cuts a node off its cluster by giving it a new key.
type InitOptions struct {
	// Settings are the flags; unset ones take the defaults of DefaultConfig.
	Settings
	// GeneratePSK creates a private network key in DIR/swarm.key and
	// uses it (an existing DIR/swarm.key is kept and used). Copy that
	// file to every node of the environment. It is the default of a new
	// directory; with Force it gives an open directory a key.
	GeneratePSK bool
	// PSK is a private network key (32 bytes, from p2p.GeneratePSK) to
	// write to DIR/swarm.key and use: nodes set up together (starling
	// local and demo, tests) share one this way. An existing
	// DIR/swarm.key must hold the same key.
	PSK []byte
	// OpenNetwork makes a node without a private network key: any
	// machine that can reach its listen port can join and read and write
	// all data. For networks closed by other means (a VPN, a firewall);
	// the node warns at every start.
	OpenNetwork bool
	// Force rewrites config.json of an initialised directory from the
	// defaults and Settings. identity.key, api.token, swarm.key and the
	// datastore are kept, and so are the node ID unless Settings.NodeID
	// is set, and the network (key file or open) unless one is chosen.
	Force bool

	keys keyring // nil: the p2p package's key files
}

// keyring is the key handling Init needs; the p2p package implements it
// (tests substitute their own).
type keyring interface {
	LoadOrCreateIdentity(path string) (crypto.PrivKey, error)
	GeneratePSK() ([]byte, error)
	WritePSK(path string, psk []byte) error
	LoadPSK(path string) ([]byte, error)
}

type p2pKeys struct{}

func (p2pKeys) LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	return p2p.LoadOrCreateIdentity(path)
}
func (p2pKeys) GeneratePSK() ([]byte, error)           { return p2p.GeneratePSK() }
func (p2pKeys) WritePSK(path string, psk []byte) error { return p2p.WritePSK(path, psk) }
func (p2pKeys) LoadPSK(path string) ([]byte, error)    { return p2p.LoadPSK(path) }

var _ keyring = p2pKeys{}

func (o *InitOptions) keyring() keyring {
	if o.keys == nil {
		return p2pKeys{}
	}
	return o.keys
}

// Init prepares the data directory dir: it creates it (mode 0700) with
// a libp2p identity, an API token, optionally a private network key, and
// config.json. It refuses an initialised directory unless opts.Force.
//
// Every check that can fail (flags, the PSK file, whether dir can be
// created and written) runs before anything is written, and files are
// written through a temporary file and a rename; on error, whatever this
// call created is removed again, so a failed Init leaves dir as it was.
func Init(dir string, opts InitOptions) (_ *Config, err error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: no data directory given: use --data DIR", ErrDataDir)
	}
	keys := opts.keyring()

	// 1. The config, checked before touching the disk.
	var old *Config
	if Initialised(dir) {
		if !opts.Force {
			return nil, fmt.Errorf("%w: %s already has a %s: start the node with `starling run --data %s`, or add --force to rewrite its config (identity, token and data are kept)",
				ErrAlreadyInitialised, dir, api.ConfigFile, dir)
		}
		old, _ = LoadConfig(dir) // a broken config is what --force is for
	}
	// The network: which key, or none.
	choices := 0
	for _, set := range []bool{opts.GeneratePSK, opts.PSK != nil, opts.PSKFile != "", opts.OpenNetwork} {
		if set {
			choices++
		}
	}
	if choices > 1 {
		return nil, fmt.Errorf("%w: --psk, --psk-file and --open exclude each other: give at most one (none generates a new key, as --psk does; --psk-file uses another node's key; --open uses no key)", ErrInvalidConfig)
	}
	if opts.PSK != nil && len(opts.PSK) != pskLen {
		return nil, fmt.Errorf("%w: the private network key to use is %d bytes, want %d: make it with p2p.GeneratePSK", ErrInvalidConfig, len(opts.PSK), pskLen)
	}
	generate, writeKey := opts.GeneratePSK, opts.PSK
	cfg := DefaultConfig()
	switch {
	case choices == 1:
	case old != nil: // --force: keep the network the node had
		cfg.PSKFile, cfg.OpenNetwork = old.PSKFile, old.OpenNetwork && old.PSKFile == ""
	default:
		generate = true
	}
	cfg.OpenNetwork = cfg.OpenNetwork || opts.OpenNetwork
	if generate || writeKey != nil {
		cfg.PSKFile = api.SwarmKeyFile
	}
	if cfg.PSKFile != "" || opts.PSKFile != "" {
		cfg.ListenAddrs = DefaultListenAddrs(true)
	}
	opts.Settings.Apply(&cfg)
	if cfg.NodeID == "" && old != nil {
		cfg.NodeID = old.NodeID
	}
	deriveID := cfg.NodeID == ""
	check := cfg
	if deriveID {
		check.NodeID = "derived-later"
	}
	if err := check.Validate(); err != nil {
		return nil, err
	}
	if cfg.PSKFile != "" && !generate && writeKey == nil {
		if err := checkPSKFile(keys, cfg.PSKPath(dir)); err != nil {
			return nil, err
		}
	}
	if writeKey != nil {
		if err := checkSameKey(keys, filepath.Join(dir, api.SwarmKeyFile), writeKey); err != nil {
			return nil, err
		}
	}

	// 2. The directory: created and proven writable before any file.
	var undo []string // paths to remove if a later step fails, newest last
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				_ = os.RemoveAll(undo[i])
			}
		}
	}()
	top, err := makeDataDir(dir)
	if err != nil {
		return nil, err
	}
	if top != "" {
		undo = append(undo, top)
	}
	if err := probeWritable(dir); err != nil {
		return nil, err
	}

	// 3. Identity, PSK, token, and config last: a directory without
	// config.json is not initialised, whatever else it holds.
	idPath := filepath.Join(dir, api.IdentityFile)
	hadID := exists(idPath)
	priv, err := keys.LoadOrCreateIdentity(idPath)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", idPath, err)
	}
	if !hadID {
		undo = append(undo, idPath)
	}
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", idPath, err)
	}
	if deriveID {
		host, _ := os.Hostname()
		cfg.NodeID = DefaultNodeID(host, pid)
	}
	if path := filepath.Join(dir, api.SwarmKeyFile); generate || writeKey != nil {
		if exists(path) {
			if err := checkPSKFile(keys, path); err != nil {
				return nil, err
			}
		} else {
			psk := writeKey
			if psk == nil {
				if psk, err = keys.GeneratePSK(); err != nil {
					return nil, fmt.Errorf("generate private network key: %w", err)
				}
			}
			if err := keys.WritePSK(path, psk); err != nil {
				return nil, fmt.Errorf("write private network key %s: %w", path, err)
			}
			undo = append(undo, path)
		}
	}
	if _, created, err := ensureToken(dir); err != nil {
		return nil, err
	} else if created {
		undo = append(undo, filepath.Join(dir, api.TokenFile))
	}
	if err := writeConfig(dir, &cfg); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	return &cfg, nil
}

// checkPSKFile makes sure path holds a private network key; the error
// names the file and the flag.
func checkPSKFile(keys keyring, path string) error {
	if _, err := os.ReadFile(path); err != nil {
		return fmt.Errorf("psk_file (--psk-file): cannot read the private network key: %w: give the swarm.key made by `starling init` on the first node", err)
	}
	if _, err := keys.LoadPSK(path); err != nil {
		return fmt.Errorf("psk_file (--psk-file): %s: %w: copy the swarm.key made by `starling init` on the first node", path, err)
	}
	return nil
}

// pskLen is the size of a private network key.
const pskLen = 32

// checkSameKey makes sure that path, if it exists, holds psk.
func checkSameKey(keys keyring, path string, psk []byte) error {
	if !exists(path) {
		return nil
	}
	have, err := keys.LoadPSK(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %w: remove it, or init another directory", ErrDataDir, path, err)
	}
	if !bytes.Equal(have, psk) {
		return fmt.Errorf("%w: %s holds another private network key than the one this node is to share: remove it, or init another directory", ErrDataDir, path)
	}
	return nil
}

// makeDataDir creates dir (mode 0700) and any missing parents, and
// returns the topmost directory it created ("" if dir existed).
func makeDataDir(dir string) (string, error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("%w: cannot create data dir %s: %v: choose a writable --data", ErrDataDir, dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fail(err)
	}
	if fi, err := os.Stat(abs); err == nil {
		if !fi.IsDir() {
			return fail(errors.New("it is a file, not a directory"))
		}
		return "", nil
	}
	top := abs // the topmost directory that MkdirAll will create
	for {
		parent := filepath.Dir(top)
		if parent == top || exists(parent) {
			break
		}
		top = parent
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		if exists(top) {
			_ = os.RemoveAll(top)
		}
		return fail(err)
	}
	return top, nil
}

// probeWritable creates and removes a file in dir: permissions, a
// read-only mount or a full disk show up here, before any real write.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".write-probe-*")
	if err == nil {
		_, err = f.Write([]byte("starling"))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(f.Name()); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("%w: data dir %s is not writable: %v: fix its permissions or choose another --data", ErrDataDir, dir, err)
	}
	return nil
}

// DefaultNodeID derives a stable node ID from the host name and the peer
// ID: "<host>-<last 6 characters of the peer ID>". Characters not allowed
// in a node ID become '-'.
func DefaultNodeID(hostname string, id peer.ID) string {
	var b strings.Builder
	for _, r := range hostname {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	host := strings.Trim(b.String(), "-.")
	if len(host) > 50 {
		host = host[:50]
	}
	if host == "" {
		host = "node"
	}
	s := id.String()
	if len(s) > 6 {
		s = s[len(s)-6:]
	}
	return host + "-" + s
}

// ReadPeerID returns the peer ID of the identity in dir.
func ReadPeerID(dir string) (peer.ID, error) {
	path := filepath.Join(dir, api.IdentityFile)
	if !exists(path) {
		return "", fmt.Errorf("%w: %s is missing: run `starling init --data %s`", api.ErrNotInitialised, path, dir)
	}
	priv, err := p2p.LoadOrCreateIdentity(path)
	if err != nil {
		return "", fmt.Errorf("identity %s: %w", path, err)
	}
	return peer.IDFromPrivateKey(priv)
}
