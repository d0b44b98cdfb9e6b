package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	offline "github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-datastore/namespace"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
)

// A backup file is one line of JSON (BackupInfo) followed by the node's
// state as a state transfer sends it (crdt.WriteSnapshot: the replicated
// set, heads and markers, with an entry count and a CRC-32C at the end).
// It holds the replicated data only: no identity, token, network key or
// config, so restoring it makes a new node with the data, never a clone
// of the node it came from.

// BackupFormat names the file format in BackupInfo.Format.
const BackupFormat = "starling-backup"

// backupVersion is the format's version; Restore refuses others.
const backupVersion = 1

// ErrBadBackup means a backup file is not one, is damaged or truncated,
// or does not fit the data directory it is restored into.
var ErrBadBackup = errors.New("node: bad backup")

// ErrRestoreNotEmpty means Restore was given a data directory whose node
// already has data.
var ErrRestoreNotEmpty = errors.New("node: the data directory already holds data")

// BackupInfo opens a backup file.
type BackupInfo struct {
	Format  string `json:"format"`  // BackupFormat
	Version int    `json:"version"` // 1
	Env     string `json:"env"`     // the environment the data belongs to
	NodeID  string `json:"node_id"` // the node it was taken on
	Created string `json:"created"` // RFC 3339, UTC
}

func writeBackupInfo(w io.Writer, cfg *Config) error {
	b, err := json.Marshal(BackupInfo{Format: BackupFormat, Version: backupVersion, Env: cfg.Env, NodeID: cfg.NodeID,
		Created: time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// readBackupInfo reads the first line of a backup file.
func readBackupInfo(br *bufio.Reader) (BackupInfo, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return BackupInfo{}, fmt.Errorf("%w: no header line (%v): not a Starling backup file", ErrBadBackup, err)
	}
	var bi BackupInfo
	if err := json.Unmarshal(line, &bi); err != nil || bi.Format != BackupFormat {
		return BackupInfo{}, fmt.Errorf("%w: the first line is not a Starling backup header: not a file made by `starling backup`", ErrBadBackup)
	}
	if bi.Version != backupVersion {
		return BackupInfo{}, fmt.Errorf("%w: format version %d; this release reads version %d: restore it with the release that made it", ErrBadBackup, bi.Version, backupVersion)
	}
	return bi, nil
}

// Backup writes a consistent copy of the node's data to w while it runs
// (local writes go on; the copy is the state at one moment). It fails
// while the node is itself joining or repairing, when its copy would be
// incomplete.
func (n *Node) Backup(ctx context.Context, w io.Writer) error {
	if err := writeBackupInfo(w, &n.cfg); err != nil {
		return err
	}
	return n.store.WriteSnapshot(ctx, w)
}

// BackupOffline writes a backup of a stopped node's data directory to w.
// It refuses a directory a running node holds (ErrInUse: back that one
// up through its API, as `starling backup` does).
func BackupOffline(ctx context.Context, dir string, w io.Writer, log *slog.Logger) (err error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, api.DatastoreDir)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("node: %s has no data to back up: the node has never run", dir)
	}
	store, closeStore, err := openOffline(ctx, dir, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	if store.NeedsTransfer(ctx) {
		return fmt.Errorf("node: %s has no data to back up", dir)
	}
	if err := writeBackupInfo(w, cfg); err != nil {
		return err
	}
	return store.WriteSnapshot(ctx, w)
}

// openOffline opens the store of a stopped node whose datastore exists,
// without the network; the returned func closes store and LevelDB.
func openOffline(ctx context.Context, dir string, log *slog.Logger) (*crdt.Store, func() error, error) {
	dbPath := filepath.Join(dir, api.DatastoreDir)
	ldb, err := crdt.OpenLevelDB(dbPath)
	if err != nil {
		return nil, nil, datastoreError(dir, dbPath, err)
	}
	store, err := offlineStore(ctx, ldb, log)
	if err != nil {
		return nil, nil, errors.Join(err, ldb.Close())
	}
	return store, func() error {
		return errors.Join(store.Close(), ldb.Close())
	}, nil
}

// offlineStore opens the store on a stopped node's LevelDB with no
// network (blocks from the local blockstore only) and no automatic
// compaction rounds.
func offlineStore(ctx context.Context, ldb *crdt.LevelDB, log *slog.Logger) (*crdt.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bs := blockstore.NewBlockstore(namespace.Wrap(ldb, BlocksNamespace))
	dag := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
	store, err := crdt.Open(ctx, ldb, dag, nil, crdt.Options{
		LocalBlocks:     bs,
		CompactInterval: -1,  // no automatic rounds
		Logger:          log, // crdt adds its component
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return store, nil
}

// RestoreProgress reports a restore as it goes.
type RestoreProgress struct {
	Phase   string // "checking" (reading the whole file) or "installing"
	Entries int64  // entries read so far in this phase
	Total   int64  // entries in the backup
}

// Restore fills the data directory of an initialised node that has no
// data yet (made by `starling init`, never run, or run without ever
// writing or joining) from a backup file. The whole file is read and
// checked (format, environment, entry count, checksum) before anything
// is written; a damaged file changes nothing. The node is stopped.
//
// Started afterwards, the node serves the restored data and merges with
// any peer of its environment as after a state transfer.
func Restore(ctx context.Context, dir, file string, progress func(RestoreProgress), log *slog.Logger) (_ BackupInfo, err error) {
	if progress == nil {
		progress = func(RestoreProgress) {}
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return BackupInfo{}, err
	}
	f, err := os.Open(file)
	if err != nil {
		return BackupInfo{}, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	bi, err := readBackupInfo(br)
	if err != nil {
		return bi, fmt.Errorf("%s: %w", file, err)
	}
	if bi.Env != cfg.Env {
		return bi, fmt.Errorf("%w: %s holds data of environment %q, and %s is a node of %q: initialise the directory with `starling init --data %s --env %s` (and that environment's network key)",
			ErrBadBackup, file, bi.Env, dir, cfg.Env, dir, bi.Env)
	}
	hdr, err := crdt.VerifySnapshot(br, func(n int64) { progress(RestoreProgress{Phase: "checking", Entries: n}) })
	if err != nil {
		return bi, fmt.Errorf("%w: %s: %w (nothing was restored)", ErrBadBackup, file, err)
	}
	if len(hdr.Heads) == 0 {
		return bi, fmt.Errorf("%w: %s holds no data", ErrBadBackup, file)
	}
	if err := os.MkdirAll(filepath.Join(dir, api.DatastoreDir), 0o700); err != nil {
		return bi, err
	}
	store, closeStore, err := openOffline(ctx, dir, log)
	if err != nil {
		return bi, err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	if !store.NeedsTransfer(ctx) {
		return bi, fmt.Errorf("%w: %s: restore fills only a node that has no data yet; to replace this node's data, move %s aside (the node stopped), run `starling init --data %s --force` and restore again",
			ErrRestoreNotEmpty, dir, filepath.Join(dir, api.DatastoreDir), dir)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return bi, err
	}
	br.Reset(f)
	if _, err := readBackupInfo(br); err != nil {
		return bi, err
	}
	err = store.Install(ctx, br, crdt.InstallOptions{Progress: func(p crdt.TransferProgress) {
		progress(RestoreProgress{Phase: "installing", Entries: p.EntriesDone, Total: hdr.Entries})
	}})
	if err != nil {
		return bi, fmt.Errorf("restore %s: %w", file, err)
	}
	progress(RestoreProgress{Phase: "installing", Entries: hdr.Entries, Total: hdr.Entries})
	return bi, nil
}

// ReadBackupInfo reads the header of a backup file (only its first line).
func ReadBackupInfo(file string) (BackupInfo, error) {
	f, err := os.Open(file)
	if err != nil {
		return BackupInfo{}, err
	}
	defer f.Close()
	bi, err := readBackupInfo(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return bi, fmt.Errorf("%s: %w", file, err)
	}
	return bi, nil
}
