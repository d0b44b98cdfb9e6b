package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/starling-sync/starling/internal/testutil"
)

// TestReadmeWalkthrough runs the README's command-line walkthrough (the
// block that starts with D="--data /var/lib/starling") in order against
// a node, so that every command in it works as written (issue 17: its mv
// named a parent that was never created). Lines that need other nodes
// (cluster add/remove, --api to another machine) or block (watch) are
// skipped; the ID rm prints is what restore gets.
func TestReadmeWalkthrough(t *testing.T) {
	defer testutil.FailOnPanic(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "D=\"--data /var/lib/starling\"\nstarling schema apply")
	if start < 0 {
		t.Fatal("README has no walkthrough block starting with D=\"--data /var/lib/starling\"")
	}
	block := readme[start:]
	block = block[:strings.Index(block, "```")]
	schema := regexp.MustCompile("(?s)```yaml\n(type: sensor.*?)```").FindStringSubmatch(readme)
	if schema == nil {
		t.Fatal("README has no sensor schema in YAML")
	}
	dir, _ := startEntityNode(t, "node1")
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "sensor.yaml"), []byte(schema[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastID string
	ran := 0
	for _, line := range strings.Split(block, "\n")[1:] {
		cmd, _, _ := strings.Cut(line, "#")
		cmd, _, _ = strings.Cut(cmd, "|") // "| jq ...": the output is not checked
		cmd = strings.TrimSpace(cmd)
		if cmd == "" || !strings.HasPrefix(cmd, "starling ") ||
			strings.Contains(cmd, " watch ") || strings.Contains(cmd, "starling cluster add") || strings.Contains(cmd, "starling cluster remove") {
			continue
		}
		stdin := ""
		if c, file, ok := strings.Cut(cmd, " < "); ok {
			cmd, stdin = c, `{"line": 1, "note": "`+strings.TrimSpace(file)+`"}`
		}
		var args []string
		for _, f := range strings.Fields(cmd)[1:] {
			switch {
			case f == "$D":
				args = append(args, "--data", dir)
			case f == "sensor.yaml", f == "tree.jsonl":
				args = append(args, filepath.Join(tmp, f))
			case regexp.MustCompile(`^[0-9A-Z]{26}$`).MatchString(f) && lastID != "":
				args = append(args, lastID) // the ID the rm before printed
			default:
				args = append(args, f)
			}
		}
		r := runApp(t, stdin, args...)
		if r.code != 0 {
			t.Fatalf("README command %q: exit %d\nstdout: %s\nstderr: %s", line, r.code, r.stdout, r.stderr)
		}
		if m := regexp.MustCompile(`restore ([0-9A-Z]{26})`).FindStringSubmatch(r.stdout); m != nil {
			lastID = m[1]
		}
		ran++
	}
	if ran < 12 {
		t.Errorf("ran only %d README commands", ran)
	}
	r := runApp(t, "", "get", "--data", dir, "/Factory/Line1/S7", "temp")
	if r.code != 0 || !strings.Contains(r.stdout, "21.5") {
		t.Errorf("after the walkthrough, /Factory/Line1/S7 temp: %+v", r)
	}
}
