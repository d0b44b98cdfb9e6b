package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestBackupRestore: a backup taken from a running node and one taken
// offline both restore into a new directory, whose node then reads the
// same tree and takes writes; a damaged file, a file that is not a
// backup and a directory with data are refused, and change nothing.
func TestBackupRestore(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1", noAutoCompact)
	overwriteFields(t, n, 10, 5)
	if _, err := n.Entities().Create(context.Background(), "/Plant", "Line", "L1"); err != nil {
		t.Fatal(err)
	}
	want := treeJSON(t, n)
	tmp := t.TempDir()
	online := filepath.Join(tmp, "online.backup")
	r := runApp(t, "", "backup", "--data", n.Dir(), online)
	if r.code != 0 || !strings.Contains(r.stdout, "backup written to "+online) || !strings.Contains(r.stdout, "starling restore --backup "+online) {
		t.Fatalf("backup of a running node: %+v", r)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	offline := filepath.Join(tmp, "offline.backup")
	if r := runApp(t, "", "backup", "--data", n.Dir(), offline); r.code != 0 {
		t.Fatalf("backup of a stopped node: %+v", r)
	}

	for _, file := range []string{online, offline} {
		dir := filepath.Join(tmp, "restored-"+filepath.Base(file))
		r := runApp(t, "", "restore", "--backup", file, "--data", dir, "--psk-file", filepath.Join(n.Dir(), "swarm.key"))
		if r.code != 0 || !strings.Contains(r.stdout, "restored "+file) {
			t.Fatalf("restore %s: %+v", file, r)
		}
		m := nodetest.Open(t, dir, noAutoCompact)
		if got := treeJSON(t, m); got != want {
			t.Errorf("%s restored reads:\n got %s\nwant %s", file, got, want)
		}
		if _, err := m.Entities().Set(context.Background(), "/Plant", "f0", entity.Int(42)); err != nil {
			t.Errorf("a write on the restored node: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		// The directory has data now: a second restore is refused.
		r = runApp(t, "", "restore", "--backup", file, "--data", dir)
		if r.code == 0 || !strings.Contains(r.stderr, "has no data yet") && !strings.Contains(r.stderr, "already holds data") {
			t.Errorf("restore over data: %+v", r)
		}
	}

	// A flipped byte: refused before anything is written.
	b, err := os.ReadFile(online)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)*3/4] ^= 0x20
	bad := filepath.Join(tmp, "bad.backup")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "from-bad")
	r = runApp(t, "", "restore", "--backup", bad, "--data", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "bad backup") || !strings.Contains(r.stderr, "nothing was restored") {
		t.Errorf("restore of a damaged file: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "datastore")); err == nil {
		m := nodetest.Open(t, dir, noAutoCompact)
		if m.Store().NeedsTransfer(context.Background()) == false {
			t.Error("a damaged backup left data behind")
		}
		_ = m.Close()
	}
	// A node that never ran has nothing to back up, and the backup does
	// not make it a datastore.
	fresh := filepath.Join(tmp, "fresh")
	nodetest.Init(t, fresh, "fresh")
	r = runApp(t, "", "backup", "--data", fresh, filepath.Join(tmp, "fresh.backup"))
	if r.code == 0 || !strings.Contains(r.stderr, "never run") {
		t.Errorf("backup of a node that never ran: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(fresh, "datastore")); err == nil {
		t.Error("backup of a node that never ran created its datastore")
	}
	// Not a backup at all.
	r = runApp(t, "", "restore", "--backup", filepath.Join(n.Dir(), "config.json"), "--data", filepath.Join(tmp, "x"))
	if r.code == 0 || !strings.Contains(r.stderr, "not a Starling backup") {
		t.Errorf("restore of config.json: %+v", r)
	}
	// Init flags without --backup are a usage error, not an undelete.
	r = runApp(t, "", "restore", "--data", n.Dir(), "--psk-file", "k", "01J9ZQ3V7K2M4N6P8R0T2W4Y6A")
	if r.code == 0 || !strings.Contains(r.stderr, "goes with --backup") {
		t.Errorf("restore --psk-file without --backup: %+v", r)
	}
}
