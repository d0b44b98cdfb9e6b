package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/httpapi"
	"github.com/starling-sync/starling/node"
)

func (e *cmdEnv) tokenCommand() *cli.Command {
	dirOf := func(c *cli.Context) (string, error) {
		dir, err := requireData(c)
		if err != nil {
			return "", err
		}
		if !node.Initialised(dir) {
			return "", fmt.Errorf("%s is not a starling node's data directory: give the --data of a node", dir)
		}
		return dir, nil
	}
	return &cli.Command{
		Name:     "token",
		Category: "node",
		Usage:    "make, list and remove scoped API tokens: token add, token ls, token rm",
		UsageText: `starling token add --data DIR --role read|write|admin [--name NAME] [--json]
   starling token ls --data DIR [--json]
   starling token rm --data DIR NAME|ID`,
		Description: `The data directory's api.token may do everything. Scoped tokens may do
less, so that a dashboard or a script holds no more than it needs:

   read    GET everything (entities, fields, schemas, kv, watch streams,
           status, cluster, election, /metrics), except a backup
   write   read, and write entities, fields, schemas and kv, and take
           part in elections
   admin   everything: peers, resync, compaction, backups, web login

A request beyond its token's role gets 403 naming the role it needs. Only
a hash of each token is kept (DIR/tokens.json), so "token add" shows the
token once. Tokens are managed on the node's machine, running or not; a
running node takes a change within a second.`,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "make a token with a role and print it (once)",
				UsageText: "starling token add --data DIR --role read|write|admin [--name NAME] [--json]",
				Description: `Example:
   TOKEN=$(starling token add --data /var/lib/starling --role read --name grafana)
   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:7401/metrics`,
				Flags: []cli.Flag{
					dataFlag("data `DIR` of the node"),
					&cli.StringFlag{Name: "role", Required: true, EnvVars: cmdEnvVar("token", "role"), Usage: "what the token may do: read, write or admin (see starling token --help)"},
					&cli.StringFlag{Name: "name", EnvVars: cmdEnvVar("token", "name"), Usage: "a `NAME` to tell it by (default: ROLE-ID)"},
					&cli.BoolFlag{Name: flagJSON, EnvVars: envVar(flagJSON), Usage: "print JSON, for scripts"},
				},
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					dir, err := dirOf(c)
					if err != nil {
						return err
					}
					role, err := httpapi.ParseRole(c.String("role"))
					if err != nil {
						return usageErrorf(c, "--role %q: want read, write or admin", c.String("role"))
					}
					tok, ti, err := httpapi.AddToken(dir, c.String("name"), role)
					if err != nil {
						return err
					}
					if c.Bool(flagJSON) {
						return e.printJSON(struct {
							Token string `json:"token"`
							httpapi.TokenInfo
						}{tok, ti})
					}
					fmt.Fprintln(e.stdout, tok)
					fmt.Fprintf(e.stderr, "token %q (id %s, role %s) made; it is shown only now: keep it in your secrets store\n", ti.Name, ti.ID, ti.Role)
					return nil
				},
			},
			{
				Name:      "ls",
				Usage:     "list the scoped tokens (names, roles, IDs; never the tokens)",
				UsageText: "starling token ls --data DIR [--json]",
				Flags:     []cli.Flag{dataFlag("data `DIR` of the node"), &cli.BoolFlag{Name: flagJSON, EnvVars: envVar(flagJSON), Usage: "print JSON, for scripts"}},
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					dir, err := dirOf(c)
					if err != nil {
						return err
					}
					ts, err := httpapi.ReadTokens(dir)
					if err != nil {
						return err
					}
					if c.Bool(flagJSON) {
						if ts == nil {
							ts = []httpapi.TokenInfo{}
						}
						return e.printJSON(ts)
					}
					if len(ts) == 0 {
						fmt.Fprintln(e.stdout, "no scoped tokens (api.token, the admin token, always works): make one with starling token add")
						return nil
					}
					w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "NAME\tROLE\tID\tCREATED")
					for _, t := range ts {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Name, t.Role, t.ID, t.Created.Format(time.DateTime))
					}
					return w.Flush()
				},
			},
			{
				Name:      "rm",
				Usage:     "remove a scoped token by name or ID; it stops working within a second",
				UsageText: "starling token rm --data DIR NAME|ID",
				Flags:     []cli.Flag{dataFlag("data `DIR` of the node")},
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, 1, "NAME or ID"); err != nil {
						return err
					}
					dir, err := dirOf(c)
					if err != nil {
						return err
					}
					ti, err := httpapi.RemoveToken(dir, c.Args().First())
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "removed token %q (id %s, role %s)\n", ti.Name, ti.ID, ti.Role)
					return nil
				},
			},
		},
		Action: groupAction("add, ls or rm"),
	}
}
