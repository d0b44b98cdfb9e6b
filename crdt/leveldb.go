package crdt

import (
	"context"
	"fmt"
	"os"

	ds "github.com/ipfs/go-datastore"
	leveldb "github.com/ipfs/go-ds-leveldb"
	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// syncKey is written with fsync by LevelDB.Sync. LevelDB has one journal,
// so a synced write makes every earlier write durable too.
var syncKey = ds.NewKey("/_starling/sync")

// LevelDB is go-ds-leveldb with group-commit durability: Put, Delete and
// batches are written without fsync, and Sync makes everything written
// before it durable with a single fsync. go-ds-leveldb alone fsyncs every
// write, and one go-ds-crdt commit makes four or more writes; the store
// calls Sync once per group of writes before acknowledging them.
//
// Reads and queries are go-ds-leveldb's own.
type LevelDB struct {
	*leveldb.Datastore
}

var (
	_ ds.Batching            = (*LevelDB)(nil)
	_ ds.PersistentDatastore = (*LevelDB)(nil)
)

// OpenLevelDB opens (or creates) a LevelDB datastore in dir.
func OpenLevelDB(dir string) (*LevelDB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("crdt: create datastore directory: %w", err)
	}
	d, err := leveldb.NewDatastore(dir, &leveldb.Options{
		// Few, large files keep compaction cheap for a write-heavy store.
		WriteBuffer: 16 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("crdt: open datastore %s: %w", dir, err)
	}
	return &LevelDB{Datastore: d}, nil
}

var noSync = &opt.WriteOptions{Sync: false}

// Put implements ds.Write without fsync; see Sync.
func (l *LevelDB) Put(ctx context.Context, key ds.Key, value []byte) error {
	return l.DB.Put(key.Bytes(), value, noSync)
}

// Delete implements ds.Write without fsync; see Sync.
func (l *LevelDB) Delete(ctx context.Context, key ds.Key) error {
	return l.DB.Delete(key.Bytes(), noSync)
}

// Sync makes every write that returned before it durable.
func (l *LevelDB) Sync(ctx context.Context, prefix ds.Key) error {
	return l.DB.Put(syncKey.Bytes(), nil, &opt.WriteOptions{Sync: true})
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
	return b.db.DB.Write(&b.b, noSync)
}

var _ Snapshotter = (*LevelDB)(nil)

// Snapshot implements Snapshotter with a LevelDB snapshot.
func (l *LevelDB) Snapshot() (Snapshot, error) {
	sn, err := l.DB.GetSnapshot()
	if err != nil {
		return nil, fmt.Errorf("crdt: snapshot: %w", err)
	}
	return levelSnapshot{sn}, nil
}

type levelSnapshot struct{ sn *goleveldb.Snapshot }

func (s levelSnapshot) Iterate(prefix string, fn func(key, value []byte) error) error {
	it := s.sn.NewIterator(util.BytesPrefix([]byte(prefix)), nil)
	defer it.Release()
	for it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

func (s levelSnapshot) Release() { s.sn.Release() }

// SizePrefixes returns the approximate bytes on disk of the keys under
// prefixes (LevelDB's table files; what is still in the write buffer is
// not counted).
func (l *LevelDB) SizePrefixes(prefixes []ds.Key) (int64, error) {
	rs := make([]util.Range, len(prefixes))
	for i, p := range prefixes {
		rs[i] = *util.BytesPrefix(p.Bytes())
	}
	sizes, err := l.DB.SizeOf(rs)
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
		if err := l.DB.CompactRange(*util.BytesPrefix(p.Bytes())); err != nil {
			return fmt.Errorf("crdt: compact %s: %w", p, err)
		}
	}
	return nil
}
