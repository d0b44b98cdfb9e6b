package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/internal/version"
)

// versionCommand prints the build: the version, the commit, Go and the
// libraries that set the wire formats. `status` shows a running node's
// version, and `cluster peers` every peer's.
func (e *cmdEnv) versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version of this binary (commit, Go, go-ds-crdt and libp2p versions)",
		UsageText: "starling version [--json]",
		Description: `Prints what this binary was built from. A running node's version is in
"starling status"; the versions of its peers, in "starling cluster peers", so
a cluster running mixed versions shows it.

Example:
   starling version --json | jq -r .version`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: flagJSON, EnvVars: envVar(flagJSON), Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			i := version.Get()
			if c.Bool(flagJSON) {
				return e.printJSON(i)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "version\t%s\n", i.Version)
			commit := orDash(i.Commit)
			if i.Modified {
				commit += " (modified)"
			}
			fmt.Fprintf(w, "commit\t%s\n", commit)
			fmt.Fprintf(w, "go\t%s\n", i.GoVersion)
			mods := make([]string, 0, len(i.Deps))
			for m := range i.Deps {
				mods = append(mods, m)
			}
			slices.Sort(mods)
			for _, m := range mods {
				fmt.Fprintf(w, "%s\t%s\n", m, i.Deps[m])
			}
			return w.Flush()
		},
	}
}
