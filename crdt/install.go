package crdt

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	crdt "github.com/ipfs/go-ds-crdt"
)

// State transfer: a joining or resyncing node copies a peer's go-ds-crdt
// state (set, heads, processed-block markers, version) instead of walking
// the peer's whole DAG history, then merges its own DAG on top and
// follows real-time sync from there.
//
// The source takes the copy between two broadcasts: go-ds-crdt processes
// a remote branch top-down and moves its heads only at the bottom, so a
// copy taken part-way would hold keys of a branch whose blocks are not
// marked processed, or the reverse, for good. It also refuses to serve a
// dirty store (a failed walk left a gap only the repair pass fills).
//
// The receiver writes the copy into a second namespace (go-ds-crdt's
// state lives under Options.Namespace or Options.Namespace+"-b", the
// live one named by a pointer key), checks its length and checksum, and
// only then switches the pointer and reopens go-ds-crdt on it: a transfer
// cut off midway leaves the node as it was, and no state is ever
// half-installed. The node's own heads from before are kept in a marker
// until they are merged, so a crash right after the switch loses none of
// its writes.
//
// Raw blocks are not copied (they stay where they are, in the node's
// block store): blocks the node lacks are below the processed markers,
// and no walk goes there.

// Snapshotter is a datastore that gives a consistent point-in-time read
// view. LevelDB implements it; state transfer needs it on the source.
type Snapshotter interface {
	Snapshot() (Snapshot, error)
}

// Snapshot is a read view of a datastore at one point in time.
type Snapshot interface {
	// Iterate calls fn for each entry whose key has prefix, in key
	// order. fn must not keep key or value.
	Iterate(prefix string, fn func(key, value []byte) error) error
	Release()
}

// Errors of state transfer.
var (
	// ErrRefused means the source would not serve a snapshot now (it is
	// syncing itself, dirty, or busy); try another peer or later.
	ErrRefused = errors.New("crdt: state transfer refused")
	// ErrBadSnapshot means a snapshot stream is malformed, truncated or
	// from an incompatible version.
	ErrBadSnapshot = errors.New("crdt: bad snapshot")
	// ErrEmptySource means the source has no state either (InstallOptions.SkipEmpty).
	ErrEmptySource = errors.New("crdt: the source has no state to transfer")
)

const (
	dirtyKeyName = "/d" // go-ds-crdt's dirty flag, under the namespace
	// pauseTimeout bounds how long a source waits for go-ds-crdt to
	// finish the broadcast it is processing before taking a snapshot.
	pauseTimeout = 10 * time.Second
)

var (
	nsPointer     = ds.NewKey("/_starling/crdt-ns")
	installMarker = ds.NewKey("/_starling/install")
)

// otherNS is the namespace a transfer is received into. Only Open and
// Install (one at a time) call it, and only swap changes s.ns.
func (s *Store) otherNS() string {
	if s.ns == s.opts.Namespace {
		return s.opts.Namespace + "-b"
	}
	return s.opts.Namespace
}

// SnapshotHeader opens a snapshot stream.
type SnapshotHeader struct {
	Entries   int64    `json:"entries"`
	Bytes     int64    `json:"bytes"` // keys and values
	Heads     []string `json:"heads"`
	MaxHeight uint64   `json:"max_height"`
	Version   []byte   `json:"version"` // go-ds-crdt's data version key
	Created   string   `json:"created"`
	// Members is the source's compaction member table (without itself,
	// whom the receiver knows as its peer): the receiver must not compact
	// what a node the source has heard from has not merged (compact.go).
	Members map[string]Member `json:"members,omitempty"`
}

// TransferProgress reports an install as it goes.
type TransferProgress struct {
	Header      SnapshotHeader
	EntriesDone int64
	BytesDone   int64
	Installing  bool // received whole; replacing the state
	Started     time.Time
}

// RefuseSnapshot answers a snapshot request with a refusal the asking
// node reports as ErrRefused with reason.
func RefuseSnapshot(w io.Writer, reason string) error {
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(len(reason)))
	b = append(b, reason...)
	_, err := w.Write(b)
	return err
}

// WriteEmptySnapshot answers a snapshot request with a state that has
// nothing in it (no heads, no entries): the asking node takes the source
// for a new node (ErrEmptySource with InstallOptions.SkipEmpty).
func WriteEmptySnapshot(w io.Writer) error {
	sw := newSnapshotWriter(w)
	if err := sw.header(SnapshotHeader{Created: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
		return err
	}
	return sw.end()
}

// snapshotWriter writes a snapshot stream (see WriteSnapshot);
// snapshotReader reads it.
type snapshotWriter struct {
	bw  *bufio.Writer
	crc hash.Hash32
	n   int64
	buf []byte
}

func newSnapshotWriter(w io.Writer) *snapshotWriter {
	return &snapshotWriter{bw: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
}

func (sw *snapshotWriter) header(h SnapshotHeader) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	sw.buf = append(binary.AppendUvarint(append(sw.buf[:0], 0), uint64(len(b))), b...)
	_, err = sw.bw.Write(sw.buf)
	return err
}

// entry writes one entry; key is relative to the namespace.
func (sw *snapshotWriter) entry(key, value []byte) error {
	sw.buf = binary.AppendUvarint(sw.buf[:0], uint64(len(key)))
	sw.buf = append(sw.buf, key...)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(value)))
	sw.buf = append(sw.buf, value...)
	sw.crc.Write(sw.buf)
	sw.n++
	_, err := sw.bw.Write(sw.buf)
	return err
}

// end writes the trailer (an empty key, the count, the checksum) and
// flushes.
func (sw *snapshotWriter) end() error {
	sw.buf = binary.BigEndian.AppendUint64(append(sw.buf[:0], 0), uint64(sw.n))
	sw.buf = binary.BigEndian.AppendUint32(sw.buf, sw.crc.Sum32())
	if _, err := sw.bw.Write(sw.buf); err != nil {
		return err
	}
	return sw.bw.Flush()
}

// WriteSnapshot writes a consistent copy of the store's state to w:
//
//	status 0, uvarint(len) JSON SnapshotHeader,
//	{ uvarint(len) key (relative to the namespace), uvarint(len) value },
//	0 (an empty key), count (8 bytes), CRC-32C of the entries (4 bytes)
//
// A refusal (status 1, uvarint(len) reason) is written to w too, so the
// asking peer learns why. The stream protocol's name carries the version.
func (s *Store) WriteSnapshot(ctx context.Context, w io.Writer) error {
	sw := newSnapshotWriter(w)
	refuse := func(err error) error {
		_ = RefuseSnapshot(sw.bw, strings.TrimPrefix(err.Error(), ErrRefused.Error()+": "))
		_ = sw.bw.Flush()
		return err
	}
	snapper, ok := s.backing.(Snapshotter)
	if !ok {
		return refuse(fmt.Errorf("%w: this node's datastore cannot take snapshots", ErrRefused))
	}
	if s.syncing.Load() {
		return refuse(fmt.Errorf("%w: this node is itself installing a state transfer", ErrRefused))
	}
	sn, hdr, err := s.takeSnapshot(ctx, snapper)
	if err != nil {
		return refuse(err)
	}
	defer sn.Release()

	s.dmu.RLock()
	ns := s.ns
	s.dmu.RUnlock()
	prefix := ns + "/"
	skip := func(k []byte) bool { return string(k[len(ns):]) == dirtyKeyName }
	// Count first, so the receiver can show progress.
	err = sn.Iterate(prefix, func(k, v []byte) error {
		if skip(k) {
			return nil
		}
		hdr.Entries++
		hdr.Bytes += int64(len(k) - len(ns) + len(v))
		if string(k[len(ns):]) == "/crdt_version" {
			hdr.Version = append([]byte(nil), v...)
		}
		return ctx.Err()
	})
	if err != nil {
		return refuse(fmt.Errorf("%w: %v", ErrRefused, err))
	}
	if err := sw.header(hdr); err != nil {
		return fmt.Errorf("crdt: write snapshot: %w", err)
	}
	err = sn.Iterate(prefix, func(k, v []byte) error {
		if skip(k) {
			return nil
		}
		if err := sw.entry(k[len(ns):], v); err != nil {
			return err
		}
		return ctx.Err()
	})
	if err == nil {
		err = sw.end()
	}
	if err != nil {
		return fmt.Errorf("crdt: write snapshot: %w", err)
	}
	s.log.Info("served a state transfer", "entries", sw.n, "bytes", hdr.Bytes, "heads", len(hdr.Heads))
	return nil
}

// takeSnapshot pauses local commits and go-ds-crdt between broadcasts,
// takes the datastore snapshot, and resumes.
func (s *Store) takeSnapshot(ctx context.Context, snapper Snapshotter) (Snapshot, SnapshotHeader, error) {
	if err := s.pauseThenHoldCommits(ctx); err != nil {
		return nil, SnapshotHeader{}, fmt.Errorf("%w: busy processing a remote branch: %v", ErrRefused, err)
	}
	defer s.releaseCommits()
	d := s.crdt()
	if d.IsDirty(ctx) {
		return nil, SnapshotHeader{}, fmt.Errorf("%w: this node's store is dirty (a DAG walk failed; repair pending)", ErrRefused)
	}
	st := d.InternalStats(ctx)
	sn, err := snapper.Snapshot()
	if err != nil {
		return nil, SnapshotHeader{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	hdr := SnapshotHeader{MaxHeight: st.MaxHeight, Created: time.Now().UTC().Format(time.RFC3339Nano), Members: s.Members()}
	delete(hdr.Members, selfMember)
	for _, h := range st.Heads {
		hdr.Heads = append(hdr.Heads, h.String())
	}
	return sn, hdr, nil
}

// pauseThenHoldCommits waits until go-ds-crdt is between broadcasts
// (up to pauseTimeout) and then holds local commits: with both, the
// store's namespace can be read or edited as a whole. It waits for the
// pause first, with commits flowing: go-ds-crdt may take seconds to
// finish a remote branch, and holding commits during that wait froze
// local writes for as long (three transfer requests at once held one
// write for 28 s). Local commits never wait on the broadcaster, so the
// order cannot deadlock. Every nil return needs a releaseCommits.
func (s *Store) pauseThenHoldCommits(ctx context.Context) error {
	if s.bc != nil {
		pctx, cancel := context.WithTimeout(ctx, pauseTimeout)
		err := s.bc.pause(pctx)
		cancel()
		if err != nil {
			s.bc.resume()
			return err
		}
	}
	s.commitMu.Lock()
	return nil
}

// releaseCommits undoes pauseThenHoldCommits.
func (s *Store) releaseCommits() {
	s.commitMu.Unlock()
	if s.bc != nil {
		s.bc.resume()
	}
}

// InstallOptions adjust Install.
type InstallOptions struct {
	// Progress, if not nil, is called as entries arrive (at most every
	// 100 ms) and once the replacement starts.
	Progress func(TransferProgress)
	// SkipEmpty makes Install return ErrEmptySource, changing nothing,
	// when the source has no state (no heads): a joining node asks
	// another peer.
	SkipEmpty bool
}

// Install reads a snapshot from r (WriteSnapshot's output on a peer) and
// replaces this store's state with it, then merges this node's own DAG
// heads from before the install, so local writes not yet replicated are
// kept. On any error before the replacement the store is unchanged.
func (s *Store) Install(ctx context.Context, r io.Reader, o InstallOptions) error {
	progress := o.Progress
	if s.bc == nil && !s.NeedsTransfer(ctx) {
		// Offline (a restore into a new data directory) only: with no
		// transport this node's own writes could not be merged after.
		return errors.New("crdt: an install into a store that has state needs a replicating store (this one has no transport)")
	}
	if !s.syncing.CompareAndSwap(false, true) {
		return errors.New("crdt: a state transfer is already being installed")
	}
	defer s.syncing.Store(false)
	hdr, err := s.receive(ctx, r, progress, o.SkipEmpty)
	if err != nil {
		s.clearStaging(context.Background())
		return err
	}
	if progress != nil {
		progress(TransferProgress{Header: hdr, EntriesDone: hdr.Entries, BytesDone: hdr.Bytes, Installing: true})
	}
	if err := s.swap(ctx, hdr); err != nil {
		return err
	}
	s.rebaseMembers(ctx, hdr.Members)
	return nil
}

// snapshotReader parses a snapshot stream (see WriteSnapshot). Every
// length is bounded before anything is allocated.
type snapshotReader struct {
	br      *bufio.Reader
	crc     hash.Hash32
	hdr     SnapshotHeader
	n       int64
	scratch []byte
}

func newSnapshotReader(r io.Reader) *snapshotReader {
	return &snapshotReader{br: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
}

func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
}

func (sr *snapshotReader) bytes(max uint64) ([]byte, error) {
	l, err := binary.ReadUvarint(sr.br)
	if err != nil {
		return nil, err
	}
	if l > max {
		return nil, fmt.Errorf("length %d over %d", l, max)
	}
	b := make([]byte, l)
	_, err = io.ReadFull(sr.br, b)
	return b, err
}

// header reads the status and the header; a refusal is ErrRefused.
func (sr *snapshotReader) header() (SnapshotHeader, error) {
	status, err := sr.br.ReadByte()
	if err != nil {
		return SnapshotHeader{}, badSnapshot("no answer from the source: %v", err)
	}
	switch status {
	case 0:
	case 1:
		msg, err := sr.bytes(4096)
		if err != nil {
			return SnapshotHeader{}, badSnapshot("refusal unreadable: %v", err)
		}
		return SnapshotHeader{}, fmt.Errorf("%w by the source: %s", ErrRefused, msg)
	default:
		return SnapshotHeader{}, badSnapshot("status %d", status)
	}
	hb, err := sr.bytes(1 << 20)
	if err != nil {
		return SnapshotHeader{}, badSnapshot("header: %v", err)
	}
	if err := json.Unmarshal(hb, &sr.hdr); err != nil {
		return SnapshotHeader{}, badSnapshot("header: %v", err)
	}
	if sr.hdr.Entries < 0 || sr.hdr.Bytes < 0 {
		return SnapshotHeader{}, badSnapshot("header: negative totals")
	}
	return sr.hdr, nil
}

// next returns the next entry (key relative to the namespace), or
// end=true once the trailer has been read and checked.
func (sr *snapshotReader) next() (k, v []byte, end bool, err error) {
	kl, err := binary.ReadUvarint(sr.br)
	if err != nil {
		return nil, nil, false, badSnapshot("entry %d: %v (transfer cut off?)", sr.n, err)
	}
	if kl == 0 {
		var tr [12]byte
		if _, err := io.ReadFull(sr.br, tr[:]); err != nil {
			return nil, nil, false, badSnapshot("trailer: %v (transfer cut off?)", err)
		}
		if n := int64(binary.BigEndian.Uint64(tr[:8])); n != sr.n || n != sr.hdr.Entries {
			return nil, nil, false, badSnapshot("%d entries received, trailer says %d, header %d", sr.n, n, sr.hdr.Entries)
		}
		if sum := binary.BigEndian.Uint32(tr[8:]); sum != sr.crc.Sum32() {
			return nil, nil, false, badSnapshot("checksum mismatch")
		}
		return nil, nil, true, nil
	}
	if kl > 64<<10 {
		return nil, nil, false, badSnapshot("entry %d: key of %d bytes", sr.n, kl)
	}
	k = make([]byte, kl)
	if _, err := io.ReadFull(sr.br, k); err != nil {
		return nil, nil, false, badSnapshot("entry %d: %v (transfer cut off?)", sr.n, err)
	}
	vl, err := binary.ReadUvarint(sr.br)
	if err != nil || vl > 16<<20 {
		return nil, nil, false, badSnapshot("entry %d: bad value length", sr.n)
	}
	v = make([]byte, vl)
	if _, err := io.ReadFull(sr.br, v); err != nil {
		return nil, nil, false, badSnapshot("entry %d: %v (transfer cut off?)", sr.n, err)
	}
	sr.scratch = binary.AppendUvarint(sr.scratch[:0], kl)
	sr.scratch = append(sr.scratch, k...)
	sr.scratch = binary.AppendUvarint(sr.scratch, vl)
	sr.crc.Write(sr.scratch)
	sr.crc.Write(v)
	if k[0] != '/' || string(k) == dirtyKeyName {
		return nil, nil, false, badSnapshot("entry %d: key %q not allowed", sr.n, k)
	}
	sr.n++
	return k, v, false, nil
}

// VerifySnapshot reads a whole snapshot stream (WriteSnapshot's output,
// e.g. a backup file) and checks it: format, lengths, entry count and
// checksum. It returns the header; it keeps nothing.
func VerifySnapshot(r io.Reader, progress func(entries int64)) (SnapshotHeader, error) {
	sr := newSnapshotReader(r)
	hdr, err := sr.header()
	if err != nil {
		return SnapshotHeader{}, err
	}
	for {
		_, _, end, err := sr.next()
		if err != nil {
			return hdr, err
		}
		if end {
			return hdr, nil
		}
		if progress != nil && sr.n%4096 == 0 {
			progress(sr.n)
		}
	}
}

// receive reads a snapshot into the namespace that is not live.
func (s *Store) receive(ctx context.Context, r io.Reader, progress func(TransferProgress), skipEmpty bool) (SnapshotHeader, error) {
	sr := newSnapshotReader(r)
	hdr, err := sr.header()
	if err != nil {
		return SnapshotHeader{}, err
	}
	if skipEmpty && len(hdr.Heads) == 0 {
		return SnapshotHeader{}, ErrEmptySource
	}
	s.dmu.RLock()
	live := s.ns
	s.dmu.RUnlock()
	mine, err := s.backing.Get(ctx, ds.NewKey(live).ChildString("crdt_version"))
	if err == nil && len(hdr.Version) > 0 && string(mine) != string(hdr.Version) {
		return SnapshotHeader{}, badSnapshot("the source runs go-ds-crdt data version %x, this node %x: upgrade the older node first", hdr.Version, mine)
	}
	s.stageMu.Lock() // not before an earlier swap has deleted this namespace (afterSwap)
	defer s.stageMu.Unlock()
	staging := s.otherNS()
	s.clearStaging(ctx)
	start := time.Now()
	var doneBytes int64
	batch, err := s.backing.Batch(ctx)
	if err != nil {
		return SnapshotHeader{}, err
	}
	inBatch := 0
	lastReport := time.Time{}
	for {
		k, v, end, err := sr.next()
		if err != nil {
			return SnapshotHeader{}, err
		}
		if end {
			break
		}
		if err := batch.Put(ctx, ds.RawKey(staging+string(k)), v); err != nil {
			return SnapshotHeader{}, err
		}
		doneBytes += int64(len(k) + len(v))
		inBatch += len(k) + len(v)
		if inBatch > 4<<20 {
			if err := batch.Commit(ctx); err != nil {
				return SnapshotHeader{}, fmt.Errorf("crdt: stage snapshot: %w", err)
			}
			if batch, err = s.backing.Batch(ctx); err != nil {
				return SnapshotHeader{}, err
			}
			inBatch = 0
		}
		if err := ctx.Err(); err != nil {
			return SnapshotHeader{}, err
		}
		if progress != nil && time.Since(lastReport) > 100*time.Millisecond {
			lastReport = time.Now()
			progress(TransferProgress{Header: hdr, EntriesDone: sr.n, BytesDone: doneBytes, Started: start})
		}
	}
	if err := batch.Commit(ctx); err != nil {
		return SnapshotHeader{}, fmt.Errorf("crdt: stage snapshot: %w", err)
	}
	return hdr, nil
}

// swap makes the received namespace the live one, then merges this
// node's own DAG before local writes resume: a write made right after
// (a delete of a key this node wrote while joining) must see them.
func (s *Store) swap(ctx context.Context, hdr SnapshotHeader) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.bc != nil {
		// Let go-ds-crdt finish what it is processing; it is closed next.
		pctx, cancel := context.WithTimeout(ctx, pauseTimeout)
		if err := s.bc.pause(pctx); err != nil {
			s.log.Warn("state transfer: go-ds-crdt still busy; closing it anyway", "err", err)
		}
		cancel()
		defer s.bc.resume()
	}
	own, oldNS, err := s.reopenOn(ctx)
	if err != nil {
		return err
	}
	// The received namespace comes with its frontier (the source's).
	if err := s.loadFrontier(ctx); err != nil {
		return err
	}
	if s.bc != nil {
		if n := s.bc.dropQueued(); n > 0 {
			s.log.Info("state transfer: dropped the heads received before it; their senders send them again", "messages", n)
		}
	}
	// This node's own history may not merge as a DAG on the installed
	// state; then its live values are written again on top of it
	// instead (replayLive).
	//
	//   - The source evicted this node (a rebase): the branch this node
	//     built since may lie below the frontier of any node of the
	//     source's history that evicted it too, whatever the source's
	//     own frontier says (frontiers are per node). Merged here, that
	//     branch would sit below every later write of this node, and of
	//     each node that merged one: those nodes would refuse them all,
	//     for good (partition-outlasting-twice: a node rebased on a
	//     source that had evicted it but not compacted past its blocks;
	//     the nodes that had, dropped every later write of both).
	//   - Its history lies below the source's frontier (built apart
	//     from the source's, or the source compacted past it), or its
	//     own compaction deleted blocks of it the source never had (the
	//     two evicted each other): gateOwn.
	//
	// A join or a resync from a peer that counts this node merges the
	// DAG, which keeps deletes exact (a replay makes raw keys add-wins).
	var why error
	if s.opts.Self != "" && hdr.Members[s.opts.Self].Evicted {
		why = errors.New("the source evicted this node: a rebase")
	} else {
		why = s.gateOwn(ctx, own) // walks up to gateWalkLimit blocks: only when it decides
	}
	if why != nil {
		n, rerr := s.replayLive(ctx, oldNS)
		if rerr != nil {
			return fmt.Errorf("crdt: state transfer: replaying this node's own values: %w", rerr)
		}
		s.log.Warn("state transfer: this node's own history cannot merge on the installed state; its live values missing from it were written again on top of it",
			"replayed", n, "why", why)
		own = nil
	}
	// go-ds-crdt walks down from the old heads and stops at blocks the
	// source had processed.
	mctx, cancel := context.WithTimeout(ctx, mergeTimeout)
	if err := s.mergeHeads(mctx, own); err != nil {
		s.log.Warn("state transfer: this node's own writes are still being merged", "err", err)
	}
	cancel()
	s.feed.reload()
	// stageMu is taken here, and released once afterSwap is done: the
	// next transfer is received into oldNS. Taken in the goroutine, it
	// was at times taken only after the next transfer had been staged
	// (installs a few milliseconds apart, a resync and then a rebase, on
	// a loaded machine), and afterSwap deleted that transfer: the node
	// opened go-ds-crdt on an empty state.
	s.stageMu.Lock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.stageMu.Unlock()
		s.afterSwap(oldNS)
	}()
	s.log.Info("installed a state transfer", "entries", hdr.Entries, "bytes", hdr.Bytes, "own_heads", len(own))
	return nil
}

// replayLive writes again, as new local writes on the installed state,
// every live value of the namespace the install replaced that the
// installed state lacks. For the entity tree's records (each version
// under its own key, ordered by hybrid logical timestamp) this gives the
// same result a DAG merge would: a version the cluster has superseded is
// superseded again. Raw keys become add-wins: a key deleted elsewhere
// that this node still held comes back. Called by swap, with commitMu
// held.
func (s *Store) replayLive(ctx context.Context, oldNS string) (int, error) {
	prefix := oldNS + "/s/k/"
	res, err := s.backing.Query(ctx, query.Query{Prefix: prefix})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	var ops []Op
	size, n := 0, 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := s.writeDelta(ops); err != nil {
			return err
		}
		n += len(ops)
		ops, size = nil, 0
		return nil
	}
	for r := range res.Next() {
		if r.Error != nil {
			return n, r.Error
		}
		rest, ok := strings.CutSuffix(strings.TrimPrefix(r.Key, prefix), "/v")
		if !ok {
			continue // the priority entry
		}
		k := ds.NewKey(rest)
		if has, err := s.crdt().Has(ctx, k); err != nil || has {
			if err != nil {
				return n, err
			}
			continue
		}
		op := Op{Key: k, Value: r.Value}
		if len(ops) >= s.opts.CommitMaxOps || size+opsSize([]Op{op}) > s.opts.CommitMaxBytes {
			if err := flush(); err != nil {
				return n, err
			}
		}
		ops = append(ops, op)
		size += opsSize([]Op{op})
	}
	return n, flush()
}

// mergeTimeout bounds the wait for go-ds-crdt to merge this node's own
// heads after an install.
const mergeTimeout = 2 * time.Minute

// reopenOn closes go-ds-crdt, switches the pointer to the received
// namespace and reopens go-ds-crdt on it. It returns this node's heads
// from before, and the old namespace.
func (s *Store) reopenOn(ctx context.Context) ([]cid.Cid, string, error) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	old, oldNS, newNS := s.dstore, s.ns, s.otherNS()
	own := append(old.InternalStats(ctx).Heads, s.pendingHeads...)
	if err := old.Close(); err != nil {
		s.log.Warn("state transfer: closing go-ds-crdt", "err", err)
	}
	reopen := func(ns string, err error) error {
		nd, oerr := crdt.New(s.backing, ds.NewKey(ns), s.dag, s.bcast(), s.copts)
		if oerr != nil {
			return errors.Join(err, fmt.Errorf("crdt: reopen: %w", oerr))
		}
		s.dstore, s.ns = nd, ns
		return err
	}
	// The marker keeps this node's own heads until they are merged; the
	// pointer switch is one synced write.
	if err := s.writeMarker(ctx, own); err != nil {
		return nil, "", reopen(oldNS, fmt.Errorf("crdt: state transfer: %w", err))
	}
	if err := s.backing.Put(ctx, nsPointer, []byte(newNS)); err != nil {
		return nil, "", reopen(oldNS, fmt.Errorf("crdt: state transfer: %w", err))
	}
	if err := s.backing.Sync(ctx, ds.NewKey("/")); err != nil {
		return nil, "", reopen(oldNS, fmt.Errorf("crdt: state transfer: %w", err))
	}
	if err := reopen(newNS, nil); err != nil {
		return nil, "", fmt.Errorf("crdt: state transfer: %w", err)
	}
	s.pendingHeads = nil
	return own, oldNS, nil
}

// afterSwap deletes the old namespace, and the marker (the own heads are
// merged by now, or the next start merges them again). It runs with
// stageMu held (see swap), so that the next install neither stages into
// the old namespace before it is deleted nor writes its marker before
// this one is removed.
func (s *Store) afterSwap(oldNS string) {
	ctx := s.ctx
	if err := s.deletePrefix(ctx, ds.NewKey(oldNS)); err != nil && ctx.Err() == nil {
		s.log.Warn("state transfer: deleting the old state", "err", err)
	}
	if err := s.backing.Delete(ctx, installMarker); err != nil && ctx.Err() == nil {
		s.log.Warn("state transfer: removing the install marker", "err", err)
	}
}

func (s *Store) bcast() crdt.Broadcaster {
	if s.bc == nil {
		return nil
	}
	return s.bc
}

func (s *Store) writeMarker(ctx context.Context, heads []cid.Cid) error {
	var b []byte
	for _, h := range heads {
		hb := h.Bytes()
		b = binary.AppendUvarint(b, uint64(len(hb)))
		b = append(b, hb...)
	}
	if err := s.backing.Put(ctx, installMarker, b); err != nil {
		return err
	}
	return s.backing.Sync(ctx, ds.NewKey("/"))
}

func (s *Store) deletePrefix(ctx context.Context, prefix ds.Key) error {
	res, err := s.backing.Query(ctx, query.Query{Prefix: prefix.String(), KeysOnly: true})
	if err != nil {
		return err
	}
	defer res.Close()
	b, err := s.backing.Batch(ctx)
	if err != nil {
		return err
	}
	n := 0
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		if err := b.Delete(ctx, ds.RawKey(r.Key)); err != nil {
			return err
		}
		if n++; n%10000 == 0 {
			if err := b.Commit(ctx); err != nil {
				return err
			}
			if b, err = s.backing.Batch(ctx); err != nil {
				return err
			}
		}
	}
	return b.Commit(ctx)
}

// clearStaging deletes whatever is in the namespace that is not live: a
// transfer cut off while receiving, or the old state of a swap.
func (s *Store) clearStaging(ctx context.Context) {
	if err := s.deletePrefix(ctx, ds.NewKey(s.otherNS())); err != nil {
		s.log.Warn("state transfer: clearing the staging area", "err", err)
	}
}

// recoverInstall runs at Open, before go-ds-crdt: it picks the live
// namespace, clears the other (a transfer cut off while receiving), and
// reads the marker of a swap whose own heads may not have been merged:
// they are merged at start (MergePending) or after the next install.
func (s *Store) recoverInstall(ctx context.Context) error {
	s.ns = s.opts.Namespace
	if b, err := s.backing.Get(ctx, nsPointer); err == nil {
		if ns := string(b); ns == s.opts.Namespace || ns == s.opts.Namespace+"-b" {
			s.ns = ns
		}
	} else if !errors.Is(err, ds.ErrNotFound) {
		return fmt.Errorf("crdt: open: %w", err)
	}
	s.clearStaging(ctx)
	b, err := s.backing.Get(ctx, installMarker)
	if errors.Is(err, ds.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("crdt: open: %w", err)
	}
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			break
		}
		c, err := cid.Cast(b[n : n+int(l)])
		if err == nil {
			s.pendingHeads = append(s.pendingHeads, c)
		}
		b = b[n+int(l):]
	}
	s.log.Info("merging this node's own heads from before a state transfer", "heads", len(s.pendingHeads))
	return nil
}

// MergePending merges the heads of an install that was cut off (see
// recoverInstall) without a new install, for a node that found no peer
// to transfer from; it returns once go-ds-crdt has merged them.
func (s *Store) MergePending(ctx context.Context) {
	s.dmu.Lock()
	own := s.pendingHeads
	s.pendingHeads = nil
	s.dmu.Unlock()
	if len(own) == 0 {
		return
	}
	mctx, cancel := context.WithTimeout(ctx, mergeTimeout)
	defer cancel()
	if err := s.mergeHeads(mctx, own); err != nil {
		s.log.Warn("merging this node's own heads", "err", err)
		return
	}
	if err := s.backing.Delete(ctx, installMarker); err != nil {
		s.log.Warn("state transfer: removing the install marker", "err", err)
	}
}

// mergeHeads hands heads to go-ds-crdt ahead of anything received, like
// a broadcast, and waits until it has merged them: it walks down from
// them and stops at processed blocks.
func (s *Store) mergeHeads(ctx context.Context, heads []cid.Cid) error {
	if len(heads) == 0 || s.bc == nil {
		return nil
	}
	payload, err := headsPayload(heads)
	if err != nil {
		return err
	}
	return s.bc.runFirst(ctx, payload)
}

// NeedsTransfer reports whether this store should join by state
// transfer: it has no state of its own (never written, never synced).
func (s *Store) NeedsTransfer(ctx context.Context) bool {
	return len(s.crdt().InternalStats(ctx).Heads) == 0
}

// HoldRemote stops handing received heads to go-ds-crdt until
// ReleaseRemote: a joining node does not start walking a peer's history
// while it fetches the state instead. Received heads wait in the
// receive queue. Local writes go on.
func (s *Store) HoldRemote() {
	if s.bc != nil {
		s.bc.mu.Lock()
		s.bc.pauses++
		s.bc.mu.Unlock()
	}
}

// ReleaseOpenHold releases the hold of Options.HoldRemoteWhenEmpty, once;
// a store opened with state, or without the option, has none.
func (s *Store) ReleaseOpenHold() {
	if s.heldAtOpen.CompareAndSwap(true, false) {
		s.ReleaseRemote()
	}
}

// ReleaseRemote undoes HoldRemote.
func (s *Store) ReleaseRemote() {
	if s.bc != nil {
		s.bc.resume()
	}
}

// MarkDirty flags the store as having a gap, as go-ds-crdt does when a
// DAG walk fails (tests use it to stand for such a failure). A node
// repairs a dirty store by state transfer from a peer.
func (s *Store) MarkDirty(ctx context.Context) { s.crdt().MarkDirty(ctx) }

// Dirty reports whether a DAG walk failed part-way and left a gap (see
// Status.Dirty), without Status's other work (it sizes the datastore's
// key ranges).
func (s *Store) Dirty(ctx context.Context) bool { return s.crdt().IsDirty(ctx) }
