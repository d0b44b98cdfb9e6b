package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
)

// TestStatusShowsFailingWrites: `starling status` says when the store's
// writes fail, and why; and says nothing of it while they work.
func TestStatusShowsFailingWrites(t *testing.T) {
	var out bytes.Buffer
	e := &cmdEnv{stdout: &out}
	e.printStatus(&api.StatusInfo{NodeID: "n1", Store: api.StoreStatus{Writable: true}})
	if strings.Contains(out.String(), "FAILING") {
		t.Fatalf("status of a writable store says writes fail:\n%s", out.String())
	}
	out.Reset()
	e.printStatus(&api.StatusInfo{NodeID: "n1", Store: api.StoreStatus{WriteError: "write: no space left on device"}})
	if !strings.Contains(out.String(), "FAILING: write: no space left on device") {
		t.Fatalf("status of a store whose writes fail:\n%s", out.String())
	}
}

// TestClusterStatusShowsNodesThatCannotWrite: `cluster status` names a
// node whose store cannot write, and one whose clock is off, with why.
func TestClusterStatusShowsNodesThatCannotWrite(t *testing.T) {
	var out bytes.Buffer
	e := &cmdEnv{stdout: &out}
	e.printClusterStatus(&api.ClusterStatus{Nodes: []api.NodeView{
		{NodeID: "n1", Self: true},
		{NodeID: "n2", WriteError: "write: no space left on device"},
		{NodeID: "n3", ClockSkewed: true},
	}}, time.Now())
	for _, want := range []string{"n2: its store cannot write: write: no space left on device", "n3: its clock is off the cluster's"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cluster status lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "n1: its") {
		t.Errorf("cluster status flags a healthy node:\n%s", out.String())
	}
}

// TestStatusShowsSlowLinks: `starling status` says when the round trips
// to peers are too slow for the election timings, naming the peer, its
// round trip and what to do; and says they fit otherwise.
func TestStatusShowsSlowLinks(t *testing.T) {
	var out bytes.Buffer
	e := &cmdEnv{stdout: &out}
	e.printStatus(&api.StatusInfo{NodeID: "n1", Links: api.LinkStatus{Preset: "lan", BudgetMS: 150, Measured: 2, WorstMS: 12}})
	if !strings.Contains(out.String(), "round trips up to 12ms to 2 peers, within the 150ms the lan election timings take") {
		t.Fatalf("status of fitting links:\n%s", out.String())
	}
	out.Reset()
	e.printStatus(&api.StatusInfo{NodeID: "n1", Links: api.LinkStatus{Preset: "lan", BudgetMS: 150, Measured: 2, WorstMS: 212,
		Slow:   []api.SlowLink{{PeerID: "12D3KooWabc", NodeID: "n2", RTTMS: 212.4, MinRTTMS: 201}},
		Advice: "use --election-preset wan on every node"}})
	if !strings.Contains(out.String(), "TOO SLOW for the lan election timings (up to 150ms): n2 212ms; false failovers are likely: use --election-preset wan on every node") {
		t.Fatalf("status of a slow link:\n%s", out.String())
	}
}
