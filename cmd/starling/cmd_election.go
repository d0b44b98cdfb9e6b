package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
)

const flagCount = "count"

func (e *cmdEnv) electionCommand() *cli.Command {
	return &cli.Command{
		Name:     "election",
		Category: "election",
		Usage:    "leader election: list groups, show one, watch its leadership",
		UsageText: `starling election ls --data DIR [--json]
   starling election status --data DIR [--json] GROUP
   starling election watch --data DIR [--json] [--count N] GROUP`,
		Description: `Every node computes each group's leader from the heartbeats it receives:
the lowest candidate ID among healthy, available candidates. "cluster" is
the built-in group of the nodes themselves. Services join groups through
the API or with "starling lead".`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf(c, "unknown election subcommand %q%s: use ls, status or watch", c.Args().First(), didYouMeanCommand(c.Args().First(), c.Command.Subcommands))
			}
			return usageErrorf(c, "missing subcommand: use ls, status or watch")
		},
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list the groups the node knows, with their leaders",
				UsageText: "starling election ls --data DIR [--json]",
				Flags:     clientFlags(true),
				Action: func(c *cli.Context) error {
					cl, err := argsAndClient(c, 0, 0, "no arguments")
					if err != nil {
						return err
					}
					gs, err := cl.ElectionGroups(c.Context)
					if err != nil {
						return err
					}
					if isJSON(c) {
						return e.printJSON(gs)
					}
					e.printGroups(gs)
					return nil
				},
			},
			{
				Name:      "status",
				Usage:     "show a group: members, alive, healthy, available, leader, term",
				ArgsUsage: "GROUP",
				UsageText: "starling election status --data DIR [--json] GROUP",
				Flags:     clientFlags(true),
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, 1, "GROUP"); err != nil {
						return err
					}
					group, err := groupArg(c)
					if err != nil {
						return err
					}
					cl, err := clientFrom(c)
					if err != nil {
						return err
					}
					g, err := cl.ElectionGroup(c.Context, group)
					if err != nil {
						return err
					}
					if isJSON(c) {
						return e.printJSON(g)
					}
					e.printGroup(g)
					return nil
				},
			},
			{
				Name:      "watch",
				Usage:     "print a group's leadership, then every change, until Ctrl-C",
				ArgsUsage: "GROUP",
				UsageText: "starling election watch --data DIR [--json] [--count N] GROUP",
				Description: `Prints the current leader of GROUP, then one line per change of leader or
term. With --json, one JSON object per line (the API's watch stream).
A group with no candidate yet, or a node that is not up yet, is waited
for (a note on stderr). Ends after --count lines, on Ctrl-C, or when the
node stops (exit 1).`,
				Flags: append(clientFlags(true), &cli.IntFlag{Name: flagCount, EnvVars: cmdEnvVar("election-watch", flagCount), Usage: "stop after `N` lines (0: never)"}),
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, 1, "GROUP"); err != nil {
						return err
					}
					group, err := groupArg(c)
					if err != nil {
						return err
					}
					if c.Int(flagCount) < 0 {
						return usageErrorf(c, "--count %d: use 0 (no limit) or more", c.Int(flagCount))
					}
					cl, err := clientFrom(c)
					if err != nil {
						return err
					}
					return e.watchGroup(c, cl, group)
				},
			},
		},
	}
}

// isJSON reads --json from the command or a parent.
func isJSON(c *cli.Context) bool {
	for _, x := range c.Lineage() {
		if x.Bool(flagJSON) {
			return true
		}
	}
	return false
}

func groupArg(c *cli.Context) (string, error) {
	g := c.Args().First()
	if err := election.CheckGroupName(g); err != nil {
		return "", usageErrorf(c, "%v", strings.TrimPrefix(err.Error(), "election: invalid argument: "))
	}
	return g, nil
}

// watchGroup follows group. A group with no candidate yet (unknown to
// the node) is waited for, as is a node that is not up yet: both are
// normal while a cluster starts (issue 17: watch exited instead).
func (e *cmdEnv) watchGroup(c *cli.Context, cl *api.Client, group string) error {
	var stream *api.EventStream
	var wait time.Duration
	said := false
	for {
		var err error
		stream, err = cl.WatchGroup(c.Context, group, api.WatchOptions{Keepalive: 2 * time.Second})
		if err == nil {
			break
		}
		if c.Context.Err() != nil {
			return nil // Ctrl-C
		}
		if !errors.Is(err, api.ErrNotFound) && !nodeDown(err, inherited(c, flagData)) {
			return err
		}
		if !said {
			what := "group " + group + " has no candidate yet"
			if !errors.Is(err, api.ErrNotFound) {
				what = "the node is not reachable (" + cleanMessage(err) + ")"
			}
			fmt.Fprintf(e.stderr, "starling: %s; waiting (Ctrl-C to stop)\n", what)
			said = true
		}
		wait = backoff(wait)
		if !sleepCtx(c.Context, wait) {
			return nil
		}
	}
	// Ctrl-C cancels c.Context, which aborts the stream's request.
	defer stream.Close()
	for n := 0; c.Int(flagCount) == 0 || n < c.Int(flagCount); n++ {
		ev, err := stream.Next()
		if err != nil {
			if c.Context.Err() != nil {
				return nil // Ctrl-C
			}
			if errors.Is(err, api.ErrStreamClosed) {
				return errors.New("the node stopped")
			}
			return err
		}
		if isJSON(c) {
			if err := e.printJSONLine(api.ElectionEvent{Type: "state", Event: ev}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(e.stdout, "%s  %s\n", time.Now().Format("15:04:05.000"), describeEvent(ev))
	}
	return nil
}

// describeEvent is one line for humans.
func describeEvent(ev election.Event) string {
	var b strings.Builder
	if ev.HasLeader() {
		fmt.Fprintf(&b, "%s: leader %s (node %s), term %d", ev.Group, ev.Leader, ev.Node, ev.Term)
	} else {
		fmt.Fprintf(&b, "%s: no leader (term %d)", ev.Group, ev.Term)
	}
	if ev.Warming {
		b.WriteString(", node warming up")
	}
	if ev.Reason != "" {
		prev := ev.Previous.Leader
		if prev == "" {
			prev = "none"
		}
		fmt.Fprintf(&b, "  [was %s, %s]", prev, ev.Reason)
	}
	return b.String()
}

// printJSONLine prints v as one line of JSON (for streams).
func (e *cmdEnv) printJSONLine(v any) error {
	return json.NewEncoder(e.stdout).Encode(v)
}

func leaderText(l election.Leadership) string {
	if !l.HasLeader() {
		return "none"
	}
	return l.Leader
}

func (e *cmdEnv) printGroups(gs []api.ElectionGroup) {
	if len(gs) == 0 {
		fmt.Fprintln(e.stdout, "no groups")
		return
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "GROUP\tKIND\tMODE\tLEADER\tTERM\tELIGIBLE/MEMBERS")
	for _, g := range gs {
		elig := 0
		for _, m := range g.Members {
			if m.Eligible {
				elig++
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d/%d\n", g.Name, g.Kind, g.Mode, leaderText(g.Leader), g.Leader.Term, elig, len(g.Members))
	}
	_ = w.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (e *cmdEnv) printGroup(g *api.ElectionGroup) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "group\t%s (%s, %s)\n", g.Name, g.Kind, g.Mode)
	switch {
	case g.Warming:
		fmt.Fprintf(w, "leader\tunknown: this node is still warming up (listening before it decides)\n")
	case g.Leader.HasLeader():
		fmt.Fprintf(w, "leader\t%s on node %s, term %d, for %s\n", g.Leader.Leader, g.Leader.Node, g.Leader.Term,
			(time.Duration(g.SinceMS) * time.Millisecond).String())
	default:
		fmt.Fprintf(w, "leader\tnone: no candidate is alive, healthy and available (term %d)\n", g.Leader.Term)
	}
	for _, c := range g.Conflicts {
		fmt.Fprintf(w, "conflict\t%s\n", c)
	}
	_ = w.Flush()
	fmt.Fprintln(e.stdout)
	e.printMembers(g.Members)
}

func (e *cmdEnv) printMembers(ms []api.ElectionMember) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CANDIDATE\tNODE\tALIVE\tHEALTHY\tAVAILABLE\tLEADER\tACTIVE\tLAST HEARD")
	for _, m := range ms {
		id := m.ID
		if m.Local {
			id += " (this node)"
		}
		if m.Duplicate {
			id += " DUPLICATE NODE ID"
		}
		heard := "-"
		if !m.Local {
			heard = (time.Duration(m.LastSeenMS) * time.Millisecond).String() + " ago"
		}
		leader := ""
		if m.Leader {
			leader = "LEADER"
		}
		avail := yesNo(m.Available)
		if m.Settling {
			avail = "settling"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, m.Node, yesNo(m.Alive), yesNo(m.Healthy), avail, leader, yesNo(m.Active), heard)
	}
	_ = w.Flush()
}
