package crdt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	blockservice "github.com/ipfs/boxo/blockservice"
	blockstore "github.com/ipfs/boxo/blockstore"
	offline "github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/ipfs/go-datastore/query"
	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/starling-sync/starling/internal/testutil"
)

// fullStorage is goleveldb's file storage with a switch: while full is
// set, every write and sync of a file fails with ENOSPC, as on a full
// disk (files can still be created and removed).
type fullStorage struct {
	storage.Storage
	full atomic.Bool
}

func (s *fullStorage) Create(fd storage.FileDesc) (storage.Writer, error) {
	w, err := s.Storage.Create(fd)
	if err != nil {
		return nil, err
	}
	return &fullWriter{Writer: w, s: s}, nil
}

type fullWriter struct {
	storage.Writer
	s *fullStorage
}

func (w *fullWriter) Write(p []byte) (int, error) {
	if w.s.full.Load() {
		return 0, fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	return w.Writer.Write(p)
}

func (w *fullWriter) Sync() error {
	if w.s.full.Load() {
		return fmt.Errorf("sync: %w", syscall.ENOSPC)
	}
	return w.Writer.Sync()
}

func openFullStorage(t *testing.T, dir string) (*LevelDB, *fullStorage) {
	t.Helper()
	fs, err := storage.OpenFile(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	stor := &fullStorage{Storage: fs}
	db, err := OpenLevelDBWith(dir, LevelDBOptions{RetryInterval: 20 * time.Millisecond, storage: stor})
	if err != nil {
		t.Fatal(err)
	}
	return db, stor
}

// TestDiskFullRecovers: writes fail while the disk is full and the
// datastore says so; once space is back, writes work again without a
// reopen by the caller, and every write acknowledged before is there.
func TestDiskFullRecovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, stor := openFullStorage(t, dir)
	defer db.Close()

	for i := range 100 {
		if err := db.Put(ctx, key(i), []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Sync(ctx, ds.NewKey("/")); err != nil {
		t.Fatal(err)
	}
	// A query left open across the failure and the reopen.
	open, err := db.Query(ctx, query.Query{})
	if err != nil {
		t.Fatal(err)
	}

	stor.full.Store(true)
	err = db.Put(ctx, ds.NewKey("/during"), []byte("x"))
	if err == nil {
		err = db.Sync(ctx, ds.NewKey("/"))
	}
	if !errors.Is(err, ErrNotWritable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ErrNotWritable wrapping ENOSPC", err)
	}
	if h := db.Health(); h.Writable || h.WriteError == "" || h.Since.IsZero() {
		t.Fatalf("health on a full disk: %+v", h)
	}
	// Reads still work; writes keep failing while the disk is full.
	if v, err := db.Get(ctx, key(7)); err != nil || string(v) != "before" {
		t.Fatalf("read on a full disk: %q %v", v, err)
	}
	if err := db.Sync(ctx, ds.NewKey("/")); !errors.Is(err, ErrNotWritable) {
		t.Fatalf("second write on a full disk: %v", err)
	}

	stor.full.Store(false)
	testutil.Eventually(t, 10*time.Second, "writable again after space came back", func() bool { return db.Health().Writable })
	if err := db.Put(ctx, ds.NewKey("/after"), []byte("y")); err != nil {
		t.Fatalf("write after space came back: %v", err)
	}
	if err := db.Sync(ctx, ds.NewKey("/")); err != nil {
		t.Fatalf("sync after space came back: %v", err)
	}
	for i := range 100 {
		if v, err := db.Get(ctx, key(i)); err != nil || string(v) != "before" {
			t.Fatalf("acknowledged write %s after recovery: %q %v", key(i), v, err)
		}
	}
	// The query open across the reopen fails instead of reading a
	// closed LevelDB.
	var qerr error
	for r := range open.Next() {
		if r.Error != nil {
			qerr = r.Error
			break
		}
	}
	open.Close()
	if !errors.Is(qerr, errReopened) {
		t.Fatalf("query open across the reopen: %v, want errReopened", qerr)
	}

	// And all of it is on disk: reopen from scratch.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := OpenLevelDBWith(dir, LevelDBOptions{storage: stor})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	for _, k := range []ds.Key{key(0), key(99), ds.NewKey("/after")} {
		if ok, err := db2.Has(ctx, k); err != nil || !ok {
			t.Fatalf("%s after a restart: %v %v", k, ok, err)
		}
	}
}

// TestStoreDiskFullRecovers: the same through a Store: a write fails
// with ErrNotWritable and Status says why; once space is back, writes
// are acknowledged again without a restart, and the data acknowledged
// before and after is all there.
func TestStoreDiskFullRecovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, stor := openFullStorage(t, dir)
	bs := blockstore.NewBlockstore(namespace.Wrap(db, ds.NewKey("/blocks")))
	dag := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
	opts := fastOpts()
	opts.LocalBlocks = bs
	s, err := Open(ctx, db, dag, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.Put(ctx, key(i), []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Status(ctx); !st.Writable || st.WriteError != "" {
		t.Fatalf("status before: writable %v %q", st.Writable, st.WriteError)
	}

	stor.full.Store(true)
	// The first write finds the disk full, the second is refused before
	// go-ds-crdt sees it.
	for _, k := range []string{"/full", "/full2"} {
		if err := s.Put(ctx, ds.NewKey(k), []byte("x")); !errors.Is(err, ErrNotWritable) {
			t.Fatalf("put %s on a full disk: %v, want ErrNotWritable", k, err)
		}
	}
	if st := s.Status(ctx); st.Writable || st.WriteError == "" {
		t.Fatalf("status on a full disk: writable %v %q", st.Writable, st.WriteError)
	}

	stor.full.Store(false)
	testutil.Eventually(t, 10*time.Second, "store writable again", func() bool { return s.Status(ctx).Writable })
	if err := s.Put(ctx, ds.NewKey("/after"), []byte("y")); err != nil {
		t.Fatalf("put after space came back: %v", err)
	}
	for i := range 20 {
		if got := mustGet(t, s, key(i)); got != "v1" {
			t.Fatalf("%s = %q after recovery", key(i), got)
		}
	}
	if got := mustGet(t, s, ds.NewKey("/after")); got != "y" {
		t.Fatalf("/after = %q", got)
	}
	// The failed writes did not ride along with the next one (go-ds-crdt
	// kept them in its pending delta).
	for _, k := range []string{"/full", "/full2"} {
		if v, err := s.Get(ctx, ds.NewKey(k)); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("%s, whose write failed, reads %q %v after the next write", k, v, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFullStickyInGoleveldb pins down why LevelDB reopens: with no
// reopen yet (a retry interval of an hour), a write still fails after
// space is back, because goleveldb keeps its journal error.
func TestDiskFullStickyInGoleveldb(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := storage.OpenFile(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	stor := &fullStorage{Storage: fs}
	db, err := OpenLevelDBWith(dir, LevelDBOptions{RetryInterval: time.Hour, storage: stor})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Sync(ctx, ds.NewKey("/")); err != nil {
		t.Fatal(err)
	}
	stor.full.Store(true)
	if err := db.Sync(ctx, ds.NewKey("/")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync on a full disk: %v", err)
	}
	stor.full.Store(false)
	if err := db.Sync(ctx, ds.NewKey("/")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync after space came back, before a reopen: %v, want goleveldb's kept ENOSPC", err)
	}
	if db.Health().Writable {
		t.Fatal("writable before a reopen")
	}
}

// TestNoInfoLogFiles: goleveldb's info log goes to the logger, not to
// LOG files in the data directory (which grew to 2 MiB); those of an
// earlier version are removed at open.
func TestNoInfoLogFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "LOG.old"), []byte("old info log"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLevelDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 1000 {
		if err := l.Put(ctx, ds.NewKey(fmt.Sprint("/k", i)), make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.CompactPrefixes(ctx, []ds.Key{ds.NewKey("/")}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"LOG", "LOG.old"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s in the data directory: %v", f, err)
		}
	}
}

// TestRotateManifest: goleveldb's MANIFEST grows with every flush and
// compaction while it stays open; RotateManifest reopens it with a fresh
// one, and every value is still there.
func TestRotateManifest(t *testing.T) {
	l, err := OpenLevelDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	start := l.ManifestSize()
	for round := range 40 {
		for i := range 50 {
			if err := l.Put(ctx, ds.NewKey(fmt.Sprintf("/k/%03d", i)), []byte(fmt.Sprint(round))); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.CompactPrefixes(ctx, []ds.Key{ds.NewKey("/k")}); err != nil {
			t.Fatal(err)
		}
	}
	grown := l.ManifestSize()
	if grown <= start {
		t.Fatalf("the MANIFEST did not grow: %d -> %d bytes", start, grown)
	}
	if err := l.RotateManifest(); err != nil {
		t.Fatal(err)
	}
	if after := l.ManifestSize(); after >= grown {
		t.Fatalf("MANIFEST %d bytes before the rotation, %d after", grown, after)
	}
	t.Logf("MANIFEST: %d bytes at open, %d after 40 compactions, %d after the rotation", start, grown, l.ManifestSize())
	for i := range 50 {
		v, err := l.Get(ctx, ds.NewKey(fmt.Sprintf("/k/%03d", i)))
		if err != nil || string(v) != "39" {
			t.Fatalf("/k/%03d after the rotation: %q, %v", i, v, err)
		}
	}
	if err := l.Put(ctx, ds.NewKey("/after"), []byte("x")); err != nil {
		t.Fatalf("write after the rotation: %v", err)
	}
}

// TestLevelDBWriteBuffer checks that WriteBuffer reaches goleveldb: with
// a small buffer 512 KiB of writes are flushed to table files, with a
// larger one they all stay in the memtable.
func TestLevelDBWriteBuffer(t *testing.T) {
	ctx := context.Background()
	tables := func(dir string) int {
		n := 0
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if filepath.Ext(e.Name()) == ".ldb" {
				n++
			}
		}
		return n
	}
	fill := func(t *testing.T, db *LevelDB) {
		val := make([]byte, 1024)
		for i := range 512 {
			val[0], val[1] = byte(i), byte(i>>8)
			if err := db.Put(ctx, ds.NewKey(fmt.Sprintf("/k/%06d", i)), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Sync(ctx, ds.NewKey("/")); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("small buffer flushes", func(t *testing.T) {
		dir := t.TempDir()
		db, err := OpenLevelDBWith(dir, LevelDBOptions{WriteBuffer: 128 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fill(t, db)
		deadline := time.Now().Add(10 * time.Second)
		for tables(dir) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no table file after 512 KiB of writes into a 128 KiB write buffer")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("large buffer holds", func(t *testing.T) {
		dir := t.TempDir()
		db, err := OpenLevelDBWith(dir, LevelDBOptions{WriteBuffer: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fill(t, db)
		if n := tables(dir); n != 0 {
			t.Fatalf("%d table files after 512 KiB of writes into an 8 MiB write buffer, want 0", n)
		}
	})
}

// TestLevelDBWriteBufferNotReserved checks that an open store does not
// hold its write buffer's size before writes fill it: goleveldb v1.0.0
// allocated each memtable whole at open (third_party/goleveldb patches
// that). Without the patch the live heap grew by the whole 64 MiB: seen
// failing.
func TestLevelDBWriteBufferNotReserved(t *testing.T) {
	const buffer = 64 << 20
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := live()
	db, err := OpenLevelDBWith(t.TempDir(), LevelDBOptions{WriteBuffer: buffer})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Put(context.Background(), ds.NewKey("/k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	after := live()
	runtime.KeepAlive(db)
	if grew := int64(after) - int64(before); grew > buffer/8 {
		t.Fatalf("the live heap grew by %d MiB when a store with a %d MiB write buffer opened; want far less", grew>>20, buffer>>20)
	}
}
