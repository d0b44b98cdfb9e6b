package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// The cluster admin commands: status, peers, add, remove, over the
// node's API (GET /v1/cluster/status; POST and DELETE /v1/peers), and
// `starling web`.

func (e *cmdEnv) clusterCommand() *cli.Command {
	return &cli.Command{
		Name:      "cluster",
		Category:  "node",
		Usage:     "the cluster as a running node sees it: status, peers, add, remove",
		UsageText: "starling cluster status|peers|add|remove --data DIR [--json] ...",
		Description: `Every node computes a state for each node it knows, from the small report
each node gossips every second: JOINING or SYNCING (catching up by state
transfer), ACTIVE, SUSPECT (reports late, 3 s), DEAD (no report for 10 s),
LEAVING and LEFT (a graceful stop); and the sync health of the link:
Connected, Syncing, Indirect (no direct connection; its reports and data
come through other nodes: a node keeps up to 12 connections, so this is
most peers of a larger cluster), Disconnected (it resyncs when the link is
back).

Examples:
   starling cluster status --data ./node1
   starling cluster add --data ./node1 /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...
   starling cluster remove --data ./node1 node3`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf(c, "unknown cluster subcommand %q%s: use status, peers, add or remove", c.Args().First(), didYouMeanCommand(c.Args().First(), c.Command.Subcommands))
			}
			return usageErrorf(c, "missing subcommand: use status, peers, add or remove")
		},
		Subcommands: []*cli.Command{
			e.clusterStatusCommand(),
			e.clusterPeersCommand(),
			e.clusterAddCommand(),
			e.clusterRemoveCommand(),
		},
	}
}

func (e *cmdEnv) clusterStatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "mode, leader, and every node: state, sync health, last seen, writes, heads, lag",
		UsageText: "starling cluster status --data DIR [--json]",
		Description: `Shows the cluster as this node sees it: standalone or cluster, the number
of nodes, the leader (the lowest available node ID) and its term, and a row
per node. A node that is joining or syncing gets a progress bar with an ETA.

The columns, each as the node last reported it (about every second):
   STATE         JOINING, SYNCING, ACTIVE, SUSPECT (no report for 3s), DEAD
                 (none for 10s), LEAVING, LEFT
   SYNC          the link from this node: Connected, Syncing, Indirect,
                 Disconnected
   LAST SEEN     when its last report arrived here
   WRITES        writes committed on that node since it started (its own)
   MSGS IN       replication messages it received from peers since it
                 started (one message can carry many writes)
   HEADS         the tips of its history (DAG heads): usually 1; more after
                 it merged concurrent writes (from other nodes, or from the
                 other side of a partition), until its next write joins them
   LAG           how many DAG heights it is behind the highest node known:
                 0 when it is caught up; a lag that does not shrink means
                 it is not receiving (see SYNC, and starling resync)
   LIVE/HISTORY  its live state and history on disk (starling compact)
--json has the same as numbers (writes_out is WRITES, writes_in MSGS IN).

Example:
   starling cluster status --data ./node1 --json | jq -r .leader.leader`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 0, "no arguments")
			if err != nil {
				return err
			}
			cs, err := cl.ClusterStatus(c.Context)
			if errors.Is(err, api.ErrNotFound) {
				// A node of an earlier version: the election's view only.
				ci, err := cl.Cluster(c.Context)
				if err != nil {
					return err
				}
				if isJSON(c) {
					return e.printJSON(ci)
				}
				e.printCluster(ci)
				return nil
			}
			if err != nil {
				return err
			}
			if isJSON(c) {
				return e.printJSON(cs)
			}
			e.printClusterStatus(cs, time.Now())
			return nil
		},
	}
}

func (e *cmdEnv) clusterPeersCommand() *cli.Command {
	return &cli.Command{
		Name:      "peers",
		Usage:     "the other nodes: peer ID, node, state, sync health, connection, address",
		UsageText: "starling cluster peers --data DIR [--json]",
		Description: `Lists the peers this node knows (static, discovered, or connected), with the
node ID and state it has learnt from each. CONNECTED says how: direct,
hole-punched (a direct connection made by hole punching through NAT) or
relayed (through another node's relay, when there is no direct path); or
"no", with the reason when the node can tell (network-key: another private
network key; environment: another --env; unreachable; refused), explained
below the table.

Example:
   starling cluster peers --data ./node1 --json | jq -r '.[] | select(.state != "ACTIVE") | .node_id'`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 0, "no arguments")
			if err != nil {
				return err
			}
			cs, err := cl.ClusterStatus(c.Context)
			if err != nil {
				return err
			}
			peers := make([]api.NodeView, 0, len(cs.Nodes))
			for _, n := range cs.Nodes {
				if !n.Self {
					peers = append(peers, n)
				}
			}
			if isJSON(c) {
				return e.printJSON(peers)
			}
			if len(peers) == 0 {
				fmt.Fprintln(e.stdout, "no peers known yet: add one with `starling cluster add`")
				return nil
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PEER ID\tNODE\tSTATE\tSYNC\tCONNECTED\tSTATIC\tLAST SEEN\tVERSION\tADDRESS")
			var problems []api.NodeView
			for _, p := range peers {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.PeerID, orDash(p.NodeID), p.State, orDash(string(p.Health)),
					connectedCell(p), yesNo(p.Static), lastSeen(p), orDash(p.Version), firstOr(p.Addrs, "-"))
				if p.Problem != "" && !p.Connected {
					problems = append(problems, p)
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintf(e.stdout, "%s: %s\n", p.PeerID, problemLine(p))
			}
			return nil
		},
	}
}

// addResult is `cluster add --json`.
type addResult struct {
	ID        string `json:"id"`
	Connected bool   `json:"connected"`
	Saved     bool   `json:"saved"` // in the node's config.json (--save)
}

func (e *cmdEnv) clusterAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "dial a node and remember it (re-dialled whenever the link drops)",
		ArgsUsage: "MULTIADDR",
		UsageText: "starling cluster add --data DIR [--save] [--wait DURATION] [--json] /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...",
		Description: `Adds a static peer to the running node and dials it; the node keeps it and
re-dials it with backoff while it runs. With --save the node also writes
it into its config.json (peers), so that it is dialled again after a
restart; without, a restart forgets it. With --wait, waits until it is
connected.

Example:
   starling cluster add --data ./node1 --save --wait 10s /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...`,
		Flags: append(clientFlags(true), &cli.DurationFlag{Name: "wait", EnvVars: cmdEnvVar("cluster-add", "wait"),
			Usage: "wait up to `DURATION` until the peer is connected (exit 1 if it is not)"},
			&cli.BoolFlag{Name: "save", EnvVars: cmdEnvVar("cluster-add", "save"),
				Usage: "also keep the peer in the node's config.json, so that it is dialled again after a restart"}),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "MULTIADDR")
			if err != nil {
				return err
			}
			// Checked here too, so a typo fails without a request.
			if _, err := p2p.ParsePeerAddr(c.Args().First()); err != nil {
				return err
			}
			add := cl.AddPeer
			if c.Bool("save") {
				add = cl.AddPeerSaved
			}
			id, err := add(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			res := addResult{ID: id, Saved: c.Bool("save")}
			if d := c.Duration("wait"); d > 0 {
				_, werr := poll(c.Context, d, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
					cs, err := cl.ClusterStatus(ctx)
					if err != nil {
						return false, err
					}
					for _, n := range cs.Nodes {
						if n.PeerID == id && n.Connected {
							return true, nil
						}
					}
					return false, nil
				})
				res.Connected = werr == nil
				if werr != nil && !isJSON(c) {
					return fmt.Errorf("added %s, but it is not connected after %v (the node keeps dialling it): %w; check that the address is reachable, and that both nodes use the same private network key (swarm.key, `psk_file` in config.json) and the same environment: a node with another key, or none, fails in the connection handshake", id, d, werr)
				}
			}
			if isJSON(c) {
				return e.printJSON(res)
			}
			saved := " (not saved: a restart forgets it; --save keeps it in config.json)"
			if res.Saved {
				saved = ", saved in config.json"
			}
			if res.Connected {
				fmt.Fprintf(e.stdout, "added %s (connected)%s\n", id, saved)
			} else {
				fmt.Fprintf(e.stdout, "added %s%s\n", id, saved)
			}
			return nil
		},
	}
}

// removeResult is `cluster remove --json`.
type removeResult struct {
	Peer string `json:"peer"`
	Node string `json:"node,omitempty"`
}

func (e *cmdEnv) clusterRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "forget a node: close its connections, never re-dial it",
		ArgsUsage: "NODE",
		UsageText: "starling cluster remove --data DIR [--json] NODE-ID|PEER-ID",
		Description: `Forgets a node, named by node ID or peer ID: its connections are closed, it
is not re-dialled, discovery does not bring it back, and it leaves the
cluster table. "cluster add" brings it back. An unknown node is an error
(exit code 1).

Example:
   starling cluster remove --data ./node1 node3`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "NODE")
			if err != nil {
				return err
			}
			name := c.Args().First()
			res, err := resolveNode(c.Context, cl, name)
			if err != nil {
				return err
			}
			if err := cl.RemovePeer(c.Context, res.Peer); err != nil {
				if errors.Is(err, api.ErrNotFound) {
					return fmt.Errorf("node %q is not known to this node: see `starling cluster peers`", name)
				}
				return err
			}
			if isJSON(c) {
				return e.printJSON(res)
			}
			if res.Node != "" {
				fmt.Fprintf(e.stdout, "removed %s (%s)\n", res.Node, res.Peer)
			} else {
				fmt.Fprintf(e.stdout, "removed %s\n", res.Peer)
			}
			return nil
		},
	}
}

// resolveNode finds a node of the cluster table by node ID or peer ID.
// A peer ID the table lacks is passed on as is (the node may know the
// peer without a report from it); anything else is a clear error.
func resolveNode(ctx context.Context, cl *api.Client, name string) (removeResult, error) {
	cs, err := cl.ClusterStatus(ctx)
	if err != nil {
		return removeResult{}, err
	}
	var known []string
	for _, n := range cs.Nodes {
		if n.Self {
			if name == n.NodeID || name == n.PeerID {
				return removeResult{}, fmt.Errorf("%q is the node you are talking to: remove it from the others (or stop it)", name)
			}
			continue
		}
		if name == n.NodeID || name == n.PeerID {
			return removeResult{Peer: n.PeerID, Node: n.NodeID}, nil
		}
		known = append(known, orDash(n.NodeID))
	}
	if _, err := peer.Decode(name); err == nil {
		return removeResult{Peer: name}, nil
	}
	slices.Sort(known)
	hint := "it knows no other node"
	if len(known) > 0 {
		hint = "known: " + strings.Join(known, ", ")
	}
	return removeResult{}, fmt.Errorf("node %q is not known to this node (%s): give a node ID or peer ID from `starling cluster peers`", name, hint)
}

func (e *cmdEnv) printClusterStatus(cs *api.ClusterStatus, now time.Time) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "mode\t%s (%d node%s)\n", cs.Mode, cs.NodeCount, plural(cs.NodeCount))
	fmt.Fprintf(w, "node\t%s\n", cs.NodeID)
	printLeader(w, cs.Group, cs.Leader, cs.IsLeader)
	fmt.Fprintf(w, "sync\t%s\n", progressLine(cs.Sync, now))
	_ = w.Flush()
	fmt.Fprintln(e.stdout)

	w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tPEER ID\tSTATE\tSYNC\tLAST SEEN\tWRITES\tMSGS IN\tHEADS\tLAG\tLIVE/HISTORY\tADDRESS")
	var syncing []api.NodeView
	for _, n := range cs.Nodes {
		name := orDash(n.NodeID)
		if n.Self {
			name += " (this node)"
		}
		if n.Leader {
			name += " *"
		}
		health := string(n.Health)
		if n.Self {
			health = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", name, shortPeer(n.PeerID), n.State, orDash(health),
			lastSeen(n), n.WritesOut, n.WritesIn, n.Heads, n.Lag, storeSizes(n.LiveBytes, n.HistoryBytes), firstOr(n.Addrs, "-"))
		if !n.Self && n.LastSeen != nil && n.Sync.Phase != nodestate.PhaseActive && n.Sync.Phase != "" {
			syncing = append(syncing, n)
		}
	}
	_ = w.Flush()
	for _, n := range syncing {
		fmt.Fprintf(e.stdout, "%s: %s\n", n.NodeID, progressLine(n.Sync, now))
	}
	for _, n := range cs.Nodes {
		if n.WriteError != "" {
			fmt.Fprintf(e.stdout, "%s: its store cannot write: %s\n", orDash(n.NodeID), n.WriteError)
		}
		if n.ClockSkewed {
			fmt.Fprintf(e.stdout, "%s: its clock is off the cluster's: it refuses writes until the clock is fixed (`starling status` on it)\n", orDash(n.NodeID))
		}
	}
}

// storeSizes shows a node's live state and history on disk ("-" when
// it reported neither: an older node, or one whose sizes are all still
// in LevelDB's write buffer).
func storeSizes(live, history int64) string {
	if live == 0 && history == 0 {
		return "-"
	}
	return humanBytes(live) + "/" + humanBytes(history)
}

func shortPeer(id string) string {
	if len(id) <= 16 {
		return id
	}
	return id[:8] + "…" + id[len(id)-6:]
}

func lastSeen(n api.NodeView) string {
	switch {
	case n.Self:
		return "now"
	case n.LastSeen == nil:
		return "never"
	}
	return (time.Duration(n.LastSeenMS) * time.Millisecond).Round(time.Millisecond).String() + " ago"
}

// printLeader prints the cluster group's leader and its conflicts, for
// both cluster views.
func printLeader(w io.Writer, g api.ElectionGroup, l election.Leadership, isLeader bool) {
	switch {
	case g.Warming:
		fmt.Fprintf(w, "leader\tunknown: this node is still warming up\n")
	case l.HasLeader():
		me := ""
		if isLeader {
			me = " (this node)"
		}
		fmt.Fprintf(w, "leader\t%s%s, term %d\n", l.Leader, me, l.Term)
	default:
		fmt.Fprintf(w, "leader\tnone: no node is alive and available\n")
	}
	for _, c := range g.Conflicts {
		fmt.Fprintf(w, "conflict\t%s\n", c)
	}
}

// connectedCell is the CONNECTED column: how (direct, hole-punched,
// relayed), or "no" with the problem that keeps it apart.
func connectedCell(p api.NodeView) string {
	switch {
	case p.Connected && p.Connection != "":
		return p.Connection
	case p.Connected:
		return "yes"
	case p.Problem != "":
		return "no (" + p.Problem + ")"
	}
	return "no"
}

// problemLine explains a peer's problem to the operator.
func problemLine(p api.NodeView) string {
	var what string
	switch p.Problem {
	case "network-key":
		what = "the handshake fails: it holds another private network key (swarm.key), or one of the two has none; copy the same key to both"
	case "environment":
		what = "it belongs to another environment (--env); nodes of two environments never exchange data"
	case "peer-id":
		what = "another peer answers at its address: fix the /p2p/<id> part"
	case "refused":
		what = "nothing listens at its address (node down, or wrong port)"
	case "unreachable":
		what = "no answer (down, firewall, NAT, or partition)"
	default:
		what = p.Problem
	}
	if e := strings.Join(strings.Fields(p.DialError), " "); e != "" {
		if len(e) > 300 { // a dial error lists every address tried
			e = e[:300] + "..."
		}
		what += " [" + e + "]"
	}
	return what
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstOr(ss []string, def string) string {
	if len(ss) == 0 {
		return def
	}
	return ss[0]
}

// printCluster prints the election's view (GET /v1/cluster), for nodes
// that do not serve /v1/cluster/status.
func (e *cmdEnv) printCluster(ci *api.ClusterInfo) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "node\t%s\n", ci.NodeID)
	printLeader(w, ci.Group, ci.Leader, ci.IsLeader)
	_ = w.Flush()
	fmt.Fprintln(e.stdout)
	e.printMembers(ci.Group.Members)
}

// webCommand prints a one-time login URL of a node's web page.
func (e *cmdEnv) webCommand() *cli.Command {
	return &cli.Command{
		Name:      "web",
		Category:  "node",
		Usage:     "print a one-time login URL of the node's web page (entities, cluster, election)",
		UsageText: "starling web --data DIR [--json]",
		Description: `The node serves a web page on its API address (/ui/): an entity browser
with live updates and editing, the cluster (states, charts) and the
election. Log in by pasting the API token (DIR/api.token), or open the
one-time URL this command prints (valid once, for 10 minutes).

Example:
   xdg-open "$(starling web --data ./node1)"`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 0, "no arguments")
			if err != nil {
				return err
			}
			u, err := cl.WebLoginURL(c.Context)
			if err != nil {
				return err
			}
			if isJSON(c) {
				return e.printJSON(struct {
					URL string `json:"url"`
				}{u})
			}
			fmt.Fprintln(e.stdout, u)
			return nil
		},
	}
}

// reportNodeStates prints, as nodes come up, each node's own sync phase
// and the state in which it sees every other node, one line per change,
// until every node sees every other ACTIVE and Connected or timeout
// passes (then it says what is missing; that is not an error: the nodes
// keep trying).
func reportNodeStates(ctx context.Context, w io.Writer, indent string, nodes []*node.Node, timeout time.Duration) {
	seen := map[string]string{}
	say := func(key, line string) {
		if seen[key] != line {
			seen[key] = line
			fmt.Fprintf(w, "%s%s\n", indent, line)
		}
	}
	var missing []string
	_, err := poll(ctx, timeout, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		missing = missing[:0]
		for _, n := range nodes {
			// In process, not over HTTP: a request cut off by Ctrl-C
			// can leave a connection that holds the API's shutdown.
			cs, err := n.ClusterStatus(ctx)
			if err != nil {
				return false, nil // still starting, or stopping: try again
			}
			// The phase and source only: counts and errors would print a
			// line per poll while a node joins.
			own := string(cs.Sync.Phase)
			if cs.Sync.Phase == nodestate.PhaseSyncing && cs.Sync.Source != "" {
				own += " from " + cs.Sync.Source
			}
			say(n.NodeID(), fmt.Sprintf("%s: %s", n.NodeID(), own))
			views := map[string]api.NodeView{}
			for _, v := range cs.Nodes {
				if !v.Self && v.NodeID != "" {
					views[v.NodeID] = v
				}
			}
			for _, m := range nodes {
				if m == n {
					continue
				}
				v, ok := views[m.NodeID()]
				if !ok {
					missing = append(missing, n.NodeID()+" has not heard from "+m.NodeID())
					continue
				}
				say(n.NodeID()+">"+m.NodeID(), fmt.Sprintf("%s sees %s %s (%s)", n.NodeID(), m.NodeID(), v.State, v.Health))
				// Indirect: past the bound on connections (p2p's
				// MaxPeers), a node reaches most others through the rest.
				if v.State != nodestate.StateActive || (v.Health != nodestate.HealthConnected && v.Health != nodestate.HealthIndirect) {
					missing = append(missing, fmt.Sprintf("%s sees %s %s (%s)", n.NodeID(), m.NodeID(), v.State, v.Health))
				}
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(w, "%snot all nodes are ACTIVE yet after %v (they keep trying): %s\n", indent, timeout, strings.Join(missing, "; "))
	}
}
