package crdt

import (
	"fmt"

	ds "github.com/ipfs/go-datastore"

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
	}
	return err
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
