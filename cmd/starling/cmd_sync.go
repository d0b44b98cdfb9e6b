package main

import (
	"fmt"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/nodestate"
	"github.com/urfave/cli/v2"
)

// syncCommands are `resync` and `sync status`.
func (e *cmdEnv) syncCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "resync",
			Category:  "cluster",
			Usage:     "replace a node's state with a peer's by state transfer, keeping its unreplicated writes",
			UsageText: "starling resync --data DIR [--peer PEER_ID] [--no-wait] [--json]",
			Description: `The usual fix for a node whose data differs from its peers' for good: it
copies a peer's current state (the replicated store, not its history),
installs it, and merges its own writes that peers do not have yet. While
it runs the node is SYNCING and not a candidate for leadership.

Without --peer the first connected peer that can serve is used. The
command shows progress with an ETA until the node is ACTIVE again;
--no-wait returns once the transfer started.

Examples:
   starling resync --data ./node3
   starling resync --data ./node3 --peer 12D3KooW... --json`,
			Flags: append(clientFlags(true),
				&cli.StringFlag{Name: flagPeer, EnvVars: cmdEnvVar("resync", flagPeer), Usage: "copy from the peer with this `PEER_ID` (see `starling cluster peers`)"},
				&cli.BoolFlag{Name: "no-wait", EnvVars: cmdEnvVar("resync", "no-wait"), Usage: "return once the transfer started"},
			),
			Action: func(c *cli.Context) error {
				cl, err := argsAndClient(c, 0, 0, "no arguments")
				if err != nil {
					return err
				}
				p, err := cl.Resync(c.Context, c.String(flagPeer))
				if err != nil {
					return err
				}
				if !c.Bool("no-wait") {
					if c.Bool(flagJSON) {
						p, err = waitActive(c, cl)
					} else {
						err = followSync(c.Context, e.stdout, 200*time.Millisecond, cl.SyncProgress)
						if err == nil {
							p, err = cl.SyncProgress(c.Context)
						}
					}
					if err != nil {
						return err
					}
				}
				if c.Bool(flagJSON) {
					return e.printJSON(p)
				}
				if c.Bool("no-wait") {
					fmt.Fprintln(e.stdout, progressLine(p, time.Now()))
				}
				return resyncOutcome(p)
			},
		},
		{
			Name:      "sync",
			Category:  "cluster",
			Usage:     "show a node's join/resync state (JOINING, SYNCING with progress, ACTIVE)",
			UsageText: "starling sync status --data DIR [--follow] [--json]",
			Subcommands: []*cli.Command{{
				Name:      "status",
				Usage:     "show the node's join/resync state and the progress of a state transfer",
				UsageText: "starling sync status --data DIR [--follow] [--json]",
				Flags: append(clientFlags(true),
					&cli.BoolFlag{Name: "follow", EnvVars: cmdEnvVar("sync-status", "follow"), Usage: "keep showing progress until the node is ACTIVE"},
				),
				Action: func(c *cli.Context) error {
					cl, err := argsAndClient(c, 0, 0, "no arguments")
					if err != nil {
						return err
					}
					if c.Bool("follow") && !c.Bool(flagJSON) {
						return followSync(c.Context, e.stdout, 200*time.Millisecond, cl.SyncProgress)
					}
					var p nodestate.SyncProgress
					if c.Bool("follow") {
						p, err = waitActive(c, cl)
					} else {
						p, err = cl.SyncProgress(c.Context)
					}
					if err != nil {
						return err
					}
					if c.Bool(flagJSON) {
						return e.printJSON(p)
					}
					fmt.Fprintln(e.stdout, progressLine(p, time.Now()))
					return nil
				},
			}},
		},
	}
}

// waitActive polls the node until it is ACTIVE.
func waitActive(c *cli.Context, cl *api.Client) (nodestate.SyncProgress, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		p, err := cl.SyncProgress(c.Context)
		if err != nil || p.Phase == nodestate.PhaseActive {
			return p, err
		}
		select {
		case <-c.Context.Done():
			return p, c.Context.Err()
		case <-t.C:
		}
	}
}

// resyncOutcome turns a finished resync that failed into an error.
func resyncOutcome(p nodestate.SyncProgress) error {
	if p.Phase == nodestate.PhaseActive && p.LastError != "" {
		return cli.Exit("resync failed: "+p.LastError, 1)
	}
	return nil
}
