package node_test

// End-to-end tests with real libp2p and crdt: loopback TCP, static
// peers, no mDNS (loopback has no multicast) and no DHT.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
	"github.com/starling-sync/starling/p2p"
)

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestE2EWriteOnAnyNodeVisibleOnOthers(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := nodetest.Cluster(t, 3)
	ctx := context.Background()
	for i, n := range nodes {
		key := fmt.Sprintf("e2e/from-%d", i+1)
		start := time.Now()
		if err := n.Client().Put(ctx, key, []byte(n.NodeID())); err != nil {
			t.Fatal(err)
		}
		for _, o := range nodes {
			testutil.Eventually(t, 10*time.Second, key+" on "+o.NodeID(), func() bool {
				v, err := o.Client().Get(ctx, key)
				return err == nil && string(v) == n.NodeID()
			})
		}
		t.Logf("%s written on %s, visible everywhere after %v", key, n.NodeID(), time.Since(start))
	}
	for _, n := range nodes {
		es, err := n.Client().List(ctx, "e2e")
		if err != nil || len(es) != 3 {
			t.Errorf("%s: List = %v, %v", n.NodeID(), es, err)
		}
		st, err := n.Client().Status(ctx)
		if err != nil || st.NodeID != n.NodeID() || st.PeerID != n.PeerID().String() || len(st.Peers) < 2 {
			t.Errorf("%s: Status = %+v, %v", n.NodeID(), st, err)
		}
	}
}

func TestE2EPartitionAndHeal(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := nodetest.Cluster(t, 3)
	ctx := context.Background()
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, o := range []*node.Node{a, b} {
		o.P2P().Block(c.PeerID())
		c.P2P().Block(o.PeerID())
	}
	testutil.Eventually(t, 10*time.Second, "node3 cut off", func() bool {
		for _, p := range c.P2P().Peers() {
			if p.Connected {
				return false
			}
		}
		return true
	})
	const k = 200
	for i := range k {
		if err := a.Client().Put(ctx, fmt.Sprintf("p/a/%03d", i), []byte("a")); err != nil {
			t.Fatal(err)
		}
		if err := c.Client().Put(ctx, fmt.Sprintf("p/c/%03d", i), []byte("c")); err != nil {
			t.Fatal(err)
		}
	}
	if es, _ := c.Client().List(ctx, "p/a"); len(es) != 0 {
		t.Fatalf("node3 got %d keys through the partition", len(es))
	}
	start := time.Now()
	for _, o := range []*node.Node{a, b} {
		o.P2P().Unblock(c.PeerID())
		c.P2P().Unblock(o.PeerID())
	}
	for _, n := range nodes {
		testutil.Eventually(t, 30*time.Second, n.NodeID()+" has every key", func() bool {
			es, err := n.Client().List(ctx, "p")
			return err == nil && len(es) == 2*k
		})
	}
	t.Logf("healed %d keys in %v", 2*k, time.Since(start))
}

func TestE2ELifecycle(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "n")
	nodetest.Init(t, dir, "n1")
	before := runtime.NumGoroutine()

	n := nodetest.Open(t, dir)
	id := n.PeerID()
	info, err := api.ReadAPIInfo(dir)
	if err != nil || info.Addr != n.APIAddr() || info.PID != os.Getpid() || strings.HasSuffix(info.Addr, ":0") {
		t.Fatalf("api.json = %+v, %v; node API %s", info, err, n.APIAddr())
	}
	c, err := api.ClientFromDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	// A second Open of the same directory is refused, naming the running node.
	_, err = node.Open(context.Background(), dir, node.WithConfig(func(c *node.Config) { c.APIAddr = "127.0.0.1:0" }))
	if !errors.Is(err, node.ErrInUse) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("second Open: %v, want node.ErrInUse naming pid", err)
	}

	c.CloseIdleConnections()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if exists(filepath.Join(dir, api.APIFile)) {
		t.Error("api.json left after Close")
	}
	testutil.Eventually(t, 10*time.Second, "goroutines to end", func() bool {
		return runtime.NumGoroutine() <= before
	})

	// Restart: same peer ID, same data.
	n2 := nodetest.Open(t, dir)
	if n2.PeerID() != id {
		t.Errorf("peer ID changed: %s -> %s", id, n2.PeerID())
	}
	v, err := n2.Client().Get(context.Background(), "k")
	if err != nil || string(v) != "v" {
		t.Errorf("after restart Get = %q, %v", v, err)
	}
}

func TestE2EPortInUse(t *testing.T) {
	defer testutil.FailOnPanic(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		change  func(*node.Config)
		mention []string
	}{
		{"api", func(c *node.Config) { c.APIAddr = busy.Addr().String() }, []string{"--api", busy.Addr().String()}},
		{"libp2p", func(c *node.Config) { c.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)} }, []string{fmt.Sprint(port)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer testutil.FailOnPanic(t)
			dir := filepath.Join(t.TempDir(), "n")
			nodetest.Init(t, dir, "n1")
			cfgBefore, _ := os.ReadFile(filepath.Join(dir, api.ConfigFile))
			before := runtime.NumGoroutine()
			_, err := node.Open(context.Background(), dir, node.WithConfig(tt.change))
			if err == nil {
				t.Fatal("Open succeeded on a port in use")
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if exists(filepath.Join(dir, api.APIFile)) {
				t.Error("api.json written by a failed node.Open")
			}
			if after, _ := os.ReadFile(filepath.Join(dir, api.ConfigFile)); string(after) != string(cfgBefore) {
				t.Error("config changed by a failed node.Open")
			}
			testutil.Eventually(t, 10*time.Second, "goroutines of the failed node.Open to end", func() bool {
				return runtime.NumGoroutine() <= before
			})
			// The directory is still usable.
			n := nodetest.Open(t, dir)
			_ = n.Close()
		})
	}
}

func TestE2EBadPSKFile(t *testing.T) {
	defer testutil.FailOnPanic(t)
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "swarm.key")
	if err := os.WriteFile(bad, []byte("/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "n")
	_, err := node.Init(dir, node.InitOptions{Settings: node.Settings{PSKFile: bad}})
	if !errors.Is(err, p2p.ErrBadPSK) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Init: %v, want ErrBadPSK naming %s", err, bad)
	}
	if exists(dir) {
		t.Error("dir created despite a bad PSK")
	}

	// A key damaged after init is caught by Open, naming the file.
	nodetest.Init(t, dir, "n1")
	_, err = node.Open(context.Background(), dir, node.WithConfig(func(c *node.Config) { c.PSKFile = bad; c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"} }))
	if !errors.Is(err, p2p.ErrBadPSK) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Open: %v, want ErrBadPSK naming %s", err, bad)
	}
}

func TestE2EInitWithRealKeys(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "n")
	cfg, err := node.Init(dir, node.InitOptions{GeneratePSK: true})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, api.IdentityFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity.key: %v, %v", fi, err)
	}
	if _, err := p2p.LoadPSK(cfg.PSKPath(dir)); err != nil {
		t.Errorf("generated swarm.key does not load: %v", err)
	}
	id1, err := node.ReadPeerID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cfg.NodeID, id1.String()[len(id1.String())-6:]) {
		t.Errorf("node ID %q does not end with the peer ID's tail (%s)", cfg.NodeID, id1)
	}
	if _, err := node.Init(dir, node.InitOptions{Force: true, GeneratePSK: true}); err != nil {
		t.Fatal(err)
	}
	if id2, _ := node.ReadPeerID(dir); id2 != id1 {
		t.Errorf("--force changed the peer ID")
	}
}

// TestE2EPrivateNetworkByDefault: a node initialised with no network
// flags has a key of its own. A node given a copy of it (--psk-file)
// replicates with it; a node with another key, and one made with --open,
// never connect to it and see none of its data, nor it theirs. The open
// node warns at start that anyone can join and how to close it.
func TestE2EPrivateNetworkByDefault(t *testing.T) {
	defer testutil.FailOnPanic(t)
	root := t.TempDir()
	start := func(name string, opts node.InitOptions, nodeOpts ...node.Option) *node.Node {
		t.Helper()
		dir := filepath.Join(root, name)
		opts.Settings = node.Settings{Env: nodetest.Env, NodeID: name, PSKFile: opts.PSKFile,
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0", NoMDNS: true, NoDHT: true}
		if _, err := node.Init(dir, opts); err != nil {
			t.Fatal(err)
		}
		return nodetest.Open(t, dir, nodeOpts...)
	}
	a := start("a", node.InitOptions{})
	friend := start("friend", node.InitOptions{Settings: node.Settings{PSKFile: filepath.Join(a.Dir(), api.SwarmKeyFile)}})
	stranger := start("stranger", node.InitOptions{})
	var openLog syncBuffer
	open := start("open", node.InitOptions{OpenNetwork: true},
		node.WithLogger(slog.New(slog.NewTextHandler(&openLog, &slog.HandlerOptions{Level: slog.LevelWarn}))))

	ctx := context.Background()
	for _, other := range []*node.Node{friend, stranger, open} {
		// Both ways: a dials them, they dial a.
		if _, err := a.Client().AddPeer(ctx, other.P2P().Addrs()[0].String()); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Client().AddPeer(ctx, a.P2P().Addrs()[0].String()); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*node.Node{a, stranger, open} {
		if err := n.Client().Put(ctx, "from/"+n.NodeID(), []byte("secret")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 15*time.Second, "a's write on the node sharing its key", func() bool {
		v, err := friend.Client().Get(ctx, "from/a")
		return err == nil && string(v) == "secret"
	})
	has := func(n *node.Node, key string) bool {
		_, err := n.Client().Get(ctx, key)
		return err == nil
	}
	connected := func(x, y *node.Node) bool {
		for _, p := range x.P2P().Peers() {
			if p.ID == y.PeerID() && p.Connected {
				return true
			}
		}
		return false
	}
	testutil.Neverf(t, 2*time.Second, func() bool {
		return has(stranger, "from/a") || has(open, "from/a") || has(a, "from/stranger") || has(a, "from/open") ||
			connected(a, stranger) || connected(stranger, a) || connected(a, open) || connected(open, a)
	}, "a node with another key, or none, connected to a or exchanged data with it")

	if a.Config().OpenNetwork || open.Config().PSKFile != "" || !open.Config().OpenNetwork {
		t.Errorf("configs: a %+v, open %+v", a.Config(), open.Config())
	}
	if w := openLog.String(); !strings.Contains(w, "level=WARN") || !strings.Contains(w, "network is open") || !strings.Contains(w, "--force --psk") {
		t.Errorf("the open node did not warn that its network is open and how to close it; log:\n%s", w)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
