package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
)

// fakeCluster answers GET /v1/cluster with a settable leader and age.
type fakeCluster struct {
	mu          sync.Mutex
	self        string
	leader      string
	sinceMS     int64
	unavailable bool
}

func (f *fakeCluster) set(leader string, since time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.sinceMS = leader, since.Milliseconds()
}

func (f *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/v1/cluster" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	fmt.Fprintf(w, `{"node_id":%q,"leader":{"group":"cluster","leader":%q,"term":3},"group":{"name":"cluster","since_ms":%d,"members":[{"id":%q,"local":true,"available":%v}]}}`,
		f.self, f.leader, f.sinceMS, f.self, !f.unavailable)
}

func fakeElectionHosts(t *testing.T, n int) ([]*Host, []*fakeCluster) {
	var hs []*Host
	var fs []*fakeCluster
	for k := 1; k <= n; k++ {
		f := &fakeCluster{self: hostName(k)}
		h := fakeHost(t, f)
		h.name, h.index = hostName(k), k
		hs, fs = append(hs, h), append(fs, f)
	}
	return hs, fs
}

func TestElectionChecker(t *testing.T) {
	hs, fs := fakeElectionHosts(t, 3)
	observe := func(c *electionChecker, m Moment, wait time.Duration) {
		m.Hosts = hs
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		c.Observe(ctx, m)
	}
	all := [][]string{{"n1", "n2", "n3"}}
	split := [][]string{{"n1"}, {"n2", "n3"}}

	// A partition: n1 alone leads itself, n2 and n3 elected n2 about
	// 700 ms after the cut; after the heal all agree on n1 again.
	// The hosts' clock is fixed: a failover is measured from what they
	// answer, not from how long the machine took to answer.
	clock := time.Now()
	now := func() time.Time { return clock }
	c := &electionChecker{now: now}
	cut := clock.Add(-5 * time.Second)
	fs[0].set("n1", 30*time.Second)
	fs[1].set("n2", 5*time.Second-700*time.Millisecond)
	fs[2].set("n2", 5*time.Second-650*time.Millisecond)
	observe(c, Moment{Label: "settled round 1", Since: cut, Nemeses: []string{"partition-halves"}, Components: split}, time.Second)
	healAt := clock.Add(-2 * time.Second)
	fs[0].set("n1", 30*time.Second)
	fs[1].set("n1", 1500*time.Millisecond)
	fs[2].set("n1", 1200*time.Millisecond)
	observe(c, Moment{Label: "healed round 1", Since: healAt, Components: all}, time.Second)
	observe(c, Moment{Label: "final", Since: time.Now(), Components: all}, time.Second)
	v := c.Check(CheckInput{})
	if !v.OK || v.Counts["leaders"] != 1 {
		t.Fatalf("partition and heal: %+v", v)
	}
	if f := v.Durations["failover"]; len(f) != 1 || f[0] != 700*time.Millisecond {
		t.Errorf("failover %v, want one of 700ms", f)
	}
	if h := v.Durations["leader-heal"]; len(h) != 1 || h[0] != 800*time.Millisecond {
		t.Errorf("heal %v, want one of 800ms (the last host)", h)
	}

	// Two leaders in one component after a heal: a violation.
	c = &electionChecker{}
	fs[2].set("n3", time.Second)
	observe(c, Moment{Label: "healed round 1", Since: time.Now(), Components: all}, 300*time.Millisecond)
	if v := c.Check(CheckInput{}); v.OK || v.Counts["leader-faults"] != 1 || !strings.Contains(strings.Join(v.Problems, " "), "n3→n3") {
		t.Errorf("split brain after a heal passed: %+v", v)
	}

	// The same during loss is only noted; a wrong leader under a clean
	// partition is a violation.
	c = &electionChecker{}
	observe(c, Moment{Label: "settled round 1", Since: time.Now(), Nemeses: []string{"loss"}, Components: all}, 300*time.Millisecond)
	if v := c.Check(CheckInput{}); !v.OK || len(v.Problems) != 1 {
		t.Errorf("flapping under loss: %+v", v)
	}
	c = &electionChecker{}
	observe(c, Moment{Label: "settled round 1", Since: time.Now(), Nemeses: []string{"isolate"}, Components: all}, 300*time.Millisecond)
	if v := c.Check(CheckInput{}); v.OK {
		t.Errorf("two leaders under isolate passed: %+v", v)
	}

	// n3 cut off still names n1, which it cannot reach: the election's
	// idle timeout (8 s here) has not passed since the cut, so it is only
	// noted; past it, a violation.
	alone := [][]string{{"n1", "n2"}, {"n3"}}
	fs[0].set("n1", 30*time.Second)
	fs[1].set("n1", 30*time.Second)
	fs[2].set("n1", 30*time.Second)
	c = &electionChecker{}
	observe(c, Moment{Label: "settled round 1", Since: time.Now().Add(-6 * time.Second), Nemeses: []string{"isolate"}, Components: alone}, 300*time.Millisecond)
	if v := c.Check(CheckInput{}); !v.OK || len(v.Problems) != 1 || !strings.Contains(v.Problems[0], "idle timeout") {
		t.Errorf("a cut-off host naming an unreachable leader within the idle timeout: %+v", v)
	}
	c = &electionChecker{}
	observe(c, Moment{Label: "settled round 1", Since: time.Now().Add(-9 * time.Second), Nemeses: []string{"isolate"}, Components: alone}, 300*time.Millisecond)
	if v := c.Check(CheckInput{}); v.OK {
		t.Errorf("a cut-off host naming an unreachable leader past the idle timeout passed: %+v", v)
	}

	// A paused n1 is not a candidate: n2 is expected.
	c = &electionChecker{}
	fs[1].set("n2", time.Second)
	fs[2].set("n2", time.Second)
	observe(c, Moment{Label: "settled round 1", Since: time.Now().Add(-3 * time.Second), Nemeses: []string{"pause"}, Components: all, Paused: []string{"n1"}}, time.Second)
	if v := c.Check(CheckInput{}); !v.OK || len(v.Durations["failover"]) != 1 {
		t.Errorf("failover from a paused leader: %+v", v)
	}
	// A node joining by state transfer is not a candidate: noted while
	// the run goes on, a failure at the end.
	c = &electionChecker{}
	fs[0].mu.Lock()
	fs[0].unavailable = true
	fs[0].mu.Unlock()
	fs[0].set("n2", time.Second)
	observe(c, Moment{Label: "healed round 1", Since: time.Now(), Components: all}, time.Second)
	if v := c.Check(CheckInput{}); !v.OK || len(v.Problems) != 1 {
		t.Errorf("n1 joining during a round: %+v", v)
	}
	observe(c, Moment{Label: "final", Since: time.Now(), Components: all}, time.Second)
	if v := c.Check(CheckInput{}); v.OK {
		t.Errorf("n1 still not available at the end passed: %+v", v)
	}
	// One that finishes its rebase within the final moment's deadline
	// passes: the moment waits for it, as for agreement.
	c = &electionChecker{}
	go func() { // n1's rebase ends 300 ms in; it is elected
		time.Sleep(300 * time.Millisecond)
		fs[0].mu.Lock()
		fs[0].unavailable = false
		fs[0].mu.Unlock()
		for _, f := range fs {
			f.set("n1", time.Second)
		}
	}()
	observe(c, Moment{Label: "final", Since: time.Now(), Components: all}, 3*time.Second)
	if v := c.Check(CheckInput{}); !v.OK {
		t.Errorf("n1 available 300 ms into the final moment failed: %+v", v)
	}
	if v := (&electionChecker{}).Check(CheckInput{}); v.OK {
		t.Error("a checker that never observed passed")
	}
}

// TestFalseFailovers: a "failed" change counts as false unless a fault
// window holding at that time had the previous leader down, paused or on
// the other side from the host that saw it; hosts seeing the same
// failover count once.
func TestFalseFailovers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	change := func(host, prev, leader string, term uint64, s int, reason string) seenChange {
		return seenChange{host: host, LeadershipChange: api.LeadershipChange{Group: "cluster", Previous: prev, Leader: leader, Term: term, Reason: reason, Time: at(s)}}
	}
	windows := []FaultWindow{
		{From: at(10), To: at(30), Down: []string{"n1"}, Components: [][]string{{"n1", "n2", "n3"}}},
		{From: at(40), To: at(60), Components: [][]string{{"n1"}, {"n2", "n3"}}},
		{From: at(70), To: at(80), Paused: []string{"n2"}, Components: [][]string{{"n1", "n2", "n3"}}},
	}
	tests := []struct {
		name    string
		changes []seenChange
		want    int
	}{
		{"killed leader", []seenChange{change("n2", "n1", "n2", 2, 15, "failed"), change("n3", "n1", "n2", 2, 15, "failed")}, 0},
		{"outside any window, seen twice", []seenChange{change("n2", "n1", "n2", 2, 35, "failed"), change("n3", "n1", "n2", 2, 35, "failed")}, 1},
		{"previous leader paused", []seenChange{change("n3", "n2", "n3", 4, 75, "failed")}, 0},
		{"seen by the paused host itself", []seenChange{change("n2", "n1", "n2", 4, 75, "failed")}, 1},
		{"a window with another host paused, leader live", []seenChange{change("n3", "n1", "n3", 4, 75, "failed")}, 1},
		{"cut off by a partition", []seenChange{change("n2", "n1", "n2", 3, 45, "failed")}, 0},
		{"same side of a partition", []seenChange{change("n3", "n2", "n3", 3, 45, "failed")}, 1},
		{"preemption is no failover", []seenChange{change("n2", "n2", "n1", 3, 35, "preempted")}, 0},
		{"two false failovers", []seenChange{change("n2", "n1", "n2", 2, 5, "failed"), change("n1", "n2", "n1", 3, 6, "failed")}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[seenChange]bool{}
			for _, c := range tt.changes {
				m[c] = true
			}
			got := falseFailovers(m, windows)
			if len(got) != tt.want {
				t.Fatalf("%d false failovers, want %d: %q", len(got), tt.want, got)
			}
			if stall := strings.Contains(strings.Join(got, " "), "its own stall"); stall != (tt.name == "seen by the paused host itself") {
				t.Fatalf("own stall noted: %v: %q", stall, got)
			}
		})
	}
}
