package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/node"
)

func (e *cmdEnv) initCommand() *cli.Command {
	return &cli.Command{
		Name:     "init",
		Category: "node",
		Usage:    "create a node's data directory (identity, API token, config)",
		UsageText: `starling init --data DIR [--env NAME] [--node-id ID] [--psk-file FILE | --open]
    [--listen MULTIADDR]... [--api HOST:PORT] [--peer MULTIADDR]... [--no-mdns] [--no-dht] [--force [--psk]]`,
		Description: `Creates DIR (mode 0700) with identity.key (the libp2p identity: the peer ID
stays the same across restarts), api.token, config.json and swarm.key, a new
private network key. Nothing is written unless every check passes.

Only nodes holding the same swarm.key can connect: a machine without it
cannot join, read or write, even if it reaches port 4001. So the first node
of an environment makes the key, and every other node is given a copy with
--psk-file (copy it like a password: scp, your secrets tool). A node with
another key, or none, cannot connect: its dials fail in the handshake.
libp2p's private network works over TCP only, so such a node does not use
QUIC.

--open makes a node without a key, which ANY machine that reaches its port
can join; only for networks closed by other means (a VPN, a firewall). It
says so in config.json ("open_network": true) and warns at every start.

An initialised DIR is refused unless --force is given; --force rewrites
config.json from the flags and keeps the identity, token, key, node ID
(unless --node-id), network (key file or open, unless --psk, --psk-file or
--open is given) and data. --force --psk gives an open node a key.

Example, first node of environment "plant1":
   starling init --data /var/lib/starling --env plant1
and a second one, on another machine, given a copy of that node's swarm.key:
   starling init --data /var/lib/starling --env plant1 --psk-file ./swarm.key \
       --peer /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW...`,
		Flags: append([]cli.Flag{
			dataFlag("data `DIR` to create"),
			&cli.BoolFlag{Name: flagForce, Usage: "rewrite config.json of an initialised DIR (identity, token and data are kept)"},
		}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			dir, err := requireData(c)
			if err != nil {
				return err
			}
			s, err := settingsFrom(c)
			if err != nil {
				return err
			}
			cfg, err := node.Init(dir, node.InitOptions{Settings: s, GeneratePSK: c.Bool(flagPSK), OpenNetwork: c.Bool(flagOpen), Force: c.Bool(flagForce)})
			if err != nil {
				return err
			}
			return e.printInit(dir, cfg)
		},
	}
}

func (e *cmdEnv) printInit(dir string, cfg *node.Config) error {
	id, err := node.ReadPeerID(dir)
	if err != nil {
		return err
	}
	w := e.stdout
	fmt.Fprintf(w, "initialised %s\n", dir)
	fmt.Fprintf(w, "  node id    %s\n  peer id    %s\n  env        %s\n", cfg.NodeID, id, cfg.Env)
	if p := cfg.PSKPath(dir); p != "" {
		fmt.Fprintf(w, "  swarm key  %s (the private network key: give every other node of env %q a copy, with `starling init --psk-file`; nodes without it cannot connect)\n", p, cfg.Env)
	} else {
		fmt.Fprintf(w, "  network    OPEN: no private network key; any machine that can reach this node's listen port can join and read and write all data\n")
	}
	fmt.Fprintf(w, "start it with: starling run --data %s\n", dir)
	return nil
}

func (e *cmdEnv) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Category:  "node",
		Usage:     "run a node (initialising DIR first if it is new)",
		UsageText: "starling run --data DIR [init flags to override the config for this run]",
		Description: `Starts the node of DIR: libp2p (discovery, re-dial of known peers), the
replicated store, and the HTTP API that the client commands use. A new DIR
is initialised first, with the same flags as init. For an initialised DIR
the flags override config.json for this run only (--peer adds peers).

The API address is written to DIR/api.json while the node runs, so
"starling get --data DIR /PATH" finds it. Stop with Ctrl-C or SIGTERM.

Example:
   starling run --data ./node1 --peer /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...`,
		Flags: append([]cli.Flag{dataFlag("data `DIR` of the node (created if new)"), clockOffsetFlag(), electionPresetFlag()}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			dir, err := requireData(c)
			if err != nil {
				return err
			}
			s, err := settingsFrom(c)
			if err != nil {
				return err
			}
			preset, err := electionPreset(c.String(flagPreset))
			if err != nil {
				return err
			}
			var opts []node.Option
			// undoInit removes what this run's init made when the node
			// then fails to start, so that the next run starts afresh
			// with its own flags instead of the failed run's config.
			undoInit := func() bool { return false }
			if !node.Initialised(dir) {
				undoInit = initUndoer(dir)
				cfg, err := node.Init(dir, node.InitOptions{Settings: s, GeneratePSK: c.Bool(flagPSK), OpenNetwork: c.Bool(flagOpen)})
				if err != nil {
					return err
				}
				if err := e.printInit(dir, cfg); err != nil {
					return err
				}
			} else {
				cfg, err := node.LoadConfig(dir)
				if err != nil {
					return err
				}
				if c.Bool(flagPSK) && cfg.PSKFile == "" && s.PSKFile == "" {
					return fmt.Errorf("--psk: %s is already initialised without a private network key; add one with `starling init --data %s --force --psk` (and give the other nodes a copy of its swarm.key)", dir, dir)
				}
				if c.Bool(flagOpen) && (cfg.PSKFile != "" || s.PSKFile != "") {
					return fmt.Errorf("--open: %s uses a private network key (psk_file %q), and --open only applies when a directory is initialised; to drop the key for good (any machine that reaches the port could then join): `starling init --data %s --force --open`", dir, cfg.PSKFile, dir)
				}
				if !c.IsSet("log-level") && cfg.LogLevel != "" {
					if lvl, err := parseLevel(cfg.LogLevel); err == nil {
						e.level.Set(lvl)
					}
				}
				opts = append(opts, node.WithSettings(s))
			}
			setNodeGC()
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts = append(opts, preset, node.WithLogger(e.log), node.WithClockOffset(c.Duration(flagClock)))
			n, err := node.Open(ctx, dir, append(opts, e.runOptions...)...)
			if err != nil {
				if undoInit() {
					return fmt.Errorf("%w\n(the node this run made in %s was removed again: once that is fixed, run the same command)", err, dir)
				}
				return err
			}
			e.printRunning(n)
			sdReady(e.log, n)
			wdCtx, wdStop := context.WithCancel(ctx)
			wdDone := make(chan struct{})
			go func() { defer close(wdDone); sdWatchdog(wdCtx, e.log, n.Ready) }()
			<-ctx.Done()
			wdStop()
			<-wdDone
			sdNotify(e.log, sdStopping)
			fmt.Fprintln(e.stdout, "stopping...")
			if err := n.Close(); err != nil {
				return fmt.Errorf("stop: %w", err)
			}
			fmt.Fprintln(e.stdout, "stopped")
			return nil
		},
	}
}

// initUndoer notes what DIR holds before init and returns a function
// that removes whatever was added since (DIR itself if it was new). Only
// for a DIR that init is about to fill: it holds no node yet.
func initUndoer(dir string) func() bool {
	before := map[string]bool{}
	ents, err := os.ReadDir(dir)
	existed := err == nil
	for _, e := range ents {
		before[e.Name()] = true
	}
	return func() bool {
		if !existed {
			return os.RemoveAll(dir) == nil
		}
		ents, _ := os.ReadDir(dir)
		ok := true
		for _, e := range ents {
			if !before[e.Name()] {
				ok = os.RemoveAll(filepath.Join(dir, e.Name())) == nil && ok
			}
		}
		return ok
	}
}

func (e *cmdEnv) printRunning(n *node.Node) {
	w := e.stdout
	cfg := n.Config()
	fmt.Fprintf(w, "starling node %s running (env %s)\n", cfg.NodeID, cfg.Env)
	fmt.Fprintf(w, "  peer id  %s\n", n.PeerID())
	for _, a := range n.P2P().Addrs() {
		fmt.Fprintf(w, "  listen   %s\n", a)
	}
	if sha := n.APICertSHA256(); sha != "" {
		fmt.Fprintf(w, "  api      https://%s (certificate sha256 %s: clients pin it with --api-cert-sha256)\n", n.APIAddr(), sha)
	} else {
		fmt.Fprintf(w, "  api      %s\n", n.APIAddr())
	}
	if cfg.PSKFile != "" {
		fmt.Fprintf(w, "  network  private (key %s)\n", cfg.PSKPath(n.Dir()))
	} else {
		fmt.Fprintf(w, "  network  OPEN: no private network key, any machine that reaches the listen port can join (see the warning on stderr)\n")
	}
	fmt.Fprintf(w, "  data     %s\n", n.Dir())
	if len(cfg.Peers) > 0 {
		fmt.Fprintf(w, "  peers    %d static\n", len(cfg.Peers))
	}
	fmt.Fprintf(w, "  state    %s\n", n.SyncProgress().Phase)
	// No one-time login URL here: run's output usually ends up in a log
	// (journald) that others read. local, demo and `starling web` print one.
	fmt.Fprintf(w, "  web      http://%s/ui/  (log in with a link from: starling web --data %s)\n", n.APIAddr(), n.Dir())
	fmt.Fprintf(w, "try: starling status --data %s    (stop with Ctrl-C)\n", n.Dir())
}

// absDir makes a data dir absolute for messages that users copy.
func absDir(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}
