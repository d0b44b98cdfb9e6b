package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/bench"
)

// Flags of bench.
const (
	flagBenchOnly    = "only"
	flagBenchQuick   = "quick"
	flagBenchBudget  = "budget"
	flagBenchNodes   = "nodes"
	flagBenchNet     = "net"
	flagBenchWorkDir = "work-dir"
	flagBench10M     = "history-10m"
)

func (e *cmdEnv) benchCommand() *cli.Command {
	var workloads strings.Builder
	for _, w := range bench.Workloads {
		help := bench.WorkloadHelp[w]
		if !slices.Contains(bench.DefaultWorkloads, w) {
			help += " (only with --only)"
		}
		fmt.Fprintf(&workloads, "  %-8s %s\n", w, help)
	}
	return &cli.Command{
		Name:      "bench",
		Category:  "testing",
		Usage:     "benchmark Starling beside raw go-ds-crdt on the same workloads, in one table",
		UsageText: "starling bench [--only writes,visible,...] [--quick] [--budget 60s] [--nodes 50] [--json]",
		Description: `Runs, in this process and one after the other, Starling (real nodes on
127.0.0.1: LevelDB, libp2p, the entity tree) and raw go-ds-crdt v0.6.8 set
up as its README does (crdt.DefaultOptions, PubSubBroadcaster, bitswap,
go-ds-leveldb with default options) on the same workloads, and prints one
table: workload | starling | raw go-ds-crdt | ratio | target. The ratio is
how many times better Starling is (above 1: Starling is better). The header
names the machine's cores, GOMAXPROCS and Go version: figures vary from
machine to machine and run to run, the ratios much less.

Workloads (--only takes these names):
` + workloads.String() + `
Every run has a time budget (--budget): raw go-ds-crdt needs minutes for
some workloads (a fresh node took ~17 min for 50k keys here), so a run that
is not done by then is cut off and shown as "> 60s (timed out, N% done)".
Setting up a store to join or heal from is not part of the budget.

Progress goes to stderr; the table (or --json) to stdout. A full run takes
10-20 minutes and a few GB of memory (1M fields on two nodes); --quick
runs small sizes in a minute or two (the CI run). Nothing asserts speed:
the exit code is 1 only if the bench itself could not run.

Examples:
   starling bench --quick
   starling bench --only writes,visible
   starling bench --only join --budget 5m
   starling bench --only mocknet --nodes 100 --json > bench.json
   starling bench --only idle --nodes 100 --election-preset wan
   starling bench --only mocknet200 --net loopback --election-preset wan --budget 2m`,
		Flags: []cli.Flag{
			electionPresetFlag(),
			&cli.StringSliceFlag{Name: flagBenchOnly, EnvVars: cmdEnvVar("bench", flagBenchOnly),
				Usage: "run only these `WORKLOAD`s, comma-separated: " + strings.Join(bench.Workloads, ", ") + " (default: all but mocknet200 and idle)"},
			&cli.BoolFlag{Name: flagBenchQuick, EnvVars: cmdEnvVar("bench", flagBenchQuick),
				Usage: "small sizes (1k-20k writes, 10 mocknet nodes): a quick check, the CI run; targets are set for the full sizes"},
			&cli.DurationFlag{Name: flagBenchBudget, Value: bench.DefaultBudget, EnvVars: cmdEnvVar("bench", flagBenchBudget),
				Usage: "time budget of every measured run (`DURATION`); runs not done by then are shown as timed out with how much was done"},
			&cli.IntFlag{Name: flagBenchNodes, EnvVars: cmdEnvVar("bench", flagBenchNodes), DefaultText: "50; 10 with --quick",
				Usage: "`N` simulated nodes of the mocknet workload, 3-200"},
			&cli.StringFlag{Name: flagBenchNet, Value: bench.NetMocknet, EnvVars: cmdEnvVar("bench", flagBenchNet),
				Usage: "`NET`work of the mocknet, mocknet200 and idle workloads: " + bench.NetMocknet + " (libp2p's in-memory mocknet: quick to set up, but its locks stall 200 nodes) or " + bench.NetLoopback + " (real libp2p hosts on 127.0.0.1: TCP, TLS, yamux; no lock shared between nodes, and every message costs what it costs between real nodes)"},
			&cli.BoolFlag{Name: flagBench10M, EnvVars: cmdEnvVar("bench", flagBench10M),
				Usage: "history workload: add the row for 10M overwrites (Starling only; several minutes) and join into that store"},
			&cli.StringFlag{Name: flagBenchWorkDir, EnvVars: cmdEnvVar("bench", flagBenchWorkDir),
				Usage: "`DIR` for the nodes' data directories, removed afterwards (default: the system's temporary directory; disk figures depend on its file system)"},
			&cli.BoolFlag{Name: flagJSON, EnvVars: envVar(flagJSON),
				Usage: "print the report as JSON (header, rows with both results, notes) instead of the table"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf(c, "bench takes no arguments, got %q", c.Args().First())
			}
			var only []string
			for _, s := range c.StringSlice(flagBenchOnly) {
				for _, w := range strings.Split(s, ",") {
					if w = strings.TrimSpace(w); w != "" {
						only = append(only, w)
					}
				}
			}
			// The nodes' warnings (a peer gone, a dial refused) are what a
			// bench provokes: only errors show, unless --log-level is given.
			log := e.log
			if !c.IsSet("log-level") {
				log = slog.New(minLevel{e.log.Handler(), slog.LevelError})
			}
			cfg := bench.Config{
				Only:           only,
				Quick:          c.Bool(flagBenchQuick),
				Budget:         c.Duration(flagBenchBudget),
				Nodes:          c.Int(flagBenchNodes),
				Net:            c.String(flagBenchNet),
				ElectionPreset: c.String(flagPreset),
				History10M:     c.Bool(flagBench10M),
				Dir:            c.String(flagBenchWorkDir),
				Progress:       e.stderr,
				Logger:         log,
			}
			if cfg.Budget == 0 {
				return usageErrorf(c, "--%s must be positive (e.g. 60s)", flagBenchBudget)
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf(c, "%v", err)
			}
			// Ctrl-C prints what was measured so far.
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := bench.Run(ctx, cfg)
			if rep != nil {
				if c.Bool(flagJSON) {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					if jerr := enc.Encode(rep); jerr != nil {
						return jerr
					}
				} else if ferr := rep.Format(e.stdout); ferr != nil {
					return ferr
				}
			}
			if err != nil {
				return err
			}
			return nil
		},
	}
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
