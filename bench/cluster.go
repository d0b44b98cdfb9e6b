package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// field names one field: field f of entity e. Starling writes it as
// field "f<f>" of entity "/e<e>"; raw go-ds-crdt as key /e<e>/f<f>.
type field struct{ ent, f int }

func (k field) key() string { return fmt.Sprintf("/e%d/f%d", k.ent, k.f) }

// parseKey is key's inverse.
func parseKey(s string) (field, bool) {
	s = strings.TrimPrefix(s, "/")
	e, f, ok := strings.Cut(s, "/")
	if !ok || len(e) < 2 || e[0] != 'e' || len(f) < 2 || f[0] != 'f' {
		return field{}, false
	}
	ei, err1 := strconv.Atoi(e[1:])
	fi, err2 := strconv.Atoi(f[1:])
	if err1 != nil || err2 != nil {
		return field{}, false
	}
	return field{ei, fi}, true
}

// write is one field write.
type write struct {
	f field
	v int64
}

// cluster is the replicas of one system, connected to each other. Its
// methods are safe for concurrent use unless noted.
type cluster interface {
	// Size is the number of nodes (Join adds one).
	Size() int
	// Prepare makes entities e0..e(ents-1) on node 0 (Starling needs an
	// entity before its fields are written) and waits until every node
	// has them and replication works end to end.
	Prepare(ctx context.Context, ents int) error
	// Write is one field write on node i, durable there on return.
	Write(ctx context.Context, i int, w write) error
	// WriteMany writes in batches, for setting up large stores.
	WriteMany(ctx context.Context, i int, ws []write) error
	// Watch follows the fields node i applies, local and remote writes
	// alike.
	Watch(i int) watcher
	// Count is how many fields of entity e node i holds.
	Count(ctx context.Context, i int, e int) (int, error)
	// Value reads a field on node i.
	Value(ctx context.Context, i int, f field) (int64, bool, error)
	// Partition cuts node i off from every other node; Heal undoes it.
	Partition(i int) error
	Heal() error
	// Join starts a fresh node (empty data directory) that joins the
	// cluster the system's way; Synced reports when it has caught up.
	Join(ctx context.Context) (int, error)
	Synced(ctx context.Context, i int) bool
	// SyncDone is how far node i's sync has come, 0..1: entries of the
	// state transfer (Starling) or DAG blocks processed (raw), against
	// node 0.
	SyncDone(ctx context.Context, i int) float64
	// Dir is node i's data directory ("" in memory).
	Dir(i int) string
	Close() error
}

// watcher delivers fields as a node applies them.
type watcher interface {
	C() <-chan field
	Close()
}

// streamWatcher is a watcher over a node's own change stream: a goroutine
// turns each change into a field (parse) and delivers it, dropping it
// when the reader has fallen behind (the reader waits with a deadline).
type streamWatcher struct {
	ch   chan field
	done chan struct{}
	stop func() // ends the stream, which closes its channel
}

func watchStream[T any](src <-chan T, stop func(), parse func(T) (field, bool)) *streamWatcher {
	w := &streamWatcher{ch: make(chan field, 1<<16), done: make(chan struct{}), stop: stop}
	go func() {
		defer close(w.done)
		defer close(w.ch)
		for c := range src {
			f, ok := parse(c)
			if !ok {
				continue
			}
			select {
			case w.ch <- f:
			default:
			}
		}
	}()
	return w
}

func (w *streamWatcher) C() <-chan field { return w.ch }

func (w *streamWatcher) Close() {
	w.stop()
	for range w.ch { // drain, so the goroutine ends
	}
	<-w.done
}

// system is one side of the table: how to start its clusters.
type system struct {
	name string // "starling" or "raw"
	// writers is how many goroutines make the writes a heal or disk run
	// starts from: 16 for Starling (its group commit gathers them); 1 for
	// raw go-ds-crdt, where concurrent Puts fall to tens per second (each
	// one adds a head the next ones link to) while one writer makes
	// hundreds to thousands.
	writers int
	// batchSetup makes the writes a heal starts from in batches
	// (WriteMany) instead of one by one: raw go-ds-crdt writes ~100-3,000
	// Puts/s here, so 100k single Puts would take minutes to set up.
	batchSetup bool
	// open starts n nodes with data under dir, on loopback.
	open func(ctx context.Context, dir string, n int) (cluster, error)
	// openSim starts a simulated cluster of n nodes in this process, on
	// Config.Net: on a libp2p mocknet, with data under dir (Starling) or
	// in memory (raw), or on loopback, with data under dir.
	openSim func(ctx context.Context, dir string, n int, seed int64) (cluster, error)
}

// waitVisible waits until w delivers f, skipping other fields.
func waitVisible(ctx context.Context, w watcher, f field) error {
	for {
		select {
		case got, ok := <-w.C():
			if !ok {
				return errors.New("watch ended")
			}
			if got == f {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// poll calls cond every interval until it returns true or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
