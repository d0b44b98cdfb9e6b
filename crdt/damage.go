package crdt

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/journal"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/table"
)

// ErrDamaged is wrapped by the error of OpenLevelDB for a datastore whose
// files are damaged: opening it would serve part of its data as never
// written. Test with errors.Is; errors.As gives the *DamageError.
var ErrDamaged = errors.New("crdt: datastore damaged")

// DamageError says what is damaged in the datastore in Dir.
type DamageError struct {
	Dir string
	// File is the damaged or missing file ("" when several are), and
	// Problem what is wrong with it.
	File    string
	Problem string
	Err     error // goleveldb's error, if it reported the damage
}

func (e *DamageError) Error() string {
	s := fmt.Sprintf("crdt: the datastore in %s is damaged: %s", e.Dir, e.Problem)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamageError) Is(target error) bool { return target == ErrDamaged }

func (e *DamageError) Unwrap() error { return e.Err }

// openError turns goleveldb's corruption errors at open into a
// *DamageError naming the files.
func openError(dir string, err error) error {
	if !lerrors.IsCorrupted(err) {
		return fmt.Errorf("crdt: open datastore %s: %w", dir, err)
	}
	var ce *lerrors.ErrCorrupted
	errors.As(err, &ce)
	// goleveldb's ErrCorrupted holds the cause in a field, unwrapped.
	if missing, ok := corruptedCause(ce).(*lerrors.ErrMissingFiles); ok {
		names := make([]string, len(missing.Fds))
		for i, fd := range missing.Fds {
			names[i] = fd.String()
		}
		slices.Sort(names)
		d := &DamageError{Dir: dir, Problem: fmt.Sprintf("table file %s is listed in the MANIFEST but missing", strings.Join(names, ", "))}
		if len(names) == 1 {
			d.File = names[0]
		} else {
			d.Problem = fmt.Sprintf("%d table files listed in the MANIFEST are missing: %s", len(names), strings.Join(names, ", "))
		}
		return d
	}
	d := &DamageError{Dir: dir, Problem: "goleveldb found damage", Err: err}
	if ce != nil && !ce.Fd.Zero() {
		d.File = ce.Fd.String()
		d.Problem = ce.Fd.String() + " is damaged"
	}
	return d
}

func corruptedCause(ce *lerrors.ErrCorrupted) error {
	if ce == nil {
		return nil
	}
	return ce.Err
}

// dropRecorder is a journal.Dropper that counts what the reader skipped.
type dropRecorder struct {
	n      int
	reason string // of the first drop
}

func (d *dropRecorder) Drop(err error) {
	if d.n == 0 {
		d.reason = err.Error()
		var ce *journal.ErrCorrupted
		if errors.As(err, &ce) {
			d.reason = ce.Reason
		}
	}
	d.n++
}

// checkFiles reads the current MANIFEST and every journal before goleveldb
// opens them. goleveldb skips a damaged record of either and opens what is
// left without an error: a lost journal record is lost writes, a lost
// MANIFEST record a lost table (which goleveldb then deletes as unused).
//
// A damaged record followed by good ones is damage. A damaged record at
// the very end of a journal is a write cut off by a crash: writes are
// acknowledged only after a synced write, and everything a crash can cut
// off was written after the last one, so it is let through (and logged).
// At the end of the MANIFEST, a record cut short is let through the same
// way (goleveldb syncs each MANIFEST record before it deletes the files
// it replaces), but a whole record whose checksum fails is damage.
//
// Cost: one read of the MANIFEST (kilobytes) and of the journals (at
// most twice the 16 MiB write buffer), which goleveldb's open reads again
// right after, from the page cache.
func checkFiles(stor storage.Storage, dir string, log *slog.Logger) error {
	mfd, err := stor.GetMeta()
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return &DamageError{Dir: dir, File: "CURRENT", Problem: "the CURRENT file (which names the MANIFEST) cannot be read", Err: err}
		}
		tables, lerr := stor.List(storage.TypeTable)
		if lerr != nil {
			return fmt.Errorf("crdt: list datastore files in %s: %w", dir, lerr)
		}
		if len(tables) > 0 {
			// goleveldb would start an empty store and delete them.
			return &DamageError{Dir: dir, File: "CURRENT", Problem: fmt.Sprintf("the CURRENT file is missing or names no MANIFEST, but %d table files are there", len(tables))}
		}
		mfd = storage.FileDesc{} // a new store
	}
	if !mfd.Zero() {
		if err := checkLog(stor, dir, mfd, true, log); err != nil {
			return err
		}
	}
	journals, err := stor.List(storage.TypeJournal)
	if err != nil {
		return fmt.Errorf("crdt: list datastore files in %s: %w", dir, err)
	}
	for _, fd := range journals {
		if err := checkLog(stor, dir, fd, false, log); err != nil {
			return err
		}
	}
	return nil
}

// checkLog reads one journal-format file (a journal or the MANIFEST) as
// checkFiles describes.
func checkLog(stor storage.Storage, dir string, fd storage.FileDesc, manifest bool, log *slog.Logger) error {
	f, err := stor.Open(fd)
	if err != nil {
		if manifest && errors.Is(err, os.ErrNotExist) {
			return &DamageError{Dir: dir, File: fd.String(), Problem: fmt.Sprintf("%s, named by CURRENT, is missing", fd)}
		}
		return fmt.Errorf("crdt: open %s in %s: %w", fd, dir, err)
	}
	defer f.Close()
	var drops dropRecorder
	r := journal.NewReader(f, &drops, false, true)
	records := 0
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("crdt: read %s in %s: %w", fd, dir, err)
		}
		before := drops.n
		_, err = io.Copy(io.Discard, rec)
		if err == nil && drops.n == before {
			if drops.n > 0 {
				return &DamageError{Dir: dir, File: fd.String(), Problem: fmt.Sprintf("%s has a damaged record (%s) followed by good ones: goleveldb would skip it and lose what it holds", fd, drops.reason)}
			}
			records++
			continue
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("crdt: read %s in %s: %w", fd, dir, err)
		}
	}
	if drops.n == 0 {
		return nil
	}
	if manifest && (drops.reason == "checksum mismatch" || records == 0) {
		return &DamageError{Dir: dir, File: fd.String(), Problem: fmt.Sprintf("%s has a damaged record (%s): goleveldb would skip it and forget the tables it lists", fd, drops.reason)}
	}
	log.Warn("the datastore's last record was cut off (a crash during a write that was never acknowledged): it is left out", "file", fd.String(), "reason", drops.reason)
	return nil
}

// verifyTables checks every table goleveldb keeps: its footer and index
// always, and every data block's checksum when the tables hold at most
// max bytes together (see LevelDBOptions.VerifyMax).
func verifyTables(stor storage.Storage, db *goleveldb.DB, dir string, max int64, log *slog.Logger) error {
	all, err := stor.List(storage.TypeTable)
	if err != nil {
		return fmt.Errorf("crdt: list datastore files in %s: %w", dir, err)
	}
	// Only the tables goleveldb's current version holds: once open, its
	// compactions write new tables (a partial one read here looked
	// damaged: CI saw 'bad magic number' on a table being written) and
	// delete old ones, and a table left over by a crash is no data.
	live, err := liveTables(db)
	if err != nil {
		return fmt.Errorf("crdt: list the tables of the datastore in %s: %w", dir, err)
	}
	var fds []storage.FileDesc
	for _, fd := range all {
		if live[fd.Num] {
			fds = append(fds, fd)
		}
	}
	var total int64
	sizes := make([]int64, len(fds))
	for i, fd := range fds {
		sizes[i] = fileSize(stor, fd)
		total += sizes[i]
	}
	full := max >= 0 && total <= max
	if !full {
		log.Info("datastore tables too large to read whole at open: only their indexes are checked", "bytes", total, "verify_max", max)
	}
	o := &opt.Options{Strict: opt.StrictBlockChecksum | opt.StrictReader}
	for i, fd := range fds {
		if err := verifyTable(stor, fd, sizes[i], full, o); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // compacted away meanwhile
			}
			return &DamageError{Dir: dir, File: fd.String(), Problem: fmt.Sprintf("table %s fails its checks", fd), Err: err}
		}
	}
	return nil
}

// liveTables returns the file numbers of the tables in db's current
// version (goleveldb's "leveldb.sstables" property: a "--- level N ---"
// line per level, then "NUM:SIZE[...]" per table).
func liveTables(db *goleveldb.DB) (map[int64]bool, error) {
	v, err := db.GetProperty("leveldb.sstables")
	if err != nil {
		return nil, err
	}
	live := make(map[int64]bool)
	for _, line := range strings.Split(v, "\n") {
		num, _, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "---") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("table line %q: %w", line, err)
		}
		live[n] = true
	}
	return live, nil
}

func verifyTable(stor storage.Storage, fd storage.FileDesc, size int64, full bool, o *opt.Options) error {
	f, err := stor.Open(fd)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := table.NewReader(f, size, fd, nil, nil, o)
	if err != nil {
		return err
	}
	defer r.Release()
	it := r.NewIterator(nil, nil)
	defer it.Release()
	if !full {
		// Reading the first entry reads the index block.
		it.First()
		return it.Error()
	}
	for it.Next() {
	}
	return it.Error()
}
