// Command starling is Starling's one binary: the node daemon (init, run),
// a local multi-node launcher (local), a self-contained demonstration
// (demo), compaction of a node's history (compact, through the API or on
// a stopped node's data directory), and the client commands that talk to
// a running node's HTTP API: the entity tree (create, get, set, ls, mv,
// rename, rm, restore, schema, watch; grouped as entity and field too),
// raw keys (kv get, put,
// del, ls), status and peers, the cluster admin (cluster status|peers|
// add|remove, and web, a one-time login URL of the node's web page), and
// leader election (election ls|status|watch, and lead, which runs a
// command only while this node leads a group); version, and completion
// (bash, zsh and fish scripts).
//
// Exit codes: 0 success, 1 failure, 2 usage error (unknown flag or
// command, wrong arguments).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/starling-sync/starling/node"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run runs the app and turns its error into a message on stderr and an
// exit code. Tests call it in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, reorderArgs(app, args)) // flags anywhere: args.go
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "starling: %s\n", cleanMessage(err))
	var ec cli.ExitCoder
	if errors.As(err, &ec) && ec.ExitCode() != 0 {
		return ec.ExitCode()
	}
	return 1
}

// exitUsage is the exit code of usage errors.
const exitUsage = 2

// exitError carries an exit code for run.
type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) ExitCode() int { return e.code }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error (exit code 2) with a pointer to --help.
func usageErrorf(c *cli.Context, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &exitError{err: fmt.Errorf("%s (see '%s --help')", msg, helpName(c)), code: exitUsage}
}

func helpName(c *cli.Context) string {
	if c != nil && c.Command != nil && c.Command.HelpName != "" {
		return c.Command.HelpName
	}
	return "starling"
}

// cmdEnv is what the commands share: the streams and the logger.
type cmdEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	level          *slog.LevelVar
	log            *slog.Logger
	// runOptions are added to the node `run` opens (the chaos control
	// build's defect; empty otherwise).
	runOptions []node.Option
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	e := &cmdEnv{stdin: stdin, stdout: stdout, stderr: stderr, level: new(slog.LevelVar)}
	e.log = newLogger(stderr, e.level, "text")
	app := &cli.App{
		Name:  "starling",
		Usage: "offline-first sync engine: nodes that find each other and replicate a CRDT store",
		Description: `Starling nodes accept reads and writes at every site, also while cut off,
find each other with no coordinator (mDNS, DHT, static peers), and converge
once they can talk again.

Try it on this machine:     starling demo
A node of your own:         starling run --data ./node1
Then, from another shell:   starling create --data ./node1 --type sensor /Sensor7
                            starling set --data ./node1 /Sensor7 temp 21.5
                            starling get --data ./node1 /Sensor7`,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "log-level",
				Value:   "warn",
				Usage:   "log `LEVEL` of Starling: debug, info, warn or error (libp2p and go-ds-crdt follow GOLOG_LOG_LEVEL, default error)",
				EnvVars: []string{"STARLING_LOG_LEVEL"},
			},
			&cli.StringFlag{
				Name:    "log-format",
				Value:   "text",
				Usage:   "log `FORMAT`: text (key=value) or json (one object per line, for log collectors)",
				EnvVars: []string{"STARLING_LOG_FORMAT"},
			},
		},
		Before: func(c *cli.Context) error {
			lvl, err := parseLevel(c.String("log-level"))
			if err != nil {
				return usageErrorf(c, "%v", err)
			}
			e.level.Set(lvl)
			format, err := parseFormat(c.String("log-format"))
			if err != nil {
				return usageErrorf(c, "%v", err)
			}
			e.log = newLogger(stderr, e.level, format)
			bridgeGoLog(e.log.Handler())
			startPprof(e.log)
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf(c, "unknown command %q%s", c.Args().First(), didYouMeanCommand(c.Args().First(), c.App.Commands))
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			e.initCommand(),
			e.runCommand(),
			e.localCommand(),
			e.demoCommand(),
			e.kvCommand(),
			e.statusCommand(),
			e.compactCommand(),
			e.backupCommand(),
			e.tokenCommand(),
			e.exportCommand(),
			e.importCommand(),
			e.clusterCommand(),
			e.webCommand(),
			e.electionCommand(),
			e.leadCommand(),
			e.chaosCommand(),
			e.benchCommand(),
			e.versionCommand(),
			e.completionCommand(),
		},
		// `starling ... --generate-bash-completion` lists what may come
		// next, for the scripts of `starling completion`.
		EnableBashCompletion: true,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          true,
		Suggest:              true,
		HideHelpCommand:      true,
		// run prints errors and picks the exit code; cli must not exit.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	app.Commands = append(app.Commands, e.entityCommands()...)
	app.Commands = append(app.Commands, e.syncCommands()...)
	app.Commands = append(app.Commands, e.configCommand())
	app.OnUsageError = onUsageError
	setUsageErrorHandler(app.Commands)
	return app
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageErrorf(c, "%v%s", err, flagSuggestion(c, err))
}

func setUsageErrorHandler(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageErrorHandler(c.Subcommands)
	}
}
