package crdt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-ds-crdt/pb"
	ipld "github.com/ipfs/go-ipld-format"
	"google.golang.org/protobuf/proto"
)

// The frontier height (see "Compaction" in doc.go): after a round has
// deleted processed markers, no block at or below the height of the
// highest block it reclaimed may be merged again, or go-ds-crdt would
// merge it a second time and bring back elements whose tombstones are
// gone. Members never send such a block (every block a member makes
// after its report is higher); a node that is not a member may. Two
// checks keep them out: the broadcaster drops heads whose branch reaches
// one (gateHeads, before go-ds-crdt sees them), and the DAG service
// go-ds-crdt reads through refuses to return one (guardGetter), whatever
// path asks.

// ErrBelowFrontier means a block at or below the compaction frontier that
// this node has not merged was offered to it: it comes from a node that
// is not a member (removed by the operator), and merging it could bring
// back deleted values. Test with errors.Is.
var ErrBelowFrontier = errors.New("crdt: block below the compaction frontier")

// frontierKeyName is the frontier record, under go-ds-crdt's namespace
// so that state transfer copies it with the markers it goes with.
const frontierKeyName = "/z/frontier"

// frontierRecord is what frontierKeyName holds.
type frontierRecord struct {
	Height uint64 `json:"height"`
}

// loadFrontier reads the frontier height of the live namespace.
func (s *Store) loadFrontier(ctx context.Context) error {
	s.dmu.RLock()
	k := ds.NewKey(s.ns + frontierKeyName)
	s.dmu.RUnlock()
	b, err := s.backing.Get(ctx, k)
	if errors.Is(err, ds.ErrNotFound) {
		s.frontier.Store(0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("crdt: read compaction frontier: %w", err)
	}
	var r frontierRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("crdt: read compaction frontier %s: %w", k, err)
	}
	s.frontier.Store(r.Height)
	return nil
}

// raiseFrontier makes h the frontier height if it is higher, durably,
// before any marker at or below it is deleted.
func (s *Store) raiseFrontier(ctx context.Context, ns string, h uint64) error {
	if h <= s.frontier.Load() {
		return nil
	}
	b, _ := json.Marshal(frontierRecord{Height: h})
	k := ds.NewKey(ns + frontierKeyName)
	if err := s.backing.Put(ctx, k, b); err != nil {
		return fmt.Errorf("crdt: write compaction frontier: %w", err)
	}
	if err := s.backing.Sync(ctx, k); err != nil {
		return fmt.Errorf("crdt: write compaction frontier: %w", err)
	}
	s.frontier.Store(h)
	return nil
}

// decodeDelta decodes a delta block: go-ds-crdt's delta (its height is
// the priority) and the block's links. Compaction's walk, its element
// reads and the frontier checks all read blocks through it.
func decodeDelta(raw []byte) (*pb.Delta, []cid.Cid, error) {
	nd, err := dag.DecodeProtobuf(raw)
	if err != nil {
		return nil, nil, err
	}
	var delta pb.Delta
	if err := proto.Unmarshal(nd.Data(), &delta); err != nil {
		return nil, nil, err
	}
	links := make([]cid.Cid, 0, len(nd.Links()))
	for _, l := range nd.Links() {
		links = append(links, l.Cid)
	}
	return &delta, links, nil
}

// belowFrontier reports whether a block is one that must never be
// merged: not merged here, at or below the frontier height.
func (s *Store) belowFrontier(c cid.Cid, raw []byte) bool {
	f := s.frontier.Load()
	if f == 0 || s.isProcessed(c) {
		return false
	}
	d, _, err := decodeDelta(raw)
	return err == nil && d.GetPriority() <= f
}

// gateWalkLimit bounds the blocks gateHeads looks at for one message.
const gateWalkLimit = 10_000

// gateHeads reports whether heads can be handed to go-ds-crdt: false if
// the branch below them, as far as it is stored here, reaches a block
// that must never be merged (belowFrontier), or links from a block at
// height h to a block not stored here and not merged while h-1 is at or
// below the frontier (that block would be below it too).
func (s *Store) gateHeads(ctx context.Context, heads []cid.Cid) error {
	if s.frontier.Load() == 0 {
		return nil
	}
	return s.walkGate(ctx, heads, false)
}

// gateOwn reports whether this node's own heads from before an install
// can merge on the installed state as a DAG: as gateHeads, and every
// block below them not merged in that state must still be stored here,
// within gateWalkLimit. This node stores every block it merged, so a
// missing one was deleted by its own compaction, and no peer may have it
// either (two sides that evicted each other). ErrBelowFrontier
// otherwise: then its live values are written again.
func (s *Store) gateOwn(ctx context.Context, heads []cid.Cid) error {
	return s.walkGate(ctx, heads, true)
}

func (s *Store) walkGate(ctx context.Context, heads []cid.Cid, own bool) error {
	f := s.frontier.Load()
	if s.opts.LocalBlocks == nil {
		return nil
	}
	seen := make(map[cid.Cid]bool)
	stack := append([]cid.Cid(nil), heads...)
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[c] || s.isProcessed(c) {
			continue
		}
		if len(seen) >= gateWalkLimit {
			if own {
				return fmt.Errorf("%w: more than %d blocks of this node's own history are not merged in the installed state", ErrBelowFrontier, gateWalkLimit)
			}
			break
		}
		seen[c] = true
		blk, err := s.opts.LocalBlocks.Get(ctx, c)
		if err != nil {
			if own {
				return fmt.Errorf("%w: %s, below this node's own heads, is neither stored here nor merged in the installed state", ErrBelowFrontier, c)
			}
			continue // not here yet: go-ds-crdt fetches it, guardGetter checks it
		}
		d, links, err := decodeDelta(blk.RawData())
		if err != nil {
			continue // go-ds-crdt reports a bad block itself
		}
		h := d.GetPriority()
		if f > 0 && h <= f {
			return fmt.Errorf("%w: %s at height %d, frontier %d", ErrBelowFrontier, c, h, f)
		}
		for _, l := range links {
			if f > 0 && h-1 <= f && !s.isProcessed(l) {
				if ok, _ := s.opts.LocalBlocks.Has(ctx, l); !ok {
					return fmt.Errorf("%w: %s links to %s, not merged, at height %d or below, frontier %d", ErrBelowFrontier, c, l, h-1, f)
				}
			}
			stack = append(stack, l)
		}
	}
	return nil
}

// guardGetter is the DAG service's reading side as go-ds-crdt sees it:
// it refuses a block that must never be merged (belowFrontier).
type guardGetter struct {
	ipld.NodeGetter
	s *Store
}

func (g guardGetter) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	nd, err := g.NodeGetter.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	if g.s.belowFrontier(c, nd.RawData()) {
		g.s.refusedBelow.Add(1)
		return nil, fmt.Errorf("%w: %s", ErrBelowFrontier, c)
	}
	return nd, nil
}

func (g guardGetter) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	in := g.NodeGetter.GetMany(ctx, cs)
	out := make(chan *ipld.NodeOption, len(cs))
	go func() {
		defer close(out)
		for o := range in {
			if o.Err == nil && g.s.belowFrontier(o.Node.Cid(), o.Node.RawData()) {
				g.s.refusedBelow.Add(1)
				o = &ipld.NodeOption{Err: fmt.Errorf("%w: %s", ErrBelowFrontier, o.Node.Cid())}
			}
			select {
			case out <- o:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
