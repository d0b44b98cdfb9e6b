//go:build chaosbroken

package main

// A deliberately broken node, for the partition suite's control test
// only (chaos.TestChaosCatchesBrokenBuild): a green chaos run means
// something only if the same checkers fail on a build that loses data.
// This file exists in binaries built with `-tags chaosbroken`; release
// builds have neither the command nor its flag.
//
//	starling chaos broken-node --break drop-remote --data DIR [run flags]
//
// runs `starling run` with one defect:
//
//	drop-remote  the node drops every replication message (and election
//	             heartbeat) from other nodes, as a build that loses remote
//	             deltas would; its own writes still reach the others
//	             (p2p.Config.DropInbound, a hook only this build sets).

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/p2p"
	"github.com/urfave/cli/v2"
)

const flagChaosBreak = "break"

func init() {
	chaosTestCommands = append(chaosTestCommands, brokenNodeCommand)
}

func brokenNodeCommand(e *cmdEnv) *cli.Command {
	run := e.runCommand()
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: flagChaosBreak, Required: true, EnvVars: cmdEnvVar("chaos-broken", flagChaosBreak),
			Usage: "the defect: `MODE` drop-remote (drop every replication message from other nodes)"},
	}, run.Flags...)
	return &cli.Command{
		Name:      "broken-node",
		Hidden:    true,
		Usage:     "run a node with a deliberate defect (test builds only: -tags chaosbroken)",
		UsageText: "starling chaos broken-node --break drop-remote --data DIR [run flags]",
		Description: `For the partition suite's control test: the checkers must fail on it.

Example:
   starling chaos broken-node --break drop-remote --data ./n1`,
		Flags: flags,
		Action: func(c *cli.Context) error {
			switch mode := c.String(flagChaosBreak); mode {
			case "drop-remote":
				e.runOptions = append(e.runOptions, node.WithP2PConfig(func(pc *p2p.Config) {
					pc.DropInbound = func(peer.ID) bool { return true }
				}))
				fmt.Fprintln(e.stderr, "chaos broken-node: dropping every replication message and heartbeat from other nodes")
			default:
				return usageErrorf(c, "--%s %q: the only defect is drop-remote", flagChaosBreak, mode)
			}
			return run.Action(c)
		},
	}
}
