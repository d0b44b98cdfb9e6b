package crdt

import (
	"context"
	"fmt"
	"time"

	ds "github.com/ipfs/go-datastore"
	crdt "github.com/ipfs/go-ds-crdt"

	"github.com/starling-sync/starling/internal/groupcommit"
)

// writeReq is one caller's writes waiting for group commit.
type writeReq struct {
	ops  []Op
	size int
	done chan error // buffered: the committer never blocks on it
}

// committer gathers the writes of Put, Delete and Apply. It takes the
// first waiting request and gathers more (see groupcommit.Gatherer, with
// CommitWindow), up to CommitMaxOps and CommitMaxBytes, into one delta:
// one DAG node, one broadcast and one fsync for the group. Each caller is
// answered after the fsync.
func (s *Store) committer() {
	g := groupcommit.Gatherer[*writeReq]{C: s.writes, Window: s.opts.CommitWindow}
	for {
		first, ok := g.Carried()
		if !ok {
			if first, ok = <-s.writes; !ok {
				return
			}
		}
		nops, nbytes := len(first.ops), first.size
		group, _ := g.Gather(first, func(r *writeReq) bool {
			if nops+len(r.ops) > s.opts.CommitMaxOps || nbytes+r.size > s.opts.CommitMaxBytes {
				return false
			}
			nops += len(r.ops)
			nbytes += r.size
			return true
		}, func() bool { return nops >= s.opts.CommitMaxOps })
		var ops []Op
		for _, r := range group {
			ops = append(ops, r.ops...)
		}
		err := s.commit(ops)
		for _, r := range group {
			s.pendingOps.Add(-int64(len(r.ops)))
			r.done <- err
		}
	}
}

// commit writes ops as one delta and syncs it to disk. It is the one
// place that writes to go-ds-crdt (the committer and Commit call it; a
// state transfer holds commitMu to keep it out): go-ds-crdt's Batch
// shares a single pending delta for the whole store, so two writers at
// once would mix their deltas.
func (s *Store) commit(ops []Op) error {
	// The last op on a key wins; go-ds-crdt would otherwise keep both
	// values of a key put twice in one delta and pick by bytes.
	last := make(map[string]int, len(ops))
	deduped := make([]Op, 0, len(ops))
	for _, op := range ops {
		k := op.Key.String()
		if i, ok := last[k]; ok {
			deduped[i] = op
			continue
		}
		last[k] = len(deduped)
		deduped = append(deduped, op)
	}

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	// While the datastore refuses writes, fail before go-ds-crdt takes
	// the ops into its pending delta.
	if hr, ok := s.backing.(healthReporter); ok {
		if h := hr.Health(); !h.Writable {
			return fmt.Errorf("%w since %s: %s: free space on its disk (or fix its I/O error); writes work again by themselves once they can", ErrNotWritable, h.Since.Format(time.RFC3339), h.WriteError)
		}
	}
	if s.stalePending {
		if err := s.restartCRDT(); err != nil {
			return err
		}
		s.stalePending = false
	}
	s.localMu.Lock()
	s.localKeys = make(map[string]struct{}, len(last))
	for k := range last {
		s.localKeys[k] = struct{}{}
	}
	s.localMu.Unlock()

	err := s.writeDelta(deduped)

	s.localMu.Lock()
	changes := s.localChanges
	s.localChanges = nil
	s.localKeys = nil
	s.localMu.Unlock()
	// Still under commitMu: the feed gets each commit's changes in
	// commit order.
	for _, c := range changes {
		s.feed.push(c)
	}
	if err == nil {
		s.commits.Add(1)
		s.opsCommitted.Add(uint64(len(deduped)))
	} else {
		// A failed commit may leave its ops in go-ds-crdt's pending
		// delta, which the next commit would publish: a write its caller
		// was told had failed would take effect later.
		s.stalePending = true
	}
	return err
}

// restartCRDT closes go-ds-crdt and opens it again on the same
// namespace: that drops its in-memory pending delta (go-ds-crdt has no
// call for it) and reloads its heads from disk. Called by commit, with
// commitMu held, before the first commit after a failed one.
func (s *Store) restartCRDT() error {
	if s.bc != nil {
		pctx, cancel := context.WithTimeout(s.ctx, pauseTimeout)
		if err := s.bc.pause(pctx); err != nil {
			s.log.Warn("restart after a failed commit: go-ds-crdt still busy; closing it anyway", "err", err)
		}
		cancel()
		defer s.bc.resume()
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if err := s.dstore.Close(); err != nil {
		s.log.Warn("restart after a failed commit: closing go-ds-crdt", "err", err)
	}
	nd, err := crdt.New(s.backing, ds.NewKey(s.ns), s.dag, s.bcast(), s.copts)
	if err != nil {
		return fmt.Errorf("crdt: commit: reopening go-ds-crdt after a failed commit: %w; the write was not made, retry it", err)
	}
	s.dstore = nd
	s.log.Info("go-ds-crdt restarted after a failed commit: the failed writes are dropped")
	return nil
}

func (s *Store) writeDelta(ops []Op) error {
	// go-ds-crdt passes this context to the DAG service's Add and to
	// Broadcast: the broadcast carries the block the commit added without
	// decoding go-ds-crdt's heads message.
	ctx := withAddedBlocks(s.ctx)
	b, err := s.crdt().Batch(ctx)
	if err != nil {
		return fmt.Errorf("crdt: commit: %w", err)
	}
	for _, op := range ops {
		if op.Delete {
			err = b.Delete(ctx, op.Key)
		} else {
			err = b.Put(ctx, op.Key, op.Value)
		}
		if err != nil {
			return fmt.Errorf("crdt: commit %s: %w", op.Key, err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("crdt: commit: %w", err)
	}
	if err := s.backing.Sync(ctx, ds.NewKey("/")); err != nil {
		return fmt.Errorf("crdt: sync to disk: %w", err)
	}
	return nil
}
