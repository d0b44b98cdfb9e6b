package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestExportImport: an export of one node imports into another with the
// same schemas, paths, types and fields; a ref field points to the new
// ID of its target; running the import again changes nothing; a bad
// line is refused before anything is written.
func TestExportImport(t *testing.T) {
	defer testutil.FailOnPanic(t)
	ctx := context.Background()
	a := nodetest.Start(t, "a", noAutoCompact)
	ea := a.Entities()
	if err := ea.PutSchema(ctx, entity.Schema{Type: "sensor", Fields: map[string]entity.FieldSpec{
		"temp":  {Type: entity.KindFloat},
		"state": {Type: entity.KindString, Default: json.RawMessage(`"idle"`)},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][3]string{{"/", "Site", "Plant"}, {"/Plant", "Line", "L1"}, {"/Plant/L1", "sensor", "T1"}, {"/Plant", "Line", "L2"}} {
		if _, err := ea.Create(ctx, c[0], c[1], c[2]); err != nil {
			t.Fatal(err)
		}
	}
	t1, err := ea.Get("/Plant/L1/T1")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		ref, field string
		v          entity.Value
	}{
		{"/Plant/L1/T1", "temp", entity.Float(21.5)},
		{"/Plant", "since", entity.TimeValue(time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC))},
		{"/Plant/L2", "watches", entity.RefValue(t1.ID)},
		{"/Plant/L2", "serial", entity.String("007")},
	} {
		if _, err := ea.Set(ctx, w.ref, w.field, w.v); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "tree.jsonl")
	if r := runApp(t, "", "export", "--data", a.Dir(), file); r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	b, _ := os.ReadFile(file)
	if n := strings.Count(string(b), "\n"); n != 5 || strings.Contains(string(b), `"state":{"type":"string","value"`) {
		t.Errorf("export has %d lines (want 1 schema + 4 entities) or a default field:\n%s", n, b)
	}

	z := nodetest.Start(t, "z", noAutoCompact)
	for run := range 2 {
		r := runApp(t, "", "import", "--data", z.Dir(), "--json", file)
		var res importResult
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
			t.Fatalf("import %d: %+v", run, r)
		}
		want := importResult{Schemas: 1, Created: 4, Fields: 4}
		if run == 1 {
			want = importResult{Schemas: 1, Existing: 4, Fields: 4}
		}
		if res != want {
			t.Errorf("import %d: %+v, want %+v", run, res, want)
		}
	}
	ez := z.Entities()
	zt1, err := ez.Get("/Plant/L1/T1")
	if err != nil {
		t.Fatal(err)
	}
	if zt1.ID == t1.ID || !zt1.Fields["temp"].Value.Equal(entity.Float(21.5)) || !zt1.Fields["state"].Value.Equal(entity.String("idle")) {
		t.Errorf("imported T1: %+v", zt1)
	}
	l2, err := ez.Get("/Plant/L2")
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.Fields["watches"].Value; !got.Equal(entity.RefValue(zt1.ID)) {
		t.Errorf("ref field after import = %v, want the new ID %s", got, zt1.ID)
	}
	if got := l2.Fields["serial"].Value; !got.Equal(entity.String("007")) {
		t.Errorf("serial = %v", got)
	}
	plant, _ := ez.Get("/Plant")
	if got := plant.Fields["since"].Value.Time; !got.Equal(time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)) {
		t.Errorf("time field = %v", got)
	}

	// A child before its parent: refused, nothing written.
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	_ = os.WriteFile(bad, []byte(`{"entity":{"id":"x","path":"/New/Child","type":"T"}}`+"\n"), 0o600)
	r := runApp(t, "", "import", "--data", z.Dir(), bad)
	if r.code == 0 || !strings.Contains(r.stderr, "before its parent") || !strings.Contains(r.stderr, "nothing was imported") {
		t.Errorf("import of a child before its parent: %+v", r)
	}
	if _, err := ez.Get("/New"); err == nil {
		t.Error("a refused import created /New")
	}
}

// TestLsDeleted: ls --deleted lists what restore brings back; restore
// by the listed ID brings it back.
func TestLsDeleted(t *testing.T) {
	defer testutil.FailOnPanic(t)
	ctx := context.Background()
	n := nodetest.Start(t, "a", noAutoCompact)
	for _, c := range [][3]string{{"/", "Site", "Plant"}, {"/Plant", "Line", "L1"}} {
		if _, err := n.Entities().Create(ctx, c[0], c[1], c[2]); err != nil {
			t.Fatal(err)
		}
	}
	l1, _ := n.Entities().Get("/Plant/L1")
	if r := runApp(t, "", "rm", "--data", n.Dir(), "/Plant/L1"); r.code != 0 {
		t.Fatalf("rm: %+v", r)
	}
	r := runApp(t, "", "ls", "--data", n.Dir(), "--deleted", "/Plant")
	if r.code != 0 || !strings.Contains(r.stdout, "/Plant/L1") || !strings.Contains(r.stdout, string(l1.ID)) || !strings.Contains(r.stdout, "starling restore") {
		t.Fatalf("ls --deleted: %+v", r)
	}
	r = runApp(t, "", "ls", "--data", n.Dir(), "--deleted", "--json")
	var ds []entity.Deleted
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ds) != nil || len(ds) != 1 || ds[0].ID != l1.ID || ds[0].Writer != "a" {
		t.Fatalf("ls --deleted --json: %+v", r)
	}
	if r := runApp(t, "", "restore", "--data", n.Dir(), string(l1.ID)); r.code != 0 {
		t.Fatalf("restore: %+v", r)
	}
	r = runApp(t, "", "ls", "--data", n.Dir(), "--deleted")
	if r.code != 0 || !strings.Contains(r.stdout, "no deleted entities") {
		t.Errorf("ls --deleted after restore: %+v", r)
	}
	if r := runApp(t, "", "ls", "--data", n.Dir(), "--limit", "3"); r.code == 0 {
		t.Errorf("--limit without --deleted: %+v", r)
	}
}
