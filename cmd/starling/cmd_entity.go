package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
)

// Flags of the entity commands.
const (
	flagType      = "type"
	flagDepth     = "depth"
	flagRecursive = "recursive"
)

const catEntities = "entity tree"

// entityCommands are the entity tree's commands: the short forms
// (create, get, set, ls, mv, rename, rm, restore), the grouped forms
// (entity ..., field ...), schema and watch.
func (e *cmdEnv) entityCommands() []*cli.Command {
	cmds := []*cli.Command{
		e.createCommand("starling create"),
		e.entityGetCommand("starling get", 1, 2, "REF [FIELD]"),
		e.setCommand("starling set"),
		e.withDeleted("starling ls", e.lsCommand("starling ls", 0)),
		e.mvCommand("starling mv"),
		e.renameCommand("starling rename"),
		e.rmCommand("starling rm"),
		e.restoreTopCommand(),
		e.schemaCommand(),
		e.watchCommand(),
		{
			Name:      "entity",
			Category:  catEntities,
			Usage:     "the entity commands, grouped: create, get, ls, tree, mv, rename, rm, restore",
			UsageText: "starling entity COMMAND [flags] ARGS",
			Description: `The same commands as the short forms (starling create, starling get, ...):

   starling entity create PATH --type T   make an entity
   starling entity get REF                an entity with its fields
   starling entity ls [REF]               the entities directly under REF
   starling entity tree [REF]             the whole tree under REF
   starling entity mv REF NEWPARENT
   starling entity rename REF NAME
   starling entity rm REF [--recursive]
   starling entity restore ID`,
			Action: groupAction("create, get, ls, tree, mv, rename, rm or restore"),
			Subcommands: []*cli.Command{
				e.createCommand("starling entity create"),
				e.entityGetCommand("starling entity get", 1, 1, "REF"),
				e.lsCommand("starling entity ls", 1),
				e.lsCommand("starling entity tree", 0),
				e.mvCommand("starling entity mv"),
				e.renameCommand("starling entity rename"),
				e.rmCommand("starling entity rm"),
				e.restoreCommand("starling entity restore"),
			},
		},
		{
			Name:      "field",
			Category:  catEntities,
			Usage:     "read or write one field: field get, field set",
			UsageText: "starling field get REF FIELD\n   starling field set REF FIELD VALUE [--type T]",
			Description: `The same as "starling get REF FIELD" and "starling set REF FIELD VALUE".

Example:
   starling field set --data ./node1 /Factory/Line1/Sensor7 temp 21.5`,
			Action: groupAction("get or set"),
			Subcommands: []*cli.Command{
				e.entityGetCommand("starling field get", 2, 2, "REF FIELD"),
				e.setCommand("starling field set"),
			},
		},
	}
	return cmds
}

// groupAction is the action of a command that only groups others.
func groupAction(subs string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return usageErrorf(c, "unknown %s subcommand %q%s: use %s", c.Command.Name, c.Args().First(), didYouMeanCommand(c.Args().First(), c.Command.Subcommands), subs)
		}
		return cli.ShowSubcommandHelp(c)
	}
}

// lastWord is a command's name from its full form ("starling entity ls").
func lastWord(full string) string { return full[strings.LastIndex(full, " ")+1:] }

const refHelp = `REF is a path like /Factory/Line1 ("/" is the root) or an entity ID.`

func (e *cmdEnv) createCommand(full string) *cli.Command {
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     "create an entity: the last element of PATH, under the rest",
		ArgsUsage: "PATH",
		UsageText: full + " --data DIR --type TYPE [--json] PATH",
		Description: `Creates the entity named by the last element of PATH, of type TYPE, under
the entity the rest of PATH names (which must exist; the part before the
last '/' may also be an entity ID). Names are any text without '/'.
Prints the new entity's ID; --json prints it with the write's version.

Example:
   ` + full + ` --data ./node1 --type site /Factory
   ` + full + ` --data ./node1 --type sensor /Factory/Line1/Sensor7`,
		Flags: append(clientFlags(true),
			&cli.StringFlag{Name: flagType, Aliases: []string{"t"}, EnvVars: cmdEnvVar("create", flagType),
				Usage: "entity `TYPE` (letters, digits, '_', '-', '.'); a schema for it, if any, checks the fields"}),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, 1, "PATH"); err != nil {
				return err
			}
			typ := strings.TrimSpace(c.String(flagType))
			if typ == "" {
				return usageErrorf(c, "missing --type TYPE")
			}
			cl, err := clientFrom(c)
			if err != nil {
				return err
			}
			parent, name := splitPath(c.Args().First())
			r, err := cl.CreateEntity(c.Context, parent, typ, name)
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				return e.printJSON(r)
			}
			fmt.Fprintf(e.stdout, "created %s (type %s, id %s)\n", r.Path, typ, r.ID)
			return nil
		},
	}
}

// splitPath splits PATH into the parent's ref and the new name: the
// part before the last '/' ("/" when empty; a path unless it is an
// entity ID) and the part after it.
func splitPath(p string) (parent, name string) {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return "/", p
	}
	parent, name = p[:i], p[i+1:]
	switch {
	case parent == "":
		parent = "/"
	case !strings.HasPrefix(parent, "/") && entity.ID(parent).Validate() != nil:
		parent = "/" + parent
	}
	return parent, name
}

func (e *cmdEnv) entityGetCommand(full string, min, max int, args string) *cli.Command {
	usage := "show an entity: its ID, type, path and fields with their versions"
	desc := `Shows the entity REF names: ID, type, parent, and every field with its type,
value, and the timestamp and writer of the write that holds it.
` + refHelp
	switch {
	case min == 2:
		usage = "show a field's value, timestamp and writer"
		desc = `Shows FIELD of the entity REF names: its value and type, and the hybrid
logical timestamp and node of the write that holds it.
` + refHelp
	case max == 2:
		desc += `
With FIELD, shows that field alone: value, type, timestamp and writer.`
	}
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     usage,
		ArgsUsage: args,
		UsageText: full + " --data DIR [--json] " + args,
		Description: desc + `
Exit code 1 if it does not exist.

Examples:
   ` + full + ` --data ./node1 /Factory/Line1/Sensor7` + map[bool]string{true: " temp", false: ""}[min == 2] + `
   ` + full + ` --data ./node1 --json /Factory/Line1/Sensor7 temp | jq .value.value`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, min, max, args)
			if err != nil {
				return err
			}
			ref := c.Args().First()
			if c.NArg() == 2 {
				f, err := cl.Field(c.Context, ref, c.Args().Get(1))
				if err != nil {
					return err
				}
				if c.Bool(flagJSON) {
					return e.printJSON(f)
				}
				e.printField(f)
				return nil
			}
			ent, err := cl.Entity(c.Context, ref)
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				return e.printJSON(ent)
			}
			e.printEntity(ent)
			return nil
		},
	}
}

// fmtTimestamp shows an HLC timestamp as a time (with its logical
// counter when not 0) and its hex form, which versions use.
func fmtTimestamp(ts entity.Timestamp) string {
	s := ts.Time().Format(time.RFC3339Nano)
	if ts.Logical != 0 {
		s += fmt.Sprintf(" +%d", ts.Logical)
	}
	return s
}

// fmtValue shows a value on one line, cut to max runes (0: no limit).
func fmtValue(v entity.Value, max int) string {
	s := displayValue([]byte(v.String()))
	if v.Kind == entity.KindBytes {
		s = fmt.Sprintf("<%d bytes> %s", len(v.Bytes), s)
	}
	if r := []rune(s); max > 0 && len(r) > max {
		s = string(r[:max-3]) + "..."
	}
	return s
}

func (e *cmdEnv) printField(f entity.Field) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "value\t%s\n", fmtValue(f.Value, 0))
	fmt.Fprintf(w, "type\t%s\n", f.Value.Kind)
	if f.Default {
		fmt.Fprintf(w, "timestamp\t- (never written: the schema's default)\n")
	} else {
		fmt.Fprintf(w, "timestamp\t%s (hlc %s)\n", fmtTimestamp(f.Timestamp), f.Timestamp)
		fmt.Fprintf(w, "writer\t%s\n", f.Writer)
	}
	_ = w.Flush()
}

func (e *cmdEnv) printEntity(ent entity.Entity) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "path\t%s\n", ent.Path)
	fmt.Fprintf(w, "id\t%s\n", ent.ID)
	if ent.ID != entity.Root {
		fmt.Fprintf(w, "type\t%s\n", ent.Type)
		fmt.Fprintf(w, "parent\t%s\n", ent.Parent)
	}
	if ent.Duplicates > 0 {
		fmt.Fprintf(w, "duplicates\t%d other entit%s at this path (created concurrently); the path names the one with the smallest ID\n",
			ent.Duplicates, map[bool]string{true: "y", false: "ies"}[ent.Duplicates == 1])
	}
	_ = w.Flush()
	if len(ent.Fields) == 0 {
		if ent.ID != entity.Root {
			fmt.Fprintln(e.stdout, "no fields")
		}
		return
	}
	names := make([]string, 0, len(ent.Fields))
	for n := range ent.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(e.stdout)
	w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FIELD\tTYPE\tVALUE\tWRITTEN\tBY")
	for _, n := range names {
		f := ent.Fields[n]
		when, by := fmtTimestamp(f.Timestamp), f.Writer
		if f.Default {
			when, by = "(schema default)", "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n, f.Value.Kind, fmtValue(f.Value, 60), when, by)
	}
	_ = w.Flush()
}

func (e *cmdEnv) setCommand(full string) *cli.Command {
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     "write a field (returns once durable on the node)",
		ArgsUsage: "REF FIELD VALUE",
		UsageText: full + " --data DIR [--type TYPE] [--json] REF FIELD VALUE    (VALUE - reads standard input)",
		Description: `Writes FIELD of the entity REF names.
` + refHelp + `
VALUE is read as the type the schema of the entity's type gives FIELD;
without one, as --type (` + entity.KindNames + `);
without that, as true/false, an integer, a number, or else a string. Text
is kept as typed: a number that would not read back the same ("007",
"01234", "1.10", "+5", "1e3") stays a string (with a note on stderr); give
--type int or float (or a schema) to store it as a number.
Bytes are base64, times RFC 3339, json a JSON document, ref an entity
path or ID.
With VALUE "-" it is read from standard input (one trailing newline is
dropped). A value that does not fit the schema is refused, nothing is
written, and the exit code is 1. Prints the write's version (--json: with
the entity's ID), which orders it against every other write.

Examples:
   ` + full + ` --data ./node1 /Factory/Line1/Sensor7 temp 21.5
   ` + full + ` --data ./node1 --type string /Factory/Line1/Sensor7 serial 0042
   ` + full + ` --data ./node1 --type json /Factory config - < config.json`,
		Flags: append(clientFlags(true),
			&cli.StringFlag{Name: flagType, Aliases: []string{"t"}, EnvVars: cmdEnvVar("set", flagType),
				Usage: "read VALUE as `TYPE`: " + entity.KindNames + " (default: the schema's type, else inferred)"}),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 3, 3, "REF FIELD VALUE"); err != nil {
				return err
			}
			var kind entity.Kind
			if t := strings.TrimSpace(c.String(flagType)); t != "" {
				k, err := entity.ParseKind(t)
				if err != nil {
					return usageErrorf(c, "--type: %v", err)
				}
				kind = k
			}
			cl, err := clientFrom(c)
			if err != nil {
				return err
			}
			ref, field, text := c.Args().Get(0), c.Args().Get(1), c.Args().Get(2)
			if text == "-" {
				b, err := io.ReadAll(e.stdin)
				if err != nil {
					return fmt.Errorf("read VALUE from stdin: %w", err)
				}
				text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			}
			ref, v, inferred, err := typedValue(c, cl, ref, field, text, kind)
			if err != nil {
				return err
			}
			r, err := cl.SetField(c.Context, ref, field, v)
			if err != nil {
				return err
			}
			if inferred && v.Kind == entity.KindString && entity.NumberKeptAsText(text) {
				fmt.Fprintf(e.stderr, "note: %q is stored as the string you typed; as a number it would read back differently (use --type int or --type float for a number)\n", text)
			}
			if c.Bool(flagJSON) {
				return e.printJSON(r)
			}
			fmt.Fprintf(e.stdout, "%s %s = %s (%s), version %s\n", r.Path, field, fmtValue(v, 60), v.Kind, r.Version)
			return nil
		},
	}
}

// typedValue reads text as kind, or else as the type the schema of the
// entity's type gives field, or else infers it. When it reads the
// entity, it returns its ID as the ref to write, so that the write lands
// on the entity whose schema typed the value. inferred is true when no
// type was given or declared. A ref value may be a path, as every REF.
func typedValue(c *cli.Context, cl *api.Client, ref, field, text string, kind entity.Kind) (string, entity.Value, bool, error) {
	if kind == entity.KindRef {
		id, err := refTarget(c, cl, text)
		if err != nil {
			return "", entity.Value{}, false, fmt.Errorf("%s: field %q: %w", ref, field, err)
		}
		text = id
	}
	if kind != entity.KindNull {
		v, err := entity.ParseValue(kind, text)
		if err != nil {
			return "", entity.Value{}, false, fmt.Errorf("%s: field %q: %w", ref, field, err)
		}
		return ref, v, false, nil
	}
	ent, err := cl.Entity(c.Context, ref)
	if err != nil {
		return "", entity.Value{}, false, err
	}
	if ent.Type != "" {
		sc, err := cl.Schema(c.Context, ent.Type)
		switch {
		case errors.Is(err, api.ErrNotFound): // no schema: infer
		case err != nil:
			return "", entity.Value{}, false, err
		default:
			if spec, ok := sc.Fields[field]; ok {
				if spec.Type == entity.KindRef {
					id, err := refTarget(c, cl, text)
					if err != nil {
						return "", entity.Value{}, false, fmt.Errorf("%s: field %q: %w", ent.Path, field, err)
					}
					text = id
				}
				v, err := entity.ParseValue(spec.Type, text)
				if err != nil {
					return "", entity.Value{}, false, fmt.Errorf("%s: field %q of type %s is %s: %w", ent.Path, field, ent.Type, spec.Type, err)
				}
				return string(ent.ID), v, false, nil
			}
		}
	}
	v, err := entity.InferValue(text)
	if err != nil {
		return "", entity.Value{}, false, fmt.Errorf("%s: field %q: %w", ent.Path, field, err)
	}
	return string(ent.ID), v, true, nil
}

// refTarget is the entity ID a ref value names: an ID as given (the
// entity may not have reached this node yet), a path resolved on the node.
func refTarget(c *cli.Context, cl *api.Client, text string) (string, error) {
	if entity.ID(text).Validate() == nil {
		return text, nil
	}
	if !strings.HasPrefix(text, "/") {
		return "", fmt.Errorf("ref value %q is neither an entity ID nor a path (paths start with '/')", text)
	}
	ent, err := cl.Entity(c.Context, text)
	if err != nil {
		return "", fmt.Errorf("ref value %s: %w", text, err)
	}
	return string(ent.ID), nil
}

func (e *cmdEnv) lsCommand(full string, depth int) *cli.Command {
	usage, what := "show the entity tree under REF with types and IDs", "the tree under REF (the whole tree by default)"
	if depth == 1 {
		usage, what = "list the entities directly under REF", "the entities directly under REF (--depth 0 for all)"
	}
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     usage,
		ArgsUsage: "[REF]",
		UsageText: full + " --data DIR [--depth N] [--json] [REF]",
		Description: `Shows ` + what + `: REF ("/" by default), then each entity below it,
indented, with its type and ID; --depth N stops N levels below REF.
Entities created at the same path on both sides of a partition are both
shown, marked as duplicates: the path names the first (smallest ID); use
the other's ID, or rename one.
` + refHelp + `

Examples:
   ` + full + ` --data ./node1
   ` + full + ` --data ./node1 --depth 1 /Factory
   ` + full + ` --data ./node1 --json /Factory | jq '.children[].name'`,
		Flags: append(clientFlags(true),
			&cli.IntFlag{Name: flagDepth, Value: depth, EnvVars: cmdEnvVar(lastWord(full), flagDepth),
				Usage: "show `N` levels below REF (0: all)"}),
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, 1, "[REF]"); err != nil {
				return err
			}
			d := c.Int(flagDepth)
			if d < 0 {
				return usageErrorf(c, "--depth %d: give a number of levels, or 0 for all", d)
			}
			if d == 0 {
				d = -1 // the API's "all"
			}
			ref := c.Args().First()
			if ref == "" {
				ref = "/"
			}
			cl, err := clientFrom(c)
			if err != nil {
				return err
			}
			tr, err := cl.Tree(c.Context, ref, d, false)
			if err != nil {
				return err
			}
			if c.Bool(flagJSON) {
				return e.printJSON(tr)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			printTree(w, tr)
			return w.Flush()
		},
	}
}

// printTree writes one line per entity: the path of the top one, then
// each name below it indented by level, with type, ID, and a note on
// duplicate paths.
func printTree(w io.Writer, t api.TreeNode) {
	typ := t.Type
	if t.ID == entity.Root {
		typ = "(root)"
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Path, typ, t.ID, dupNote(t.Entity, false))
	printChildren(w, t.Children, 1)
}

func printChildren(w io.Writer, cs []api.TreeNode, level int) {
	for i, c := range cs {
		// Children come by name then ID: the first of equal names is the
		// one the path resolves to.
		later := i > 0 && cs[i-1].Name == c.Name
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", strings.Repeat("  ", level)+c.Name, c.Type, c.ID, dupNote(c.Entity, later))
		printChildren(w, c.Children, level+1)
	}
}

// dupNote explains a duplicate path; later is true for the entities
// after the first of the same name.
func dupNote(ent entity.Entity, later bool) string {
	switch {
	case ent.Duplicates == 0:
		return ""
	case later:
		return "duplicate path: reach this one by its ID"
	}
	return fmt.Sprintf("duplicate path (%d entities, created concurrently): the path names this one", ent.Duplicates+1)
}

func (e *cmdEnv) mvCommand(full string) *cli.Command {
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     "move an entity under a new parent (keeping its name)",
		ArgsUsage: "REF NEWPARENT",
		UsageText: full + " --data DIR [--json] REF NEWPARENT",
		Description: `Moves the entity REF names, with everything below it, under NEWPARENT
("/" for the top level). Moving an entity under itself or below itself is
refused.
` + refHelp + `

Example:
   ` + full + ` --data ./node1 /Factory/Line1/Sensor7 /Factory/Line2`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 2, 2, "REF NEWPARENT")
			if err != nil {
				return err
			}
			r, err := cl.MoveEntity(c.Context, c.Args().Get(0), c.Args().Get(1))
			if err != nil {
				return err
			}
			return e.printWrite(c, r, "moved to %s (id %s)\n", r.Path, r.ID)
		},
	}
}

func (e *cmdEnv) renameCommand(full string) *cli.Command {
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     "rename an entity (under the same parent)",
		ArgsUsage: "REF NAME",
		UsageText: full + " --data DIR [--json] REF NAME",
		Description: `Gives the entity REF names the name NAME (any text without '/', not empty,
"." or "..").
` + refHelp + `

Example:
   ` + full + ` --data ./node1 /Factory/Line1/Sensor7 Sensor8`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 2, 2, "REF NAME")
			if err != nil {
				return err
			}
			r, err := cl.RenameEntity(c.Context, c.Args().Get(0), c.Args().Get(1))
			if err != nil {
				return err
			}
			return e.printWrite(c, r, "renamed to %s (id %s)\n", r.Path, r.ID)
		},
	}
}

func (e *cmdEnv) rmCommand(full string) *cli.Command {
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     "delete an entity (--recursive: with everything below it)",
		ArgsUsage: "REF",
		UsageText: full + " --data DIR [--recursive] [--json] REF",
		Description: `Deletes the entity REF names. An entity with children is only deleted with
--recursive, which hides the whole subtree. Prints the entity's ID:
"starling restore ID" brings it back with what was deleted with it.
` + refHelp + `

Example:
   ` + full + ` --data ./node1 --recursive /Factory/Line1`,
		Flags: append(clientFlags(true),
			&cli.BoolFlag{Name: flagRecursive, Aliases: []string{"r"},
				Usage: "delete an entity that has children, with them"}),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "REF")
			if err != nil {
				return err
			}
			r, err := cl.DeleteEntity(c.Context, c.Args().First(), c.Bool(flagRecursive))
			if err != nil {
				return err
			}
			return e.printWrite(c, r, "deleted %s (id %s); undo with: starling restore %s\n", r.Path, r.ID, r.ID)
		},
	}
}

func (e *cmdEnv) restoreCommand(full string) *cli.Command {
	return &cli.Command{
		Name:      lastWord(full),
		Category:  catEntities,
		Usage:     "undelete an entity by ID, with what was deleted with it",
		ArgsUsage: "ID",
		UsageText: full + " --data DIR [--json] ID",
		Description: `Restores the deleted entity ID (as "starling rm" printed it), with the
entities below it that were deleted with it, and the fields written
meanwhile.

Example:
   ` + full + ` --data ./node1 01J9ZQ3V7K2M4N6P8R0T2W4Y6A`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "ID")
			if err != nil {
				return err
			}
			r, err := cl.RestoreEntity(c.Context, entity.ID(c.Args().First()))
			if err != nil {
				return err
			}
			return e.printWrite(c, r, "restored %s (id %s)\n", r.Path, r.ID)
		},
	}
}

// printWrite prints a write's result: JSON with --json, else the line.
func (e *cmdEnv) printWrite(c *cli.Context, r api.WriteResult, format string, args ...any) error {
	if c.Bool(flagJSON) {
		return e.printJSON(r)
	}
	_, err := fmt.Fprintf(e.stdout, format, args...)
	return err
}

const schemaExample = `{
     "type": "sensor",
     "fields": {
       "temp":  {"type": "float", "unit": "C", "min": -40, "max": 125},
       "state": {"type": "string", "default": "idle", "doc": "what it does now"}
     }
   }`

func (e *cmdEnv) schemaCommand() *cli.Command {
	return &cli.Command{
		Name:      "schema",
		Category:  catEntities,
		Usage:     "apply, list or show the schemas of entity types",
		UsageText: "starling schema apply --data DIR FILE\n   starling schema ls --data DIR\n   starling schema show --data DIR TYPE",
		Description: `A schema lists the fields of an entity type with their types (and
optionally default, unit, min, max, doc). Once a type has one, writes to
its entities are checked against it; before, any field is accepted.
Schemas can gain fields (existing entities read a new field's default
until it is written); removing a field or changing its type is refused.

Example:
   starling schema apply --data ./node1 sensor.json`,
		Action: groupAction("apply, ls or show"),
		Subcommands: []*cli.Command{
			{
				Name:      "apply",
				Usage:     "apply the schema(s) in FILE (JSON or YAML)",
				ArgsUsage: "FILE",
				UsageText: "starling schema apply --data DIR [--json] FILE    (FILE - reads standard input)",
				Description: `Applies the schema in FILE, or every schema of a list or of a YAML file of
several documents ("---"), in one write: all of them, or none. FILE is
JSON, or YAML when it ends in .yaml or .yml (or does not start with '{'
or '['). Every schema is checked before any is applied; unknown keys are
refused. A schema:

   ` + schemaExample + `

Example:
   starling schema apply --data ./node1 sensor.json`,
				Flags: clientFlags(true),
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, 1, "FILE"); err != nil {
						return err
					}
					name := c.Args().First()
					var b []byte
					var err error
					if name == "-" {
						name = "stdin"
						b, err = io.ReadAll(e.stdin)
					} else {
						b, err = os.ReadFile(name)
					}
					if err != nil {
						return err
					}
					scs, err := parseSchemas(name, b)
					if err != nil {
						return err
					}
					cl, err := clientFrom(c)
					if err != nil {
						return err
					}
					// One write for all: a file of several schemas is
					// applied whole or not at all.
					out, err := cl.PutSchemas(c.Context, scs)
					if err != nil {
						if len(scs) > 1 {
							return fmt.Errorf("%w (none of the %d schemas in %s was applied)", err, len(scs), name)
						}
						return err
					}
					if !c.Bool(flagJSON) {
						for i, sc := range scs {
							fmt.Fprintf(e.stdout, "applied schema %s (%s), version %s\n", sc.Type, counted(len(sc.Fields), "field", "fields"), out[i].Version)
						}
					}
					if c.Bool(flagJSON) {
						return e.printJSON(out)
					}
					return nil
				},
			},
			{
				Name:      "ls",
				Usage:     "list the schemas",
				UsageText: "starling schema ls --data DIR [--json]",
				Description: `Lists every entity type with a schema and its fields.

Example:
   starling schema ls --data ./node1`,
				Flags: clientFlags(true),
				Action: func(c *cli.Context) error {
					cl, err := argsAndClient(c, 0, 0, "no arguments")
					if err != nil {
						return err
					}
					scs, err := cl.Schemas(c.Context)
					if err != nil {
						return err
					}
					if c.Bool(flagJSON) {
						if scs == nil {
							scs = []entity.Schema{}
						}
						return e.printJSON(scs)
					}
					if len(scs) == 0 {
						fmt.Fprintln(e.stdout, "no schemas: apply one with starling schema apply")
						return nil
					}
					return e.printSchemas(scs)
				},
			},
			{
				Name:      "show",
				Aliases:   []string{"get"},
				Usage:     "show the schema of a type",
				ArgsUsage: "TYPE",
				UsageText: "starling schema show --data DIR [--json] TYPE",
				Description: `Shows the fields of TYPE's schema; exit code 1 if it has none.

Example:
   starling schema show --data ./node1 sensor`,
				Flags: clientFlags(true),
				Action: func(c *cli.Context) error {
					cl, err := argsAndClient(c, 1, 1, "TYPE")
					if err != nil {
						return err
					}
					sc, err := cl.Schema(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					if c.Bool(flagJSON) {
						return e.printJSON(sc)
					}
					return e.printSchemas([]entity.Schema{sc})
				},
			},
		},
	}
}

// parseSchemas reads one schema or a list, as JSON or YAML, refusing
// unknown keys, and checks each.
func parseSchemas(name string, b []byte) ([]entity.Schema, error) {
	trimmed := bytes.TrimSpace(b)
	ext := strings.ToLower(filepath.Ext(name))
	isYAML := ext == ".yaml" || ext == ".yml" ||
		(ext != ".json" && (len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[')))
	if isYAML {
		// A YAML file may hold several documents (separated by "---"):
		// each is a schema or a list of them, and all are applied.
		var docs []any
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: not valid YAML: %w", name, err)
			}
			switch d := doc.(type) {
			case nil: // an empty document, e.g. after a trailing "---"
			case []any:
				docs = append(docs, d...)
			default:
				docs = append(docs, d)
			}
		}
		var j []byte
		var err error
		switch len(docs) {
		case 0:
			j = nil
		case 1:
			j, err = json.Marshal(docs[0])
		default:
			j, err = json.Marshal(docs)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w (keys must be strings)", name, err)
		}
		trimmed = j
	}
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, fmt.Errorf("%s is empty: want a schema like\n   %s", name, schemaExample)
	}
	var scs []entity.Schema
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	var err error
	if trimmed[0] == '[' {
		err = dec.Decode(&scs)
	} else {
		var sc entity.Schema
		err = dec.Decode(&sc)
		scs = []entity.Schema{sc}
	}
	if err == nil && dec.More() {
		err = errors.New("more data after the schema")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w; want a schema (or a list of them) like\n   %s", name, err, schemaExample)
	}
	var errs []error
	for i, sc := range scs {
		if err := sc.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: schema %d (%s): %w", name, i+1, sc.Type, err))
		}
	}
	return scs, errors.Join(errs...)
}

func (e *cmdEnv) printSchemas(scs []entity.Schema) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TYPE\tFIELD\tKIND\tUNIT\tMIN\tMAX\tDEFAULT\tDOC")
	for _, sc := range scs {
		names := make([]string, 0, len(sc.Fields))
		for n := range sc.Fields {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			fmt.Fprintf(w, "%s\t(no fields)\t\t\t\t\t\t\n", sc.Type)
		}
		for _, n := range names {
			f := sc.Fields[n]
			opt := func(p *float64) string {
				if p == nil {
					return "-"
				}
				return fmt.Sprint(*p)
			}
			def := "-"
			if len(f.Default) > 0 {
				def = string(f.Default)
			}
			unit := f.Unit
			if unit == "" {
				unit = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sc.Type, n, f.Type, unit, opt(f.Min), opt(f.Max), def, f.Doc)
		}
	}
	return w.Flush()
}

func (e *cmdEnv) watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Category:  catEntities,
		Usage:     "print changes under a path as they happen, local and remote",
		ArgsUsage: "[PATH]",
		UsageText: "starling watch --data DIR [--json] [PATH]",
		Description: `Prints every change to the entity at PATH and below it ("/", everything, by
default), made on this node or received from another, until Ctrl-C: time
of the write, path, field (or $name, $parent, $type, $exists for the
entity itself, $schema for a schema), old and new value, and the writer.
--json prints one JSON object per line. PATH may be an entity ID: its
path when the watch starts is watched. A "$reload" event means events
were lost: read the tree again.

Examples:
   starling watch --data ./node1 /Factory
   starling watch --data ./node1 --json | jq -c 'select(.field == "temp")'`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 1, "[PATH]")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			ws, err := cl.Watch(ctx, c.Args().First())
			if err != nil {
				return err
			}
			defer ws.Close()
			enc := json.NewEncoder(e.stdout)
			for {
				ev, err := ws.Next()
				switch {
				case ctx.Err() != nil:
					return nil // Ctrl-C
				case errors.Is(err, io.EOF):
					return errors.New("the node ended the watch (it is stopping)")
				case err != nil:
					return fmt.Errorf("watch: %w", err)
				}
				if c.Bool(flagJSON) {
					if err := enc.Encode(ev); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintln(e.stdout, fmtEvent(ev))
			}
		},
	}
}

// fmtEvent shows an event on one line.
func fmtEvent(ev entity.Event) string {
	if ev.Field == "$reload" {
		return "-- events were lost (the watch fell behind): read the tree again"
	}
	val := func(v *entity.Value) string {
		if v == nil {
			return "-"
		}
		return fmtValue(*v, 60)
	}
	origin := "local"
	if !ev.Local {
		origin = "remote"
	}
	return fmt.Sprintf("%s  %s  %s  %s -> %s  (%s, %s)",
		ev.Timestamp.Time().Format("2006-01-02T15:04:05.000Z07:00"), ev.Path, ev.Field, val(ev.Old), val(ev.New), ev.Writer, origin)
}
