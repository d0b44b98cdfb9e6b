// Package adversary is the hostile peer of the partition suite's
// "adversary" nemesis (issue #14: a faulty or hostile peer cannot stall,
// fill, freeze or poison a node). It is a libp2p peer inside the
// environment's private network, as a compromised machine would be: it
// holds the network key, dials the nodes, joins the replication and
// node-state topics, and until its context ends it
//
//   - floods heads: replication messages naming maxHeads random head CIDs
//     nobody has (and now and then more than a node accepts), by gossip
//     and on the direct stream to every node;
//   - forges deltas: a well-formed go-ds-crdt delta block, its CID
//     correct, carried in the message that names it as a head, whose
//     child nobody has; the delta puts an entity record, so a node that
//     merged it would show a phantom;
//   - sends unreferenced blocks: valid blocks of random bytes that no
//     head names;
//   - sends junk: messages that are not replication messages at all;
//   - requests snapshots in a loop: state-transfer streams to every node,
//     read to the end (or refused), one after the other;
//   - reports a far-future clock: node-state reports whose clock is
//     ClockAhead ahead.
//
// It writes the replication wire format itself (crdt/envelope.go
// documents it), as an outsider would. Stats counts what it sent.
package adversary

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	pb "github.com/ipfs/go-ds-crdt/pb"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// Wire facts of the nodes it attacks (crdt/broadcast.go, crdt/envelope.go,
// statesync, nodestate/monitor). Copied, not imported: the adversary
// speaks the protocol from outside.
const (
	maxHeads      = 1024 // heads a node accepts in one broadcast
	stateProtocol = "state/1.0.0"
	stateRequest  = "STREQ1\n"
	nodeStateName = "nodestate"
)

// Config configures Run. Rates are messages per second of each kind,
// sent to every node (by gossip and on the direct stream); 0 turns a kind
// off. DefaultConfig has the rates of the chaos scenario.
type Config struct {
	// Env is the environment name of the nodes. Required.
	Env string
	// PSK is the environment's private network key. Required: without
	// it the nodes refuse the connection and the attack proves nothing.
	PSK []byte
	// Listen is the adversary's libp2p listen address. Required.
	Listen multiaddr.Multiaddr
	// Peers are the nodes to attack (with /p2p/<id>). Required.
	Peers []peer.AddrInfo
	// HeadsRate: heads floods per second (maxHeads random heads each;
	// every tenth has maxHeads+1, which a node must refuse whole).
	HeadsRate float64
	// ForgedRate: forged deltas per second.
	ForgedRate float64
	// BlocksRate: messages of BlocksPerMessage unreferenced blocks of
	// BlockSize bytes per second.
	BlocksRate       float64
	BlocksPerMessage int
	BlockSize        int
	// JunkRate: malformed messages per second.
	JunkRate float64
	// SnapshotWorkers: concurrent state-transfer request loops, each
	// going round the nodes.
	SnapshotWorkers int
	// ClockAhead: how far ahead of the real clock its node-state reports
	// are, sent every ReportInterval; 0 sends none.
	ClockAhead     time.Duration
	ReportInterval time.Duration
	// Seed drives its random choices (not the random CIDs: those come
	// from crypto/rand so that no run repeats one).
	Seed uint64
	// Logger receives its progress. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the rates of the chaos scenario. They are upper
// bounds: each message goes to every node (gossip and direct stream) and
// the next waits until every node has queued it, so the rates reached
// depend on how fast the nodes take messages (Stats says what was sent).
// A heads flood is about 40 KB (1,024 CIDs); at the full rate a node
// receives about 1.6 MB/s of them by the two ways, which would fill its
// park (16 MiB, 10 s TTL) if nothing bounded it.
func DefaultConfig() Config {
	return Config{
		HeadsRate:        20,
		ForgedRate:       20,
		BlocksRate:       10,
		BlocksPerMessage: 16,
		BlockSize:        4 << 10,
		JunkRate:         10,
		SnapshotWorkers:  2,
		ClockAhead:       10 * 365 * 24 * time.Hour,
		ReportInterval:   time.Second,
	}
}

// Stats counts what the adversary sent. Its JSON is what `starling chaos
// adversary` prints at the end.
type Stats struct {
	Connected      int    `json:"connected"`       // nodes connected at the end
	ConnectedMax   int    `json:"connected_max"`   // most nodes connected at once (sampled)
	HeadsFloods    uint64 `json:"heads_floods"`    // messages of random heads
	HeadsSent      uint64 `json:"heads_sent"`      // random heads in them
	ForgedDeltas   uint64 `json:"forged_deltas"`   // forged delta messages
	UnrefBlocks    uint64 `json:"unref_blocks"`    // unreferenced blocks sent
	Junk           uint64 `json:"junk"`            // malformed messages
	SnapshotsAsked uint64 `json:"snapshots_asked"` // state-transfer streams opened
	SnapshotBytes  uint64 `json:"snapshot_bytes"`  // bytes read from them
	SnapshotFailed uint64 `json:"snapshot_failed"` // streams that failed to open or broke
	ClockReports   uint64 `json:"clock_reports"`   // far-future node-state reports
	SendErrors     uint64 `json:"send_errors"`     // direct sends that failed
}

type counters struct {
	headsFloods, headsSent, forged, unref, junk       atomic.Uint64
	snapAsked, snapBytes, snapFailed, clock, sendErrs atomic.Uint64
	connMax                                           atomic.Int64
}

// connectedNow counts the nodes connected now and keeps the most seen.
func (a *attack) connectedNow() int {
	n := 0
	for _, p := range a.n.Peers() {
		if p.Connected {
			n++
		}
	}
	for {
		m := a.c.connMax.Load()
		if int64(n) <= m || a.c.connMax.CompareAndSwap(m, int64(n)) {
			return n
		}
	}
}

// Run attacks until ctx ends, then returns what it sent. An error means
// it could not start (bad config, no listen address).
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if cfg.Env == "" || len(cfg.PSK) == 0 || cfg.Listen == nil || len(cfg.Peers) == 0 {
		return Stats{}, errors.New("adversary: Env, PSK, Listen and Peers are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return Stats{}, err
	}
	pc := p2p.DefaultConfig(cfg.Env)
	pc.Identity, pc.PSK = key, cfg.PSK
	pc.ListenAddrs = []multiaddr.Multiaddr{cfg.Listen}
	pc.Peers = cfg.Peers
	pc.MDNS, pc.DHT = false, false
	pc.Blockstore = dssync.MutexWrap(ds.NewMapDatastore())
	pc.Logger = log // p2p adds its component
	n, err := p2p.New(ctx, pc)
	if err != nil {
		return Stats{}, fmt.Errorf("adversary: start the libp2p peer: %w", err)
	}
	defer n.Close()
	topic, err := n.JoinTopic(nodeStateName)
	if err != nil {
		return Stats{}, fmt.Errorf("adversary: join the node-state topic: %w", err)
	}
	defer topic.Close()
	// Drain what the nodes send on the replication topic, so that its
	// buffers do not fill and the peer stays a normal-looking member.
	a := &attack{cfg: cfg, n: n, topic: topic, log: log}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if _, _, err := n.Replication().Receive(ctx); err != nil {
				return
			}
		}
	})
	rng := mrand.New(mrand.NewPCG(cfg.Seed, 0xad))
	every := func(rate float64, fn func(ctx context.Context)) {
		if rate <= 0 {
			return
		}
		wg.Go(func() {
			t := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				fn(ctx)
			}
		})
	}
	var k atomic.Uint64
	every(cfg.HeadsRate, func(ctx context.Context) {
		count := maxHeads
		if k.Add(1)%10 == 0 {
			count = maxHeads + 1
		}
		a.headsFlood(ctx, count)
	})
	every(5, func(context.Context) { a.connectedNow() }) // nodes may disconnect it
	every(cfg.ForgedRate, a.forgedDelta)
	every(cfg.BlocksRate, a.unrefBlocks)
	every(cfg.JunkRate, a.junkMessage)
	if cfg.ClockAhead != 0 && cfg.ReportInterval > 0 {
		every(1/cfg.ReportInterval.Seconds(), a.clockReport)
	}
	for w := range cfg.SnapshotWorkers {
		start := rng.IntN(len(cfg.Peers))
		wg.Go(func() { a.snapshotLoop(ctx, start+w) })
	}
	<-ctx.Done()
	wg.Wait()
	return a.stats(), nil
}

type attack struct {
	cfg   Config
	n     *p2p.Node
	topic *p2p.Topic
	log   *slog.Logger
	c     counters
	seq   atomic.Uint64
}

func (a *attack) stats() Stats {
	connected := a.connectedNow()
	return Stats{
		Connected: connected, ConnectedMax: int(a.c.connMax.Load()),
		HeadsFloods: a.c.headsFloods.Load(), HeadsSent: a.c.headsSent.Load(),
		ForgedDeltas: a.c.forged.Load(), UnrefBlocks: a.c.unref.Load(), Junk: a.c.junk.Load(),
		SnapshotsAsked: a.c.snapAsked.Load(), SnapshotBytes: a.c.snapBytes.Load(),
		SnapshotFailed: a.c.snapFailed.Load(), ClockReports: a.c.clock.Load(), SendErrors: a.c.sendErrs.Load(),
	}
}

// send publishes data on the replication topic and sends it on the
// direct stream to every node at once: gossip alone would reach each node
// once per message, the direct stream is the peer's other way in. A
// direct send returns once the node has queued the message, so a node
// that stops taking messages slows the adversary down (backpressure is
// one of the defences); the next message waits for the slowest node.
func (a *attack) send(ctx context.Context, data []byte) {
	if err := a.n.Replication().Publish(ctx, data); err != nil && ctx.Err() == nil {
		a.c.sendErrs.Add(1)
	}
	var wg sync.WaitGroup
	for _, p := range a.cfg.Peers {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if err := a.n.Replication().SendTo(sctx, p.ID.String(), data); err != nil && ctx.Err() == nil {
				a.c.sendErrs.Add(1)
			}
		})
	}
	wg.Wait()
}

func (a *attack) headsFlood(ctx context.Context, count int) {
	heads := make([]cid.Cid, count)
	for i := range heads {
		heads[i] = randomCID()
	}
	a.send(ctx, Envelope(HeadsPayload(heads), nil))
	a.c.headsFloods.Add(1)
	a.c.headsSent.Add(uint64(count))
}

func (a *attack) forgedDelta(ctx context.Context) {
	blk, c, err := ForgedDelta(fmt.Sprintf("/r/adversary-%d", a.seq.Add(1)), randomCID())
	if err != nil {
		a.log.Warn("forge a delta", "err", err)
		return
	}
	a.send(ctx, Envelope(HeadsPayload([]cid.Cid{c}), []Block{{CID: c, Data: blk}}))
	a.c.forged.Add(1)
}

func (a *attack) unrefBlocks(ctx context.Context) {
	bs := make([]Block, a.cfg.BlocksPerMessage)
	for i := range bs {
		data := make([]byte, a.cfg.BlockSize)
		_, _ = rand.Read(data)
		nd := dag.NodeWithData(data)
		_ = nd.SetCidBuilder(cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256})
		bs[i] = Block{CID: nd.Cid(), Data: nd.RawData()}
	}
	a.send(ctx, Envelope(nil, bs))
	a.c.unref.Add(uint64(len(bs)))
}

func (a *attack) junkMessage(ctx context.Context) {
	junk := make([]byte, 64+a.seq.Add(1)%512)
	_, _ = rand.Read(junk)
	junk[0] = 'S' // the magic: make the decoder work a little
	a.send(ctx, junk)
	a.c.junk.Add(1)
}

func (a *attack) clockReport(ctx context.Context) {
	r := nodestate.NodeReport{
		V: 1, Node: "adversary", Incarnation: 1, Seq: a.seq.Add(1),
		Sync:  nodestate.SyncProgress{Phase: nodestate.PhaseActive},
		Clock: time.Now().Add(a.cfg.ClockAhead).UnixNano(),
	}
	if err := a.topic.Publish(ctx, r.Encode()); err == nil {
		a.c.clock.Add(1)
	}
}

// snapshotLoop asks node after node (from the k-th) for its state and
// reads the answer to the end, until ctx ends.
func (a *attack) snapshotLoop(ctx context.Context, k int) {
	for ; ctx.Err() == nil; k++ {
		p := a.cfg.Peers[k%len(a.cfg.Peers)]
		a.c.snapAsked.Add(1)
		n, err := a.snapshot(ctx, p.ID)
		a.c.snapBytes.Add(uint64(n))
		if err != nil && ctx.Err() == nil {
			a.c.snapFailed.Add(1)
			// A node not reachable yet: do not spin.
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

func (a *attack) snapshot(ctx context.Context, to peer.ID) (int64, error) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := a.n.OpenStream(sctx, to, stateProtocol)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	stop := context.AfterFunc(sctx, func() { _ = s.Reset() })
	defer stop()
	if _, err := io.WriteString(s, stateRequest); err != nil {
		return 0, err
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, s)
}

// Block is a block carried in a replication message.
type Block struct {
	CID  cid.Cid
	Data []byte
}

// Envelope encodes a replication message (crdt/envelope.go, version 1):
// magic, version, the go-ds-crdt payload, the carried blocks, no wants.
func Envelope(payload []byte, blocks []Block) []byte {
	buf := []byte{'S', 1}
	buf = binary.AppendUvarint(buf, uint64(len(payload)))
	buf = append(buf, payload...)
	buf = binary.AppendUvarint(buf, uint64(len(blocks)))
	for _, b := range blocks {
		cb := b.CID.Bytes()
		buf = binary.AppendUvarint(buf, uint64(len(cb)))
		buf = append(buf, cb...)
		buf = binary.AppendUvarint(buf, uint64(len(b.Data)))
		buf = append(buf, b.Data...)
	}
	return binary.AppendUvarint(buf, 0)
}

// HeadsPayload encodes heads as go-ds-crdt's broadcast does.
func HeadsPayload(heads []cid.Cid) []byte {
	var bc pb.CRDTBroadcast
	for _, h := range heads {
		bc.Heads = append(bc.Heads, &pb.Head{Cid: h.Bytes()})
	}
	b, _ := proto.Marshal(&bc)
	return b
}

// ForgedDelta returns a go-ds-crdt delta block that puts key and links
// to child, and its CID. The CID is right; the child is whatever the
// caller names (one nobody has, for the attack).
func ForgedDelta(key string, child cid.Cid) ([]byte, cid.Cid, error) {
	d := &pb.Delta{
		Elements: []*pb.Element{{Key: key, Id: "adversary", Value: []byte("forged")}},
		Priority: 1 << 20,
	}
	data, err := proto.Marshal(d)
	if err != nil {
		return nil, cid.Undef, err
	}
	nd := dag.NodeWithData(data)
	if err := nd.SetCidBuilder(cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256}); err != nil {
		return nil, cid.Undef, err
	}
	if err := nd.AddRawLink("", &ipld.Link{Cid: child}); err != nil {
		return nil, cid.Undef, err
	}
	raw, err := nd.EncodeProtobuf(false)
	if err != nil {
		return nil, cid.Undef, err
	}
	return raw, nd.Cid(), nil
}

// randomCID is the CID of 32 random bytes: a dag-pb block nobody has.
func randomCID() cid.Cid {
	var b [32]byte
	_, _ = rand.Read(b[:])
	sum := sha256.Sum256(b[:])
	m, _ := mh.Encode(sum[:], mh.SHA2_256)
	return cid.NewCidV1(cid.DagProtobuf, m)
}

// MarshalStats is the JSON the command prints.
func MarshalStats(s Stats) []byte {
	b, _ := json.Marshal(s)
	return b
}
