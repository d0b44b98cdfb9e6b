package crdt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	crdt "github.com/ipfs/go-ds-crdt"
	pb "github.com/ipfs/go-ds-crdt/pb"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/starling-sync/starling/internal/peerlog"
	"google.golang.org/protobuf/proto"
)

// maxCarriedTotal bounds the bytes of blocks carried in one message, so a
// message stays under gossipsub's and the direct stream's size limits.
const maxCarriedTotal = 3 << 20

// broadcaster is the go-ds-crdt Broadcaster. Outgoing, it puts the head
// list in an envelope with the new blocks; incoming, it verifies and stores
// carried blocks and only then hands the heads to go-ds-crdt, through a
// queue bounded by bytes (go-ds-crdt's own pubsub broadcaster drops heads
// under bursts with its 32-message buffer).
type broadcaster struct {
	tr     Transport
	dag    ipld.DAGService // the inner DAG service (not recording)
	local  LocalBlocks     // nil: no branch requests
	recent *recentBlocks
	opts   Options
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	queue    [][]byte
	queued   int    // bytes in queue
	pauses   int    // > 0: Next hands nothing out (pause)
	waiting  bool   // go-ds-crdt is waiting in Next: it is between broadcasts
	passOne  bool   // hand out the front message even while paused (runFirst)
	handed   uint64 // messages handed to go-ds-crdt
	notify   chan struct{}
	received atomic.Uint64
	dropped  atomic.Uint64
	rejected atomic.Uint64
	// unreferenced counts carried blocks not stored (referenced).
	unreferenced atomic.Uint64
	sent         atomic.Uint64

	// processed reports whether go-ds-crdt has processed a block (its
	// marker is in the store): such a head needs no block.
	processed func(cid.Cid) bool
	// gate, if set, refuses heads whose branch reaches below the
	// compaction frontier (Store.gateHeads); such heads are dropped.
	gate func(context.Context, []cid.Cid) error
	// gated counts heads messages the gate dropped.
	gated atomic.Uint64

	parkMu     sync.Mutex
	parked     []parkedHeads   // heads whose blocks are not here yet
	parkedSize int             // bytes held by parked (size)
	parkLog    peerlog.Limiter // 'dropped heads' lines, per peer (parkMu)

	// sent remembers, per peer, blocks sent in branch replies, so that
	// the next reply to the same peer does not carry them (or the history
	// below them) again.
	sentMu sync.Mutex
	sentTo map[string]*cidRing
	// headsDropped counts parked broadcasts whose blocks never came.
	headsDropped atomic.Uint64

	outMu      sync.Mutex
	out        map[string]chan []byte // per peer, sent by its sendLoop (sendTo)
	pub        chan []byte            // to every peer, published by publishLoop
	inflightMu sync.Mutex             // inflight: the receive loop, unpark's callers
	inflight   map[cid.Cid]time.Time
	fetching   chan struct{}   // a token per background fetch (fetchMissing)
	dropLog    peerlog.Limiter // warnings for dropped messages, per peer (the receive loop)
	staleLog   peerlog.Limiter // warnings for queued heads dropped (stale; go-ds-crdt's goroutine)
	requested  atomic.Uint64   // blocks asked for in branch requests
	served     atomic.Uint64   // blocks sent in branch replies
}

// wantTTL is how long a block asked for is not asked for again.
const wantTTL = 2 * time.Second

// parkedHeads is a received broadcast held back until its head blocks
// are stored here (see accept). waitFor is the block of its branch that
// was missing when it was last walked: unpark walks the branch again
// only once that block is here.
type parkedHeads struct {
	payload []byte
	heads   []cid.Cid
	from    string
	until   time.Time
	waitFor cid.Cid
}

// size is about what a parked broadcast holds in memory.
func (p parkedHeads) size() int {
	n := len(p.payload) + len(p.from)
	for _, h := range p.heads {
		n += h.ByteLen() + 16
	}
	return n
}

// Parking limits: how long heads wait for their blocks, and how many
// broadcasts, and bytes of them, wait at most (the oldest go first). A
// count alone let 150 forged messages of 4 MiB of heads each take 2.4
// GB.
const (
	parkTTL      = 10 * time.Second
	maxPark      = 1024
	maxParkBytes = 16 << 20
)

// maxHeads bounds the heads of one broadcast. go-ds-crdt's heads are the
// tips of concurrent branches: about one per node writing at the same
// moment, so even a cluster of hundreds stays far below it.
const maxHeads = 1024

var _ crdt.Broadcaster = (*broadcaster)(nil)

func newBroadcaster(tr Transport, inner ipld.DAGService, recent *recentBlocks, opts Options) *broadcaster {
	ctx, cancel := context.WithCancel(context.Background())
	b := &broadcaster{
		tr: tr, dag: inner, local: opts.LocalBlocks, recent: recent, opts: opts,
		log:      opts.Logger.With("component", "broadcaster"),
		ctx:      ctx,
		cancel:   cancel,
		notify:   make(chan struct{}, 1),
		out:      make(map[string]chan []byte),
		pub:      make(chan []byte, publishQueue),
		inflight: make(map[cid.Cid]time.Time),
		fetching: make(chan struct{}, fetchers),
		sentTo:   make(map[string]*cidRing),
	}
	b.wg.Add(3)
	go func() {
		defer b.wg.Done()
		b.receiveLoop()
	}()
	go func() {
		defer b.wg.Done()
		b.publishLoop()
	}()
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-t.C:
				b.unpark()
			}
		}
	}()
	return b
}

// Messages to one peer (branch requests and replies) queue per peer,
// each peer's sent in order by a goroutine of its own, which ends once
// the queue stayed empty for sendIdle. With one queue for all peers, a
// peer that did not answer held up every other: a send to a site behind
// NAT, through a relay whose connection had just closed, waited 5 s for
// the transport's timeout, and meanwhile this node's branch requests to
// the hub, the peer that had the blocks, filled the queue and were
// dropped (the chaos suite's nat-symmetric scenario: a write shown at
// the other sites after 4.6 s, bound 2 s, when it showed right after the
// stuck send gave up).
const (
	// sendQueue is how many messages wait per peer; beyond it they are
	// dropped (the asker asks again after wantTTL).
	sendQueue = 64
	// sendIdle is how long a peer's sender waits for its next message
	// before it ends.
	sendIdle = 30 * time.Second
)

// sendTo queues a message for one peer; it never blocks the receive
// loop, and drops the message when the peer's queue is full.
func (b *broadcaster) sendTo(to string, data []byte) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	q := b.out[to]
	if q == nil {
		if b.ctx.Err() != nil {
			return
		}
		q = make(chan []byte, sendQueue)
		b.out[to] = q
		// The callers are goroutines of b.wg, so its count is not zero.
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.sendLoop(to, q)
		}()
	}
	select {
	case q <- data:
	default:
		b.log.Debug("send queue full; message dropped", "peer", to)
	}
}

// sendLoop sends q's messages to one peer until b closes, or until q
// stayed empty for sendIdle: then it removes q (under outMu, so that no
// message is queued on it after) and ends.
func (b *broadcaster) sendLoop(to string, q chan []byte) {
	idle := time.NewTimer(sendIdle)
	defer idle.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case data := <-q:
			ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
			if err := b.tr.SendTo(ctx, to, data); err != nil && b.ctx.Err() == nil {
				b.log.Debug("send failed", "peer", to, "err", err)
			}
			cancel()
			idle.Reset(sendIdle)
		case <-idle.C:
			b.outMu.Lock()
			if len(q) == 0 {
				delete(b.out, to)
				b.outMu.Unlock()
				return
			}
			b.outMu.Unlock()
			idle.Reset(sendIdle)
		}
	}
}

// close stops the receive loop and makes Next return
// crdt.ErrNoMoreBroadcast. It must run before go-ds-crdt's Close.
func (b *broadcaster) close() {
	b.cancel()
	b.wg.Wait()
}

// publishQueue is how many broadcasts may wait for publishLoop before
// Broadcast blocks (and with it the commit that made them).
const publishQueue = 256

// Broadcast implements crdt.Broadcaster. It queues the message for
// publishLoop and returns: go-ds-crdt calls it inside a commit, and
// signing the message and pubsub's own check of that signature cost more
// than the rest of the commit, so publishing on the commit's path would
// slow every acknowledged write down. Messages go out in order.
//
// A commit's broadcast carries the blocks the commit added, collected
// from ctx (see addedBlocks): go-ds-crdt announces just the block it
// added, so its heads message need not be decoded here. Only the
// backstop rebroadcast (other contexts, at most every
// RebroadcastInterval) is decoded to find the blocks of its heads.
func (b *broadcaster) Broadcast(ctx context.Context, data []byte) error {
	env := envelope{payload: data}
	if added, ok := addedIn(ctx).get(); ok {
		b.carryAdded(&env, added)
	} else {
		heads, err := decodeHeads(data)
		if err != nil {
			return fmt.Errorf("crdt: decode own broadcast: %w", err)
		}
		b.carryHeads(&env, heads)
	}
	msg := env.encode()
	select {
	case b.pub <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

// publishLoop publishes queued broadcasts. A failure is logged, not
// returned: the write a broadcast announces is already durable, and its
// heads reach peers again by head exchange and rebroadcast. Broadcasts
// still queued at close are dropped for the same reason.
func (b *broadcaster) publishLoop() {
	for {
		select {
		case <-b.ctx.Done():
			return
		case msg := <-b.pub:
			if err := b.tr.Publish(b.ctx, msg); err != nil {
				if b.ctx.Err() == nil {
					b.log.Warn("publish failed; heads will be sent again", "err", err)
				}
				continue
			}
			b.sent.Add(1)
		}
	}
}

// carryAdded adds the blocks a commit added to env, within the size caps.
func (b *broadcaster) carryAdded(env *envelope, added []carriedBlock) {
	total := 0
	for _, blk := range added {
		if len(blk.data) > b.opts.CarryMaxBytes || total+len(blk.data) > maxCarriedTotal {
			continue
		}
		total += len(blk.data)
		env.blocks = append(env.blocks, blk)
	}
}

// carryHeads adds the blocks of heads that are in the recent cache (or
// in local storage) to env, within the size caps.
func (b *broadcaster) carryHeads(env *envelope, heads []cid.Cid) {
	total := 0
	for _, c := range heads {
		blk, ok := b.recent.get(c)
		if !ok && b.local != nil {
			// After a restart the cache is empty; a fresh peer that gets
			// heads without their blocks blocks on its first fetch.
			if lb, err := b.local.Get(b.ctx, c); err == nil {
				blk, ok = lb.RawData(), true
			}
		}
		if !ok || len(blk) > b.opts.CarryMaxBytes || total+len(blk) > maxCarriedTotal {
			continue
		}
		total += len(blk)
		env.blocks = append(env.blocks, carriedBlock{cid: c, data: blk})
	}
}

// decodeHeads decodes go-ds-crdt's heads message (a protobuf list of
// CIDs).
func decodeHeads(payload []byte) ([]cid.Cid, error) {
	var bc pb.CRDTBroadcast
	if err := proto.Unmarshal(payload, &bc); err != nil {
		return nil, err
	}
	if n := len(bc.GetHeads()); n > maxHeads {
		return nil, fmt.Errorf("%d heads, more than the %d any cluster makes", n, maxHeads)
	}
	heads := make([]cid.Cid, 0, len(bc.GetHeads()))
	for _, h := range bc.GetHeads() {
		c, err := cid.Cast(h.GetCid())
		if err != nil {
			return nil, err
		}
		heads = append(heads, c)
	}
	return heads, nil
}

// headsPayload encodes heads as go-ds-crdt encodes its broadcasts.
func headsPayload(heads []cid.Cid) ([]byte, error) {
	var bc pb.CRDTBroadcast
	for _, h := range heads {
		bc.Heads = append(bc.Heads, &pb.Head{Cid: h.Bytes()})
	}
	return proto.Marshal(&bc)
}

// headsMessage encodes heads as a go-ds-crdt broadcast in an envelope,
// carrying their blocks when carry is set (a receiver that lacks a head
// asks for its branch otherwise).
func (b *broadcaster) headsMessage(heads []cid.Cid, carry bool) ([]byte, error) {
	data, err := headsPayload(heads)
	if err != nil {
		return nil, err
	}
	env := envelope{payload: data}
	if carry {
		b.carryHeads(&env, heads)
	}
	return env.encode(), nil
}

// Next implements crdt.Broadcaster. go-ds-crdt calls it from one
// goroutine and processes each broadcast whole (its branch walks
// included) before calling again, so while it waits here its state is
// not part-way through a remote branch.
func (b *broadcaster) Next(ctx context.Context) ([]byte, error) {
	defer func() {
		b.mu.Lock()
		b.waiting = false
		b.mu.Unlock()
	}()
	for {
		b.mu.Lock()
		if len(b.queue) > 0 && (b.pauses == 0 || b.passOne) {
			msg := b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
			b.queued -= len(msg)
			b.passOne = false
			b.handed++
			b.waiting = false
			b.mu.Unlock()
			if b.stale(ctx, msg) {
				continue
			}
			return msg, nil
		}
		b.waiting = true
		b.mu.Unlock()
		select {
		case <-b.notify:
		case <-ctx.Done():
			return nil, crdt.ErrNoMoreBroadcast
		case <-b.ctx.Done():
			return nil, crdt.ErrNoMoreBroadcast
		}
	}
}

// stale reports whether heads that passed the gate when they arrived
// fail it now, and drops them if so. The frontier may have risen since
// (a round that evicted their sender reclaimed past them): go-ds-crdt
// would merge their branch top down until it met a block below the
// frontier, and leave the store dirty with the branch's tip among its
// heads. (Heads queued before an install are dropped by the install:
// blocks below them may be missing from the installed state.)
func (b *broadcaster) stale(ctx context.Context, msg []byte) bool {
	if b.gate == nil {
		return false
	}
	heads, err := decodeHeads(msg)
	if err != nil {
		return false // go-ds-crdt reports it
	}
	if err := b.gate(ctx, heads); err != nil {
		b.gated.Add(1)
		if n, ok := b.staleLog.Allow("", time.Now()); ok {
			b.log.Warn("dropped queued heads that reach below the compaction frontier, which rose after they arrived",
				"err", err, "dropped_since_last_warning", n)
		}
		return true
	}
	return false
}

// pause stops handing broadcasts to go-ds-crdt and waits until it is
// between broadcasts (waiting in Next), or ctx ends. Every pause, failed
// or not, needs a resume.
func (b *broadcaster) pause(ctx context.Context) error {
	b.mu.Lock()
	b.pauses++
	b.mu.Unlock()
	if err := b.await(ctx, func() bool { return b.waiting }); err != nil {
		return fmt.Errorf("crdt: waiting for the replication queue to pause: %w", err)
	}
	return nil
}

// await polls cond, under b.mu, every millisecond until it holds or ctx
// ends.
func (b *broadcaster) await(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		b.mu.Lock()
		ok := cond()
		b.mu.Unlock()
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

// resume undoes one pause.
func (b *broadcaster) resume() {
	b.mu.Lock()
	b.pauses--
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// runFirst hands payload to go-ds-crdt ahead of everything else, even
// while paused, and waits until go-ds-crdt has processed it (it is back
// waiting in Next), or ctx ends.
func (b *broadcaster) runFirst(ctx context.Context, payload []byte) error {
	b.mu.Lock()
	b.queue = append([][]byte{payload}, b.queue...)
	b.queued += len(payload)
	b.passOne = true
	target := b.handed + 1
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
	if err := b.await(ctx, func() bool { return b.handed >= target && b.waiting }); err != nil {
		return fmt.Errorf("crdt: waiting for go-ds-crdt to merge: %w", err)
	}
	return nil
}

// enqueue adds a payload for go-ds-crdt, dropping the oldest when the
// queue is over its byte bound.
func (b *broadcaster) enqueue(payload []byte) {
	b.mu.Lock()
	b.queue = append(b.queue, payload)
	b.queued += len(payload)
	for b.queued > b.opts.ReceiveBufferBytes && len(b.queue) > 1 {
		b.queued -= len(b.queue[0])
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.dropped.Add(1)
	}
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// dropQueued drops the payloads waiting for go-ds-crdt and returns how
// many there were. An install calls it: they were checked (gate,
// missingBelow) against the state it replaced. Handed to the installed
// one, a branch of the replaced history was merged top down until a
// block below the installed frontier, and left the store dirty with its
// tip among the heads. Their senders send their heads again with their
// next broadcast.
func (b *broadcaster) dropQueued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.queue)
	clear(b.queue)
	b.queue, b.queued = b.queue[:0], 0
	b.dropped.Add(uint64(n))
	return n
}

func (b *broadcaster) queueLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func (b *broadcaster) receiveLoop() {
	for {
		from, data, err := b.tr.Receive(b.ctx)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.log.Warn("receive failed", "err", err)
			// Do not spin on a transport that keeps failing.
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-b.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		b.received.Add(1)
		if err := b.accept(from, data); err != nil {
			b.rejected.Add(1)
			if errors.Is(err, errEnvelope) {
				b.misbehaved(from, err.Error())
			}
			if n, ok := b.dropLog.Allow(from, time.Now()); ok {
				b.log.Warn("dropped replication message", "peer", from, "err", err, "dropped_since_last_warning", n)
			}
		}
	}
}

// accept verifies a message, stores its blocks, and queues its heads.
func (b *broadcaster) accept(from string, data []byte) error {
	env, err := decodeEnvelope(data)
	if err != nil {
		return err
	}
	if err := env.verify(); err != nil {
		return err
	}
	// The one decode of the heads on this side besides go-ds-crdt's own:
	// they decide whether the message waits for its blocks (park) and
	// which branches to ask the sender for.
	var heads []cid.Cid
	if len(env.payload) > 0 {
		if heads, err = decodeHeads(env.payload); err != nil {
			return fmt.Errorf("%w: heads: %v", errEnvelope, err)
		}
	}
	var nodes []ipld.Node
	if len(env.blocks) > 0 {
		nodes = make([]ipld.Node, 0, len(env.blocks))
		for _, cb := range env.blocks {
			if cb.cid.Type() != cid.DagProtobuf {
				return fmt.Errorf("%w: block %s is not dag-pb", errEnvelope, cb.cid)
			}
			blk, err := blocks.NewBlockWithCid(cb.data, cb.cid)
			if err != nil {
				return fmt.Errorf("%w: %v", errEnvelope, err)
			}
			nd, err := dag.DecodeProtobufBlock(blk)
			if err != nil {
				return fmt.Errorf("%w: block %s: %v", errEnvelope, cb.cid, err)
			}
			nodes = append(nodes, nd)
		}
		var unref int
		if nodes, unref = b.referenced(heads, nodes); unref > 0 {
			b.unreferenced.Add(uint64(unref))
			if len(env.payload) > 0 {
				// A broadcast carries only its own new blocks. A branch
				// reply is not scored: one that comes after this node
				// forgot asking (inflight pruned) is honest.
				b.misbehaved(from, fmt.Sprintf("%d unreferenced carried blocks", unref))
			}
			if n, ok := b.dropLog.Allow(from, time.Now()); ok {
				b.log.Warn("dropped replication message", "peer", from, "dropped_since_last_warning", n,
					"err", fmt.Sprintf("%d carried blocks are reachable neither from the message's heads nor from a block this node asked for: not stored", unref))
			}
		}
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		err := b.dag.AddMany(ctx, nodes)
		cancel()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("crdt: store carried blocks: %w", err)
		}
		for _, nd := range nodes {
			b.recent.add(nd.Cid(), nd.RawData())
		}
	}
	if b.local != nil {
		if len(env.wants) > 0 {
			b.serveWants(from, env.wants)
		}
		b.requestMissing(from, heads, nodes)
	}
	if len(env.payload) > 0 {
		if !b.admit(from, heads) {
			return nil
		}
		var missing []cid.Cid
		if b.local != nil {
			missing = b.missingBelow(heads, maxEnvelopeBlocks)
		}
		if len(missing) > 0 {
			b.park(parkedHeads{payload: env.payload, heads: heads, from: from, until: time.Now().Add(parkTTL), waitFor: missing[0]})
			b.fetchMissing(from, missing)
		} else {
			b.enqueue(env.payload)
		}
	}
	if len(env.blocks) > 0 {
		b.unpark()
	}
	return nil
}

// misbehaved tells the transport, if it keeps score (p2p.Replication),
// that from sent what no correct node sends.
func (b *broadcaster) misbehaved(from, why string) {
	if m, ok := b.tr.(interface{ Misbehaved(id, why string) }); ok {
		m.Misbehaved(from, why)
	}
}

// referenced keeps the carried blocks a message may make this node
// store: those reachable, through the message's own blocks, from its
// heads (a broadcast carries its new deltas) or from a block this node
// asked for (a branch reply carries the branch below each want). A
// peer cannot fill the disk with blocks nothing points to.
func (b *broadcaster) referenced(heads []cid.Cid, nodes []ipld.Node) ([]ipld.Node, int) {
	byCID := make(map[cid.Cid]ipld.Node, len(nodes))
	for _, nd := range nodes {
		byCID[nd.Cid()] = nd
	}
	stack := slices.Clone(heads)
	b.inflightMu.Lock()
	for c := range byCID {
		if _, asked := b.inflight[c]; asked {
			stack = append(stack, c)
		}
	}
	b.inflightMu.Unlock()
	reach := make(map[cid.Cid]bool, len(nodes))
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		nd, ok := byCID[c]
		if !ok || reach[c] {
			continue
		}
		reach[c] = true
		for _, l := range nd.Links() {
			stack = append(stack, l.Cid)
		}
	}
	if len(reach) == len(nodes) {
		return nodes, 0
	}
	keep := nodes[:0:0]
	for _, nd := range nodes {
		if reach[nd.Cid()] {
			keep = append(keep, nd)
		}
	}
	return keep, len(nodes) - len(keep)
}

// admit runs the gate on a message's heads; a refused message is dropped
// (and said so), never handed to go-ds-crdt.
func (b *broadcaster) admit(from string, heads []cid.Cid) bool {
	if b.gate == nil {
		return true
	}
	if err := b.gate(b.ctx, heads); err != nil {
		b.gated.Add(1)
		b.log.Warn("dropped heads that reach below the compaction frontier: the sender's history is not this node's (it was evicted, or removed); it rebases when told, or, if removed, must rejoin with an empty data directory",
			"peer", from, "err", err)
		return false
	}
	return true
}

// branchWalkLimit bounds the blocks missingBelow looks at for one
// broadcast; a branch longer than that is handed over as it is.
const branchWalkLimit = 10_000

// missingBelow returns the blocks of the branch below heads that are
// neither stored here nor processed: the walk goes from the heads
// through stored blocks that are not processed yet, down to processed
// ones (after a state transfer, old blocks are not here but processed).
// go-ds-crdt gets a broadcast only once nothing is missing, so it never
// waits on the network: a block nobody can serve (a forged delta's
// child, a peer gone) held go-ds-crdt's one queue for DAGSyncerTimeout
// and then left the store dirty.
//
// It stops after max missing blocks: unpark asks for one (is anything
// missing?) for each parked broadcast at every look.
func (b *broadcaster) missingBelow(heads []cid.Cid, max int) []cid.Cid {
	var missing []cid.Cid
	seen := make(map[cid.Cid]bool)
	stack := append([]cid.Cid(nil), heads...)
	for len(stack) > 0 {
		if len(seen) >= branchWalkLimit {
			return nil
		}
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[c] {
			continue
		}
		seen[c] = true
		if b.processed != nil && b.processed(c) {
			continue
		}
		blk, err := b.local.Get(b.ctx, c)
		if err != nil {
			if missing = append(missing, c); len(missing) >= max {
				return missing
			}
			continue
		}
		_, links, err := decodeDelta(blk.RawData())
		if err != nil {
			continue // go-ds-crdt reports a bad block itself
		}
		stack = append(stack, links...)
	}
	return missing
}

// fetchers bounds the background fetches of missing blocks at once.
const fetchers = 4

// fetchMissing gets blocks a parked broadcast lacks, outside go-ds-crdt's
// queue: it asks the sender for their branches (its reply carries them)
// and fetches them through the DAG service (bitswap, from any peer),
// then looks at the parked broadcasts again. Blocks asked for within
// wantTTL are not asked for again.
func (b *broadcaster) fetchMissing(from string, missing []cid.Cid) {
	want := b.claimWants(missing, nil)
	if len(want) == 0 {
		return
	}
	b.askBranches(from, want)
	select {
	case b.fetching <- struct{}{}:
	default:
		return // enough fetches running; the branch reply or a later look brings the rest
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.fetching }()
		ctx, cancel := context.WithTimeout(b.ctx, parkTTL)
		defer cancel()
		for range b.dag.GetMany(ctx, want) {
		}
		if b.ctx.Err() == nil {
			b.unpark()
		}
	}()
}

// park holds a broadcast whose head blocks are missing. go-ds-crdt
// processes one broadcast at a time and waits up to DAGSyncerTimeout for
// a block it must fetch, so a head nobody can serve (a peer gone, a bad
// or forged head) would stall every broadcast behind it. Heads wait here
// instead while the branch request (requestMissing) brings their
// blocks; heads whose blocks never come are dropped after parkTTL: the
// peers' heads messages bring them again.
func (b *broadcaster) park(p parkedHeads) {
	b.parkMu.Lock()
	defer b.parkMu.Unlock()
	sz := p.size()
	// One sender's share is a quarter of the room: past it, its own
	// oldest go first, so a peer sending heads nobody can resolve pushes
	// out only its own.
	for {
		n, bytes, oldest := 0, 0, -1
		for i, q := range b.parked {
			if q.from == p.from {
				n, bytes = n+1, bytes+q.size()
				if oldest < 0 {
					oldest = i
				}
			}
		}
		if oldest < 0 || (n < maxPark/4 && bytes+sz <= maxParkBytes/4) {
			break
		}
		b.parkedSize -= b.parked[oldest].size()
		b.parked = append(b.parked[:oldest], b.parked[oldest+1:]...)
		b.headsDropped.Add(1)
	}
	for len(b.parked) > 0 && (len(b.parked) >= maxPark || b.parkedSize+sz > maxParkBytes) {
		b.parkedSize -= b.parked[0].size()
		b.parked[0] = parkedHeads{}
		b.parked = b.parked[1:]
		b.headsDropped.Add(1)
	}
	b.parked = append(b.parked, p)
	b.parkedSize += sz
}

// unpark hands over parked broadcasts whose blocks arrived, and drops
// those past their time. It walks a parked branch again (missingBelow)
// only once the block it waited for is here: a branch can run through
// thousands of stored blocks that are not merged (after a rebase, those
// of the history it replaced), and walking every parked one at every
// look, with parkMu held, while the receive loop waits for that lock to
// park the next message, stopped replication on every node: no branch
// request was served, parked heads piled up, and the last writes before
// a heal never left their nodes (partition-halves, 7 nodes, 2 rounds of
// 15-20 s, seed 4401: 65 writes lost, every node still walking 60 s
// later).
func (b *broadcaster) unpark() {
	b.parkMu.Lock()
	if len(b.parked) == 0 {
		b.parkMu.Unlock()
		return
	}
	now := time.Now()
	var ready []parkedHeads
	type fetch struct {
		from    string
		missing []cid.Cid
	}
	var fetches []fetch
	keep := b.parked[:0]
	for _, p := range b.parked {
		var missing []cid.Cid
		if p.waitFor.Defined() && !b.arrived(p.waitFor) {
			missing = []cid.Cid{p.waitFor}
		} else {
			missing = b.missingBelow(p.heads, 1)
		}
		switch {
		case len(missing) == 0:
			ready = append(ready, p)
		case now.After(p.until):
			b.headsDropped.Add(1)
			if n, ok := b.parkLog.Allow(p.from, now); ok {
				b.log.Info("dropped heads whose blocks did not arrive", "peer", p.from, "heads", len(p.heads), "waited", parkTTL, "dropped_since_last_line", n)
			}
		default:
			p.waitFor = missing[0]
			keep = append(keep, p)
			fetches = append(fetches, fetch{p.from, missing})
		}
	}
	clear(b.parked[len(keep):])
	b.parked = keep
	b.parkedSize = 0
	for _, p := range keep {
		b.parkedSize += p.size()
	}
	b.parkMu.Unlock()
	for _, p := range ready {
		if b.admit(p.from, p.heads) {
			b.enqueue(p.payload)
		}
	}
	for _, f := range fetches {
		b.fetchMissing(f.from, f.missing)
	}
}

// arrived reports whether a block a parked broadcast waited for is
// stored or merged here now.
func (b *broadcaster) arrived(c cid.Cid) bool {
	if b.processed != nil && b.processed(c) {
		return true
	}
	has, err := b.local.Has(b.ctx, c)
	return err == nil && has
}

// requestMissing asks the sender for the heads it announced and the
// parents of the blocks it sent that this node does not have. The sender
// answers with whole branches (serveWants), so a peer that missed
// thousands of deltas gets them in a few round trips instead of one
// bitswap round (20 ms minimum) per block. go-ds-crdt's walk goes on as
// usual; its bitswap wants are satisfied as the blocks are stored.
func (b *broadcaster) requestMissing(from string, heads []cid.Cid, nodes []ipld.Node) {
	var candidates []cid.Cid
	carried := make(map[cid.Cid]bool, len(nodes))
	for _, nd := range nodes {
		carried[nd.Cid()] = true
	}
	for _, h := range heads {
		if !carried[h] {
			candidates = append(candidates, h)
		}
	}
	for _, nd := range nodes {
		for _, l := range nd.Links() {
			if !carried[l.Cid] {
				candidates = append(candidates, l.Cid)
			}
		}
	}
	if len(candidates) == 0 {
		return
	}
	b.askBranches(from, b.claimWants(candidates, func(c cid.Cid) bool {
		has, err := b.local.Has(b.ctx, c)
		return err != nil || has || (b.processed != nil && b.processed(c))
	}))
}

// claimWants returns the blocks of cs not asked for within wantTTL and
// not skipped (skip may be nil), at most maxEnvelopeBlocks, and marks
// them asked for now.
func (b *broadcaster) claimWants(cs []cid.Cid, skip func(cid.Cid) bool) []cid.Cid {
	now := time.Now()
	b.inflightMu.Lock()
	defer b.inflightMu.Unlock()
	if len(b.inflight) > 100_000 {
		for c, t := range b.inflight {
			if now.Sub(t) > wantTTL {
				delete(b.inflight, c)
			}
		}
	}
	var wants []cid.Cid
	for _, c := range cs {
		if t, ok := b.inflight[c]; ok && now.Sub(t) < wantTTL {
			continue
		}
		if skip != nil && skip(c) {
			continue
		}
		b.inflight[c] = now
		wants = append(wants, c)
		if len(wants) == maxEnvelopeBlocks {
			break
		}
	}
	return wants
}

// askBranches sends a branch request for wants to from.
func (b *broadcaster) askBranches(from string, wants []cid.Cid) {
	if len(wants) == 0 || from == "" {
		return
	}
	b.requested.Add(uint64(len(wants)))
	b.sendTo(from, (&envelope{wants: wants}).encode())
}

// forgetSent forgets which blocks went to peer in branch replies: it
// installed a state transfer (ObserveReport), which replaced its blocks,
// or its connection closed, and a reply under way on it may never have arrived
// (a router's reboot, a relayed connection closed to punch again). A
// peer that lost a reply and asks again would otherwise get only the
// block it names, one per request, and not the history below it that
// the reply carried (serveWants). (After a site's router rebooted in the
// suite's NAT topology, under heavy load, nodes dropped heads whose
// blocks did not arrive within parkTTL for minutes, and evicted one
// another; lost replies are a suspected cause, not a proven one.)
func (b *broadcaster) forgetSent(peer string) {
	b.sentMu.Lock()
	delete(b.sentTo, peer)
	b.sentMu.Unlock()
}

// serveWants answers a branch request: the wanted blocks and the blocks
// below them, breadth first, up to the size of one message. Blocks this
// node does not have are skipped; the asker falls back to bitswap.
func (b *broadcaster) serveWants(to string, wants []cid.Cid) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	var reply envelope
	total := 0
	seen := make(map[cid.Cid]bool)
	wanted := make(map[cid.Cid]bool, len(wants))
	for _, c := range wants {
		wanted[c] = true
	}
	b.sentMu.Lock()
	ring := b.sentTo[to]
	if ring == nil {
		if len(b.sentTo) >= 256 { // peers come and go: forget them all now and then
			clear(b.sentTo)
		}
		ring = newCIDRing(sentMemory)
		b.sentTo[to] = ring
	}
	b.sentMu.Unlock()
	queue := append([]cid.Cid(nil), wants...)
	for len(queue) > 0 && len(reply.blocks) < maxEnvelopeBlocks {
		c := queue[0]
		queue = queue[1:]
		if seen[c] {
			continue
		}
		seen[c] = true
		// A block sent to this peer before, and what is below it, went
		// with that reply; only what the peer asks for again is sent.
		if !wanted[c] && ring.has(c) {
			continue
		}
		blk, err := b.local.Get(ctx, c)
		if err != nil {
			continue
		}
		data := blk.RawData()
		if total+len(data) > maxCarriedTotal {
			break
		}
		total += len(data)
		reply.blocks = append(reply.blocks, carriedBlock{cid: c, data: data})
		nd, err := dag.DecodeProtobuf(data)
		if err != nil {
			continue
		}
		for _, l := range nd.Links() {
			queue = append(queue, l.Cid)
		}
	}
	if len(reply.blocks) == 0 {
		return
	}
	for _, cb := range reply.blocks {
		ring.add(cb.cid)
	}
	b.served.Add(uint64(len(reply.blocks)))
	b.sendTo(to, reply.encode())
}

// sentMemory is how many blocks sent in branch replies are remembered per
// peer.
const sentMemory = 1 << 16

// cidRing is a bounded set of CIDs: the oldest is forgotten first.
type cidRing struct {
	mu   sync.Mutex
	set  map[cid.Cid]struct{}
	ring []cid.Cid
	next int
}

func newCIDRing(n int) *cidRing {
	return &cidRing{set: make(map[cid.Cid]struct{}, n), ring: make([]cid.Cid, 0, n)}
}

func (r *cidRing) has(c cid.Cid) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[c]
	return ok
}

func (r *cidRing) add(c cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[c]; ok {
		return
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, c)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = c
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[c] = struct{}{}
}
