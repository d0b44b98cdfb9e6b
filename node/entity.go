package node

import (
	"context"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/entity"
)

// crdtBackend adapts the replicated store to the entity tree's Backend.
type crdtBackend struct{ s *crdt.Store }

var _ entity.Backend = crdtBackend{}

func (b crdtBackend) Apply(ctx context.Context, ops []entity.Op) error {
	cops := make([]crdt.Op, len(ops))
	for i, op := range ops {
		cops[i] = crdt.Op{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return b.s.Apply(ctx, cops)
}

func (b crdtBackend) Query(ctx context.Context, q query.Query) (query.Results, error) {
	return b.s.Query(ctx, q)
}

func (b crdtBackend) Has(ctx context.Context, k ds.Key) (bool, error) { return b.s.Has(ctx, k) }

func (b crdtBackend) Subscribe(prefix ds.Key, buf int) entity.Feed {
	sub := b.s.Subscribe(prefix, buf)
	f := &crdtFeed{sub: sub, ch: make(chan entity.Change, 64), done: make(chan struct{})}
	go f.pump()
	return f
}

// crdtFeed converts the store's changes to the entity tree's. Its pump
// goroutine ends when the subscription's channel closes (Close, or the
// store closing).
type crdtFeed struct {
	sub  *crdt.Subscription
	ch   chan entity.Change
	done chan struct{}
}

func (f *crdtFeed) pump() {
	defer close(f.ch)
	for c := range f.sub.C() {
		select {
		case f.ch <- entity.Change{Key: c.Key, Value: c.Value, Deleted: c.Deleted, Local: c.Local}:
		case <-f.done:
			return
		}
	}
}

func (f *crdtFeed) C() <-chan entity.Change { return f.ch }
func (f *crdtFeed) Overflowed() bool        { return f.sub.Overflowed() }
func (f *crdtFeed) Close() {
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	f.sub.Close()
}
