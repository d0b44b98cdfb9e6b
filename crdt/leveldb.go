package crdt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// syncKey is written with fsync by LevelDB.Sync. LevelDB has one journal,
// so a synced write makes every earlier write durable too.
var syncKey = ds.NewKey("/_starling/sync")

var (
	// ErrNotWritable wraps the error of a write the datastore refused
	// because its writes fail (a full disk, an I/O error). Test with
	// errors.Is. The write was not acknowledged; the datastore retries by
	// itself and writes work again once the cause is gone (see
	// LevelDB.Health).
	ErrNotWritable = errors.New("crdt: datastore not writable")
	// ErrUnavailable: the datastore is closed underneath while it
	// reopens after failed writes, and the last reopen failed. Test with
	// errors.Is.
	ErrUnavailable = errors.New("crdt: datastore unavailable")
)

// LevelDBOptions tunes OpenLevelDBWith. The zero value is the default.
type LevelDBOptions struct {
	// Logger gets one line when writes start failing and one when they
	// work again (never one per write), and what the checks at open
	// found. Default: discarded.
	Logger *slog.Logger
	// RetryInterval is how often, while writes fail, the datastore checks
	// whether they can work again (a probe write of the journal's size
	// through the file system) and, once they can, reopens LevelDB:
	// goleveldb keeps the error of a failed journal write and fails every
	// later write with it until it is reopened. Default 1 s: a probe
	// costs one small file write, so a full disk is not hammered, and
	// writes resume within a second of space coming back.
	RetryInterval time.Duration
	// VerifyMax bounds the check of the table files at open: when they
	// hold at most VerifyMax bytes together, every table is read whole
	// and every block's checksum is verified; above it, only each
	// table's footer and index are read (one small read per table), and
	// a damaged data block is found only when it is read. Default 64 MiB
	// (about 0.1-0.3 s from a cold disk, less from the page cache);
	// negative: index only, whatever the size.
	VerifyMax int64
	// WriteBuffer is the size in bytes of goleveldb's memtable: writes
	// collect there (and in the journal) until it is full, then it is
	// written out as a table while a second one takes the writes, so a
	// node holds up to twice this in memory. A memtable takes memory as
	// writes fill it (third_party/goleveldb: upstream allocated it whole,
	// which was 4 MiB of an idle node's 8 MiB live heap), so an idle node
	// holds little whatever the size; a busy one holds up to the size.
	// Default 4 MiB (goleveldb's own), sized for an edge node. A node
	// taking sustained bulk writes may want 8-16 MiB: each memtable flush
	// is a table write and later a compaction; measured here, 4 MiB
	// against 16 MiB cost up to 13% more CPU per field write (64 and 256
	// writers, batches of 100), with writes/s within the noise of a
	// shared machine.
	WriteBuffer int
	// BlockCache is the size in bytes of goleveldb's cache of
	// uncompressed table blocks (reads of keys not in the memtable).
	// Default 4 MiB (goleveldb's own: 8 MiB); it fills only as blocks are
	// read.
	BlockCache int

	// storage replaces the file storage (tests inject faults with it).
	storage storage.Storage
}

const (
	defaultRetryInterval = time.Second
	defaultVerifyMax     = 64 << 20
	defaultWriteBuffer   = 4 << 20
	defaultBlockCache    = 4 << 20
)

// LevelDB is a go-datastore over goleveldb with group-commit durability,
// damage detection at open, and recovery from failed writes.
//
// Durability: Put, Delete and batches are written without fsync, and
// Sync makes everything written before it durable with a single fsync
// (go-ds-leveldb fsyncs every write, and one go-ds-crdt commit makes four
// or more writes; the store calls Sync once per group of writes before
// acknowledging them).
//
// Damage (see OpenLevelDBWith): a store that goleveldb would "recover" by
// dropping data is refused with ErrDamaged instead; go-ds-leveldb, which
// this type replaces, calls goleveldb's RecoverFile on any corruption,
// which rebuilds the table list from the files it finds and so serves
// whatever was in a lost table as never written.
//
// Failed writes: goleveldb keeps the error of a failed journal write (its
// journal writer is sticky until the next memtable rotation, which a
// failing write never reaches), so after a full disk every write fails
// until LevelDB is reopened. This type notes the first failure (Health),
// logs it once, and from a goroutine of its own probes the file system
// every RetryInterval; once a probe write succeeds it closes and reopens
// goleveldb on the same storage (the directory lock is held throughout).
// The reopen replays the journal: every write that was synced before the
// failure is there; a write that failed was never acknowledged.
type LevelDB struct {
	dir   string
	opts  LevelDBOptions
	log   *slog.Logger
	stor  storage.Storage
	owned bool // stor was opened here and is closed by Close

	// mu guards db, gen and closed. Every operation holds it for
	// reading; a reopen and Close hold it for writing. Iterators hold it
	// only for each step, so a reopen never waits for a caller that keeps
	// an iterator open; open iterators are released by the reopen and
	// fail their next step.
	mu     sync.RWMutex
	db     *goleveldb.DB // nil while a reopen has failed
	gen    uint64        // counts reopens
	closed bool

	trackMu sync.Mutex
	tracked map[releaser]struct{} // open iterators and snapshots

	hmu    sync.Mutex
	health Health

	wake      chan struct{} // a write failed
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Health is whether the datastore accepts writes.
type Health struct {
	// Writable is false from the first failed write until a reopen
	// succeeds.
	Writable bool
	// WriteError is the error of the first failed write ("" when
	// writable), with what to do about it.
	WriteError string
	// Since is when the writes began to fail (zero when writable).
	Since time.Time
}

type releaser interface{ release() }

var (
	_ ds.Batching            = (*LevelDB)(nil)
	_ ds.PersistentDatastore = (*LevelDB)(nil)
)

// OpenLevelDB opens (or creates) a LevelDB datastore in dir with the
// default LevelDBOptions.
func OpenLevelDB(dir string) (*LevelDB, error) {
	return OpenLevelDBWith(dir, LevelDBOptions{})
}

// OpenLevelDBWith opens (or creates) a LevelDB datastore in dir.
//
// It refuses a damaged store with an error wrapping ErrDamaged (a
// *DamageError says what was found): a table file the MANIFEST lists that
// is missing, a MANIFEST or journal with a damaged record that goleveldb
// would skip, a missing CURRENT file beside table files, a table whose
// footer, index or (up to VerifyMax bytes of tables) data blocks fail
// their checksums. A journal that ends in a torn record is not damage:
// that is a write cut off by a crash, and writes are acknowledged only
// once synced, so such a record was never acknowledged.
func OpenLevelDBWith(dir string, o LevelDBOptions) (*LevelDB, error) {
	if o.RetryInterval <= 0 {
		o.RetryInterval = defaultRetryInterval
	}
	if o.VerifyMax == 0 {
		o.VerifyMax = defaultVerifyMax
	}
	if o.WriteBuffer <= 0 {
		o.WriteBuffer = defaultWriteBuffer
	}
	if o.BlockCache <= 0 {
		o.BlockCache = defaultBlockCache
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &LevelDB{
		dir:     dir,
		opts:    o,
		log:     o.Logger.With("component", "leveldb", "dir", dir),
		stor:    o.storage,
		tracked: make(map[releaser]struct{}),
		health:  Health{Writable: true},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	if l.stor == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("crdt: create datastore directory: %w", err)
		}
		stor, err := storage.OpenFile(dir, false)
		if err != nil {
			return nil, fmt.Errorf("crdt: open datastore %s: %w", dir, err)
		}
		l.stor, l.owned = infoLog{Storage: stor, log: l.log}, true
		// The info log files of earlier versions (see infoLog).
		for _, f := range []string{"LOG", "LOG.old"} {
			_ = os.Remove(filepath.Join(dir, f))
		}
	}
	if err := checkFiles(l.stor, dir, l.log); err != nil {
		l.closeStorage()
		return nil, err
	}
	db, err := l.openDB()
	if err != nil {
		l.closeStorage()
		return nil, err
	}
	if err := verifyTables(l.stor, db, dir, o.VerifyMax, l.log); err != nil {
		_ = db.Close()
		l.closeStorage()
		return nil, err
	}
	l.db = db
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.recoverLoop()
	}()
	return l, nil
}

// infoLog sends goleveldb's info log (compactions, table files, recovery)
// to the node's logger at debug level instead of DIR/LOG and LOG.old:
// those text files took up to 2 MiB of the data directory (goleveldb
// rotates LOG at 1 MiB), four times the rest of a compacted store.
type infoLog struct {
	storage.Storage
	log *slog.Logger
}

func (s infoLog) Log(str string) { s.log.Debug("goleveldb: " + str) }

// levelOptions are goleveldb's options for the node's store.
func levelOptions(o LevelDBOptions) *opt.Options {
	return &opt.Options{
		WriteBuffer:        o.WriteBuffer,
		BlockCacheCapacity: o.BlockCache,
		// goleveldb's default strictness: checksums of journal records
		// and table blocks are verified, and damage found by a read or a
		// compaction is an error. Journal and MANIFEST records that fail
		// are skipped by goleveldb, which is why checkFiles reads them
		// first.
		Strict: opt.DefaultStrict,
	}
}

// openDB opens goleveldb on l.stor, turning the damage goleveldb reports
// into a *DamageError.
func (l *LevelDB) openDB() (*goleveldb.DB, error) {
	db, err := goleveldb.Open(l.stor, levelOptions(l.opts))
	if err != nil {
		return nil, openError(l.dir, err)
	}
	return db, nil
}

func (l *LevelDB) closeStorage() {
	if l.owned {
		_ = l.stor.Close()
	}
}

// Health reports whether writes work, and if not since when and why.
func (l *LevelDB) Health() Health {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	return l.health
}

// acquire returns the open goleveldb under a read lock; call the release
// function when done.
func (l *LevelDB) acquire() (*goleveldb.DB, func(), error) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, nil, goleveldb.ErrClosed
	}
	if l.db == nil {
		h := l.Health()
		l.mu.RUnlock()
		return nil, nil, fmt.Errorf("%w: LevelDB in %s is being reopened after failed writes (%s); it is retried every %s, free space on its disk", ErrUnavailable, l.dir, h.WriteError, l.opts.RetryInterval)
	}
	return l.db, l.mu.RUnlock, nil
}

// write runs a write and notes its failure.
func (l *LevelDB) write(f func(db *goleveldb.DB) error) error {
	db, done, err := l.acquire()
	if err != nil {
		return err
	}
	err = f(db)
	done()
	if err == nil || errors.Is(err, goleveldb.ErrClosed) {
		return err
	}
	l.writeFailed(err)
	return fmt.Errorf("%w: %w: free space on the disk of %s (or fix its I/O error); writes work again by themselves once they can, nothing failed was acknowledged", ErrNotWritable, err, l.dir)
}

// writeFailed marks the datastore not writable, logs it once and wakes
// the recovery loop.
func (l *LevelDB) writeFailed(err error) {
	l.hmu.Lock()
	first := l.health.Writable
	if first {
		l.health = Health{WriteError: err.Error(), Since: time.Now()}
	}
	l.hmu.Unlock()
	if first {
		l.log.Error("datastore writes fail: writes are refused until they work again (checked every retry interval); free space on its disk", "err", err, "retry_interval", l.opts.RetryInterval)
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// recoverLoop waits for a failed write, then tries to recover every
// RetryInterval until writes work again.
func (l *LevelDB) recoverLoop() {
	for {
		select {
		case <-l.stop:
			return
		case <-l.wake:
		}
		t := time.NewTicker(l.opts.RetryInterval)
		for !l.Health().Writable {
			select {
			case <-l.stop:
				t.Stop()
				return
			case <-t.C:
			}
			if err := l.tryRecover(); err != nil {
				l.log.Debug("datastore still not writable", "err", err)
			}
		}
		t.Stop()
	}
}

// probeFile is the temporary file of tryRecover's probe.
var probeFile = storage.FileDesc{Type: storage.TypeTemp, Num: 1 << 40}

// tryRecover probes whether the file system takes writes again and, if it
// does, reopens goleveldb and checks a synced write.
func (l *LevelDB) tryRecover() error {
	// The reopen replays the journal into a table and starts a new
	// journal: probe for that much room first, so that a reopen (during
	// which nothing can be read) is not tried on a disk still full.
	size := int64(1 << 20)
	if fds, err := l.stor.List(storage.TypeJournal); err == nil {
		for _, fd := range fds {
			size += fileSize(l.stor, fd)
		}
	}
	if err := probe(l.stor, size); err != nil {
		return fmt.Errorf("probe write of %d bytes: %w", size, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return goleveldb.ErrClosed
	}
	// The close fails with the kept journal error; the journal is
	// replayed by the open.
	db, err := l.reopenLocked()
	if err != nil {
		if errors.Is(err, ErrDamaged) {
			l.log.Error("reopen of the datastore after failed writes found damage", "err", err)
		}
		return fmt.Errorf("reopen: %w", err)
	}
	l.db = db
	if err := db.Put(syncKey.Bytes(), nil, &opt.WriteOptions{Sync: true}); err != nil {
		return fmt.Errorf("synced write after reopen: %w", err)
	}
	l.hmu.Lock()
	since := l.health.Since
	l.health = Health{Writable: true}
	l.hmu.Unlock()
	l.log.Info("datastore writable again", "not_writable_for", time.Since(since).Round(time.Millisecond))
	return nil
}

// probe writes size bytes to a temporary file through stor, syncs and
// removes it.
func probe(stor storage.Storage, size int64) (err error) {
	w, err := stor.Create(probeFile)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		_ = stor.Remove(probeFile)
	}()
	buf := make([]byte, 64<<10)
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return w.Sync()
}

func fileSize(stor storage.Storage, fd storage.FileDesc) int64 {
	r, err := stor.Open(fd)
	if err != nil {
		return 0
	}
	defer r.Close()
	n, err := r.Seek(0, 2)
	if err != nil {
		return 0
	}
	return n
}

// track registers an open iterator or snapshot, which a reopen releases.
func (l *LevelDB) track(r releaser) {
	l.trackMu.Lock()
	l.tracked[r] = struct{}{}
	l.trackMu.Unlock()
}

func (l *LevelDB) untrack(r releaser) {
	l.trackMu.Lock()
	delete(l.tracked, r)
	l.trackMu.Unlock()
}

// releaseTracked releases every open iterator and snapshot; l.mu is held
// for writing.
func (l *LevelDB) releaseTracked() {
	l.trackMu.Lock()
	rs := l.tracked
	l.tracked = make(map[releaser]struct{})
	l.trackMu.Unlock()
	for r := range rs {
		r.release()
	}
}

var errReopened = errors.New("crdt: datastore reopened after failed writes while it was read: read again")

// Get implements ds.Read.
func (l *LevelDB) Get(ctx context.Context, key ds.Key) ([]byte, error) {
	db, done, err := l.acquire()
	if err != nil {
		return nil, err
	}
	defer done()
	v, err := db.Get(key.Bytes(), nil)
	if errors.Is(err, goleveldb.ErrNotFound) {
		return nil, ds.ErrNotFound
	}
	return v, err
}

// Has implements ds.Read.
func (l *LevelDB) Has(ctx context.Context, key ds.Key) (bool, error) {
	db, done, err := l.acquire()
	if err != nil {
		return false, err
	}
	defer done()
	return db.Has(key.Bytes(), nil)
}

// GetSize implements ds.Read.
func (l *LevelDB) GetSize(ctx context.Context, key ds.Key) (int, error) {
	v, err := l.Get(ctx, key)
	if err != nil {
		return -1, err
	}
	return len(v), nil
}

var noSync = &opt.WriteOptions{Sync: false}

// Put implements ds.Write without fsync; see Sync.
func (l *LevelDB) Put(ctx context.Context, key ds.Key, value []byte) error {
	return l.write(func(db *goleveldb.DB) error { return db.Put(key.Bytes(), value, noSync) })
}

// Delete implements ds.Write without fsync; see Sync.
func (l *LevelDB) Delete(ctx context.Context, key ds.Key) error {
	return l.write(func(db *goleveldb.DB) error { return db.Delete(key.Bytes(), noSync) })
}

// Sync makes every write that returned before it durable.
func (l *LevelDB) Sync(ctx context.Context, prefix ds.Key) error {
	return l.write(func(db *goleveldb.DB) error {
		return db.Put(syncKey.Bytes(), nil, &opt.WriteOptions{Sync: true})
	})
}

// Query implements ds.Read: a prefix is a range of LevelDB, and an order
// by key (ascending or descending) is LevelDB's own; other filters and
// orders are applied by go-datastore's naive implementation.
func (l *LevelDB) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	db, done, err := l.acquire()
	if err != nil {
		return nil, err
	}
	var rng *util.Range
	qNaive := q
	if prefix := ds.NewKey(q.Prefix).String(); prefix != "/" {
		rng = util.BytesPrefix([]byte(prefix + "/"))
		qNaive.Prefix = ""
	}
	it := &trackedIter{l: l, it: db.NewIterator(rng, nil), gen: l.gen}
	l.track(it) // before done: a reopen must find it
	done()
	next := it.it.Next
	if len(q.Orders) > 0 {
		switch q.Orders[0].(type) {
		case dsq.OrderByKey, *dsq.OrderByKey:
			qNaive.Orders = nil
		case dsq.OrderByKeyDescending, *dsq.OrderByKeyDescending:
			next = func() bool {
				next = it.it.Prev
				return it.it.Last()
			}
			qNaive.Orders = nil
		}
	}
	r := dsq.ResultsFromIterator(q, dsq.Iterator{
		Next: func() (dsq.Result, bool) {
			var res dsq.Result
			ok := it.step(func(i iterator.Iterator) bool {
				if !next() {
					if err := i.Error(); err != nil {
						res.Error = err
						return true
					}
					return false
				}
				e := dsq.Entry{Key: string(i.Key()), Size: len(i.Value())}
				if !q.KeysOnly {
					e.Value = append([]byte(nil), i.Value()...)
				}
				res.Entry = e
				return true
			}, &res.Error)
			return res, ok
		},
		Close: func() error {
			l.untrack(it)
			it.release()
			return nil
		},
	})
	return dsq.NaiveQueryApply(qNaive, r), nil
}

// trackedIter is a goleveldb iterator that a reopen may release under
// its user.
type trackedIter struct {
	l   *LevelDB
	it  iterator.Iterator
	gen uint64

	mu       sync.Mutex
	released bool
	failed   bool // the reopen error was reported
}

// step runs f on the iterator under the datastore's read lock, or sets
// *errp if a reopen released it.
func (t *trackedIter) step(f func(iterator.Iterator) bool, errp *error) bool {
	t.l.mu.RLock()
	defer t.l.mu.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.l.gen != t.gen {
		if !t.failed {
			t.failed = true
			*errp = errReopened
			return true
		}
		return false
	}
	if t.released {
		return false
	}
	return f(t.it)
}

func (t *trackedIter) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.released {
		t.released = true
		t.it.Release()
	}
}

// DiskUsage implements ds.PersistentDatastore: the bytes of the files in
// the directory.
func (l *LevelDB) DiskUsage(ctx context.Context) (uint64, error) {
	var du uint64
	err := filepath.Walk(l.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		du += uint64(info.Size())
		return nil
	})
	return du, err
}

// Close stops the recovery goroutine and closes LevelDB. Safe to call
// twice.
func (l *LevelDB) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		l.releaseTracked()
		if l.db != nil {
			l.closeErr = l.db.Close()
			l.db = nil
		}
		if l.owned {
			if err := l.stor.Close(); err != nil && l.closeErr == nil {
				l.closeErr = err
			}
		}
	})
	return l.closeErr
}

// Batch implements ds.Batching; commits do not fsync (see Sync).
func (l *LevelDB) Batch(ctx context.Context) (ds.Batch, error) {
	return &levelBatch{db: l}, nil
}

type levelBatch struct {
	db *LevelDB
	b  goleveldb.Batch
}

func (b *levelBatch) Put(ctx context.Context, key ds.Key, value []byte) error {
	b.b.Put(key.Bytes(), value)
	return nil
}

func (b *levelBatch) Delete(ctx context.Context, key ds.Key) error {
	b.b.Delete(key.Bytes())
	return nil
}

func (b *levelBatch) Commit(ctx context.Context) error {
	return b.db.write(func(db *goleveldb.DB) error { return db.Write(&b.b, noSync) })
}

var _ Snapshotter = (*LevelDB)(nil)

// Snapshot implements Snapshotter with a LevelDB snapshot. A reopen
// after failed writes releases it; its Iterate then fails.
func (l *LevelDB) Snapshot() (Snapshot, error) {
	db, done, err := l.acquire()
	if err != nil {
		return nil, err
	}
	defer done()
	sn, err := db.GetSnapshot()
	if err != nil {
		return nil, fmt.Errorf("crdt: snapshot: %w", err)
	}
	s := &levelSnapshot{l: l, sn: sn, gen: l.gen}
	l.track(s)
	return s, nil
}

type levelSnapshot struct {
	l   *LevelDB
	sn  *goleveldb.Snapshot
	gen uint64

	mu       sync.Mutex
	released bool
}

func (s *levelSnapshot) Iterate(prefix string, fn func(key, value []byte) error) error {
	var it *trackedIter
	var err error
	func() {
		s.l.mu.RLock()
		defer s.l.mu.RUnlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.released || s.l.gen != s.gen {
			err = errReopened
			return
		}
		it = &trackedIter{l: s.l, it: s.sn.NewIterator(util.BytesPrefix([]byte(prefix)), nil), gen: s.gen}
		s.l.track(it)
	}()
	if err != nil {
		return err
	}
	defer func() {
		s.l.untrack(it)
		it.release()
	}()
	for {
		var k, v []byte
		var serr error
		more := it.step(func(i iterator.Iterator) bool {
			if !i.Next() {
				serr = i.Error()
				return false
			}
			// fn runs without the lock: it may read the datastore.
			k, v = append([]byte(nil), i.Key()...), append([]byte(nil), i.Value()...)
			return true
		}, &serr)
		if serr != nil {
			return serr
		}
		if !more {
			return nil
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
}

func (s *levelSnapshot) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.released {
		s.released = true
		s.sn.Release()
	}
}

func (s *levelSnapshot) Release() {
	s.l.untrack(s)
	s.release()
}

// SizePrefixes returns the approximate bytes on disk of the keys under
// prefixes (LevelDB's table files; what is still in the write buffer is
// not counted).
func (l *LevelDB) SizePrefixes(prefixes []ds.Key) (int64, error) {
	db, done, err := l.acquire()
	if err != nil {
		return 0, err
	}
	defer done()
	rs := make([]util.Range, len(prefixes))
	for i, p := range prefixes {
		rs[i] = *util.BytesPrefix(p.Bytes())
	}
	sizes, err := db.SizeOf(rs)
	if err != nil {
		return 0, fmt.Errorf("crdt: size of %v: %w", prefixes, err)
	}
	return sizes.Sum(), nil
}

// CompactPrefixes has LevelDB rewrite the key ranges under prefixes, so
// that the space of deleted keys goes back to the file system.
func (l *LevelDB) CompactPrefixes(ctx context.Context, prefixes []ds.Key) error {
	for _, p := range prefixes {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := l.write(func(db *goleveldb.DB) error { return db.CompactRange(*util.BytesPrefix(p.Bytes())) })
		if err != nil {
			return fmt.Errorf("crdt: compact %s: %w", p, err)
		}
	}
	return nil
}

// FlushMemtable writes goleveldb's memtable to a table and starts a new
// journal (a compaction of the sync key's range, which every Sync puts
// in the memtable), so that a reopen right after has little to replay.
func (l *LevelDB) FlushMemtable() error {
	k := syncKey.Bytes()
	return l.write(func(db *goleveldb.DB) error {
		return db.CompactRange(util.Range{Start: k, Limit: append(slices.Clone(k), 0)})
	})
}

// ManifestSize is the size of goleveldb's current MANIFEST.
func (l *LevelDB) ManifestSize() int64 {
	fd, err := l.stor.GetMeta()
	if err != nil {
		return 0
	}
	return fileSize(l.stor, fd)
}

// RotateManifest reopens goleveldb, which writes a fresh MANIFEST with
// the current tables only. goleveldb appends a record to the MANIFEST
// at every flush and compaction and never rewrites it while open: on a
// node that runs for months it grows without bound (measured: about
// 15 KiB per million writes). Open reads are released as a reopen after
// failed writes releases them; the caller holds writes back. A failed
// reopen is handled as a failed write: the datastore retries by itself.
func (l *LevelDB) RotateManifest() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.db == nil {
		return goleveldb.ErrClosed
	}
	db, err := l.reopenLocked()
	if err != nil {
		l.writeFailed(fmt.Errorf("reopen to rotate the MANIFEST: %w", err))
		return err
	}
	l.db = db
	return nil
}

// reopenLocked releases open reads, closes goleveldb and opens it again
// on the same storage (the caller sets l.db on success). l.mu is held.
func (l *LevelDB) reopenLocked() (*goleveldb.DB, error) {
	l.releaseTracked()
	if l.db != nil {
		if err := l.db.Close(); err != nil {
			l.log.Debug("close LevelDB before reopen", "err", err)
		}
		l.db = nil
	}
	l.gen++
	return l.openDB()
}
