package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/chaos"
)

// Flags of chaos. Their environment variables are STARLING_CHAOS_<NAME>,
// which do not touch other commands (--nodes is also local's).
const (
	flagChaosScenarios = "scenarios"
	flagChaosRounds    = "rounds"
	flagChaosNodes     = "nodes"
	flagChaosSeed      = "seed"
	flagChaosSoak      = "soak"
	flagChaosModel     = "model"
	flagChaosCheck     = "check"
	flagChaosRate      = "rate"
	flagChaosArtifacts = "artifacts"
	flagChaosKeep      = "keep-artifacts"
	flagChaosBinary    = "binary"
	flagChaosList      = "list"
	flagChaosLinkDelay = "link-delay"
	flagChaosFaultMin  = "fault-min"
	flagChaosFaultMax  = "fault-max"
	flagChaosMaxPeers  = "max-peers"
)

// chaosEnvVar is a chaos flag's environment variable: STARLING_CHAOS_<NAME>
// (--json: STARLING_JSON, as everywhere).
func chaosEnvVar(name string) []string {
	if name == flagJSON {
		return envVar(name)
	}
	return cmdEnvVar("chaos", name)
}

// chaosTestCommands are hidden subcommands of chaos that exist only in
// test builds: flags_chaosbroken.go (build tag chaosbroken) adds the
// deliberately broken node the control test starts. Empty otherwise.
var chaosTestCommands []func(e *cmdEnv) *cli.Command

// checkNone turns the extra checkers off (--check none).
const checkNone = "none"

func (e *cmdEnv) chaosCommand() *cli.Command {
	subs := []*cli.Command{e.adversaryCommand()}
	for _, f := range chaosTestCommands {
		subs = append(subs, f(e))
	}
	return &cli.Command{
		Name:      "chaos",
		Category:  "testing",
		Usage:     "run the partition suite: real nodes in network namespaces, faults, and checks",
		UsageText: "starling chaos [--scenarios A,B+C] [--rounds N] [--nodes N] [--seed S] [--soak DURATION] [--model entity|kv] [--check election|none] [--list]",
		Description: `Starts real "starling run" processes, each in its own network namespace
on a private bridge (10.77.0.0/24, which exists only inside the suite's
namespaces), writes on every node while faults come and go, then checks
that every node ends with the same data, no acknowledged write lost and no
value nobody wrote. It prints one row per scenario: faults, writes
acknowledged, lost, phantom, divergent, leaders, tree violations,
convergence time after the heals; then failover and heal times of the
leader election.

--model entity (the default) writes typed fields on an entity tree, deletes
and restores some entities and moves others, and judges every field by
last-writer-wins: the expected winner is the greatest (HLC timestamp,
writer) among acknowledged writes. It also checks the tree (no cycle, no
orphan, concurrent moves resolved as entity/doc.go says). --model kv drives
the raw key-value API instead.

--check election (the default) checks that, once stable, every connected
component has exactly one cluster leader, the lowest running node ID, and
measures failover and heal times; --check none turns it off.

A scenario is one nemesis or several joined by '+' (see --list). Without
--scenarios it runs the quick sweep: every nemesis once (but those --list
marks pending), and two combinations. --soak 20m then keeps running random
combinations.

The nat-* nemeses run in a network of their own: node 1 public on the
bridge (192.0.0.0/24 there, which libp2p counts as public; it too exists
only inside the suite's namespaces), every other node alone in a site
behind its own NAT router (masquerade, no port forwarding; nat-symmetric
puts the last behind a symmetric NAT), knowing only node 1. Their "nat" checker requires writes
to cross between the sites within 2 s (nat-hub-kill: with node 1 killed)
and the sites to connect to each other within 30 s of meeting (directly,
where the node says how it is connected). nat-upnp puts every site behind a
router that maps ports on request (miniupnpd: UPnP IGD and NAT-PMP; on
11.78.0.0/24, since miniupnpd refuses to map behind a special-purpose
address): each site's node must get a mapping within 30 s and announce it,
the sites must dial each other at their mapped addresses (not hole-punched),
and with node 1 killed writes must cross within 2 s. It needs miniupnpd
(Debian: apt-get install miniupnpd-nftables) and is skipped, saying so,
without it.

It needs Linux, ip (iproute2), nft (nftables) and unshare (util-linux);
iptables for the delay nemesis. It runs itself again under unshare with new
network, mount and PID namespaces (and a user namespace without root), so
nothing it does reaches the machine's network and nothing is left behind.

Every run prints its seed; --seed replays the same faults, targets and
client choices. A failed scenario keeps the nodes' logs, the history (JSON
lines) and a report under --artifacts. Exit code 1 if any check failed.

Examples:
   starling chaos
   starling chaos --scenarios partition-halves,kill+loss --rounds 3
   starling chaos --seed 123456 --scenarios wipe
   starling chaos --nodes 3 --scenarios nat-hub-kill
   starling chaos --model kv --check none --scenarios loss
   starling chaos --soak 20m
   STARLING_ELECTION_PRESET=wan starling chaos --nodes 3 --scenarios kill --rounds 40 \
     --link-delay 100ms --fault-min 10s --fault-max 20s   # a WAN soak`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: flagChaosScenarios, EnvVars: chaosEnvVar(flagChaosScenarios),
				Usage: "`SCENARIO`s to run, comma-separated; nemeses joined by '+' run together (default: the quick sweep)"},
			&cli.IntFlag{Name: flagChaosRounds, Value: 1, EnvVars: chaosEnvVar(flagChaosRounds),
				Usage: "fault-and-heal rounds per scenario"},
			&cli.IntFlag{Name: flagChaosNodes, Value: 5, EnvVars: chaosEnvVar(flagChaosNodes),
				Usage: "nodes per scenario (5: the smallest cluster with a 2|3 split and a bridge with 2 per side)"},
			&cli.Uint64Flag{Name: flagChaosSeed, EnvVars: chaosEnvVar(flagChaosSeed),
				Usage: "`SEED` of every random choice (default: a new one, printed)"},
			&cli.DurationFlag{Name: flagChaosSoak, EnvVars: chaosEnvVar(flagChaosSoak),
				Usage: "after the scenarios, run random combinations (3 rounds each) for `DURATION` (e.g. 20m)"},
			&cli.StringFlag{Name: flagChaosModel, Value: chaos.DefaultModel, EnvVars: chaosEnvVar(flagChaosModel),
				Usage: "workload and checks: `MODEL` entity (typed fields, LWW oracle, tree checks) or kv (raw keys)"},
			&cli.StringSliceFlag{Name: flagChaosCheck, Value: cli.NewStringSlice(chaos.DefaultChecks...), EnvVars: chaosEnvVar(flagChaosCheck),
				Usage: "additional `CHECKER`s (see --list; \"none\" for none)"},
			&cli.DurationFlag{Name: flagChaosLinkDelay, EnvVars: chaosEnvVar(flagChaosLinkDelay),
				Usage: "hold every frame between nodes `DELAY` for the whole run (a round trip takes twice that): each round's faults strike a wide-area network"},
			&cli.DurationFlag{Name: flagChaosFaultMin, Value: 4 * time.Second, EnvVars: chaosEnvVar(flagChaosFaultMin),
				Usage: "shortest time a fault holds (longer for the wan election preset: its failover takes 4-5 s)"},
			&cli.DurationFlag{Name: flagChaosFaultMax, Value: 8 * time.Second, EnvVars: chaosEnvVar(flagChaosFaultMax),
				Usage: "longest time a fault holds"},
			&cli.IntFlag{Name: flagChaosMaxPeers, EnvVars: chaosEnvVar(flagChaosMaxPeers), DefaultText: "the nodes' default",
				Usage: "start every node with --max-peers `N`: below nodes-1 the cluster runs on bounded connections, whose splits the nodes must heal by dialling beyond the bound"},
			&cli.Float64Flag{Name: flagChaosRate, Value: 20, EnvVars: chaosEnvVar(flagChaosRate),
				Usage: "client operations per second per node"},
			&cli.StringFlag{Name: flagChaosArtifacts, Value: "chaos-artifacts", EnvVars: chaosEnvVar(flagChaosArtifacts),
				Usage: "`DIR` where failed scenarios keep logs, history and report (in a folder per run)"},
			&cli.BoolFlag{Name: flagChaosKeep, EnvVars: chaosEnvVar(flagChaosKeep),
				Usage: "keep the artifacts of passing scenarios too"},
			&cli.StringFlag{Name: flagChaosBinary, EnvVars: chaosEnvVar(flagChaosBinary),
				Usage: "starling `BINARY` the nodes run (default: this one)"},
			&cli.BoolFlag{Name: flagChaosList, EnvVars: chaosEnvVar(flagChaosList), Usage: "list nemeses, models and checkers, and the quick sweep"},
			&cli.BoolFlag{Name: flagJSON, EnvVars: chaosEnvVar(flagJSON), Usage: "print the report as JSON"},
		},
		// Hidden, test builds only.
		Subcommands: subs,
		Action:      e.chaosAction,
	}
}

func (e *cmdEnv) chaosAction(c *cli.Context) error {
	if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	reg := chaos.NewRegistry()
	if c.Bool(flagChaosList) {
		return e.chaosList(reg)
	}
	cfg := chaos.Config{
		Nodes:         c.Int(flagChaosNodes),
		Rounds:        c.Int(flagChaosRounds),
		Seed:          c.Uint64(flagChaosSeed),
		Soak:          c.Duration(flagChaosSoak),
		LinkDelay:     c.Duration(flagChaosLinkDelay),
		FaultMin:      c.Duration(flagChaosFaultMin),
		FaultMax:      c.Duration(flagChaosFaultMax),
		MaxPeers:      c.Int(flagChaosMaxPeers),
		Model:         c.String(flagChaosModel),
		Checks:        chaosChecks(c.StringSlice(flagChaosCheck)),
		Rate:          c.Float64(flagChaosRate),
		ArtifactsDir:  c.String(flagChaosArtifacts),
		KeepArtifacts: c.Bool(flagChaosKeep),
		Binary:        c.String(flagChaosBinary),
		Registry:      reg,
	}
	for _, s := range cleanList(c.StringSlice(flagChaosScenarios)) {
		cfg.Scenarios = append(cfg.Scenarios, chaos.ParseScenario(s))
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary for the nodes: %w (use --%s)", err, flagChaosBinary)
		}
		cfg.Binary = exe
	}
	var err error
	if cfg.Binary, err = filepath.Abs(cfg.Binary); err != nil {
		return err
	}
	if cfg.ArtifactsDir, err = filepath.Abs(cfg.ArtifactsDir); err != nil {
		return err
	}
	// Check the flags here, before starting anything. Zero means "the
	// default" in Config; on the command line the defaults are explicit,
	// so a zero is a mistake.
	switch {
	case cfg.Rounds < 1:
		return usageErrorf(c, "--%s %d: want at least 1", flagChaosRounds, cfg.Rounds)
	case cfg.Nodes < 2:
		return usageErrorf(c, "--%s %d: want at least 2", flagChaosNodes, cfg.Nodes)
	case cfg.Rate <= 0:
		return usageErrorf(c, "--%s %g: want a positive rate", flagChaosRate, cfg.Rate)
	case cfg.FaultMin <= 0 || cfg.FaultMax < cfg.FaultMin:
		return usageErrorf(c, "--%s %s --%s %s: want 0 < min <= max", flagChaosFaultMin, cfg.FaultMin, flagChaosFaultMax, cfg.FaultMax)
	}
	check := cfg
	check.EnsureDefaults()
	if err := check.Validate(); err != nil {
		return usageErrorf(c, "%v", err)
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !chaos.Isolated() {
		if err := chaos.CheckPrerequisites(ctx); err != nil {
			return err
		}
		err := chaos.RunIsolated(ctx, cfg.Binary, chaosChildArgs(c, cfg), nil, e.stdout, e.stderr)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// The isolated run has said why.
			return &exitError{err: fmt.Errorf("chaos: the suite ended with exit code %d", ee.ExitCode()), code: max(ee.ExitCode(), 1)}
		}
		return err
	}

	if err := chaos.Enter(); err != nil {
		return err
	}
	level := slog.LevelInfo
	if e.level.Level() < level {
		level = e.level.Level()
	}
	cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})).With("component", "chaos")
	rep, runErr := chaos.Run(ctx, cfg)
	if rep != nil {
		if c.Bool(flagJSON) {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(e.stdout)
			fmt.Fprint(e.stdout, rep.String())
		}
	}
	switch {
	case runErr != nil:
		return runErr
	case !rep.OK():
		msg := "chaos: the partition suite found problems (see the report above)"
		if rep.Artifacts != "" {
			msg += "; artifacts in " + rep.Artifacts
		}
		return errors.New(msg)
	}
	return nil
}

// chaosChecks cleans the --check list; "none" clears it.
func chaosChecks(ss []string) []string {
	var out []string
	for _, s := range cleanList(ss) {
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p == checkNone {
				return nil
			} else if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// chaosChildArgs are the arguments of the isolated run: the resolved
// configuration as explicit flags (the seed too, once chosen by the child,
// is printed by it).
func chaosChildArgs(c *cli.Context, cfg chaos.Config) []string {
	args := []string{"--log-level", c.String("log-level"), "chaos",
		"--" + flagChaosNodes, strconv.Itoa(cfg.Nodes),
		"--" + flagChaosRounds, strconv.Itoa(cfg.Rounds),
		"--" + flagChaosSeed, strconv.FormatUint(cfg.Seed, 10),
		"--" + flagChaosSoak, cfg.Soak.String(),
		"--" + flagChaosLinkDelay, cfg.LinkDelay.String(),
		"--" + flagChaosFaultMin, cfg.FaultMin.String(),
		"--" + flagChaosFaultMax, cfg.FaultMax.String(),
		"--" + flagChaosMaxPeers, strconv.Itoa(cfg.MaxPeers),
		"--" + flagChaosModel, cfg.Model,
		"--" + flagChaosRate, strconv.FormatFloat(cfg.Rate, 'g', -1, 64),
		"--" + flagChaosArtifacts, cfg.ArtifactsDir,
		"--" + flagChaosBinary, cfg.Binary,
	}
	var names []string
	for _, s := range cfg.Scenarios {
		names = append(names, s.Name)
	}
	if len(names) > 0 {
		args = append(args, "--"+flagChaosScenarios, strings.Join(names, ","))
	}
	if len(cfg.Checks) == 0 {
		args = append(args, "--"+flagChaosCheck, checkNone)
	}
	for _, ch := range cfg.Checks {
		args = append(args, "--"+flagChaosCheck, ch)
	}
	if cfg.KeepArtifacts {
		args = append(args, "--"+flagChaosKeep)
	}
	if c.Bool(flagJSON) {
		args = append(args, "--"+flagJSON)
	}
	return args
}

func (e *cmdEnv) chaosList(reg *chaos.Registry) error {
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NEMESIS\tWHAT IT DOES")
	for _, n := range reg.Nemeses() {
		desc := n.Describe()
		if why := chaos.PendingNemeses[n.Name()]; why != "" {
			desc += " [pending, not in the quick sweep: " + why + "]"
		}
		if by := chaos.CoveredNemeses[n.Name()]; by != "" {
			desc += " [not in the quick sweep: " + by + " runs its steps]"
		}
		fmt.Fprintf(w, "%s\t%s\n", n.Name(), desc)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var sweep []string
	for _, s := range chaos.QuickSweep(reg) {
		sweep = append(sweep, s.Name)
	}
	checks := strings.Join(reg.Checkers(), ", ")
	if checks == "" {
		checks = "none yet"
	}
	fmt.Fprintf(e.stdout, "\nmodels: %s\nadditional checkers (--check): %s\nquick sweep: %s\n",
		strings.Join(reg.Models(), ", "), checks, strings.Join(sweep, ", "))
	return nil
}
