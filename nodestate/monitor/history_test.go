package monitor

import (
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/nodestate"
)

// A peer is sampled for the charts once per report it sends: ticks that
// see the same report again add nothing (a quiet peer repeats one report
// for its whole idle period), a new report or a restarted peer adds one,
// with its write rate since the last.
func TestPeerSampledOncePerReport(t *testing.T) {
	m := &Monitor{cfg: Config{NodeID: "self"}, prev: map[string]counters{}, history: map[string][]api.Sample{}}
	wall := time.Unix(1000, 0)
	tick := func(r nodestate.NodeReport) {
		if m.newReport(r) {
			m.sample(r.Node, r, wall)
		}
		wall = wall.Add(time.Second)
	}
	r := nodestate.NodeReport{Node: "p", Incarnation: 1, Seq: 5, WritesOut: 10}
	for range 50 { // one report, seen by 50 ticks
		tick(r)
	}
	if n := len(m.history["p"]); n != 1 {
		t.Fatalf("one report seen by 50 ticks: %d samples, want 1", n)
	}
	r.Seq, r.WritesOut = 6, 110
	tick(r)
	h := m.history["p"]
	if len(h) != 2 || h[1].W != 2 { // 100 writes over the 50 s between the reports
		t.Fatalf("second report: samples %+v, want 2 with W=2", h)
	}
	r.Incarnation, r.Seq = 2, 1 // restarted: its sequence starts again
	tick(r)
	if n := len(m.history["p"]); n != 3 {
		t.Fatalf("report of a restarted peer: %d samples, want 3", n)
	}
}
