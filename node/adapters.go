package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/httpapi"
	"github.com/starling-sync/starling/nodestate/monitor"
	"github.com/starling-sync/starling/p2p"
)

// The adapters from the node's parts to the interfaces httpapi declares.
var (
	_ httpapi.KV            = storeKV{}
	_ httpapi.PeerSet       = p2pPeers{}
	_ httpapi.PeerSet       = monitoredPeers{}
	_ httpapi.PeerSaver     = monitoredPeers{}
	_ httpapi.StatusSource  = (*Node)(nil)
	_ httpapi.SyncControl   = (*Node)(nil)
	_ httpapi.ClusterSource = (*monitor.Monitor)(nil)
)

// monitoredPeers tells the monitor about peers the operator adds and
// removes, so that a removed node leaves the cluster table for good.
type monitoredPeers struct {
	httpapi.PeerSet
	m   *monitor.Monitor
	dir string // the data dir, whose config.json SavePeer changes
}

// SavePeer keeps addr in config.json's peers (`cluster add --save`).
func (p monitoredPeers) SavePeer(addr string) error { return SavePeer(p.dir, addr) }

func (p monitoredPeers) AddPeer(ctx context.Context, ai peer.AddrInfo) error {
	p.m.Remember(ai.ID)
	return p.PeerSet.AddPeer(ctx, ai)
}

func (p monitoredPeers) RemovePeer(ctx context.Context, id peer.ID) error {
	if err := p.PeerSet.RemovePeer(ctx, id); err != nil {
		return err
	}
	p.m.Forget(id)
	if p.dir == "" {
		return nil
	}
	// Forgotten for good: a peer saved by `cluster add --save` must not
	// be dialled again at the next start.
	return ForgetPeer(p.dir, id)
}

// KVNamespace is where the raw key-value API keeps its keys in the
// replicated store, apart from the entity tree's /e and /s.
const KVNamespace = "/kv"

// storeKV adapts the replicated store to the API's KV, under KVNamespace.
type storeKV struct{ s *crdt.Store }

func (k storeKV) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := k.s.Get(ctx, ds.NewKey(KVNamespace+"/"+key))
	if errors.Is(err, crdt.ErrNotFound) {
		return nil, fmt.Errorf("key %q: %w", key, api.ErrNotFound)
	}
	return v, err
}

func (k storeKV) List(ctx context.Context, prefix string) ([]api.Entry, error) {
	res, err := k.s.Query(ctx, query.Query{Prefix: KVNamespace + "/" + prefix})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var out []api.Entry
	for {
		r, ok := res.NextSync()
		if !ok {
			break
		}
		if r.Error != nil {
			return nil, r.Error
		}
		out = append(out, api.Entry{Key: strings.TrimPrefix(r.Key, KVNamespace+"/"), Value: r.Value})
	}
	slices.SortFunc(out, func(a, b api.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (k storeKV) Put(ctx context.Context, key string, value []byte) error {
	return k.s.Put(ctx, ds.NewKey(KVNamespace+"/"+key), value)
}

func (k storeKV) Delete(ctx context.Context, key string) error {
	return k.s.Delete(ctx, ds.NewKey(KVNamespace+"/"+key))
}

// p2pPeers adapts the libp2p node to the API's PeerSet.
type p2pPeers struct{ n *p2p.Node }

func (p p2pPeers) Peers(context.Context) ([]api.PeerStatus, error) {
	infos := p.n.Peers()
	out := make([]api.PeerStatus, 0, len(infos))
	for _, pi := range infos {
		ps := api.PeerStatus{
			ID:        pi.ID.String(),
			Addrs:     make([]string, 0, len(pi.Addrs)),
			Connected: pi.Connected,
			Static:    pi.Static,
			Blocked:   pi.Blocked,
			Failures:  pi.Failures,
			Conn:      string(pi.Conn),
			Problem:   string(pi.Problem),
			DialError: pi.DialError,
		}
		for _, a := range pi.Addrs {
			ps.Addrs = append(ps.Addrs, a.String())
		}
		if !pi.LastSeen.IsZero() {
			t := pi.LastSeen
			ps.LastSeen = &t
		}
		if !pi.NextDial.IsZero() {
			t := pi.NextDial
			ps.NextDial = &t
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b api.PeerStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (p p2pPeers) AddPeer(ctx context.Context, ai peer.AddrInfo) error {
	return p.n.AddPeer(ctx, ai)
}

func (p p2pPeers) RemovePeer(_ context.Context, id peer.ID) error {
	err := p.n.RemovePeer(id)
	if errors.Is(err, p2p.ErrUnknownPeer) {
		return fmt.Errorf("peer %s: %w", id, api.ErrNotFound)
	}
	return err
}

// storeCompactor adapts the store's compaction to the API's Compactor.
type storeCompactor struct{ s *crdt.Store }

var _ httpapi.Compactor = storeCompactor{}

func (c storeCompactor) Compact(ctx context.Context) (api.CompactResult, error) {
	st, err := c.s.Compact(ctx, nil)
	if errors.Is(err, crdt.ErrCompactBusy) {
		return api.CompactResult{}, fmt.Errorf("%w (%w)", api.ErrCompactBusy, err)
	}
	if err != nil {
		return api.CompactResult{}, fmt.Errorf("compact: %w", err)
	}
	return api.CompactResult(st), nil
}

// storeMetrics serves the monitor's metrics and the datastore's health
// after them (the monitor knows the store's sync state, not whether its
// disk takes writes).
type storeMetrics struct {
	next http.Handler
	ldb  *crdt.LevelDB
}

func (m storeMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Plain text exposition, uncompressed, so lines can follow it.
	r = r.Clone(r.Context())
	r.Header.Del("Accept")
	r.Header.Del("Accept-Encoding")
	rec := &bufferedResponse{header: make(http.Header), code: http.StatusOK}
	m.next.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.code)
	_, _ = w.Write(rec.body.Bytes())
	if rec.code != http.StatusOK {
		return
	}
	h := m.ldb.Health()
	writable, since := 1, 0.0
	if !h.Writable {
		writable, since = 0, float64(h.Since.UnixNano())/1e9
	}
	fmt.Fprintf(w, "# HELP starling_store_writable 1 when the datastore accepts writes; 0 while they fail (a full disk, an I/O error: see write_error in the status).\n"+
		"# TYPE starling_store_writable gauge\nstarling_store_writable %d\n"+
		"# HELP starling_store_not_writable_since_timestamp_seconds When writes began to fail (0 while they work).\n"+
		"# TYPE starling_store_not_writable_since_timestamp_seconds gauge\nstarling_store_not_writable_since_timestamp_seconds %g\n", writable, since)
}

// bufferedResponse holds a response so that more can be written after it.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
