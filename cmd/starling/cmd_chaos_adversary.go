package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/chaos/adversary"
	"github.com/starling-sync/starling/p2p"
)

// adversaryCommand is the hostile peer of the partition suite's
// "adversary" nemesis (chaos/adversary). Hidden: it is a test tool, but
// it is in every build because CI's sweep runs it against the release
// build's nodes.
func (e *cmdEnv) adversaryCommand() *cli.Command {
	d := adversary.DefaultConfig()
	return &cli.Command{
		Name:      "adversary",
		Hidden:    true,
		Usage:     "attack nodes from inside the private network (the chaos suite's adversary nemesis)",
		UsageText: "starling chaos adversary --env ENV --psk-file FILE --listen MULTIADDR --peer MULTIADDR... [--clock-ahead D]",
		Description: `A peer holding the network key that floods heads, forges deltas, sends
unreferenced blocks and junk, requests snapshots in a loop and reports a
far-future clock, until SIGTERM; then it prints what it sent as JSON.

Example:
   starling chaos adversary --env chaos --psk-file swarm.key --listen /ip4/10.77.0.5/tcp/4002 --peer /ip4/10.77.0.1/tcp/4001/p2p/12D3...`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "env", Required: true, Usage: "the nodes' environment `NAME`"},
			&cli.StringFlag{Name: "psk-file", Required: true, Usage: "the environment's private network key `FILE`"},
			&cli.StringFlag{Name: "listen", Required: true, Usage: "libp2p listen `MULTIADDR`"},
			&cli.StringSliceFlag{Name: "peer", Required: true, Usage: "a node to attack, `MULTIADDR` with /p2p/ID (repeat)"},
			&cli.Uint64Flag{Name: "seed", Usage: "random `SEED` of its choices"},
			&cli.DurationFlag{Name: "clock-ahead", Value: d.ClockAhead, Usage: "how far ahead its node-state reports' clock is (0: none)"},
			&cli.Float64Flag{Name: "heads-rate", Value: d.HeadsRate, Usage: "heads floods per second"},
			&cli.Float64Flag{Name: "forged-rate", Value: d.ForgedRate, Usage: "forged deltas per second"},
			&cli.Float64Flag{Name: "blocks-rate", Value: d.BlocksRate, Usage: "messages of unreferenced blocks per second"},
			&cli.Float64Flag{Name: "junk-rate", Value: d.JunkRate, Usage: "malformed messages per second"},
			&cli.IntFlag{Name: "snapshot-workers", Value: d.SnapshotWorkers, Usage: "concurrent state-transfer request loops"},
		},
		Action: func(c *cli.Context) error {
			psk, err := p2p.LoadPSK(c.String("psk-file"))
			if err != nil {
				return cli.Exit(err, 1)
			}
			listen, err := multiaddr.NewMultiaddr(c.String("listen"))
			if err != nil {
				return usageErrorf(c, "--listen: %v", err)
			}
			peers, err := p2p.ParsePeerAddrs(c.StringSlice("peer"))
			if err != nil {
				return usageErrorf(c, "--peer: %v", err)
			}
			cfg := d
			cfg.Env, cfg.PSK, cfg.Listen, cfg.Peers = c.String("env"), psk, listen, peers
			cfg.Seed, cfg.ClockAhead = c.Uint64("seed"), c.Duration("clock-ahead")
			cfg.HeadsRate, cfg.ForgedRate = c.Float64("heads-rate"), c.Float64("forged-rate")
			cfg.BlocksRate, cfg.JunkRate = c.Float64("blocks-rate"), c.Float64("junk-rate")
			cfg.SnapshotWorkers = c.Int("snapshot-workers")
			cfg.Logger = e.log
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := adversary.Run(ctx, cfg)
			if err != nil {
				return cli.Exit(err, 1)
			}
			fmt.Fprintf(e.stdout, "%s\n", adversary.MarshalStats(st))
			return nil
		},
	}
}
