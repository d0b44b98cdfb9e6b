package crdt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"
)

// damageFixture writes n keys of 1 KiB into a LevelDB in a new directory
// and closes it. With tables, the keys are compacted into table files;
// without, they stay in the journal.
func damageFixture(t *testing.T, n int, tables bool) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenLevelDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 1024)
	for i := range n {
		// Keys in four ranges, each compacted on its own once written,
		// so that each becomes a table of its own.
		prefix := ds.NewKey("/" + string(rune('a'+i/(n/4))))
		if err := db.Put(ctx, prefix.Child(key(i)), val); err != nil {
			t.Fatal(err)
		}
		if tables && i%(n/4) == n/4-1 {
			if err := db.CompactPrefixes(ctx, []ds.Key{prefix}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Sync(ctx, ds.NewKey("/")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// files returns the files in dir whose names end in suffix (or start
// with it, for "MANIFEST").
func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// flip inverts the byte at offset (negative: from the end) of path.
func flip(t *testing.T, path string, offset int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset < 0 {
		offset += len(b)
	}
	b[offset] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantDamage opens dir and wants ErrDamaged naming file (if not "").
func wantDamage(t *testing.T, dir, file string) {
	t.Helper()
	db, err := OpenLevelDB(dir)
	if err == nil {
		db.Close()
		t.Fatalf("open of a damaged store succeeded, want ErrDamaged (naming %q)", file)
	}
	var de *DamageError
	if !errors.Is(err, ErrDamaged) || !errors.As(err, &de) {
		t.Fatalf("open of a damaged store: %v, want ErrDamaged", err)
	}
	if file != "" && (de.File != file || !strings.Contains(err.Error(), file)) {
		t.Fatalf("damage error names %q (%v), want %q", de.File, err, file)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("damage error does not name the directory: %v", err)
	}
	t.Logf("refused as expected: %v", err)
}

// TestOpenRefusesMissingTable: a table the MANIFEST lists is gone;
// go-ds-leveldb used to rebuild the MANIFEST without it and serve the
// store with its keys missing.
func TestOpenRefusesMissingTable(t *testing.T) {
	dir := damageFixture(t, 400, true)
	tables := files(t, dir, "*.ldb")
	if len(tables) < 2 {
		t.Fatalf("fixture has %d tables, want several", len(tables))
	}
	if err := os.Remove(tables[0]); err != nil {
		t.Fatal(err)
	}
	wantDamage(t, dir, filepath.Base(tables[0]))
	// Nothing was changed: the refusal is the same the second time.
	wantDamage(t, dir, filepath.Base(tables[0]))
}

// TestOpenRefusesCorruptTable: flipped bytes in a table's data block are
// found at open (the tables are under VerifyMax), not at the first read
// that happens to touch them.
func TestOpenRefusesCorruptTable(t *testing.T) {
	dir := damageFixture(t, 400, true)
	tables := files(t, dir, "*.ldb")
	fi, err := os.Stat(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	flip(t, tables[0], int(fi.Size()/3)) // data blocks come first
	wantDamage(t, dir, filepath.Base(tables[0]))
}

// TestOpenRefusesCorruptManifest: goleveldb skips a MANIFEST record that
// fails its checksum, and go-ds-leveldb rebuilt the MANIFEST from the
// table files it found.
func TestOpenRefusesCorruptManifest(t *testing.T) {
	dir := damageFixture(t, 400, true)
	m := files(t, dir, "MANIFEST-*")
	if len(m) != 1 {
		t.Fatalf("manifests: %v", m)
	}
	flip(t, m[0], 20)
	wantDamage(t, dir, filepath.Base(m[0]))
}

// TestOpenRefusesCorruptJournal: a journal record that fails its
// checksum and is followed by good records is damage (goleveldb drops
// the 32 KiB block that holds it, silently).
func TestOpenRefusesCorruptJournal(t *testing.T) {
	dir := damageFixture(t, 200, false) // about 200 KiB of journal
	logs := files(t, dir, "*.log")
	if len(logs) != 1 {
		t.Fatalf("journals: %v", logs)
	}
	flip(t, logs[0], 40<<10) // in the second block, with more after it
	wantDamage(t, dir, filepath.Base(logs[0]))
}

// TestOpenAcceptsTornJournalTail: a journal cut off inside its last
// record is what a crash during a write leaves; the store opens with
// every record before it.
func TestOpenAcceptsTornJournalTail(t *testing.T) {
	ctx := context.Background()
	dir := damageFixture(t, 200, false)
	logs := files(t, dir, "*.log")
	fi, err := os.Stat(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(logs[0], fi.Size()-300); err != nil {
		t.Fatal(err)
	}
	db, err := OpenLevelDB(dir)
	if err != nil {
		t.Fatalf("open with a torn journal tail: %v", err)
	}
	defer db.Close()
	if ok, err := db.Has(ctx, ds.NewKey("/a").Child(key(0))); err != nil || !ok {
		t.Fatalf("first key after a torn tail: %v %v", ok, err)
	}
}

// TestOpenRefusesMissingCurrent: table files with no CURRENT would make
// goleveldb start an empty store and delete them.
func TestOpenRefusesMissingCurrent(t *testing.T) {
	dir := damageFixture(t, 400, true)
	if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	wantDamage(t, dir, "CURRENT")
	if len(files(t, dir, "*.ldb")) == 0 {
		t.Fatal("the refused open deleted the tables")
	}
}

// TestOpenIndexOnlyAboveVerifyMax: above VerifyMax only the tables'
// footers and indexes are read at open, so a flipped data byte is let
// through there (and found by the read that reaches it), while a damaged
// footer is still refused.
func TestOpenIndexOnlyAboveVerifyMax(t *testing.T) {
	dir := damageFixture(t, 400, true)
	tables := files(t, dir, "*.ldb")
	flip(t, tables[0], -1) // the footer's magic number
	db, err := OpenLevelDBWith(dir, LevelDBOptions{VerifyMax: -1})
	if err == nil {
		db.Close()
		t.Fatal("open with a damaged table footer succeeded")
	}
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("open with a damaged table footer: %v", err)
	}
}
