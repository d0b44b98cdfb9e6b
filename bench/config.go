package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/starling-sync/starling/election"
)

// Workload names, for Config.Only (--only).
const (
	WorkloadWrites     = "writes"     // field writes/s on one node, latency
	WorkloadVisible    = "visible"    // write -> visible on 3 nodes
	WorkloadHeal       = "heal"       // heal after a partition
	WorkloadJoin       = "join"       // fresh node joins a populated store
	WorkloadDisk       = "disk"       // disk bytes per write, RSS per node
	WorkloadHistory    = "history"    // bounded history: disk, compaction, join
	WorkloadMocknet    = "mocknet"    // write visible on N simulated nodes
	WorkloadMocknetBig = "mocknet200" // write visible on 200 simulated nodes
	WorkloadIdle       = "idle"       // idle cost of 24, 100, 200 simulated nodes
)

// Workloads lists every workload in the order they run.
var Workloads = []string{WorkloadWrites, WorkloadVisible, WorkloadHeal, WorkloadJoin, WorkloadDisk, WorkloadHistory, WorkloadMocknet, WorkloadMocknetBig, WorkloadIdle}

// DefaultWorkloads run without --only: all but mocknet200 and idle,
// which put 100-200 whole nodes in one process and saturate a 2-core
// machine for minutes (ask for them with --only).
var DefaultWorkloads = []string{WorkloadWrites, WorkloadVisible, WorkloadHeal, WorkloadJoin, WorkloadDisk, WorkloadHistory, WorkloadMocknet}

// WorkloadHelp describes each workload in one line (for --help).
var WorkloadHelp = map[string]string{
	WorkloadWrites:     "field writes/s on one node, 1, 64 and 256 concurrent writers and batches of 100; p50/p99 write latency",
	WorkloadVisible:    "write on node 1 -> visible on nodes 2 and 3 (loopback, real libp2p), p50/p99",
	WorkloadHeal:       "heal after a partition with 10k and 100k writes on one side",
	WorkloadJoin:       "fresh node joins a store of 50k and 1M fields, and one whose history holds 1M overwrites of 10k fields",
	WorkloadDisk:       "disk bytes per write (du of the data dir) and heap/RSS per node (in-process estimate)",
	WorkloadHistory:    "bounded history: disk after 300k and 1M overwrites of 1k fields with compaction, the 300k+300k check, writes/p99 while compaction runs, join into a compacted history",
	WorkloadMocknet:    "N whole nodes in one process (libp2p's mocknet, or real hosts on loopback with --net loopback): write visible everywhere, p50/p99",
	WorkloadMocknetBig: "the same with 200 whole nodes (20 with --quick)",
	WorkloadIdle:       "24, 100 and 200 whole nodes in one process, on the mocknet or loopback as --net says (4 and 8 with --quick; --nodes N: N only): time until they agree on a leader, its term, then idle CPU and RSS per node",
}

// Config configures Run. Zero fields take the defaults documented on
// each.
type Config struct {
	// Only lists the workloads to run (names in Workloads). Default:
	// DefaultWorkloads.
	Only []string
	// Quick uses small sizes (CI and tests): seconds per workload
	// instead of minutes. Targets are set for the full sizes.
	Quick bool
	// Budget bounds every measured run of either system. Default 60s:
	// raw go-ds-crdt needs minutes for some workloads (a fresh node took
	// ~17 min for 50k keys here), and a bench nobody waits for is no use.
	Budget time.Duration
	// History10M adds a row for 10M overwrites to the history workload
	// (Starling only: raw go-ds-crdt writes 5-8k fields/s in calls of 10
	// here, so 10M would take it half an hour), and the join then goes
	// into that store. Off by default: Starling needs 2-3 minutes for it
	// (about 65k writes/s here).
	History10M bool
	// Net is the network of the simulated clusters (the mocknet,
	// mocknet200 and idle workloads): NetMocknet (the default) or
	// NetLoopback.
	Net string
	// Nodes is the number of simulated nodes of the mocknet workload
	// (default 50, 10 with Quick) and, when set, the one size of the
	// idle workload (default 24, 100 and 200; 4 and 8 with Quick).
	Nodes int
	// ElectionPreset names the election timings of every Starling node:
	// "lan" (the default, as starling run), "wan" or "fast"
	// (election.Preset). The idle and mocknet rows depend on it most:
	// the leader and the next in line heartbeat every Interval.
	ElectionPreset string
	// Dir is where data directories are made (a temporary directory is
	// made in it and removed). Default: the system's temporary directory.
	Dir string
	// Progress receives one line per step as the workloads run. Default:
	// discard.
	Progress io.Writer
	// Logger receives the nodes' logs. Default: discard.
	Logger *slog.Logger
}

// Networks of the simulated clusters (Config.Net, --net).
const (
	// NetMocknet: libp2p's mocknet, in-memory connections between hosts
	// without transport, security or muxer (quick to set up; its locks
	// stall 200 whole nodes: see loopback.go).
	NetMocknet = "mocknet"
	// NetLoopback: real libp2p hosts on 127.0.0.1 (TCP, TLS, yamux;
	// Starling's inside its private network), as between real nodes.
	NetLoopback = "loopback"
)

// Nets lists the values of Config.Net.
var Nets = []string{NetMocknet, NetLoopback}

// DefaultBudget is Config.Budget's default.
const DefaultBudget = 60 * time.Second

// Validate reports every problem at once, naming the flag.
func (c Config) Validate() error {
	var errs []error
	for _, w := range c.Only {
		if !slices.Contains(Workloads, w) {
			errs = append(errs, fmt.Errorf("bench: --only: unknown workload %q; choose from %s", w, strings.Join(Workloads, ", ")))
		}
	}
	if c.Budget < 0 {
		errs = append(errs, fmt.Errorf("bench: --budget is %v; it must be positive (e.g. 60s)", c.Budget))
	} else if c.Budget > 0 && c.Budget < time.Second {
		errs = append(errs, fmt.Errorf("bench: --budget is %v; give at least 1s", c.Budget))
	}
	if c.Net != "" && !slices.Contains(Nets, c.Net) {
		errs = append(errs, fmt.Errorf("bench: --net: unknown network %q; choose %s", c.Net, strings.Join(Nets, " or ")))
	}
	if c.ElectionPreset != "" {
		if _, err := election.Preset(c.ElectionPreset); err != nil {
			errs = append(errs, fmt.Errorf("bench: --election-preset: %w", err))
		}
	}
	if c.Nodes < 0 || (c.Nodes > 0 && c.Nodes < 3) || c.Nodes > 200 {
		errs = append(errs, fmt.Errorf("bench: --nodes is %d; give 3 to 200 (the workload asks for 50-100)", c.Nodes))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if len(c.Only) == 0 {
		c.Only = DefaultWorkloads
	}
	if c.Budget == 0 {
		c.Budget = DefaultBudget
	}
	if c.Net == "" {
		c.Net = NetMocknet
	}
	if c.ElectionPreset == "" {
		c.ElectionPreset = "lan"
	}
	if c.Nodes == 0 {
		c.Nodes = 50
		if c.Quick {
			c.Nodes = 10
		}
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// sizes are the workload sizes of a run.
type sizes struct {
	single     int   // writes by one writer
	concurrent int   // writes by 64 writers, by 256 writers, and in batches
	visible    int   // write -> visible samples (3 nodes)
	heal       []int // writes on one side of the partition
	joinKeys   []int // fields in the store a node joins
	histWrite  int   // overwrites in the history case
	histKeys   int   // distinct fields they overwrite
	disk       int   // writes for disk bytes / RSS
	mocknet    int   // samples on mocknet
	mocknetBig int   // nodes of the big mocknet row set
	idle       []int // nodes of each idle run
	// history workload
	histDisk  []int // overwrites of 1k fields after which disk is measured
	histCheck int   // overwrites of each half of the acceptance check
	histLoad  int   // writes by 64 writers with and without compaction
	histRaw   int   // where raw go-ds-crdt's chain stops (5-8k writes/s)
}

func sizesFor(quick bool) sizes {
	if quick {
		return sizes{
			single: 1000, concurrent: 4000, visible: 30,
			heal:     []int{1000},
			joinKeys: []int{5000}, histWrite: 20_000, histKeys: 1000,
			disk: 2000, mocknet: 10, mocknetBig: 20, idle: []int{4, 8},
			histDisk: []int{30_000, 100_000}, histCheck: 30_000, histLoad: 20_000, histRaw: 100_000,
		}
	}
	return sizes{
		single: 10_000, concurrent: 100_000, visible: 200,
		heal:     []int{10_000, 100_000},
		joinKeys: []int{50_000, 1_000_000}, histWrite: 1_000_000, histKeys: 10_000,
		disk: 20_000, mocknet: 50, mocknetBig: 200, idle: []int{24, 100, 200},
		histDisk: []int{300_000, 1_000_000}, histCheck: 300_000, histLoad: 200_000, histRaw: 1_000_000,
	}
}

// count renders n as "10k", "1M", "500".
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
