package monitor

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/starling-sync/starling/nodestate"
)

func TestBusyReportPeriod(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 24: time.Second, 50: time.Second, 100: 2 * time.Second, 200: 4 * time.Second} {
		if got := busyReportPeriod(n); got != want {
			t.Errorf("busyReportPeriod(%d) = %v, want %v", n, got, want)
		}
	}
}

// Counters and heads change with every write and wait for the busy
// period; phase, errors and membership go at once.
func TestUrgentPart(t *testing.T) {
	base := nodestate.NodeReport{Node: "n1", Incarnation: 1, Seq: 1, Sync: nodestate.SyncProgress{Phase: nodestate.PhaseActive}}
	counters := base
	counters.Seq, counters.WritesIn, counters.WritesOut, counters.Heads, counters.Height, counters.Queued = 2, 5, 3, 2, 9, 1
	counters.StableHeads, counters.HeadsKnown = []string{"bafy"}, true
	if !bytes.Equal(urgentPart(base), urgentPart(counters)) {
		t.Error("a report whose counters and heads changed is urgent")
	}
	for name, change := range map[string]func(*nodestate.NodeReport){
		"phase":       func(r *nodestate.NodeReport) { r.Sync.Phase = nodestate.PhaseSyncing },
		"leaving":     func(r *nodestate.NodeReport) { r.Leaving = true },
		"dirty":       func(r *nodestate.NodeReport) { r.Dirty = true },
		"write error": func(r *nodestate.NodeReport) { r.WriteError = "disk full" },
		"incarnation": func(r *nodestate.NodeReport) { r.Incarnation = 2 },
	} {
		r := base
		change(&r)
		if bytes.Equal(urgentPart(base), urgentPart(r)) {
			t.Errorf("a change of %s is not urgent", name)
		}
	}
}

func TestIdleReportPeriod(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{1, 5 * time.Second}, {3, 5 * time.Second}, {24, 6 * time.Second}, {200, 50 * time.Second}} {
		if got := idleReportPeriod(c.n); got != c.want {
			t.Errorf("idleReportPeriod(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

// A node reports every busy period while its report changes (at once
// when its urgent part does), announces the idle period once it stops
// changing, and then stays quiet until the period it announced is up;
// the announcement always holds.
func TestReportDue(t *testing.T) {
	s := time.Second
	const busy = ReportInterval // up to 50 nodes
	for _, c := range []struct {
		name                   string
		changed, urgent, force bool
		last, idle, busy       time.Duration
		since                  time.Duration
		early                  float64
		wantPeriod             time.Duration
		wantSend               bool
	}{
		{"changed", true, false, false, 6 * s, 6 * s, busy, s, 0, busy, true},
		{"first report", true, true, false, 0, 6 * s, busy, 0, 0, busy, true},
		{"going quiet", false, false, false, busy, 6 * s, busy, s, 0, 6 * s, true},
		{"quiet, period not up", false, false, false, 6 * s, 6 * s, busy, 5 * s, 0, 0, false},
		{"quiet, period up (half a tick early)", false, false, false, 6 * s, 6 * s, busy, 5500 * time.Millisecond, 0, 6 * s, true},
		{"cluster grew: the shorter announced period holds", false, false, false, 6 * s, 10 * s, busy, 6 * s, 0, 10 * s, true},
		{"cluster shrank: the shorter new period", false, false, false, 10 * s, 6 * s, busy, 6 * s, 0, 6 * s, true},
		{"new connection", false, false, true, 6 * s, 6 * s, busy, s, 0, 6 * s, true},
		{"quiet, a quarter early: not yet", false, false, false, 8 * s, 8 * s, busy, 5 * s, 0.25, 0, false},
		{"quiet, a quarter early: due", false, false, false, 8 * s, 8 * s, busy, 5500 * time.Millisecond, 0.25, 8 * s, true},
		// 200 nodes: busy 4 s, idle 50 s.
		{"200 nodes, writes: not before the busy period", true, false, false, 4 * s, 50 * s, 4 * s, 3 * s, 0, 0, false},
		{"200 nodes, writes: every busy period", true, false, false, 4 * s, 50 * s, 4 * s, 3500 * time.Millisecond, 0, 4 * s, true},
		{"200 nodes, first write after quiet", true, false, false, 50 * s, 50 * s, 4 * s, 20 * s, 0, 4 * s, true},
		{"200 nodes, a new phase goes at once", true, true, false, 4 * s, 50 * s, 4 * s, s, 0, 4 * s, true},
		{"200 nodes, quiet after writes", false, false, false, 4 * s, 50 * s, 4 * s, 4 * s, 0, 50 * s, true},
		{"cluster grew under writes: the announced second holds", true, false, false, s, 50 * s, 4 * s, s, 0, 4 * s, true},
	} {
		p, send := reportDue(c.changed, c.urgent, c.force, c.last, c.idle, c.busy, c.since, c.early)
		if p != c.wantPeriod || send != c.wantSend {
			t.Errorf("%s: reportDue = %v, %v; want %v, %v", c.name, p, send, c.wantPeriod, c.wantSend)
		}
	}
}

// Idle reports of nodes started together spread over the last quarter
// of the period instead of going out in the same second.
func TestEarlyFraction(t *testing.T) {
	seen := map[float64]bool{}
	lo, hi := 1.0, 0.0
	for i := range 64 {
		for seq := range uint64(4) {
			f := earlyFraction(fmt.Sprintf("node%d", i), seq)
			if f < 0 || f >= 0.25 {
				t.Fatalf("earlyFraction(node%d, %d) = %v, want within [0, 1/4)", i, seq, f)
			}
			seen[f] = true
			lo, hi = min(lo, f), max(hi, f)
		}
	}
	if len(seen) < 200 || hi-lo < 0.2 {
		t.Errorf("256 reports of 64 nodes: %d distinct fractions within %v..%v, want them spread over [0, 1/4)", len(seen), lo, hi)
	}
}
