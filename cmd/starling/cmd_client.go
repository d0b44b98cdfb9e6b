package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/starling-sync/starling/api"
	"github.com/urfave/cli/v2"
)

// clientFrom returns a client for the node the flags name: --api (with
// --token, or the token of --data) or else the running node of --data.
// argsAndClient checks the command's positional arguments (see
// checkArgs) and then builds its client: the start of every client
// command.
func argsAndClient(c *cli.Context, min, max int, names string) (*api.Client, error) {
	if err := checkArgs(c, min, max, names); err != nil {
		return nil, err
	}
	return clientFrom(c)
}

func clientFrom(c *cli.Context) (*api.Client, error) {
	dir, addr, tok := inherited(c, flagData), inherited(c, flagAPI), inherited(c, flagToken)
	switch {
	case addr != "":
		if tok == "" && dir != "" {
			t, err := api.ReadToken(dir)
			if err != nil {
				return nil, err
			}
			tok = t
		}
		if tok == "" {
			return nil, usageErrorf(c, "--api needs --token (or STARLING_TOKEN); the token is in the node's DIR/api.token")
		}
		if sha := inherited(c, flagAPICertSHA); sha != "" {
			return api.NewPinnedClient(addr, tok, sha), nil
		}
		return api.NewClient(addr, tok), nil
	case dir != "":
		return api.ClientFromDataDir(dir)
	default:
		return nil, usageErrorf(c, "which node? give --data DIR of a running node, or --api HOST:PORT with --token")
	}
}

// inherited returns the value of a flag given to the command or to a
// parent ("starling cluster --data D add ..." and "starling cluster add --data D ...").
func inherited(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if v := strings.TrimSpace(x.String(name)); v != "" {
			return v
		}
	}
	return ""
}

func (e *cmdEnv) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// kvCommand groups the raw key-value commands. They read and write the
// replicated store's /kv namespace, apart from the entity tree.
func (e *cmdEnv) kvCommand() *cli.Command {
	return &cli.Command{
		Name:      "kv",
		Category:  "data",
		Usage:     "raw key-value data: kv get, kv put, kv del, kv ls",
		UsageText: "starling kv get|put|del|ls --data DIR ...",
		Description: `Raw keys and values, replicated like the entity tree but without types,
schemas or per-field versions (use the entity commands for those).

Examples:
   starling kv put --data ./node1 sensors/t1 21.5
   starling kv get --data ./node1 sensors/t1`,
		Action: groupAction("get, put, del or ls"),
		Subcommands: []*cli.Command{
			e.kvGetCommand(),
			e.kvPutCommand(),
			e.kvDelCommand(),
			e.kvLsCommand(),
		},
	}
}

func (e *cmdEnv) kvGetCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print the value of a key",
		ArgsUsage: "KEY",
		UsageText: "starling kv get --data DIR [--json] KEY",
		Description: `Prints the value of KEY as stored (a newline is added to text values);
exit code 1 if the key does not exist.

Example:
   starling kv get --data ./node1 sensors/t1`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "KEY")
			if err != nil {
				return err
			}
			key := c.Args().First()
			v, err := cl.Get(c.Context, key)
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				k, _ := api.CleanKey(key)
				return e.printJSON(api.Entry{Key: k, Value: v})
			}
			_, err = e.stdout.Write(v)
			if err == nil && utf8.Valid(v) && !strings.HasSuffix(string(v), "\n") {
				_, err = io.WriteString(e.stdout, "\n")
			}
			return err
		},
	}
}

func (e *cmdEnv) kvPutCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "write a key (returns once the write is durable on the node)",
		ArgsUsage: "KEY VALUE",
		UsageText: "starling kv put --data DIR KEY VALUE    (VALUE - reads standard input)",
		Description: `Writes KEY=VALUE on the node; it replicates to the others in the background.
Keys are paths like site/line1/temp (no empty, '.' or '..' segments).

Examples:
   starling kv put --data ./node1 sensors/t1 21.5
   starling kv put --data ./node1 config/site - < site.json`,
		Flags: clientFlags(false),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 2, 2, "KEY VALUE")
			if err != nil {
				return err
			}
			v := []byte(c.Args().Get(1))
			if c.Args().Get(1) == "-" {
				if v, err = io.ReadAll(e.stdin); err != nil {
					return fmt.Errorf("read value from stdin: %w", err)
				}
			}
			return cl.Put(c.Context, c.Args().First(), v)
		},
	}
}

func (e *cmdEnv) kvDelCommand() *cli.Command {
	return &cli.Command{
		Name:      "del",
		Usage:     "delete a key",
		ArgsUsage: "KEY",
		UsageText: "starling kv del --data DIR KEY",
		Description: `Deletes KEY on the node; the deletion replicates like a write.

Example:
   starling kv del --data ./node1 sensors/t1`,
		Flags: clientFlags(false),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "KEY")
			if err != nil {
				return err
			}
			return cl.Delete(c.Context, c.Args().First())
		},
	}
}

func (e *cmdEnv) kvLsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list keys and values under a prefix",
		ArgsUsage: "[PREFIX]",
		UsageText: "starling kv ls --data DIR [--json] [PREFIX]",
		Description: `Lists the entries under PREFIX (all entries without one), one per line:
KEY, a tab, VALUE (non-text values are shown as <N bytes>).

Example:
   starling kv ls --data ./node1 sensors`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 1, "[PREFIX]")
			if err != nil {
				return err
			}
			es, err := cl.List(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				if es == nil {
					es = []api.Entry{}
				}
				return e.printJSON(es)
			}
			for _, en := range es {
				fmt.Fprintf(e.stdout, "%s\t%s\n", en.Key, displayValue(en.Value))
			}
			return nil
		},
	}
}

// displayValue shows a value on one line.
func displayValue(v []byte) string {
	if !utf8.Valid(v) {
		return fmt.Sprintf("<%d bytes>", len(v))
	}
	s := string(v)
	if strings.ContainsAny(s, "\n\t\r") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func (e *cmdEnv) statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Category:  "node",
		Usage:     "show a running node's identity, addresses, peers, sync state, storage and compaction",
		UsageText: "starling status --data DIR [--json]",
		Description: `Shows the node's ID, peer ID (for other nodes' --peer), listen addresses,
peers, the replicated store's sync state, its size on disk (live state and
history) and its last compaction round (when, and what it reclaimed).

Example:
   starling status --data ./node1 --json | jq .peer_id`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 0, "no arguments")
			if err != nil {
				return err
			}
			st, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				return e.printJSON(st)
			}
			e.printStatus(st)
			return nil
		},
	}
}

func (e *cmdEnv) printStatus(st *api.StatusInfo) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "node\t%s\n", st.NodeID)
	fmt.Fprintf(w, "peer id\t%s\n", st.PeerID)
	if st.Version != "" {
		fmt.Fprintf(w, "version\t%s\n", st.Version)
	}
	priv := "no"
	if st.PrivateNetwork {
		priv = "yes (PSK)"
	}
	fmt.Fprintf(w, "env\t%s (private network: %s)\n", st.Env, priv)
	if st.APICertSHA256 != "" {
		fmt.Fprintf(w, "api\thttps://%s (certificate sha256 %s)\n", st.APIAddr, st.APICertSHA256)
	} else {
		fmt.Fprintf(w, "api\t%s\n", st.APIAddr)
	}
	for _, a := range st.Addrs {
		fmt.Fprintf(w, "address\t%s\n", a)
	}
	fmt.Fprintf(w, "reachability\t%s\n", reachabilityLine(st.NAT))
	for _, a := range st.NAT.ObservedAddrs {
		fmt.Fprintf(w, "observed address\t%s\n", a)
	}
	for _, a := range st.NAT.RelayAddrs {
		fmt.Fprintf(w, "relay address\t%s\n", a)
	}
	connected := 0
	for _, p := range st.Peers {
		if p.Connected {
			connected++
		}
	}
	fmt.Fprintf(w, "peers\t%d connected, %d known\n", connected, len(st.Peers))
	s := st.Store
	fmt.Fprintf(w, "store\t%s, height %d, %s in %s\n", counted(len(s.Heads), "head", "heads"), s.MaxHeight,
		counted(int(s.OpsCommitted), "write", "writes"), counted(int(s.Commits), "commit", "commits"))
	state := "in sync with what it has received"
	switch {
	case s.Dirty:
		state = "dirty: a DAG walk failed, repair pending"
	case s.QueuedJobs > 0 || s.ReceiveQueue > 0:
		state = fmt.Sprintf("syncing: %s queued, %s waiting", counted(int(s.QueuedJobs), "block", "blocks"), counted(int(s.ReceiveQueue), "message", "messages"))
	}
	fmt.Fprintf(w, "sync\t%s\n", state)
	fmt.Fprintf(w, "storage\t%s\n", storageLine(s))
	if s.WriteError != "" { // not Writable: a node before it existed sends false
		fmt.Fprintf(w, "writes\tFAILING: %s\n", s.WriteError)
	}
	fmt.Fprintf(w, "compaction\t%s\n", compactionLine(s, time.Now()))
	fmt.Fprintf(w, "clock\t%s\n", clockLine(st.Clock))
	fmt.Fprintf(w, "links\t%s\n", linksLine(st.Links))
	_ = w.Flush()
}

// reachabilityLine says whether other sites can dial this node, with
// the hole-punch and relay counters when there are any.
func reachabilityLine(n api.NATStatus) string {
	line := n.Reachability
	switch n.Reachability {
	case "":
		line = "unknown"
	case "public":
		line += " (other sites can dial this node)"
	case "private":
		line += " (behind NAT: reached through relays and hole punching)"
	case "unknown":
		line += " (not found out yet; AutoNAT tests public addresses only)"
	}
	if n.HolePunchAttempts > 0 {
		line += fmt.Sprintf("; hole punches %d/%d succeeded", n.HolePunchSuccesses, n.HolePunchAttempts)
	}
	if n.RelayedBytes > 0 || n.RelayReservations > 0 {
		line += fmt.Sprintf("; relayed %s in %d circuits for others", humanBytes(int64(n.RelayedBytes)), n.RelayCircuits)
	}
	return line
}

// clockLine shows how this node's clock compares with its peers'.
func clockLine(c api.ClockStatus) string {
	if c.Peers == 0 {
		return "no peer heard from yet to compare with"
	}
	med := time.Duration(c.MedianOffsetMS * float64(time.Millisecond)).Round(time.Millisecond)
	line := fmt.Sprintf("peers' median %+v from this node's (%d peer%s; maximum offset %v)",
		med, c.Peers, plural(c.Peers), time.Duration(c.MaxOffsetMS*float64(time.Millisecond)))
	if c.Skewed {
		line = "WRONG: writes are refused until it is fixed; " + line
	}
	if len(c.Disagreeing) > 0 {
		line += "; beyond it: " + strings.Join(c.Disagreeing, ", ")
	}
	if c.FarFuture > 0 {
		line += fmt.Sprintf("; %d version%s seen stamped past it", c.FarFuture, plural(int(c.FarFuture)))
	}
	return line
}

// linksLine shows how the round trips to the peers fit the election
// timings, and what to do when they do not.
func linksLine(l api.LinkStatus) string {
	budget := time.Duration(l.BudgetMS * float64(time.Millisecond)).Round(time.Millisecond)
	if l.Measured == 0 {
		return fmt.Sprintf("no round trip measured yet (the %s election timings take up to %v)", l.Preset, budget)
	}
	worst := time.Duration(l.WorstMS * float64(time.Millisecond)).Round(time.Millisecond)
	if len(l.Slow) == 0 {
		return fmt.Sprintf("round trips up to %v to %d peer%s, within the %v the %s election timings take", worst, l.Measured, plural(l.Measured), budget, l.Preset)
	}
	var slow []string
	for _, s := range l.Slow {
		name := s.NodeID
		if name == "" {
			name = s.PeerID
		}
		slow = append(slow, fmt.Sprintf("%s %v", name, time.Duration(s.RTTMS*float64(time.Millisecond)).Round(time.Millisecond)))
	}
	return fmt.Sprintf("TOO SLOW for the %s election timings (up to %v): %s; false failovers are likely: %s", l.Preset, budget, strings.Join(slow, ", "), l.Advice)
}

// storageLine shows the store's live state and history on disk.
func storageLine(s api.StoreStatus) string {
	if s.LiveBytes == 0 && s.HistoryBytes == 0 {
		return "live state and history still in LevelDB's write buffer (not measured yet)"
	}
	return fmt.Sprintf("live state %s, history %s", humanBytes(s.LiveBytes), humanBytes(s.HistoryBytes))
}

// compactionLine shows the last compaction round and the totals since
// the node started, at now.
func compactionLine(s api.StoreStatus, now time.Time) string {
	members := fmt.Sprintf("%d member%s bound it", s.CompactMembers, plural(s.CompactMembers))
	if s.CompactEvicted > 0 {
		members += fmt.Sprintf(", %d evicted (away too long; each rebases when it comes back)", s.CompactEvicted)
	}
	if s.LastCompacted.IsZero() {
		return "no round since the node started (" + members + "; run one with `starling compact`)"
	}
	return fmt.Sprintf("last round %s ago (%s), reclaimed %s; %d round%s since start, %s in all; %s",
		now.Sub(s.LastCompacted).Round(time.Second), s.LastCompacted.Local().Format(time.DateTime), humanBytes(s.LastReclaimed),
		s.CompactRounds, plural(int(s.CompactRounds)), humanBytes(s.CompactReclaimed), members)
}
