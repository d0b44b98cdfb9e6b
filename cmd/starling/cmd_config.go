package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/node"
)

// configCheckResult is `starling config check --json`.
type configCheckResult struct {
	Dir      string          `json:"dir"`
	OK       bool            `json:"ok"`
	Problems []configProblem `json:"problems"`
}

type configProblem struct {
	Key     string `json:"key"`            // config.json key, or a file of the data dir
	Flag    string `json:"flag,omitempty"` // the flag that sets it
	Message string `json:"message"`
}

func (e *cmdEnv) configCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Category:  "node",
		Usage:     "check a node's configuration: config check",
		UsageText: "starling config check --data DIR [run flags] [--json]",
		Action:    groupAction("check"),
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "check DIR's config.json (and the flags given, as run would apply them) without starting the node",
			UsageText: `starling config check --data DIR [--json] [--env NAME] [--listen MULTIADDR]... [--peer MULTIADDR]...
    [other flags of run]`,
			Description: `Reads DIR/config.json and reports every problem at once, each naming its
key and flag: JSON that does not parse, unknown keys (with the key you
probably meant), values of the wrong type, invalid values (environment,
node ID, addresses, peers, trusted peer IDs, log level, compaction
settings), and the files the node needs: the private network key
(psk_file), identity.key and api.token. Flags of run given here are
applied first, as run would apply them, so a command line can be checked
before it is used. The node may be running or not; nothing is changed.

Exit code 0 when run would accept the configuration, 1 when there are
problems (or DIR holds no node). --json prints
{"dir", "ok", "problems": [{"key", "flag", "message"}]}.

Examples:
   starling config check --data /var/lib/starling
   starling config check --data ./node1 --peer /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW... --json`,
			Flags: append([]cli.Flag{
				dataFlag("data `DIR` of the node to check"),
				&cli.BoolFlag{Name: flagJSON, EnvVars: envVar(flagJSON), Usage: "print JSON, for scripts"},
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
				ps, err := node.CheckConfig(dir, s)
				if err != nil {
					return err
				}
				res := configCheckResult{Dir: dir, OK: len(ps) == 0, Problems: []configProblem{}}
				for _, p := range ps {
					res.Problems = append(res.Problems, configProblem{Key: p.Key, Flag: p.Flag, Message: p.Msg})
				}
				if c.Bool(flagJSON) {
					if err := e.printJSON(res); err != nil {
						return err
					}
				} else if res.OK {
					fmt.Fprintf(e.stdout, "%s: configuration OK\n", dir)
				} else {
					fmt.Fprintf(e.stdout, "%s: %s\n", dir, counted(len(ps), "problem", "problems"))
					for _, p := range res.Problems {
						where := p.Key
						if p.Flag != "" {
							where += " (" + p.Flag + ")"
						}
						fmt.Fprintf(e.stdout, "  %s: %s\n", where, p.Message)
					}
				}
				if !res.OK {
					return &exitError{err: fmt.Errorf("%s: the configuration has %s", dir, counted(len(ps), "problem", "problems")), code: 1}
				}
				return nil
			},
		}},
	}
}
