package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/node"
)

func (e *cmdEnv) compactCommand() *cli.Command {
	return &cli.Command{
		Name:     "compact",
		Category: "node",
		Usage:    "reclaim the history every node has merged, now (on a running node, or on a stopped node's DIR)",
		UsageText: `starling compact --data DIR [--json]
   starling compact --api HOST:PORT --token TOKEN [--json]`,
		Description: `Runs one compaction round. A node keeps the history of its data: the DAG
blocks of every change, and for every value overwritten or deleted its
set elements and tombstones. Compaction deletes that history once every
node sharing the data has merged it (the members: every node this one has
heard from, minus those removed with "starling cluster remove"), and gives
the space back to the file system. Reads do not change: live values and
the blocks that hold them stay. Processed-block markers go too, except
those a new change can still lead to; below the highest one deleted (the
frontier) the node merges no block again: a block from a node removed
with "starling cluster remove" is refused, never merged twice.

Nodes compact on their own (run --compact-every: a round at least every
hour by default, and at once when the history outgrows both the live
state and 8 MiB); this command runs a round now.

With a node running on DIR (or given --api), the node runs the round. It
is safe online: writes, reads and replication go on between its short
steps. With no node running on DIR, the command opens DIR itself, shows
progress and closes it; the round is bounded by the members the node
saved, exactly as on the running node. It refuses a directory that is not
a node's, and one that does not record which nodes share its data.

A round can have nothing to do: a member has not reported what it merged
yet, or this node is behind one; it then says why and exits 0. A round
cut short (Ctrl-C, a crash) leaves a consistent store; the next finishes.

Examples:
   starling compact --data ./node1
   starling compact --data ./node1 --json | jq .bytes_deleted`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			dir, addr := inherited(c, flagData), inherited(c, flagAPI)
			var (
				res   *api.CompactResult
				where string
				err   error
			)
			switch {
			case addr == "" && dir == "":
				return usageErrorf(c, "which node? give --data DIR (running or stopped), or --api HOST:PORT with --token")
			case addr == "" && !nodeRunning(dir):
				where = fmt.Sprintf("%s (offline: no node runs on it)", dir)
				res, err = e.compactOffline(ctx, dir, !c.Bool(flagJSON))
			default:
				cl, cerr := clientFrom(c)
				if cerr != nil {
					return cerr
				}
				where = "the node at " + cl.Addr()
				if dir != "" && addr == "" {
					where = fmt.Sprintf("%s (by its running node)", dir)
				}
				res, err = cl.Compact(ctx)
				if errors.Is(err, api.ErrCompactBusy) {
					return fmt.Errorf("%w: wait for it to finish, then run `starling compact` again if you need another round", err)
				}
			}
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				return e.printJSON(res)
			}
			printCompact(e.stdout, where, res)
			return nil
		},
	}
}

// nodeRunning reports whether a live process wrote DIR/api.json.
func nodeRunning(dir string) bool {
	info, err := api.ReadAPIInfo(dir)
	return err == nil && info.Alive()
}

// compactOffline runs the round on a stopped node's directory, with a
// progress bar on stderr when bar is set.
func (e *cmdEnv) compactOffline(ctx context.Context, dir string, bar bool) (*api.CompactResult, error) {
	var progress func(crdt.CompactProgress)
	p := newCompactBar(e.stderr)
	if bar {
		progress = p.update
	}
	st, err := node.CompactOffline(ctx, dir, progress, e.log)
	p.done()
	if errors.Is(err, api.ErrNotInitialised) {
		return nil, fmt.Errorf("%s is not a starling node's data directory (it has no %s): give the --data of a node", dir, api.ConfigFile)
	}
	if err != nil {
		return nil, fmt.Errorf("compact %s: %w", dir, err)
	}
	res := api.CompactResult(st)
	return &res, nil
}

// compactBar draws a round's progress: redrawn in place on a terminal,
// one line per tenth elsewhere (a log, a pipe).
type compactBar struct {
	w       io.Writer
	tty     bool
	started time.Time
	drawn   bool
	tenth   int
}

func newCompactBar(w io.Writer) *compactBar {
	return &compactBar{w: w, tty: isTerminal(w), started: time.Now(), tenth: -1}
}

func (b *compactBar) update(p crdt.CompactProgress) {
	line := compactProgressLine(p, time.Since(b.started))
	switch {
	case b.tty:
		fmt.Fprintf(b.w, "\r\033[K%s", line)
		b.drawn = true
	case p.Total > 0 && p.Done*10/p.Total > b.tenth:
		b.tenth = p.Done * 10 / p.Total
		fmt.Fprintln(b.w, line)
	}
}

func (b *compactBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

// compactProgressLine renders a round's progress, for example
//
//	compacting [=============>                ]  45%  4500/10000 blocks  1.2s
func compactProgressLine(p crdt.CompactProgress, took time.Duration) string {
	frac := 1.0
	if p.Total > 0 {
		frac = min(max(float64(p.Done)/float64(p.Total), 0), 1)
	}
	return fmt.Sprintf("compacting %s %3.0f%%  %d/%d blocks  %s", bar(frac, progressBarWidth), frac*100, p.Done, p.Total, took.Round(time.Millisecond))
}

// printCompact prints what a round did.
func printCompact(w io.Writer, where string, r *api.CompactResult) {
	if r.Skipped != "" {
		fmt.Fprintf(w, "nothing compacted on %s: %s\n", where, r.Skipped)
		if r.Members > 0 {
			fmt.Fprintf(w, "(%d member%s bound what can be reclaimed; `starling cluster status` shows them)\n", r.Members, plural(r.Members))
		}
		return
	}
	fmt.Fprintf(w, "compacted %s in %s\n", where, r.Took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  reclaimed\t%s: %d block%s, %d processed marker%s, %d element%s with their tombstones, %d lone tombstone%s\n",
		humanBytes(r.BytesDeleted), r.BlocksDeleted, plural(r.BlocksDeleted), r.MarkersDeleted, plural(r.MarkersDeleted),
		r.ElementsDeleted, plural(r.ElementsDeleted), r.TombstonesDeleted, plural(r.TombstonesDeleted))
	fmt.Fprintf(tw, "  kept\t%d block%s holding live values\n", r.Pinned, plural(r.Pinned))
	fmt.Fprintf(tw, "  frontier\t%d block%s every member has merged (%d read)\n", r.Frontier, plural(r.Frontier), r.Walked)
	fmt.Fprintf(tw, "  members\t%d (the nodes whose merged heads bound the round, this one included)\n", r.Members)
	fmt.Fprintf(tw, "  writes held\t%s at most (per chunk of deletes)\n", r.MaxHold.Round(time.Microsecond))
	fmt.Fprintf(tw, "  history\t%s before, %s after (on disk)\n", humanBytes(r.HistoryBefore), humanBytes(r.HistoryAfter))
	_ = tw.Flush()
}
