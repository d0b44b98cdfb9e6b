package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// startEntityNode runs a real node in-process on loopback, with its data
// dir for --data.
func startEntityNode(t *testing.T, id string) (string, *node.Node) {
	t.Helper()
	n := nodetest.Start(t, id)
	return n.Dir(), n
}

const sensorYAML = `# a sensor
type: sensor
fields:
  temp:  {type: float, unit: C, min: -40, max: 125}
  count: {type: int, max: 1000}
  state: {type: string, default: idle, doc: what it does now}
`

const lineJSON = `[{"type": "line", "fields": {"speed": {"type": "float"}}}]`

// step is one CLI run and what it must print.
type step struct {
	stdin   string
	args    []string
	code    int
	has     []string // substrings of stdout
	errHas  []string // substrings of stderr
	check   func(t *testing.T, stdout string)
	capture *string // stores stdout
}

func runSteps(t *testing.T, steps []step) {
	t.Helper()
	for _, s := range steps {
		r := runApp(t, s.stdin, s.args...)
		if r.code != s.code {
			t.Fatalf("%q: exit %d, want %d\nstdout: %s\nstderr: %s", s.args, r.code, s.code, r.stdout, r.stderr)
		}
		for _, h := range s.has {
			if !strings.Contains(r.stdout, h) {
				t.Errorf("%q: stdout does not have %q:\n%s", s.args, h, r.stdout)
			}
		}
		for _, h := range s.errHas {
			if !strings.Contains(r.stderr, h) {
				t.Errorf("%q: stderr does not have %q: %s", s.args, h, r.stderr)
			}
		}
		if s.code != 0 && !strings.HasPrefix(r.stderr, "starling: ") {
			t.Errorf("%q: stderr should start with 'starling: ': %q", s.args, r.stderr)
		}
		if s.check != nil {
			s.check(t, r.stdout)
		}
		if s.capture != nil {
			*s.capture = r.stdout
		}
	}
}

func TestEntityCommands(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, n := startEntityNode(t, "node1")
	yml := filepath.Join(t.TempDir(), "sensor.yaml")
	if err := os.WriteFile(yml, []byte(sensorYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	d := []string{"--data", dir}
	with := func(args ...string) []string { return append(append([]string{args[0]}, d...), args[1:]...) }
	sub := func(a, b string, args ...string) []string { return append(append([]string{a, b}, d...), args...) }
	var rmOut string
	runSteps(t, []step{
		{args: sub("schema", "apply", yml), has: []string{"applied schema sensor (3 fields)"}},
		{args: sub("schema", "apply", "-"), stdin: lineJSON, has: []string{"applied schema line"}},
		{args: with("create", "--type", "site", "/Factory"), has: []string{"created /Factory (type site, id "}},
		{args: with("create", "--type", "line", "Factory/Line1"), has: []string{"created /Factory/Line1"}}, // leading '/' optional
		{args: sub("entity", "create", "--type", "sensor", "/Factory/Line1/Sensor7"), has: []string{"created /Factory/Line1/Sensor7"}},
		{args: with("set", "/Factory/Line1/Sensor7", "temp", "21"), has: []string{"temp = 21 (float)", "version "}}, // the schema's type
		{args: sub("field", "set", "/Factory/Line1/Sensor7", "count", "7"), has: []string{"count = 7 (int)"}},
		{args: with("set", "/Factory", "n", "42"), has: []string{"n = 42 (int)"}}, // inferred
		{args: with("set", "/Factory", "note", "hello world"), has: []string{"(string)"}},
		{args: with("set", "--type", "string", "/Factory", "serial", "0042"), has: []string{"serial = 0042 (string)"}},
		{args: with("set", "--type", "json", "/Factory", "cfg", "-"), stdin: `{"a": [1, 2]}` + "\n", has: []string{"(json)"}},
		{args: with("set", "/Factory", "doc", "-"), stdin: "line1\nline2\n", has: []string{`"line1\nline2"`}},
		{args: with("set", "--json", "/Factory/Line1", "speed", "1.5"), check: func(t *testing.T, out string) {
			var r api.WriteResult
			if err := json.Unmarshal([]byte(out), &r); err != nil || r.Path != "/Factory/Line1" || r.Version.Writer != "node1" || r.Version.Timestamp.IsZero() {
				t.Errorf("set --json: %q, %v", out, err)
			}
		}},
		{args: with("get", "/Factory/Line1/Sensor7"), has: []string{"path    /Factory/Line1/Sensor7\n", "type    sensor\n",
			"FIELD", "temp", "float", "21", "node1", "state", "idle", "(schema default)"}},
		{args: with("get", "/Factory/Line1/Sensor7", "temp"), has: []string{"value      21\n", "type       float", "timestamp  20", "(hlc ", "writer     node1"}},
		{args: sub("field", "get", "--json", "/Factory/Line1/Sensor7", "temp"), check: func(t *testing.T, out string) {
			var f entity.Field
			if err := json.Unmarshal([]byte(out), &f); err != nil || f.Value.Kind != entity.KindFloat || f.Value.Float != 21 || f.Writer != "node1" {
				t.Errorf("field get --json: %q, %v", out, err)
			}
		}},
		{args: with("get", "/Factory", "doc"), has: []string{`"line1\nline2"`}},
		{args: with("get", "/Factory", "cfg"), has: []string{`{"a":[1,2]}`}}, // compacted by JSON encoding
		{args: sub("entity", "get", "--json", "/Factory"), check: func(t *testing.T, out string) {
			var e entity.Entity
			if err := json.Unmarshal([]byte(out), &e); err != nil || e.Type != "site" || e.Fields["serial"].Value.Str != "0042" || e.Fields["n"].Value.Int != 42 {
				t.Errorf("entity get --json: %q, %v", out, err)
			}
		}},
		{args: with("ls"), check: func(t *testing.T, out string) {
			want := []string{`^/\s+\(root\)\s+0{26}`, `(?m)^  Factory\s+site\s+\w{26}`, `(?m)^    Line1\s+line`, `(?m)^      Sensor7\s+sensor`}
			for _, w := range want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("ls output lacks %s:\n%s", w, out)
				}
			}
		}},
		{args: with("ls", "--depth", "1", "/Factory"), check: func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "/Factory ") || !strings.Contains(out, "Line1") || strings.Contains(out, "Sensor7") {
				t.Errorf("ls --depth 1:\n%s", out)
			}
		}},
		{args: sub("entity", "ls", "/Factory"), check: func(t *testing.T, out string) {
			if !strings.Contains(out, "Line1") || strings.Contains(out, "Sensor7") {
				t.Errorf("entity ls:\n%s", out)
			}
		}},
		{args: sub("entity", "tree", "--json", "/Factory"), check: func(t *testing.T, out string) {
			var tr api.TreeNode
			if err := json.Unmarshal([]byte(out), &tr); err != nil || len(tr.Children) != 1 || len(tr.Children[0].Children) != 1 ||
				tr.Children[0].Children[0].Name != "Sensor7" {
				t.Errorf("entity tree --json: %q, %v", out, err)
			}
		}},
		{args: with("rename", "/Factory/Line1/Sensor7", "S7"), has: []string{"renamed to /Factory/Line1/S7"}},
		{args: with("mv", "/Factory/Line1/S7", "/Factory"), has: []string{"moved to /Factory/S7"}},
		{args: sub("entity", "mv", "/Factory/S7", "/"), has: []string{"moved to /S7"}},
		{args: with("rm", "/Factory"), code: 1, errHas: []string{"has 1 child;", "--recursive"}},
		{args: with("rm", "-r", "/Factory"), has: []string{"deleted /Factory (id ", "starling restore "}, capture: &rmOut},
		{args: with("get", "/Factory/Line1"), code: 1, errHas: []string{"no such entity"}},
		{args: sub("schema", "ls"), has: []string{"TYPE", "sensor", "temp", "float", "C", "-40", "125", `"idle"`, "line", "speed"}},
		{args: sub("schema", "show", "sensor"), check: func(t *testing.T, out string) {
			if !strings.Contains(out, "count") || strings.Contains(out, "speed") {
				t.Errorf("schema show:\n%s", out)
			}
		}},
		{args: sub("schema", "get", "--json", "sensor"), check: func(t *testing.T, out string) {
			var sc entity.Schema
			if err := json.Unmarshal([]byte(out), &sc); err != nil || sc.Type != "sensor" || sc.Fields["temp"].Unit != "C" {
				t.Errorf("schema get --json: %q, %v", out, err)
			}
		}},
		{args: sub("schema", "show", "nope"), code: 1, errHas: []string{`"nope"`}},
	})
	id := regexp.MustCompile(`restore (\w{26})`).FindStringSubmatch(rmOut)
	if id == nil {
		t.Fatalf("rm did not print the ID: %q", rmOut)
	}
	runSteps(t, []step{
		{args: with("restore", id[1]), has: []string{"restored /Factory (id " + id[1]}},
		{args: with("get", "/Factory/Line1", "speed"), has: []string{"1.5"}},
	})

	// With --api and --token instead of --data.
	runSteps(t, []step{
		{args: []string{"get", "--api", n.APIAddr(), "--token", n.Token(), "/S7", "count"}, has: []string{"value      7"}},
	})
}

func TestEntityWatchCommand(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, n := startEntityNode(t, "node1")
	ctx := context.Background()
	for _, name := range []string{"F", "G"} {
		if _, err := n.Entities().Create(ctx, "/", "site", name); err != nil {
			t.Fatal(err)
		}
	}
	for _, asJSON := range []bool{false, true} {
		wctx, cancel := context.WithCancel(ctx)
		args := []string{"watch", "--data", dir}
		if asJSON {
			args = append(args, "--json")
		}
		done, out, _ := runInBackground(wctx, append(args, "/F")...)
		// The watch is live once its request is answered; until then a
		// write may come before it: write until one shows.
		i := int64(0)
		testutil.Eventually(t, 15*time.Second, "an event in the watch output", func() bool {
			select {
			case r := <-done:
				t.Fatalf("watch ended early: %+v", r)
			default:
			}
			i++
			if _, err := n.Entities().Set(ctx, "/F", "temp", entity.Int(i)); err != nil {
				t.Fatal(err)
			}
			if _, err := n.Entities().Set(ctx, "/G", "temp", entity.Int(i)); err != nil { // not watched
				t.Fatal(err)
			}
			return strings.Contains(out.String(), "temp")
		})
		cancel()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop on cancel")
		}
		if r.code != 0 {
			t.Errorf("watch exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		for _, l := range lines {
			if asJSON {
				var ev entity.Event
				if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Path != "/F" || ev.Field != "temp" || ev.Writer != "node1" {
					t.Errorf("watch --json line %q: %v", l, err)
				}
			} else if !regexp.MustCompile(`^20\S+  /F  temp  (-|\d+) -> \d+  \(node1, local\)$`).MatchString(l) {
				t.Errorf("watch line %q", l)
			}
		}
	}
}

func TestEntityCommandsBadInput(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, n := startEntityNode(t, "node1")
	ctx := context.Background()
	es := n.Entities()
	if err := es.PutSchema(ctx, entity.Schema{Type: "sensor", Fields: map[string]entity.FieldSpec{
		"temp":  {Type: entity.KindFloat, Min: ptr(-40.0), Max: ptr(125.0)},
		"count": {Type: entity.KindInt},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Create(ctx, "/", "site", "F"); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Create(ctx, "/F", "sensor", "S"); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	malformed := file("bad.json", `{"type": "x", "fields": {`)
	unknownKey := file("unknown.yaml", "type: x\nfields:\n  a: {type: int, maxx: 3}\n")
	badKind := file("kind.json", `{"type": "x", "fields": {"a": {"type": "decimal"}}}`)
	removes := file("removes.json", `{"type": "sensor", "fields": {"temp": {"type": "float"}}}`)
	d := []string{"--data", dir}
	with := func(args ...string) []string { return append(append([]string{args[0]}, d...), args[1:]...) }
	sub := func(a, b string, args ...string) []string { return append(append([]string{a, b}, d...), args...) }
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		errHas []string
	}{
		{"unknown path", "", with("get", "/F/nope"), 1, []string{"no such entity", `"nope"`}},
		{"unknown path field", "", with("get", "/F/S", "nope"), 1, []string{"no such field", `"nope"`}},
		{"unknown path set", "", with("set", "/G/S", "temp", "1"), 1, []string{"no such entity", "/G"}},
		{"unknown parent", "", with("create", "--type", "t", "/G/x"), 1, []string{"parent", "/G"}},
		{"unknown move target", "", with("mv", "/F/S", "/G"), 1, []string{"/G"}},
		{"not an id", "", with("restore", "xyz"), 1, []string{`"xyz"`}},
		{"bad --type", "", with("set", "--type", "decimal", "/F/S", "temp", "1"), exitUsage, []string{`"decimal"`, "float"}},
		{"bad entity type name", "", with("create", "--type", "a b", "/F/x"), 1, []string{"type name", `"a b"`}},
		{"value not of --type", "", with("set", "--type", "int", "/F", "n", "seven"), 1, []string{`"seven" is not an int`, "/F", `"n"`}},
		{"value not of the schema type", "", with("set", "/F/S", "temp", "hot"), 1, []string{"/F/S", `"temp"`, "sensor", "float", `"hot"`}},
		{"value out of int range", "", with("set", "/F/S", "count", "99999999999999999999"), 1, []string{"is not an int"}},
		{"value above the schema max", "", with("set", "/F/S", "temp", "500"), 1, []string{"/F/S", `"temp"`, "maximum 125"}},
		{"schema violation", "", with("set", "--type", "string", "/F/S", "temp", "hot"), 1, []string{"/F/S", `"temp"`, "sensor", "expected float, got string"}},
		{"field not in the schema", "", with("set", "/F/S", "colour", "red"), 1, []string{`"colour"`, "not in the schema"}},
		{"bad json value", "", with("set", "--type", "json", "/F", "cfg", "{bad"), 1, []string{"not a valid JSON"}},
		{"bad time value", "", with("set", "--type", "time", "/F", "at", "yesterday"), 1, []string{"RFC 3339"}},
		{"name with slash", "", with("rename", "/F/S", "a/b"), 1, []string{`"a/b"`, "'/'"}},
		{"empty name by rename", "", with("rename", "/F/S", ""), 1, []string{"empty"}},
		{"empty name by create", "", with("create", "--type", "t", "/F/"), 1, []string{"empty"}},
		{"taken name", "", with("create", "--type", "t", "/F/S"), 1, []string{"already exists", "/F/S"}},
		{"oversized value", strings.Repeat("x", 70<<10), with("set", "/F", "blob", "-"), 1, []string{"too large", `"blob"`}},
		{"delete with children", "", with("rm", "/F"), 1, []string{"--recursive"}},
		{"cycle", "", with("mv", "/F", "/F/S"), 1, []string{"cycle"}},
		{"malformed schema JSON", "", sub("schema", "apply", malformed), 1, []string{"bad.json", "unexpected EOF", `"fields"`}},
		{"unknown schema key", "", sub("schema", "apply", unknownKey), 1, []string{"unknown.yaml", `"maxx"`}},
		{"bad schema kind", "", sub("schema", "apply", badKind), 1, []string{`"decimal"`}},
		{"schema removes a field", "", sub("schema", "apply", removes), 1, []string{`"count"`, "removed"}},
		{"schema from stdin not JSON", "{", sub("schema", "apply", "-"), 1, []string{"stdin"}},
		{"missing schema file", "", sub("schema", "apply", filepath.Join(tmp, "none.json")), 1, []string{"none.json"}},
		{"missing token", "", []string{"get", "--api", n.APIAddr(), "/F"}, exitUsage, []string{"--token"}},
		{"wrong token", "", []string{"set", "--api", n.APIAddr(), "--token", "wrong", "/F", "x", "1"}, 1, []string{"token"}},
		{"wrong token watch", "", []string{"watch", "--api", n.APIAddr(), "--token", "wrong"}, 1, []string{"token"}},
		{"create without type", "", with("create", "/F/x"), exitUsage, []string{"--type"}},
		{"set without value", "", with("set", "/F", "x"), exitUsage, []string{"missing REF FIELD VALUE"}},
		{"get with three args", "", with("get", "/F", "a", "b"), exitUsage, []string{"too many"}},
		{"entity get with a field", "", sub("entity", "get", "/F", "a"), exitUsage, []string{"too many"}},
		{"field get without field", "", sub("field", "get", "/F"), exitUsage, []string{"missing REF FIELD"}},
		{"bad depth", "", with("ls", "--depth", "-3"), exitUsage, []string{"--depth -3"}},
		{"unknown flag after args", "", []string{"set", "/F", "x", "1", "--data", dir, "--dryrun"}, exitUsage, []string{"-dryrun", "starling set --help"}},
		{"unknown entity subcommand", "", []string{"entity", "frob"}, exitUsage, []string{`"frob"`}},
		{"unknown schema subcommand", "", []string{"schema", "frob"}, exitUsage, []string{`"frob"`}},
	}
	before := nodetest.EntitySnapshot(t, n)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runApp(t, tt.stdin, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "starling: ") || r.stdout != "" {
				t.Errorf("stderr %q, stdout %q: want only an error", r.stderr, r.stdout)
			}
			for _, m := range tt.errHas {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr %q does not mention %q", r.stderr, m)
				}
			}
			if after := nodetest.EntitySnapshot(t, n); after != before {
				t.Errorf("something was written:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestEntityDuplicatesShown creates one path on two nodes that cannot
// talk, connects them, and expects ls and get to show both.
func TestEntityDuplicatesShown(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir1, n1 := startEntityNode(t, "node1")
	_, n2 := startEntityNode(t, "node2")
	ctx := context.Background()
	for _, n := range []*node.Node{n1, n2} {
		if _, err := n.Entities().Create(ctx, "/", "site", "Dup"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n1.Client().AddPeer(ctx, n2.P2P().Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "both entities on node1", func() bool {
		e, err := n1.Entities().Get("/Dup")
		return err == nil && e.Duplicates == 1
	})
	r := runApp(t, "", "ls", "--data", dir1)
	if r.code != 0 || strings.Count(r.stdout, "  Dup ") != 2 ||
		!strings.Contains(r.stdout, "duplicate path (2 entities, created concurrently): the path names this one") ||
		!strings.Contains(r.stdout, "duplicate path: reach this one by its ID") {
		t.Errorf("ls: %+v", r)
	}
	r = runApp(t, "", "get", "--data", dir1, "/Dup")
	if r.code != 0 || !strings.Contains(r.stdout, "1 other entity at this path") {
		t.Errorf("get: %+v", r)
	}
}

// TestRunClockOffset runs a node with --clock-offset and checks the
// timestamps of its writes.
func TestRunClockOffset(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "node")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _, errb := runInBackground(ctx, "run", "--data", dir, "--env", "cli", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--api", "127.0.0.1:0", "--no-mdns", "--no-dht", "--clock-offset", "1h")
	testutil.Eventually(t, 30*time.Second, "api.json", func() bool {
		select {
		case r := <-done:
			t.Fatalf("run ended early: %+v", r)
		default:
		}
		_, err := os.Stat(filepath.Join(dir, api.APIFile))
		return err == nil
	})
	var out string
	runSteps(t, []step{
		{args: []string{"create", "--data", dir, "--type", "t", "/X"}},
		{args: []string{"set", "--data", dir, "--json", "/X", "v", "1"}, capture: &out},
	})
	var r api.WriteResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if skew := time.Until(r.Version.Timestamp.Time()); skew < 59*time.Minute || skew > 61*time.Minute {
		t.Errorf("write stamped %v ahead, want 1h (--clock-offset)", skew)
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("run: %+v\n%s", r, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
}

func ptr[T any](v T) *T { return &v }

// TestSchemaApplyMultiDocYAML: every document of a YAML file is applied,
// in one write: all of them, or none when one is refused.
func TestSchemaApplyMultiDocYAML(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, n := startEntityNode(t, "node1")
	tmp := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("two.yaml", sensorYAML+"---\ntype: line\nfields:\n  speed: {type: float}\n---\n- type: site\n  fields: {}\n")
	runSteps(t, []step{{args: []string{"schema", "apply", "--data", dir, good},
		has: []string{"applied schema sensor (3 fields)", "applied schema line (1 field)", "applied schema site (0 fields)"}}})
	for _, typ := range []string{"sensor", "line", "site"} {
		if _, ok := n.Entities().Schema(typ); !ok {
			t.Errorf("schema %s was not applied", typ)
		}
	}
	// The second document removes a field of sensor: refused by the node,
	// and the first (a new type) must not be applied either.
	bad := file("bad.yaml", "type: valve\nfields:\n  open: {type: bool}\n---\ntype: sensor\nfields:\n  temp: {type: float}\n")
	r := runApp(t, "", "schema", "apply", "--data", dir, bad)
	if r.code != 1 || !strings.Contains(r.stderr, "none of the 2 schemas") {
		t.Fatalf("exit %d, stderr %q: want 1 and none applied", r.code, r.stderr)
	}
	if _, ok := n.Entities().Schema("valve"); ok {
		t.Error("schema valve was applied though the file's other schema was refused")
	}
}

// TestSetKeepsTextAndRefPaths: a schemaless write keeps the text of a
// number that would not read back the same, and a ref value may be a
// path (issue 17).
func TestSetKeepsTextAndRefPaths(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, n := startEntityNode(t, "node1")
	d := []string{"--data", dir}
	with := func(args ...string) []string { return append(append([]string{args[0]}, d...), args[1:]...) }
	runSteps(t, []step{
		{args: with("create", "--type", "site", "/F")},
		{args: with("create", "--type", "sensor", "/F/S")},
		{args: with("set", "/F/S", "serial", "007"), has: []string{"serial = 007 (string)"}, errHas: []string{"--type int"}},
		{args: with("set", "/F/S", "part", "01234"), has: []string{"part = 01234 (string)"}},
		{args: with("set", "/F/S", "version", "1.10"), has: []string{"version = 1.10 (string)"}},
		{args: with("set", "/F/S", "count", "7"), has: []string{"count = 7 (int)"}},
		{args: with("set", "/F/S", "temp", "21.5"), has: []string{"temp = 21.5 (float)"}},
		{args: with("set", "--type", "int", "/F/S", "code", "007"), has: []string{"code = 7 (int)"}},
		{args: with("set", "--type", "ref", "/F/S", "site", "/F")},
		{args: with("set", "--type", "ref", "/F/S", "bad", "/F/nope"), code: 1, errHas: []string{"/F/nope"}},
	})
	f, err := n.Entities().Get("/F")
	if err != nil {
		t.Fatal(err)
	}
	s, err := n.Entities().Get("/F/S")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Fields["site"].Value; got.Kind != entity.KindRef || got.Str != string(f.ID) {
		t.Errorf("site = %v (%s), want a ref to %s", got, got.Kind, f.ID)
	}
	for name, want := range map[string]string{"serial": "007", "part": "01234", "version": "1.10"} {
		if got := s.Fields[name].Value; got.Kind != entity.KindString || got.Str != want {
			t.Errorf("%s = %v (%s), want the string %q", name, got, got.Kind, want)
		}
	}
}

// TestWording: counts agree with their nouns, and messages carry no
// chain of package prefixes ("move: new parent: entity: ...") (issue 17).
func TestWording(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, _ := startEntityNode(t, "node1")
	d := []string{"--data", dir}
	with := func(args ...string) []string { return append(append([]string{args[0]}, d...), args[1:]...) }
	runSteps(t, []step{
		{args: with("create", "--type", "site", "/F")},
		{args: with("create", "--type", "sensor", "/F/S")},
		{args: with("rm", "/F"), code: 1, errHas: []string{"has 1 child;", "to delete it too"}},
		{args: with("mv", "/F/S", "/F/Line1"), code: 1, errHas: []string{"starling: new parent: no such entity: /F/Line1"}},
		{args: with("status"), check: func(t *testing.T, out string) {
			if regexp.MustCompile(`\b1 (heads|writes|commits)\b`).MatchString(out) {
				t.Errorf("status: a plural after 1:\n%s", out)
			}
		}},
	})
	r := runApp(t, "", with("get", "/nope")...)
	if strings.Contains(r.stderr, ": entity: ") || !strings.Contains(r.stderr, "starling: no such entity: /nope") {
		t.Errorf("get /nope: %q", r.stderr)
	}
	err := fmt.Errorf("new parent: %w", fmt.Errorf("%w: /x", entity.ErrNotFound))
	if got := cleanMessage(err); got != "new parent: no such entity: /x" || !errors.Is(err, entity.ErrNotFound) {
		t.Errorf("cleanMessage = %q", got)
	}
}
