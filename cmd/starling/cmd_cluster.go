package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/node"
)

func (e *cmdEnv) clusterCommand() *cli.Command {
	return &cli.Command{
		Name:      "cluster",
		Category:  "election",
		Usage:     "the cluster as a running node sees it",
		UsageText: "starling cluster status --data DIR [--json]",
		Flags:     clientFlags(true),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf(c, "unknown cluster subcommand %q: use status", c.Args().First())
			}
			return usageErrorf(c, "missing subcommand: use status")
		},
		Subcommands: []*cli.Command{
			{
				Name:      "status",
				Usage:     "show the cluster leader (the lowest available node ID) and the nodes",
				UsageText: "starling cluster status --data DIR [--json]",
				Description: `Shows which node leads the cluster (as this node sees it), the term, and
every node heard from: alive, available (a node still joining is not).

Example:
   starling cluster status --data ./node1 --json | jq -r .leader.leader`,
				Flags: clientFlags(true),
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					cl, err := clientFrom(c)
					if err != nil {
						return err
					}
					ci, err := cl.Cluster(c.Context)
					if err != nil {
						return err
					}
					if isJSON(c) {
						return e.printJSON(ci)
					}
					e.printCluster(ci)
					return nil
				},
			},
		},
	}
}

func (e *cmdEnv) printCluster(ci *node.ClusterInfo) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "node\t%s\n", ci.NodeID)
	switch {
	case ci.Group.Warming:
		fmt.Fprintf(w, "leader\tunknown: this node is still warming up\n")
	case ci.Leader.HasLeader():
		me := ""
		if ci.IsLeader {
			me = " (this node)"
		}
		fmt.Fprintf(w, "leader\t%s%s, term %d\n", ci.Leader.Leader, me, ci.Leader.Term)
	default:
		fmt.Fprintf(w, "leader\tnone: no node is alive and available\n")
	}
	for _, c := range ci.Group.Conflicts {
		fmt.Fprintf(w, "conflict\t%s\n", c)
	}
	_ = w.Flush()
	fmt.Fprintln(e.stdout)
	e.printMembers(ci.Group.Members)
}
