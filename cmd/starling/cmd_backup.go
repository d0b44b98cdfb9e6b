package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/node"
)

func (e *cmdEnv) backupCommand() *cli.Command {
	return &cli.Command{
		Name:     "backup",
		Category: "node",
		Usage:    "write a consistent copy of a node's data to FILE (while it runs, or of a stopped node)",
		UsageText: `starling backup --data DIR FILE
   starling backup --api HOST:PORT --token TOKEN FILE
   starling backup --data DIR - > FILE`,
		Description: `Writes the node's data, as it is at one moment, to FILE: the entity tree,
schemas, raw keys and what replication needs to merge them with other
nodes later. Local writes, reads and replication go on meanwhile. FILE is
written next to itself first and renamed when complete, so an interrupted
backup never leaves a partial FILE; "-" writes to standard output.

A backup holds the data only: no identity, API token, network key or
config. Restoring it ("starling restore") makes a new node with the data,
never a second copy of the node it came from.

With a node running on DIR (or given --api) the node writes the copy; it
refuses while it is itself joining or repairing, when its copy would be
incomplete. With no node running on DIR, the command opens DIR itself.

Examples:
   starling backup --data /var/lib/starling /backups/plant1-$(date +%F).backup
   starling backup --data ./node1 - | gzip > node1.backup.gz`,
		Flags: clientFlags(false),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, 1, "FILE"); err != nil {
				return err
			}
			file := c.Args().First()
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			dir, addr := inherited(c, flagData), inherited(c, flagAPI)
			if addr == "" && dir == "" {
				return usageErrorf(c, "which node? give --data DIR (running or stopped), or --api HOST:PORT with --token")
			}
			write := func(w io.Writer) error {
				if addr == "" && !nodeRunning(dir) {
					err := node.BackupOffline(ctx, dir, w, e.log)
					if errors.Is(err, api.ErrNotInitialised) {
						return fmt.Errorf("%s is not a starling node's data directory (it has no %s): give the --data of a node", dir, api.ConfigFile)
					}
					return err
				}
				cl, err := clientFrom(c)
				if err != nil {
					return err
				}
				_, err = cl.Backup(ctx, w)
				return err
			}
			start := time.Now()
			n, toStdout, err := e.writeOut(file, write)
			if err != nil || toStdout {
				return err
			}
			fmt.Fprintf(e.stdout, "backup written to %s (%s in %v); restore it with: starling restore --backup %s --data NEW-DIR\n",
				file, humanBytes(n), time.Since(start).Round(time.Millisecond), file)
			return nil
		},
	}
}

// writeOut runs write into file, or into standard output for "" or "-"
// (toStdout), and returns the size written to the file.
func (e *cmdEnv) writeOut(file string, write func(io.Writer) error) (n int64, toStdout bool, err error) {
	if file == "" || file == "-" {
		bw := bufio.NewWriterSize(e.stdout, 1<<20)
		if err := write(bw); err != nil {
			return 0, true, err
		}
		return 0, true, bw.Flush()
	}
	n, err = writeFileAtomic(file, write)
	return n, false, err
}

// writeFileAtomic writes file through a temporary file beside it, synced
// and renamed into place only when write succeeded; it returns the size.
func writeFileAtomic(file string, write func(io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.partial")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing to remove
	cw := &countingWriter{w: bufio.NewWriterSize(tmp, 1<<20)}
	err = write(cw)
	if err == nil {
		err = cw.w.(*bufio.Writer).Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// restoreTopCommand is "starling restore": an entity by ID (the entity
// command's restore), or, with --backup, a new node's data from a backup
// file. One verb for both, told apart by an explicit flag rather than
// by guessing whether the argument is an ID or a file.
func (e *cmdEnv) restoreTopCommand() *cli.Command {
	cmd := e.restoreCommand("starling restore")
	undelete := cmd.Action
	cmd.Usage = "undelete an entity by ID; with --backup FILE, fill a new node's data directory from a backup"
	cmd.UsageText = `starling restore --data DIR [--json] ID
   starling restore --backup FILE --data DIR [--psk-file KEY | --open] [--node-id ID]`
	cmd.Description += `

With --backup FILE, makes DIR a node holding the data of a backup made by
"starling backup". DIR must be new, or a node that has no data yet
(initialised, never run); a node that has data is refused: move its
datastore aside first. A new DIR is initialised for the backup's
environment; give --psk-file with that environment's network key so the
node can meet its peers (without it, a new key is made).

The whole file is read and checked (format, environment, entry count and
checksum) before anything is written: a damaged or truncated file changes
nothing. Then start the node with "starling run --data DIR": it serves the
restored data and merges with any peer of its environment, as a node that
joined by state transfer does.

Example (the whole site lost, one backup left):
   starling restore --backup /backups/plant1.backup --data /var/lib/starling --psk-file /etc/starling/swarm.key
   starling run --data /var/lib/starling`
	cmd.Flags = append(cmd.Flags,
		&cli.StringFlag{Name: flagBackup, EnvVars: cmdEnvVar("restore", flagBackup), Usage: "restore the data of a backup `FILE` into a new node's --data DIR (instead of an entity)"},
		&cli.StringFlag{Name: flagNodeID, EnvVars: envVar(flagNodeID), Usage: "with --backup, for a new DIR: the node `ID` (default: derived from the identity)"},
		&cli.StringFlag{Name: flagPSKFile, EnvVars: envVar(flagPSKFile), Usage: "with --backup, for a new DIR: the environment's private network key `FILE`"},
		&cli.BoolFlag{Name: flagOpen, Usage: "with --backup, for a new DIR: no private network key (see starling init --help)"},
	)
	cmd.Action = func(c *cli.Context) error {
		if !c.IsSet(flagBackup) {
			for _, f := range []string{flagNodeID, flagPSKFile, flagOpen} {
				if c.IsSet(f) {
					return usageErrorf(c, "--%s goes with --backup FILE (restoring a node from a backup); to undelete an entity give only its ID", f)
				}
			}
			return undelete(c)
		}
		if err := checkArgs(c, 0, 0, "no arguments with --backup (the file is its value)"); err != nil {
			return err
		}
		return e.restoreBackup(c, c.String(flagBackup))
	}
	return cmd
}

func (e *cmdEnv) restoreBackup(c *cli.Context, file string) error {
	dir, err := requireData(c)
	if err != nil {
		return err
	}
	bi, err := node.ReadBackupInfo(file)
	if err != nil {
		return err
	}
	if nodeRunning(dir) {
		return fmt.Errorf("a node is running on %s: restore fills only a stopped node without data", dir)
	}
	if !node.Initialised(dir) {
		s := node.Settings{Env: bi.Env, NodeID: c.String(flagNodeID)}
		if p := c.String(flagPSKFile); p != "" {
			if s.PSKFile, err = filepath.Abs(p); err != nil {
				return err
			}
		}
		cfg, err := node.Init(dir, node.InitOptions{Settings: s, OpenNetwork: c.Bool(flagOpen)})
		if err != nil {
			return err
		}
		if err := e.printInit(dir, cfg); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := newRestoreBar(e.stderr)
	start := time.Now()
	_, err = node.Restore(ctx, dir, file, p.update, e.log)
	p.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored %s into %s (environment %s, taken on node %s at %s) in %v\nstart it with: starling run --data %s\n",
		file, dir, bi.Env, bi.NodeID, bi.Created, time.Since(start).Round(time.Millisecond), dir)
	return nil
}

// restoreBar shows a restore's two passes on stderr: redrawn in place on
// a terminal, a line per phase elsewhere.
type restoreBar struct {
	w     io.Writer
	tty   bool
	phase string
	drawn bool
}

func newRestoreBar(w io.Writer) *restoreBar { return &restoreBar{w: w, tty: isTerminal(w)} }

func (b *restoreBar) update(p node.RestoreProgress) {
	if !b.tty {
		if p.Phase != b.phase {
			b.phase = p.Phase
			fmt.Fprintf(b.w, "restore: %s\n", p.Phase)
		}
		return
	}
	line := fmt.Sprintf("%-10s %d entries", p.Phase, p.Entries)
	if p.Total > 0 {
		line = fmt.Sprintf("%-10s %s %d/%d entries", p.Phase, bar(float64(p.Entries)/float64(p.Total), 30), p.Entries, p.Total)
	}
	fmt.Fprintf(b.w, "\r%-70s", line)
	b.drawn = true
}

func (b *restoreBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
