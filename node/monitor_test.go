package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/internal/version"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/nodestate/monitor"
)

// clusterState reports what a node sees of another node (by node ID).
func clusterState(t *testing.T, n *node.Node, node string) (api.NodeView, bool) {
	t.Helper()
	cs, err := n.Client().ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cs.Nodes {
		if v.NodeID == node {
			return v, true
		}
	}
	return api.NodeView{}, false
}

func TestClusterStatusStatesAndLeave(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := nodetest.Cluster(t, 3)
	for _, n := range nodes {
		for _, m := range nodes {
			if m == n {
				continue
			}
			testutil.Eventually(t, 20*time.Second, n.NodeID()+" sees "+m.NodeID()+" ACTIVE and Connected", func() bool {
				v, ok := clusterState(t, n, m.NodeID())
				return ok && v.State == nodestate.StateActive && v.Health == nodestate.HealthConnected && v.LastSeen != nil
			})
		}
	}
	cs, err := nodes[0].Client().ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cs.Mode != "cluster" || cs.NodeCount != 3 || len(cs.Nodes) != 3 || cs.NodeID != "node1" {
		t.Fatalf("cluster status: %+v", cs)
	}
	self, ok := cs.Self()
	if !ok || self.NodeID != "node1" || self.State != nodestate.StateActive || len(self.Addrs) == 0 {
		t.Errorf("self row: %+v", self)
	}

	// node1 samples node2's counters once a tick: a first sample taken
	// after the write below would hold it already and show no rate, so
	// wait for one before.
	testutil.Eventually(t, 20*time.Second, "node1's first sample of node2", func() bool {
		h, err := nodes[0].Client().ClusterHistory(context.Background())
		return err == nil && len(h.Nodes["node2"]) > 0
	})
	// Writes on node2 show in its counters as node1 sees them.
	if _, err := nodes[1].Entities().Create(context.Background(), "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "node1 sees node2's write counter", func() bool {
		v, _ := clusterState(t, nodes[0], "node2")
		return v.WritesOut > 0
	})

	// The charts' samples: every node has some, and node2's writes show.
	testutil.Eventually(t, 20*time.Second, "node1's history of node2's writes", func() bool {
		h, err := nodes[0].Client().ClusterHistory(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Nodes["node1"]) == 0 || len(h.Nodes["node3"]) == 0 {
			return false
		}
		for _, s := range h.Nodes["node2"] {
			if s.W > 0 {
				return true
			}
		}
		return false
	})

	// A graceful stop: node3 says goodbye, the others show LEAVING or
	// LEFT, and LEFT once it is gone.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "node1 sees node3 LEFT", func() bool {
		v, ok := clusterState(t, nodes[0], "node3")
		return ok && v.State == nodestate.StateLeft
	})
	ev, err := nodes[0].Client().ClusterEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sawLeft bool
	for _, tr := range ev.Transitions {
		if tr.Node == "node3" && tr.To == string(nodestate.StateLeft) && !tr.Time.IsZero() {
			sawLeft = true
		}
	}
	if !sawLeft {
		t.Errorf("no LEFT transition in %+v", ev.Transitions)
	}
	var sawElected bool
	for _, c := range ev.Leadership {
		sawElected = sawElected || c.Group == "cluster" && c.Leader == "node1" && c.Reason == "elected"
	}
	if !sawElected {
		t.Errorf("the cluster's election is not among the changes: %+v", ev.Leadership)
	}

	// Removing node3 forgets it: it is gone from the table.
	if err := nodes[0].Client().RemovePeer(context.Background(), nodes[2].PeerID().String()); err != nil {
		t.Fatal(err)
	}
	if _, ok := clusterState(t, nodes[0], "node3"); ok {
		t.Error("node3 still in node1's table after remove")
	}
}

// TestNodeStatesPartition cuts a node off: the other sees it SUSPECT,
// then DEAD and Disconnected, and ACTIVE and Connected after the heal.
func TestNodeStatesPartition(t *testing.T) {
	defer testutil.FailOnPanic(t)
	root := t.TempDir()
	fast := node.WithPeerStateConfig(nodestate.PeerStateConfig{SuspectAfter: 1500 * time.Millisecond, DeadAfter: 3 * time.Second})
	var nodes []*node.Node
	for i := 1; i <= 2; i++ {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		nodetest.Init(t, dir, fmt.Sprintf("node%d", i))
		nodes = append(nodes, nodetest.Open(t, dir, fast))
	}
	nodetest.Connect(t, nodes)
	a, b := nodes[0], nodes[1]
	sees := func(state nodestate.NodeState, health nodestate.SyncHealth) func() bool {
		return func() bool {
			v, ok := clusterState(t, a, "node2")
			return ok && v.State == state && v.Health == health
		}
	}
	testutil.Eventually(t, 20*time.Second, "node2 ACTIVE", sees(nodestate.StateActive, nodestate.HealthConnected))
	a.P2P().Block(b.PeerID())
	b.P2P().Block(a.PeerID())
	testutil.Eventually(t, 20*time.Second, "node2 SUSPECT or DEAD", func() bool {
		v, _ := clusterState(t, a, "node2")
		return v.State == nodestate.StateSuspect || v.State == nodestate.StateDead
	})
	testutil.Eventually(t, 20*time.Second, "node2 DEAD and Disconnected", sees(nodestate.StateDead, nodestate.HealthDisconnected))
	text, err := a.Client().Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, text, "starling_peers", map[string]string{"state": "DEAD"}); v != 1 {
		t.Errorf("starling_peers{state=DEAD} = %v", v)
	}
	a.P2P().Unblock(b.PeerID())
	b.P2P().Unblock(a.PeerID())
	testutil.Eventually(t, 30*time.Second, "node2 ACTIVE again", sees(nodestate.StateActive, nodestate.HealthConnected))
	ev, err := a.Client().ClusterEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, tr := range ev.Transitions {
		if tr.Node == "node2" && tr.What == "state" {
			path = append(path, tr.To)
		}
	}
	if got := strings.Join(path, " "); !strings.Contains(got, "DEAD") || !strings.HasSuffix(got, "ACTIVE") {
		t.Errorf("node2's states on node1: %s", got)
	}
}

// TestReconnectGreetsDirectly: a connection between two nodes that hear
// each other on time (through a third) brings each the other's report
// over a direct stream, not on the topic, which would reach every node
// (nodestate/monitor/greet.go). TestNodeStatesPartition covers a peer
// that was not on time: its report is published.
func TestReconnectGreetsDirectly(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := nodetest.Cluster(t, 3)
	a, b := nodes[0], nodes[1]
	for _, n := range nodes {
		for _, m := range nodes {
			if m != n {
				testutil.Eventually(t, 20*time.Second, n.NodeID()+" sees "+m.NodeID()+" ACTIVE", func() bool {
					v, ok := clusterState(t, n, m.NodeID())
					return ok && v.State == nodestate.StateActive
				})
			}
		}
	}
	direct := func(n *node.Node) uint64 {
		for _, tr := range n.P2P().Traffic() {
			if tr.Source == "stream:nodestate/report/1" {
				return tr.BytesIn
			}
		}
		return 0
	}
	before := direct(b)
	a.P2P().Block(b.PeerID())
	testutil.Eventually(t, 20*time.Second, "node1 disconnected from node2", func() bool {
		v, ok := clusterState(t, a, "node2")
		return ok && v.Health != nodestate.HealthConnected
	})
	// node3 still forwards node2's reports: node1 hears it on time.
	if v, _ := clusterState(t, a, "node2"); v.State != nodestate.StateActive {
		t.Fatalf("node2 is %s on node1 while node3 forwards its reports", v.State)
	}
	a.P2P().Unblock(b.PeerID())
	testutil.Eventually(t, 20*time.Second, "node1's report reaches node2 over a direct stream", func() bool {
		return direct(b) > before
	})
}

func TestMetricsServesDocumentedSeries(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := nodetest.Cluster(t, 2)
	ctx := context.Background()
	c := nodes[0].Client()
	// A write through the API (timed), and one from node2 (replicated).
	if err := c.Put(ctx, "m/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Entities().Create(ctx, "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "node2 has /Plant", func() bool {
		_, err := nodes[1].Entities().Get("/Plant")
		return err == nil
	})
	if _, err := nodes[1].Entities().Set(ctx, "/Plant", "temp", entity.Int(21)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "node1 counts a replicated write", func() bool {
		text, err := c.Metrics(ctx)
		return err == nil && metricValue(t, text, "starling_replicated_writes_total", nil) >= 1
	})
	testutil.Eventually(t, 30*time.Second, "a cluster leader", func() bool {
		return nodes[0].Election().Leader(election.ClusterGroup).HasLeader()
	})
	testutil.Eventually(t, 10*time.Second, "a round trip measured", func() bool {
		text, err := c.Metrics(ctx)
		return err == nil && strings.Contains(text, "starling_peer_rtt_seconds{")
	})
	// node2's report reaches node1 shortly after they connect (the one
	// at its start went out before): wait for it rather than assume it.
	testutil.Eventually(t, 10*time.Second, "node1 heard node2's report", func() bool {
		text, err := c.Metrics(ctx)
		return err == nil && strings.Contains(text, "starling_peer_last_seen_seconds{")
	})
	text, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for _, d := range monitor.MetricsDoc {
		f, ok := fams[d.Name]
		if !ok {
			t.Errorf("documented series %s missing", d.Name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != d.Type {
			t.Errorf("%s: type %s, documented %s", d.Name, got, d.Type)
		}
	}
	checkDeployNames(t, fams)
	var libp2p bool
	for name := range fams {
		libp2p = libp2p || strings.HasPrefix(name, "libp2p_")
	}
	if !libp2p {
		t.Error("no libp2p_* series")
	}
	b := version.Get()
	if v := metricValue(t, text, "starling_build_info", map[string]string{"version": b.Version, "goversion": b.GoVersion,
		"crdt_version": b.Deps["github.com/ipfs/go-ds-crdt"]}); v != 1 {
		t.Errorf("starling_build_info{version=%q} = %v, want 1", b.Version, v)
	}
	peer2 := map[string]string{"node_id": "node2", "peer_id": nodes[1].PeerID().String()}
	if v := metricValue(t, text, "starling_peer_last_seen_seconds", peer2); v < 0 || v > 10 {
		t.Errorf("starling_peer_last_seen_seconds{node2} = %v, want a recent report", v)
	}
	if v := metricValue(t, text, "starling_peer_lag", peer2); v < 0 {
		t.Errorf("starling_peer_lag{node2} missing")
	}
	if v := metricValue(t, text, "starling_writes_total", nil); v < 1 {
		t.Errorf("starling_writes_total = %v", v)
	}
	if v := metricValue(t, text, "starling_sync_phase", map[string]string{"phase": "ACTIVE"}); v != 1 {
		t.Errorf("sync phase ACTIVE = %v", v)
	}
	if v := metricValue(t, text, "starling_election_term", map[string]string{"group": "cluster"}); v < 1 {
		t.Errorf("cluster term = %v", v)
	}
	if !strings.Contains(text, `starling_write_duration_seconds_count{endpoint="kv"} 1`) {
		t.Errorf("kv write not timed:\n%s", grep(text, "starling_write_duration_seconds_count"))
	}
}

// metricValue returns the value of the first sample of name whose labels
// include want (-1 if none).
func metricValue(t *testing.T, text, name string, want map[string]string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestWrongTokenServesNothing(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := t.TempDir()
	nodetest.Init(t, dir, "node1")
	n := nodetest.Open(t, dir)
	base := "http://" + n.APIAddr()
	for _, path := range []string{"/metrics", "/v1/cluster/status", "/v1/cluster/history", "/v1/cluster/events", "/ui/", "/ui/app.js", "/v1/status", "/v1/watch"} {
		for _, auth := range []string{"", "Bearer wrong"} {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := noRedirect(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if path == "/ui/" && auth == "" {
				// A page without a session: sent to the login page.
				if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
					t.Errorf("GET /ui/ with no auth: %d %s, want a redirect to /ui/login", resp.StatusCode, resp.Header.Get("Location"))
				}
			} else if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s (auth %q): %d, want 401", path, auth, resp.StatusCode)
			}
			for _, leak := range []string{"node1", "starling_", "EventSource"} {
				if strings.Contains(string(b), leak) {
					t.Errorf("GET %s (auth %q) leaks %q: %s", path, auth, leak, b)
				}
			}
		}
	}
	// And with the token, the same client gets the data.
	if _, err := n.Client().Metrics(context.Background()); err != nil {
		t.Error(err)
	}
	bad := api.NewClient(n.APIAddr(), "wrong")
	if _, err := bad.ClusterStatus(context.Background()); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("cluster status with a wrong token: %v", err)
	}
}
