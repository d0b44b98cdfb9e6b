package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
)

// exportLine is one line of an export file (JSON lines): a schema, or an
// entity with the fields written on it. Parents come before children, so
// the file imports in order.
type exportLine struct {
	Schema *entity.Schema `json:"schema,omitempty"`
	Entity *exportEntity  `json:"entity,omitempty"`
}

// exportEntity is an entity as exported. ID is the entity's ID where it
// was exported: an import makes new entities (new IDs) and rewrites ref
// fields that point to an exported entity to its new ID.
type exportEntity struct {
	ID     entity.ID               `json:"id"`
	Path   string                  `json:"path"`
	Type   string                  `json:"type"`
	Fields map[string]entity.Value `json:"fields,omitempty"`
}

func (e *cmdEnv) exportCommand() *cli.Command {
	return &cli.Command{
		Name:     "export",
		Category: catEntities,
		Usage:    "write the entity tree and the schemas as JSON lines (to FILE, or standard output)",
		UsageText: `starling export --data DIR [--path PATH] [FILE]
   starling export --api HOST:PORT --token TOKEN [--path PATH] [FILE]`,
		Description: `Writes every schema, then every entity under PATH (default: the whole
tree) with the fields written on it, one JSON object per line, parents
before children:

   {"schema": {"type": "sensor", "fields": {...}}}
   {"entity": {"id": "01J9...", "path": "/Plant/L1", "type": "Line", "fields": {"temp": {"type": "float", "value": 21.5}}}}

Fields still at their schema default are left out. The file is what
"starling import" reads, on this cluster or another; it is not a backup
(no history, no versions: see "starling backup" for that). FILE is
written beside itself and renamed when complete; without FILE, or with
"-", the lines go to standard output.

Examples:
   starling export --data ./node1 tree.jsonl
   starling export --data ./node1 --path /Plant | jq -c .entity.path`,
		Flags: append(clientFlags(false),
			&cli.StringFlag{Name: "path", Value: "/", EnvVars: cmdEnvVar("export", "path"), Usage: "export only the entities under `PATH` (with PATH itself)"},
		),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 0, 1, "[FILE]")
			if err != nil {
				return err
			}
			file := c.Args().First()
			write := func(w io.Writer) error { return exportTree(c.Context, cl, c.String("path"), w) }
			n, toStdout, err := e.writeOut(file, write)
			if err != nil || toStdout {
				return err
			}
			fmt.Fprintf(e.stdout, "exported to %s (%s)\n", file, humanBytes(n))
			return nil
		},
	}
}

// exportTree writes the schemas and the entities under root to w.
func exportTree(ctx context.Context, cl *api.Client, root string, w io.Writer) error {
	enc := json.NewEncoder(w)
	scs, err := cl.Schemas(ctx)
	if err != nil {
		return err
	}
	for i := range scs {
		if err := enc.Encode(exportLine{Schema: &scs[i]}); err != nil {
			return err
		}
	}
	tree, err := cl.Tree(ctx, root, -1, true)
	if err != nil {
		return err
	}
	var walk func(n api.TreeNode) error
	walk = func(n api.TreeNode) error {
		if n.ID != "" && n.Path != "/" {
			ee := exportEntity{ID: n.ID, Path: n.Path, Type: n.Type}
			for name, f := range n.Fields {
				if f.Default {
					continue
				}
				if ee.Fields == nil {
					ee.Fields = make(map[string]entity.Value)
				}
				ee.Fields[name] = f.Value
			}
			if err := enc.Encode(exportLine{Entity: &ee}); err != nil {
				return err
			}
		}
		for _, ch := range n.Children {
			if err := walk(ch); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(tree)
}

// importBatch is how many field writes go in one atomic batch.
const importBatch = 1000

func (e *cmdEnv) importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Category:  catEntities,
		Usage:     "create the schemas and entities of an export FILE (JSON lines) on a node",
		UsageText: `starling import --data DIR [--json] FILE`,
		Description: `Reads a file made by "starling export" ("-": standard input) and checks
every line before writing anything. Then it applies the schemas, creates
each entity by path (an entity that exists at the path with the same type
is kept, so an import can be run again), and writes the fields in atomic
batches of 1,000. Ref fields that point to an exported entity point to its
new ID. Progress goes to standard error.

An entity at a path with another type stops the import there: what was
written before stays (the counts say how far it got); fix the tree or the
file and run the import again.

Example:
   starling export --data ./plant1 tree.jsonl
   starling import --data ./lab tree.jsonl`,
		Flags: clientFlags(true),
		Action: func(c *cli.Context) error {
			cl, err := argsAndClient(c, 1, 1, "FILE")
			if err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			if f := c.Args().First(); f != "-" {
				fh, err := os.Open(f)
				if err != nil {
					return err
				}
				defer fh.Close()
				r = fh
			}
			lines, err := readExport(r)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			bar := newCountBar(e.stderr, "import")
			res, err := importLines(ctx, cl, lines, bar.update)
			bar.done()
			if c.Bool(flagJSON) {
				if perr := e.printJSON(res); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintf(e.stdout, "imported %d %s, %d %s created (%d already there), %d %s written\n",
					res.Schemas, plural2(res.Schemas, "schema", "schemas"), res.Created, plural2(res.Created, "entity", "entities"),
					res.Existing, res.Fields, plural2(res.Fields, "field", "fields"))
			}
			return err
		},
	}
}

func plural2(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// importResult counts what an import did.
type importResult struct {
	Schemas  int `json:"schemas"`
	Created  int `json:"created"`
	Existing int `json:"existing"`
	Fields   int `json:"fields"`
}

// readExport reads and checks a whole export file.
func readExport(r io.Reader) ([]exportLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 32<<20)
	var lines []exportLine
	seen := map[string]bool{"/": true}
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l exportLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("line %d: %v: not a line of `starling export` (nothing was imported)", n, err)
		}
		switch {
		case (l.Schema == nil) == (l.Entity == nil):
			return nil, fmt.Errorf("line %d: want one of \"schema\" or \"entity\" (nothing was imported)", n)
		case l.Entity != nil:
			p := l.Entity.Path
			if p == "" || p[0] != '/' || p == "/" || l.Entity.Type == "" {
				return nil, fmt.Errorf("line %d: an entity needs a path below / and a type (nothing was imported)", n)
			}
			if !seen[path.Dir(p)] {
				return nil, fmt.Errorf("line %d: %s comes before its parent %s: an export lists parents first (nothing was imported)", n, p, path.Dir(p))
			}
			seen[p] = true
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w (nothing was imported)", err)
	}
	return lines, nil
}

// importLines writes lines through cl; progress gets (done, total).
func importLines(ctx context.Context, cl *api.Client, lines []exportLine, progress func(done, total int)) (importResult, error) {
	var res importResult
	total := len(lines)
	newID := make(map[entity.ID]entity.ID)
	type pending struct {
		id     entity.ID
		fields map[string]entity.Value
	}
	var todo []pending
	for i, l := range lines {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		progress(i, total)
		if l.Schema != nil {
			if _, err := cl.PutSchema(ctx, *l.Schema); err != nil {
				return res, fmt.Errorf("schema %s: %w", l.Schema.Type, err)
			}
			res.Schemas++
			continue
		}
		ee := l.Entity
		id, err := ensureEntity(ctx, cl, ee, &res)
		if err != nil {
			return res, err
		}
		if ee.ID != "" {
			newID[ee.ID] = id
		}
		if len(ee.Fields) > 0 {
			todo = append(todo, pending{id, ee.Fields})
		}
	}
	var batch []api.FieldWrite
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := cl.SetFields(ctx, batch); err != nil {
			return fmt.Errorf("write fields: %w", err)
		}
		res.Fields += len(batch)
		batch = batch[:0]
		return nil
	}
	for _, p := range todo {
		for name, v := range p.fields {
			if v.Kind == entity.KindRef {
				if to, ok := newID[entity.ID(v.Str)]; ok {
					v.Str = string(to)
				}
			}
			batch = append(batch, api.FieldWrite{Ref: string(p.id), Field: name, Value: v})
			if len(batch) == importBatch {
				if err := flush(); err != nil {
					return res, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	progress(total, total)
	return res, nil
}

// ensureEntity returns the ID of the entity at ee.Path, creating it if
// there is none; one of another type there is an error.
func ensureEntity(ctx context.Context, cl *api.Client, ee *exportEntity, res *importResult) (entity.ID, error) {
	got, err := cl.Entity(ctx, ee.Path)
	switch {
	case err == nil && got.Type == ee.Type:
		res.Existing++
		return got.ID, nil
	case err == nil:
		return "", fmt.Errorf("%s exists with type %s, the file has %s: rename or move it, or edit the file, and import again", ee.Path, got.Type, ee.Type)
	case !errors.Is(err, entity.ErrNotFound):
		return "", fmt.Errorf("%s: %w", ee.Path, err)
	}
	r, err := cl.CreateEntity(ctx, path.Dir(ee.Path), ee.Type, path.Base(ee.Path))
	if err != nil {
		return "", fmt.Errorf("create %s: %w", ee.Path, err)
	}
	res.Created++
	return r.ID, nil
}

// countBar draws done/total on a terminal (redrawn in place at most every
// 100 ms), or a line per tenth elsewhere.
type countBar struct {
	w     io.Writer
	what  string
	tty   bool
	last  time.Time
	tenth int
	drawn bool
}

func newCountBar(w io.Writer, what string) *countBar {
	return &countBar{w: w, what: what, tty: isTerminal(w), tenth: -1}
}

func (b *countBar) update(done, total int) {
	if total == 0 {
		return
	}
	frac := float64(done) / float64(total)
	if !b.tty {
		if t := int(frac * 10); t > b.tenth {
			b.tenth = t
			fmt.Fprintf(b.w, "%s: %d/%d lines\n", b.what, done, total)
		}
		return
	}
	if done < total && time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	fmt.Fprintf(b.w, "\r%s %s %d/%d lines", b.what, bar(frac, 30), done, total)
	b.drawn = true
}

func (b *countBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
