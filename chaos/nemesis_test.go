package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/chaos/internal/netlab"
	"github.com/starling-sync/starling/p2p"
)

// TestNetworkPlans checks, over many seeds and cluster sizes, that each
// network nemesis cuts what its name promises, and that a seed gives the
// same plan twice (replay).
func TestNetworkPlans(t *testing.T) {
	reg := NewRegistry()
	e := &Env{}
	for _, name := range []string{"partition-halves", "partition-majority", "isolate", "bridge", "one-way", "loss"} {
		nm, ok := reg.Nemesis(name)
		if !ok {
			t.Fatalf("no nemesis %s", name)
		}
		nn := nm.(*networkNemesis)
		for n := max(nn.minHosts, 3); n <= 7; n++ {
			for seed := range uint64(50) {
				rules, desc := nn.plan(e, rand.New(rand.NewPCG(seed, 1)), n)
				rules2, desc2 := nn.plan(e, rand.New(rand.NewPCG(seed, 1)), n)
				if desc != desc2 || !slices.Equal(rules, rules2) {
					t.Fatalf("%s seed %d: two plans differ", name, seed)
				}
				f := netlab.NewFilter(n)
				if err := f.Set(name, rules); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				comps := f.Components()
				sizes := make([]int, len(comps))
				for i, c := range comps {
					sizes[i] = len(c)
				}
				slices.Sort(sizes)
				var bad string
				switch name {
				case "partition-halves":
					if !slices.Equal(sizes, []int{n / 2, n - n/2}) {
						bad = "want two halves"
					}
				case "partition-majority":
					if len(sizes) != 2 || sizes[0]*2 >= n {
						bad = "want a minority and a majority"
					}
				case "isolate", "one-way":
					if !slices.Equal(sizes, []int{1, n - 1}) {
						bad = "want one host alone"
					}
				case "bridge":
					// One component through the bridge host, but some pairs
					// cannot talk directly.
					if len(sizes) != 1 || len(rules) == 0 {
						bad = "want one component with cut pairs"
					}
				case "loss":
					if len(sizes) != 1 || len(rules) != n*(n-1) || rules[0].LossPercent < 20 || rules[0].LossPercent > 40 {
						bad = "want 20-40% loss on every link"
					}
				}
				if bad != "" {
					t.Fatalf("%s n=%d seed=%d: components %v (%s): %s", name, n, seed, comps, desc, bad)
				}
			}
		}
	}
}

func TestBridgePlanKeepsTheBridgeConnected(t *testing.T) {
	nm, _ := NewRegistry().Nemesis("bridge")
	for seed := range uint64(50) {
		rules, desc := nm.(*networkNemesis).plan(&Env{}, rand.New(rand.NewPCG(seed, 1)), 5)
		f := netlab.NewFilter(5)
		if err := f.Set("b", rules); err != nil {
			t.Fatal(err)
		}
		// The bridge host is the one with no rule at all.
		var bridge []int
		for h := 1; h <= 5; h++ {
			touched := false
			for _, r := range rules {
				if r.From == h || r.To == h {
					touched = true
				}
			}
			if !touched {
				bridge = append(bridge, h)
			}
		}
		if len(bridge) != 1 || !strings.Contains(desc, "bridge "+hostName(bridge[0])) {
			t.Fatalf("seed %d: %s: untouched hosts %v", seed, desc, bridge)
		}
	}
}

func TestClaim(t *testing.T) {
	// Hosts without a process are not Up, so Claim refuses them: give
	// the env hosts that look up by faking their state.
	e := &Env{claims: map[*Host]string{}, exclusive: map[string]string{}}
	rng := rand.New(rand.NewPCG(1, 1))
	if _, err := e.Claim(rng, "x", 1, 1); err == nil {
		t.Fatal("claimed a host that is not running")
	}
	if err := e.Exclusive("delay", "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.Exclusive("delay", "b"); err == nil {
		t.Fatal("a held resource was given twice")
	}
	e.ReleaseExclusive("delay")
	if err := e.Exclusive("delay", "b"); err != nil {
		t.Fatal(err)
	}
}

func TestQuickSweepHasEveryNemesis(t *testing.T) {
	reg := NewRegistry()
	seen := map[string]bool{}
	for _, s := range QuickSweep(reg) {
		for _, n := range s.Nemeses {
			seen[n] = true
		}
	}
	for _, n := range reg.Nemeses() {
		_, pending := PendingNemeses[n.Name()]
		by, covered := CoveredNemeses[n.Name()]
		if !seen[n.Name()] && !pending && !covered {
			t.Errorf("the quick sweep never runs %s", n.Name())
		}
		if covered && (seen[n.Name()] || !seen[by]) {
			t.Errorf("%s is covered by %s: the quick sweep should run %s and not %s", n.Name(), by, by, n.Name())
		}
		if seen[n.Name()] && pending {
			t.Errorf("the quick sweep runs %s, which waits for its feature: %s", n.Name(), PendingNemeses[n.Name()])
		}
	}
	want := []string{"adversary", "bridge", "clock-skew", "delay", "isolate", "kill", "loss", "nat-hub-kill", "nat-router-restart", "nat-symmetric", "nat-upnp",
		"one-way", "partition-halves", "partition-majority", "partition-outlasting-history", "partition-outlasting-twice", "pause", "wan-kill", "wipe"}
	var got []string
	for _, n := range reg.Nemeses() {
		got = append(got, n.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("nemeses %v, want %v", got, want)
	}
}

func TestParseScenario(t *testing.T) {
	s := ParseScenario(" loss + kill ")
	if s.Name != "loss+kill" || !slices.Equal(s.Nemeses, []string{"loss", "kill"}) {
		t.Errorf("ParseScenario = %+v", s)
	}
	s = ParseScenario("soak6:partition-halves+pause")
	if s.Name != "soak6:partition-halves+pause" || !slices.Equal(s.Nemeses, []string{"partition-halves", "pause"}) {
		t.Errorf("ParseScenario = %+v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Nodes: 1, Rate: -1, Model: "nope", Checks: []string{"quorum"}, Scenarios: []Scenario{ParseScenario("loss+quake"), ParseScenario("nat-hub-kill")},
		LinkDelay: 100 * time.Millisecond}
	cfg.EnsureDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"Binary (--binary)", "Nodes (--nodes)", "Rate (--rate)", `no model "nope"`, `no checker "quorum"`, `no nemesis "quake"`,
		`LinkDelay (--link-delay): scenario "nat-hub-kill" runs in the NAT network`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestDefaultConvergeTimeout(t *testing.T) {
	// 4s ping timeout + 5s re-dial + 2x5s rebroadcast + 30s DAG fetch +
	// 10s start: if the nodes' defaults move, this says so.
	if got := DefaultConvergeTimeout(); got < 30*time.Second || got > 2*time.Minute {
		t.Errorf("DefaultConvergeTimeout = %s", got)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {11, 2}} {
		if got := Percentile(ds, tt.p); got != tt.want {
			t.Errorf("Percentile(%g) = %d, want %d", tt.p, got, tt.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing")
	}
}

func TestReportTable(t *testing.T) {
	rep := &Report{Seed: 42, Nodes: 5, Model: "kv", Results: []*ScenarioResult{
		{Scenario: "loss", FaultCount: 1, Acked: 100, Convergence: []time.Duration{1500 * time.Millisecond},
			Verdicts: []Verdict{{Checker: "kv-lost", OK: true, Counts: map[string]int{"lost": 0}}}},
		{Scenario: "kill", FaultCount: 1, Acked: 90,
			Verdicts: []Verdict{{Checker: "kv-lost", OK: false, Counts: map[string]int{"lost": 3}, Problems: []string{"op 7 missing"}}}},
		{Scenario: "clock-skew", Skipped: "no flag"},
		{Scenario: "isolate", FaultCount: 1, Acked: 10,
			Verdicts: []Verdict{{Checker: "election", OK: true, Counts: map[string]int{"leaders": 2}}}},
	}}
	if rep.OK() {
		t.Error("a report with a failed scenario is OK")
	}
	out := rep.String()
	for _, want := range []string{"SCENARIO", "loss", "1.5s", "FAIL: kv-lost", "NEMESIS  HEALS", "skipped: no flag", "op 7 missing", "seed 42", "3 ran, 1 failed, 1 skipped", "LEADERS"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	fmt.Fprint(testWriter{t}, out)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// TestHostRunArgsForceCompaction: every node the suite starts, with the
// run command or a host's own, compacts every few seconds.
func TestHostRunArgsForceCompaction(t *testing.T) {
	peers := func(int) []string { return []string{"/ip4/10.0.0.2/tcp/4001/p2p/x"} }
	for _, run := range [][]string{nil, {"chaos", "broken-node", "--break", "drop-remote"}} {
		h := &Host{index: 1, name: "n1", dir: "/d/n1", peers: peers, runCmd: run, clockOffset: -2 * time.Second}
		got := strings.Join(h.runArgsLocked(), " ")
		cmd := "run"
		if run != nil {
			cmd = strings.Join(run, " ")
		}
		want := "--log-level info " + cmd + " --data /d/n1 --compact-every 3s --compact-evict-after 15s --peer /ip4/10.0.0.2/tcp/4001/p2p/x --clock-offset -2s"
		if got != want {
			t.Errorf("run args\n got %s\nwant %s", got, want)
		}
	}
}

func TestDelayFor(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t.Setenv(EnvDelay, "")
	if d, err := delayFor(rng); err != nil || d < 20*time.Millisecond || d > 200*time.Millisecond {
		t.Errorf("drawn delay %v, %v: want 20-200ms", d, err)
	}
	t.Setenv(EnvDelay, "100ms")
	if d, err := delayFor(rng); err != nil || d != 100*time.Millisecond {
		t.Errorf("fixed delay %v, %v: want 100ms", d, err)
	}
	for _, bad := range []string{"100", "-1s", "1m"} {
		t.Setenv(EnvDelay, bad)
		if _, err := delayFor(rng); err == nil || !strings.Contains(err.Error(), EnvDelay) {
			t.Errorf("%s=%q: err %v, want one naming the variable", EnvDelay, bad, err)
		}
	}
}

// plainFault is a Fault that does not say when it took effect.
type plainFault struct{}

func (plainFault) Describe() string           { return "plain" }
func (plainFault) Heal(context.Context) error { return nil }

// TestFaultStart checks that a fault which took effect after its Inject
// began (nat-hub-kill waits up to 30 s for the sites to link before the
// kill) is dated from then: the election checker measured that wait as
// failover (29 s reported, under a second real).
func TestFaultStart(t *testing.T) {
	began := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	killed := began.Add(28 * time.Second)
	for _, tc := range []struct {
		name string
		f    Fault
		want time.Time
	}{
		{"says when", &fault{started: killed}, killed},
		{"says nothing", &fault{}, began},
		{"not a StartedFault", plainFault{}, began},
		{"before Inject began", &fault{started: began.Add(-time.Second)}, began},
	} {
		if got := faultStart(tc.f, began); !got.Equal(tc.want) {
			t.Errorf("%s: faultStart = %v, want %v", tc.name, got.Sub(began), tc.want.Sub(began))
		}
	}
}

// A replay command names every setting a test changes from the
// defaults: TestChaosBoundedConnections's bound and longer holds.
func TestReplayCommandNamesTheNetwork(t *testing.T) {
	cfg := Config{Seed: 7, Nodes: 7, MaxPeers: 2, FaultMin: 9 * time.Second, FaultMax: 12 * time.Second}
	cfg.EnsureDefaults()
	got := replayCommand(cfg)
	for _, want := range []string{"--max-peers 2", "--fault-min 9s --fault-max 12s"} {
		if !strings.Contains(got, want) {
			t.Errorf("replay %q lacks %q", got, want)
		}
	}
	def := Config{Seed: 7}
	def.EnsureDefaults()
	if got := replayCommand(def); strings.Contains(got, "--fault-min") || strings.Contains(got, "--max-peers") {
		t.Errorf("replay of the defaults %q names defaults", got)
	}
}

// components joins hosts by the connections either side reports, and
// leaves a host nobody reports alone.
func TestScenarioComponents(t *testing.T) {
	s := &scenarioRun{}
	for k := 1; k <= 4; k++ {
		dir := filepath.Join(t.TempDir(), hostName(k))
		if _, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, api.IdentityFile)); err != nil {
			t.Fatal(err)
		}
		s.hosts = append(s.hosts, &Host{index: k, name: hostName(k), dir: dir})
	}
	id := func(k int) string { return s.hosts[k-1].PeerID() }
	conns := map[string][]string{
		id(1): {id(3)},              // n1-n3, reported by n1 only
		id(2): {"12D3KooWnotahost"}, // a peer that is not a host
		id(4): {id(2)},              // n2-n4, reported by n4 only
	}
	got := fmt.Sprint(s.components(conns))
	if want := "[[n1 n3] [n2 n4]]"; got != want {
		t.Fatalf("components = %s, want %s", got, want)
	}
	conns[id(3)] = []string{id(4)}
	if got, want := fmt.Sprint(s.components(conns)), "[[n1 n2 n3 n4]]"; got != want {
		t.Fatalf("after n3-n4: components = %s, want %s", got, want)
	}
}
