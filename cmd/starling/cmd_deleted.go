package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/entity"
)

const flagDeleted = "deleted"

// withDeleted gives an ls command --deleted: the deleted entities under
// REF that "starling restore ID" brings back, instead of the tree.
func (e *cmdEnv) withDeleted(full string, cmd *cli.Command) *cli.Command {
	list := cmd.Action
	cmd.UsageText += "\n   " + full + " --data DIR --deleted [--limit N] [--json] [PATH]"
	cmd.Description += `

With --deleted, lists the deleted entities that were under PATH instead,
newest delete first: where each was, its type, its ID, when and by which
node it was deleted. "starling restore ID" brings one back with what was
deleted with it (an entity marked "with parent" comes back when its
deleted ancestor is restored).

Example:
   ` + full + ` --data ./node1 --deleted /Factory`
	cmd.Flags = append(cmd.Flags,
		&cli.BoolFlag{Name: flagDeleted, EnvVars: cmdEnvVar("ls", flagDeleted), Usage: "list the deleted entities that were under PATH (for starling restore ID)"},
		&cli.IntFlag{Name: "limit", Value: 100, EnvVars: cmdEnvVar("ls", "limit"), Usage: "with --deleted: at most `N`, newest first (up to 10,000)"},
	)
	cmd.Action = func(c *cli.Context) error {
		if !c.Bool(flagDeleted) {
			if c.IsSet("limit") {
				return usageErrorf(c, "--limit goes with --deleted")
			}
			return list(c)
		}
		cl, err := argsAndClient(c, 0, 1, "[PATH]")
		if err != nil {
			return err
		}
		path := c.Args().First()
		if path == "" {
			path = "/"
		}
		if path[0] != '/' {
			return usageErrorf(c, "--deleted takes a PATH (starting with /): a deleted entity has no place to be found by ID")
		}
		ds, err := cl.DeletedEntities(c.Context, path, c.Int("limit"))
		if err != nil {
			return err
		}
		if c.Bool(flagJSON) {
			if ds == nil {
				ds = []entity.Deleted{}
			}
			return e.printJSON(ds)
		}
		if len(ds) == 0 {
			fmt.Fprintf(e.stdout, "no deleted entities under %s\n", path)
			return nil
		}
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "PATH\tTYPE\tID\tDELETED\tBY\t")
		for _, d := range ds {
			note := ""
			if d.WithParent {
				note = "with parent"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Path, d.Type, d.ID,
				d.Timestamp.Time().UTC().Format(time.DateTime), d.Writer, note)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "bring one back with: starling restore --data DIR ID\n")
		return nil
	}
	return cmd
}
