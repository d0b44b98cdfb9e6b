package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/p2p"
)

// Limits of `local`.
const (
	maxLocalNodes = 64
	localEnv      = "local"
)

// localNode is the plan for node k of `local`.
type localNode struct {
	Name   string // node1, node2, ...
	Dir    string // ROOT/node1
	Listen string // /ip4/127.0.0.1/tcp/<base+k>
	API    string // 127.0.0.1:<apiBase+k>
}

// localPlan lays out n nodes: node k (from 1) in ROOT/nodek, listening
// on 127.0.0.1 at basePort+k-1 with its API at apiBase+k-1 (node1 on the
// base ports themselves).
func localPlan(root string, n, basePort, apiBase int) ([]localNode, error) {
	var errs []error
	if n < 1 || n > maxLocalNodes {
		errs = append(errs, fmt.Errorf("--nodes %d: use 1 to %d", n, maxLocalNodes))
	}
	if basePort < 1 || basePort+n-1 > 65535 {
		errs = append(errs, fmt.Errorf("--base-port %d: ports %d..%d must be within 1..65535", basePort, basePort, basePort+n-1))
	}
	if apiBase < 1 || apiBase+n-1 > 65535 {
		errs = append(errs, fmt.Errorf("--api-base-port %d: ports %d..%d must be within 1..65535", apiBase, apiBase, apiBase+n-1))
	}
	if n >= 1 && basePort < apiBase+n && apiBase < basePort+n {
		errs = append(errs, fmt.Errorf("--base-port %d and --api-base-port %d: the ranges %d..%d and %d..%d overlap; move one of them",
			basePort, apiBase, basePort, basePort+n-1, apiBase, apiBase+n-1))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	plan := make([]localNode, n)
	for i := range plan {
		k := i + 1
		plan[i] = localNode{
			Name:   fmt.Sprintf("node%d", k),
			Dir:    filepath.Join(root, fmt.Sprintf("node%d", k)),
			Listen: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", basePort+i),
			API:    fmt.Sprintf("127.0.0.1:%d", apiBase+i),
		}
	}
	return plan, nil
}

// localPeers are the static peers of node i (0-based): every other node.
func localPeers(plan []localNode, ids []peer.ID, i int) []string {
	var out []string
	for j, p := range plan {
		if j != i {
			out = append(out, p.Listen+"/p2p/"+ids[j].String())
		}
	}
	return out
}

func (e *cmdEnv) localCommand() *cli.Command {
	return &cli.Command{
		Name:      "local",
		Category:  "node",
		Usage:     "run N connected nodes in this process, for development",
		UsageText: "starling local --data DIR [--nodes N] [--base-port P] [--api-base-port P] [--env NAME]",
		Description: `Runs N nodes on 127.0.0.1 until Ctrl-C. Node k keeps its data in DIR/nodek
(created on first use, reused afterwards), listens on base-port+k-1, serves
its API on api-base-port+k-1 (node1 on 4101 and 7501 by default), and has
every other node as a static peer
(mDNS is off: loopback has no multicast). The nodes share one private
network key, DIR/swarm.key, made on first use (each node has a copy).

Example:
   starling local --data /tmp/cluster --nodes 3
   starling create --data /tmp/cluster/node1 --type sensor /Sensor7    # in another shell
   starling set --data /tmp/cluster/node1 /Sensor7 temp 21.5
   starling get --data /tmp/cluster/node3 /Sensor7`,
		Flags: []cli.Flag{
			dataFlag("root `DIR` for the nodes' data directories (DIR/node1, ...)"),
			&cli.IntFlag{Name: "nodes", Aliases: []string{"n"}, Value: 3, EnvVars: cmdEnvVar("local", "nodes"), Usage: "number of nodes (1 to 64)"},
			&cli.IntFlag{Name: "base-port", Value: 4101, EnvVars: cmdEnvVar("local", "base-port"), Usage: "libp2p TCP `PORT` of node1; node k uses PORT+k-1"},
			&cli.IntFlag{Name: "api-base-port", Value: 7501, EnvVars: cmdEnvVar("local", "api-base-port"), Usage: "API `PORT` of node1; node k uses PORT+k-1"},
			&cli.StringFlag{Name: flagEnv, Value: localEnv, EnvVars: envVar(flagEnv), Usage: "environment `NAME` of the nodes"},
			clockOffsetFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			root, err := requireData(c)
			if err != nil {
				return err
			}
			plan, err := localPlan(root, c.Int("nodes"), c.Int("base-port"), c.Int("api-base-port"))
			if err != nil {
				return usageErrorf(c, "%v", err)
			}
			setNodeGC()
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			nodes, err := e.startLocal(ctx, root, plan, c.String(flagEnv), node.WithClockOffset(c.Duration(flagClock)))
			if err != nil {
				return err
			}
			e.printLocal(root, nodes)
			fmt.Fprintln(e.stdout, "\nWeb page (one-time login links; `starling web --data DIR` makes new ones):")
			for _, n := range nodes {
				fmt.Fprintf(e.stdout, "  %s  %s\n", n.NodeID(), n.WebLoginURL())
			}
			fmt.Fprintln(e.stdout, "\nNode states as they come up:")
			reportNodeStates(ctx, e.stdout, "  ", nodes, 30*time.Second)
			<-ctx.Done()
			fmt.Fprintln(e.stdout, "stopping...")
			return closeAll(nodes)
		},
	}
}

// localPSK returns the private network key the nodes of `local` share:
// ROOT/swarm.key, made on first use. Every node directory gets a copy
// when it is initialised, so that each can also be run on its own.
func localPSK(root string) ([]byte, error) {
	path := filepath.Join(root, api.SwarmKeyFile)
	psk, err := p2p.LoadPSK(path)
	switch {
	case err == nil:
		return psk, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("the key the local nodes share: %w: remove %s (and the node directories made with it), or choose another --data", err, path)
	}
	if psk, err = p2p.GeneratePSK(); err != nil {
		return nil, fmt.Errorf("generate the key the local nodes share: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create --data %s: %w: choose a writable directory", root, err)
	}
	if err := p2p.WritePSK(path, psk); err != nil {
		return nil, fmt.Errorf("write the key the local nodes share: %w", err)
	}
	return psk, nil
}

// checkLocalKeys makes sure every planned node uses the shared key psk:
// a node with another key, or none (a directory made before local
// shared a key), could not connect to the others.
func checkLocalKeys(root string, plan []localNode, psk []byte) error {
	var odd []string
	for _, p := range plan {
		cfg, err := node.LoadConfig(p.Dir)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		var have []byte
		if path := cfg.PSKPath(p.Dir); path != "" {
			if have, err = p2p.LoadPSK(path); err != nil {
				return fmt.Errorf("%s: psk_file: %w", p.Name, err)
			}
		}
		if !bytes.Equal(have, psk) {
			odd = append(odd, p.Name)
		}
	}
	if len(odd) == 0 {
		return nil
	}
	key := filepath.Join(root, api.SwarmKeyFile)
	return fmt.Errorf("%s of %s do not use the private network key the local nodes share (%s): they have another or none, so they could not connect to the others; give each that key with `starling init --data %s --force --psk-file %s`, or start over with an empty --data",
		strings.Join(odd, ", "), root, key, filepath.Join(root, "NODE"), key)
}

// startLocal initialises (if new) and opens the planned nodes, which
// share one private network key (localPSK); on error the ones already
// open are closed.
func (e *cmdEnv) startLocal(ctx context.Context, root string, plan []localNode, env string, opts ...node.Option) (_ []*node.Node, err error) {
	psk, err := localPSK(root)
	if err != nil {
		return nil, err
	}
	ids := make([]peer.ID, len(plan))
	for i, p := range plan {
		if !node.Initialised(p.Dir) {
			_, err := node.Init(p.Dir, node.InitOptions{PSK: psk, Settings: node.Settings{
				Env: env, NodeID: p.Name, ListenAddrs: []string{p.Listen}, APIAddr: p.API, NoMDNS: true,
			}})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Name, err)
			}
		}
		if ids[i], err = node.ReadPeerID(p.Dir); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	if err := checkLocalKeys(root, plan, psk); err != nil {
		return nil, err
	}
	// All at once, as a cluster's machines boot: opened one after another,
	// 24 nodes came up over several seconds and the early ones elected
	// before the later ones were there.
	opened := make([]*node.Node, len(plan))
	errs := make([]error, len(plan))
	var wg sync.WaitGroup
	for i, p := range plan {
		wg.Go(func() {
			n, err := node.Open(ctx, p.Dir, append([]node.Option{node.WithLogger(e.log), node.WithSettings(node.Settings{
				Env: env, ListenAddrs: []string{p.Listen}, APIAddr: p.API, NoMDNS: true,
				Peers: localPeers(plan, ids, i),
			})}, opts...)...)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", p.Name, err)
				return
			}
			opened[i] = n
		})
	}
	wg.Wait()
	var nodes []*node.Node
	for _, n := range opened {
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = closeAll(nodes)
		return nil, err
	}
	for _, n := range nodes {
		fmt.Fprintf(e.stdout, "%s up: %s\n", n.NodeID(), progressLine(n.SyncProgress(), time.Now()))
	}
	return nodes, nil
}

func closeAll(nodes []*node.Node) error {
	var errs []error
	for i := len(nodes) - 1; i >= 0; i-- {
		if err := nodes[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", nodes[i].NodeID(), err))
		}
	}
	return errors.Join(errs...)
}

func (e *cmdEnv) printLocal(root string, nodes []*node.Node) {
	fmt.Fprintf(e.stdout, "%s running on 127.0.0.1 (env %s), data in %s\n\n", counted(len(nodes), "node", "nodes"), nodes[0].Config().Env, absDir(root))
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tPEER ID\tLISTEN\tAPI\tDATA")
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.NodeID(), n.PeerID(), n.Config().ListenAddrs[0], n.APIAddr(), n.Dir())
	}
	_ = w.Flush()
	last := nodes[len(nodes)-1]
	fmt.Fprintf(e.stdout, `
Talk to them from another shell:
  starling create --data %s --type sensor /Sensor7
  starling set --data %[1]s /Sensor7 temp 21.5
  starling get --data %s /Sensor7
  starling status --data %s
  starling ls --data %s
or with curl:
  curl -H "Authorization: Bearer $(cat %s)" http://%s/v1/status
Stop with Ctrl-C.
`, nodes[0].Dir(), last.Dir(), last.Dir(), nodes[0].Dir(), filepath.Join(nodes[0].Dir(), api.TokenFile), nodes[0].APIAddr())
}
