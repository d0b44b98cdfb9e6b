package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/internal/version"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/nodestate"
)

func TestClusterCLI(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := electionNodes(t, 3)
	d1 := nodes[0].Dir()
	testutil.Eventually(t, 20*time.Second, "node1 sees node2 and node3 ACTIVE", func() bool {
		r := runApp(t, "", "cluster", "peers", "--data", d1, "--json")
		var ps []api.NodeView
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ps) != nil {
			return false
		}
		active := 0
		for _, p := range ps {
			if p.State == nodestate.StateActive && p.Health == nodestate.HealthConnected {
				active++
			}
		}
		return active == 2
	})

	r := runApp(t, "", "cluster", "status", "--data", d1)
	for _, want := range []string{"mode", "cluster (3 nodes)", "node1 (this node), term ", "node2", "node3", "ACTIVE", "Connected", "sync", "WRITES", "MSGS IN", "LAG"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("cluster status lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	r = runApp(t, "", "cluster", "status", "--data", d1, "--json")
	var cs api.ClusterStatus
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &cs) != nil || cs.Mode != "cluster" || cs.NodeCount != 3 || cs.Leader.Leader != "node1" {
		t.Fatalf("cluster status --json: %+v -> %+v", r, cs)
	}
	r = runApp(t, "", "cluster", "peers", "--data", d1)
	if r.code != 0 || !strings.Contains(r.stdout, nodes[1].PeerID().String()) || !strings.Contains(r.stdout, "node3") {
		t.Errorf("cluster peers:\n%s%s", r.stdout, r.stderr)
	}
	// Every peer reports its build, so mixed versions show.
	build := version.Get().String()
	if !strings.Contains(r.stdout, "VERSION") || !strings.Contains(r.stdout, build) {
		t.Errorf("cluster peers lacks the VERSION column with %q:\n%s", build, r.stdout)
	}
	r = runApp(t, "", "cluster", "peers", "--data", d1, "--json")
	var vs []api.NodeView
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || len(vs) != 2 {
		t.Fatalf("cluster peers --json: %v: %s", err, r.stdout)
	}
	for _, p := range vs {
		if p.Version != build {
			t.Errorf("peer %s reports version %q, want %q", p.NodeID, p.Version, build)
		}
	}
	r = runApp(t, "", "status", "--data", d1)
	if !strings.Contains(r.stdout, "version") || !strings.Contains(r.stdout, build) {
		t.Errorf("status lacks the version %q:\n%s", build, r.stdout)
	}

	// remove: by node ID; then it is unknown. A name nobody has is a
	// clear error with exit code 1.
	r = runApp(t, "", "cluster", "remove", "--data", d1, "node3")
	if r.code != 0 || r.stdout != "removed node3 ("+nodes[2].PeerID().String()+")\n" {
		t.Fatalf("cluster remove node3: %+v", r)
	}
	r = runApp(t, "", "cluster", "remove", "--data", d1, "--json", "node3")
	if r.code != 1 || !strings.Contains(r.stderr, `node "node3" is not known to this node (known: node2)`) {
		t.Errorf("cluster remove node3 again: %+v", r)
	}
	r = runApp(t, "", "cluster", "remove", "--data", d1, "node1")
	if r.code != 1 || !strings.Contains(r.stderr, "the node you are talking to") {
		t.Errorf("cluster remove self: %+v", r)
	}
	r = runApp(t, "", "cluster", "remove", "--data", d1, "garbage")
	if r.code != 1 || !strings.Contains(r.stderr, `node "garbage" is not known`) {
		t.Errorf("cluster remove garbage: %+v", r)
	}
	// Not re-dialled: node1 stays without node3 (node3 still dials node1:
	// block it there so that only node1's side is tested).
	nodes[2].P2P().Block(nodes[0].PeerID())
	r = runApp(t, "", "cluster", "peers", "--data", d1, "--json")
	var ps []api.NodeView
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.NodeID == "node3" {
			t.Errorf("node3 still listed after remove: %+v", p)
		}
	}

	// add brings it back.
	nodes[2].P2P().Unblock(nodes[0].PeerID())
	addr := nodes[2].P2P().Addrs()[0].String()
	r = runApp(t, "", "cluster", "add", "--data", d1, "--wait", "20s", "--json", addr)
	var ar addResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ar) != nil || !ar.Connected || ar.ID != nodes[2].PeerID().String() {
		t.Fatalf("cluster add: %+v", r)
	}
	testutil.Eventually(t, 20*time.Second, "node1 sees node3 again", func() bool {
		cs, err := nodes[0].Client().ClusterStatus(context.Background())
		if err != nil {
			return false
		}
		for _, n := range cs.Nodes {
			if n.NodeID == "node3" && n.State == nodestate.StateActive {
				return true
			}
		}
		return false
	})

	// web prints a one-time login URL.
	r = runApp(t, "", "web", "--data", d1)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "http://"+nodes[0].APIAddr()+"/ui/login?code=") {
		t.Errorf("web: %+v", r)
	}
	// Usage errors.
	for _, args := range [][]string{{"cluster", "frob"}, {"cluster", "remove", "--data", d1}, {"cluster", "add", "--data", d1}} {
		if r := runApp(t, "", args...); r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, r.code, exitUsage, r.stderr)
		}
	}
}

func TestProgressLine(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		p    nodestate.SyncProgress
		now  time.Time
		want []string
	}{
		{nodestate.SyncProgress{Phase: nodestate.PhaseActive}, start, []string{"ACTIVE: holds the current state"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseActive, Transfers: 2}, start, []string{"2 state transfers"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseJoining, LastError: "no peer"}, start, []string{"JOINING", "last attempt: no peer"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseSyncing, Source: "node1", EntriesDone: 10, Started: start}, start.Add(time.Second),
			[]string{"SYNCING from node1: starting, 10 entries (0 B) received so far; the size of the copy is not known yet"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseSyncing, Source: "node1", EntriesDone: 50, EntriesTotal: 200, BytesDone: 4_000_000, BytesTotal: 16_000_000, Started: start},
			start.Add(10 * time.Second),
			[]string{"[=======>                      ]", " 25%", "50/200 entries", "4.0 MB/16.0 MB", "ETA 30s"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseSyncing, EntriesDone: 200, EntriesTotal: 200, Started: start}, start.Add(time.Minute),
			[]string{"[==============================]", "100%", "ETA <1s"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseSyncing, EntriesDone: 1, EntriesTotal: 7200, Started: start}, start.Add(time.Second),
			[]string{"ETA 1h59m"}},
		{nodestate.SyncProgress{Phase: nodestate.PhaseSyncing, EntriesTotal: 10}, start, []string{"  0%", "ETA -"}},
	}
	for _, c := range cases {
		got := progressLine(c.p, c.now)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v:\n%q lacks %q", c.p, got, w)
			}
		}
	}
}

func TestFollowSync(t *testing.T) {
	script := []nodestate.SyncProgress{
		{Phase: nodestate.PhaseJoining},
		{Phase: nodestate.PhaseSyncing, EntriesDone: 5, EntriesTotal: 10, Started: time.Now()},
		{Phase: nodestate.PhaseActive, Transfers: 1},
	}
	i := 0
	var out bytes.Buffer
	err := followSync(context.Background(), &out, time.Millisecond, func(context.Context) (nodestate.SyncProgress, error) {
		p := script[min(i, len(script)-1)]
		i++
		return p, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "JOINING") || !strings.Contains(lines[1], " 50%") || !strings.HasPrefix(lines[2], "ACTIVE") {
		t.Errorf("followSync printed:\n%s", out.String())
	}
	boom := errors.New("boom")
	if err := followSync(context.Background(), &out, time.Millisecond, func(context.Context) (nodestate.SyncProgress, error) {
		return nodestate.SyncProgress{}, boom
	}); !errors.Is(err, boom) {
		t.Errorf("error not passed on: %v", err)
	}
}

// TestClusterAddSave: `cluster add --save` keeps the peer in config.json,
// so that it survives a restart (the README says add "remembers");
// without --save the file is left alone and the output says so.
func TestClusterAddSave(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, _ := startEntityNode(t, "node1")
	id1, id2 := testutil.PeerID(t), testutil.PeerID(t)
	a1 := "/ip4/127.0.0.1/tcp/9/p2p/" + id1.String()
	a2 := "/ip4/127.0.0.1/tcp/9/p2p/" + id2.String()
	peers := func() []string {
		cfg, err := node.LoadConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Peers
	}
	before := peers()
	r := runApp(t, "", "cluster", "add", "--data", dir, a2)
	if r.code != 0 || !strings.Contains(r.stdout, "not saved") || len(peers()) != len(before) {
		t.Fatalf("add without --save: %+v, peers %v", r, peers())
	}
	r = runApp(t, "", "cluster", "add", a1, "--data", dir, "--save", "--json")
	var ar addResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ar) != nil || !ar.Saved || ar.ID != id1.String() {
		t.Fatalf("add --save: %+v", r)
	}
	if got := peers(); !slices.Contains(got, a1) || slices.Contains(got, a2) {
		t.Fatalf("config.json peers %v: want %s only added", got, a1)
	}
	// Another address of the same peer replaces the saved one.
	a1b := "/ip4/127.0.0.2/tcp/9/p2p/" + id1.String()
	if r := runApp(t, "", "cluster", "add", "--data", dir, "--save", a1b); r.code != 0 || !strings.Contains(r.stdout, "saved in config.json") {
		t.Fatalf("add --save again: %+v", r)
	}
	if got := peers(); !slices.Contains(got, a1b) || slices.Contains(got, a1) {
		t.Errorf("config.json peers %v: want %s in place of %s", got, a1b, a1)
	}
	if r := runApp(t, "", "config", "check", "--data", dir); r.code != 0 {
		t.Errorf("the saved config does not pass config check: %+v", r)
	}
	// remove forgets it for good: config.json too.
	if r := runApp(t, "", "cluster", "remove", "--data", dir, id1.String()); r.code != 0 {
		t.Fatalf("cluster remove: %+v", r)
	}
	if got := peers(); slices.Contains(got, a1b) {
		t.Errorf("config.json still has the removed peer: %v", got)
	}
}

// TestConnectedCell: cluster peers says how a peer is connected, or why
// it is not (a wrong key was a silent "no" and a JOINING state).
func TestConnectedCell(t *testing.T) {
	for _, tc := range []struct {
		v    api.NodeView
		want string
	}{
		{api.NodeView{Connected: true, Connection: "hole-punched"}, "hole-punched"},
		{api.NodeView{Connected: true, Connection: "relayed"}, "relayed"},
		{api.NodeView{Connected: true}, "yes"},
		{api.NodeView{Problem: "network-key"}, "no (network-key)"},
		{api.NodeView{}, "no"},
	} {
		if got := connectedCell(tc.v); got != tc.want {
			t.Errorf("connectedCell(%+v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	line := problemLine(api.NodeView{Problem: "network-key", DialError: "failed to dial:\n  * [/ip4/1.2.3.4/tcp/1] failed to negotiate security protocol: EOF"})
	if !strings.Contains(line, "swarm.key") || strings.Contains(line, "\n") {
		t.Errorf("problemLine = %q: want the key named, on one line", line)
	}
}
