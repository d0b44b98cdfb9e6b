package main

// Election CLI tests: election ls/status/watch, cluster status and lead,
// against real nodes in this process (libp2p on 127.0.0.1, static peers,
// fast heartbeats) and real child processes.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// electionNodes starts k connected nodes node1..nodek and waits until
// they agree that node1 leads the cluster.
func electionNodes(t *testing.T, k int) []*node.Node {
	t.Helper()
	// Fast heartbeats, but a tolerant timeout: these tests check that
	// nothing flaps, and this machine may stall a process for a few
	// hundred ms under load.
	fast := node.WithElectionConfig(func(c *election.Config) {
		c.Interval, c.Timeout, c.Warmup, c.LeaveLinger = 50*time.Millisecond, 2*time.Second, time.Second, 20*time.Millisecond
	})
	nodes := nodetest.Cluster(t, k, fast)
	testutil.Eventually(t, 15*time.Second, "node1 leads the cluster on every node", func() bool {
		for _, n := range nodes {
			if n.Election().Leader(election.ClusterGroup).Leader != "node1" {
				return false
			}
		}
		return true
	})
	return nodes
}

func TestElectionCLI(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := electionNodes(t, 2)
	d1, d2 := nodes[0].Dir(), nodes[1].Dir()

	r := runApp(t, "", "cluster", "status", "--data", d2, "--json")
	var ci api.ClusterInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ci) != nil || ci.Leader.Leader != "node1" || ci.IsLeader || ci.NodeID != "node2" {
		t.Fatalf("cluster status --json: %+v -> %+v", r, ci)
	}
	r = runApp(t, "", "cluster", "status", "--data", d1)
	// (The term is 1 unless a node finished warming up before the test
	// connected the nodes: then it led alone for a moment.)
	if r.code != 0 || !strings.Contains(r.stdout, "node1 (this node), term ") || !strings.Contains(r.stdout, "node2") {
		t.Errorf("cluster status:\n%s%s", r.stdout, r.stderr)
	}

	// A service group joined by node2 through the API.
	if _, err := nodes[1].Client().JoinGroup(context.Background(), "db", api.JoinRequest{Available: true}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "node1 sees db", func() bool {
		return nodes[0].Election().Leader("db").Leader == "node2"
	})
	r = runApp(t, "", "election", "ls", "--data", d1, "--json")
	var gs []api.ElectionGroup
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &gs) != nil || len(gs) != 2 || gs[1].Name != "db" || gs[1].Leader.Leader != "node2" {
		t.Errorf("election ls --json: %+v -> %+v", r, gs)
	}
	r = runApp(t, "", "election", "ls", "--data", d1)
	if r.code != 0 || !strings.Contains(r.stdout, "cluster") || !strings.Contains(r.stdout, "db") {
		t.Errorf("election ls:\n%s%s", r.stdout, r.stderr)
	}
	r = runApp(t, "", "election", "status", "--data", d1, "db")
	for _, want := range []string{"group   db (service, LeaderOnly)", "leader  node2 on node node2, term 1", "LEADER"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("election status db lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	r = runApp(t, "", "election", "status", "--data", d1, "--json", "cluster")
	var g api.ElectionGroup
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &g) != nil || len(g.Members) != 2 || !g.Members[0].Alive || !g.Members[0].Available {
		t.Errorf("election status --json cluster: %+v -> %+v", r, g)
	}
	r = runApp(t, "", "election", "watch", "--data", d1, "--json", "--count", "1", "db")
	var ev api.ElectionEvent
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ev) != nil || ev.Leader != "node2" || ev.Type != "state" {
		t.Errorf("election watch --json --count 1: %+v -> %+v", r, ev)
	}

	// Watch in the background while node2's candidate leaves.
	ctx, cancel := context.WithCancel(context.Background())
	done, out, _ := runInBackground(ctx, "election", "watch", "--data", d1, "db")
	testutil.Eventually(t, 10*time.Second, "first watch line", func() bool { return strings.Contains(out.String(), "db: leader node2") })
	if err := nodes[1].Client().LeaveGroup(context.Background(), "db", "node2"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "watch shows the leave", func() bool { return strings.Contains(out.String(), "db: no leader (term 1)  [was node2, left]") })
	cancel()
	if res := <-done; res.code != 0 {
		t.Errorf("watch ended with %+v", res)
	}

	// A group with no candidate yet is waited for (issue 17: watch exited).
	ctx, cancel = context.WithCancel(context.Background())
	done, out, errb := runInBackground(ctx, "election", "watch", "--data", d1, "later")
	testutil.Eventually(t, 10*time.Second, "watch says it waits", func() bool { return strings.Contains(errb.String(), "group later has no candidate yet; waiting") })
	if _, err := nodes[1].Client().JoinGroup(context.Background(), "later", api.JoinRequest{Available: true}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "watch shows the new group's leader", func() bool { return strings.Contains(out.String(), "later: leader node2") })
	cancel()
	if res := <-done; res.code != 0 {
		t.Errorf("watch of a later group ended with %+v", res)
	}

	// Bad input.
	for _, tt := range []struct {
		args    []string
		code    int
		mention string
	}{
		{[]string{"election", "status", "--data", d1, "nope"}, 1, `no such group: "nope"`},
		{[]string{"election", "status", "--data", d1, "a/b"}, exitUsage, "group name"},
		{[]string{"election", "status", "--data", d1}, exitUsage, "missing GROUP"},
		{[]string{"election", "watch", "--data", d1, "--count", "-1", "db"}, exitUsage, "--count"},
		{[]string{"election", "frob", "--data", d1}, exitUsage, `"frob"`},
		{[]string{"election"}, exitUsage, "ls, status or watch"},
		{[]string{"cluster", "frob"}, exitUsage, "use status"},
		{[]string{"lead", "--data", d1, "--", "sleep", "1"}, exitUsage, "--group"},
		{[]string{"lead", "--data", d1, "--group", "g"}, exitUsage, "missing CMD"},
		{[]string{"lead", "--data", d1, "--group", "g", "--mode", "Sometimes", "--", "sleep", "1"}, exitUsage, "LeaderOnly or AllWarm"},
		{[]string{"lead", "--data", d1, "--group", "g", "--mode", "AllWarm", "--kind", "service", "--", "sleep", "1"}, exitUsage, "endpoints"},
		{[]string{"lead", "--data", d1, "--group", "g/x", "--", "sleep", "1"}, exitUsage, "group name"},
		{[]string{"lead", "--data", d1, "--group", "g", "--", "/no/such/command"}, 1, `cannot run "/no/such/command"`},
		{[]string{"lead", "--data", d1, "--group", "g", "--", "no-such-command-xyz"}, 1, "not found"},
		{[]string{"lead", "--data", d1, "--group", election.ClusterGroup, "--", "sleep", "1"}, 1, "reserved"},
	} {
		r := runApp(t, "", tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.mention) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tt.args, r.code, r.stderr, tt.code, tt.mention)
		}
	}
	// None of the failed leads joined anything.
	if _, err := nodes[0].Election().Group("g"); err == nil {
		t.Error("a failed lead left a candidate in group g")
	}
}

// markers lists the candidates whose child runs (marker files in dir).
func markers(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestLeadRunsExactlyOneChild(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := electionNodes(t, 3)
	marks := t.TempDir()
	// The child marks itself running as <candidate>.<term> and removes
	// the mark on SIGTERM.
	// (The trap first: a SIGTERM right after the mark must remove it.)
	script := fmt.Sprintf(`m=%q/"$STARLING_CANDIDATE.$STARLING_LEADER_TERM.$STARLING_GROUP"; trap 'rm -f "$m"; exit 0' TERM; echo $$ > "$m"; while :; do sleep 0.02; done`, marks)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var dones []<-chan result
	var errs []*syncBuffer
	for _, n := range nodes {
		done, _, errb := runInBackground(ctx, "lead", "--data", n.Dir(), "--group", "worker", "--grace", "2s", "--", "sh", "-c", script)
		dones, errs = append(dones, done), append(errs, errb)
		// One at a time: urfave/cli's global help flag makes two apps
		// parsing flags at once in one process a data race.
		testutil.Eventually(t, 10*time.Second, n.NodeID()+"'s lead joined", func() bool {
			_, err := n.Election().Candidate("worker", n.NodeID())
			return err == nil
		})
	}
	logs := func() string {
		var b strings.Builder
		for i, e := range errs {
			fmt.Fprintf(&b, "--- lead on node%d:\n%s", i+1, e.String())
		}
		return b.String()
	}
	onlyOne := func(prefix string) bool {
		m := markers(t, marks)
		return len(m) == 1 && strings.HasPrefix(m[0], prefix)
	}
	// Stable: every node knows the three candidates, eligible, and agrees
	// that node1 leads.
	testutil.Eventually(t, 15*time.Second, "stable leadership of worker", func() bool {
		for _, n := range nodes {
			g, err := n.Election().Group("worker")
			if err != nil || len(g.Members) != 3 || g.Leader.Leader != "node1" {
				return false
			}
			for _, m := range g.Members {
				if !m.Eligible {
					return false
				}
			}
		}
		return true
	})
	testutil.Eventually(t, 15*time.Second, "node1's child runs alone", func() bool { return onlyOne("node1.") })
	// Exactly one child at every sample for a second.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := markers(t, marks); len(m) != 1 {
			t.Fatalf("%d children running: %v\n%s", len(m), m, logs())
		}
	}
	if m := markers(t, marks); !strings.HasSuffix(m[0], ".worker") {
		t.Errorf("marker %q: STARLING_GROUP not passed", m[0])
	}

	// Kill node1 (cut off first, so no goodbye gets out): its lead loses
	// the node and stops the child; node2's starts one once the others
	// time out. lead is not a fence (the term is): if stopping the old
	// child takes longer than the failure timeout (a loaded machine), the
	// two overlap briefly. Any overlap must end quickly.
	for _, o := range nodes[1:] {
		o.P2P().Block(nodes[0].PeerID())
		nodes[0].P2P().Block(o.PeerID())
	}
	start := time.Now()
	if err := nodes[0].Close(); err != nil {
		t.Fatal(err)
	}
	var overlapSince time.Time
	var overlap time.Duration
	for !onlyOne("node2.") {
		if m := markers(t, marks); len(m) > 1 {
			if overlapSince.IsZero() {
				overlapSince = time.Now()
			}
			if time.Since(overlapSince) > 3*time.Second {
				t.Fatalf("%d children running for 3s: %v\n%s", len(m), m, logs())
			}
		} else if !overlapSince.IsZero() {
			overlap += time.Since(overlapSince)
			overlapSince = time.Time{}
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("node2's child did not take over: %v\n%s", markers(t, marks), logs())
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("FIGURE lead failover: node2's child running %v after node1 was killed; overlap %v", time.Since(start), overlap)
	// Stable again: exactly one child, node2's, for a second.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !onlyOne("node2.") {
			t.Fatalf("after the failover: %v\n%s", markers(t, marks), logs())
		}
	}
	term := strings.Split(markers(t, marks)[0], ".")[1]
	if term == "1" || term == "" {
		t.Errorf("node2's child runs with STARLING_LEADER_TERM %q, want a term above node1's", term)
	}

	// Stop every lead: children stopped, candidates left, exit 0.
	cancel()
	for i, d := range dones {
		select {
		case r := <-d:
			if r.code != 0 {
				t.Errorf("lead on node%d: exit %d\n%s", i+1, r.code, r.stderr)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("lead on node%d did not stop\n%s", i+1, logs())
		}
	}
	if m := markers(t, marks); len(m) != 0 {
		t.Errorf("children still running after lead stopped: %v\n%s", m, logs())
	}
	// Every lead left: no live candidate (dead node1 stays listed, not alive).
	testutil.Eventually(t, 5*time.Second, "no live candidate in worker", func() bool {
		g, err := nodes[1].Election().Group("worker")
		if err != nil {
			return true
		}
		for _, m := range g.Members {
			if m.Alive {
				return false
			}
		}
		return true
	})
}

func TestLeadExitsWithChildStatusAndHandsOver(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := electionNodes(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	marks := t.TempDir()
	// node1's child exits with status 3 once node2's lead has joined;
	// node2's child then runs until the test ends.
	flag := filepath.Join(marks, "go")
	done1, _, _ := runInBackground(ctx, "lead", "--data", nodes[0].Dir(), "--group", "job", "--",
		"sh", "-c", fmt.Sprintf(`while [ ! -e %q ]; do sleep 0.02; done; exit 3`, flag))
	testutil.Eventually(t, 15*time.Second, "node1 leads job", func() bool { return nodes[1].Election().Leader("job").Leader == "node1" })
	done2, _, _ := runInBackground(ctx, "lead", "--data", nodes[1].Dir(), "--group", "job", "--",
		"sh", "-c", fmt.Sprintf(`touch %q/node2; trap 'exit 0' TERM; while :; do sleep 0.02; done`, marks))
	testutil.Eventually(t, 15*time.Second, "node2 joined job", func() bool {
		g, err := nodes[0].Election().Group("job")
		return err == nil && len(g.Members) == 2
	})
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done1:
		if r.code != 3 || !strings.Contains(r.stderr, "exited with status 3") {
			t.Errorf("lead exit %d, stderr %q; want 3", r.code, r.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("lead did not exit with its command")
	}
	testutil.Eventually(t, 5*time.Second, "node2's child runs", func() bool {
		_, err := os.Stat(filepath.Join(marks, "node2"))
		return err == nil
	})
	cancel()
	<-done2
}

func TestLeadAllWarmRunsOnEveryCandidate(t *testing.T) {
	defer testutil.FailOnPanic(t)
	nodes := electionNodes(t, 2)
	marks := t.TempDir()
	script := fmt.Sprintf(`m=%q/"$STARLING_CANDIDATE"; trap 'rm -f "$m"; exit 0' TERM; touch "$m"; while :; do sleep 0.02; done`, marks)
	ctx, cancel := context.WithCancel(context.Background())
	var dones []<-chan result
	for _, n := range nodes {
		done, _, _ := runInBackground(ctx, "lead", "--data", n.Dir(), "--group", "api", "--mode", "AllWarm", "--", "sh", "-c", script)
		dones = append(dones, done)
		testutil.Eventually(t, 10*time.Second, n.NodeID()+"'s lead joined", func() bool {
			_, err := n.Election().Candidate("api", n.NodeID())
			return err == nil
		})
	}
	testutil.Eventually(t, 15*time.Second, "a child on both nodes", func() bool { return len(markers(t, marks)) == 2 })
	g, err := nodes[0].Election().Group("api")
	if err != nil || g.Kind != election.KindEndpoint || g.Mode != election.ModeAllWarm || g.Leader.Leader != "node1" {
		t.Errorf("group %+v, %v", g, err)
	}
	cancel()
	for _, d := range dones {
		if r := <-d; r.code != 0 {
			t.Errorf("lead: exit %d: %s", r.code, r.stderr)
		}
	}
	if m := markers(t, marks); len(m) != 0 {
		t.Errorf("children left running: %v", m)
	}
}

// TestLeadWaitsForTheNode: lead started before its node waits for it
// (issue 17: it exited), runs the command once the node is up, stops it
// and waits again when the node goes away (with backoff), and stops at
// once on SIGTERM (ctx) while waiting.
func TestLeadWaitsForTheNode(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "n")
	nodetest.Init(t, dir, "node1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, out, errb := runInBackground(ctx, "lead", "--data", dir, "--group", "svc", "--grace", "1s", "--",
		"sh", "-c", "echo child-started; exec sleep 600")
	testutil.Eventually(t, 10*time.Second, "lead waits for the node", func() bool {
		select {
		case r := <-done:
			t.Fatalf("lead ended before its node was up: %+v", r)
		default:
		}
		return strings.Count(errb.String(), "waiting for the node") >= 2
	})
	fast := node.WithElectionConfig(func(c *election.Config) {
		c.Interval, c.Timeout, c.Warmup, c.LeaveLinger = 50*time.Millisecond, 2*time.Second, 200*time.Millisecond, 20*time.Millisecond
	})
	n := nodetest.Open(t, dir, fast)
	testutil.Eventually(t, 20*time.Second, "the command runs once the node is up", func() bool {
		return strings.Contains(out.String(), "child-started")
	})
	before := strings.Count(errb.String(), "waiting for the node")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "lead stops the command and waits again", func() bool {
		return strings.Contains(errb.String(), "stopping sh") && strings.Count(errb.String(), "waiting for the node") > before
	})
	stopped := time.Now()
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("lead on SIGTERM while waiting: %+v", r)
		}
		if d := time.Since(stopped); d > 2*time.Second {
			t.Errorf("lead took %s to stop while waiting", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lead did not stop on SIGTERM while waiting for the node")
	}
}
