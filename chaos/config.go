package chaos

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/p2p"
)

// Config configures Run. Zero fields take the documented defaults
// (EnsureDefaults); Validate names the field (and its flag) of every
// problem.
type Config struct {
	// Binary is the starling binary the hosts run. Required.
	Binary string
	// WorkDir holds the hosts' data dirs, logs and histories during the
	// run. Default: EnvWorkDir, else a new temporary directory (removed
	// at the end).
	WorkDir string
	// Nodes is the number of hosts (--nodes). Default 5: the smallest
	// cluster with a true majority/minority split of two against three
	// and a bridge with two hosts per side.
	Nodes int
	// Seed drives every random choice: fault schedule, targets,
	// durations, and the clients' operations (--seed). 0 picks one, and
	// the report prints it for replay. Timing (what a host has seen when
	// a fault begins) cannot be replayed exactly.
	Seed uint64
	// Scenarios to run in order (--scenarios). Default QuickSweep.
	Scenarios []Scenario
	// Rounds of fault and heal per scenario (--rounds). Default 1.
	Rounds int
	// Soak, when set, runs random combinations of nemeses (3 rounds
	// each) until this long has passed, after Scenarios (--soak).
	Soak time.Duration
	// Model is the registry name of the workload and its checks
	// (--model). Default DefaultModel.
	Model string
	// Checks are extra checkers from the registry (--check). Default
	// none; the command line and the CI sweep use DefaultChecks.
	Checks []string
	// Rate is operations per second per host (--rate). Default 20: 100
	// operations/s for 5 hosts keep 2 cores mostly idle, and a 15 s
	// scenario still acknowledges over a thousand writes.
	Rate float64
	// ClientsPerHost is the number of concurrent clients per host.
	// Default 2, so a client stuck on a paused host does not stop the
	// host's load entirely.
	ClientsPerHost int
	// OverwriteKeys is the number of shared keys the clients overwrite.
	// Default 16: enough conflicts per second, few versions per key
	// (each overwrite adds one to go-ds-crdt's set).
	OverwriteKeys int
	// OpTimeout bounds one client operation. Default 2s; a put returns
	// once durable (milliseconds), so longer means the host is stopped.
	OpTimeout time.Duration
	// Quiet is the calm before each fault. Default 1s.
	Quiet time.Duration
	// FaultMin and FaultMax bound how long a fault holds (drawn from the
	// seed; --fault-min, --fault-max). Default 4s and 8s: across p2p's
	// PingTimeout (4s), so some faults outlast the liveness check and cut
	// connections, and some do not. A soak of slower election timings
	// (the wan preset's 5 s timeout) wants longer holds, so that the
	// settled fault is observed after the failover.
	FaultMin, FaultMax time.Duration
	// LinkDelay, when set, holds every frame between hosts this long for
	// the whole scenario (--link-delay): each round's faults then strike
	// a wide-area network, as the delay nemesis's 4-8 s cannot show
	// (failover, false failovers and convergence across slow links). A
	// round trip takes twice LinkDelay. The delay nemesis then skips.
	LinkDelay time.Duration
	// SettleTime is how long a fault holds before observers look at the
	// cluster. Default p2p's PingTimeout + PingInterval: by then every
	// connection across a cut is closed.
	SettleTime time.Duration
	// ConvergeTimeout bounds the wait for convergence after each heal and
	// at the end. Default DefaultConvergeTimeout().
	ConvergeTimeout time.Duration
	// ReplicationWait bounds how long the wipe nemesis waits for the
	// victim's acknowledged writes to reach another host. Default 10s.
	ReplicationWait time.Duration
	// PollInterval is how often convergence is polled. Default 250ms
	// (each poll reads every host's whole state).
	PollInterval time.Duration
	// StartTimeout bounds a node's start until its API answers, and the
	// initial mesh. Default 20s.
	StartTimeout time.Duration
	// ArtifactsDir is where failed scenarios keep logs, history and
	// report, under a folder per run (--artifacts). Default
	// "chaos-artifacts".
	ArtifactsDir string
	// KeepArtifacts keeps them for passing scenarios too.
	KeepArtifacts bool
	// MaxPeers, when set, starts every node with --max-peers MaxPeers
	// (--max-peers), after any RunCommand's words. With MaxPeers below
	// Nodes-1 the cluster runs on bounded connections
	// (p2p.Config.MaxPeers): gossip crosses nodes that are not directly
	// connected, and after a heal a node full from its own side must
	// dial across by the bound's exceptions (a peer its liveness check
	// cut, a peer unheard of), which no scenario of a full mesh
	// exercises. The initial wait is then for the bound, not the full
	// mesh (startCluster). 0: the nodes' default (12), more than the
	// suite's clusters, so every pair connects.
	MaxPeers int
	// RunCommand replaces, for the hosts it names ("n1"), the `run`
	// subcommand that starts a node: the words given come first, then
	// the harness's flags (--data, --compact-every, --peer,
	// --clock-offset). The control
	// test starts a deliberately broken node with it (`chaos
	// broken-node --break drop-remote`, in binaries built with the
	// chaosbroken tag). Default: `run` for every host.
	RunCommand map[string][]string
	// Registry has the models, checkers and nemeses. Default
	// NewRegistry().
	Registry *Registry
	// Logger receives the run's events (each fault as it happens) at
	// Info. Default: discard.
	Logger *slog.Logger
}

// DefaultModel is the model of `starling chaos` and of the CI sweep:
// typed entity fields judged by last-writer-wins, and the tree's
// invariants. "kv" drives the raw key-value API.
const DefaultModel = "entity"

// DefaultChecks are the extra checkers `starling chaos` and the CI sweep
// run: the leader election's, the adversary's and the NAT nemeses' (each
// of these two judges only scenarios with its nemeses).
var DefaultChecks = []string{"election", "adversary", "nat"}

// DefaultConvergeTimeout derives the convergence deadline from the
// nodes' liveness and sync timeouts: a healed link is re-dialled within
// p2p's RedialMax; a connection that survived a silent cut is closed
// after PingTimeout first; heads are exchanged on connect and
// rebroadcast every RebroadcastInterval (twice, as a node's own
// broadcast marks its heads seen); a block that cannot be fetched stalls
// for DAGSyncerTimeout; plus 10s for a restarted node to start.
func DefaultConvergeTimeout() time.Duration {
	p := p2p.DefaultConfig(chaosEnv)
	c := crdt.DefaultOptions()
	return p.PingTimeout + p.RedialMax + 2*c.RebroadcastInterval + c.DAGSyncerTimeout + 10*time.Second
}

// EnsureDefaults fills zero fields.
func (c *Config) EnsureDefaults() {
	p := p2p.DefaultConfig(chaosEnv)
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	if c.Rounds == 0 {
		c.Rounds = 1
	}
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.Rate == 0 {
		c.Rate = 20
	}
	if c.ClientsPerHost == 0 {
		c.ClientsPerHost = 2
	}
	if c.OverwriteKeys == 0 {
		c.OverwriteKeys = 16
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.Quiet == 0 {
		c.Quiet = time.Second
	}
	if c.FaultMin == 0 {
		c.FaultMin = 4 * time.Second
	}
	if c.FaultMax == 0 {
		c.FaultMax = max(8*time.Second, c.FaultMin)
	}
	if c.SettleTime == 0 {
		c.SettleTime = p.PingTimeout + p.PingInterval
	}
	if c.ConvergeTimeout == 0 {
		c.ConvergeTimeout = DefaultConvergeTimeout()
	}
	if c.ReplicationWait == 0 {
		c.ReplicationWait = 10 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 20 * time.Second
	}
	if c.ArtifactsDir == "" {
		c.ArtifactsDir = "chaos-artifacts"
	}
	if c.Registry == nil {
		c.Registry = NewRegistry()
	}
	if len(c.Scenarios) == 0 && c.Soak == 0 {
		c.Scenarios = QuickSweep(c.Registry)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem at once (after EnsureDefaults).
func (c *Config) Validate() error {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	if c.Binary == "" {
		add("Binary (--binary): required, the starling binary the hosts run")
	} else if st, err := os.Stat(c.Binary); err != nil {
		add("Binary (--binary): %v", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		add("Binary (--binary): %s is not an executable file", c.Binary)
	}
	if c.Nodes < 2 || c.Nodes > 50 {
		add("Nodes (--nodes): %d outside 2..50", c.Nodes)
	}
	if c.Rounds < 1 {
		add("Rounds (--rounds): %d, want >= 1", c.Rounds)
	}
	if c.Soak < 0 {
		add("Soak (--soak): %s is negative", c.Soak)
	}
	if c.Rate <= 0 || c.Rate > 1000 {
		add("Rate (--rate): %g operations/s per host outside (0, 1000]", c.Rate)
	}
	if c.ClientsPerHost < 1 {
		add("ClientsPerHost: %d, want >= 1", c.ClientsPerHost)
	}
	if c.FaultMax < c.FaultMin || c.FaultMin <= 0 {
		add("FaultMin/FaultMax (--fault-min, --fault-max): %s..%s is not a positive range", c.FaultMin, c.FaultMax)
	}
	if c.MaxPeers < 0 {
		add("MaxPeers (--max-peers): %d is negative; 0 keeps the nodes' default", c.MaxPeers)
	}
	if c.LinkDelay < 0 || c.LinkDelay > 10*time.Second {
		add("LinkDelay (--link-delay): %s outside [0, 10s]", c.LinkDelay)
	}
	if c.PollInterval < 10*time.Millisecond {
		add("PollInterval: %s is below 10ms", c.PollInterval)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"OpTimeout", c.OpTimeout}, {"Quiet", c.Quiet}, {"SettleTime", c.SettleTime}, {"ConvergeTimeout", c.ConvergeTimeout}, {"ReplicationWait", c.ReplicationWait}, {"StartTimeout", c.StartTimeout}} {
		if d.v <= 0 {
			add("%s: %s must be positive", d.name, d.v)
		}
	}
	if c.Registry != nil {
		if _, err := c.Registry.model(c.Model); err != nil {
			add("Model (--model): %v", err)
		}
		for _, ch := range c.Checks {
			if _, err := c.Registry.checker(ch); err != nil {
				add("Checks (--check): %v", err)
			}
		}
		for _, s := range c.Scenarios {
			if len(s.Nemeses) == 0 {
				add("Scenarios (--scenarios): %q has no nemesis", s.Name)
			}
			for _, n := range s.Nemeses {
				nem, ok := c.Registry.Nemesis(n)
				if !ok {
					add("Scenarios (--scenarios): %q: no nemesis %q (see `starling chaos --list`)", s.Name, n)
				}
				if _, nat := nem.(TopologyNemesis); nat && c.LinkDelay > 0 {
					add("LinkDelay (--link-delay): scenario %q runs in the NAT network, whose links it does not delay; run it without --link-delay", s.Name)
				}
			}
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return errors.New("chaos: invalid config: " + strings.Join(ps, "; "))
}

// Scenario is a set of nemeses injected together, for some rounds.
type Scenario struct {
	// Name is the nemeses joined by "+" ("partition-halves+kill").
	Name    string
	Nemeses []string
	// Rounds overrides Config.Rounds when positive.
	Rounds int
}

// ParseScenario parses "a+b+c", or "label:a+b+c" as the soak names its
// scenarios: the label is part of the name, and so of the scenario's
// seed, which is how a soak scenario is replayed alone.
func ParseScenario(s string) Scenario {
	label, list, ok := strings.Cut(s, ":")
	if !ok {
		label, list = "", s
	}
	var ns []string
	for n := range strings.SplitSeq(list, "+") {
		if n = strings.TrimSpace(n); n != "" {
			ns = append(ns, n)
		}
	}
	name := strings.Join(ns, "+")
	if label = strings.TrimSpace(label); label != "" {
		name = label + ":" + name
	}
	return Scenario{Name: name, Nemeses: ns}
}

// QuickSweep is every nemesis of r alone (but the PendingNemeses and the
// CoveredNemeses), then two combinations of a network and a process
// fault.
func QuickSweep(r *Registry) []Scenario {
	var out []Scenario
	for _, n := range r.Nemeses() {
		if PendingNemeses[n.Name()] != "" || CoveredNemeses[n.Name()] != "" {
			continue
		}
		out = append(out, Scenario{Name: n.Name(), Nemeses: []string{n.Name()}})
	}
	for _, combo := range []string{"partition-majority+kill", "loss+pause"} {
		s := ParseScenario(combo)
		ok := true
		for _, n := range s.Nemeses {
			if _, found := r.Nemesis(n); !found {
				ok = false
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}
