package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/p2p"
)

// demoOptions configure the demo.
type demoOptions struct {
	Keys    int           // keys written on each side of the partition
	Timeout time.Duration // bound of every wait
	Keep    bool          // keep the data directory
}

func (e *cmdEnv) demoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		Category:  "node",
		Usage:     "start 3 nodes, write, cut one off, write on both sides, heal, show convergence and leader failover",
		UsageText: "starling demo [--keys N] [--timeout D] [--keep]",
		Description: `Runs a 3-node cluster in this process, on 127.0.0.1 with free ports, in a
temporary directory (removed afterwards unless --keep). It writes on node1
and shows the value on node2 and node3 with timings, cuts node3 off with a
connection gater on both sides (a partition, not a stopped node), writes on
both sides, shows that they differ, heals, and waits until all three hold
every key. Then the leader election: node1 leads, is cut off (node2 takes
over), comes back (leads again), and stops gracefully (hands over at once).
Exit code 1 if a step does not finish within --timeout.

Example:
   starling demo --keys 1000`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "keys", Value: 200, EnvVars: cmdEnvVar("demo", "keys"), Usage: "keys written on each side of the partition"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, EnvVars: cmdEnvVar("demo", "timeout"), Usage: "give up when a step takes longer than `DURATION`"},
			&cli.BoolFlag{Name: "keep", EnvVars: cmdEnvVar("demo", "keep"), Usage: "keep the nodes' data directory and print where it is"},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			o := demoOptions{Keys: c.Int("keys"), Timeout: c.Duration("timeout"), Keep: c.Bool("keep")}
			if o.Keys < 1 || o.Keys > 1_000_000 {
				return usageErrorf(c, "--keys %d: use 1 to 1000000", o.Keys)
			}
			if o.Timeout <= 0 {
				return usageErrorf(c, "--timeout %v: must be positive", o.Timeout)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return e.runDemo(ctx, o)
		},
	}
}

type demo struct {
	out     io.Writer
	o       demoOptions
	nodes   []*node.Node
	clients []*api.Client
	step    int
}

func (d *demo) header(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n== %d. %s\n", d.step, title)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "   "+format+"\n", args...)
}

func ms(dur time.Duration) string {
	switch {
	case dur < time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(dur)/float64(time.Millisecond))
	case dur < time.Second:
		return fmt.Sprintf("%.1f ms", float64(dur)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", dur.Seconds())
}

func (e *cmdEnv) runDemo(ctx context.Context, o demoOptions) (err error) {
	began := time.Now()
	root, err := os.MkdirTemp("", "starling-demo-")
	if err != nil {
		return fmt.Errorf("demo: temp dir: %w", err)
	}
	d := &demo{out: e.stdout, o: o}
	defer func() {
		if cerr := closeAll(d.nodes); cerr != nil && err == nil {
			err = cerr
		}
		if o.Keep {
			fmt.Fprintf(d.out, "\nData kept in %s (start a node again with: starling run --data %s)\n", root, filepath.Join(root, "node1"))
			return
		}
		if rerr := os.RemoveAll(root); rerr != nil && err == nil {
			err = fmt.Errorf("demo: remove %s: %w", root, rerr)
		}
	}()
	fmt.Fprintf(d.out, "Starling demo: 3 nodes in this process, on 127.0.0.1, data in %s\n", root)

	// 1. Start and connect.
	d.header("Start three nodes and connect them (static peers, no discovery needed)")
	psk, err := p2p.GeneratePSK() // one private network, as `init --psk-file` would give them
	if err != nil {
		return fmt.Errorf("demo: private network key: %w", err)
	}
	for i := 1; i <= 3; i++ {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		_, err := node.Init(dir, node.InitOptions{PSK: psk, Settings: node.Settings{
			Env: "demo", NodeID: fmt.Sprintf("node%d", i),
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
			NoMDNS: true, NoDHT: true,
		}})
		if err != nil {
			return err
		}
		n, err := node.Open(ctx, dir, node.WithLogger(e.log))
		if err != nil {
			return err
		}
		d.nodes = append(d.nodes, n)
		d.clients = append(d.clients, n.Client())
		d.say("%s  peer %s  api %s  %s", n.NodeID(), n.PeerID(), n.APIAddr(), n.SyncProgress().Phase)
	}
	// The one-time login link goes to this output only, never to a log.
	d.say("web page of node1 while the demo runs: %s", d.nodes[0].WebLoginURL())
	start := time.Now()
	for i, n := range d.nodes {
		for _, m := range d.nodes[i+1:] {
			addr := m.P2P().Addrs()[0].String()
			if _, err := d.clients[i].AddPeer(ctx, addr); err != nil {
				return fmt.Errorf("%s: add peer %s: %w", n.NodeID(), addr, err)
			}
		}
	}
	if err := d.waitConnected(ctx, "all nodes to connect", d.nodes, 2); err != nil {
		return err
	}
	d.say("all 3 connected after %s; node states as each node sees the others:", ms(time.Since(start)))
	reportNodeStates(ctx, d.out, "     ", d.nodes, o.Timeout)

	// 2. Replicate one write.
	d.header("Write on node1, read on node2 and node3")
	const helloKey, helloValue = "demo/hello", "world, from node1"
	start = time.Now()
	if err := d.clients[0].Put(ctx, helloKey, []byte(helloValue)); err != nil {
		return err
	}
	d.say("node1: put %s = %q (durable after %s)", helloKey, helloValue, ms(time.Since(start)))
	var wg sync.WaitGroup
	lat := make([]time.Duration, 3)
	errs := make([]error, 3)
	for i := 1; i < 3; i++ {
		wg.Go(func() {
			_, errs[i] = poll(ctx, o.Timeout, time.Millisecond, func(ctx context.Context) (bool, error) {
				v, err := d.clients[i].Get(ctx, helloKey)
				return err == nil && string(v) == helloValue, ignoreNotFound(err)
			})
			lat[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i := 1; i < 3; i++ {
		if errs[i] != nil {
			return fmt.Errorf("%s never saw %s: %w", d.nodes[i].NodeID(), helloKey, errs[i])
		}
		d.say("%s: get %s = %q, %s after the write began", d.nodes[i].NodeID(), helloKey, helloValue, ms(lat[i]))
	}
	lats, err := d.latencies(ctx, latencyWrites)
	if err != nil {
		return err
	}
	d.say("%d more writes on node1, one at a time: visible on both others after %s median, %s max",
		latencyWrites, ms(lats[len(lats)/2]), ms(lats[len(lats)-1]))
	e1 := d.nodes[0].Entities()
	if _, err := e1.Create(ctx, "/", "Site", "Plant"); err != nil {
		return err
	}
	if _, err := e1.Create(ctx, "/Plant", "Line", "Line1"); err != nil {
		return err
	}
	if _, err := e1.Set(ctx, demoEntity, demoField, entity.Int(100)); err != nil {
		return err
	}
	if _, err := poll(ctx, o.Timeout, time.Millisecond, func(context.Context) (bool, error) {
		for _, n := range d.nodes {
			if f, err := n.Entities().GetField(demoEntity, demoField); err != nil || f.Value.Int != 100 {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("entity %s did not replicate: %w", demoEntity, err)
	}
	d.say("node1: created entity %s (type Line) with %s = 100; every node shows it", demoEntity, demoField)

	// 3. Partition.
	d.header("Cut node3 off (connection gater on both sides; the process keeps running)")
	cut := d.nodes[2]
	for _, n := range d.nodes[:2] {
		n.P2P().Block(cut.PeerID())
		cut.P2P().Block(n.PeerID())
	}
	start = time.Now()
	if err := d.waitConnected(ctx, "node3 to be cut off", d.nodes[2:], 0); err != nil {
		return err
	}
	if err := d.waitConnected(ctx, "node1 and node2 to stay connected", d.nodes[:2], 1); err != nil {
		return err
	}
	d.say("node3 has no connections after %s; node1 and node2 still talk to each other", ms(time.Since(start)))

	// 4. Write on both sides.
	d.header(fmt.Sprintf("Write %d keys on each side, and the same entity field on both", o.Keys))
	start = time.Now()
	if err := errors.Join(
		putMany(ctx, d.clients[0], "demo/side-a", o.Keys, "written on node1"),
		putMany(ctx, d.clients[2], "demo/side-b", o.Keys, "written on node3"),
	); err != nil {
		return err
	}
	// The conflict: node1 writes the field many times, node3 once, later.
	// go-ds-crdt alone would keep node1's value (its branch is higher);
	// the entity layer's last-writer-wins keeps node3's.
	for i := 1; i <= 100; i++ {
		if _, err := e1.Set(ctx, demoEntity, demoField, entity.Int(int64(100+i))); err != nil {
			return err
		}
	}
	vb, err := d.nodes[2].Entities().Set(ctx, demoEntity, demoField, entity.Int(42))
	if err != nil {
		return err
	}
	d.say("node1: %d keys under demo/side-a/, and %s.%s written 100 times (last 200)", o.Keys, demoEntity, demoField)
	d.say("node3: %d keys under demo/side-b/, and %s.%s = 42, written once, later (%s by %s)",
		o.Keys, demoEntity, demoField, vb.Timestamp.Time().Format("15:04:05.000000"), vb.Writer)
	d.say("(%d writes, durable, in %s)", 2*o.Keys+101, ms(time.Since(start)))
	sideA := o.Keys + 1 // hello, side-a
	if _, err := poll(ctx, o.Timeout, 10*time.Millisecond, func(ctx context.Context) (bool, error) {
		s, err := d.state(ctx, 1)
		return err == nil && s.total == sideA && s.field == "200", err
	}); err != nil {
		return fmt.Errorf("node2 did not get node1's writes: %w", err)
	}
	for i := range d.nodes {
		s, err := d.state(ctx, i)
		if err != nil {
			return err
		}
		d.say("%s holds %s", d.nodes[i].NodeID(), s)
	}
	if s, _ := d.state(ctx, 2); s.sideA != 0 {
		return fmt.Errorf("the partition leaked: node3 holds %d of node1's keys", s.sideA)
	}
	d.say("-> the two sides differ")

	// 5. Heal.
	d.header("Heal the partition and wait until every node holds every key")
	for _, n := range d.nodes[:2] {
		n.P2P().Unblock(cut.PeerID())
		cut.P2P().Unblock(n.PeerID())
	}
	start = time.Now()
	want := 2*o.Keys + 1
	var last []demoState
	_, err = poll(ctx, o.Timeout, 10*time.Millisecond, func(ctx context.Context) (bool, error) {
		last = last[:0]
		done := true
		for i := range d.nodes {
			s, err := d.state(ctx, i)
			if err != nil {
				return false, err
			}
			last = append(last, s)
			done = done && s.total == want && s.field == "42"
		}
		return done, nil
	})
	if err != nil {
		var b strings.Builder
		for i, s := range last {
			fmt.Fprintf(&b, "; %s holds %s", d.nodes[i].NodeID(), s)
		}
		return fmt.Errorf("no convergence within %v (want %d keys everywhere)%s: %w", o.Timeout, want, b.String(), err)
	}
	heal := time.Since(start)
	for i, s := range last {
		d.say("%s holds %s", d.nodes[i].NodeID(), s)
	}
	d.say("-> converged %s after the heal (%d keys on each node)", ms(heal), want)
	d.say("%s.%s = 42 on every node: the latest write (hybrid logical timestamp, then writer) wins,", demoEntity, demoField)
	d.say("   not the side that wrote more (node1's 100 writes lose to node3's one later write)")

	// 6. Leader election.
	crash, graceful, err := d.failover(ctx)
	if err != nil {
		return err
	}

	fmt.Fprintf(d.out, "\nDone in %s: heal time %s for %d writes made during the partition; failover %s after a crash, %s after a graceful leave.\n",
		ms(time.Since(began)), ms(heal), 2*o.Keys+101, ms(crash), ms(graceful))
	return nil
}

// failover shows the cluster's leader election: node1 (the lowest ID)
// leads; cut off, node2 takes over once node1's heartbeats are missed;
// back, node1 leads again; leaving gracefully, it hands over at once.
func (d *demo) failover(ctx context.Context) (crash, graceful time.Duration, err error) {
	d.header("Leader election: the lowest healthy node ID leads the cluster")
	leaders := func(nodes []*node.Node) string {
		var parts []string
		for _, n := range nodes {
			l := n.Election().Leader(election.ClusterGroup)
			parts = append(parts, fmt.Sprintf("%s: %s (term %d)", n.NodeID(), orNone(l.Node), l.Term))
		}
		return strings.Join(parts, ", ")
	}
	agree := func(nodes []*node.Node, want string) func(context.Context) (bool, error) {
		return func(context.Context) (bool, error) {
			for _, n := range nodes {
				if n.Election().Leader(election.ClusterGroup).Node != want {
					return false, nil
				}
			}
			return true, nil
		}
	}
	if _, err := poll(ctx, d.o.Timeout, 10*time.Millisecond, agree(d.nodes, "node1")); err != nil {
		return 0, 0, fmt.Errorf("no agreement on node1 as leader within %v (%s): %w", d.o.Timeout, leaders(d.nodes), err)
	}
	d.say("every node agrees: %s", leaders(d.nodes))

	n1, rest := d.nodes[0], d.nodes[1:]
	for _, n := range rest {
		n1.P2P().Block(n.PeerID())
		n.P2P().Block(n1.PeerID())
	}
	crash, err = poll(ctx, d.o.Timeout, 5*time.Millisecond, agree(rest, "node2"))
	if err != nil {
		return 0, 0, fmt.Errorf("no failover to node2 within %v (%s): %w", d.o.Timeout, leaders(rest), err)
	}
	d.say("node1 cut off (as if it crashed): node2 and node3 follow node2 after %s (node1's heartbeats missed)", ms(crash))
	d.say("   %s", leaders(rest))
	for _, n := range rest {
		n1.P2P().Unblock(n.PeerID())
		n.P2P().Unblock(n1.PeerID())
	}
	back, err := poll(ctx, d.o.Timeout, 5*time.Millisecond, agree(d.nodes, "node1"))
	if err != nil {
		return 0, 0, fmt.Errorf("node1 not leading again within %v (%s): %w", d.o.Timeout, leaders(d.nodes), err)
	}
	d.say("node1 back: it leads again after %s (the lowest healthy ID, with a higher term)", ms(back))
	start := time.Now()
	if err := n1.Close(); err != nil {
		return 0, 0, fmt.Errorf("stop node1: %w", err)
	}
	if _, err := poll(ctx, d.o.Timeout, time.Millisecond, agree(rest, "node2")); err != nil {
		return 0, 0, fmt.Errorf("no handover to node2 within %v (%s): %w", d.o.Timeout, leaders(rest), err)
	}
	graceful = time.Since(start)
	d.say("node1 stops gracefully (it says goodbye): node2 leads %s after the stop began", ms(graceful))
	return crash, graceful, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// latencyWrites is how many writes step 2 times.
const latencyWrites = 20

// latencies writes n keys on node1 one at a time and returns, sorted, how
// long each took from the start of the write until node2 and node3 both
// returned it.
func (d *demo) latencies(ctx context.Context, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		key, val := fmt.Sprintf("demo-latency/%02d", i), fmt.Sprint(i) // outside demo/, which steps 4-5 count
		start := time.Now()
		if err := d.clients[0].Put(ctx, key, []byte(val)); err != nil {
			return nil, err
		}
		_, err := poll(ctx, d.o.Timeout, 200*time.Microsecond, func(ctx context.Context) (bool, error) {
			for _, c := range d.clients[1:] {
				v, err := c.Get(ctx, key)
				if err != nil || string(v) != val {
					return false, ignoreNotFound(err)
				}
			}
			return true, nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s never reached node2 and node3: %w", key, err)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out, nil
}

// demoState is what one node holds of the demo's keys.
type demoState struct {
	total, sideA, sideB int
	field               string // demoEntity's demoField
}

// The entity and field of the demo's conflicting write.
const demoEntity, demoField = "/Plant/Line1", "setpoint"

func (s demoState) String() string {
	return fmt.Sprintf("%d keys (side a %d, side b %d), %s = %s", s.total, s.sideA, s.sideB, demoField, s.field)
}

func (d *demo) state(ctx context.Context, i int) (demoState, error) {
	es, err := d.clients[i].List(ctx, "demo")
	if err != nil {
		return demoState{}, err
	}
	s := demoState{total: len(es)}
	for _, e := range es {
		switch {
		case strings.HasPrefix(e.Key, "demo/side-a/"):
			s.sideA++
		case strings.HasPrefix(e.Key, "demo/side-b/"):
			s.sideB++
		}
	}
	s.field = "(none)"
	if f, err := d.nodes[i].Entities().GetField(demoEntity, demoField); err == nil {
		s.field = f.Value.String()
	}
	return s, nil
}

// waitConnected waits until each of nodes has exactly want connected
// peers among the demo's nodes (at least want when want > 0).
func (d *demo) waitConnected(ctx context.Context, what string, nodes []*node.Node, want int) error {
	ids := map[peer.ID]bool{}
	for _, n := range d.nodes {
		ids[n.PeerID()] = true
	}
	_, err := poll(ctx, d.o.Timeout, 5*time.Millisecond, func(context.Context) (bool, error) {
		for _, n := range nodes {
			c := 0
			for _, p := range n.P2P().Peers() {
				if p.Connected && ids[p.ID] {
					c++
				}
			}
			if (want == 0 && c != 0) || c < want {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// putMany writes prefix/0000..prefix/n-1 with 8 concurrent writers, so
// that group commit puts many writes in one delta.
func putMany(ctx context.Context, c *api.Client, prefix string, n int, value string) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := c.Put(ctx, fmt.Sprintf("%s/%04d", prefix, i), []byte(value)); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, api.ErrNotFound) {
		return nil
	}
	return err
}

// poll calls cond every interval until it returns true or an error, or
// until timeout; it returns how long that took. Errors from cond while
// the deadline has passed are reported as the deadline.
func poll(ctx context.Context, timeout, interval time.Duration, cond func(context.Context) (bool, error)) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if ctx.Err() != nil {
			return time.Since(start), fmt.Errorf("gave up after %v: %w", timeout, ctx.Err())
		}
		if err != nil {
			return time.Since(start), err
		}
		if ok {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("gave up after %v: %w", timeout, ctx.Err())
		case <-t.C:
		}
	}
}
